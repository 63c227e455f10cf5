import { Resolver } from 'node:dns/promises';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { tempDir } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { RawAds, type DecodedResponse } from './helpers/xds.js';
import { API, API_PORT, NOT_SERVED, ZONE, loopbackHost, metricTotal, startXdsDaemon, type RegistrySpec, type XdsDaemon } from './helpers/xds-daemon.js';
import { base32Port } from '../src/scheme/index.js';
import { formatHostPort } from '../src/config/address.js';
import { TypeUrl, type ResourceType } from '../src/xds/protos.js';

/**
 * The ADS protocol against the real daemon, from a raw client writing every
 * DiscoveryRequest by hand: what a registry reload, a hosts-file edit and
 * shutdown send down an open stream. "Nothing was sent" is checked with a
 * barrier: once the daemon has looked the subscribed names up again (the
 * discovery's lookups are counted, not replaced), a request that must be
 * answered is sent, and the daemon's push counter must have moved by that
 * one answer alone.
 */

const H = loopbackHost(6);
const H2 = loopbackHost(7);
const TYPES: ResourceType[] = ['listener', 'route', 'cluster', 'endpoint'];

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  [k: string]: unknown;
}

let cp: XdsDaemon | undefined;
let logs: LogLine[];
let lookups: MockInstance;
const streams: RawAds[] = [];

async function start(spec: RegistrySpec, hostsFile?: string, now?: () => number): Promise<XdsDaemon> {
  logs = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  cp = await startXdsDaemon(spec, { logger: pino({ level: 'info' }, sink), ...(hostsFile ? { hostsFile } : {}), ...(now ? { now } : {}) });
  lookups = vi.spyOn(cp.daemon.discovery, 'lookup');
  return cp;
}

afterEach(async () => {
  for (const s of streams.splice(0)) s.cancel();
  await cp?.close(200);
  cp = undefined;
});

function ads(): RawAds {
  const s = new RawAds(cp!.address);
  streams.push(s);
  return s;
}

const pushes = () => metricTotal(cp!.daemon.metrics.xdsPushes);

