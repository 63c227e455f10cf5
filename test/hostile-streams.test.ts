import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { canonportFrom, grpcFlood, probeDns } from './helpers/hostile.js';
import { createHostNet, type Host, type HostNet } from './helpers/netns.js';
import { metric, rssOf, scrape, startServe, type ServeProcess } from './helpers/serve-process.js';

/**
 * Issue 21, findings 2, 5 and 9: what an *allowed* client can do with
 * streams, in the namespace lab (test/helpers/netns.ts). The daemon is a
 * real `canonport serve` on the bridge address; the flooder is an allowed
 * host running helpers/grpc-flood.mjs, another allowed host (`bystander`)
 * must still be served, and this namespace asks DNS meanwhile. Each case
 * is bounded: a few hundred streams, a few hundred thousand names asked
 * for, seconds.
 */

const ZONE = 'streams.example';

let net: HostNet;
let flooder: Host;
let bystander: Host;
const running: ServeProcess[] = [];
const closers: (() => Promise<void>)[] = [];

beforeAll(async () => {
  net = await createHostNet({ hosts: 2 });
  [flooder, bystander] = net.hosts as [Host, Host];
}, 60_000);

afterAll(async () => {
  for (const s of running) await s.stop();
  for (const c of closers) await c();
  net?.cleanup();
});

async function serve(extra: string[] = []): Promise<ServeProcess> {
  const s = await startServe(['--zone', ZONE, '--grpc-allow', `${net.subnet}.0/24`, '--http-allow', `${net.subnet}.0/24`, ...extra], {
    listen: ['--dns', '127.0.0.1:0', '--grpc', `${net.gateway}:0`, '--http', `${net.gateway}:0`],
  });
  running.push(s);
  return s;
}

/** `canonport resolve` from the bystander, as a workload there would: true when it got the port. */
async function bystanderResolves(s: ServeProcess): Promise<boolean> {
  const r = await canonportFrom(bystander, ['resolve', '--daemon', `${net.gateway}:${s.grpc.port}`, 'api.localhost']);
  return r.code === 0 && r.stdout.includes('port 12082');
}

describe('finding 2: an xDS flood from an allowed client', () => {
  it('200 ADS streams × 1,000 distinct names: the client gets its share (16,384 names), the rest is refused RESOURCE_EXHAUSTED; DNS answers, another client is served, and memory returns', { timeout: 120_000 }, async () => {
    const s = await serve();
    const target = `${net.gateway}:${s.grpc.port}`;
    // The daemon parses Envoy's protos at the first xDS message (about 150–500 ms, once per process: xds/protos.ts);
    // that one-time cost is not the flood's, so the bystander's first stream pays it before anything is measured. It is
    // held until its answer came (untilResponses), not for a fixed second: on a loaded machine the parse alone took longer.
    expect((await grpcFlood(bystander, 'xds', target, { streams: 1, names: 1, holdMs: 0, zone: 'localhost', untilResponses: 1 })).responses).toBe(1);
    const rssBefore = await rssOf(s.pid);
    // localhost names resolve at once: the daemon's own work is what is measured, not an upstream's.
    const attack = grpcFlood(flooder, 'xds', target, { streams: 200, names: 1000, holdMs: 8000, zone: 'localhost' });
    const dns = probeDns(s.dns, `api.${ZONE}`, attack, { everyMs: 200, timeoutMs: 1000 });
    await new Promise((r) => setTimeout(r, 3000));
    const other = await grpcFlood(bystander, 'xds', target, { streams: 1, names: 10, holdMs: 1500, zone: ZONE });
    const resolved = await bystanderResolves(s);
    const rssDuring = await rssOf(s.pid);
    const flood = await attack;
    const probe = await dns;
    // The flooder holds at most its share: 16 streams of 1,000 names; the others were refused.
    expect(flood.ended.RESOURCE_EXHAUSTED).toBeGreaterThanOrEqual(180);
    expect(flood.openAtEnd).toBeLessThanOrEqual(17);
    // Meanwhile the bystander's stream got its answer and stayed open; Resolve worked; DNS never missed.
    expect(other.responses).toBeGreaterThanOrEqual(1);
    expect(other.openAtEnd).toBe(1);
    expect(resolved).toBe(true);
    expect(probe.failed, `DNS during the flood: ${JSON.stringify(probe)}`).toBe(0);
    // Memory stayed bounded while it ran (540 MB in the issue, from 400 streams), and is let go after: every stream and
    // subscription released (what the heap then holds is garbage for the next collection; bench/hostile.ts measures it).
    expect(rssDuring - rssBefore).toBeLessThan(150e6);
    await expect.poll(async () => [metric(await scrape(s.http), 'canonport_xds_subscriptions'), metric(await scrape(s.http), 'canonport_xds_clients')], { timeout: 10_000 }).toEqual([0, 0]);
    console.log(`xDS flood: RSS ${Math.round(rssBefore / 1e6)} MB before, ${Math.round(rssDuring / 1e6)} MB during; DNS ${JSON.stringify(probe)}; flood ${JSON.stringify(flood)}`);
  });
});

