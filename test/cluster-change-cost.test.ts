import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeInstance, encodeNode, instanceKey, nodeKey, type InstanceRecord, type NodeRecord } from '../src/cluster/keys.js';
import { observedFrom } from '../src/cluster/observed.js';
import { StateDir } from '../src/cluster/state-dir.js';
import { ClusterView, type KeyValue, type WatchChange } from '../src/cluster/view.js';
import type { ServingState } from '../src/core/state.js';
import { Discovery } from '../src/discovery/discovery.js';
import { resolutionOf } from '../src/grpc/resolution.js';
import { WatchHub } from '../src/grpc/watch-hub.js';
import { silentLogger } from '../src/log.js';
import { parseRegistry } from '../src/registry/load.js';
import { base32Port } from '../src/scheme/index.js';
import { AnswerCache } from '../src/xds/answers.js';
import { lazyXdsProtos } from '../src/xds/protos.js';
import { listenerRecord, nodeRecord } from './helpers/cluster-records.js';

/**
 * Issue 24: a change of the cluster view costs what changed, not the view.
 * Work is counted, never timed: which ports' endpoints are rebuilt (the
 * view hands out the same frozen array until a port changes, and every
 * encoded DNS answer is kept while that array is), and how many entries a
 * snapshot encodes in one turn of the event loop.
 */

const P = '/cp';
const NODES = 40;
const PORTS_PER_NODE = 10;
/** Node i listens on ports 20000 + i·10 … + 9: 400 ports, one instance each. */
const portOf = (i: number, k: number) => 20_000 + i * PORTS_PER_NODE + k;
const inst = (port: number): InstanceRecord => ({
  ...listenerRecord(port),
  protocol: 'tcp',
  namespace: 'host',
  readiness: { state: 'ready', since: '2024-01-01T00:00:01.000Z', by: 'http' },
});
const self = (asked: { port: number; name: string }[]): NodeRecord => ({ ...nodeRecord('self', ['10.9.0.1']), askedNames: asked });
/** Names clients asked this host for, on the first `n` ports of the fleet. */
const askedOn = (n: number, name = (k: number) => `svc${k}`) => Array.from({ length: n }, (_, k) => ({ port: portOf(Math.floor(k / PORTS_PER_NODE), k % PORTS_PER_NODE), name: name(k) }));

function fleet(): { view: ClusterView; ports: number[] } {
  const view = new ClusterView({ prefix: P });
  const kvs: KeyValue[] = [];
  const ports: number[] = [];
  for (let i = 0; i < NODES; i++) {
    const name = `n${i}`;
    kvs.push({ key: nodeKey(P, name), value: encodeNode(nodeRecord(name, [`10.0.${i >> 8}.${i & 255}`])), lease: String(100 + i) });
    for (let k = 0; k < PORTS_PER_NODE; k++) {
      ports.push(portOf(i, k));
      kvs.push({ key: instanceKey(P, name, portOf(i, k)), value: encodeInstance(inst(portOf(i, k))), lease: String(100 + i) });
    }
  }
  kvs.push({ key: nodeKey(P, 'self'), value: encodeNode(self(askedOn(20))), lease: '99' });
  view.replaceAll(kvs, 10);
  return { view, ports };
}

/** The ports whose endpoints `change` made the view rebuild (the frozen array each port answers with is a new one). */
function rebuiltBy(view: ClusterView, ports: readonly number[], change: () => void): number[] {
  const before = new Map(ports.map((p) => [p, view.endpointsOnPort(p)]));
  change();
  return ports.filter((p) => view.endpointsOnPort(p) !== before.get(p));
}

