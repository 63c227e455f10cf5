import dgram from 'node:dgram';
import { metricSum } from './helpers/serve-process.js';
import { afterEach, describe, expect, test } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { UpstreamClient } from '../src/dns/upstream.js';
import { encodeName } from './helpers/dns-wire.js';
import { startDaemon } from './helpers/daemon.js';
import { dig } from './helpers/dig.js';
import { FakeUpstream, type FakeKind, type FakeMode } from './helpers/fake-upstream.js';

/**
 * Upstream faults, each injected by a real DNS server on loopback that the
 * test controls (test/helpers/fake-upstream.ts), against a real daemon,
 * queried with dig. Every case also bounds the client-visible delay: at
 * most one timeout per upstream plus a margin for a loaded machine (a
 * correctness bound, not a speed benchmark).
 */

const TIMEOUT_MS = 300;
const MARGIN_MS = 1500;
const REAL = '192.0.2.1';
const SECOND = '192.0.2.2';
const EVIL = '203.0.113.66';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

/** A clock the test moves forward, so TTLs expire without sleeping. */
function testClock() {
  let offset = 0;
  return { now: () => Date.now() + offset, advance: (seconds: number) => (offset += seconds * 1000) };
}

async function setup(modes: FakeMode[], clock = testClock()) {
  const ups: FakeUpstream[] = [];
  for (const m of modes) {
    const f = await FakeUpstream.start(m);
    cleanup.push(() => f.close());
    ups.push(f);
  }
  const d = await startDaemon({ upstreams: ups.map((u) => u.address), upstreamTimeoutMs: TIMEOUT_MS }, { now: clock.now });
  cleanup.push(() => d.close(0));
  return { d, ups, clock, bound: TIMEOUT_MS * ups.length + MARGIN_MS };
}

async function ask(d: Daemon, name: string, type = 'A') {
  const started = performance.now();
  const r = await dig(d.addresses.dns, [type, name]);
  const ms = performance.now() - started;
  const answers = r.answer.map((f) => ({ name: f[0]!, ttl: Number(f[1]), type: f[3]!, data: f.slice(4).join(' ') }));
  return { status: r.status, answers, addresses: answers.filter((a) => a.type === 'A').map((a) => a.data), ms };
}

