import { describe, expect, it } from 'vitest';
import { addressProblem, screenListener, screenNode } from '../src/cluster/address-policy.js';
import { WAITING_MAX_PER_NODE } from '../src/cluster/admission.js';
import { ackKey, drainKey, encodeAck, encodeDrain, encodeInstance, encodeListener, encodeNode, instanceKey, legacyNodeKey, listenerKey, nodeKey, type InstanceRecord } from '../src/cluster/keys.js';
import { ClusterView, type ViewCaps, type WatchChange } from '../src/cluster/view.js';
import { Metrics } from '../src/metrics/metrics.js';
import { capturingLogger, count } from './helpers/cluster.js';
import { listenerRecord, nodeRecord } from './helpers/cluster-records.js';

/**
 * Issue 21's cluster-side findings at the level of the view, without etcd:
 * addresses no host can have (finding 10), the view bounded per node
 * (finding 4) and caps that prefer this host and long-known live nodes over
 * a new flood, reconsidered when room appears (finding 7). The same attacks
 * against real daemons and etcd are in test/hostile-cluster.test.ts.
 */

const P = '/cp';
const node = nodeRecord;
const inst = (port: number, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
  ...listenerRecord(port),
  protocol: 'tcp',
  namespace: 'host',
  readiness: { state: 'ready', since: '2024-01-01T00:00:01.000Z', by: 'tcp' },
  ...over,
});

/** A node record put under `lease` (null: none), created at revision `created`. */
const nodePut = (name: string, created: number, lease: string | null = `l-${name}`, addresses?: string[]): WatchChange => ({
  type: 'put',
  key: nodeKey(P, name),
  value: encodeNode(node(name, addresses)),
  lease: lease ?? undefined,
  createRevision: created,
});
const instPut = (name: string, port: number, created: number, lease: string | null = `l-${name}`, over: Partial<InstanceRecord> = {}): WatchChange => ({
  type: 'put',
  key: instanceKey(P, name, port),
  value: encodeInstance(inst(port, over)),
  lease: lease ?? undefined,
  createRevision: created,
});
const asKv = (c: WatchChange) => {
  if (c.type !== 'put') throw new Error('a put');
  return { key: c.key, value: c.value, lease: c.lease, createRevision: c.createRevision };
};

function view(caps: Partial<ViewCaps> = {}, self = 'me') {
  const metrics = new Metrics({ defaultMetrics: false });
  const log = capturingLogger();
  return { v: new ClusterView({ prefix: P, self, caps, metrics, logger: log.logger }), metrics, log };
}
const names = (v: ClusterView) => v.nodes().map((n) => n.name);
const nodesOn = (v: ClusterView, port: number) => v.endpointsOnPort(port).map((e) => e.node);