describe('a change of the cluster view costs what changed (issue 24)', () => {
  it('rebuilds the endpoints of the ports a change touches, never the others', () => {
    const { view, ports } = fleet();
    let rev = 10;
    const putSelf = (asked: { port: number; name: string }[]) => view.applyChanges([{ type: 'put', key: nodeKey(P, 'self'), value: encodeNode(self(asked)), lease: '99' }], ++rev);

    // This host's record rewritten with the names it already asked (its publisher does so with every other change): nothing.
    expect(rebuiltBy(view, ports, () => putSelf(askedOn(20)))).toEqual([]);
    // One name more: that name's port only.
    const more = [...askedOn(20), { port: portOf(30, 3), name: 'billing' }];
    expect(rebuiltBy(view, ports, () => putSelf(more))).toEqual([portOf(30, 3)]);
    // One name replaced by another: the two ports whose names changed.
    const swapped = more.map((a, k) => (k === 5 ? { port: portOf(31, 1), name: 'ledger' } : a));
    expect(rebuiltBy(view, ports, () => putSelf(swapped))).toEqual([portOf(0, 5), portOf(31, 1)].sort((a, b) => a - b));
    // The same name asked by a second node is no change of the names; its going neither.
    const twice = () => view.applyChanges([{ type: 'put', key: nodeKey(P, 'n7'), value: encodeNode({ ...nodeRecord('n7', ['10.0.0.7']), askedNames: [{ port: portOf(30, 3), name: 'billing' }] }), lease: '107' }], ++rev);
    expect(rebuiltBy(view, ports, twice)).toEqual(ports.filter((p) => p >= portOf(7, 0) && p < portOf(8, 0))); // n7's own ports: its record changed
    expect(view.askedOn(portOf(30, 3))).toEqual(['billing']);
    // A listener starting somewhere: its port.
    expect(rebuiltBy(view, ports, () => view.applyChanges([{ type: 'put', key: instanceKey(P, 'n3', portOf(12, 0)), value: encodeInstance(inst(portOf(12, 0))), lease: '103' }], ++rev))).toEqual([portOf(12, 0)]);
    // And stopping: its port.
    expect(rebuiltBy(view, ports, () => view.applyChanges([{ type: 'delete', key: instanceKey(P, 'n12', portOf(12, 4)) }], ++rev))).toEqual([portOf(12, 4)]);
    // Every answer still says what the records say.
    expect(view.endpointsOnPort(portOf(12, 0)).map((e) => e.node)).toEqual(['n12', 'n3']);
    expect(view.endpointsOnPort(portOf(12, 4))).toEqual([]);
    expect(view.askedOn(portOf(0, 5))).toEqual([]);
    expect(view.askedOn(portOf(31, 1))).toEqual(['ledger']);
  });

  it('captures the view for a snapshot at once: what it encodes later is the view at that revision, whatever changed since', () => {
    const { view } = fleet();
    const expected = view.entries();
    const captured = view.capture();
    expect(captured.count).toBe(expected.length);
    view.applyChanges(
      [
        { type: 'delete', key: instanceKey(P, 'n1', portOf(1, 1)) },
        { type: 'put', key: instanceKey(P, 'n2', portOf(2, 2)), value: encodeInstance({ ...inst(portOf(2, 2)), version: '2.0.0' }), lease: '102' },
        { type: 'put', key: nodeKey(P, 'self'), value: encodeNode(self([])), lease: '99' },
      ],
      11,
    );
    view.replaceAll([], 12);
    expect([...captured.entries]).toEqual(expected);
  });
});

describe('the view snapshot written in slices (issue 24)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const stateDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'canonport-slices-'));
    dirs.push(d);
    return new StateDir(d);
  };

  it('encodes at most one slice of entries per turn of the event loop, and writes the file the write at once writes', async () => {
    const { view } = fleet();
    const all = view.entries();
    const SLICE = 25;
    // Entries counted as the writer reads them; a turn of the event loop (setImmediate) notes how many were read since the last.
    let read = 0;
    const counted: Iterable<KeyValue> = {
      *[Symbol.iterator]() {
        for (const e of view.capture().entries) {
          read++;
          yield e;
        }
      },
    };
    const perTurn: number[] = [];
    let writing = true;
    let last = 0;
    const turn = () => {
      perTurn.push(read - last);
      last = read;
      if (writing) setImmediate(turn);
    };
    setImmediate(turn);
    const sliced = stateDir();
    const meta = { prefix: P, revision: 10, savedAt: '2024-01-01T00:00:00.000Z' };
    expect(await sliced.writeSnapshotInSlices({ ...meta, entries: counted }, { sliceEntries: SLICE })).toBe(true);
    writing = false;
    perTurn.push(read - last);
    expect(read).toBe(all.length);
    // Without slices the whole view (441 entries) is encoded before the loop turns once.
    expect(Math.max(...perTurn)).toBeLessThanOrEqual(SLICE);
    expect(perTurn.filter((n) => n > 0).length).toBeGreaterThanOrEqual(Math.ceil(all.length / SLICE));

    // The same bytes as the write at once, and read back as the view it was.
    const whole = stateDir();
    expect(whole.writeSnapshot({ ...meta, entries: all })).toBe(true);
    expect(readFileSync(join(sliced.dir, 'view.json'), 'utf8')).toBe(readFileSync(join(whole.dir, 'view.json'), 'utf8'));
    const back = sliced.readSnapshot(P)!;
    expect(back.revision).toBe(10);
    const copy = new ClusterView({ prefix: P });
    copy.replaceAll(back.entries, back.revision, { snapshot: true });
    expect(copy.entries()).toEqual(all);
  });
});

