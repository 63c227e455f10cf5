import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.js';
import { PythonXdsClient, XdsTestParts, only, pollUntil, requirePythonGrpc } from './helpers/xds.js';
import { API, API_PORT, NOT_SERVED, loopbackHost, metricTotal, startXdsDaemon, type XdsDaemon } from './helpers/xds-daemon.js';

/**
 * The stock Python client (Debian's python3-grpcio: gRPC's C core and its
 * xDS resolver, for /usr/bin/python3) against the real daemon: the
 * bootstrap from `canonport xds-bootstrap --server <daemon>`, one channel
 * to xds:///api.cluster-1.example.com, and the registry file rewritten
 * under the running daemon (its watcher reloads it). Backends are grpc-js
 * servers on api's canonical port on two loopback addresses, which Linux
 * treats as two hosts.
 */

const H1 = loopbackHost(2);
const H2 = loopbackHost(3);

let cp: XdsDaemon;
const parts = new XdsTestParts();
let py: PythonXdsClient | undefined;

beforeAll(async () => {
  requirePythonGrpc();
  cp = await startXdsDaemon({ hosts: { [API]: [H1] } });
});

afterAll(async () => {
  py?.close();
  parts.close();
  await cp?.close();
});

const backend = (address: string, port: number) => parts.backend(address, port);

const why = () => py!.stderr.slice(-5).join('\n');

describe('Python (grpcio, C core) through the daemon', () => {
  it('follows the registry on one channel: canonical port, a pin within 2 s, a second host, a stopped host', async () => {
    const a = await backend(H1, API_PORT);
    py = new PythonXdsClient([`xds:///${API}`, `xds:///${NOT_SERVED}`], cp.bootstrap);

    // Nothing but the name: api's canonical port on the host the registry lists.
    const first = await pollUntil((n) => py!.calls(n), only(a.id), 20_000);
    expect(first.tally, why()).toEqual({ [a.id]: 10 });
    expect(a.id).toBe(`${H1}:12082`);
    expect(await metricTotal(cp.daemon.metrics.xdsClients)).toBe(1);

    // The registry pins api to another port: the same channel follows within 2 s of the file's rewrite.
    const pinned = await freePort(H1);
    const b = await backend(H1, pinned);
    const reloads = cp.reloads();
    cp.rewrite({ hosts: { [API]: [H1] }, pins: { api: pinned } });
    const moved = await pollUntil((n) => py!.calls(n, 1000), only(b.id), 2000, 1);
    expect(moved.ok, `still ${JSON.stringify(moved.tally)} after ${moved.elapsedMs} ms`).toBe(true);
    expect(moved.elapsedMs).toBeLessThanOrEqual(2000);
    // It was the daemon's file watcher that reloaded, once.
    expect(cp.reloads()).toBe(reloads + 1);

    // A second host in `hosts`: calls spread over both (round robin alternates once both are connected).
    const c = await backend(H2, pinned);
    cp.rewrite({ hosts: { [API]: [H1, H2] }, pins: { api: pinned } });
    const spread = await pollUntil((n) => py!.calls(n), (t) => (t[b.id] ?? 0) + (t[c.id] ?? 0) === 20 && Math.abs((t[b.id] ?? 0) - (t[c.id] ?? 0)) <= 2, 10_000, 20);
    expect(spread.ok, JSON.stringify(spread.tally)).toBe(true);
    expect(spread.tally[b.id]).toBeGreaterThanOrEqual(9);
    expect(spread.tally[c.id]).toBeGreaterThanOrEqual(9);

    // One host's backend stops (the registry still lists it): calls go to the other.
    c.stop();
    const left = await pollUntil((n) => py!.calls(n), only(b.id), 10_000, 20);
    expect(left.ok, JSON.stringify(left.tally)).toBe(true);
    expect(left.tally).toEqual({ [b.id]: 20 });
  });

  it('leaves a name the daemon cannot answer absent without disturbing the other name on the same stream', async () => {
    // Channel 1 is xds:///api.not-served.example (outside every zone): its calls fail…
    const absent = await py!.calls(2, 1000, 1);
    expect(Object.keys(absent), JSON.stringify(absent)).toHaveLength(1);
    expect(Object.keys(absent)[0]).toMatch(/^error:(UNAVAILABLE|DEADLINE_EXCEEDED)$/);
    // …while api, on the same process's one ADS stream, keeps answering, and nothing was NACKed.
    const api = await py!.calls(10);
    expect(Object.keys(api), JSON.stringify(api)).toHaveLength(1);
    expect(Object.keys(api)[0]).toMatch(/^127\.[\d.]+:\d+$/);
    expect(await metricTotal(cp.daemon.metrics.xdsClients)).toBe(1);
    expect(await metricTotal(cp.daemon.metrics.xdsNacks)).toBe(0);
    // The absent name is subscribed (the client asked) but never sent: a Listener for api and nothing else.
    expect(await metricTotal(cp.daemon.metrics.xdsSubscriptions, { type: 'listener' })).toBe(2);
    expect(await metricTotal(cp.daemon.metrics.xdsSubscriptions, { type: 'cluster' })).toBe(1);
  });
});
