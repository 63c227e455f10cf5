import { describe, expect, it } from 'vitest';
import { defaultNodeName, parseClusterEndpoints } from '../src/cluster/cluster.js';
import { ackKey, decodeEntry, drainKey, encodeAck, encodeDrain, encodeInstance, encodeListener, encodeNode, instanceKey, legacyNodeKey, listenerKey, nodeKey, parseKey, type InstanceRecord } from '../src/cluster/keys.js';
import { instanceRecords, listenerRecords, reachableListeners } from '../src/cluster/publisher.js';
import { ClusterView, endpointAddresses } from '../src/cluster/view.js';
import { isCanonportError, ErrorCodes } from '../src/errors.js';
import type { InventoryListener } from '../src/inventory/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { count } from './helpers/cluster.js';
import { listenerRecord, nodeRecord } from './helpers/cluster-records.js';

/** The key layout, the view's index and the publisher's choices, without etcd: values in, values out. */

const P = '/cp';
const node = nodeRecord;
const listener = listenerRecord;
const put = (key: string, value: string) => ({ type: 'put' as const, key, value });

describe('key layout v1', () => {
  it('names keys and reads them back', () => {
    expect(legacyNodeKey(P, 'a')).toBe('/cp/v1/nodes/a');
    expect(listenerKey(P, 'a', 12082)).toBe('/cp/v1/listeners/a/12082');
    expect(parseKey(P, '/cp/v1/nodes/a')).toEqual({ kind: 'node', layout: 'v1', node: 'a' });
    expect(parseKey(P, '/cp/v1/listeners/host-1/12082')).toEqual({ kind: 'listener', node: 'host-1', port: 12082 });
  });

  it.each([
    '/cp/v1/nodes/A', // not lowercase
    '/cp/v1/nodes/-a',
    '/cp/v1/nodes/a/b',
    '/cp/v1/listeners/a/012082', // leading zero: two keys for one port
    '/cp/v1/listeners/a/70000',
    '/cp/v1/listeners/a/0',
    '/cp/v1/other/a',
    '/cp/v2/nodes/a',
    '/cpx/v1/nodes/a',
  ])('calls %s foreign', (key) => {
    expect(parseKey(P, key)).toEqual({ kind: 'foreign' });
  });

  it('decodes what the writer encodes, and ignores what does not fit, with a reason', () => {
    expect(decodeEntry(P, legacyNodeKey(P, 'a'), encodeNode(node('a')))).toEqual({ kind: 'node', layout: 'v1', node: 'a', record: node('a') });
    expect(decodeEntry(P, listenerKey(P, 'a', 12082), encodeListener(listener(12082)))).toMatchObject({ kind: 'listener', port: 12082 });
    const reason = (key: string, value: string) => {
      const d = decodeEntry(P, key, value);
      return d.kind === 'ignored' ? d.reason : d.kind;
    };
    expect(reason('/cp/v1/junk', '{}')).toBe('foreign_key');
    expect(reason(legacyNodeKey(P, 'a'), '{not json')).toBe('bad_json');
    expect(reason(legacyNodeKey(P, 'a'), JSON.stringify({ ...node('a'), addresses: ['not-an-ip'] }))).toBe('invalid');
    expect(reason(legacyNodeKey(P, 'a'), JSON.stringify(node('b')))).toBe('key_mismatch');
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12083)))).toBe('key_mismatch');
    expect(reason(listenerKey(P, 'a', 12082), JSON.stringify({ ...listener(12082), services: [] }))).toBe('invalid');
    expect(reason(legacyNodeKey(P, 'a'), 'x'.repeat(70_000))).toBe('too_large');
    // Fields that answers put into DNS names and TXT records are held to what canonport itself writes.
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12082, { services: ['evil.example.com.'] })))).toBe('invalid');
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12082, { version: '1\n2' })))).toBe('invalid');
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12082, { services: ['splashpage-api', 'db0', 'user_v2'], version: '2.3.1-rc.1+b7' })))).toBe('listener');
    // Unknown fields are a later v1 writer's additions: accepted.
    expect(reason(legacyNodeKey(P, 'a'), JSON.stringify({ ...node('a'), zone: 'x' }))).toBe('node');
  });
});