describe('upstream faults', () => {
  test('no answer: the next upstream answers, within one timeout', async () => {
    const { d, ups, bound } = await setup([{ kind: 'silent' }, { kind: 'answer', address: SECOND }]);
    const r = await ask(d, 'quiet.example.org');
    expect(r.status).toBe('NOERROR');
    expect(r.addresses).toEqual([SECOND]);
    expect(ups[0]!.count({ name: 'quiet.example.org' })).toBe(1);
    expect(ups[1]!.count({ name: 'quiet.example.org' })).toBe(1);
    expect(await metricSum(d.metrics.upstreamQueries, { outcome: 'timeout' })).toBe(1);
    expect(r.ms).toBeLessThan(bound);
  });

  test('slow answer past the timeout: the next upstream answers, and the late reply changes nothing', async () => {
    const { d, ups, bound } = await setup([{ kind: 'delay', ms: TIMEOUT_MS * 3 }, { kind: 'answer', address: SECOND, ttl: 600 }]);
    const r = await ask(d, 'slow.example.org');
    expect(r.status).toBe('NOERROR');
    expect(r.addresses).toEqual([SECOND]);
    expect(r.ms).toBeLessThan(bound);
    // The first upstream's late reply arrives on a closed socket; the cached answer stays the second's.
    await new Promise((res) => setTimeout(res, TIMEOUT_MS * 3));
    const again = await ask(d, 'slow.example.org');
    expect(again.addresses).toEqual([SECOND]);
    expect(ups[1]!.count({ name: 'slow.example.org' })).toBe(1);
  });

  test.each(['servfail', 'refused'] as FakeKind[])('%s: the next upstream answers at once', async (kind) => {
    const { d, ups, bound } = await setup([{ kind }, { kind: 'answer', address: SECOND }]);
    const r = await ask(d, `${kind}.example.org`);
    expect(r.status).toBe('NOERROR');
    expect(r.addresses).toEqual([SECOND]);
    expect(ups[0]!.count()).toBe(1);
    expect(await metricSum(d.metrics.upstreamQueries, { outcome: kind })).toBe(1);
    expect(r.ms).toBeLessThan(bound);
  });

  // wrong-case: issue 21, finding 11 — a reply whose question is not spelled as we sent it is not ours (DNS 0x20).
  describe.each(['wrong-id', 'wrong-question', 'wrong-case', 'spoof'] as FakeKind[])('%s reply', (kind) => {
    test('is dropped and counted, and the real reply that follows is accepted', async () => {
      const { d, ups, bound } = await setup([{ kind, thenReal: true, thenAfterMs: 50, address: REAL }]);
      const r = await ask(d, 'target.example.org');
      expect(r.status).toBe('NOERROR');
      expect(r.addresses).toEqual([REAL]);
      expect(await metricSum(d.metrics.upstreamMismatches)).toBe(1);
      if (kind === 'wrong-case') expect(await metricSum(d.metrics.upstreamMismatches, { reason: 'case' })).toBe(1);
      expect(r.ms).toBeLessThan(bound);
      // What is cached is the real answer.
      const again = await ask(d, 'target.example.org');
      expect(again.addresses).toEqual([REAL]);
      expect(ups[0]!.count({ name: 'target.example.org' })).toBe(1);
    });

    test('alone: SERVFAIL, nothing cached, and the next query is forwarded again', async () => {
      const { d, ups, bound } = await setup([{ kind }]);
      const r = await ask(d, 'poisoned.example.org');
      expect(r.status).toBe('SERVFAIL');
      expect(r.answers).toEqual([]);
      expect(r.ms).toBeLessThan(bound);
      expect(await metricSum(d.metrics.upstreamMismatches)).toBe(1);
      expect(d.cacheSize).toBe(0);
      ups[0]!.mode = { kind: 'answer', address: REAL };
      const again = await ask(d, 'poisoned.example.org');
      expect(again.status).toBe('NOERROR');
      expect(again.addresses).toEqual([REAL]);
      expect(again.addresses).not.toContain(EVIL);
      expect(ups[0]!.count({ name: 'poisoned.example.org' })).toBe(2);
    });
  });

  test('TC from upstream: retried over TCP and the whole answer delivered', async () => {
    const { d, ups } = await setup([{ kind: 'truncate', records: 8, address: '192.0.2.10' }]);
    const r = await ask(d, 'big.example.org');
    expect(r.status).toBe('NOERROR');
    expect(r.addresses.sort()).toEqual(Array.from({ length: 8 }, (_, i) => `192.0.2.${10 + i}`).sort());
    expect(ups[0]!.count({ transport: 'udp' })).toBe(1);
    expect(ups[0]!.count({ transport: 'tcp' })).toBe(1);
    expect(await metricSum(d.metrics.upstreamQueries, { outcome: 'ok_tcp' })).toBe(1);
    expect(r.ms).toBeLessThan(TIMEOUT_MS * 2 + MARGIN_MS);
  });

  test('every upstream fails: SERVFAIL, or the stale answer (RFC 8767, TTL 30) when one is cached', async () => {
    const { d, ups, clock, bound } = await setup([
      { kind: 'answer', ttl: 60, address: REAL },
      { kind: 'answer', ttl: 60, address: REAL },
    ]);
    const fresh = await ask(d, 'kept.example.org');
    expect(fresh.addresses).toEqual([REAL]);
    expect(fresh.answers[0]!.ttl).toBe(60);
    ups[0]!.mode = { kind: 'silent' };
    ups[1]!.mode = { kind: 'servfail' };
    // Still fresh: from the cache, no upstream asked.
    clock.advance(30);
    const cached = await ask(d, 'kept.example.org');
    expect(cached.answers[0]!.ttl).toBe(30);
    expect(ups[0]!.count()).toBe(1);
    // Expired, every upstream failing: stale, TTL 30.
    clock.advance(600);
    const stale = await ask(d, 'kept.example.org');
    expect(stale.status).toBe('NOERROR');
    expect(stale.addresses).toEqual([REAL]);
    expect(stale.answers[0]!.ttl).toBe(30);
    expect(stale.ms).toBeLessThan(bound);
    expect(await metricSum(d.metrics.cacheLookups, { result: 'stale' })).toBe(1);
    // Never cached: SERVFAIL.
    const none = await ask(d, 'never.example.org');
    expect(none.status).toBe('SERVFAIL');
    expect(none.ms).toBeLessThan(bound);
    // Past the serve-stale window (staleTtl): SERVFAIL too.
    clock.advance(d.config.cache.staleTtl + 60);
    expect((await ask(d, 'kept.example.org')).status).toBe('SERVFAIL');
  });

  test('upstream down, then back on the same port: stale or SERVFAIL while down, fresh answers after', async () => {
    const { d, ups, clock, bound } = await setup([{ kind: 'answer', ttl: 5, address: REAL }]);
    const up = ups[0]!;
    expect((await ask(d, 'known.example.org')).addresses).toEqual([REAL]);
    await up.down();
    clock.advance(10);
    const stale = await ask(d, 'known.example.org');
    expect(stale.status).toBe('NOERROR');
    expect(stale.addresses).toEqual([REAL]);
    expect(stale.answers[0]!.ttl).toBe(30);
    expect(stale.ms).toBeLessThan(bound);
    const unknown = await ask(d, 'unknown.example.org');
    expect(unknown.status).toBe('SERVFAIL');
    expect(unknown.ms).toBeLessThan(bound);

    up.mode = { kind: 'answer', ttl: 5, address: SECOND };
    await up.up();
    const fresh = await ask(d, 'known.example.org');
    expect(fresh.status).toBe('NOERROR');
    expect(fresh.addresses).toEqual([SECOND]);
    expect(fresh.answers[0]!.ttl).toBe(5);
    const now = await ask(d, 'unknown.example.org');
    expect(now.status).toBe('NOERROR');
    expect(now.addresses).toEqual([SECOND]);
  });
});

describe('the upstream timeout', () => {
  test('keeps a reply that came in time while the event loop was busy past the deadline', async () => {
    // An upstream in this process: it answers (the query echoed as a reply), then keeps the event loop busy
    // for four deadlines, so the reply waits in the client's socket while its deadline passes.
    const DEADLINE_MS = 50;
    const up = dgram.createSocket('udp4');
    cleanup.push(() => new Promise<void>((r) => up.close(() => r())));
    up.on('message', (msg, from) => {
      const reply = Buffer.from(msg);
      reply[2] = reply[2]! | 0x80;
      up.send(reply, from.port, from.address, () => {
        const until = performance.now() + 4 * DEADLINE_MS;
        while (performance.now() < until);
      });
    });
    await new Promise<void>((r) => up.bind(0, '127.0.0.1', () => r()));
    const client = new UpstreamClient(() => DEADLINE_MS);
    const question = Buffer.concat([encodeName('busy.example.org'), Buffer.from([0, 1, 0, 1])]);
    const r = await client.query({ host: '127.0.0.1', port: up.address().port }, { question, dnssecOk: false, checkingDisabled: false });
    expect(r.kind).toBe('answer');
  });
});
