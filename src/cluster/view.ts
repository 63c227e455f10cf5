import { nameListener, type ServiceName } from '../core/naming.js';
import { ErrorCodes } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { endpointAddresses, screenListener, screenNode, type RefusedAddress } from './address-policy.js';
import { Admission, type AdmissionCaps, type Candidate, type RefusalKind } from './admission.js';
import {
  decodeEntry,
  encodeDrain,
  encodeInstance,
  encodeListener,
  encodeNode,
  HOST_NAMESPACE,
  MAX_NODE_DRAINS,
  drainKey,
  instanceKey,
  legacyNodeKey,
  listenerKey,
  nodeKey,
  parseKey,
  type DecodedEntry,
  type DrainRecord,
  type IgnoreReason,
  type InstanceRecord,
  type ListenerRecord,
  type NodeRecord,
  type Protocol,
  type Readiness,
} from './keys.js';

/**
 * The cluster as this daemon last saw it in etcd: every node and every
 * instance it published, indexed for answers. Pure memory: the sync loop
 * (cluster.ts) feeds it lists and watch events; answers read it without
 * I/O and without waiting.
 *
 * Layouts: a node with a v2 node record is read from v2 only; a node with
 * only a v1 record (a daemon not yet upgraded) from v1, its listeners read
 * as ready instances in the host namespace. An instance or listener counts
 * only while its lease is its node record's lease.
 *
 * What it holds is bounded (admission.ts decides, by rank, never by key
 * order): nodes, instances, and per node its instances, answer addresses
 * and bytes; addresses no host can have are taken out of every record
 * first (address-policy.ts).
 */

export { endpointAddresses };

/** One instance of a claimed listener, as answers need it. */
export interface ClusterEndpoint {
  node: string;
  /** Where to connect: the instance's own address, else the node's addresses for wildcard binds, else the bound addresses. */
  addresses: readonly string[];
  port: number;
  protocol: Protocol;
  /** `host`, or the network namespace's label (issue 26). */
  namespace: string;
  services: readonly string[];
  scheme: string;
  version: string;
  versionSource: 'port' | 'http' | '';
  /** When the node first saw the port listening (ISO 8601). */
  since: string;
  /** ready / not-ready / draining, since when and how it was decided; a v1 listener reads as ready (tcp). */
  readiness: Readiness;
  /** True for a v1 listener (a node of an older canonport): its readiness is not known, only that it listens. */
  legacy?: true | undefined;
  /** The container or pod owning the instance's namespace (issue 26), when its node could read it. */
  container?: Readonly<{ id: string; pod?: string | undefined; podNamespace?: string | undefined }> | undefined;
  /**
   * The names people know it by (core/naming.ts), best source first: the
   * registry's as its node publishes them, else the names any node was
   * asked for on this port, then its process's own; empty: unnamed.
   */
  names: readonly ServiceName[];
}

/**
 * missing: never synced, or dropped after the maximum staleness;
 * synced: the watch is live; stale: the watch is down and the view is the last one seen
 * (or, after a start without etcd, the snapshot: `fromSnapshot`).
 */
export type ViewState = 'missing' | 'synced' | 'stale';

export interface ViewStatus {
  state: ViewState;
  /** When the view entered this state (ms since the epoch). */
  sinceMs: number;
  /** The etcd revision the view reflects (0 before the first list). */
  revision: number;
  /** True while the view is a snapshot read from the state directory, not yet listed from etcd. */
  fromSnapshot?: boolean | undefined;
}

/** A drain some node has in progress, with the revision it was written at. */
export interface PendingDrain {
  node: string;
  id: string;
  services: readonly string[];
  requested: string;
  /** The etcd revision of the drain key (mod_revision; 0 when unknown). */
  revision: number;
}

/** The read side every answer (DNS, gRPC, xDS, http_sd) uses. Every method answers from memory. */
export interface ClusterViewReader {
  /** Bumped on every change of nodes or endpoints, so formatted answers can be cached per generation. */
  readonly generation: number;
  /**
   * The instances on `port` (every readiness state: answers choose), sorted
   * by node, protocol and namespace; the same frozen array until that port or its nodes change.
   */
  endpointsOnPort(port: number): readonly ClusterEndpoint[];
  /** Every port some host listens on (with a node record), ascending. */
  ports(): readonly number[];
  /** The names nodes were asked for on `port` (their records' `askedNames`), sorted. */
  askedOn(port: number): readonly string[];
  /** Every node, sorted by name. */
  nodes(): readonly NodeRecord[];
  node(name: string): NodeRecord | undefined;
  /**
   * The address of a node's instances in namespace `namespace` (a
   * container's own, issue 26): what `<namespace>.<node>.node.<zone>`
   * answers; undefined when the view holds no such instance with one.
   */
  instanceAddress(node: string, namespace: string): string | undefined;
  status(): ViewStatus;
  /** Called after every change of the data or the state; returns the unsubscribe function. Never called synchronously from onChange itself. */
  onChange(listener: () => void): () => void;
}