describe('addresses no host can have (finding 10)', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['127.9.9.9', 'loopback'],
    ['::1', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['ff02::1', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['169.254.169.254', 'metadata'],
    ['fd00:ec2::254', 'metadata'],
    ['169.254.1.1', 'link_local'],
    ['fe80::1', 'link_local'],
    ['10.0.0.1', null],
    ['192.168.1.1', null],
    ['8.8.8.8', null],
    ['fd00::1', null],
    ['2001:db8::1', null],
    ['::ffff:10.0.0.1', null],
  ])('%s: %s', (address, problem) => {
    expect(addressProblem(address)).toBe(problem);
  });

  it('takes them out of a node record, keeping this host\'s own loopback; a record left with none is refused whole', () => {
    const bad = ['10.0.0.7', '127.0.0.1', '0.0.0.0', '::', '224.0.0.1', '255.255.255.255', '169.254.169.254'];
    const other = screenNode(node('x', bad), { self: false });
    expect(other.record.addresses).toEqual(['10.0.0.7']);
    expect(other.refused.map((r) => r.problem)).toEqual(['loopback', 'unspecified', 'unspecified', 'multicast', 'broadcast', 'metadata']);
    expect(other.usable).toBe(true);
    expect(screenNode(node('me', ['127.0.0.1']), { self: true })).toMatchObject({ record: { addresses: ['127.0.0.1'] }, refused: [], usable: true });
    expect(screenNode(node('x', ['127.0.0.1', '::1']), { self: false }).usable).toBe(false);
  });

  it('takes concrete binds out of an instance (wildcards stay), and refuses one whose own address no host can have', () => {
    const r = screenListener(inst(1, { bind: [{ family: 'tcp', address: '0.0.0.0' }, { family: 'tcp', address: '169.254.169.254' }] }), { self: false });
    expect(r.record.bind).toEqual([{ family: 'tcp', address: '0.0.0.0' }]);
    expect(r.usable).toBe(true);
    expect(screenListener(inst(1, { bind: [{ family: 'tcp', address: '224.0.0.1' }] }), { self: false }).usable).toBe(false);
    expect(screenListener(inst(1, { address: '127.0.0.1' }), { self: false }).usable).toBe(false);
    expect(screenListener(inst(1, { address: '10.1.1.1' }), { self: false }).usable).toBe(true);
  });

  it('in the view: answers never carry them, refusals are counted by reason, and a record with none left is no endpoint', async () => {
    const { v, metrics, log } = view();
    v.replaceAll(
      [
        asKv(nodePut('evil', 5, 'l-evil', ['10.0.0.7', '127.0.0.1', '0.0.0.0', '::', '224.0.0.1', '255.255.255.255', '169.254.169.254'])),
        asKv(instPut('evil', 12082, 6, 'l-evil', { bind: [{ family: 'tcp6', address: '::' }] })),
        asKv(nodePut('void', 7, 'l-void', ['127.0.0.1'])),
        asKv(instPut('void', 12082, 8, 'l-void')),
        asKv(nodePut('me', 9, 'l-me', ['127.0.0.1'])),
        asKv(instPut('me', 12082, 10, 'l-me')),
      ],
      10,
    );
    expect(v.endpointsOnPort(12082).map((e) => [e.node, e.addresses])).toEqual([
      ['evil', ['10.0.0.7']],
      ['me', ['127.0.0.1']],
    ]);
    expect(v.node('evil')!.addresses).toEqual(['10.0.0.7']);
    expect(v.node('void')).toBeUndefined();
    expect(await count(metrics.clusterRefusedAddresses, { reason: 'loopback' })).toBe(2);
    expect(await count(metrics.clusterRefusedAddresses, { reason: 'unspecified' })).toBe(2);
    expect(await count(metrics.clusterRefusedAddresses, { reason: 'metadata' })).toBe(1);
    // Logged with its code, once per key: evil's record and void's (this host's own loopback is no refusal).
    await new Promise((r) => setImmediate(r));
    expect(log.codes().filter((c) => c === 'CP_CLUSTER_ADDRESS_REFUSED')).toHaveLength(2);
    // A later put that names only bad addresses takes the record out, as an invalid value would.
    v.applyChanges([{ ...nodePut('evil', 5, 'l-evil', ['169.254.169.254']) }], 11);
    expect(v.node('evil')).toBeUndefined();
    expect(nodesOn(v, 12082)).toEqual(['me']);
  });
});