function endpointsOf(r: DecodedResponse): string[] {
  const groups = r.resources[0]!.endpoints as Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }> }>;
  return groups.flatMap((g) => g.lb_endpoints.map((e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`)).sort();
}

/** Subscribes `names` in all four types as a gRPC client does, ACKing each; returns the endpoint answer. */
async function subscribeAll(s: RawAds, names: string[]): Promise<DecodedResponse> {
  let eds: DecodedResponse | undefined;
  for (const type of TYPES) {
    s.send(type, names);
    const r = await s.next();
    expect(r.type_url).toBe(TypeUrl[type]);
    s.ack(r, names);
    if (type === 'endpoint') eds = r;
  }
  await expect.poll(() => metricTotal(cp!.daemon.metrics.xdsAcks)).toBeGreaterThanOrEqual(4);
  return eds!;
}

/** Waits (wide bound) until the discovery has been asked `n` more times since `before`, and what followed has run. */
async function lookedUp(before: number, n: number): Promise<void> {
  await expect.poll(() => lookups.mock.calls.length, { timeout: 5000, interval: 5 }).toBeGreaterThanOrEqual(before + n);
  await settled();
}

/** Every lookup started so far has settled, its answer is applied and each stream's flush has run. */
async function settled(): Promise<void> {
  await Promise.allSettled(lookups.mock.results.map((r) => r.value as Promise<unknown>));
  // The answers are applied, and each stream's flush (setImmediate) has run.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 20));
}

/**
 * Asks for the listener afresh (no nonce: the daemon must answer) and
 * checks this answer is the only response written since `pushesBefore`;
 * ACKs it.
 */
async function barrier(s: RawAds, names: string[], pushesBefore: number): Promise<void> {
  s.send('listener', names);
  const r = await s.next();
  expect(r.type_url, 'the first response after the barrier request is its answer').toBe(TypeUrl.listener);
  expect(await pushes(), 'responses written besides the barrier answer').toBe(pushesBefore + 1);
  expect(s.pending()).toBe(0);
  s.ack(r, names);
}

describe('registry reloads on an open stream', () => {
  it('sends nothing for reloads that change no answer, and only the ClusterLoadAssignment for a pin', async () => {
    await start({ hosts: { [API]: [H] } });
    const s = ads();
    expect(endpointsOf(await subscribeAll(s, [API]))).toEqual([`${H}:${API_PORT}`]);

    // 1. daemon.reload() with the file untouched (what SIGHUP does).
    let p0 = await pushes();
    let l0 = lookups.mock.calls.length;
    expect((await cp!.daemon.reload()).ok).toBe(true);
    await lookedUp(l0, 1);
    await barrier(s, [API], p0);

    // 2. The file rewritten with only a comment changed: the watcher reloads, nothing is sent.
    p0 = await pushes();
    l0 = lookups.mock.calls.length;
    let r0 = cp!.reloads();
    cp!.rewrite({ hosts: { [API]: [H] }, note: 'a comment, nothing else' });
    await cp!.reloaded(r0 + 1);
    await lookedUp(l0, 1);
    await barrier(s, [API], p0);

    // 3. Another service's entry changes: api's answer does not, nothing is sent.
    p0 = await pushes();
    l0 = lookups.mock.calls.length;
    r0 = cp!.reloads();
    cp!.rewrite({ hosts: { [API]: [H], [`web.${ZONE}`]: [H2] }, pins: { web: 15000 } });
    await cp!.reloaded(r0 + 1);
    await lookedUp(l0, 1);
    await barrier(s, [API], p0);

    // 4. api pinned to another port: exactly one response, the ClusterLoadAssignment with the new port.
    const pinned = await freePort(H);
    p0 = await pushes();
    cp!.rewrite({ hosts: { [API]: [H], [`web.${ZONE}`]: [H2] }, pins: { web: 15000, api: pinned } });
    const eds = await s.next();
    expect(eds.type_url).toBe(TypeUrl.endpoint);
    expect(endpointsOf(eds)).toEqual([`${H}:${pinned}`]);
    s.ack(eds, [API]);
    await settled();
    await barrier(s, [API], p0 + 1);
    expect(await metricTotal(cp!.daemon.metrics.xdsNacks)).toBe(0);
  });

  it('leaves a name the daemon cannot answer out, beside the names it can, until a reload makes it answerable', async () => {
    await start({ hosts: { [API]: [H] } });
    const s = ads();
    const names = [API, NOT_SERVED];
    s.send('listener', names);
    const lds = await s.next();
    expect(lds.names).toEqual([API]);
    s.ack(lds, names);
    s.send('cluster', names);
    const cds = await s.next();
    expect(cds.names).toEqual([API]);
    s.ack(cds, names);
    // EDS cannot say "absent": a request for the unknown name alone gets no answer at all.
    const p0 = await pushes();
    s.send('endpoint', [NOT_SERVED]);
    await settled();
    await barrier(s, names, p0);

    // The registry starts serving the name's zone: it appears in the next Listener and Cluster answers.
    cp!.rewrite({ zones: [ZONE, 'not-served.example'], hosts: { [API]: [H], [NOT_SERVED]: [H2] } });
    const seen = new Map<string, string[]>();
    while (seen.size < 3) {
      const r = await s.next();
      seen.set(r.type_url, r.names);
      s.ack(r, r.type_url === TypeUrl.endpoint ? [NOT_SERVED] : names);
      if (r.type_url === TypeUrl.endpoint) expect(endpointsOf(r)).toEqual([`${H2}:${API_PORT}`]);
    }
    expect([...(seen.get(TypeUrl.listener) ?? [])].sort()).toEqual([...names].sort());
    expect([...(seen.get(TypeUrl.cluster) ?? [])].sort()).toEqual([...names].sort());
    expect(seen.get(TypeUrl.endpoint)).toEqual([NOT_SERVED]);
  });

  it('pushes a hosts-file edit to a name the registry does not list', async () => {
    const hostsFile = join(tempDir(), 'hosts');
    writeFileSync(hostsFile, `127.0.0.1 localhost\n${H} web.${ZONE}\n`);
    // The daemon's clock, which the test moves on instead of waiting out the hosts file's re-read interval.
    let skew = 0;
    await start({ hosts: { [API]: [H] } }, hostsFile, () => Date.now() + skew);
    const s = ads();
    const web = `web.${ZONE}`;
    expect(endpointsOf(await subscribeAll(s, [web]))).toEqual([`${H}:${base32Port('web')}`]);
    writeFileSync(hostsFile, `127.0.0.1 localhost\n${H2} web.${ZONE}\n`);
    // The hosts file is re-read at most every 5 s (of the daemon's clock: moved past it here) and polled every 2 s
    // (real time): the edit is pushed at the next poll; a wide bound.
    skew += 5_000;
    const moved = await s.next(15_000);
    expect(moved.type_url).toBe(TypeUrl.endpoint);
    expect(endpointsOf(moved)).toEqual([`${H2}:${base32Port('web')}`]);
  });
});

describe('name forms', () => {
  it('answers every form of a name with the endpoints DNS gives it: _svc._tcp, a version, any case, a trailing dot, a :port', async () => {
    const v2 = `v2.user.${ZONE}`;
    await start({ hosts: { [API]: [H], [v2]: [H2] }, versioned: { user: { id: 1, versions: [1, 2] } } });
    const dns = new Resolver({ timeout: 2000, tries: 1 });
    dns.setServers([formatHostPort(cp!.daemon.addresses.dns)]);
    /** What DNS answers for the name: SRV port × the target's A records. */
    const viaDns = async (name: string) => {
      const srv = await dns.resolveSrv(name);
      const out = await Promise.all(srv.map(async (r) => (await dns.resolve4(r.name)).map((a) => `${a}:${r.port}`)));
      return out.flat().sort();
    };
    const forms: Array<[asked: string, dnsName: string]> = [
      [`_api._tcp.${ZONE}`, `_api._tcp.${ZONE}`],
      ['API.Cluster-1.Example.COM.', API],
      [`${API}:9999`, API],
      [v2, v2],
    ];
    for (const [asked, dnsName] of forms) {
      const want = await viaDns(dnsName);
      expect(want.length, `DNS answers ${dnsName}`).toBeGreaterThan(0);
      const eds = await subscribeAll(ads(), [asked]);
      expect(eds.names, asked).toEqual([asked]);
      expect(endpointsOf(eds), asked).toEqual(want);
    }
    // The version's own port (seed 000: 8 ‖ id 1 ‖ version 2).
    expect(await viaDns(v2)).toEqual([`${H2}:8102`]);
  });
});

describe('shutdown', () => {
  it('ends every open stream with UNAVAILABLE at once, without waiting out the grace period', async () => {
    await start({ hosts: { [API]: [H] } });
    const a = ads();
    const b = ads();
    await subscribeAll(a, [API]);
    b.send('listener', [API, NOT_SERVED]);
    await b.next();
    expect(await metricTotal(cp!.daemon.metrics.xdsClients)).toBe(2);

    const metrics = cp!.daemon.metrics;
    // A long grace period: the streams must end because the daemon ends them, not because it ran out.
    await cp!.close(20_000);
    cp = undefined;
    for (const s of [a, b]) {
      const status = await s.ended;
      expect(status.code).toBe(grpc.status.UNAVAILABLE);
      expect(status.details).toMatch(/shutting down/);
    }
    expect(await metricTotal(metrics.xdsStreamsEnded, { reason: 'shutdown' })).toBe(2);
    expect(await metricTotal(metrics.xdsClients)).toBe(0);
    expect(logs.filter((l) => /still open after the grace period/.test(l.msg))).toEqual([]);
    expect(logs.filter((l) => l.level >= 50)).toEqual([]);
  });
});
