import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './helpers/ports.js';
import { MemoryDiscovery } from './helpers/xds-discovery.js';
import { PythonXdsClient, XdsTestParts, bootstrapFile, only, pollUntil, requirePythonGrpc, startXdsServer, type XdsServer } from './helpers/xds.js';

/**
 * The stock Python client (Debian's python3-grpcio: gRPC's C core and its
 * xDS resolver) dials xds:///api.cluster-1.example.com with the bootstrap
 * printed by `canonport xds-bootstrap`, and follows what the discovery
 * says on one channel: a port change, a second host, a host that stops.
 * Backends are real grpc-js servers on distinct loopback addresses
 * (127.0.0.2, 127.0.0.3: distinct "hosts").
 */

const NAME = 'api.cluster-1.example.com';

let discovery: MemoryDiscovery;
let xds: XdsServer;
let bootstrap: string;
const parts = new XdsTestParts();

beforeAll(async () => {
  requirePythonGrpc();
  discovery = new MemoryDiscovery();
  xds = await startXdsServer(discovery);
  bootstrap = await bootstrapFile(xds.address);
});

afterAll(async () => {
  parts.close();
  await xds?.close();
});

const backend = (address: string, port: number) => parts.backend(address, port);

function client(target: string): PythonXdsClient {
  return parts.track(new PythonXdsClient(target, bootstrap));
}


describe('Python (grpcio, C core) through canonport xDS', () => {
  it('reaches the service, follows a port change within 2 s, spreads over two hosts, and leaves a stopped one', async () => {
    const p1 = await freePort('127.0.0.2');
    const p2 = await freePort('127.0.0.2');
    const a = await backend('127.0.0.2', p1);
    const b = await backend('127.0.0.2', p2);
    discovery.set(NAME, p1, ['127.0.0.2']);

    const py = client(`xds:///${NAME}`);
    const first = await pollUntil((n) => py.calls(n), only(a.id), 20_000);
    expect(first.tally, py.stderr.slice(-5).join('\n')).toEqual({ [a.id]: 10 });
    expect(xds.handle.streams()).toBe(1);

    // The discovery moves api to another port: the same channel follows within 2 s.
    discovery.set(NAME, p2, ['127.0.0.2']);
    const moved = await pollUntil((n) => py.calls(n, 1000), only(b.id), 2000, 1);
    expect(moved.ok, `still ${JSON.stringify(moved.tally)} after ${moved.elapsedMs} ms`).toBe(true);
    expect(moved.elapsedMs).toBeLessThanOrEqual(2000);

    // A second host runs api at the same port: calls spread over both (round robin).
    const c = await backend('127.0.0.3', p2);
    discovery.set(NAME, p2, ['127.0.0.2', '127.0.0.3']);
    // Once both connections are up, round robin alternates: a round of 20 splits evenly.
    const spread = await pollUntil((n) => py.calls(n), (t) => (t[b.id] ?? 0) + (t[c.id] ?? 0) === 20 && Math.abs((t[b.id] ?? 0) - (t[c.id] ?? 0)) <= 2, 10_000, 20);
    expect(spread.ok, JSON.stringify(spread.tally)).toBe(true);
    expect(spread.tally[b.id]).toBeGreaterThanOrEqual(9);
    expect(spread.tally[c.id]).toBeGreaterThanOrEqual(9);

    // One host stops (the discovery has not noticed): calls go to the other.
    c.stop();
    const left = await pollUntil((n) => py.calls(n), only(b.id), 10_000, 20);
    expect(left.ok, JSON.stringify(left.tally)).toBe(true);
    expect(left.tally).toEqual({ [b.id]: 20 });
  });

  it('fails calls to a name the discovery does not know, then reaches it once it appears, on the same channel', async () => {
    const name = 'late.cluster-1.example.com';
    const port = await freePort('127.0.0.2');
    const late = await backend('127.0.0.2', port);
    const py = client(`xds:///${name}`);
    // The client waits for the resource (gRPC's does-not-exist timer is 15 s: an empty
    // Listener response only deletes what a client already had), so the call fails.
    const absent = await py.calls(1, 1000);
    expect(Object.keys(absent)).toHaveLength(1);
    expect(Object.keys(absent)[0]).toMatch(/^error:(UNAVAILABLE|DEADLINE_EXCEEDED)$/);

    discovery.set(name, port, ['127.0.0.2']);
    const found = await pollUntil((n) => py.calls(n), only(late.id), 10_000, 5);
    expect(found.ok, JSON.stringify(found.tally)).toBe(true);
  });

  it('reaches the SRV form _api._tcp.NAME and a name with :port, each its own Listener', async () => {
    const port = await freePort('127.0.0.2');
    const srv = await backend('127.0.0.2', port);
    discovery.set('_srvapi._tcp.cluster-1.example.com', port, ['127.0.0.2']);
    discovery.set('srvapi.cluster-1.example.com', port, ['127.0.0.2']);
    const bySrv = client('xds:///_srvapi._tcp.cluster-1.example.com');
    const byPort = client(`xds:///srvapi.cluster-1.example.com:${port}`);
    for (const py of [bySrv, byPort]) {
      const r = await pollUntil((n) => py.calls(n), only(srv.id), 20_000, 5);
      expect(r.ok, `${JSON.stringify(r.tally)} ${py.stderr.slice(-3).join('\n')}`).toBe(true);
    }
  });
});
