import * as grpcXds from '@grpc/grpc-js-xds';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.js';
import { MemoryDiscovery } from './helpers/xds-discovery.js';
import { XdsTestParts, bootstrapFile, only, pollUntil, startXdsServer, type XdsServer } from './helpers/xds.js';

/**
 * The stock Node client, @grpc/grpc-js-xds: register(), then
 * `new Client('xds:///api.cluster-1.example.com')`, with the bootstrap
 * printed by `canonport xds-bootstrap` in GRPC_XDS_BOOTSTRAP. The same
 * scenarios as the Python test, on one channel.
 */

const NAME = 'api.cluster-1.example.com';

let discovery: MemoryDiscovery;
let xds: XdsServer;
const parts = new XdsTestParts();

beforeAll(async () => {
  discovery = new MemoryDiscovery();
  xds = await startXdsServer(discovery);
  // grpc-js-xds reads the bootstrap once per process, at the first xds:/// channel.
  process.env.GRPC_XDS_BOOTSTRAP = await bootstrapFile(xds.address);
  grpcXds.register();
});

afterAll(async () => {
  parts.close();
  await xds?.close();
});

const backend = (address: string, port: number) => parts.backend(address, port);
const client = (target: string) => parts.nodeClient(target);

describe('Node (@grpc/grpc-js-xds) through canonport xDS', () => {
  it('reaches the service, follows a port change within 2 s, spreads over two hosts, and leaves a stopped one', async () => {
    const p1 = await freePort('127.0.0.2');
    const p2 = await freePort('127.0.0.2');
    const a = await backend('127.0.0.2', p1);
    const b = await backend('127.0.0.2', p2);
    discovery.set(NAME, p1, ['127.0.0.2']);

    const calls = client(`xds:///${NAME}`);
    const first = await pollUntil(calls, only(a.id), 20_000);
    expect(first.tally).toEqual({ [a.id]: 10 });
    expect(xds.handle.streams()).toBe(1);

    discovery.set(NAME, p2, ['127.0.0.2']);
    const moved = await pollUntil((n) => calls(n, 1000), only(b.id), 2000, 1);
    expect(moved.ok, `still ${JSON.stringify(moved.tally)} after ${moved.elapsedMs} ms`).toBe(true);
    expect(moved.elapsedMs).toBeLessThanOrEqual(2000);

    const c = await backend('127.0.0.3', p2);
    discovery.set(NAME, p2, ['127.0.0.2', '127.0.0.3']);
    // Once both connections are up, round robin alternates: a round of 20 splits evenly.
    const spread = await pollUntil(calls, (t) => (t[b.id] ?? 0) + (t[c.id] ?? 0) === 20 && Math.abs((t[b.id] ?? 0) - (t[c.id] ?? 0)) <= 2, 10_000, 20);
    expect(spread.ok, JSON.stringify(spread.tally)).toBe(true);
    expect(spread.tally[b.id]).toBeGreaterThanOrEqual(9);
    expect(spread.tally[c.id]).toBeGreaterThanOrEqual(9);

    c.stop();
    const left = await pollUntil(calls, only(b.id), 10_000, 20);
    expect(left.ok, JSON.stringify(left.tally)).toBe(true);
    expect(left.tally).toEqual({ [b.id]: 20 });

    // The host is also withdrawn from the discovery, then comes back on a new address.
    discovery.set(NAME, p2, ['127.0.0.2']);
    const d = await backend('127.0.0.4', p2);
    discovery.set(NAME, p2, ['127.0.0.4']);
    const replaced = await pollUntil(calls, only(d.id), 2000, 5);
    expect(replaced.ok, JSON.stringify(replaced.tally)).toBe(true);
  });

  it('fails calls to a name the discovery does not know, then reaches it once it appears, on the same channel', async () => {
    const name = 'late.cluster-1.example.com';
    const port = await freePort('127.0.0.2');
    const late = await backend('127.0.0.2', port);
    const calls = client(`xds:///${name}`);
    const absent = await calls(1, 1000);
    expect(Object.keys(absent)).toHaveLength(1);
    expect(Object.keys(absent)[0]).toMatch(/^error:(UNAVAILABLE|DEADLINE_EXCEEDED)$/);

    discovery.set(name, port, ['127.0.0.2']);
    const found = await pollUntil(calls, only(late.id), 10_000, 5);
    expect(found.ok, JSON.stringify(found.tally)).toBe(true);
  });

  it('keeps one ADS stream for the process, ACKing every type and NACKing nothing', async () => {
    // grpc-js-xds shares one ADS stream among all channels of a process.
    expect(xds.handle.streams()).toBe(1);
    const acks = await xds.metrics.xdsAcks.get();
    const nacks = await xds.metrics.xdsNacks.get();
    const byType = (m: typeof acks) => Object.fromEntries(m.values.map((v) => [v.labels.type, v.value]));
    expect(Object.keys(byType(acks)).sort()).toEqual(['cluster', 'endpoint', 'listener', 'route']);
    expect(nacks.values.reduce((s, v) => s + v.value, 0)).toBe(0);
  });
});