/** The view's bounds (admission.ts says how they choose); every one refuses beyond it and counts (CP_CLUSTER_CAP_REACHED). */
export type ViewCaps = AdmissionCaps;

/**
 * 10,000 nodes and 250,000 instances in all (the scale docs/cluster.md
 * measures); per node 1,024 instances, 4,096 answer addresses and 1 MiB of
 * instance values: about four times what a busy Kubernetes node with its
 * pods' namespaces publishes (250 pods × 2 ports, 2 addresses each), and
 * at most ~1.5 MB of `/sd/prometheus` per node.
 */
export const DEFAULT_CAPS: ViewCaps = { maxNodes: 10_000, maxEndpoints: 250_000, maxNodeInstances: 1_024, maxNodeAddresses: 4_096, maxNodeBytes: 1024 * 1024 };
/** Drains in progress kept at most (drains are rare and short; a writer flooding them is refused and counted). */
export const MAX_DRAINS = 1_000;
/** Acks kept at most: one per live node per pending drain, so MAX_DRAINS × nodes is far more than any real fleet writes. */
export const MAX_ACKS = 100_000;
/**
 * Distinct (port, name) pairs of the nodes' `askedNames` kept at most. Every
 * node of a fleet is asked for the same few names, so this counts names, not
 * nodes × names; a writer flooding made-up names is refused and counted.
 */
export const MAX_ASKED_PAIRS = 20_000;
/** Acks one node holds at most: it acknowledges each drain once. */
export const MAX_NODE_ACKS = MAX_DRAINS;

export interface ClusterViewOptions {
  prefix: string;
  /** This daemon's own node: ranked first by every cap, and its loopback addresses are kept. */
  self?: string | undefined;
  caps?: Partial<ViewCaps> | undefined;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  now?: (() => number) | undefined;
}

/** A key and value as etcd gives them, in a list or a watch event. `lease` is etcd's lease id in decimal ("0" or absent: none). */
export interface KeyValue {
  key: string;
  value: Buffer | string;
  lease?: string | undefined;
  /** The key's mod_revision (drains use it). */
  modRevision?: number | undefined;
  /** The key's create_revision: how long a node has been known, for the caps' ranking (0 or absent: unknown). */
  createRevision?: number | undefined;
}

export type WatchChange =
  | { type: 'put'; key: string; value: Buffer | string; lease?: string | undefined; modRevision?: number | undefined; createRevision?: number | undefined }
  | { type: 'delete'; key: string };

/**
 * A key already checked against the layout (decodeEntry) with what the
 * view needs of its etcd metadata: a list decodes its pages as they come
 * (cluster.ts), so the values never pile up undecoded.
 */
export interface DecodedKeyValue {
  key: string;
  entry: DecodedEntry;
  /** The value's size in bytes. */
  bytes: number;
  lease?: string | undefined;
  modRevision?: number | undefined;
  createRevision?: number | undefined;
}

/** Decodes a key and value for replaceDecoded. */
export function decodeKeyValue(prefix: string, kv: KeyValue): DecodedKeyValue {
  const bytes = typeof kv.value === 'string' ? Buffer.byteLength(kv.value) : kv.value.length;
  return { key: kv.key, entry: decodeEntry(prefix, kv.key, kv.value), bytes, lease: kv.lease, modRevision: kv.modRevision, createRevision: kv.createRevision };
}

/** Keys remembered so an ignored value is logged once at warn level, not on every relist. */
const LOGGED_KEYS_MAX = 1000;

interface Held<T> {
  record: T;
  lease: string | undefined;
  createRevision: number;
}

interface HeldInstance extends Held<InstanceRecord> {
  node: string;
}

interface HeldAck {
  revision: number;
  lease: string | undefined;
}

/** `<node>/<proto>/<ns>`: an instance's identity within one port. */
const instanceId = (node: string, protocol: string, namespace: string) => `${node}/${protocol}/${namespace}`;
const normLease = (lease: string | undefined) => (lease === undefined || lease === '0' ? undefined : lease);

export class ClusterView implements ClusterViewReader {
  private readonly prefix: string;
  private readonly caps: ViewCaps;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger;
  private readonly now: () => number;

