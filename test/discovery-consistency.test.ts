import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { ErrorCodes } from '../src/errors.js';
import { base32Port } from '../src/scheme/index.js';
import { createCanonportClient, DaemonError, type CanonportClient } from '../src/grpc/canonport-client.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { dig } from './helpers/dig.js';
import { freePort } from './helpers/ports.js';
import { startUnbound, type Unbound } from './helpers/unbound.js';

/**
 * The same question gets the same answer over DNS and gRPC: both format
 * from the discovery core. For each name in the table, a real daemon is
 * asked with dig (SRV, A, AAAA) and with a grpc-js Resolve, and the two
 * must agree: the port, the set of addresses, and why nothing was found
 * (NXDOMAIN ↔ NOT_FOUND/CP_NOT_FOUND, NODATA ↔ NOT_FOUND/CP_NO_ADDRESS,
 * SERVFAIL ↔ UNAVAILABLE). The upstream is a real unbound holding the
 * addresses of one in-zone host; a second daemon has an upstream where
 * nothing listens.
 */

const Z = 'cluster-1.example.com';
const REGISTRY = `zones: [${Z}]
hosts:
  pinned.${Z}: [10.0.0.1, fd00::1]
  shop.${Z}: [10.0.0.2]
services:
  pinned: { port: 4242 }
  user: { id: 1, versions: [1, 2] }
  shop: { block: 7000 }
`;

let unbound: Unbound;
let daemon: Daemon;
let failing: Daemon;
let client: CanonportClient;
let failingClient: CanonportClient;

beforeAll(async () => {
  unbound = await startUnbound({ zones: [Z], localData: [`web.${Z}. 300 IN A 10.0.0.7`, `web.${Z}. 300 IN AAAA fd00::7`] });
  const registry = writeRegistry(REGISTRY);
  daemon = await startDaemon({ registry, upstreams: [`127.0.0.1:${unbound.port}`] });
  failing = await startDaemon({ registry, upstreams: [`127.0.0.1:${await freePort()}`], upstreamTimeoutMs: 200 });
  client = createCanonportClient(daemon.addresses.grpc);
  failingClient = createCanonportClient(failing.addresses.grpc);
});

afterAll(async () => {
  client?.close();
  failingClient?.close();
  await Promise.all([daemon?.close(0), failing?.close(0), unbound?.stop()]);
});

type Outcome =
  | { kind: 'ok'; port: number; addresses: string[] }
  /** DNS: the SRV's port and an rcode for the addresses (NODATA, SERVFAIL); gRPC: status and code. */
  | { kind: 'none'; port?: number | undefined; code?: string; status?: number; rcode?: string };

/** What DNS says: the SRV's port, and the A and AAAA addresses; or why there are none. */
async function overDns(d: Daemon, name: string): Promise<Outcome> {
  const srv = await dig(d.addresses.dns, ['SRV', name]);
  if (srv.status !== 'NOERROR') return { kind: 'none', rcode: srv.status };
  if (srv.answer.length === 0) return { kind: 'none', rcode: 'NOSRV' }; // the name exists and holds no service
  const port = Number(srv.answer[0]![6]);
  const a = await dig(d.addresses.dns, ['A', name]);
  const aaaa = await dig(d.addresses.dns, ['AAAA', name]);
  if (a.status === 'SERVFAIL' || aaaa.status === 'SERVFAIL') return { kind: 'none', port, rcode: 'SERVFAIL' };
  const addresses = [...a.answer, ...aaaa.answer].map((f) => f[4]!).sort();
  if (addresses.length === 0) return { kind: 'none', port, rcode: 'NODATA' };
  return { kind: 'ok', port, addresses };
}

async function overGrpc(c: CanonportClient, name: string): Promise<Outcome> {
  try {
    const r = await c.resolve(name);
    return { kind: 'ok', port: r.port, addresses: [...r.addresses].sort() };
  } catch (err) {
    if (!(err instanceof DaemonError)) throw err;
    return { kind: 'none', code: err.code, status: err.status };
  }
}

/** How a "nothing found" over DNS reads over gRPC. */
const EQUIVALENT: Record<string, { status: number; code: string }> = {
  NXDOMAIN: { status: grpc.status.NOT_FOUND, code: ErrorCodes.NOT_FOUND },
  NOSRV: { status: grpc.status.NOT_FOUND, code: ErrorCodes.NOT_FOUND },
  NODATA: { status: grpc.status.NOT_FOUND, code: ErrorCodes.NO_ADDRESS },
  SERVFAIL: { status: grpc.status.UNAVAILABLE, code: ErrorCodes.UPSTREAM_FAILED },
};

