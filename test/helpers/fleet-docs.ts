import { encodeListener, encodeNode, legacyNodeKey as nodeKey, listenerKey, type ListenerRecord } from '../../src/cluster/keys.js';
import { ClusterView, type KeyValue } from '../../src/cluster/view.js';
import { fleetDocument, type FleetDocument } from '../../src/fleet/document.js';
import { fleetFromView } from '../../src/fleet/from-cluster.js';
import { base32Port } from '../../src/scheme/index.js';
import { scaleNode, type ScaleOptions } from './scale-fleet.js';

/**
 * Fleet documents made the way a daemon makes them: node and listener
 * records as publishers write them, loaded into a real ClusterView, read by
 * fleetFromView and fleetDocument. The records are the v1 layout's (what a
 * daemon from before readiness publishes, and every daemon mirrors): each
 * instance reads as `listening`.
 */

export const PREFIX = '/cp';
export const DIGEST_A = 'a'.repeat(64);
export const DIGEST_B = 'b'.repeat(64);
export const SINCE = '2026-12-01T10:00:00.000Z';

/**
 * The views' clock: a document carries when the view entered its state
 * (`viewSince`, and `collectedAtMs` of a node that gives no `observedAt`),
 * so two documents of the same fleet built a millisecond apart would differ
 * by the wall clock. Fixed, they differ only by what the test changed.
 */
const FIXED_NOW = (): number => Date.parse(SINCE) + 60_000;

export interface NodeSpec {
  name: string;
  address?: string;
  digest?: string;
  /** service name → version ("" unknown); the port is the name's base32 port. */
  runs: Record<string, string>;
}

export function recordsOf(nodes: readonly NodeSpec[]): KeyValue[] {
  const kvs: KeyValue[] = [];
  nodes.forEach((n, i) => {
    const address = n.address ?? `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    kvs.push({ key: nodeKey(PREFIX, n.name), value: encodeNode({ name: n.name, addresses: [address], canonportVersion: '0.1.0', registryDigest: n.digest ?? DIGEST_A, started: SINCE }) });
    for (const [service, version] of Object.entries(n.runs)) {
      const port = base32Port(service);
      const record: ListenerRecord = { port, services: [service], scheme: 'base32', version, versionSource: version ? 'http' : '', since: SINCE, bind: [{ family: 'tcp', address: '0.0.0.0' }] };
      kvs.push({ key: listenerKey(PREFIX, n.name, port), value: encodeListener(record) });
    }
  });
  return kvs;
}

export function viewOf(nodes: readonly NodeSpec[], revision = 10): ClusterView {
  const view = new ClusterView({ prefix: PREFIX, caps: { maxNodes: 100_000, maxEndpoints: 2_000_000 }, now: FIXED_NOW });
  view.replaceAll(recordsOf(nodes), revision);
  return view;
}

export function docOf(nodes: readonly NodeSpec[]): FleetDocument {
  return documentOf(viewOf(nodes));
}

/** The scale generator's fleet (test/helpers/scale-fleet.ts) as a view. */
export function scaleView(opts: ScaleOptions): ClusterView {
  const view = new ClusterView({ prefix: PREFIX, caps: { maxNodes: 100_000, maxEndpoints: 2_000_000 }, now: FIXED_NOW });
  const kvs = Array.from({ length: opts.nodes }, (_, i) => scaleNode(PREFIX, i, { started: SINCE, ...opts }).puts.map(([key, value]) => ({ key, value }))).flat();
  view.replaceAll(kvs, 10);
  return view;
}

export function documentOf(view: ClusterView): FleetDocument {
  return fleetDocument(fleetFromView(view, { endpoints: 'etcd://127.0.0.1:2379', prefix: PREFIX }));
}
