import { isIPv4, isIPv6 } from 'node:net';
import { ErrorCodes } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import {
  decodeEntry,
  encodeDrain,
  encodeInstance,
  encodeListener,
  encodeNode,
  HOST_NAMESPACE,
  drainKey,
  instanceKey,
  legacyNodeKey,
  listenerKey,
  nodeKey,
  parseKey,
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
 */

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

export interface ViewCaps {
  /** Node records kept at most; more are refused and counted. */
  maxNodes: number;
  /** Instance and listener records (endpoints) kept at most; more are refused and counted. */
  maxEndpoints: number;
}

export const DEFAULT_CAPS: ViewCaps = { maxNodes: 10_000, maxEndpoints: 250_000 };
/** Drains in progress kept at most (drains are rare and short; a writer flooding them is refused and counted). */
export const MAX_DRAINS = 1_000;
/** Acks kept at most: one per live node per pending drain, so MAX_DRAINS × nodes is far more than any real fleet writes. */
export const MAX_ACKS = 100_000;

export interface ClusterViewOptions {
  prefix: string;
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
}

export type WatchChange =
  | { type: 'put'; key: string; value: Buffer | string; lease?: string | undefined; modRevision?: number | undefined }
  | { type: 'delete'; key: string };

/** Keys remembered so an ignored value is logged once at warn level, not on every relist. */
const LOGGED_KEYS_MAX = 1000;

interface Held<T> {
  record: T;
  lease: string | undefined;
}

interface HeldInstance extends Held<InstanceRecord> {
  node: string;
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
  private endpointCount = 0;
  /** `<node>/<id>` → drain. Bounded by MAX_DRAINS. */
  private drainMap = new Map<string, PendingDrain & { lease: string | undefined }>();
  /** `<drain-node>/<id>` → acker → revision. Bounded by MAX_ACKS in total. */
  private ackMap = new Map<string, Map<string, number>>();
  private ackCount = 0;
  private readonly endpointCache = new Map<number, readonly ClusterEndpoint[]>();
  private sortedNodes: readonly NodeRecord[] | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly loggedKeys = new Set<string>();
  private notifyQueued = false;

  generation = 0;
  private state: ViewState = 'missing';
  private stateSinceMs: number;
  private revision = 0;
  private fromSnapshot = false;

  constructor(opts: ClusterViewOptions) {
    this.prefix = opts.prefix;
    this.caps = { ...DEFAULT_CAPS, ...opts.caps };
    this.metrics = opts.metrics;
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? Date.now;
    this.stateSinceMs = this.now();
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
      }));
    }
    out.sort((a, b) => cmp(a.node, b.node) || cmp(a.protocol, b.protocol) || cmp(a.namespace, b.namespace));
    const frozen = Object.freeze(out);
    this.endpointCache.set(port, frozen);
    return frozen;
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
    return [...this.drainMap.values()].filter((d) => this.nodesV2.get(d.node)?.lease === d.lease).map(({ lease: _lease, ...d }) => d);
  }

  /** Which nodes acknowledged a drain (acker → the revision its view had reached). */
  acks(drainNode: string, id: string): ReadonlyMap<string, number> {
    return this.ackMap.get(`${drainNode}/${id}`) ?? new Map();
  }

  status(): ViewStatus {
    return { state: this.state, sinceMs: this.stateSinceMs, revision: this.revision, ...(this.fromSnapshot ? { fromSnapshot: true } : {}) };
  }

  /** Listener records held (shown or not), for metrics and tests. */
  get endpointTotal(): number {
    return this.endpointCount;
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
    const out: KeyValue[] = [];
    const P = this.prefix;
    for (const [name, n] of this.nodesV2) out.push({ key: nodeKey(P, name), value: encodeNode(n.record), lease: n.lease });
    for (const [name, n] of this.nodesV1) out.push({ key: legacyNodeKey(P, name), value: encodeNode(n.record), lease: n.lease });
    for (const [port, at] of this.byPort) for (const i of at.values()) out.push({ key: instanceKey(P, i.node, port, i.record.protocol, i.record.namespace), value: encodeInstance(i.record), lease: i.lease });
    for (const [port, at] of this.legacyByPort) for (const [node, l] of at) out.push({ key: listenerKey(P, node, port), value: encodeListener(l.record), lease: l.lease });
    for (const d of this.drainMap.values()) {
      const record: DrainRecord = { id: d.id, services: [...d.services], requested: d.requested };
      out.push({ key: drainKey(P, d.node, d.id), value: encodeDrain(record), lease: d.lease, modRevision: d.revision });
    }
    return out;
  }

  // --- the write side, used by the sync loop ---

  /**
   * Replaces everything with a full list read at `revision` and marks the
   * view synced (or, for a snapshot read from disk, stale and `fromSnapshot`).
   */
  replaceAll(kvs: readonly KeyValue[], revision: number, opts: { snapshot?: boolean } = {}): void {
    this.nodesV2 = new Map();
    this.nodesV1 = new Map();
    this.byPort = new Map();
    this.legacyByPort = new Map();
    this.portsByNode = new Map();
    this.drainMap = new Map();
    this.ackMap = new Map();
    this.ackCount = 0;
    this.endpointCount = 0;
    this.endpointCache.clear();
    this.sortedNodes = undefined;
    // Nodes first, so the node cap counts nodes before their instances.
    const decoded = kvs.map((kv) => ({ kv, entry: decodeEntry(this.prefix, kv.key, kv.value) }));
    for (const { kv, entry } of decoded) if (entry.kind === 'node') this.applyEntry(kv, entry);
    for (const { kv, entry } of decoded) if (entry.kind !== 'node') this.applyEntry(kv, entry);
    this.revision = revision;
    this.generation++;
    this.fromSnapshot = opts.snapshot === true;
    if (this.fromSnapshot) {
      this.state = 'synced'; // so setState records the change to stale with its time
      this.setState('stale');
    } else {
      this.setState('synced');
    }
    this.changed();
  }

  /** Applies one watch response's events; `revision` is what the view reflects afterwards. */
  applyChanges(changes: readonly WatchChange[], revision: number): void {
    let changed = false;
    for (const c of changes) changed = this.applyOne(c) || changed;
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
    this.ackMap = new Map();
    this.ackCount = 0;
    this.endpointCount = 0;
    this.endpointCache.clear();
    this.sortedNodes = undefined;
    this.revision = 0;
    this.fromSnapshot = false;
    this.generation++;
    this.setState('missing');
    this.changed();
  }

  // --- internals ---

  private applyOne(c: WatchChange): boolean {
    if (c.type === 'delete') return this.deleteKey(c.key);
    const entry = decodeEntry(this.prefix, c.key, c.value);
    if (entry.kind === 'ignored') {
      this.ignore(c.key, entry.reason, entry.detail);
      // The key no longer holds a valid value: whatever it held before is gone.
      return this.deleteKey(c.key);
    }
    return this.applyEntry(c, entry);
  }

  private applyEntry(kv: { key: string; lease?: string | undefined; modRevision?: number | undefined }, entry: ReturnType<typeof decodeEntry>): boolean {
    const lease = normLease(kv.lease);
    switch (entry.kind) {
      case 'node':
        return this.putNode(kv.key, entry.layout, entry.node, entry.record, lease);
      case 'listener':
        return this.putLegacy(kv.key, entry.node, entry.port, entry.record, lease);
      case 'instance':
        return this.putInstance(kv.key, entry.node, entry.record, lease);
      case 'drain': {
        const k = `${entry.node}/${entry.id}`;
        if (!this.drainMap.has(k) && this.drainMap.size >= MAX_DRAINS) {
          this.refuse(kv.key, 'drain', MAX_DRAINS);
          return false;
        }
        this.drainMap.set(k, { node: entry.node, id: entry.id, services: Object.freeze([...entry.record.services]), requested: entry.record.requested, revision: kv.modRevision ?? 0, lease });
        return true;
      }
      case 'ack': {
        const k = `${entry.drainNode}/${entry.id}`;
        let at = this.ackMap.get(k);
        if (!at?.has(entry.node) && this.ackCount >= MAX_ACKS) {
          this.refuse(kv.key, 'ack', MAX_ACKS);
          return false;
        }
        if (!at) this.ackMap.set(k, (at = new Map()));
        if (!at.has(entry.node)) this.ackCount++;
        at.set(entry.node, entry.record.revision);
        return true;
      }
      case 'ignored':
        this.ignore(kv.key, entry.reason, entry.detail);
        return false;
      case 'future':
        return false;
    }
  }

  private putNode(key: string, layout: 'v1' | 'v2', node: string, record: NodeRecord, lease: string | undefined): boolean {
    const map = layout === 'v2' ? this.nodesV2 : this.nodesV1;
    if (!this.nodesV2.has(node) && !this.nodesV1.has(node) && this.nodesV2.size + this.nodesV1.size >= this.caps.maxNodes) {
      this.refuse(key, 'node', this.caps.maxNodes);
      return false;
    }
    map.set(node, { record, lease });
    this.nodeChanged(node);
    return true;
  }

  private nodeChanged(node: string): void {
    this.sortedNodes = undefined;
    for (const port of this.portsByNode.get(node) ?? []) this.endpointCache.delete(port);
  }

  private notePort(node: string, port: number): void {
    let ports = this.portsByNode.get(node);
    if (!ports) this.portsByNode.set(node, (ports = new Set()));
    ports.add(port);
  }

  private putInstance(key: string, node: string, record: InstanceRecord, lease: string | undefined): boolean {
    const port = record.port;
    let atPort = this.byPort.get(port);
    const id = instanceId(node, record.protocol, record.namespace);
    const isNew = !atPort?.has(id);
    if (isNew && this.endpointCount >= this.caps.maxEndpoints) {
      this.refuse(key, 'endpoint', this.caps.maxEndpoints);
      return false;
    }
    if (!atPort) this.byPort.set(port, (atPort = new Map()));
    atPort.set(id, { node, record, lease });
    if (isNew) this.endpointCount++;
    this.notePort(node, port);
    this.endpointCache.delete(port);
    return true;
  }

  private putLegacy(key: string, node: string, port: number, record: ListenerRecord, lease: string | undefined): boolean {
    let atPort = this.legacyByPort.get(port);
    const isNew = !atPort?.has(node);
    if (isNew && this.endpointCount >= this.caps.maxEndpoints) {
      this.refuse(key, 'endpoint', this.caps.maxEndpoints);
      return false;
    }
    if (!atPort) this.legacyByPort.set(port, (atPort = new Map()));
    atPort.set(node, { record, lease });
    if (isNew) this.endpointCount++;
    this.notePort(node, port);
    this.endpointCache.delete(port);
    return true;
  }

  private deleteKey(key: string): boolean {
    const parsed = parseKey(this.prefix, key);
    switch (parsed.kind) {
      case 'foreign':
      case 'future':
        return false;
      case 'node': {
        const map = parsed.layout === 'v2' ? this.nodesV2 : this.nodesV1;
        if (!map.delete(parsed.node)) return false;
        this.nodeChanged(parsed.node);
        return true;
      }
      case 'instance': {
        const atPort = this.byPort.get(parsed.port);
        if (!atPort?.delete(instanceId(parsed.node, parsed.protocol, parsed.namespace))) return false;
        if (atPort.size === 0) this.byPort.delete(parsed.port);
        this.endpointCount--;
        this.endpointCache.delete(parsed.port);
        return true;
      }
      case 'listener': {
        const atPort = this.legacyByPort.get(parsed.port);
        if (!atPort?.delete(parsed.node)) return false;
        if (atPort.size === 0) this.legacyByPort.delete(parsed.port);
        this.endpointCount--;
        this.endpointCache.delete(parsed.port);
        return true;
      }
      case 'drain':
        return this.drainMap.delete(`${parsed.node}/${parsed.id}`);
      case 'ack': {
        const k = `${parsed.drainNode}/${parsed.id}`;
        const at = this.ackMap.get(k);
        if (!at?.delete(parsed.node)) return false;
        this.ackCount--;
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

  private refuse(key: string, kind: 'node' | 'endpoint' | 'drain' | 'ack', cap: number): void {
    // Counted once per key (while the remembered keys last): a watch resuming one revision back replays the write.
    if (this.loggedKeys.has(key)) return;
    this.metrics?.clusterRefusedEntries.inc({ kind });
    if (this.loggedKeys.size < LOGGED_KEYS_MAX) this.loggedKeys.add(key);
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
    m.clusterViewNodes.set(this.nodesV2.size + [...this.nodesV1.keys()].filter((n) => !this.nodesV2.has(n)).length);
    m.clusterViewEndpoints.set(this.endpointCount);
    for (const s of ['missing', 'synced', 'stale'] as const) m.clusterViewState.set({ state: s }, s === this.state ? 1 : 0);
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Where a listener is reached: a wildcard IPv4 bind means the node's IPv4
 * addresses; a wildcard IPv6 bind every node address (Linux's default
 * dual-stack sockets accept IPv4 too); a concrete bind that address.
 */
export function endpointAddresses(l: Pick<ListenerRecord, 'bind'>, n: NodeRecord): string[] {
  const out = new Set<string>();
  for (const b of l.bind) {
    if (b.address === '0.0.0.0') for (const a of n.addresses) if (isIPv4(a)) out.add(a);
    if (b.address === '::') for (const a of n.addresses) out.add(a);
    if (b.address !== '0.0.0.0' && b.address !== '::') {
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(b.address);
      out.add(mapped ? mapped[1]! : b.address);
    }
  }
  return [...out].sort((a, b) => Number(isIPv6(a)) - Number(isIPv6(b)) || (a < b ? -1 : a > b ? 1 : 0));
}
