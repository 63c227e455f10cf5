import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ERROR_CODE_METADATA } from '../src/grpc/proto.js';
import { TypeUrl, xdsProtos, type ResourceType } from '../src/xds/protos.js';
import { MemoryDiscovery } from './helpers/xds-discovery.js';
import { RawAds, startXdsServer, type DecodedResponse, type XdsServer } from './helpers/xds.js';

/**
 * The ADS protocol from a raw client that writes every DiscoveryRequest by
 * hand: resource shapes, names, ACK/NACK, nonces, pushes of only what
 * changed, unknown names and types, reconnects, limits, shutdown. Each
 * "nothing was sent" check ends with a barrier: a request that must be
 * answered, after which the server's push counter must have moved by
 * exactly that one answer (the counter moves when a response is written,
 * so anything sent before the barrier's answer is counted).
 */

const ZONE = 'cluster-1.example.com';
const API = `api.${ZONE}`;

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  detail?: string;
  [k: string]: unknown;
}

let discovery: MemoryDiscovery;
let xds: XdsServer;
let logs: LogLine[];
const streams: RawAds[] = [];

async function start(limits = {}): Promise<void> {
  discovery = new MemoryDiscovery();
  logs = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  xds = await startXdsServer(discovery, { limits, logger: pino({ level: 'debug' }, sink) });
}

beforeEach(() => start());

afterEach(async () => {
  for (const s of streams.splice(0)) s.cancel();
  await xds.close();
});

function ads(): RawAds {
  const s = new RawAds(xds.address);
  streams.push(s);
  return s;
}

async function total(counter: 'xdsPushes' | 'xdsAcks' | 'xdsNacks' | 'xdsRequestsIgnored' | 'xdsResourcesSent', label?: Record<string, string>): Promise<number> {
  const m = await xds.metrics[counter].get();
  return m.values.filter((v) => !label || Object.entries(label).every(([k, x]) => v.labels[k as never] === x)).reduce((s, v) => s + v.value, 0);
}

/** Waits (wide bound) until the discovery has answered `name` at least `n` times. */
async function looked(name: string, n: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while ((discovery.lookups.get(name) ?? 0) < n) {
    if (Date.now() > deadline) throw new Error(`${name} looked up ${discovery.lookups.get(name) ?? 0} times, want ${n}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  // The answer is applied and the flush scheduled within the next turns of the loop.
  await new Promise((r) => setTimeout(r, 1));
  await new Promise((r) => setImmediate(r));
}

/**
 * Asks for `type` afresh (no nonce: the server must answer with the full
 * state) and checks that this answer is the only response written since
 * `pushesBefore`. Returns the answer.
 */
async function barrier(s: RawAds, type: ResourceType, names: string[], pushesBefore: number): Promise<DecodedResponse> {
  s.send(type, names);
  const r = await s.next();
  expect(r.type_url, 'the first response after the barrier request is the barrier answer').toBe(TypeUrl[type]);
  expect(await total('xdsPushes'), 'responses written besides the barrier answer').toBe(pushesBefore + 1);
  expect(s.pending()).toBe(0);
  return r;
}

function hcmOf(listener: Record<string, unknown>): Record<string, unknown> {
  const any = (listener.api_listener as { api_listener: { type_url: string; value: Buffer } }).api_listener;
  expect(any.type_url).toBe('type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager');
  return xdsProtos().decode('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', any.value);
}

function endpointsOf(cla: Record<string, unknown>): string[] {
  const groups = cla.endpoints as Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }> }>;
  return groups.flatMap((g) => g.lb_endpoints.map((e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`));
}