describe('the cluster view index', () => {
  it('answers endpoints per port from nodes and listeners, sorted, and drops what is deleted', async () => {
    const view = new ClusterView({ prefix: P });
    // A range returns keys sorted: listeners before nodes. The view must not lose them.
    view.replaceAll(
      [
        { key: listenerKey(P, 'b', 12082), value: encodeListener(listener(12082, { version: '2' })) },
        { key: listenerKey(P, 'a', 12082), value: encodeListener(listener(12082, { version: '1' })) },
        { key: legacyNodeKey(P, 'a'), value: encodeNode(node('a', ['10.0.0.1'])) },
        { key: legacyNodeKey(P, 'b'), value: encodeNode(node('b', ['10.0.0.2', 'fd00::2'])) },
      ],
      7,
    );
    expect(view.status()).toMatchObject({ state: 'synced', revision: 7 });
    const eps = view.endpointsOnPort(12082);
    expect(eps.map((e) => [e.node, e.version, e.addresses])).toEqual([
      ['a', '1', ['10.0.0.1']],
      ['b', '2', ['10.0.0.2']], // 0.0.0.0: IPv4 only
    ]);
    expect(view.endpointsOnPort(12082)).toBe(eps); // cached until a change
    let notified = 0;
    view.onChange(() => notified++);
    const g = view.generation;
    view.applyChanges([{ type: 'delete', key: legacyNodeKey(P, 'b') }], 8);
    expect(view.generation).toBe(g + 1);
    expect(view.endpointsOnPort(12082).map((e) => e.node)).toEqual(['a']);
    view.applyChanges([{ type: 'delete', key: listenerKey(P, 'a', 12082) }], 9);
    expect(view.endpointsOnPort(12082)).toEqual([]);
    expect(view.endpointsOnPort(1)).toEqual([]);
    await Promise.resolve();
    expect(notified).toBe(1); // two changes in one tick: one notification
  });

  it('turns a key whose value becomes invalid into a deletion, and counts it', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const view = new ClusterView({ prefix: P, metrics });
    view.replaceAll([{ key: legacyNodeKey(P, 'a'), value: encodeNode(node('a')) }], 1);
    view.applyChanges([put(legacyNodeKey(P, 'a'), 'garbage'), put('/cp/v1/what', '{}')], 2);
    expect(view.nodes()).toEqual([]);
    expect(await count(metrics.clusterIgnoredValues, { reason: 'bad_json' })).toBe(1);
    expect(await count(metrics.clusterIgnoredValues, { reason: 'foreign_key' })).toBe(1);
  });

  it('refuses nodes and endpoints beyond its caps, counting them', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const view = new ClusterView({ prefix: P, metrics, caps: { maxNodes: 2, maxEndpoints: 3 } });
    view.replaceAll(['a', 'b', 'c'].map((n) => ({ key: legacyNodeKey(P, n), value: encodeNode(node(n)) })), 1);
    expect(view.nodes().map((n) => n.name)).toEqual(['a', 'b']);
    view.applyChanges([1, 2, 3, 4].map((p) => put(listenerKey(P, 'a', 2000 + p), encodeListener(listener(2000 + p)))), 2);
    expect(view.endpointTotal).toBe(3);
    // Updating a held entry is not growth: allowed at the cap.
    view.applyChanges([put(listenerKey(P, 'a', 2001), encodeListener(listener(2001, { version: '9' })))], 3);
    expect(view.endpointsOnPort(2001)[0]!.version).toBe('9');
    expect(await count(metrics.clusterRefusedEntries, { kind: 'node' })).toBe(1);
    expect(await count(metrics.clusterRefusedEntries, { kind: 'endpoint' })).toBe(1);
  });

  it('goes stale and is dropped on request, then reports missing', () => {
    let now = 1000;
    const view = new ClusterView({ prefix: P, now: () => now });
    expect(view.status().state).toBe('missing');
    view.replaceAll([{ key: legacyNodeKey(P, 'a'), value: encodeNode(node('a')) }], 3);
    now = 2000;
    view.markStale();
    expect(view.status()).toEqual({ state: 'stale', sinceMs: 2000, revision: 3 });
    expect(view.nodes()).toHaveLength(1); // the last view keeps serving
    view.drop();
    expect(view.status().state).toBe('missing');
    expect(view.nodes()).toHaveLength(0);
    view.markSynced(); // nothing listed since the drop: still missing
    expect(view.status().state).toBe('missing');
  });

  it('derives addresses from the bind: wildcards take the node addresses of their family', () => {
    const n = node('a', ['10.0.0.1', 'fd00::1']);
    expect(endpointAddresses(listener(1, { bind: [{ family: 'tcp', address: '0.0.0.0' }] }), n)).toEqual(['10.0.0.1']);
    expect(endpointAddresses(listener(1, { bind: [{ family: 'tcp6', address: '::' }] }), n)).toEqual(['10.0.0.1', 'fd00::1']);
    expect(endpointAddresses(listener(1, { bind: [{ family: 'tcp', address: '10.9.9.9' }, { family: 'tcp6', address: '::ffff:10.9.9.9' }] }), n)).toEqual(['10.9.9.9']);
  });
});

