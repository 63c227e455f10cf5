import { describe, expect, it } from 'vitest';
import { Metrics } from '../src/metrics/metrics.js';
import { requestKey, type DnsRequest } from '../src/dns/request.js';
import { CacheStage } from '../src/dns/plugins/cache/cache.js';
import { parseQuery } from '../src/dns/wire.js';
import { buildQuery } from './helpers/dns-wire.js';

/** A forwarded answer: the query turned into a response with one A record (owner compressed to the question). */
function answerTo(raw: Buffer, ttl: number): Buffer {
  const rr = Buffer.from('c00c00010001000000000004c0000201', 'hex');
  rr.writeUInt32BE(ttl, 6);
  const out = Buffer.concat([raw, rr]);
  out[2] = 0x81;
  out[3] = 0x80;
  out.writeUInt16BE(1, 6);
  return out;
}

function request(name: string): DnsRequest {
  const raw = buildQuery({ id: 1, name, type: 1 });
  const query = parseQuery(raw)!;
  return { query, raw, client: { address: '127.0.0.1', port: 1 }, transport: 'udp', cls: { kind: 'outside' }, key: requestKey(query), mayRecurse: true };
}

describe('forwarding cache (CacheStage, its real store, injected clock)', () => {
  it('keeps the answers clients keep asking for when a flood of one-off names fills it', async () => {
    const clock = { now: 0 };
    const cache = new CacheStage({ maxEntries: 200, maxTtl: 86400, maxNegativeTtl: 900, staleTtl: 0 }, new Metrics({ defaultMetrics: false }), () => clock.now);
    let upstreamAsked = 0;
    const ask = (name: string) =>
      cache.serve(request(name), (req) => {
        upstreamAsked++;
        return { message: answerTo(req.raw, 300), rcode: 0, source: 'forward' as const };
      });
    const popular = Array.from({ length: 20 }, (_, i) => `popular${i}.example.org`);
    for (const n of popular) await ask(n);
    // 2,000 one-off names, with the popular ones asked again between every 50.
    for (let i = 0; i < 2000; i++) {
      await ask(`oneoff${i}.example.org`);
      if (i % 50 === 0) for (const n of popular) await ask(n);
    }
    const before = upstreamAsked;
    for (const n of popular) await ask(n);
    expect(upstreamAsked - before).toBe(0); // every popular answer survived
    expect(cache.size).toBeLessThanOrEqual(201);
    cache.close();
  });

  it('counts TTLs down on a hit and serves nothing past them', async () => {
    const clock = { now: 0 };
    const cache = new CacheStage({ maxEntries: 10, maxTtl: 86400, maxNegativeTtl: 900, staleTtl: 0 }, new Metrics({ defaultMetrics: false }), () => clock.now);
    let asked = 0;
    const next = (req: DnsRequest) => {
      asked++;
      return { message: answerTo(req.raw, 300), rcode: 0, source: 'forward' as const };
    };
    await cache.serve(request('a.example.org'), next);
    clock.now = 120_000;
    const hit = await cache.serve(request('a.example.org'), next);
    expect(hit.source).toBe('cache');
    expect(hit.message.readUInt32BE(hit.message.length - 10)).toBe(180);
    clock.now = 301_000;
    expect((await cache.serve(request('a.example.org'), next)).source).toBe('forward');
    expect(asked).toBe(2);
    cache.close();
  });

  it('re-renders a hit when its age in whole seconds changes: the TTL keeps counting down between hits', async () => {
    const clock = { now: 0 };
    const cache = new CacheStage({ maxEntries: 10, maxTtl: 86400, maxNegativeTtl: 900, staleTtl: 0 }, new Metrics({ defaultMetrics: false }), () => clock.now);
    const next = (req: DnsRequest) => ({ message: answerTo(req.raw, 300), rcode: 0, source: 'forward' as const });
    const ttlOf = (r: { message: Buffer }) => r.message.readUInt32BE(r.message.length - 10);
    await cache.serve(request('a.example.org'), next);
    clock.now = 10_000;
    const first = await cache.serve(request('a.example.org'), next);
    expect([first.source, ttlOf(first)]).toEqual(['cache', 290]);
    // Within the same second the rendered reply is reused as is...
    clock.now = 10_999;
    expect(await cache.serve(request('a.example.org'), next)).toBe(first);
    // ...and the next second renders a new one, counted down; the one already handed out is left as it was.
    clock.now = 11_000;
    const second = await cache.serve(request('a.example.org'), next);
    expect([second.source, ttlOf(second)]).toEqual(['cache', 289]);
    expect(ttlOf(first)).toBe(290);
    clock.now = 70_500;
    const third = await cache.serve(request('a.example.org'), next);
    expect([third.source, ttlOf(third)]).toEqual(['cache', 230]);
    cache.close();
  });
});