describe('resources', () => {
  it('serves the four resources a gRPC client asks for, chained by name', async () => {
    discovery.set(API, 12082, ['10.0.0.5', 'fd00::5']);
    const s = ads();

    s.send('listener', [API]);
    const lds = await s.next();
    expect(lds.type_url).toBe(TypeUrl.listener);
    expect(lds.names).toEqual([API]);
    expect(lds.version_info).not.toBe('');
    expect(lds.nonce).not.toBe('');
    const hcm = hcmOf(lds.resources[0]!);
    expect(hcm.rds).toMatchObject({ route_config_name: API, config_source: { ads: {} } });
    const filters = hcm.http_filters as Array<{ name: string; typed_config: { type_url: string } }>;
    expect(filters.at(-1)!.typed_config.type_url).toBe('type.googleapis.com/envoy.extensions.filters.http.router.v3.Router');
    s.ack(lds, [API]);

    s.send('route', [API]);
    const rds = await s.next();
    expect(rds.names).toEqual([API]);
    const vhosts = rds.resources[0]!.virtual_hosts as Array<{ domains: string[]; routes: Array<{ match: { prefix: string }; route: { cluster: string } }> }>;
    expect(vhosts).toHaveLength(1);
    expect(vhosts[0]!.domains).toEqual(['*']);
    expect(vhosts[0]!.routes).toMatchObject([{ match: { prefix: '' }, route: { cluster: API } }]);
    s.ack(rds, [API]);

    s.send('cluster', [API]);
    const cds = await s.next();
    expect(cds.names).toEqual([API]);
    expect(cds.resources[0]).toMatchObject({ type: 'EDS', lb_policy: 'ROUND_ROBIN', eds_cluster_config: { service_name: API, eds_config: { ads: {} } } });
    s.ack(cds, [API]);

    s.send('endpoint', [API]);
    const eds = await s.next();
    expect(eds.names).toEqual([API]);
    expect(endpointsOf(eds.resources[0]!).sort()).toEqual(['10.0.0.5:12082', 'fd00::5:12082']);
    const locality = (eds.resources[0]!.endpoints as Array<{ load_balancing_weight: { value: number }; locality: unknown }>)[0]!;
    expect(locality.load_balancing_weight.value).toBeGreaterThan(0);
    expect(locality.locality).not.toBeNull();
    s.ack(eds, [API]);

    expect(await total('xdsPushes')).toBe(4);
    await expect.poll(() => total('xdsAcks')).toBe(4);
    expect(await total('xdsNacks')).toBe(0);
  });

  it('names the Listener exactly as asked, and shares route, cluster and endpoints among spellings of one name', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    discovery.set(`_api._tcp.${ZONE}`, 12082, ['10.0.0.5']);
    discovery.set(`v2.user.${ZONE}`, 8102, ['10.0.0.7']);
    discovery.set('api.localhost', 12082, ['127.0.0.1']);
    const asked = [`API.Cluster-1.example.com.`, `${API}:12082`, `_api._tcp.${ZONE}`, `v2.user.${ZONE}`, 'api.localhost'];
    const s = ads();
    s.send('listener', asked);
    const lds = await s.next();
    expect([...lds.names].sort()).toEqual([...asked].sort());
    const routeOf = Object.fromEntries(lds.resources.map((l) => [l.name as string, (hcmOf(l).rds as { route_config_name: string }).route_config_name]));
    expect(routeOf).toEqual({
      'API.Cluster-1.example.com.': API,
      [`${API}:12082`]: API,
      [`_api._tcp.${ZONE}`]: `_api._tcp.${ZONE}`,
      [`v2.user.${ZONE}`]: `v2.user.${ZONE}`,
      'api.localhost': 'api.localhost',
    });
    // Two spellings of api, one lookup.
    expect(discovery.lookups.get(API)).toBe(1);
  });

  it('answers a known service with no address with an empty endpoint set, and fills it when addresses appear', async () => {
    discovery.set(API, 12082, []);
    const s = ads();
    s.send('listener', [API]);
    expect((await s.next()).names).toEqual([API]);
    s.send('endpoint', [API]);
    const empty = await s.next();
    expect(empty.names).toEqual([API]);
    expect(endpointsOf(empty.resources[0]!)).toEqual([]);
    s.ack(empty, [API]);
    discovery.set(API, 12082, ['10.0.0.9']);
    const filled = await s.next();
    expect(endpointsOf(filled.resources[0]!)).toEqual(['10.0.0.9:12082']);
  });
});