const inst = (port: number, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  ...listener(port),
  protocol: 'tcp',
  namespace: 'host',
  readiness: { state: 'ready', since: '2024-01-01T00:00:01.000Z', by: 'http', detail: 'HTTP 200 from /readyz' },
  ...over,
});

describe('key layout v2: one record per instance', () => {
  it('names every key of a node under one prefix, and reads them back', () => {
    expect(nodeKey(P, 'a')).toBe('/cp/v2/nodes/a/node');
    expect(instanceKey(P, 'a', 12082)).toBe('/cp/v2/nodes/a/instances/12082/tcp/host');
    expect(instanceKey(P, 'a', 12082, 'udp', 'ns-4026532')).toBe('/cp/v2/nodes/a/instances/12082/udp/ns-4026532');
    expect(drainKey(P, 'a', 'f00d')).toBe('/cp/v2/nodes/a/drains/f00d');
    expect(ackKey(P, 'b', 'a', 'f00d')).toBe('/cp/v2/nodes/b/acks/a/f00d');
    expect(parseKey(P, '/cp/v2/nodes/a/node')).toEqual({ kind: 'node', layout: 'v2', node: 'a' });
    expect(parseKey(P, '/cp/v2/nodes/a/instances/12082/udp/ns-1')).toEqual({ kind: 'instance', node: 'a', port: 12082, protocol: 'udp', namespace: 'ns-1' });
    expect(parseKey(P, '/cp/v2/nodes/a/drains/f00d')).toEqual({ kind: 'drain', node: 'a', id: 'f00d' });
    expect(parseKey(P, '/cp/v2/nodes/b/acks/a/f00d')).toEqual({ kind: 'ack', node: 'b', drainNode: 'a', id: 'f00d' });
    // A later layout's keys are not ours and not a foreign writer's: ignored without a warning.
    expect(parseKey(P, '/cp/v3/anything/at/all')).toEqual({ kind: 'future' });
  });

  it.each([
    '/cp/v2/nodes/a',
    '/cp/v2/nodes/a/node/x',
    '/cp/v2/nodes/a/instances/12082/sctp/host',
    '/cp/v2/nodes/a/instances/012082/tcp/host',
    '/cp/v2/nodes/a/instances/12082/tcp/Host',
    '/cp/v2/nodes/a/instances/12082/tcp',
    '/cp/v2/nodes/a/drains/NOT_HEX',
    '/cp/v2/other/a/node',
  ])('calls %s foreign', (key) => {
    expect(parseKey(P, key)).toEqual({ kind: 'foreign' });
  });

  it('decodes instances with their readiness and the optional fields later issues fill in', () => {
    const full = inst(12082, { names: ['api', 'checkout'], address: '10.0.5.7', container: { id: 'abc123', pod: 'api-7d9f', podNamespace: 'shop' } });
    expect(decodeEntry(P, instanceKey(P, 'a', 12082), encodeInstance(full))).toMatchObject({ kind: 'instance', node: 'a', port: 12082, record: full });
    const reason = (key: string, value: string) => {
      const d = decodeEntry(P, key, value);
      return d.kind === 'ignored' ? d.reason : d.kind;
    };
    expect(reason(instanceKey(P, 'a', 12082), encodeInstance(inst(12082, { protocol: 'udp' })))).toBe('key_mismatch');
    expect(reason(instanceKey(P, 'a', 12082), JSON.stringify({ ...inst(12082), readiness: { state: 'maybe', since: 'x', by: 'http' } }))).toBe('invalid');
    expect(reason(instanceKey(P, 'a', 12082), JSON.stringify({ ...inst(12082), readiness: undefined }))).toBe('invalid');
    expect(reason(drainKey(P, 'a', 'f00d'), encodeDrain({ id: 'f00d', services: ['api'], requested: '2024-01-01T00:00:00Z' }))).toBe('drain');
    expect(reason(drainKey(P, 'a', 'f00d'), encodeDrain({ id: 'beef', services: ['api'], requested: '2024-01-01T00:00:00Z' }))).toBe('key_mismatch');
    expect(reason(ackKey(P, 'b', 'a', 'f00d'), encodeAck({ revision: 9 }))).toBe('ack');
  });
});

