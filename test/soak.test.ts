import dgram from 'node:dgram';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { buildQuery, parseMessage, RCODE, T } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { metric, rssOf, scrape, startServe, type ServeProcess } from './helpers/serve-process.js';

/**
 * A bounded soak of a real `canonport serve` process on loopback: a steady,
 * paced query rate with a mix of canonical names (answered from the
 * scheme), cached forwarded names (one upstream query each, then the
 * cache) and unique forwarded names (every one reaches the upstream and
 * fills the cache past its bound, so eviction runs). Every query must be
 * answered correctly; the daemon's RSS (its own /proc/<pid>/status) must
 * not grow past what the cache bound allows; the event-loop delay comes
 * from its /metrics.
 *
 * CANONPORT_SOAK_SECONDS and CANONPORT_SOAK_QPS change the length and rate.
 */

const SECONDS = Number(process.env.CANONPORT_SOAK_SECONDS ?? 60);
const QPS = Number(process.env.CANONPORT_SOAK_QPS ?? 2000);
const WARMUP_SECONDS = Math.min(10, SECONDS / 4);
const CACHE_SIZE = 5000;
/**
 * RSS growth allowed from the end of the warm-up to the end: the cache
 * reaches its 5,000-entry bound after the warm-up (≈ 1 KiB per entry with
 * its bookkeeping, so ≈ 5 MiB), plus room for V8 to grow its heap
 * lazily between collections. A leak of even 200 bytes per query (120,000
 * queries) would show as 24 MiB on top.
 */
const RSS_GROWTH_BOUND = 40 * 1024 * 1024;
const REPLY_TIMEOUT_MS = 2000;
const SOCKETS = 8;
const ZONE = 'cluster-1.example.com';
const SERVICES = Array.from({ length: 200 }, (_, i) => `svc${i.toString(36)}x`);

let fake: FakeUpstream;
let s: ServeProcess;

beforeAll(async () => {
  fake = await FakeUpstream.start({ kind: 'answer', ttl: 3600, address: '192.0.2.1' });
  s = await startServe(['--upstream', fake.address, '--zone', ZONE, '--cache-size', String(CACHE_SIZE)]);
}, 60_000);

afterAll(async () => {
  await s?.stop();
  await fake?.close();
});

type Kind = 'canonical' | 'cached' | 'forwarded';

interface Pending {
  kind: Kind;
  name: string;
  type: number;
  sentAt: number;
  timer: NodeJS.Timeout;
}

