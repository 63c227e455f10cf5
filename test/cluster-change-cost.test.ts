import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeInstance, encodeNode, instanceKey, nodeKey, type InstanceRecord, type NodeRecord } from '../src/cluster/keys.js';
import { StateDir } from '../src/cluster/state-dir.js';
import { ClusterView, type KeyValue } from '../src/cluster/view.js';
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