describe('the cluster view over both layouts', () => {
  const kv = (key: string, value: string, lease = '7') => ({ key, value, lease });

  it('answers every instance of a port with its readiness; TCP, UDP and namespaces are separate instances', () => {
    const view = new ClusterView({ prefix: P });
    view.replaceAll(
      [
        kv(nodeKey(P, 'a'), encodeNode(node('a', ['10.0.0.1']))),
        kv(instanceKey(P, 'a', 12082), encodeInstance(inst(12082))),
        kv(instanceKey(P, 'a', 12082, 'udp'), encodeInstance(inst(12082, { protocol: 'udp' }))),
        kv(instanceKey(P, 'a', 12082, 'tcp', 'ns-9'), encodeInstance(inst(12082, { namespace: 'ns-9', address: '10.0.9.9', readiness: { state: 'draining', since: '2024-01-01T00:00:02.000Z', by: 'admin' } }))),
      ],
      3,
    );
    expect(view.endpointsOnPort(12082).map((e) => [e.protocol, e.namespace, e.readiness.state, e.addresses])).toEqual([
      ['tcp', 'host', 'ready', ['10.0.0.1']],
      ['tcp', 'ns-9', 'draining', ['10.0.9.9']], // its own address, not the node's
      ['udp', 'host', 'ready', ['10.0.0.1']],
    ]);
  });

  it('ignores instances whose lease is not their node record\'s (another daemon\'s leftovers, an impostor\'s keys)', () => {
    const view = new ClusterView({ prefix: P });
    view.replaceAll([kv(nodeKey(P, 'a'), encodeNode(node('a')), '7'), kv(instanceKey(P, 'a', 12082), encodeInstance(inst(12082)), '8')], 3);
    expect(view.endpointsOnPort(12082)).toEqual([]);
    // The owner's lease writes it: it counts.
    view.applyChanges([{ type: 'put', key: instanceKey(P, 'a', 12082), value: encodeInstance(inst(12082)), lease: '7' }], 4);
    expect(view.endpointsOnPort(12082).map((e) => e.node)).toEqual(['a']);
    // Someone else's node record under another lease: the instances of lease 7 stop counting.
    view.applyChanges([{ type: 'put', key: nodeKey(P, 'a'), value: encodeNode(node('a', ['10.6.6.6'])), lease: '9' }], 5);
    expect(view.endpointsOnPort(12082)).toEqual([]);
    expect(view.nodeLease('a')).toBe('9');
  });

  it('reads a node that only speaks v1 as ready instances, and a v2 record wins over its v1 mirror', () => {
    const view = new ClusterView({ prefix: P });
    view.replaceAll([kv(legacyNodeKey(P, 'old'), encodeNode(node('old', ['10.0.0.2']))), kv(listenerKey(P, 'old', 12082), encodeListener(listener(12082)))], 3);
    expect(view.endpointsOnPort(12082).map((e) => [e.node, e.readiness.state, e.readiness.by])).toEqual([['old', 'ready', 'tcp']]);
    expect(view.speaksV2('old')).toBe(false);
    // Upgraded: v2 record and a not-ready instance; the v1 mirror (ready only) no longer speaks for it.
    view.applyChanges(
      [
        { type: 'put', key: nodeKey(P, 'old'), value: encodeNode(node('old', ['10.0.0.2'])), lease: '7' },
        { type: 'put', key: instanceKey(P, 'old', 12082), value: encodeInstance(inst(12082, { readiness: { state: 'not-ready', since: '2024-01-01T00:00:03.000Z', by: 'http' } })), lease: '7' },
      ],
      4,
    );
    expect(view.endpointsOnPort(12082).map((e) => [e.node, e.readiness.state])).toEqual([['old', 'not-ready']]);
    expect(view.nodes().map((n) => n.name)).toEqual(['old']);
  });

  it('holds drains and acks, and snapshots and restores everything but acks', () => {
    const view = new ClusterView({ prefix: P });
    view.replaceAll(
      [
        kv(nodeKey(P, 'a'), encodeNode(node('a'))),
        kv(instanceKey(P, 'a', 12082), encodeInstance(inst(12082))),
        { ...kv(drainKey(P, 'a', 'f00d'), encodeDrain({ id: 'f00d', services: ['api'], requested: '2024-01-01T00:00:00.000Z' })), modRevision: 3 },
        kv(nodeKey(P, 'b'), encodeNode(node('b')), '8'),
        kv(ackKey(P, 'b', 'a', 'f00d'), encodeAck({ revision: 3 }), '8'),
      ],
      3,
    );
    expect(view.drains()).toEqual([{ node: 'a', id: 'f00d', services: ['api'], requested: '2024-01-01T00:00:00.000Z', revision: 3 }]);
    expect([...view.acks('a', 'f00d')]).toEqual([['b', 3]]);
    const copy = new ClusterView({ prefix: P });
    copy.replaceAll(view.entries(), 3, { snapshot: true });
    expect(copy.status()).toMatchObject({ state: 'stale', revision: 3, fromSnapshot: true });
    expect(copy.endpointsOnPort(12082)).toEqual(view.endpointsOnPort(12082));
    expect(copy.drains()).toEqual(view.drains());
    expect(copy.acks('a', 'f00d').size).toBe(0);
    // A watch reconnecting is not a list: a snapshot stays stale until etcd is listed.
    copy.markSynced();
    expect(copy.status().state).toBe('stale');
  });
});