  private nodesV2 = new Map<string, Held<NodeRecord>>();
  private nodesV1 = new Map<string, Held<NodeRecord>>();
  /** port → `<node>/<proto>/<ns>` → instance (v2). */
  private byPort = new Map<number, Map<string, HeldInstance>>();
  /** port → node → listener (v1). */
  private legacyByPort = new Map<number, Map<string, Held<ListenerRecord>>>();
  /** node → its ports (either layout), to invalidate a node's cached endpoints when its record changes. */
  private portsByNode = new Map<string, Set<number>>();
  /** Decides what is held within the caps (admission.ts); the maps above index what it holds. */
  private readonly admission: Admission;
  /** Set when the admission added or removed anything since the last check (a change for readers). */
  private touched = false;
  /** `<node>/<id>` → drain. Bounded by MAX_DRAINS, and MAX_NODE_DRAINS per node. */
  private drainMap = new Map<string, PendingDrain & { lease: string | undefined; createRevision: number }>();
  private drainsByNode = new Map<string, number>();
  /** `<drain-node>/<id>` → acker → its ack. Bounded by MAX_ACKS in total, MAX_NODE_ACKS per acker. */
  private ackMap = new Map<string, Map<string, HeldAck>>();
  private ackCount = 0;
  /** port → name → how many nodes' records ask it. Bounded by MAX_ASKED_PAIRS pairs. */
  private asked = new Map<number, Map<string, number>>();
  /** node → the (port, name) pairs of its v2 record counted in `asked`. */
  private askedByNode = new Map<string, readonly { port: number; name: string }[]>();
  private askedPairs = 0;
  /** (port, name) pairs whose count fell to 0 in the batch being applied; settleAsked removes those still at 0. Emptied at the end of every batch: at most the asked names of the records one batch changes. */
  private askedUnsettled: { port: number; name: string }[] = [];
  private acksByNode = new Map<string, number>();
  private readonly endpointCache = new Map<number, readonly ClusterEndpoint[]>();
  private sortedNodes: readonly NodeRecord[] | undefined;
  /** Nodes of either layout, counted again only after a node changed (the gauge is set on every change). */
  private nodeCount: number | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly loggedKeys = new Set<string>();
  private notifyQueued = false;

  generation = 0;
  private state: ViewState = 'missing';
  private stateSinceMs: number;
  private revision = 0;
  private fromSnapshot = false;

  private readonly self: string | undefined;

  constructor(opts: ClusterViewOptions) {
    this.prefix = opts.prefix;
    this.caps = { ...DEFAULT_CAPS, ...opts.caps };
    this.metrics = opts.metrics;
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? Date.now;
    this.self = opts.self;
    this.stateSinceMs = this.now();
    this.admission = new Admission(this.caps, this.self, {
      add: (c) => this.index(c),
      remove: (c) => this.unindex(c),
      refused: (c, kind, cap) => this.refuse(c.key, kind, cap),
    });
    this.updateGauges();
  }

  // --- the read side ---

  endpointsOnPort(port: number): readonly ClusterEndpoint[] {
    const cached = this.endpointCache.get(port);
    if (cached) return cached;
    const out: ClusterEndpoint[] = [];
    for (const inst of this.byPort.get(port)?.values() ?? []) {
      const n = this.nodesV2.get(inst.node);
      // Without its node record (or under another lease than the record's) an instance has no owner here: not an endpoint.
      if (!n || n.lease !== inst.lease) continue;
      const r = inst.record;
      out.push(Object.freeze({
        node: inst.node,
        addresses: Object.freeze(r.address ? [r.address] : endpointAddresses(r, n.record)),
        port,
        protocol: r.protocol,
        namespace: r.namespace,
        services: Object.freeze([...r.services]),
        scheme: r.scheme,
        version: r.version,
        versionSource: r.versionSource,
        since: r.since,
        readiness: Object.freeze({ ...r.readiness }),
        ...(r.container ? { container: Object.freeze({ ...r.container }) } : {}),
        names: this.namesOf(port, r),
      }));
    }
    for (const [node, l] of this.legacyByPort.get(port) ?? []) {
      const n = this.nodesV1.get(node);
      if (!n || n.lease !== l.lease || this.nodesV2.has(node)) continue;
      const r = l.record;
      out.push(Object.freeze({
        node,
        addresses: Object.freeze(endpointAddresses(r, n.record)),
        port,
        protocol: 'tcp' as const,
        namespace: HOST_NAMESPACE,
        services: Object.freeze([...r.services]),
        scheme: r.scheme,
        version: r.version,
        versionSource: r.versionSource,
        since: r.since,
        readiness: Object.freeze({ state: 'ready' as const, since: r.since, by: 'tcp' as const }),
        legacy: true as const,
        names: this.namesOf(port, r),
      }));
    }
    out.sort((a, b) => cmp(a.node, b.node) || cmp(a.protocol, b.protocol) || cmp(a.namespace, b.namespace));
    const frozen = Object.freeze(out);
    this.endpointCache.set(port, frozen);
    return frozen;
  }

  /** The names nodes were asked for on `port` (their records' `askedNames`), sorted. */
  askedOn(port: number): readonly string[] {
    const out: string[] = [];
    for (const [name, n] of this.asked.get(port) ?? []) if (n > 0) out.push(name);
    return out.sort();
  }

