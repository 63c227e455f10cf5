import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterEach, describe, expect, it } from 'vitest';
import { formatHostPort } from '../src/config/address.js';
import { ErrorCodes } from '../src/errors.js';
import { canonportService, ERROR_CODE_METADATA } from '../src/grpc/proto.js';
import { createCanonportClient, DaemonError } from '../src/grpc/canonport-client.js';
import { startGrpcServer, type GrpcHandle } from '../src/grpc/server.js';
import { MAX_BATCH } from '../src/grpc/service.js';
import { decodePort } from '../src/scheme/index.js';
import { call, eventually, FIXED_INVENTORY, Health, testDaemon, type TestDaemon } from './grpc-fixtures.js';

const REGISTRY = `
zones: [cluster-1.example.com]
ttl: 30
hosts:
  api.cluster-1.example.com: [10.0.0.5, "fd00::5"]
  v2.user.cluster-1.example.com: [10.0.0.7]
services:
  cat: {}
  caterpillar: {}
  legacy: {port: 8080}
  user: {id: 1, version: 2}
`;

// Same file, but api is pinned to another port and has a new address.
const REGISTRY_MOVED = `
zones: [cluster-1.example.com]
ttl: 30
hosts:
  api.cluster-1.example.com: [10.0.0.6]
services:
  api: {port: 23456}
`;

const API = 'api.cluster-1.example.com';

let handles: GrpcHandle[] = [];
let clients: { close(): void }[] = [];

afterEach(async () => {
  for (const c of clients) c.close();
  await Promise.all(handles.map((h) => h.close(0)));
  handles = [];
  clients = [];
});

async function start(d: TestDaemon = testDaemon(REGISTRY), opts: { watchIntervalMs?: number } = {}) {
  const h = await startGrpcServer(d.ctx, { host: '127.0.0.1', port: 0 }, opts);
  handles.push(h);
  const client = createCanonportClient(h.address);
  clients.push(client);
  return { d, h, client };
}

async function rejection(p: Promise<unknown>): Promise<DaemonError> {
  const err = await p.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(DaemonError);
  return err as DaemonError;
}

describe('startGrpcServer', () => {
  it('binds the port it was given, IPv4 and IPv6, and reports it', async () => {
    const d = testDaemon(REGISTRY);
    const h4 = await startGrpcServer(d.ctx, { host: '127.0.0.1', port: 0 });
    handles.push(h4);
    expect(h4.address.host).toBe('127.0.0.1');
    expect(h4.address.port).toBeGreaterThan(0);
    const h6 = await startGrpcServer(d.ctx, { host: '::1', port: 0 });
    handles.push(h6);
    const c6 = createCanonportClient(h6.address);
    clients.push(c6);
    expect(c6.address).toBe(`[::1]:${h6.address.port}`);
    expect((await c6.resolve(API)).port).toBe(12082);
  });

  it('fails with CP_LISTEN_FAILED on a taken port', async () => {
    const { d, h } = await start();
    await expect(startGrpcServer(d.ctx, h.address)).rejects.toMatchObject({ code: ErrorCodes.LISTEN_FAILED });
  });
});