describe('streams following names hear of the changes that touch them (issue 24)', () => {
  const Z = 'cluster.test';
  const SERVICES = ['api', 'db', 'web', 'cache'];
  /** Ten nodes, each running every service on its canonical port; a real discovery core over the view. */
  async function followedFleet() {
    const view = new ClusterView({ prefix: P });
    const kvs: KeyValue[] = [];
    for (let i = 0; i < 10; i++) {
      kvs.push({ key: nodeKey(P, `n${i}`), value: encodeNode(nodeRecord(`n${i}`, [`10.0.0.${i + 1}`])), lease: String(100 + i) });
      for (const s of SERVICES) kvs.push({ key: instanceKey(P, `n${i}`, base32Port(s)), value: encodeInstance({ ...inst(base32Port(s)), services: [s] }), lease: String(100 + i) });
    }
    view.replaceAll(kvs, 1);
    // The list's own notification goes first: it is no change for what follows.
    await new Promise((r) => setImmediate(r));
    const registry = parseRegistry(`zones: [${Z}]\nttl: 60\n`, 'test.yaml');
    const state: ServingState = { registry, zones: ['localhost', Z], cluster: { onlyListening: false, observedTtl: 5 } };
    const discovery = new Discovery({ state: () => state, observed: observedFrom(view) });
    /** Lookups started, by service. */
    const lookups = new Map<string, number>();
    const lookup = discovery.lookup.bind(discovery);
    discovery.lookup = (name, opts) => {
      const s = name.split('.')[0]!;
      lookups.set(s, (lookups.get(s) ?? 0) + 1);
      return lookup(name, opts);
    };
    let rev = 1;
    const change = (c: WatchChange) => view.applyChanges([c], ++rev);
    const stop = (node: string, s: string) => change({ type: 'delete', key: instanceKey(P, node, base32Port(s)) });
    const start = (node: string, s: string) =>
      change({ type: 'put', key: instanceKey(P, node, base32Port(s)), value: encodeInstance({ ...inst(base32Port(s)), services: [s] }), lease: String(100 + Number(node.slice(1))) });
    return { discovery, lookups, stop, start };
  }
  const until = async (what: string, ok: () => boolean) => {
    for (let i = 0; !ok(); i++) {
      if (i > 20_000) throw new Error(`never: ${what}`);
      await new Promise((r) => setImmediate(r));
    }
  };
  const name = (s: string) => `${s}.${Z}`;

  it('Watch: a listener change re-resolves the watched names on its port, not every watched name', async () => {
    const { discovery, lookups, stop, start } = await followedFleet();
    const hub = new WatchHub({ resolve: async (n) => resolutionOf(await discovery.lookup(n)), minIntervalMs: 3_600_000, concurrency: () => 32, logger: silentLogger, discovery });
    const hosts = new Map<string, number>();
    for (const s of SERVICES) hub.add(name(s), { deliver: (r) => hosts.set(s, r.endpoints.length), fail: (err) => expect.unreachable(String(err)) });
    const unsubscribe = discovery.onChange(() => hub.refreshAll());
    try {
      await until('every name resolved', () => SERVICES.every((s) => hosts.get(s) === 10));
      expect(Object.fromEntries(lookups)).toEqual({ api: 1, db: 1, web: 1, cache: 1 });
      stop('n3', 'api');
      await until('api re-resolved', () => hosts.get('api') === 9);
      // A change resolves what it touches synchronously (the queue starts at once): the others would have been counted by now.
      expect(Object.fromEntries(lookups)).toEqual({ api: 2, db: 1, web: 1, cache: 1 });
      // A port nobody watches, then db's: only db.
      start('n1', 'mail');
      stop('n5', 'db');
      await until('db re-resolved', () => hosts.get('db') === 9);
      expect(Object.fromEntries(lookups)).toEqual({ api: 2, db: 2, web: 1, cache: 1 });
    } finally {
      unsubscribe();
      hub.close();
    }
  });

  it('xDS: a listener change looks up the subscribed names on its port, not every subscribed name', async () => {
    const { discovery, lookups, stop, start } = await followedFleet();
    const cache = new AnswerCache({ discovery, protos: lazyXdsProtos(), logger: silentLogger, lookupTimeoutMs: 60_000, lookupConcurrency: () => 32, retryMs: 60_000, refreshFloorMs: 60_000 });
    const changes = new Map<string, number>();
    const sub = { answerChanged: (key: string) => changes.set(key.split('.')[0]!, (changes.get(key.split('.')[0]!) ?? 0) + 1) };
    const hostsOf = (s: string) => {
      const a = cache.answer(name(s));
      return a.kind === 'present' ? a.endpoints.length : -1;
    };
    for (const s of SERVICES) cache.subscribe(name(s), sub);
    try {
      await until('every name looked up', () => SERVICES.every((s) => hostsOf(s) === 10));
      expect(Object.fromEntries(lookups)).toEqual({ api: 1, db: 1, web: 1, cache: 1 });
      stop('n3', 'web');
      await until('web looked up again', () => hostsOf('web') === 9);
      expect(Object.fromEntries(lookups)).toEqual({ api: 1, db: 1, web: 2, cache: 1 });
      start('n2', 'mail');
      stop('n4', 'cache');
      await until('cache looked up again', () => hostsOf('cache') === 9);
      expect(Object.fromEntries(lookups)).toEqual({ api: 1, db: 1, web: 2, cache: 2 });
      expect(Object.fromEntries(changes)).toEqual({ api: 1, db: 1, web: 2, cache: 2 });
    } finally {
      for (const s of SERVICES) cache.unsubscribe(name(s), sub);
      cache.close();
    }
  });
});