describe('unknown names and types', () => {
  it('leaves an unknown name out of Listener and Cluster answers without disturbing the other names', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('listener', [API, `nope.${ZONE}`, 'xdstp://authority/envoy.config.listener.v3.Listener/x', '']);
    const lds = await s.next();
    expect(lds.names).toEqual([API]);
    s.ack(lds, [API, `nope.${ZONE}`]);
    s.send('cluster', [`nope.${ZONE}`]);
    const cds = await s.next();
    expect(cds.names).toEqual([]);
    expect(cds.nonce).not.toBe('');
  });

  it('sends no RouteConfiguration or ClusterLoadAssignment for an unknown name (their absence cannot be said)', async () => {
    const s = ads();
    s.send('endpoint', [`nope.${ZONE}`]);
    s.send('route', [`nope.${ZONE}`]);
    await looked(`nope.${ZONE}`, 1);
    await barrier(s, 'cluster', [], await total('xdsPushes'));
  });

  it('ignores a resource type it does not serve, counts it, and keeps serving the stream', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', ['some-secret']);
    s.send('type.googleapis.com/envoy.service.runtime.v3.Runtime', []);
    s.send('', [API]);
    s.send('listener', [API]);
    const lds = await s.next();
    expect(lds.type_url).toBe(TypeUrl.listener);
    expect(await total('xdsRequestsIgnored', { reason: 'unknown_type' })).toBe(3);
    await barrier(s, 'cluster', [], await total('xdsPushes'));
  });
});

