import { isIPv4, isIPv6 } from 'node:net';
import { ErrorCodes } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { decodeEntry, parseKey, type IgnoreReason, type ListenerRecord, type NodeRecord } from './keys.js';

/**
 * The cluster as this daemon last saw it in etcd: every node and every
 * listener it published, indexed for answers. Pure memory: the sync loop
 * (cluster.ts) feeds it lists and watch events; answers read it without
 * I/O and without waiting.
 */

/** One host where a claimed port listens, as answers need it. */
export interface ClusterEndpoint {
  node: string;
  /** Where to connect: the node's addresses for wildcard binds, else the bound addresses. */
  addresses: readonly string[];
  port: number;
  services: readonly string[];
  scheme: string;
  version: string;
  versionSource: 'port' | 'http' | '';
  /** When the node first saw the port listening (ISO 8601). */
  since: string;
}

/**
 * missing: never synced, or dropped after the maximum staleness;
 * synced: the watch is live; stale: the watch is down and the view is the last one seen.
 */
export type ViewState = 'missing' | 'synced' | 'stale';

export interface ViewStatus {
  state: ViewState;
  /** When the view entered this state (ms since the epoch). */
  sinceMs: number;
  /** The etcd revision the view reflects (0 before the first list). */
  revision: number;
}

/** The read side every answer (DNS, gRPC, xDS, http_sd) uses. Every method answers from memory. */
export interface ClusterViewReader {
  /** Bumped on every change of nodes or endpoints, so formatted answers can be cached per generation. */
  readonly generation: number;
  /** The hosts where `port` listens, sorted by node name; the same frozen array until that port or its nodes change. */
  endpointsOnPort(port: number): readonly ClusterEndpoint[];
  /** Every port some host listens on (with a node record), ascending. */
  ports(): readonly number[];
  /** Every node, sorted by name. */
  nodes(): readonly NodeRecord[];
  node(name: string): NodeRecord | undefined;
  status(): ViewStatus;
  /** Called after every change of the data or the state; returns the unsubscribe function. Never called synchronously from onChange itself. */
  onChange(listener: () => void): () => void;
}

export interface ViewCaps {
  /** Node records kept at most; more are refused and counted. */
  maxNodes: number;
  /** Listener records (endpoints) kept at most; more are refused and counted. */
  maxEndpoints: number;
}

export const DEFAULT_CAPS: ViewCaps = { maxNodes: 10_000, maxEndpoints: 250_000 };

export interface ClusterViewOptions {
  prefix: string;
  caps?: Partial<ViewCaps> | undefined;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  now?: (() => number) | undefined;
}

/** A key and value as etcd gives them, in a list or a watch event. */
export interface KeyValue {
  key: string;
  value: Buffer | string;
}

export type WatchChange = { type: 'put'; key: string; value: Buffer | string } | { type: 'delete'; key: string };

/** Keys remembered so an ignored value is logged once at warn level, not on every relist. */
const LOGGED_KEYS_MAX = 1000;

export class ClusterView implements ClusterViewReader {
  private readonly prefix: string;
  private readonly caps: ViewCaps;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger;
  private readonly now: () => number;

  private nodeMap = new Map<string, NodeRecord>();
  /** port → node → listener. */
  private byPort = new Map<number, Map<string, ListenerRecord>>();
  /** node → its ports, to invalidate a node's cached endpoints when its record changes. */
  private portsByNode = new Map<string, Set<number>>();
  private endpointCount = 0;
  private readonly endpointCache = new Map<number, readonly ClusterEndpoint[]>();
  private sortedNodes: readonly NodeRecord[] | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly loggedKeys = new Set<string>();
  private notifyQueued = false;