describe('caps that prefer this host and long-known live nodes (finding 7)', () => {
  it('a full list keeps this host and the oldest live nodes, whatever the key order; a flood of newer a* nodes is refused', async () => {
    const { v, metrics } = view({ maxNodes: 3 });
    const fakes = Array.from({ length: 8 }, (_, i) => nodePut(`a${i}`, 100 + i));
    v.replaceAll([...fakes, nodePut('web-1', 10), nodePut('web-2', 11), nodePut('me', 200)].map(asKv), 300);
    expect(names(v)).toEqual(['me', 'web-1', 'web-2']);
    expect(await count(metrics.clusterRefusedEntries, { kind: 'node' })).toBe(8);
    expect(v.waitingTotal).toBe(8);
  });

  it('a node under no lease ranks after every live one', () => {
    const { v } = view({ maxNodes: 2 });
    v.replaceAll([nodePut('old', 1, null), nodePut('b', 50), nodePut('c', 60)].map(asKv), 60);
    expect(names(v)).toEqual(['b', 'c']);
  });

  it('a flood through the watch at a full view is refused; this host displaces the worst-ranked node; room goes to the best waiting node', () => {
    const { v } = view({ maxNodes: 3 });
    v.replaceAll([nodePut('web-1', 10), nodePut('web-2', 11), nodePut('web-3', 12)].map(asKv), 12);
    v.applyChanges(Array.from({ length: 20 }, (_, i) => nodePut(`a${i}`, 20 + i)), 40);
    expect(names(v)).toEqual(['web-1', 'web-2', 'web-3']);
    v.applyChanges([nodePut('me', 41)], 41);
    expect(names(v)).toEqual(['me', 'web-1', 'web-2']);
    // A node leaves: the best waiting one comes in (web-3, older than every a*), at once.
    v.applyChanges([{ type: 'delete', key: nodeKey(P, 'web-1') }], 42);
    expect(names(v)).toEqual(['me', 'web-2', 'web-3']);
    // The flood deleted: nothing of it is left waiting or held.
    v.applyChanges(Array.from({ length: 20 }, (_, i) => ({ type: 'delete' as const, key: nodeKey(P, `a${i}`) })), 43);
    expect(v.waitingTotal).toBe(0);
    expect(names(v)).toEqual(['me', 'web-2', 'web-3']);
  });

  it('a real node refused while a flood fills the view is admitted once the flood is deleted (reconsidered, not refused for good)', () => {
    const { v } = view({ maxNodes: 5 });
    v.replaceAll([nodePut('me', 1), ...Array.from({ length: 4 }, (_, i) => nodePut(`a${i}`, 10 + i))].map(asKv), 13);
    v.applyChanges([nodePut('web-9', 50), instPut('web-9', 12082, 51)], 51);
    expect(names(v)).not.toContain('web-9');
    v.applyChanges(Array.from({ length: 4 }, (_, i) => ({ type: 'delete' as const, key: nodeKey(P, `a${i}`) })), 52);
    expect(names(v)).toEqual(['me', 'web-9']);
    expect(nodesOn(v, 12082)).toEqual(['web-9']); // its instance waited with it
  });

  it('a refused node admitted while the endpoint cap is full gets its instance in when an instance goes', () => {
    const { v } = view({ maxNodes: 3, maxEndpoints: 2 });
    v.replaceAll([nodePut('me', 1), instPut('me', 12082, 2), nodePut('f0', 3), instPut('f0', 12082, 4), nodePut('f1', 5)].map(asKv), 5);
    v.applyChanges([nodePut('web-d', 10), instPut('web-d', 12082, 11)], 11);
    expect(names(v)).toEqual(['f0', 'f1', 'me']);
    v.applyChanges([{ type: 'delete', key: nodeKey(P, 'f1') }], 12);
    expect(names(v)).toEqual(['f0', 'me', 'web-d']);
    expect(nodesOn(v, 12082)).toEqual(['f0', 'me']); // web-d's instance waits, now for the endpoint cap
    v.applyChanges([{ type: 'delete', key: instanceKey(P, 'f0', 12082) }], 13);
    expect(nodesOn(v, 12082)).toEqual(['me', 'web-d']);
  });

  it('--cluster-max-endpoints 10 with a flood of older instances still holds this host\'s own listener', async () => {
    const { v, metrics } = view({ maxEndpoints: 10 });
    const flood = Array.from({ length: 30 }, (_, i) => instPut('a0', 20000 + i, 3 + i));
    v.replaceAll([nodePut('a0', 2), ...flood, nodePut('me', 100), instPut('me', 12082, 101)].map(asKv), 101);
    expect(nodesOn(v, 12082)).toEqual(['me']);
    expect(v.endpointTotal).toBe(10);
    // Through the watch too: this host's next listener displaces the flood's newest.
    v.applyChanges([instPut('me', 12083, 102)], 102);
    expect(nodesOn(v, 12083)).toEqual(['me']);
    expect(v.endpointTotal).toBe(10);
    expect(await count(metrics.clusterRefusedEntries, { kind: 'endpoint' })).toBeGreaterThanOrEqual(21);
  });

  it('asks for a full list only when refused entries could not wait and room has appeared', () => {
    const { v } = view({ maxNodes: 2 });
    const flood = Array.from({ length: 10_050 }, (_, i) => nodePut(`f${i}`, 10 + i));
    v.replaceAll([nodePut('me', 1), nodePut('web-1', 2), ...flood].map(asKv), 20_000);
    expect(v.waitingTotal).toBe(10_000);
    expect(v.relistWanted).toBe(false); // no room: a list would change nothing
    v.applyChanges([{ type: 'delete', key: nodeKey(P, 'web-1') }], 20_001);
    // The best waiting node took the room; the view is full again, so no list yet.
    expect(names(v)).toEqual(['f0', 'me']);
    expect(v.relistWanted).toBe(false);
    v.applyChanges(Array.from({ length: 10_000 }, (_, i) => ({ type: 'delete' as const, key: nodeKey(P, `f${i}`) })), 20_002);
    // Every waiting node is gone and room is left: only a list finds the 50 that could not wait.
    expect(v.waitingTotal).toBe(0);
    expect(v.relistWanted).toBe(true);
  });
});