describe('ACK, NACK and pushes', () => {
  it('pushes only the ClusterLoadAssignment when a port changes, and only the changed one', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    discovery.set(`db.${ZONE}`, 14688, ['10.0.0.6']);
    const names = [API, `db.${ZONE}`];
    const s = ads();
    const got: Partial<Record<ResourceType, DecodedResponse>> = {};
    for (const type of ['listener', 'route', 'cluster', 'endpoint'] as const) {
      s.send(type, names);
      got[type] = await s.next();
      expect(got[type]!.names.sort()).toEqual([...names].sort());
      s.ack(got[type]!, names);
    }
    await looked(API, 1);
    const pushes = await total('xdsPushes');

    discovery.set(API, 13000, ['10.0.0.5']);
    const eds = await s.next();
    expect(eds.type_url).toBe(TypeUrl.endpoint);
    expect(eds.names).toEqual([API]);
    expect(endpointsOf(eds.resources[0]!)).toEqual(['10.0.0.5:13000']);
    expect(Number(eds.version_info)).toBeGreaterThan(Number(got.endpoint!.version_info));
    expect(await total('xdsPushes')).toBe(pushes + 1);
    s.ack(eds, names);
    // No Listener, Route or Cluster was pushed: the Listener's next version follows the first.
    const lds = await barrier(s, 'listener', names, pushes + 1);
    expect(Number(lds.version_info)).toBe(Number(got.listener!.version_info) + 1);
  });

  it('re-sends nothing when the discovery changes nothing (an idle client costs no pushes)', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('listener', [API]);
    s.ack(await s.next(), [API]);
    s.send('endpoint', [API]);
    s.ack(await s.next(), [API]);
    await looked(API, 1);
    const pushes = await total('xdsPushes');
    for (let i = 0; i < 5; i++) discovery.changed();
    discovery.set(API, 12082, ['10.0.0.5']);
    await looked(API, 2);
    await barrier(s, 'cluster', [], pushes);
  });

  it('logs and counts a NACK with the client error, does not re-send the rejected resource, and sends it again once it changes', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('endpoint', [API]);
    const first = await s.next();
    s.ack(first, [API], 'endpoints[0]: simulated rejection by the test client');
    await expect.poll(() => total('xdsNacks', { type: 'endpoint' })).toBe(1);
    const nack = logs.find((l) => l.code === 'CP_XDS_NACK');
    expect(nack).toBeDefined();
    expect(nack!.detail).toBe('endpoints[0]: simulated rejection by the test client');
    expect(nack!.resources).toEqual([API]);
    expect(nack!.level).toBe(40);
    // A reload that changes nothing about api does not re-send it.
    const pushes = await total('xdsPushes');
    discovery.changed();
    await looked(API, 2);
    await barrier(s, 'cluster', [], pushes);
    // A change does.
    discovery.set(API, 12082, ['10.0.0.6']);
    const changed = await s.next();
    expect(changed.type_url).toBe(TypeUrl.endpoint);
    expect(endpointsOf(changed.resources[0]!)).toEqual(['10.0.0.6:12082']);
    expect(await total('xdsAcks')).toBe(0);
  });

  it('holds a change until the previous response is ACKed, then sends the latest state once', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('endpoint', [API]);
    const first = await s.next();
    // Not ACKed yet: two changes meanwhile.
    discovery.set(API, 12082, ['10.0.0.6']);
    await looked(API, 2);
    discovery.set(API, 12082, ['10.0.0.7']);
    await looked(API, 3);
    expect(s.pending()).toBe(0);
    s.ack(first, [API]);
    const latest = await s.next();
    expect(endpointsOf(latest.resources[0]!)).toEqual(['10.0.0.7:12082']);
    s.ack(latest, [API]);
    await barrier(s, 'cluster', [], await total('xdsPushes'));
  });

  it('ignores a request with a stale nonce', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('listener', [API]);
    const first = await s.next();
    s.ack(first, [API]);
    discovery.set(`db.${ZONE}`, 14688, ['10.0.0.6']);
    s.send('listener', [API, `db.${ZONE}`], { nonce: first.nonce, version: first.version_info });
    const second = await s.next();
    expect(second.names.sort()).toEqual([API, `db.${ZONE}`]);
    const pushes = await total('xdsPushes');
    // An old nonce asking for a third name: ignored (a newer response is what the client must answer).
    s.send('listener', [API, `db.${ZONE}`, `x.${ZONE}`], { nonce: first.nonce, version: first.version_info });
    await expect.poll(() => total('xdsRequestsIgnored', { reason: 'stale_nonce' })).toBe(1);
    s.send('cluster', []);
    expect((await s.next()).type_url).toBe(TypeUrl.cluster);
    expect(await total('xdsPushes')).toBe(pushes + 1);
  });

  it('tells Listener and Cluster subscribers that a name disappeared, by leaving it out', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    discovery.set(`db.${ZONE}`, 14688, ['10.0.0.6']);
    const names = [API, `db.${ZONE}`];
    const s = ads();
    s.send('listener', names);
    const lds = await s.next();
    expect(lds.names.sort()).toEqual([...names].sort());
    s.ack(lds, names);
    discovery.delete(`db.${ZONE}`);
    const after = await s.next();
    expect(after.type_url).toBe(TypeUrl.listener);
    expect(after.names).toEqual([API]);
  });

  it('keeps the last answer while the discovery fails for a name, and pushes when it answers again', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('listener', [API]);
    s.ack(await s.next(), [API]);
    s.send('endpoint', [API]);
    s.ack(await s.next(), [API]);
    const pushes = await total('xdsPushes');
    discovery.fail(API);
    await looked(API, 2);
    await barrier(s, 'cluster', [], pushes);
    discovery.set(API, 12082, ['10.0.0.8']);
    const eds = await s.next();
    expect(endpointsOf(eds.resources[0]!)).toEqual(['10.0.0.8:12082']);
  });

  it('does not keep observed endpoints through a failure: the view withdrew them, so a failed fallback pushes them out', async () => {
    // Cluster mode: the service ran on one host; its listener closed, the view dropped it, and the
    // lookup fell through to the upstream, which fails. Keeping the last answer would keep a dead host.
    discovery.set(API, 12082, ['10.0.0.5'], { source: 'observed' });
    const s = ads();
    s.send('endpoint', [API]);
    const first = await s.next();
    expect(endpointsOf(first.resources[0]!)).toEqual(['10.0.0.5:12082']);
    s.ack(first, [API]);
    discovery.fail(API);
    const eds = await s.next();
    expect(eds.resources.map((r) => r.cluster_name)).toEqual([API]);
    expect(endpointsOf(eds.resources[0]!)).toEqual([]);
  });
});