describe('finding 5: SIGTERM within a bounded time whatever is running', () => {
  it('SIGTERM in the middle of an xDS flood: the daemon exits 0 within its drain bound', { timeout: 120_000 }, async () => {
    // The per-client bound raised past the flood: the daemon must stop even while it has a great deal to do.
    const s = await serve(['--xds-max-names-per-client', '1000000', '--xds-max-names', '1000000', '--xds-max-streams-per-client', '1000']);
    const attack = grpcFlood(flooder, 'xds', `${net.gateway}:${s.grpc.port}`, { streams: 300, names: 1000, holdMs: 30_000, zone: 'localhost' });
    await new Promise((r) => setTimeout(r, 4000));
    const t0 = performance.now();
    s.proc.kill('SIGTERM');
    const exit = await Promise.race([s.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    const ms = performance.now() - t0;
    expect(exit, 'no exit within 20 s of SIGTERM').not.toBeNull();
    expect(exit).toEqual({ code: 0, signal: null });
    // serve drains for up to 5 s; a loaded machine gets as much again on top.
    expect(ms).toBeLessThan(10_000);
    await attack;
  });
});

describe('finding 9: Watch streams', () => {
  it('3,000 Watch streams over 2,000 distinct names from one client: 1,024 held, the rest refused RESOURCE_EXHAUSTED, none ended UNAVAILABLE; DNS forwarding for others goes on, and memory returns', { timeout: 120_000 }, async () => {
    // A slow upstream and a small forwarder cap: Watch resolutions that used the forwarder's share would fail DNS
    // clients, and fail themselves at its cap (UNAVAILABLE). The upstream answers in 300 ms; it gets 3 s before
    // a query counts as timed out, so a loaded machine's slowness is not mistaken for the cap (the test's subject).
    const up = await FakeUpstream.start({ kind: 'delay', ms: 300, address: '192.0.2.9' });
    closers.push(() => up.close());
    const s = await serve(['--upstream', up.address, '--max-inflight', '64', '--upstream-timeout', '3000']);
    const target = `${net.gateway}:${s.grpc.port}`;
    const rssBefore = await rssOf(s.pid);
    const attack = grpcFlood(flooder, 'watch', target, { streams: 3000, names: 2000, holdMs: 8000, zone: ZONE });
    await new Promise((r) => setTimeout(r, 3000));
    // A forwarded name, asked from loopback (allowed to recurse), while Watch resolutions keep the upstream busy.
    const forwarded = await probeDns(s.dns, (i) => `www${i}.example.org`, new Promise((r) => setTimeout(r, 2000)), { everyMs: 100, timeoutMs: 2000, min: 5, type: 'A' });
    const other = await grpcFlood(bystander, 'watch', target, { streams: 5, names: 5, holdMs: 1500, zone: ZONE });
    const rssDuring = await rssOf(s.pid);
    const flood = await attack;
    expect(flood.ended.UNAVAILABLE ?? 0).toBe(0);
    expect(flood.ended.RESOURCE_EXHAUSTED).toBe(3000 - 1024);
    expect(flood.openAtEnd).toBe(1024);
    expect(other.openAtEnd).toBe(5);
    expect(forwarded.failed, `forwarded queries during the flood: ${JSON.stringify(forwarded)}`).toBe(0);
    expect(rssDuring - rssBefore).toBeLessThan(150e6);
    await expect.poll(async () => metric(await scrape(s.http), 'canonport_grpc_watch_streams'), { timeout: 10_000 }).toBe(0);
  });
});