  /** A listener's names: its node's own (registry or process), else the names asked on its port (core/naming.ts). */
  private namesOf(port: number, r: ListenerRecord & { names?: string[] | undefined; nameSource?: 'registry' | 'process' | 'none' | undefined }): readonly ServiceName[] {
    // A writer before issue 22 (a v1 listener too) says nothing of names: its claim is its names, as before, so nothing
    // it publishes leaves browsing or Prometheus discovery during an upgrade.
    const registry = r.nameSource === undefined ? r.services : r.nameSource === 'registry' ? (r.names ?? r.services) : [];
    const process = r.nameSource === 'process' ? (r.names ?? []) : [];
    return Object.freeze(nameListener({ registry, query: registry.length > 0 ? [] : this.askedOn(port), process }).map((n) => Object.freeze(n)));
  }

  ports(): readonly number[] {
    const all = new Set([...this.byPort.keys(), ...this.legacyByPort.keys()]);
    return [...all].filter((p) => this.endpointsOnPort(p).length > 0).sort((a, b) => a - b);
  }

  nodes(): readonly NodeRecord[] {
    if (!this.sortedNodes) {
      const all = new Map<string, NodeRecord>();
      for (const [name, n] of this.nodesV1) all.set(name, n.record);
      for (const [name, n] of this.nodesV2) all.set(name, n.record);
      this.sortedNodes = Object.freeze([...all.values()].sort((a, b) => cmp(a.name, b.name)));
    }
    return this.sortedNodes;
  }

  node(name: string): NodeRecord | undefined {
    return this.nodesV2.get(name)?.record ?? this.nodesV1.get(name)?.record;
  }

  instanceAddress(node: string, namespace: string): string | undefined {
    const n = this.nodesV2.get(node);
    if (!n) return undefined;
    // A node's ports are few (its services): walking them is cheaper than keeping another index current.
    for (const port of this.portsByNode.get(node) ?? []) {
      for (const inst of this.byPort.get(port)?.values() ?? []) {
        if (inst.node === node && inst.record.namespace === namespace && inst.record.address && inst.lease === n.lease) return inst.record.address;
      }
    }
    return undefined;
  }

  /** The lease a node's record is held under (decimal), or undefined. */
  nodeLease(name: string): string | undefined {
    return (this.nodesV2.get(name) ?? this.nodesV1.get(name))?.lease;
  }

  /** True when the node publishes the v2 layout (so it writes acks for drains). */
  speaksV2(name: string): boolean {
    return this.nodesV2.has(name);
  }

  /** Drains in progress on any node, in key order. */
  drains(): PendingDrain[] {
    return [...this.drainMap.values()].filter((d) => this.nodesV2.get(d.node)?.lease === d.lease).map(({ lease: _lease, createRevision: _c, ...d }) => d);
  }

  /**
   * Which nodes acknowledged a drain (acker → the revision its view had
   * reached). An ack counts only under its acker's node record lease: a key
   * left by an earlier daemon, or written without a lease, is no ack.
   */
  acks(drainNode: string, id: string): ReadonlyMap<string, number> {
    const out = new Map<string, number>();
    for (const [acker, a] of this.ackMap.get(`${drainNode}/${id}`) ?? []) if (a.lease !== undefined && this.nodesV2.get(acker)?.lease === a.lease) out.set(acker, a.revision);
    return out;
  }

  status(): ViewStatus {
    return { state: this.state, sinceMs: this.stateSinceMs, revision: this.revision, ...(this.fromSnapshot ? { fromSnapshot: true } : {}) };
  }

  /** Listener records held (shown or not), for metrics and tests. */
  get endpointTotal(): number {
    return this.admission.endpointCount;
  }

  /** Records refused or displaced by a cap and waiting for room (bounded: admission.ts). */
  get waitingTotal(): number {
    return this.admission.waitingCount;
  }