describe('DNS and gRPC give the same answer to the same question', () => {
  it.each([
    ['in-zone, addresses from the registry', `pinned.${Z}`, { port: 4242, addresses: ['10.0.0.1', 'fd00::1'] }],
    ['in-zone, addresses learned from the upstream', `web.${Z}`, { port: base32Port('web'), addresses: ['10.0.0.7', 'fd00::7'] }],
    ['localhost', 'api.localhost', { port: 12082, addresses: ['127.0.0.1', '::1'] }],
    ['block', `shop.${Z}`, { port: 7000, addresses: ['10.0.0.2'] }],
    ['versioned, no address anywhere', `v1.user.${Z}`, { port: 8101, rcode: 'NODATA' }],
    ['pinned, under a sub-label with no address', `pinned.east.${Z}`, { port: 4242, rcode: 'NODATA' }],
    ['an unknown host', `nohost.${Z}`, { port: base32Port('nohost'), rcode: 'NODATA' }],
    ['a version not listed', `v3.user.${Z}`, { rcode: 'NXDOMAIN' }],
    ['vN of a service without versions', `v2.web.${Z}`, { rcode: 'NXDOMAIN' }],
    ['a name that cannot exist', `_x.${Z}`, { rcode: 'NXDOMAIN' }],
    ['the zone apex', Z, { rcode: 'NOSRV' }],
    ['an empty non-terminal', `_tcp.${Z}`, { rcode: 'NOSRV' }],
  ] as const)('%s: %s', async (_what, name, expected) => {
    const dns = await overDns(daemon, name);
    const rpc = await overGrpc(client, name);
    if ('addresses' in expected) {
      expect(dns).toEqual({ kind: 'ok', ...expected });
      expect(rpc).toEqual(dns);
    } else {
      expect(dns).toEqual({ kind: 'none', ...expected });
      expect(rpc).toEqual({ kind: 'none', ...EQUIVALENT[expected.rcode]! });
    }
  });

  it('an RFC 2782 name: the same port as its plain form, over both', async () => {
    const srv = await dig(daemon.addresses.dns, ['SRV', `_pinned._tcp.${Z}`]);
    expect(srv.answer[0]?.[6]).toBe('4242');
    expect(srv.answer[0]?.[7]).toBe(`pinned.${Z}.`);
    const r = await client.resolve(`_pinned._tcp.${Z}`);
    expect(r).toMatchObject({ port: 4242, host: `pinned.${Z}`, addresses: ['10.0.0.1', 'fd00::1'] });
    // The SRV's additional section carries the same addresses gRPC gives.
    expect(srv.additional.map((f) => f[4]).sort()).toEqual(['10.0.0.1', 'fd00::1']);
  });

  it('an address learned from the upstream shows in the SRV additional section too, as in A', async () => {
    await dig(daemon.addresses.dns, ['A', `web.${Z}`]); // learned
    const srv = await dig(daemon.addresses.dns, ['SRV', `web.${Z}`]);
    expect(srv.additional.map((f) => f[4]).sort()).toEqual(['10.0.0.7', 'fd00::7']);
    expect((await client.resolve(`web.${Z}`)).addresses.sort()).toEqual(['10.0.0.7', 'fd00::7']);
  });

  it('a name outside every zone: forwarded by DNS (no canonical SRV), NOT_FOUND over gRPC', async () => {
    const name = 'www.outside.example';
    const srv = await dig(daemon.addresses.dns, ['SRV', name]);
    expect(srv.flags).not.toContain('aa');
    expect(srv.answer).toEqual([]);
    expect(await overGrpc(client, name)).toEqual({ kind: 'none', ...EQUIVALENT.NXDOMAIN });
  });

  it('a failing upstream: SERVFAIL over DNS, UNAVAILABLE over gRPC, never "no such host"', async () => {
    const name = `nohost.${Z}`;
    const dns = await overDns(failing, name);
    expect(dns).toEqual({ kind: 'none', port: base32Port('nohost'), rcode: 'SERVFAIL' });
    expect(await overGrpc(failingClient, name)).toEqual({ kind: 'none', ...EQUIVALENT.SERVFAIL });
    // What needs no upstream is still answered alike.
    expect(await overGrpc(failingClient, `pinned.${Z}`)).toEqual(await overDns(failing, `pinned.${Z}`));
  });
});