describe('streams', () => {
  it('answers a client reconnecting with old versions with the current state', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const a = ads();
    a.send('listener', [API]);
    const lds = await a.next();
    a.ack(lds, [API]);
    a.send('endpoint', [API]);
    const eds = await a.next();
    a.ack(eds, [API]);
    a.cancel();
    await expect.poll(() => xds.handle.streams()).toBe(0);

    discovery.set(API, 12082, ['10.0.0.6']);
    const b = ads();
    // What a client sends on a new stream: its last versions, no nonce.
    b.send('listener', [API], { version: lds.version_info });
    b.send('endpoint', [API], { version: eds.version_info });
    const l2 = await b.next();
    expect(l2.names).toEqual([API]);
    const e2 = await b.next();
    expect(endpointsOf(e2.resources[0]!)).toEqual(['10.0.0.6:12082']);
  });

  it('serves 1,000 subscriptions on one stream, one lookup per name, and pushes one changed name alone', async () => {
    const names = Array.from({ length: 1000 }, (_, i) => `svc${i}.${ZONE}`);
    discovery.setMany(names.map((n, i) => [n, 2000 + i, [`10.1.${i >> 8}.${i & 255}`]]));
    const s = ads();
    s.send('listener', names);
    const lds = await s.next();
    expect(lds.names).toHaveLength(1000);
    expect(new Set(lds.names)).toEqual(new Set(names));
    s.ack(lds, names);
    s.send('endpoint', names);
    const eds = await s.next();
    expect(eds.names).toHaveLength(1000);
    expect(endpointsOf(eds.resources[eds.names.indexOf(names[500]!)]!)).toEqual(['10.1.1.244:2500']);
    s.ack(eds, names);
    expect(names.every((n) => discovery.lookups.get(n) === 1)).toBe(true);
    expect(xds.handle.names()).toBe(1000);
    expect(await xds.metrics.xdsSubscriptions.get()).toMatchObject({ values: expect.arrayContaining([expect.objectContaining({ labels: { type: 'endpoint' }, value: 1000 })]) });

    discovery.set(names[7]!, 2007, ['10.9.9.9']);
    const one = await s.next();
    expect(one.type_url).toBe(TypeUrl.endpoint);
    expect(one.names).toEqual([names[7]]);
    expect(endpointsOf(one.resources[0]!)).toEqual(['10.9.9.9:2007']);

    s.cancel();
    await expect.poll(() => xds.handle.names()).toBe(0);
    const subs = await xds.metrics.xdsSubscriptions.get();
    expect(subs.values.reduce((sum, v) => sum + v.value, 0)).toBe(0);
  });

  it('shares one lookup among many streams and pushes a change to each', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const many = Array.from({ length: 50 }, () => ads());
    for (const s of many) s.send('endpoint', [API]);
    const firsts = await Promise.all(many.map((s) => s.next()));
    for (const [i, s] of many.entries()) s.ack(firsts[i]!, [API]);
    expect(discovery.lookups.get(API)).toBe(1);
    expect(xds.handle.streams()).toBe(50);
    await expect.poll(() => total('xdsAcks')).toBe(50);
    discovery.set(API, 12082, ['10.0.0.6']);
    const pushed = await Promise.all(many.map((s) => s.next()));
    expect(pushed.every((r) => endpointsOf(r.resources[0]!).join() === '10.0.0.6:12082')).toBe(true);
    expect(discovery.lookups.get(API)).toBe(2);
  });

  it('ends a stream over the subscription limit with RESOURCE_EXHAUSTED and CP_XDS_LIMIT', async () => {
    await xds.close();
    await start({ maxSubscriptionsPerStream: 10 });
    const s = ads();
    s.send('listener', Array.from({ length: 6 }, (_, i) => `a${i}.${ZONE}`));
    await s.next();
    s.send('endpoint', Array.from({ length: 5 }, (_, i) => `a${i}.${ZONE}`));
    const status = await s.ended;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.metadata.get(ERROR_CODE_METADATA)).toEqual(['CP_XDS_LIMIT']);
    expect(logs.some((l) => l.code === 'CP_XDS_LIMIT')).toBe(true);
    await expect.poll(() => xds.handle.names()).toBe(0);
  });

  it('refuses streams over the stream limit with RESOURCE_EXHAUSTED', async () => {
    await xds.close();
    await start({ maxStreams: 2 });
    const open = [ads(), ads()];
    for (const s of open) s.send('cluster', []);
    await Promise.all(open.map((s) => s.next()));
    const third = ads();
    third.send('cluster', []);
    const status = await third.ended;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.metadata.get(ERROR_CODE_METADATA)).toEqual(['CP_XDS_LIMIT']);
    expect(xds.handle.streams()).toBe(2);
  });

  // Issue 21, finding 2: bounds per client and in total, with fair refusal. All streams of one RawAds connection
  // are one client (loopback: a client is a connection, grpc/peer.ts); `own` gives a stream a connection of its own.
  const own = () => {
    const s = new RawAds(xds.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    streams.push(s);
    return s;
  };

  it('refuses a client its streams past maxStreamsPerClient, while another client still gets one', async () => {
    await xds.close();
    await start({ maxStreamsPerClient: 2 });
    const first = own();
    first.send('cluster', []);
    await first.next();
    // Two more on the same connection (streams of `first`'s channel): the second of them is one too many for this client.
    const call = (first.client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<object, object> }).StreamAggregatedResources.bind(first.client);
    const mine = [call(), call()];
    const statuses = mine.map((c) => new Promise<grpc.StatusObject>((resolve) => { c.on('data', () => {}); c.on('error', () => {}); c.on('status', resolve); }));
    for (const c of mine) c.write({ type_url: TypeUrl.cluster, resource_names: [], response_nonce: '', version_info: '', node: { id: 'x' } });
    const ended = await Promise.race([Promise.any(statuses), new Promise<null>((r) => setTimeout(() => r(null), 3000))]);
    expect(ended?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(ended?.metadata.get(ERROR_CODE_METADATA)).toEqual(['CP_XDS_LIMIT']);
    const other = own();
    other.send('cluster', []);
    expect((await other.next()).type_url).toBe(TypeUrl.cluster);
    for (const c of mine) c.cancel();
  });

  it('ends the stream that takes a client past maxNamesPerClient; its other streams and other clients go on', async () => {
    await xds.close();
    await start({ maxNamesPerClient: 10 });
    const client = own();
    client.send('listener', Array.from({ length: 6 }, (_, i) => `a${i}.${ZONE}`));
    await client.next();
    const call = (client.client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<object, object> }).StreamAggregatedResources();
    const second = new Promise<grpc.StatusObject>((resolve) => { call.on('data', () => {}); call.on('error', () => {}); call.on('status', resolve); });
    call.write({ type_url: TypeUrl.listener, resource_names: Array.from({ length: 5 }, (_, i) => `b${i}.${ZONE}`), response_nonce: '', version_info: '', node: { id: 'x' } });
    const status = await second;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(/more than 10 xDS names subscribed by/);
    // The first stream still holds its six and answers; another client subscribes to eight.
    client.send('listener', Array.from({ length: 6 }, (_, i) => `a${i}.${ZONE}`), { nonce: '' });
    expect((await client.next()).type_url).toBe(TypeUrl.listener);
    const other = own();
    other.send('listener', Array.from({ length: 8 }, (_, i) => `c${i}.${ZONE}`));
    expect((await other.next()).type_url).toBe(TypeUrl.listener);
    expect(client.status).toBeUndefined();
  });

  it('past maxNames, a client under its equal share is served and the largest holder gives way', async () => {
    await xds.close();
    await start({ maxNames: 10, maxNamesPerClient: 100 });
    const big = own();
    big.send('listener', Array.from({ length: 9 }, (_, i) => `big${i}.${ZONE}`));
    await big.next();
    const small = own();
    small.send('listener', [`small0.${ZONE}`, `small1.${ZONE}`, `small2.${ZONE}`]);
    expect((await small.next()).type_url).toBe(TypeUrl.listener);
    const status = await big.ended;
    expect(status.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(status.details).toMatch(/more than an equal share/);
    // And a client at its share asking for more than the total allows is refused itself.
    const late = own();
    late.send('listener', Array.from({ length: 8 }, (_, i) => `late${i}.${ZONE}`));
    expect((await late.ended).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(small.status).toBeUndefined();
  });

  it('listens to the discovery only while a client subscribes to a name (an idle daemon is not woken for xDS)', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    expect(discovery.listenerCount()).toBe(0);
    const s = ads();
    s.send('cluster', []);
    await s.next();
    // A stream that asks for no name yet: still nothing to follow.
    expect(discovery.listenerCount()).toBe(0);
    s.send('listener', [API]);
    await s.next();
    expect(discovery.listenerCount()).toBe(1);
    s.close();
    await s.ended;
    await expect.poll(() => discovery.listenerCount()).toBe(0);
  });

  it('releases everything when a client goes away', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const s = ads();
    s.send('listener', [API]);
    await s.next();
    expect(xds.handle.streams()).toBe(1);
    s.close();
    expect((await s.ended).code).toBe(grpc.status.OK);
    await expect.poll(() => xds.handle.streams()).toBe(0);
    expect(xds.handle.names()).toBe(0);
    expect((await xds.metrics.xdsClients.get()).values[0]!.value).toBe(0);
  });

  it('ends every stream with UNAVAILABLE at shutdown, stops listening to the discovery, and refuses new streams', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const a = ads();
    const b = ads();
    for (const s of [a, b]) s.send('listener', [API]);
    await Promise.all([a.next(), b.next()]);
    expect(discovery.listenerCount()).toBe(1);
    xds.handle.close();
    const statuses = await Promise.all([a.ended, b.ended]);
    expect(statuses.map((st) => st.code)).toEqual([grpc.status.UNAVAILABLE, grpc.status.UNAVAILABLE]);
    expect(discovery.listenerCount()).toBe(0);
    expect(xds.handle.streams()).toBe(0);
    const late = ads();
    late.send('listener', [API]);
    expect((await late.ended).code).toBe(grpc.status.UNAVAILABLE);
  });

  it('answers the delta variant with UNIMPLEMENTED', async () => {
    const Ctor = grpc.makeClientConstructor(xdsProtos().ads, 'AggregatedDiscoveryService');
    const client = new Ctor(xds.address, grpc.credentials.createInsecure()) as unknown as { DeltaAggregatedResources(): grpc.ClientDuplexStream<object, object> } & grpc.Client;
    const call = client.DeltaAggregatedResources();
    call.on('data', () => {});
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      call.on('error', () => {});
      call.on('status', resolve);
    });
    expect(status.code).toBe(grpc.status.UNIMPLEMENTED);
    client.close();
  });

  it('survives bytes that are no DiscoveryRequest: that stream fails, the others go on', async () => {
    discovery.set(API, 12082, ['10.0.0.5']);
    const good = ads();
    const client = new grpc.Client(xds.address, grpc.credentials.createInsecure());
    const bad = client.makeBidiStreamRequest(
      '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources',
      (b: Buffer) => b,
      (b: Buffer) => b,
    );
    bad.on('data', () => {});
    bad.on('error', () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => bad.on('status', resolve));
    bad.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12]));
    expect((await status).code).not.toBe(grpc.status.OK);
    client.close();
    good.send('listener', [API]);
    expect((await good.next()).names).toEqual([API]);
  });
});

