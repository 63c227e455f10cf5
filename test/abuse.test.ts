import { afterEach, describe, expect, test } from 'vitest';
import { isCanonportError } from '../src/errors.js';
import { startDaemon } from './helpers/daemon.js';
import { dig } from './helpers/dig.js';
import { buildQuery, parseMessage, RCODE, T, UdpClient, type Message } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { runCli } from './helpers/cli.js';
import { freePort } from './helpers/ports.js';

/**
 * Abuse of a resolver that may be reachable by others: an open-resolver
 * client outside --allow, a client flooding forwarded queries, more
 * distinct questions in flight than the cap, and a daemon configured as
 * its own upstream. Clients come from distinct loopback addresses
 * (127.0.0.2, .3, …) so the daemon sees them as different hosts.
 */

const ZONE = 'cluster-1.example.com';
const REAL = '192.0.2.1';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function fakeUpstream(mode?: Parameters<typeof FakeUpstream.start>[0]) {
  const f = await FakeUpstream.start(mode);
  cleanup.push(() => f.close());
  return f;
}

async function client(address: string) {
  const c = await UdpClient.open(address);
  cleanup.push(() => c.close());
  return c;
}

/** A clock the test moves: rate-limit buckets refill only when it says so. */
function frozenClock() {
  let t = Date.now();
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe('--allow (a resolver reachable beyond loopback)', () => {
  test('outside the allowed networks: REFUSED for forwarded names, canonical answers still given, nothing reaches the upstream', async () => {
    const up = await fakeUpstream({ kind: 'answer', address: REAL });
    // trustLoopback false: loopback clients are judged by --allow, like remote ones would be.
    const d = await startDaemon({ upstreams: [up.address], allow: ['127.0.0.2/32'], zones: [ZONE] }, { trustLoopback: false });
    cleanup.push(() => d.close(0));
    const server = d.addresses.dns;

    const outsider = (args: string[]) => dig(server, ['-b', '127.0.0.3', ...args]);
    const refused = await outsider(['A', 'www.example.org']);
    expect(refused.status).toBe('REFUSED');
    expect(refused.answer).toEqual([]);
    expect((await outsider(['+tcp', 'A', 'www.example.org'])).status).toBe('REFUSED');
    const srv = await outsider(['SRV', 'api.localhost']);
    expect(srv.status).toBe('NOERROR');
    expect(srv.answer[0]?.slice(4)).toEqual(['0', '0', '12082', 'api.localhost.']);
    const zoned = await outsider(['SRV', `_api._tcp.${ZONE}`]);
    expect(zoned.status).toBe('NOERROR');
    expect(zoned.answer[0]?.[6]).toBe('12082');
    // An in-zone address the daemon does not know would need the upstream: not for this client.
    const inZoneA = await outsider(['A', `api.east.${ZONE}`]);
    expect(inZoneA.answer).toEqual([]);
    expect(up.count()).toBe(0);

    // No amplification: a refusal is never larger than the question that caused it.
    const raw = await client('127.0.0.3');
    const id = raw.id();
    const q = buildQuery({ id, name: 'www.example.org', type: T.ANY, edns: { udpSize: 4096 } });
    const reply = await raw.send(server, q, id);
    expect(reply).not.toBeNull();
    expect(parseMessage(reply!).rcode).toBe(RCODE.REFUSED);
    expect(reply!.length).toBeLessThanOrEqual(q.length);

    const insider = await dig(server, ['-b', '127.0.0.2', 'A', 'www.example.org']);
    expect(insider.status).toBe('NOERROR');
    expect(insider.answer.map((f) => f[4])).toEqual([REAL]);
    expect(up.count()).toBe(1);
  });
});

describe('per-client rate limit on forwarded queries', () => {
  test('a burst past the limit is REFUSED for that client only; canonical and cached answers are not limited', async () => {
    const RATE = 5;
    const up = await fakeUpstream({ kind: 'answer', address: REAL });
    const clock = frozenClock();
    const d = await startDaemon({ upstreams: [up.address], rateLimit: RATE }, { now: clock.now });
    cleanup.push(() => d.close(0));
    const server = d.addresses.dns;
    const [flooder, neighbour, warmer] = await Promise.all([client('127.0.0.2'), client('127.0.0.3'), client('127.0.0.4')]);

    expect((await warmer.ask(server, { name: 'cached.example.org' })).msg?.rcode).toBe(RCODE.NOERROR);
    const before = up.count();

    // 30 distinct names at once (no cache hits), with the clock standing still: no refill.
    const burst = await Promise.all(Array.from({ length: 30 }, (_, i) => flooder.ask(server, { name: `flood${i}.example.org` })));
    const rcodes = burst.map((r) => r.msg?.rcode);
    const answered = rcodes.filter((r) => r === RCODE.NOERROR).length;
    const refusedCount = rcodes.filter((r) => r === RCODE.REFUSED).length;
    expect(answered + refusedCount).toBe(30);
    expect(answered).toBeGreaterThanOrEqual(RATE);
    expect(answered).toBeLessThanOrEqual(RATE * 2);
    expect(up.count() - before).toBe(answered);
    const dropped = (await d.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'ratelimit')?.value;
    expect(dropped).toBe(refusedCount);

    // The flooder still gets canonical and cached answers.
    const canonical = await flooder.ask(server, { name: 'api.localhost', type: T.SRV });
    expect(canonical.msg?.rcode).toBe(RCODE.NOERROR);
    expect((await flooder.ask(server, { name: 'cached.example.org' })).msg?.answers.map((a) => a.data)).toEqual([REAL]);
    expect((await flooder.ask(server, { name: 'one-more.example.org' })).msg?.rcode).toBe(RCODE.REFUSED);

    // Another client is unaffected.
    const others = await Promise.all(Array.from({ length: RATE }, (_, i) => neighbour.ask(server, { name: `calm${i}.example.org` })));
    expect(others.map((r) => r.msg?.rcode)).toEqual(Array(RATE).fill(RCODE.NOERROR));

    // A second later the flooder's bucket has refilled.
    clock.advance(1000);
    expect((await flooder.ask(server, { name: 'later.example.org' })).msg?.rcode).toBe(RCODE.NOERROR);
  });
});

describe('cap on upstream queries in flight', () => {
  test('beyond the cap: SERVFAIL at once, the upstream never sees more than the cap, memory stays bounded', { timeout: 30_000 }, async () => {
    const CAP = 4;
    const up = await fakeUpstream({ kind: 'silent' });
    const d = await startDaemon({ upstreams: [up.address], maxInflight: CAP, upstreamTimeoutMs: 2000 });
    cleanup.push(() => d.close(0));
    const server = d.addresses.dns;
    const c = await client('127.0.0.2');

    let occupiedDone = 0;
    const occupying = Array.from({ length: CAP }, (_, i) =>
      c.ask(server, { name: `hold${i}.example.org` }, 8000).then((r) => {
        occupiedDone++;
        return r;
      }),
    );
    const deadline = performance.now() + 5000;
    while (up.count() < CAP && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(up.count()).toBe(CAP);

    // 2,000 more distinct questions in bursts of 100: each SERVFAIL while the first ones still wait.
    let servfail = 0;
    let other = 0;
    let maxGauge = 0;
    for (let b = 0; b < 20; b++) {
      const replies: { msg: Message | null }[] = await Promise.all(Array.from({ length: 100 }, (_, i) => c.ask(server, { name: `over${b}-${i}.example.org` }, 3000)));
      for (const r of replies) {
        if (r.msg?.rcode === RCODE.SERVFAIL) servfail++;
        else other++;
      }
      maxGauge = Math.max(maxGauge, (await d.metrics.inflight.get()).values[0]?.value ?? 0);
    }
    expect(occupiedDone).toBe(0);
    expect(servfail).toBe(2000);
    expect(other).toBe(0);
    expect(up.count()).toBe(CAP);
    expect(maxGauge).toBeLessThanOrEqual(CAP);
    const capped = (await d.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'inflight_cap')?.value;
    expect(capped).toBe(2000);

    // The held ones end at their timeout, with SERVFAIL; then the cap is free again.
    const held = await Promise.all(occupying);
    expect(held.map((r) => r.msg?.rcode)).toEqual(Array(CAP).fill(RCODE.SERVFAIL));
    up.mode = { kind: 'answer', address: REAL };
    expect((await c.ask(server, { name: 'free-again.example.org' })).msg?.answers.map((a) => a.data)).toEqual([REAL]);
  });

  test('identical questions in flight share one upstream query', async () => {
    const up = await fakeUpstream({ kind: 'delay', ms: 300, address: REAL });
    const d = await startDaemon({ upstreams: [up.address] });
    cleanup.push(() => d.close(0));
    // Client on 127.0.0.1, the upstream's own address: a local upstream and local clients are the
    // common case, and same-address duplicates must not be mistaken for a forwarding loop.
    const c = await client('127.0.0.1');
    const replies = await Promise.all(Array.from({ length: 50 }, () => c.ask(d.addresses.dns, { name: 'popular.example.org' })));
    expect(replies.map((r) => r.msg?.answers.map((a) => a.data))).toEqual(Array(50).fill([REAL]));
    expect(up.count()).toBe(1);
  });

  // Regression (CI, 2026-11-24): the fuzz test's concurrent `. A` queries got SERVFAIL, because a
  // name without letters cannot be case-marked, so every duplicate looked like our query coming back.
  test.each([
    ['the root, which has no letters to mark', '.'],
    ['a name of digits', '1.2.3'],
    ['a two-letter name', 'a.b'],
    ['a name spelled in mixed case by the clients', 'PoPuLaR.ExAmPlE.OrG'],
  ])('identical questions in flight are shared, never taken for a loop: %s', async (_why, name) => {
    const up = await fakeUpstream({ kind: 'delay', ms: 300, address: REAL });
    const d = await startDaemon({ upstreams: [up.address] });
    cleanup.push(() => d.close(0));
    const c = await client('127.0.0.1');
    const replies = await Promise.all(Array.from({ length: 30 }, () => c.ask(d.addresses.dns, { name })));
    expect(replies.map((r) => [r.msg?.rcode, r.msg?.answers.map((a) => a.data)])).toEqual(Array(30).fill([RCODE.NOERROR, [REAL]]));
    expect(up.count()).toBe(1);
    const loops = (await d.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'forward_loop');
    expect(loops).toBeUndefined();
  });
});

describe('forwarding loop', () => {
  test('`canonport serve` with itself as upstream refuses to start, with CP_FORWARD_LOOP', async () => {
    const port = await freePort();
    const r = await runCli(['serve', '--dns', `127.0.0.1:${port}`, '--upstream', `127.0.0.1:${port}`, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0']);
    expect(r.code).toBeGreaterThan(0);
    expect(r.stderr).toContain('CP_FORWARD_LOOP');
    expect(r.stderr).toContain(`127.0.0.1:${port}`);
  });

  test('Daemon.start rejects with CP_FORWARD_LOOP', async () => {
    const port = await freePort();
    const err = await startDaemon({ dns: `127.0.0.1:${port}`, upstreams: [`127.0.0.1:${port}`] }).then(
      (d) => d.close(0).then(() => null),
      (e: unknown) => e,
    );
    expect(isCanonportError(err, 'CP_FORWARD_LOOP')).toBe(true);
  });
});