describe('the view bounded per node (finding 4)', () => {
  it('holds at most maxNodeInstances of one node, its newest refused; other nodes are untouched', async () => {
    const { v, metrics } = view({ maxNodeInstances: 5 });
    v.replaceAll([nodePut('evil', 1), nodePut('web', 2), instPut('web', 12082, 3)].map(asKv), 3);
    v.applyChanges(Array.from({ length: 50 }, (_, i) => instPut('evil', 20000 + i, 10 + i)), 60);
    expect(v.endpointTotal).toBe(6);
    expect(nodesOn(v, 20000)).toEqual(['evil']);
    expect(nodesOn(v, 20049)).toEqual([]);
    expect(nodesOn(v, 12082)).toEqual(['web']);
    expect(await count(metrics.clusterRefusedEntries, { kind: 'node_instances' })).toBe(45);
    // The node's own room: one of its instances goes, its oldest waiting one comes in.
    v.applyChanges([{ type: 'delete', key: instanceKey(P, 'evil', 20000) }], 61);
    expect(nodesOn(v, 20005)).toEqual(['evil']);
    expect(v.waitingTotal).toBe(44);
  });

  it('counts answer addresses: addresses × services per instance, the node\'s addresses for a wildcard bind', async () => {
    const { v, metrics } = view({ maxNodeAddresses: 100 });
    const twelve = Array.from({ length: 12 }, (_, i) => `10.1.0.${i + 1}`);
    const services = Array.from({ length: 10 }, (_, i) => `s${i}`);
    v.replaceAll([asKv(nodePut('evil', 1, 'l-evil', twelve))], 1);
    // 12 addresses × 10 services = 120 > 100: refused alone, whatever else the node holds.
    v.applyChanges([instPut('evil', 20000, 2, 'l-evil', { services })], 2);
    expect(v.endpointTotal).toBe(0);
    expect(await count(metrics.clusterRefusedEntries, { kind: 'node_addresses' })).toBe(1);
    // 12 × 2 = 24 each: four fit (96), the fifth does not.
    v.applyChanges(Array.from({ length: 5 }, (_, i) => instPut('evil', 20001 + i, 3 + i, 'l-evil', { services: ['a', 'b'] })), 8);
    expect(v.endpointTotal).toBe(4);
    // The node record grows to 16 addresses: each instance now costs 32, and the newest give way (3 × 32 = 96).
    v.applyChanges([nodePut('evil', 1, 'l-evil', [...twelve, '10.2.0.1', '10.2.0.2', '10.2.0.3', '10.2.0.4'])], 9);
    expect(v.endpointTotal).toBe(3);
    expect(nodesOn(v, 20004)).toEqual([]);
    expect(nodesOn(v, 20003)).toEqual(['evil']);
  });

  it('holds at most maxNodeBytes of one node\'s instance values', () => {
    const { v } = view({ maxNodeBytes: 65_536 });
    const big = Array.from({ length: 60 }, (_, i) => `svc-${i}-${'x'.repeat(50)}`.slice(0, 63));
    v.replaceAll([asKv(nodePut('evil', 1))], 1);
    v.applyChanges(Array.from({ length: 40 }, (_, i) => instPut('evil', 20000 + i, 2 + i, 'l-evil', { services: big })), 50);
    const size = Buffer.byteLength(encodeInstance(inst(20000, { services: big })));
    expect(v.endpointTotal).toBe(Math.floor(65_536 / size));
  });

  it('an instance under the node record\'s lease displaces one under another lease (an impostor or a leftover) at the node\'s cap', () => {
    const { v } = view({ maxNodeInstances: 3 });
    v.replaceAll([asKv(nodePut('web', 1, 'l-web'))], 1);
    v.applyChanges(Array.from({ length: 3 }, (_, i) => instPut('web', 30000 + i, 2 + i, null)), 5);
    expect(v.endpointTotal).toBe(3);
    v.applyChanges([instPut('web', 12082, 6, 'l-web')], 6);
    expect(nodesOn(v, 12082)).toEqual(['web']);
    expect(v.endpointTotal).toBe(3);
  });

  it('keeps at most WAITING_MAX_PER_NODE of one node waiting: its excess cannot push out another node\'s', () => {
    const { v } = view({ maxNodeInstances: 1, maxNodes: 2 });
    v.replaceAll([nodePut('me', 1), nodePut('evil', 2)].map(asKv), 2);
    v.applyChanges(Array.from({ length: 1000 }, (_, i) => instPut('evil', 20000 + i, 3 + i)), 2000);
    expect(v.waitingTotal).toBe(WAITING_MAX_PER_NODE);
    v.applyChanges([nodePut('web', 3000), instPut('web', 12082, 3001)], 3001);
    expect(v.waitingTotal).toBe(WAITING_MAX_PER_NODE + 2);
    v.applyChanges([{ type: 'delete', key: nodeKey(P, 'evil') }], 3002);
    // evil still holds its one instance (a node keeps its place while it holds anything): web still waits.
    expect(names(v)).toEqual(['me']);
    v.applyChanges([{ type: 'delete', key: instanceKey(P, 'evil', 20000) }], 3003);
    expect(names(v)).toEqual(['me', 'web']);
    expect(nodesOn(v, 12082)).toEqual(['web']);
  });

  it('one node holds at most 16 drains and 1,000 acks; an ack counts only under its acker\'s node lease', async () => {
    const { v, metrics } = view();
    v.replaceAll([asKv(nodePut('a', 1, 'l-a')), asKv(nodePut('b', 2, 'l-b'))], 2);
    const drains: WatchChange[] = Array.from({ length: 20 }, (_, i) => ({ type: 'put', key: drainKey(P, 'a', `d${i}`), value: encodeDrain({ id: `d${i}`, services: ['api'], requested: '2024-01-01T00:00:00.000Z' }), lease: 'l-a' }));
    v.applyChanges(drains, 3);
    expect(v.drains()).toHaveLength(16);
    expect(await count(metrics.clusterRefusedEntries, { kind: 'node_drains' })).toBe(4);
    v.applyChanges([{ type: 'put', key: ackKey(P, 'b', 'a', 'd0'), value: encodeAck({ revision: 3 }) }], 4);
    expect(v.acks('a', 'd0').size).toBe(0); // no lease: a forged or left-over key, no ack
    v.applyChanges([{ type: 'put', key: ackKey(P, 'b', 'a', 'd0'), value: encodeAck({ revision: 3 }), lease: 'l-b' }], 5);
    expect([...v.acks('a', 'd0')]).toEqual([['b', 3]]);
  });

  it('v1 mirrors have their own per-node budget: a v2 node writing its mirror is not counted twice', () => {
    const { v } = view({ maxNodeInstances: 2 });
    v.replaceAll(
      [
        { key: nodeKey(P, 'web'), value: encodeNode(node('web')), lease: '7', createRevision: 1 },
        { key: legacyNodeKey(P, 'web'), value: encodeNode(node('web')), lease: '7', createRevision: 1 },
        ...[12082, 12083].flatMap((port, i) => [
          { key: instanceKey(P, 'web', port), value: encodeInstance(inst(port)), lease: '7', createRevision: 2 + i },
          { key: listenerKey(P, 'web', port), value: encodeListener(inst(port)), lease: '7', createRevision: 2 + i },
        ]),
      ],
      5,
    );
    expect(v.endpointTotal).toBe(4);
    expect(nodesOn(v, 12083)).toEqual(['web']);
  });

  it('snapshots keep the create revisions the ranks need', () => {
    const { v } = view({ maxNodes: 2 });
    v.replaceAll([nodePut('web-1', 10), nodePut('web-2', 11)].map(asKv), 11);
    const copy = new ClusterView({ prefix: P, self: 'me', caps: { maxNodes: 2 } });
    copy.replaceAll([...v.entries(), asKv(nodePut('a0', 50))], 50, { snapshot: true });
    expect(names(copy)).toEqual(['web-1', 'web-2']);
  });
});