test(`soak: ${QPS} queries/s for ${SECONDS} s, canonical + cached + forwarded, no errors, bounded RSS`, { timeout: (SECONDS + 60) * 1000 }, async () => {
  const stats = { sent: 0, answered: 0, errors: 0, timeouts: 0, byKind: { canonical: 0, cached: 0, forwarded: 0 } as Record<Kind, number> };
  const samples: string[] = [];
  const error = (why: string) => {
    stats.errors++;
    if (samples.length < 10) samples.push(why);
  };
  const rssStart = await rssOf(s.pid);
  await scrape(s.http); // resets the event-loop delay histogram: the end figures cover the run

  const sockets: { sock: dgram.Socket; pending: Map<number, Pending>; next: number }[] = [];
  for (let i = 0; i < SOCKETS; i++) {
    const sock = dgram.createSocket('udp4');
    // From the upstream's own address (127.0.0.1): duplicates from there must not look like a forwarding loop.
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    const entry = { sock, pending: new Map<number, Pending>(), next: 0 };
    sock.on('message', (raw) => {
      const id = raw.readUInt16BE(0);
      const p = entry.pending.get(id);
      if (!p) return error(`unexpected reply ID ${id}`);
      entry.pending.delete(id);
      clearTimeout(p.timer);
      stats.answered++;
      let m;
      try {
        m = parseMessage(raw);
      } catch (err) {
        return error(`unparsable reply for ${p.name}: ${(err as Error).message}`);
      }
      if (m.rcode !== RCODE.NOERROR) return error(`${p.name}: rcode ${m.rcode}`);
      if (p.kind === 'canonical') {
        const svc = p.name.split('.')[0]!.replace(/^_/, '');
        const srv = m.answers.find((a) => a.type === T.SRV)?.data as { port?: number } | undefined;
        if (srv?.port !== base32Port(svc)) error(`${p.name}: SRV port ${srv?.port}, expected ${base32Port(svc)}`);
      } else if (m.answers[0]?.data !== '192.0.2.1') error(`${p.name}: answer ${String(m.answers[0]?.data)}`);
    });
    sockets.push(entry);
  }

  let n = 0;
  const send = () => {
    const i = n++;
    const r = i % 10;
    const kind: Kind = r < 5 ? 'canonical' : r < 8 ? 'cached' : 'forwarded';
    const k = stats.byKind[kind];
    const name =
      kind === 'canonical' ? `_${SERVICES[k % SERVICES.length]}._tcp.${ZONE}` : kind === 'cached' ? `c${k % 50}.example.org` : `u${k}.soak.example.org`;
    const type = kind === 'canonical' ? T.SRV : T.A;
    const entry = sockets[i % SOCKETS]!;
    const id = entry.next++ & 0xffff;
    if (entry.pending.has(id)) {
      error('more than 65,536 queries outstanding on one socket');
      return;
    }
    const timer = setTimeout(() => {
      entry.pending.delete(id);
      stats.timeouts++;
      error(`${name}: no reply within ${REPLY_TIMEOUT_MS} ms`);
    }, REPLY_TIMEOUT_MS);
    entry.pending.set(id, { kind, name, type, sentAt: performance.now(), timer });
    entry.sock.send(buildQuery({ id, name, type }), s.dns.port, s.dns.host);
    stats.sent++;
    stats.byKind[kind]++;
  };

  // Paced: every 10 ms, send what the schedule says is due (capped, so a stall is not followed by a flood).
  const started = performance.now();
  let rssWarm = 0;
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const elapsed = performance.now() - started;
      if (elapsed >= SECONDS * 1000 || s.proc.exitCode !== null) {
        clearInterval(tick);
        resolve();
        return;
      }
      const due = Math.min(Math.floor((elapsed / 1000) * QPS) - stats.sent, QPS / 10);
      for (let k = 0; k < due; k++) send();
      if (rssWarm === 0 && elapsed >= WARMUP_SECONDS * 1000) {
        rssWarm = -1;
        void rssOf(s.pid).then((v) => (rssWarm = v));
      }
    }, 10);
  });
  // Let the last replies arrive (each has its own timeout).
  const drainDeadline = performance.now() + REPLY_TIMEOUT_MS + 500;
  while (sockets.some((e) => e.pending.size > 0) && performance.now() < drainDeadline) await new Promise((r) => setTimeout(r, 20));
  const seconds = (performance.now() - started) / 1000;

  const rssEnd = await rssOf(s.pid);
  const text = await scrape(s.http);
  const lag = (k: string) => metric(text, `canonport_nodejs_eventloop_lag_${k}_seconds`) * 1000;
  const cacheEntries = metric(text, 'canonport_cache_entries');
  const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
  console.log(
    `soak: ${stats.sent} queries in ${seconds.toFixed(1)} s (${(stats.sent / seconds).toFixed(0)}/s; canonical ${stats.byKind.canonical}, ` +
      `cached ${stats.byKind.cached}, forwarded ${stats.byKind.forwarded}), answered ${stats.answered}, errors ${stats.errors} ` +
      `(timeouts ${stats.timeouts}); upstream queries ${fake.count()} (popular names ${fake.count() - stats.byKind.forwarded}); cache entries ${cacheEntries} (bound ${CACHE_SIZE}); ` +
      `daemon RSS start ${mib(rssStart)} MiB, after ${WARMUP_SECONDS} s warm-up ${mib(rssWarm)} MiB, end ${mib(rssEnd)} MiB; ` +
      `event-loop delay (10 ms sampling timer included) mean ${lag('mean').toFixed(1)} ms, p50 ${lag('p50').toFixed(1)} ms, ` +
      `p99 ${lag('p99').toFixed(1)} ms, max ${lag('max').toFixed(1)} ms`,
  );
  if (samples.length) console.log(`soak errors (first ${samples.length}):\n  ${samples.join('\n  ')}`);
  for (const e of sockets) e.sock.close();

  expect(s.proc.exitCode).toBeNull();
  expect(samples).toEqual([]);
  expect(stats.errors).toBe(0);
  expect(stats.answered).toBe(stats.sent);
  expect(stats.sent).toBeGreaterThanOrEqual(QPS * SECONDS * 0.9);
  expect(cacheEntries).toBeLessThanOrEqual(CACHE_SIZE);
  // Every unique name is asked upstream once; the 50 popular names at least once, but mostly answered
  // from the cache (eviction drops the oldest entries, so the flood of unique names evicts them now and then).
  const popularUpstream = fake.count() - stats.byKind.forwarded;
  expect(popularUpstream).toBeGreaterThanOrEqual(50);
  expect(popularUpstream).toBeLessThan(stats.byKind.cached / 10);
  expect(rssWarm).toBeGreaterThan(0);
  expect(rssEnd - rssWarm).toBeLessThan(RSS_GROWTH_BOUND);
});