describe('answers the discovery does not announce', () => {
  it('looks an upstream (A/AAAA) answer up again at its TTL and pushes what changed', async () => {
    await xds.close();
    await start({ refreshFloorMs: 50 });
    discovery.set(API, 12082, ['10.0.0.5'], { source: 'upstream', ttl: 0 });
    const s = ads();
    s.send('endpoint', [API]);
    s.ack(await s.next(), [API]);
    discovery.setQuietly(API, 12082, ['10.0.0.6'], { source: 'upstream', ttl: 0 });
    const eds = await s.next();
    expect(endpointsOf(eds.resources[0]!)).toEqual(['10.0.0.6:12082']);
  });

  it('does not poll answers the discovery announces itself (registry, observed)', async () => {
    await xds.close();
    await start({ refreshFloorMs: 10, retryMs: 10 });
    discovery.set(API, 12082, ['10.0.0.5'], { ttl: 0 });
    const s = ads();
    s.send('endpoint', [API]);
    s.ack(await s.next(), [API]);
    await looked(API, 1);
    // Twenty refresh periods later, still the one lookup.
    await new Promise((r) => setTimeout(r, 200));
    expect(discovery.lookups.get(API)).toBe(1);
  });

  it('tries a failed lookup again after retryMs', async () => {
    await xds.close();
    await start({ retryMs: 50 });
    discovery.fail(API);
    const s = ads();
    s.send('endpoint', [API]);
    await looked(API, 1);
    discovery.setQuietly(API, 12082, ['10.0.0.7']);
    const eds = await s.next();
    expect(endpointsOf(eds.resources[0]!)).toEqual(['10.0.0.7:12082']);
  });
});