describe('Resolve', () => {
  it('answers port, scheme, host and the addresses of the host', async () => {
    const { client } = await start();
    const r = await client.resolve(API);
    expect(r).toEqual({
      name: API,
      zone: 'cluster-1.example.com',
      service: 'api',
      port: 12082,
      scheme: 'base32',
      prefix: 'api',
      host: API,
      addresses: ['10.0.0.5', 'fd00::5'],
      ttl: 30,
      collidesWith: [],
      endpoints: [
        // protocol and names are cluster mode's (observed endpoints): empty here.
        { address: '10.0.0.5', port: 12082, source: 'registry', node: '', version: '', since: '', readiness: '', local: false, protocol: '', names: [], namespace: '', containerId: '', pod: '', podNamespace: '' },
        { address: 'fd00::5', port: 12082, source: 'registry', node: '', version: '', since: '', readiness: '', local: false, protocol: '', names: [], namespace: '', containerId: '', pod: '', podNamespace: '' },
      ],
    });
  });

  it('reads the SRV form and mixed case the same way, echoing the name lowercased', async () => {
    const { client } = await start();
    const srv = await client.resolve('_api._tcp.cluster-1.example.com');
    expect(srv.host).toBe(API);
    expect(srv.port).toBe(12082);
    const mixed = await client.resolve('API.Cluster-1.Example.COM.');
    expect(mixed.name).toBe(API);
  });

  it('answers versions and collisions from the registry', async () => {
    const d = testDaemon(REGISTRY.replace('hosts:', 'hosts:\n  cat.cluster-1.example.com: [10.0.0.8]'));
    const { client } = await start(d);
    const v = await client.resolve('v2.user.cluster-1.example.com');
    expect(v).toMatchObject({ service: 'user', port: 8102, scheme: 'versioned', version: 2, addresses: ['10.0.0.7'] });
    const cat = await client.resolve('cat.cluster-1.example.com');
    expect(cat.collidesWith).toEqual(['caterpillar']);
    expect(cat.version).toBeUndefined();
  });

  it.each([
    ['', /empty/],
    [`${'a'.repeat(250)}.com`, /254 characters, over the limit of 253/],
    ['bad!label.cluster-1.example.com', /"bad!label" has characters outside/],
    ['api..cluster-1.example.com', /label 2 .* is empty/],
    [`${'a'.repeat(64)}.cluster-1.example.com`, /64 characters, over 63/],
  ])('rejects the malformed name %j with INVALID_ARGUMENT saying why', async (name, message) => {
    const { client } = await start();
    const err = await rejection(client.resolve(name));
    expect(err.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.code).toBe(ErrorCodes.BAD_NAME);
    expect(err.message).toMatch(message);
  });

  it.each([
    ['db.cluster-1.example.com', /has no address/, ErrorCodes.NO_ADDRESS],
    ['_tcp.cluster-1.example.com', /not a service name/, ErrorCodes.NOT_FOUND],
    ['cluster-1.example.com', /not a service name/, ErrorCodes.NOT_FOUND],
    ['_api.cluster-1.example.com', /not a service name/, ErrorCodes.NOT_FOUND],
    ['www.outside.example', /outside every served zone/, ErrorCodes.NOT_FOUND],
  ])('answers NOT_FOUND for %s', async (name, message, code) => {
    const { client } = await start();
    const err = await rejection(client.resolve(name));
    expect(err.status).toBe(grpc.status.NOT_FOUND);
    expect(err.code).toBe(code);
    expect(err.message).toMatch(message);
  });

  it('sends the status and the canonport code on the wire to a plain grpc-js client', async () => {
    const { h } = await start();
    const Ctor = canonportService();
    const raw = new Ctor(formatHostPort(h.address), grpc.credentials.createInsecure());
    clients.push(raw);
    const err = (await call(raw, 'Resolve', { name: '' }).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.metadata.get(ERROR_CODE_METADATA)).toEqual([ErrorCodes.BAD_NAME]);
    // A request without the field at all reads as the empty name.
    const err2 = (await call(raw, 'Resolve', {}).catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err2.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('turns a handler that throws into INTERNAL, never UNKNOWN, and counts it', async () => {
    const d = testDaemon(REGISTRY, {
      addresses: () => ({
        source: 'upstream',
        generation: 0,
        peek: () => null,
        resolve: async () => {
          throw new TypeError('address source exploded');
        },
      }),
      inventory: {
        snapshot: () => {
          throw new Error('inventory exploded synchronously');
        },
      },
    });
    const { client } = await start(d);
    // db has no registry host, so only the address resolver can answer it.
    const e1 = await rejection(client.resolve('db.cluster-1.example.com'));
    expect(e1.status).toBe(grpc.status.INTERNAL);
    expect(e1.message).toMatch(/address source exploded/);
    const e2 = await rejection(client.inventory());
    expect(e2.status).toBe(grpc.status.INTERNAL);
    expect(await d.metrics.grpcCalls.get()).toMatchObject({
      values: expect.arrayContaining([
        expect.objectContaining({ labels: { service: 'canonport.v1.Canonport', method: 'Resolve', code: 'INTERNAL' }, value: 1 }),
        expect.objectContaining({ labels: { service: 'canonport.v1.Canonport', method: 'Inventory', code: 'INTERNAL' }, value: 1 }),
      ]),
    });
  });

  it('counts every call by method and status, health and reflection included', async () => {
    const { d, h, client } = await start();
    await client.resolve(API);
    await client.resolve(API);
    await client.resolve('db.cluster-1.example.com').catch(() => undefined);
    await client.resolve('').catch(() => undefined);
    const hc = new Health(formatHostPort(h.address), grpc.credentials.createInsecure());
    clients.push(hc);
    await call(hc, 'Check', { service: '' });
    await call(hc, 'Check', { service: 'nope' }).catch(() => undefined);
    const values = (await d.metrics.grpcCalls.get()).values;
    const count = (path: string, code: string) => values.find((v) => `${v.labels.service}/${v.labels.method}` === path && v.labels.code === code)?.value;
    expect(count('canonport.v1.Canonport/Resolve', 'OK')).toBe(2);
    expect(count('canonport.v1.Canonport/Resolve', 'NOT_FOUND')).toBe(1);
    expect(count('canonport.v1.Canonport/Resolve', 'INVALID_ARGUMENT')).toBe(1);
    expect(count('grpc.health.v1.Health/Check', 'OK')).toBe(1);
    expect(count('grpc.health.v1.Health/Check', 'NOT_FOUND')).toBe(1);
  });
});

describe('ResolveMany', () => {
  it("answers by the call's deadline: names still waiting get their own UNAVAILABLE, the rest their answers", async () => {
    const d = testDaemon(REGISTRY, {
      // db never gets an answer from the upstreams; every other name is in the registry's hosts.
      addresses: () => ({ source: 'upstream', generation: 0, peek: () => null, resolve: () => new Promise(() => undefined) }),
    });
    const { h } = await start(d);
    const client = createCanonportClient(formatHostPort(h.address), { timeoutMs: 3000 });
    clients.push(client);
    // The call itself succeeds (no DEADLINE_EXCEEDED), though one of its lookups never ends.
    const results = await client.resolveMany([API, 'db.cluster-1.example.com', 'v2.user.cluster-1.example.com']);
    expect(results[0]!.resolution?.port).toBe(12082);
    expect(results[1]!.error).toMatchObject({ status: grpc.status.UNAVAILABLE, code: ErrorCodes.DEADLINE });
    expect(results[2]!.resolution?.port).toBe(8102);
  });

  it('answers each name in order with its own result or error', async () => {
    const { client } = await start();
    const results = await client.resolveMany([API, '', 'db.cluster-1.example.com', 'v2.user.cluster-1.example.com']);
    expect(results.map((r) => r.name)).toEqual([API, '', 'db.cluster-1.example.com', 'v2.user.cluster-1.example.com']);
    expect(results[0]!.resolution?.port).toBe(12082);
    expect(results[0]!.error).toBeUndefined();
    expect(results[1]!.error).toMatchObject({ status: grpc.status.INVALID_ARGUMENT, code: ErrorCodes.BAD_NAME });
    expect(results[1]!.resolution).toBeUndefined();
    expect(results[2]!.error).toMatchObject({ status: grpc.status.NOT_FOUND, code: ErrorCodes.NO_ADDRESS });
    expect(results[2]!.error!.message).toMatch(/no address/);
    expect(results[3]!.resolution).toMatchObject({ port: 8102, version: 2 });
  });

  it('answers an empty batch with no results', async () => {
    const { client } = await start();
    expect(await client.resolveMany([])).toEqual([]);
  });

  it(`resolves a full batch of ${MAX_BATCH} and rejects one more with INVALID_ARGUMENT`, async () => {
    const { client } = await start();
    const full = await client.resolveMany(Array.from({ length: MAX_BATCH }, () => API));
    expect(full).toHaveLength(MAX_BATCH);
    expect(full.every((r) => r.resolution?.port === 12082)).toBe(true);
    const err = await rejection(client.resolveMany(Array.from({ length: MAX_BATCH + 1 }, () => API)));
    expect(err.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.code).toBe(ErrorCodes.BAD_REQUEST);
    expect(err.message).toMatch(/1001 names .* limit of 1000/);
  });
});

describe('Decode', () => {
  it('decodes a base32 port with no registry owner', async () => {
    const { client } = await start();
    expect(await client.decode(12082)).toEqual({ port: 12082, prefix: 'api', owners: [], raw: false });
  });

  it('names the registry owners of a port', async () => {
    const { client } = await start();
    expect(await client.decode(13661)).toEqual({ port: 13661, prefix: 'cat', owners: ['cat', 'caterpillar'], raw: false });
    expect((await client.decode(8102)).owners).toEqual(['user', 'v2.user']);
  });

  it('reads raw ports without the offset, as the seed does', async () => {
    const { client } = await start();
    expect(await client.decode(8080, true)).toEqual({ port: 8080, prefix: '7sg', owners: ['legacy'], raw: true });
    expect((await client.decode(8080)).prefix).toBe(decodePort(8080));
    expect((await client.decode(6379, true)).prefix).toBe('67b');
  });

  it('answers an empty prefix outside the scheme, and INVALID_ARGUMENT over 65535', async () => {
    const { client } = await start();
    expect(await client.decode(80)).toEqual({ port: 80, prefix: '', owners: [], raw: false });
    const err = await rejection(client.decode(70000));
    expect(err.status).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.code).toBe(ErrorCodes.BAD_PORT);
  });
});

describe('Inventory', () => {
  it('maps the inventory snapshot to the response, with the digest of the registry in force', async () => {
    const { client, d } = await start();
    const digest = d.ctx.state().registry.digest;
    expect(digest).toMatch(/^[0-9a-f]{64}$/);
    // A snapshot that says nothing of names (this fixture's): the client reads each claim as the registry's names (issue 22).
    const named = FIXED_INVENTORY.listeners.map((l) => (l.services.length > 0 ? { ...l, names: l.services.map((name) => ({ name, source: 'registry' })) } : l));
    expect(await client.inventory()).toEqual({ ...FIXED_INVENTORY, listeners: named, registryDigest: digest });
  });
});

describe('Watch', () => {
  it('sends the current answer, then the new one after a reload, and nothing for a reload that changes nothing', async () => {
    const { d, client } = await start();
    const it = client.watch(API)[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.value).toMatchObject({ port: 12082, scheme: 'base32', addresses: ['10.0.0.5', 'fd00::5'] });

    d.reload(REGISTRY_MOVED);
    const second = await it.next();
    expect(second.value).toMatchObject({ port: 23456, scheme: 'pinned', addresses: ['10.0.0.6'] });

    // Same answer again: no message. The next message is the following real change.
    d.reload(REGISTRY_MOVED);
    d.reload(REGISTRY_MOVED.replace('[10.0.0.6]', '[10.0.0.6, 10.0.0.9]'));
    const third = await it.next();
    expect(third.value).toMatchObject({ port: 23456, addresses: ['10.0.0.6', '10.0.0.9'] });
    await it.return!();
  });

  it('sends nothing for a reload that changes only the TTL', async () => {
    const { d, client } = await start();
    const it = client.watch(API)[Symbol.asyncIterator]();
    expect((await it.next()).value).toMatchObject({ ttl: 30, addresses: ['10.0.0.5', 'fd00::5'] });
    // Only the TTL changes: no message. Then a change that must be sent: the next message is that one,
    // with the new TTL in it (so the TTL-only reload was read, and not sent).
    d.reload(REGISTRY.replace('ttl: 30', 'ttl: 31'));
    d.reload(REGISTRY.replace('ttl: 30', 'ttl: 31').replace('[10.0.0.5, "fd00::5"]', '[10.0.0.5, "fd00::5", 10.0.0.9]'));
    const next = await it.next();
    expect(next.value).toMatchObject({ ttl: 31, addresses: ['10.0.0.5', '10.0.0.9', 'fd00::5'] });
    await it.return!();
  });

  it('re-resolves periodically and sees a change nobody announced', async () => {
    const { d, client } = await start(testDaemon(REGISTRY), { watchIntervalMs: 50 });
    const stream = client.watch(API);
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value.port).toBe(12082);
    d.reload(REGISTRY_MOVED, { silent: true });
    expect((await it.next()).value.port).toBe(23456);
    stream.cancel();
    expect((await it.next()).done).toBe(true);
  });

  it('ends with the status of a name that fails at once', async () => {
    const { d, client } = await start();
    const bad = client.watch('bad!name');
    await expect(bad[Symbol.asyncIterator]().next()).rejects.toMatchObject({ status: grpc.status.INVALID_ARGUMENT, code: ErrorCodes.BAD_NAME });
    const missing = client.watch('db.cluster-1.example.com');
    await expect(missing[Symbol.asyncIterator]().next()).rejects.toMatchObject({ status: grpc.status.NOT_FOUND });
    const values = (await d.metrics.grpcCalls.get()).values.filter((v) => v.labels.service === 'canonport.v1.Canonport' && v.labels.method === 'Watch');
    expect(values.map((v) => [v.labels.code, v.value]).sort()).toEqual([
      ['INVALID_ARGUMENT', 1],
      ['NOT_FOUND', 1],
    ]);
  });

  it('ends with NOT_FOUND when a reload takes the host away', async () => {
    const { d, client } = await start();
    const it = client.watch(API)[Symbol.asyncIterator]();
    expect((await it.next()).value.port).toBe(12082);
    d.reload('zones: [cluster-1.example.com]\n');
    await expect(it.next()).rejects.toMatchObject({ status: grpc.status.NOT_FOUND, code: ErrorCodes.NO_ADDRESS });
  });

  it('releases its reload listener when the client cancels, and counts the call', async () => {
    const { d, client } = await start();
    expect(d.ctx.discovery.listenerCount).toBe(0);
    // Many watchers share one listener: no MaxListenersExceededWarning.
    const streams = Array.from({ length: 20 }, () => client.watch(API));
    for (const s of streams) await s[Symbol.asyncIterator]().next();
    expect(d.ctx.discovery.listenerCount).toBe(1);
    // Breaking out of a for-await loop cancels too.
    for await (const r of client.watch(API)) {
      expect(r.port).toBe(12082);
      break;
    }
    for (const s of streams) s.cancel();
    await eventually(async () => expect(d.ctx.discovery.listenerCount).toBe(0));
    await eventually(async () => {
      const v = (await d.metrics.grpcCalls.get()).values.find((x) => x.labels.service === 'canonport.v1.Canonport' && x.labels.method === 'Watch' && x.labels.code === 'CANCELLED');
      expect(v?.value).toBe(21);
    });
  });

  it('ends open Watch streams with UNAVAILABLE and CP_SHUTTING_DOWN when the server closes, without waiting out the grace period', async () => {
    const { h, client } = await start();
    const it = client.watch(API)[Symbol.asyncIterator]();
    await it.next();
    const started = Date.now();
    const closing = h.close(20_000);
    await expect(it.next()).rejects.toMatchObject({ status: grpc.status.UNAVAILABLE, code: ErrorCodes.SHUTTING_DOWN });
    await closing;
    // Nothing held the shutdown for the 20 s grace (a wide bound: it takes milliseconds).
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

describe('health', () => {
  it('ends an open Health/Watch at shutdown at once, with one last NOT_SERVING, and lets the server stop', async () => {
    const { h } = await start();
    const hc = new Health(formatHostPort(h.address), grpc.credentials.createInsecure());
    clients.push(hc);
    const open = (service: string) => {
      const watch = hc.Watch({ service }) as grpc.ClientReadableStream<{ status: string }>;
      const seen: string[] = [];
      watch.on('data', (m) => seen.push(m.status));
      const ended = new Promise<grpc.StatusObject>((resolve) => watch.on('status', resolve));
      watch.on('error', () => undefined);
      return { seen, ended };
    };
    const server = open('');
    // A name the daemon has no status for: SERVICE_UNKNOWN, and the stream ends at shutdown like the other.
    const unknown = open('no.such.Service');
    await eventually(async () => expect([server.seen, unknown.seen]).toEqual([['SERVING'], ['SERVICE_UNKNOWN']]));
    const started = Date.now();
    await h.close(20_000);
    expect(Date.now() - started).toBeLessThan(10_000); // the 20 s grace was not waited out
    expect((await server.ended).code).toBe(grpc.status.OK);
    expect(server.seen).toEqual(['SERVING', 'NOT_SERVING']);
    expect((await unknown.ended).code).toBe(grpc.status.OK);
    expect(unknown.seen).toEqual(['SERVICE_UNKNOWN']);
  });

  it('is SERVING for the server and the service, and follows setServing and readiness', async () => {
    const { d, h } = await start();
    const hc = new Health(formatHostPort(h.address), grpc.credentials.createInsecure());
    clients.push(hc);
    const check = async (service: string) => (await call<{ status: string }>(hc, 'Check', { service })).status;
    expect(await check('')).toBe('SERVING');
    expect(await check('canonport.v1.Canonport')).toBe('SERVING');

    const watch = hc.Watch({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
    const seen: string[] = [];
    watch.on('data', (m) => seen.push(m.status));
    watch.on('error', () => undefined);
    await eventually(async () => expect(seen).toEqual(['SERVING']));

    h.setServing(false);
    expect(await check('')).toBe('NOT_SERVING');
    expect(await check('canonport.v1.Canonport')).toBe('NOT_SERVING');
    await eventually(async () => expect(seen).toEqual(['SERVING', 'NOT_SERVING']));

    h.setServing(true);
    expect(await check('')).toBe('SERVING');
    d.setReady(false);
    expect(await check('canonport.v1.Canonport')).toBe('NOT_SERVING');
    d.setReady(true);
    expect(await check('canonport.v1.Canonport')).toBe('SERVING');
    await eventually(async () => expect(seen).toEqual(['SERVING', 'NOT_SERVING', 'SERVING', 'NOT_SERVING', 'SERVING']));
    watch.cancel();
  });

  it('starts NOT_SERVING when the daemon is not ready yet', async () => {
    const { d, h } = await start(testDaemon(REGISTRY, { ready: false }));
    const hc = new Health(formatHostPort(h.address), grpc.credentials.createInsecure());
    clients.push(hc);
    expect((await call<{ status: string }>(hc, 'Check', { service: '' })).status).toBe('NOT_SERVING');
    d.setReady(true);
    expect((await call<{ status: string }>(hc, 'Check', { service: '' })).status).toBe('SERVING');
  });
});

// Issue 21, finding 9: Watch streams (and health Watch streams, which stay open too) are bounded per client and in total.
describe('Watch stream bounds', () => {
  /** The test daemon with its Watch bounds set. */
  function bounded(limits: { watchMaxStreams?: number; watchMaxStreamsPerClient?: number }): TestDaemon {
    const d = testDaemon(REGISTRY);
    const config = { ...d.ctx.config(), ...limits };
    d.ctx.config = () => config;
    return d;
  }
  /** A Watch on its own connection (another client), or on `on`'s; resolves with the first message or the error code. */
  function watchOne(address: string, on?: grpc.Client): { client: grpc.Client; outcome: Promise<string>; call: grpc.ClientReadableStream<unknown> } {
    const client = on ?? new grpc.Client(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    if (!on) raw.push(client);
    const call = client.makeServerStreamRequest('/canonport.v1.Canonport/Watch', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x0a, 0x0d, ...Buffer.from('api.localhost')]));
    const outcome = new Promise<string>((resolve) => {
      call.on('data', () => resolve('open'));
      call.on('error', (e: grpc.ServiceError) => resolve(`${grpc.status[e.code]} ${e.metadata.get('canonport-code')[0] ?? ''}`.trim()));
    });
    return { client, outcome, call };
  }
  const raw: grpc.Client[] = [];
  afterEach(() => raw.splice(0).forEach((c) => c.close()));

  it('past watchMaxStreamsPerClient a client is refused RESOURCE_EXHAUSTED (CP_WATCH_LIMIT), health Watch included; another client is served', async () => {
    const { h } = await start(bounded({ watchMaxStreamsPerClient: 2 }));
    const at = formatHostPort(h.address);
    const first = watchOne(at);
    const second = watchOne(at, first.client);
    expect([await first.outcome, await second.outcome]).toEqual(['open', 'open']);
    expect(await watchOne(at, first.client).outcome).toBe('RESOURCE_EXHAUSTED CP_WATCH_LIMIT');
    // A health Watch on the same connection counts under the same bound.
    const hc = new Health(at, grpc.credentials.createInsecure(), { channelOverride: first.client.getChannel() });
    const hw = hc.Watch({ service: '' }) as grpc.ClientReadableStream<unknown>;
    const healthOutcome = await new Promise<string>((resolve) => {
      hw.on('data', () => resolve('open'));
      hw.on('error', (e: grpc.ServiceError) => resolve(`${grpc.status[e.code]} ${e.metadata.get('canonport-code')[0] ?? ''}`.trim()));
    });
    expect(healthOutcome).toBe('RESOURCE_EXHAUSTED CP_WATCH_LIMIT');
    expect(await watchOne(at).outcome).toBe('open');
    // A stream that ends gives its place back.
    second.call.cancel();
    await eventually(async () => expect(await watchOne(at, first.client).outcome).toBe('open'));
  });

  it('past watchMaxStreams, a client under its equal share is served and the largest holder gives way', async () => {
    const { h } = await start(bounded({ watchMaxStreams: 3, watchMaxStreamsPerClient: 100 }));
    const at = formatHostPort(h.address);
    const big = watchOne(at);
    const more = [watchOne(at, big.client), watchOne(at, big.client)];
    expect(await Promise.all([big.outcome, ...more.map((m) => m.outcome)])).toEqual(['open', 'open', 'open']);
    const ended = new Promise<string>((resolve) => more[1]!.call.on('error', (e: grpc.ServiceError) => resolve(`${grpc.status[e.code]} ${e.details}`)));
    expect(await watchOne(at).outcome).toBe('open');
    expect(await ended).toMatch(/^RESOURCE_EXHAUSTED .*more than an equal share/);
  });
});

describe('reflection', () => {
  const require = createRequire(import.meta.url);
  const reflectionProto = join(dirname(require.resolve('@grpc/reflection')), '../proto/grpc/reflection/v1/reflection.proto');
  const def = protoLoader.loadSync(reflectionProto, { keepCase: false, defaults: true, oneofs: true });
  const Reflection = (grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } };
  }).grpc.reflection.v1.ServerReflection;

  /** One request on the bidi stream, its one response. */
  function ask(client: grpc.Client, req: Record<string, unknown>): Promise<Record<string, any>> {
    const stream = (client as unknown as { serverReflectionInfo(): grpc.ClientDuplexStream<unknown, Record<string, any>> }).serverReflectionInfo();
    return new Promise((resolve, reject) => {
      stream.on('data', (m) => {
        resolve(m);
        stream.end();
      });
      stream.on('error', reject);
      stream.write(req);
    });
  }

  it('lists the Canonport and Health services and serves their descriptors', async () => {
    const { h } = await start();
    const rc = new Reflection(formatHostPort(h.address), grpc.credentials.createInsecure());
    clients.push(rc);
    const list = await ask(rc, { listServices: '*' });
    const names = (list.listServicesResponse.service as { name: string }[]).map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['canonport.v1.Canonport', 'grpc.health.v1.Health']));

    const file = await ask(rc, { fileContainingSymbol: 'canonport.v1.Canonport' });
    const protos = file.fileDescriptorResponse.fileDescriptorProto as Buffer[];
    expect(protos.length).toBeGreaterThan(0);
    const text = Buffer.concat(protos).toString('latin1');
    expect(text).toContain('canonport.v1');
    expect(text).toContain('ResolveRequest');
    // Field names as written in the .proto, not the camelCase the JS side uses.
    expect(text).toContain('collected_at_ms');
    const health = await ask(rc, { fileContainingSymbol: 'grpc.health.v1.Health' });
    expect(Buffer.concat(health.fileDescriptorResponse.fileDescriptorProto as Buffer[]).toString('latin1')).toContain('HealthCheckRequest');
  });
});
