import { describe, expect, it } from 'vitest';
import { defaultNodeName, parseClusterEndpoints } from '../src/cluster/cluster.js';
import { decodeEntry, encodeListener, encodeNode, listenerKey, nodeKey, parseKey, type ListenerRecord, type NodeRecord } from '../src/cluster/keys.js';
import { listenerRecords, reachableListeners } from '../src/cluster/publisher.js';
import { ClusterView, endpointAddresses } from '../src/cluster/view.js';
import { isCanonportError, ErrorCodes } from '../src/errors.js';
import type { InventoryListener } from '../src/inventory/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { count } from './helpers/cluster.js';

/** The key layout, the view's index and the publisher's choices, without etcd: values in, values out. */

const P = '/cp';
const node = (name: string, addresses = ['10.0.0.1']): NodeRecord => ({ name, addresses, canonportVersion: '0.1.0', registryDigest: '', started: '2024-01-01T00:00:00.000Z' });
const listener = (port: number, over: Partial<ListenerRecord> = {}): ListenerRecord => ({
  port,
  services: ['api'],
  scheme: 'base32',
  version: '',
  versionSource: '',
  since: '2024-01-01T00:00:00.000Z',
  bind: [{ family: 'tcp', address: '0.0.0.0' }],
  ...over,
});
const put = (key: string, value: string) => ({ type: 'put' as const, key, value });

describe('key layout v1', () => {
  it('names keys and reads them back', () => {
    expect(nodeKey(P, 'a')).toBe('/cp/v1/nodes/a');
    expect(listenerKey(P, 'a', 12082)).toBe('/cp/v1/listeners/a/12082');
    expect(parseKey(P, '/cp/v1/nodes/a')).toEqual({ kind: 'node', node: 'a' });
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
    expect(decodeEntry(P, nodeKey(P, 'a'), encodeNode(node('a')))).toEqual({ kind: 'node', node: 'a', record: node('a') });
    expect(decodeEntry(P, listenerKey(P, 'a', 12082), encodeListener(listener(12082)))).toMatchObject({ kind: 'listener', port: 12082 });
    const reason = (key: string, value: string) => {
      const d = decodeEntry(P, key, value);
      return d.kind === 'ignored' ? d.reason : d.kind;
    };
    expect(reason('/cp/v1/junk', '{}')).toBe('foreign_key');
    expect(reason(nodeKey(P, 'a'), '{not json')).toBe('bad_json');
    expect(reason(nodeKey(P, 'a'), JSON.stringify({ ...node('a'), addresses: ['not-an-ip'] }))).toBe('invalid');
    expect(reason(nodeKey(P, 'a'), JSON.stringify(node('b')))).toBe('key_mismatch');
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12083)))).toBe('key_mismatch');
    expect(reason(listenerKey(P, 'a', 12082), JSON.stringify({ ...listener(12082), services: [] }))).toBe('invalid');
    expect(reason(nodeKey(P, 'a'), 'x'.repeat(70_000))).toBe('too_large');
    // Fields that answers put into DNS names and TXT records are held to what canonport itself writes.
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12082, { services: ['evil.example.com.'] })))).toBe('invalid');
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12082, { version: '1\n2' })))).toBe('invalid');
    expect(reason(listenerKey(P, 'a', 12082), encodeListener(listener(12082, { services: ['splashpage-api', 'db0', 'user_v2'], version: '2.3.1-rc.1+b7' })))).toBe('listener');
    // Unknown fields are a later v1 writer's additions: accepted.
    expect(reason(nodeKey(P, 'a'), JSON.stringify({ ...node('a'), zone: 'x' }))).toBe('node');
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
        { key: nodeKey(P, 'a'), value: encodeNode(node('a', ['10.0.0.1'])) },
        { key: nodeKey(P, 'b'), value: encodeNode(node('b', ['10.0.0.2', 'fd00::2'])) },
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
    view.applyChanges([{ type: 'delete', key: nodeKey(P, 'b') }], 8);
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
    view.replaceAll([{ key: nodeKey(P, 'a'), value: encodeNode(node('a')) }], 1);
    view.applyChanges([put(nodeKey(P, 'a'), 'garbage'), put('/cp/v1/what', '{}')], 2);
    expect(view.nodes()).toEqual([]);
    expect(await count(metrics.clusterIgnoredValues, { reason: 'bad_json' })).toBe(1);
    expect(await count(metrics.clusterIgnoredValues, { reason: 'foreign_key' })).toBe(1);
  });

  it('refuses nodes and endpoints beyond its caps, counting them', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const view = new ClusterView({ prefix: P, metrics, caps: { maxNodes: 2, maxEndpoints: 3 } });
    view.replaceAll(['a', 'b', 'c'].map((n) => ({ key: nodeKey(P, n), value: encodeNode(node(n)) })), 1);
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
    view.replaceAll([{ key: nodeKey(P, 'a'), value: encodeNode(node('a')) }], 3);
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
    const first = new Map([[12082, Date.parse('2024-02-02T00:00:00Z')]]);
    const a = listenerRecords([l(12082, '::', ['api'], 'tcp6'), l(12082, '0.0.0.0')], first);
    const b = listenerRecords([l(12082, '0.0.0.0'), l(12082, '::', ['api'], 'tcp6')], first);
    expect(a).toEqual(b);
    expect(a).toEqual([{ ...listener(12082), since: '2024-02-02T00:00:00.000Z', bind: [{ family: 'tcp', address: '0.0.0.0' }, { family: 'tcp6', address: '::' }] }]);
    expect(encodeListener(a[0]!)).toBe(encodeListener(b[0]!));
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