describe('a discovery that misbehaves', () => {
  /** MemoryDiscovery, but `api` rejects (or hangs) the way a broken core would. */
  async function startWith(lookup: (name: string) => Promise<never> | undefined, limits = {}): Promise<void> {
    await xds.close();
    await start(limits);
    const real = discovery.lookup.bind(discovery);
    discovery.lookup = (name: string) => lookup(name) ?? real(name);
  }

  it('treats a lookup rejected with CP_BAD_NAME as an absent name', async () => {
    const { CanonportError, ErrorCodes } = await import('../src/errors.js');
    await startWith((name) => (name === API ? Promise.reject(new CanonportError(ErrorCodes.BAD_NAME, 'bad')) : undefined));
    discovery.set(`db.${ZONE}`, 14688, ['10.0.0.6']);
    const s = ads();
    s.send('listener', [API, `db.${ZONE}`]);
    expect((await s.next()).names).toEqual([`db.${ZONE}`]);
    expect(logs.some((l) => l.code === 'CP_XDS_LOOKUP_FAILED')).toBe(false);
  });

  it('logs CP_XDS_LOOKUP_FAILED for any other rejection, and goes on serving the other names', async () => {
    await startWith((name) => (name === API ? Promise.reject(new Error('core exploded')) : undefined), { retryMs: 60_000 });
    discovery.set(`db.${ZONE}`, 14688, ['10.0.0.6']);
    const s = ads();
    s.send('listener', [API, `db.${ZONE}`]);
    expect((await s.next()).names).toEqual([`db.${ZONE}`]);
    expect(logs.find((l) => l.code === 'CP_XDS_LOOKUP_FAILED')).toMatchObject({ name: API, level: 40 });
  });

  it('gives up on a lookup that never settles after lookupTimeoutMs', async () => {
    await startWith((name) => (name === API ? new Promise<never>(() => {}) : undefined), { lookupTimeoutMs: 100, retryMs: 60_000 });
    discovery.set(`db.${ZONE}`, 14688, ['10.0.0.6']);
    const s = ads();
    s.send('listener', [API, `db.${ZONE}`]);
    // The Listener answer waits for every name (leaving one out would read as "deleted"), then goes without it.
    expect((await s.next()).names).toEqual([`db.${ZONE}`]);
    expect(logs.find((l) => l.code === 'CP_XDS_LOOKUP_FAILED')).toMatchObject({ name: API, timeoutMs: 100 });
  });
});