describe('what the publisher publishes', () => {
  const l = (port: number, address: string, services = ['api'], family: 'tcp' | 'tcp6' = 'tcp'): InventoryListener => ({ port, address, family, services, version: '', versionSource: '', scheme: 'base32' });

  it('keeps claimed listeners other hosts can reach; loopback and unclaimed stay local', () => {
    const kept = reachableListeners([
      l(12082, '0.0.0.0'),
      l(12082, '::', ['api'], 'tcp6'),
      l(14688, '127.0.0.1', ['db0']),
      l(14689, '::1', ['db1'], 'tcp6'),
      l(14690, '::ffff:127.0.0.1', ['db2'], 'tcp6'),
      l(15000, '10.1.2.3', ['dnn']),
      l(40000, '0.0.0.0', []),
    ]);
    expect(kept.map((x) => `${x.port}/${x.address}`)).toEqual(['12082/0.0.0.0', '12082/::', '15000/10.1.2.3']);
  });

  it('folds a port\'s sockets into one record, stably', () => {
    const first = new Map([['12082/tcp', Date.parse('2024-02-02T00:00:00Z')]]);
    const a = listenerRecords([l(12082, '::', ['api'], 'tcp6'), l(12082, '0.0.0.0')], first);
    const b = listenerRecords([l(12082, '0.0.0.0'), l(12082, '::', ['api'], 'tcp6')], first);
    expect(a).toEqual(b);
    expect(a).toEqual([{ ...listener(12082), since: '2024-02-02T00:00:00.000Z', bind: [{ family: 'tcp', address: '0.0.0.0' }, { family: 'tcp6', address: '::' }] }]);
    expect(encodeListener(a[0]!)).toBe(encodeListener(b[0]!));
  });
});