  generation = 0;
  private state: ViewState = 'missing';
  private stateSinceMs: number;
  private revision = 0;

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
    const listeners = this.byPort.get(port);
    if (listeners) {
      for (const [node, l] of listeners) {
        const n = this.nodeMap.get(node);
        // A listener without its node record has no addresses (and its host is not a member): not an endpoint.
        if (!n) continue;
        out.push(Object.freeze({
          node,
          addresses: Object.freeze(endpointAddresses(l, n)),
          port,
          services: Object.freeze([...l.services]),
          scheme: l.scheme,
          version: l.version,
          versionSource: l.versionSource,
          since: l.since,
        }));
      }
      out.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    }
    const frozen = Object.freeze(out);
    this.endpointCache.set(port, frozen);
    return frozen;
  }

  ports(): readonly number[] {
    return [...this.byPort.keys()].filter((p) => this.endpointsOnPort(p).length > 0).sort((a, b) => a - b);
  }

  nodes(): readonly NodeRecord[] {
    this.sortedNodes ??= Object.freeze([...this.nodeMap.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)));
    return this.sortedNodes;
  }

  node(name: string): NodeRecord | undefined {
    return this.nodeMap.get(name);
  }

  status(): ViewStatus {
    return { state: this.state, sinceMs: this.stateSinceMs, revision: this.revision };
  }

  /** Listener records held (shown or not), for metrics and tests. */
  get endpointTotal(): number {
    return this.endpointCount;
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // --- the write side, used by the sync loop ---

  /**
   * Replaces everything with a full list read at `revision` and marks the
   * view synced. Nodes go first: a range returns keys sorted, and
   * `listeners/` sorts before `nodes/`.
   */
  replaceAll(kvs: readonly KeyValue[], revision: number): void {
    this.nodeMap = new Map();
    this.byPort = new Map();
    this.portsByNode = new Map();
    this.endpointCount = 0;
    this.endpointCache.clear();
    this.sortedNodes = undefined;
    const decoded = kvs.map((kv) => ({ key: kv.key, entry: decodeEntry(this.prefix, kv.key, kv.value) }));
    for (const { key, entry } of decoded) if (entry.kind === 'node') this.putNode(key, entry.node, entry.record);
    for (const { key, entry } of decoded) {
      if (entry.kind === 'listener') this.putListener(key, entry.node, entry.port, entry.record);
      else if (entry.kind === 'ignored') this.ignore(key, entry.reason, entry.detail);
    }
    this.revision = revision;
    this.generation++;
    this.setState('synced');
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
    if (this.state !== 'synced' && this.revision > 0) this.setState('synced');
  }

  /** Forgets everything (the maximum staleness passed): answers fall back to single-host ones. */
  drop(): void {
    this.nodeMap = new Map();
    this.byPort = new Map();
    this.portsByNode = new Map();
    this.endpointCount = 0;
    this.endpointCache.clear();
    this.sortedNodes = undefined;
    this.revision = 0;
    this.generation++;
    this.setState('missing');
    this.changed();
  }

  // --- internals ---

  private applyOne(c: WatchChange): boolean {
    if (c.type === 'delete') return this.deleteKey(c.key);
    const entry = decodeEntry(this.prefix, c.key, c.value);
    if (entry.kind === 'node') return this.putNode(c.key, entry.node, entry.record);
    if (entry.kind === 'listener') return this.putListener(c.key, entry.node, entry.port, entry.record);
    this.ignore(c.key, entry.reason, entry.detail);
    // The key no longer holds a valid value: whatever it held before is gone.
    return this.deleteKey(c.key);
  }

  private putNode(key: string, node: string, record: NodeRecord): boolean {
    if (!this.nodeMap.has(node) && this.nodeMap.size >= this.caps.maxNodes) {
      this.refuse(key, 'node');
      return false;
    }
    this.nodeMap.set(node, record);
    this.sortedNodes = undefined;
    for (const port of this.portsByNode.get(node) ?? []) this.endpointCache.delete(port);
    return true;
  }

  private putListener(key: string, node: string, port: number, record: ListenerRecord): boolean {
    let atPort = this.byPort.get(port);
    const isNew = !atPort?.has(node);
    if (isNew && this.endpointCount >= this.caps.maxEndpoints) {
      this.refuse(key, 'endpoint');
      return false;
    }
    if (!atPort) this.byPort.set(port, (atPort = new Map()));
    atPort.set(node, record);
    if (isNew) {
      this.endpointCount++;
      let ports = this.portsByNode.get(node);
      if (!ports) this.portsByNode.set(node, (ports = new Set()));
      ports.add(port);
    }
    this.endpointCache.delete(port);
    return true;
  }

  private deleteKey(key: string): boolean {
    const parsed = parseKey(this.prefix, key);
    if (parsed.kind === 'foreign') return false;
    if (parsed.kind === 'node') {
      if (!this.nodeMap.delete(parsed.node)) return false;
      this.sortedNodes = undefined;
      for (const port of this.portsByNode.get(parsed.node) ?? []) this.endpointCache.delete(port);
      return true;
    }
    const { node, port } = parsed;
    const atPort = this.byPort.get(port);
    if (!atPort?.delete(node)) return false;
    if (atPort.size === 0) this.byPort.delete(port);
    this.endpointCount--;
    const ports = this.portsByNode.get(node);
    ports?.delete(port);
    if (ports?.size === 0) this.portsByNode.delete(node);
    this.endpointCache.delete(port);
    return true;
  }

  private ignore(key: string, reason: IgnoreReason, detail: string): void {
    this.metrics?.clusterIgnoredValues.inc({ reason });
    if (this.loggedKeys.has(key)) return;
    if (this.loggedKeys.size < LOGGED_KEYS_MAX) this.loggedKeys.add(key);
    this.logger.warn({ code: ErrorCodes.CLUSTER_VALUE_IGNORED, key: key.slice(0, 200), reason, detail: detail.slice(0, 300) }, 'ignoring a value under the cluster prefix');
  }

  private refuse(key: string, kind: 'node' | 'endpoint'): void {
    this.metrics?.clusterRefusedEntries.inc({ kind });
    if (this.loggedKeys.has(key)) return;
    if (this.loggedKeys.size < LOGGED_KEYS_MAX) this.loggedKeys.add(key);
    const cap = kind === 'node' ? this.caps.maxNodes : this.caps.maxEndpoints;
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
    m.clusterViewNodes.set(this.nodeMap.size);
    m.clusterViewEndpoints.set(this.endpointCount);
    for (const s of ['missing', 'synced', 'stale'] as const) m.clusterViewState.set({ state: s }, s === this.state ? 1 : 0);
  }
}

/**
 * Where a listener is reached: a wildcard IPv4 bind means the node's IPv4
 * addresses; a wildcard IPv6 bind every node address (Linux's default
 * dual-stack sockets accept IPv4 too); a concrete bind that address.
 */
export function endpointAddresses(l: ListenerRecord, n: NodeRecord): string[] {
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
