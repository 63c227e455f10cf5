import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import { createCanonportClient, type CanonportClient } from '../src/grpc/canonport-client.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { call, Health, healthServerOnCanonicalPort } from './grpc-fixtures.js';

/**
 * The gRPC side of the whole daemon (Daemon.start, as `canonport serve`
 * runs it): a service dialled by name through `canon:`, and the status codes
 * a client sees. The per-RPC detail lives in grpc-server/grpc-client tests.
 */

const ZONE = 'svc.example';
let daemon: Daemon;
let client: CanonportClient;
let target: { label: string; port: number; server: grpc.Server };

beforeAll(async () => {
  target = await healthServerOnCanonicalPort('daemon');
  const registry = writeRegistry(`zones: [${ZONE}]\nhosts:\n  ${target.label}.${ZONE}: [127.0.0.1]\n`);
  daemon = await startDaemon({ registry });
  client = createCanonportClient(daemon.addresses.grpc);
  registerCanonResolver();
});

afterAll(async () => {
  client?.close();
  target?.server.forceShutdown();
  await daemon?.close(100);
});

describe('gRPC through the whole daemon', () => {
  it('connects a stock grpc-js client by name: canon://<daemon>/<service>', async () => {
    const { host, port } = daemon.addresses.grpc;
    const c = new Health(`canon://${host}:${port}/${target.label}.${ZONE}`, grpc.credentials.createInsecure());
    try {
      // The server answers SERVING only for its own tag: proof we reached it, on its canonical port.
      await expect(call<{ status: string }>(c, 'Check', { service: 'daemon' })).resolves.toEqual({ status: 'SERVING' });
    } finally {
      c.close();
    }
  });

  it('answers INVALID_ARGUMENT for malformed names, saying what is wrong', async () => {
    for (const [name, why] of [
      ['', /empty/],
      ['a'.repeat(254), /over the limit of 253/],
      ['bad_label!.svc.example', /characters outside/],
    ] as const) {
      await expect(client.resolve(name)).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, message: expect.stringMatching(why) });
    }
  });

  it('answers NOT_FOUND where nothing resolves, and never UNKNOWN', async () => {
    await expect(client.resolve(`_foo.${ZONE}`)).rejects.toMatchObject({ status: grpc.status.NOT_FOUND });
    await expect(client.resolve(`nohost.${ZONE}`)).rejects.toMatchObject({ status: grpc.status.NOT_FOUND }); // no address anywhere
    const many = await client.resolveMany([`${target.label}.${ZONE}`, '', `_foo.${ZONE}`]);
    expect(many.map((r) => ('resolution' in r && r.resolution ? 'ok' : r.error?.status))).toEqual(['ok', grpc.status.INVALID_ARGUMENT, grpc.status.NOT_FOUND]);
  });

  it('serves this host\'s inventory, which lists the test server on its port', async () => {
    const inv = await client.inventory();
    expect(inv.listeners.some((l) => l.port === target.port)).toBe(true);
  });
});