  /**
   * True when entries refused by the node or endpoint cap were lost (the
   * waiting room was full) and room has appeared since: only a full list
   * finds them again. The sync loop lists at a bounded rate (cluster.ts).
   */
  get relistWanted(): boolean {
    return this.admission.relistWanted;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Every record held, as keys and values a list would return (what the
   * snapshot in the state directory keeps). Acks are left out: they only
   * matter while etcd is reachable.
   */
  entries(): KeyValue[] {
    return [...this.capture().entries];
  }

  /**
   * entries() without the encoding: the records held now, captured by
   * reference (pointer copies only), each encoded as the iterable reaches
   * it. The view replaces a held record on every change and never modifies
   * one, so the capture stays the view at this revision while the view goes
   * on changing: a snapshot can be encoded and written in slices across
   * event-loop turns (issue 24: one pass over the whole view is ~100 ms at
   * 20,000 instances, every few seconds while listeners change).
   */
  capture(): { count: number; entries: Iterable<KeyValue> } {
    const P = this.prefix;
    const nodesV2 = [...this.nodesV2];
    const nodesV1 = [...this.nodesV1];
    const instances: [number, HeldInstance][] = [];
    for (const [port, at] of this.byPort) for (const i of at.values()) instances.push([port, i]);
    const legacy: [number, string, Held<ListenerRecord>][] = [];
    for (const [port, at] of this.legacyByPort) for (const [node, l] of at) legacy.push([port, node, l]);
    const drains = [...this.drainMap.values()];
    const created = (c: number) => (c ? { createRevision: c } : {});
    function* each(): Generator<KeyValue> {
      for (const [name, n] of nodesV2) yield { key: nodeKey(P, name), value: encodeNode(n.record), lease: n.lease, ...created(n.createRevision) };
      for (const [name, n] of nodesV1) yield { key: legacyNodeKey(P, name), value: encodeNode(n.record), lease: n.lease, ...created(n.createRevision) };
      for (const [port, i] of instances) yield { key: instanceKey(P, i.node, port, i.record.protocol, i.record.namespace), value: encodeInstance(i.record), lease: i.lease, ...created(i.createRevision) };
      for (const [port, node, l] of legacy) yield { key: listenerKey(P, node, port), value: encodeListener(l.record), lease: l.lease, ...created(l.createRevision) };
      for (const d of drains) {
        const record: DrainRecord = { id: d.id, services: [...d.services], requested: d.requested };
        yield { key: drainKey(P, d.node, d.id), value: encodeDrain(record), lease: d.lease, modRevision: d.revision, ...created(d.createRevision) };
      }
    }
    return { count: nodesV2.length + nodesV1.length + instances.length + legacy.length + drains.length, entries: { [Symbol.iterator]: each } };
  }

  // --- the write side, used by the sync loop ---

  /**
   * Replaces everything with a full list read at `revision` and marks the
   * view synced (or, for a snapshot read from disk, stale and `fromSnapshot`).
   */
  replaceAll(kvs: readonly KeyValue[], revision: number, opts: { snapshot?: boolean } = {}): void {
    this.replaceDecoded(
      kvs.map((kv) => decodeKeyValue(this.prefix, kv)),
      revision,
      opts,
    );
  }

  /** replaceAll for keys already decoded (a list decodes its pages as they come). */
  replaceDecoded(kvs: readonly DecodedKeyValue[], revision: number, opts: { snapshot?: boolean } = {}): void {
    this.nodesV2 = new Map();
    this.nodesV1 = new Map();
    this.byPort = new Map();
    this.legacyByPort = new Map();
    this.portsByNode = new Map();
    this.drainMap = new Map();
    this.drainsByNode = new Map();
    this.ackMap = new Map();
    this.acksByNode = new Map();
    this.ackCount = 0;
    this.asked = new Map();
    this.askedByNode = new Map();
    this.askedPairs = 0;
    this.askedUnsettled = [];
    this.endpointCache.clear();
    this.sortedNodes = undefined;
    this.nodeCount = undefined;
    this.admission.reset();
    // Nodes, instances and listeners are admitted together, by rank (admission.ts): the order etcd lists keys in decides nothing.
    const candidates: Candidate[] = [];
    for (const kv of kvs) {
      const c = this.candidate(kv);
      if (c) candidates.push(c);
      else if (kv.entry.kind !== 'node' && kv.entry.kind !== 'instance' && kv.entry.kind !== 'listener') this.applyOther(kv, kv.entry);
    }
    this.admission.admitAll(candidates);
    this.settleAsked();
    this.revision = revision;
    this.generation++;
    this.fromSnapshot = opts.snapshot === true;
    if (this.fromSnapshot) {
      this.state = 'synced'; // so setState records the change to stale with its time
      this.setState('stale');
    } else {
      this.setState('synced');
    }
    this.touched = false;
    this.changed();
  }

  /** Applies one watch response's events; `revision` is what the view reflects afterwards. */
  applyChanges(changes: readonly WatchChange[], revision: number): void {
    let changed = false;
    this.touched = false;
    for (const c of changes) changed = this.applyOne(c) || changed;
    // Room that appeared (a node left, an instance went) goes to what waits for it, best rank first.
    this.admission.reconsider();
    this.settleAsked();
    changed = this.touched || changed;
    this.touched = false;
    if (revision > this.revision) this.revision = revision;
    if (changed) {
      this.generation++;
      this.changed();
    }
  }

  markStale(): void {
    if (this.state === 'synced') this.setState('stale');
  }

  markSynced(): void {
    if (this.state !== 'synced' && this.revision > 0 && !this.fromSnapshot) this.setState('synced');
  }

  /** Forgets everything (the maximum staleness passed): answers fall back to single-host ones. */
  drop(): void {
    this.nodesV2 = new Map();
    this.nodesV1 = new Map();
    this.byPort = new Map();
    this.legacyByPort = new Map();
    this.portsByNode = new Map();
    this.drainMap = new Map();
    this.drainsByNode = new Map();
    this.ackMap = new Map();
    this.acksByNode = new Map();
    this.ackCount = 0;
    this.asked = new Map();
    this.askedByNode = new Map();
    this.askedPairs = 0;
    this.askedUnsettled = [];
    this.admission.reset();
    this.endpointCache.clear();
    this.sortedNodes = undefined;
    this.nodeCount = undefined;
    this.revision = 0;
    this.fromSnapshot = false;
    this.generation++;
    this.setState('missing');
    this.changed();
  }

  // --- internals ---

  private applyOne(c: WatchChange): boolean {
    if (c.type === 'delete') return this.deleteKey(c.key);
    const kv = decodeKeyValue(this.prefix, c);
    if (kv.entry.kind === 'ignored') {
      this.ignore(c.key, kv.entry.reason, kv.entry.detail);
      // The key no longer holds a valid value: whatever it held before is gone.
      return this.deleteKey(c.key);
    }
    const candidate = this.candidate(kv);
    if (candidate) {
      this.admission.put(candidate);
      return false; // the admission's sink says what changed (touched)
    }
    // A node, instance or listener that names no usable address: gone, like an invalid value.
    if (kv.entry.kind === 'node' || kv.entry.kind === 'instance' || kv.entry.kind === 'listener') return this.deleteKey(c.key);
    return this.applyOther(kv, kv.entry);
  }

  /**
   * A node record, instance or listener as the admission weighs it, its
   * addresses screened (address-policy.ts); undefined for other kinds, and
   * for a record left with no address a host can have (refused, counted).
   */
  private candidate(kv: DecodedKeyValue): Candidate | undefined {
    const e = kv.entry;
    const base = { key: kv.key, node: '', lease: normLease(kv.lease), createRevision: kv.createRevision ?? 0, modRevision: kv.modRevision, bytes: kv.bytes };
    switch (e.kind) {
      case 'node': {
        const s = screenNode(e.record, { self: e.node === this.self });
        if (s.refused.length) this.refuseAddresses(kv.key, s.refused, s.usable);
        return s.usable ? { ...base, node: e.node, kind: 'node', layout: e.layout, record: s.record } : undefined;
      }
      case 'instance': {
        const s = screenListener(e.record, { self: e.node === this.self });
        if (s.refused.length) this.refuseAddresses(kv.key, s.refused, s.usable);
        return s.usable ? { ...base, node: e.node, kind: 'instance', layout: 'v2', port: e.port, protocol: e.protocol, namespace: e.namespace, record: s.record } : undefined;
      }
      case 'listener': {
        const s = screenListener(e.record, { self: e.node === this.self });
        if (s.refused.length) this.refuseAddresses(kv.key, s.refused, s.usable);
        return s.usable ? { ...base, node: e.node, kind: 'listener', layout: 'v1', port: e.port, record: s.record } : undefined;
      }
      default:
        return undefined;
    }
  }

  /** Drains, acks, and what is ignored or from a later layout. */
  private applyOther(kv: { key: string; lease?: string | undefined; modRevision?: number | undefined; createRevision?: number | undefined }, entry: DecodedEntry): boolean {
    const lease = normLease(kv.lease);
    switch (entry.kind) {
      case 'drain': {
        const k = `${entry.node}/${entry.id}`;
        const isNew = !this.drainMap.has(k);
        if (isNew && this.drainMap.size >= MAX_DRAINS) {
          this.refuse(kv.key, 'drain', MAX_DRAINS);
          return false;
        }
        const mine = this.drainsByNode.get(entry.node) ?? 0;
        if (isNew && mine >= MAX_NODE_DRAINS) {
          this.refuse(kv.key, 'node_drains', MAX_NODE_DRAINS);
          return false;
        }
        if (isNew) this.drainsByNode.set(entry.node, mine + 1);
        this.drainMap.set(k, { node: entry.node, id: entry.id, services: Object.freeze([...entry.record.services]), requested: entry.record.requested, revision: kv.modRevision ?? 0, lease, createRevision: kv.createRevision ?? 0 });
        return true;
      }
      case 'ack': {
        const k = `${entry.drainNode}/${entry.id}`;
        let at = this.ackMap.get(k);
        const isNew = !at?.has(entry.node);
        if (isNew && this.ackCount >= MAX_ACKS) {
          this.refuse(kv.key, 'ack', MAX_ACKS);
          return false;
        }
        const mine = this.acksByNode.get(entry.node) ?? 0;
        if (isNew && mine >= MAX_NODE_ACKS) {
          this.refuse(kv.key, 'node_acks', MAX_NODE_ACKS);
          return false;
        }
        if (!at) this.ackMap.set(k, (at = new Map()));
        if (isNew) {
          this.ackCount++;
          this.acksByNode.set(entry.node, mine + 1);
        }
        at.set(entry.node, { revision: entry.record.revision, lease });
        return true;
      }
      case 'ignored':
        this.ignore(kv.key, entry.reason, entry.detail);
        return false;
      case 'future':
      case 'node':
      case 'instance':
      case 'listener':
        return false;
    }
  }

  /** The admission holds `c` now: index it for answers. */
  private index(c: Candidate): void {
    this.touched = true;
    const held = { lease: c.lease, createRevision: c.createRevision };
    switch (c.kind) {
      case 'node':
        (c.layout === 'v2' ? this.nodesV2 : this.nodesV1).set(c.node, { record: c.record, ...held });
        if (c.layout === 'v2') this.setAsked(c.key, c.node, c.record.askedNames ?? []);
        this.nodeChanged(c.node);
        return;
      case 'instance': {
        let atPort = this.byPort.get(c.port);
        if (!atPort) this.byPort.set(c.port, (atPort = new Map()));
        atPort.set(instanceId(c.node, c.protocol, c.namespace), { node: c.node, record: c.record, ...held });
        this.notePort(c.node, c.port);
        this.endpointCache.delete(c.port);
        return;
      }
      case 'listener': {
        let atPort = this.legacyByPort.get(c.port);
        if (!atPort) this.legacyByPort.set(c.port, (atPort = new Map()));
        atPort.set(c.node, { record: c.record, ...held });
        this.notePort(c.node, c.port);
        this.endpointCache.delete(c.port);
        return;
      }
    }
  }

  /** The admission no longer holds `c` (deleted, replaced, or displaced by a better-ranked record). */
  private unindex(c: Candidate): void {
    this.touched = true;
    switch (c.kind) {
      case 'node': {
        const map = c.layout === 'v2' ? this.nodesV2 : this.nodesV1;
        map.delete(c.node);
        if (c.layout === 'v2') this.setAsked(c.key, c.node, []);
        this.nodeChanged(c.node);
        return;
      }
      case 'instance': {
        const atPort = this.byPort.get(c.port);
        atPort?.delete(instanceId(c.node, c.protocol, c.namespace));
        if (atPort?.size === 0) this.byPort.delete(c.port);
        this.endpointCache.delete(c.port);
        return;
      }
      case 'listener': {
        const atPort = this.legacyByPort.get(c.port);
        atPort?.delete(c.node);
        if (atPort?.size === 0) this.legacyByPort.delete(c.port);
        this.endpointCache.delete(c.port);
        return;
      }
    }
  }

  /**
   * Replaces what `node`'s record asks in the index. Only the ports whose
   * set of names changes (a name first asked, or no longer asked by any
   * node) have their endpoints rebuilt: a node record rewritten with the
   * same names, or with one more, costs what changed (issue 24). A name
   * whose count falls to 0 stays until the batch ends (settleAsked): a
   * record replaced is taken out and put back, and its names with it.
   */
  private setAsked(key: string, node: string, names: readonly { port: number; name: string }[]): void {
    const before = this.askedByNode.get(node) ?? [];
    if (before.length === 0 && names.length === 0) return;
    for (const { port, name } of before) {
      const at = this.asked.get(port)!;
      const n = at.get(name)! - 1;
      at.set(name, n);
      if (n === 0) {
        this.askedPairs--;
        this.askedUnsettled.push({ port, name });
      }
    }
    const kept: { port: number; name: string }[] = [];
    for (const { port, name } of names) {
      let at = this.asked.get(port);
      const n = at?.get(name);
      if (!n) {
        if (this.askedPairs >= MAX_ASKED_PAIRS) {
          this.refuse(key, 'asked_name', MAX_ASKED_PAIRS);
          continue;
        }
        this.askedPairs++;
        // A name first asked changes its port's names; one at 0 (taken out in this batch) is asked again: no change.
        if (n === undefined) this.endpointCache.delete(port);
      }
      if (!at) this.asked.set(port, (at = new Map()));
      at.set(name, (n ?? 0) + 1);
      kept.push({ port, name });
    }
    if (kept.length > 0) this.askedByNode.set(node, kept);
    else this.askedByNode.delete(node);
  }

  /** The end of a batch: names no node asks any more go, and their ports' endpoints are rebuilt. */
  private settleAsked(): void {
    for (const { port, name } of this.askedUnsettled) {
      const at = this.asked.get(port);
      if (at?.get(name) !== 0) continue;
      at.delete(name);
      this.endpointCache.delete(port);
      if (at.size === 0) this.asked.delete(port);
    }
    this.askedUnsettled = [];
  }

  private nodeChanged(node: string): void {
    this.sortedNodes = undefined;
    this.nodeCount = undefined;
    for (const port of this.portsByNode.get(node) ?? []) this.endpointCache.delete(port);
  }

  private notePort(node: string, port: number): void {
    let ports = this.portsByNode.get(node);
    if (!ports) this.portsByNode.set(node, (ports = new Set()));
    ports.add(port);
  }

  private deleteKey(key: string): boolean {
    const parsed = parseKey(this.prefix, key);
    switch (parsed.kind) {
      case 'foreign':
      case 'future':
        return false;
      case 'node':
      case 'instance':
      case 'listener':
        this.admission.delete(key);
        return false; // the sink says what changed
      case 'drain': {
        if (!this.drainMap.delete(`${parsed.node}/${parsed.id}`)) return false;
        const n = (this.drainsByNode.get(parsed.node) ?? 1) - 1;
        if (n > 0) this.drainsByNode.set(parsed.node, n);
        else this.drainsByNode.delete(parsed.node);
        return true;
      }
      case 'ack': {
        const k = `${parsed.drainNode}/${parsed.id}`;
        const at = this.ackMap.get(k);
        if (!at?.delete(parsed.node)) return false;
        this.ackCount--;
        const n = (this.acksByNode.get(parsed.node) ?? 1) - 1;
        if (n > 0) this.acksByNode.set(parsed.node, n);
        else this.acksByNode.delete(parsed.node);
        if (at.size === 0) this.ackMap.delete(k);
        return true;
      }
    }
  }

  private ignore(key: string, reason: IgnoreReason, detail: string): void {
    this.metrics?.clusterIgnoredValues.inc({ reason });
    if (this.loggedKeys.has(key)) return;
    if (this.loggedKeys.size < LOGGED_KEYS_MAX) this.loggedKeys.add(key);
    this.logger.warn({ code: ErrorCodes.CLUSTER_VALUE_IGNORED, key: key.slice(0, 200), reason, detail: detail.slice(0, 300) }, 'ignoring a value under the cluster prefix');
  }

  /** Addresses no host can have, taken out of a record (or the whole record, when none is left): counted per address, logged once per key. */
  private refuseAddresses(key: string, refused: readonly RefusedAddress[], usable: boolean): void {
    for (const r of refused) this.metrics?.clusterRefusedAddresses.inc({ reason: r.problem });
    const tag = `address:${key}`;
    if (this.loggedKeys.has(tag)) return;
    if (this.loggedKeys.size < LOGGED_KEYS_MAX) this.loggedKeys.add(tag);
    this.logger.warn(
      { code: ErrorCodes.CLUSTER_ADDRESS_REFUSED, key: key.slice(0, 200), refused: refused.slice(0, 16), record: usable ? 'kept without them' : 'ignored' },
      'refusing addresses no host can have from a record under the cluster prefix',
    );
  }

  private refuse(key: string, kind: RefusalKind | 'drain' | 'ack' | 'node_drains' | 'node_acks' | 'asked_name', cap: number): void {
    // Counted once per key (while the remembered keys last): a watch resuming one revision back replays the write.
    // Tagged: the same key ignored earlier (a value too large, say) is still counted when a cap refuses it.
    const tag = `cap:${key}`;
    if (this.loggedKeys.has(tag)) return;
    this.metrics?.clusterRefusedEntries.inc({ kind });
    if (this.loggedKeys.size < LOGGED_KEYS_MAX) this.loggedKeys.add(tag);
    this.logger.warn({ code: ErrorCodes.CLUSTER_CAP_REACHED, key: key.slice(0, 200), kind, cap }, 'cluster view full: entry refused');
  }

  private setState(state: ViewState): void {
    if (this.state === state) return;
    this.state = state;
    this.stateSinceMs = this.now();
    this.changed();
  }

  private changed(): void {
    this.updateGauges();
    // Listeners run on a later tick, once per burst: a relist or a batch of events is one notification.
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const l of this.listeners) {
        try {
          l();
        } catch (err) {
          this.logger.error({ err }, 'cluster view listener threw');
        }
      }
    });
  }

  private updateGauges(): void {
    const m = this.metrics;
    if (!m) return;
    if (this.nodeCount === undefined) {
      let v1Only = 0;
      for (const n of this.nodesV1.keys()) if (!this.nodesV2.has(n)) v1Only++;
      this.nodeCount = this.nodesV2.size + v1Only;
    }
    m.clusterViewNodes.set(this.nodeCount);
    m.clusterViewEndpoints.set(this.admission.endpointCount);
    for (const s of ['missing', 'synced', 'stale'] as const) m.clusterViewState.set({ state: s }, s === this.state ? 1 : 0);
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
