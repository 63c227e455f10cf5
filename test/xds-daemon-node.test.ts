import * as grpcXds from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.js';
import { XdsTestParts, only, pollUntil } from './helpers/xds.js';
import { API, API_PORT, NOT_SERVED, loopbackHost, metricTotal, startXdsDaemon, type XdsDaemon } from './helpers/xds-daemon.js';

/**
 * The stock Node client, @grpc/grpc-js-xds (`register()`, then
 * `new Client('xds:///api.cluster-1.example.com')`), against the real
 * daemon with the bootstrap from `canonport xds-bootstrap --server
 * <daemon>`, the registry file rewritten under it. The same scenarios as
 * the Python test, on one channel. Backends are grpc-js servers on two
 * loopback addresses ("hosts").
 */

const H1 = loopbackHost(4);
const H2 = loopbackHost(5);

let cp: XdsDaemon;
const parts = new XdsTestParts();

beforeAll(async () => {
  cp = await startXdsDaemon({ hosts: { [API]: [H1] } });
  // grpc-js-xds reads the bootstrap once per process, at the first xds:/// channel.
  process.env.GRPC_XDS_BOOTSTRAP = cp.bootstrap;
  grpcXds.register();
});

afterAll(async () => {
  parts.close();
  await cp?.close();
});

const backend = (address: string, port: number) => parts.backend(address, port);
const client = (target: string) => parts.nodeClient(target);
let api: ReturnType<typeof client>;

describe('Node (@grpc/grpc-js-xds) through the daemon', () => {
  it('follows the registry on one channel: canonical port, a pin within 2 s, a second host, a stopped host', async () => {
    const a = await backend(H1, API_PORT);
    api = client(`xds:///${API}`);

    const first = await pollUntil(api, only(a.id), 20_000);
    expect(first.tally).toEqual({ [a.id]: 10 });
    expect(a.id).toBe(`${H1}:12082`);
    expect(await metricTotal(cp.daemon.metrics.xdsClients)).toBe(1);

    // The registry pins api to another port: the same channel follows within 2 s of the file's rewrite.
    const pinned = await freePort(H1);
    const b = await backend(H1, pinned);
    const reloads = cp.reloads();
    cp.rewrite({ hosts: { [API]: [H1] }, pins: { api: pinned } });
    const moved = await pollUntil((n) => api(n, 1000), only(b.id), 2000, 1);
    expect(moved.ok, `still ${JSON.stringify(moved.tally)} after ${moved.elapsedMs} ms`).toBe(true);
    expect(moved.elapsedMs).toBeLessThanOrEqual(2000);
    expect(cp.reloads()).toBe(reloads + 1);

    // A second host in `hosts`: calls spread over both.
    const c = await backend(H2, pinned);
    cp.rewrite({ hosts: { [API]: [H1, H2] }, pins: { api: pinned } });
    const spread = await pollUntil(api, (t) => (t[b.id] ?? 0) + (t[c.id] ?? 0) === 20 && Math.abs((t[b.id] ?? 0) - (t[c.id] ?? 0)) <= 2, 10_000, 20);
    expect(spread.ok, JSON.stringify(spread.tally)).toBe(true);
    expect(spread.tally[b.id]).toBeGreaterThanOrEqual(9);
    expect(spread.tally[c.id]).toBeGreaterThanOrEqual(9);

    // One host's backend stops (the registry still lists it): calls go to the other.
    c.stop();
    const left = await pollUntil(api, only(b.id), 10_000, 20);
    expect(left.ok, JSON.stringify(left.tally)).toBe(true);
    expect(left.tally).toEqual({ [b.id]: 20 });
  });

  it('leaves a name the daemon cannot answer absent without disturbing the other name on the same stream', async () => {
    const absent = client(`xds:///${NOT_SERVED}`);
    const failed = await absent(2, 1000);
    expect(Object.keys(failed), JSON.stringify(failed)).toHaveLength(1);
    expect(Object.keys(failed)[0]).toMatch(/^error:(UNAVAILABLE|DEADLINE_EXCEEDED)$/);
    const still = await api(10);
    expect(Object.keys(still), JSON.stringify(still)).toHaveLength(1);
    expect(Object.keys(still)[0]).toMatch(/^127\.[\d.]+:\d+$/);
    // grpc-js-xds shares one ADS stream among the process's channels; nothing was NACKed.
    expect(await metricTotal(cp.daemon.metrics.xdsClients)).toBe(1);
    expect(await metricTotal(cp.daemon.metrics.xdsNacks)).toBe(0);
    expect(await metricTotal(cp.daemon.metrics.xdsSubscriptions, { type: 'listener' })).toBe(2);
    expect(await metricTotal(cp.daemon.metrics.xdsSubscriptions, { type: 'cluster' })).toBe(1);
  });
});