describe('what the publisher publishes: readiness', () => {
  const l = (port: number, readiness?: InventoryListener['readiness']): InventoryListener => ({ port, address: '0.0.0.0', family: 'tcp', services: ['api'], version: '', versionSource: '', scheme: 'base32', readiness });
  const first = new Map([['12082/tcp', Date.parse('2024-02-02T00:00:00Z')], ['12083/tcp', Date.parse('2024-02-02T00:00:00Z')]]);

  it('carries each listener\'s verdict, and holds back one without a verdict when verdicts are required', () => {
    const ls = [l(12082, { state: 'not-ready', by: 'http', sinceMs: Date.parse('2024-02-02T00:00:05Z'), detail: 'HTTP 503 from /readyz\n' }), l(12083)];
    const strict = instanceRecords(ls, first, { requireVerdict: true });
    expect(strict.map((r) => [r.port, r.readiness])).toEqual([
      [12082, { state: 'not-ready', by: 'http', since: '2024-02-02T00:00:05.000Z', detail: 'HTTP 503 from /readyz?' }],
      [12083, undefined],
    ]);
    // Without probing (a reader's tests, a daemon without readiness), listening is ready.
    expect(instanceRecords(ls, first, { requireVerdict: false })[1]!.readiness).toEqual({ state: 'ready', since: '2024-02-02T00:00:00.000Z', by: 'tcp' });
  });
});

describe('cluster options', () => {
  it('parses etcd:// endpoint lists', () => {
    expect(parseClusterEndpoints('etcd://10.0.0.1:2379,[fd00::1]:2379,etcd-0.example:2379')).toEqual([
      { host: '10.0.0.1', port: 2379 },
      { host: 'fd00::1', port: 2379 },
      { host: 'etcd-0.example', port: 2379 },
    ]);
  });

  it.each(['http://10.0.0.1:2379', 'etcd://10.0.0.1', 'etcd://10.0.0.1:99999', 'etcd://[zz]:1', 'etcd://', 'etcd://a:1,'])('rejects %s with CP_CONFIG_INVALID', (url) => {
    let err: unknown;
    try {
      parseClusterEndpoints(url);
    } catch (e) {
      err = e;
    }
    expect(isCanonportError(err, ErrorCodes.CONFIG_INVALID)).toBe(true);
  });

  it('makes a DNS label of the hostname', () => {
    expect(defaultNodeName('Web_01.prod.example.com')).toBe('web-01');
    expect(defaultNodeName('-x-')).toBe('x');
    expect(defaultNodeName('...')).toBe('node');
    expect(defaultNodeName('a'.repeat(80))).toHaveLength(63);
  });
});
