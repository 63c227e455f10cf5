import { connect, isIPv6 } from 'node:net';
import { Writable } from 'node:stream';
import type { ClusterTlsOptions } from '../cluster/cluster.js';
import { tryParseEtcdUrl, type EtcdEndpoint } from '../config/etcd-url.js';
import { DEFAULT_PREFIX, HOST_NAMESPACE, nodeKey } from '../cluster/keys.js';
import { isDeepStrictEqual } from 'node:util';
import type { NodeRecord } from '../cluster/keys.js';
import type { ClusterEndpoint, ClusterViewReader } from '../cluster/view.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import { createLogger } from '../log.js';
import { compareServices, fleetServices, fleetUnnamed, serviceRowKey, serviceRows, type FleetHost, type FleetListener, type FleetReport, type FleetService } from './fleet.js';

/**
 * The fleet read from the cluster view instead of asked host by host
 * (`canonport fleet --cluster`): every node whose lease is alive in etcd,
 * with the listeners it published, as one FleetHost each. The table,
 * expectations and findings are then the same as for a host list.
 */

/** How long `fleet --cluster` waits for the view by default: a list of 1,000 nodes × 20 services takes ~2.5 s here. */
export const DEFAULT_FLEET_CLUSTER_TIMEOUT_MS = 10_000;
/** How long the refusal check waits for each member's TCP answer (a refusal comes in one round trip). */
const REFUSAL_CHECK_MS = 1_500;

export interface FleetClusterOptions {
  /** `etcd://HOST:PORT[,HOST:PORT…]`. */
  endpoints: string;
  /** Key prefix (default /canonport). */
  prefix?: string | undefined;
  /** TLS toward etcd; given (even empty) means https. */
  tls?: ClusterTlsOptions | undefined;
  auth?: { username: string; password: string } | undefined;
  /** Deadline for the view to be listed, ms (default 10000). */
  timeoutMs?: number | undefined;
}

/**
 * Lists the cluster view once, read-only (nothing is published), and turns
 * it into a report. Throws CP_CLUSTER_UNREACHABLE, with etcd's last error,
 * when the view is not listed within the deadline; CP_CONFIG_INVALID for
 * options etcd cannot be asked with (a bad URL or prefix, unreadable TLS files).
 */
export async function collectFleetFromCluster(opts: FleetClusterOptions): Promise<FleetReport> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_FLEET_CLUSTER_TIMEOUT_MS;
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  const failures = lastFailure();
  // etcd3 (and its gRPC stubs) load only here: every command, `serve` included,
  // imports this module through the fleet command, and few of them talk to etcd.
  const { Cluster } = await import('../cluster/cluster.js');
  const cluster = new Cluster({ endpoints: opts.endpoints, prefix, tls: opts.tls, auth: opts.auth, publish: false }, { logger: failures.logger });
  cluster.start();
  const parsed = tryParseEtcdUrl(opts.endpoints);
  const stop = new AbortController();
  try {
    // Every member refusing the connection is known in one round trip: said at once, not after the whole deadline
    // (etcd3 retries a refused member until it gives up). A member that does not answer at all is waited for, as before.
    const { etcdReason } = await import('../cluster/etcd-errors.js');
    const refused = parsed.ok ? refusedByEvery(parsed.value, stop.signal, (err) => etcdReason(err)) : new Promise<never>(() => undefined);
    const synced = cluster.whenSynced(timeoutMs).then(
      () => null,
      () => 'timeout' as const,
    );
    const first = await Promise.race([synced, refused]);
    if (first !== null) {
      const why = first === 'timeout' ? (failures.last() ? `: ${failures.last()}` : '') : `: ${first}`;
      const within = first === 'timeout' ? ` within ${timeoutMs} ms` : '';
      throw new CanonportError(ErrorCodes.CLUSTER_UNREACHABLE, `cannot read the cluster view from ${opts.endpoints} (prefix ${prefix})${within}${why}`, {
        endpoints: opts.endpoints,
      });
    }
    return fleetFromView(cluster.reader, { endpoints: opts.endpoints, prefix });
  } finally {
    stop.abort();
    await cluster.stop();
  }
}

/**
 * Resolves with the reason once every member has refused a TCP connection
 * (ECONNREFUSED: nothing listens there); never resolves while any member
 * accepts, or has not answered within REFUSAL_CHECK_MS (unreachable, not
 * refused: the caller's deadline decides). Hand-written: one connect per
 * member, nothing a client library offers.
 */
export function refusedByEvery(endpoints: readonly EtcdEndpoint[], signal: AbortSignal, reason: (err: Error) => string = (err) => err.message): Promise<string> {
  return new Promise((resolve) => {
    const reasons: string[] = [];
    let pending = endpoints.length;
    for (const e of endpoints) {
      const socket = connect({ host: e.host, port: e.port });
      const done = (refusal: string | null) => {
        socket.destroy();
        clearTimeout(timer);
        if (refusal === null) return; // accepted, or no answer: not refused
        reasons.push(refusal);
        if (--pending === 0 && !signal.aborted) resolve(reasons.join('; '));
      };
      const timer = setTimeout(() => done(null), REFUSAL_CHECK_MS);
      timer.unref();
      socket.once('connect', () => done(null));
      // In etcd-errors.ts's words, as a refusal the etcd client met would be: `etcd at 127.0.0.1:2379 refused the connection (…)`.
      socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? reason(err) : null));
      signal.addEventListener('abort', () => done(null), { once: true });
    }
  });
}

/**
 * The fleet a cluster view holds: `fleet --cluster` calls it on the view it
 * lists, a daemon's fleet page keeps a ViewFleet (the same build, kept
 * between changes). A view that is stale or missing says so in
 * `source.view`. Every host's `collectedAtMs` is when that host observed
 * what it published (its node record's `observedAt`: the scan that last
 * found a change; its live lease says it still finds the same), or, for a
 * node of an older canonport that does not say, when the view entered its
 * state.
 */
export function fleetFromView(reader: ClusterViewReader, where: { endpoints: string; prefix: string }): FleetReport {
  return new ViewFleet(reader, where).read();
}

/**
 * An instance's state as the fleet shows it: the one place the view's
 * record becomes a state. Its readiness (ready, not-ready, draining; a v1
 * node's listener is `listening`), with
 * `stateSince` only when it differs from `since` (it would otherwise repeat
 * `since` on each of 20,000 listeners of a large fleet's document).
 */
export function instanceState(e: ClusterEndpoint): Pick<FleetListener, 'state' | 'stateSince'> {
  // A node of an older canonport (v1 layout) publishes no readiness: it listens, and answers take it as ready.
  if (e.legacy) return { state: 'listening' };
  return e.readiness.since === e.since ? { state: e.readiness.state } : { state: e.readiness.state, stateSince: e.readiness.since };
}

/** One node as last built: what it was built from, and what was built. */
interface BuiltHost {
  record: NodeRecord;
  endpoints: readonly ClusterEndpoint[];
  viewSinceMs: number;
  host: FleetHost;
  /** Its listeners by the service row they count in (fleet.ts serviceRows): all a row takes from a host. */
  rows: ReadonlyMap<string, readonly FleetListener[]>;
}

/**
 * The fleet of a view, kept from one read to the next so that a change
 * costs what it touched (issue 25: a daemon's fleet page rebuilt every
 * host of a 1,000-host view, a quarter of a second, for each change).
 * A read rebuilds only the hosts whose node record or instances changed
 * (compared by value: the view makes new endpoint objects for every node
 * on a changed port) and only the service rows whose listeners on those
 * hosts changed; every other host and row is the previous read's object, which
 * the page's encoder (ui/client/diff.ts) does not serialise again. What
 * the hosts disagree on and the unnamed ports are still worked out over
 * the whole fleet (they are cheaper). A fresh ViewFleet builds everything:
 * what `fleet --cluster` prints and the page shows come from this one
 * build. Holds one entry per node of the view (bounded by its caps).
 */
export class ViewFleet {
  private built = new Map<string, BuiltHost>();
  private services = new Map<string, FleetService>();
  /** What the last read rebuilt (the tests count work, not time). */
  lastRead = { hosts: 0, services: 0 };

  constructor(
    private readonly reader: ClusterViewReader,
    private readonly where: { endpoints: string; prefix: string },
  ) {}

  read(): FleetReport {
    const status = this.reader.status();
    const byNode = endpointsByNode(this.reader);
    const next = new Map<string, BuiltHost>();
    const touched = new Set<string>();
    let rebuilt = 0;
    const hosts = this.reader.nodes().map((n) => {
      const endpoints = byNode.get(n.name) ?? [];
      const before = this.built.get(n.name);
      if (before && before.record === n && (n.observedAt !== undefined || before.viewSinceMs === status.sinceMs) && isDeepStrictEqual(before.endpoints, endpoints)) {
        next.set(n.name, before);
        return before.host;
      }
      rebuilt++;
      const host = fleetHostOf(n, endpoints, this.where.prefix, status.sinceMs);
      const rows = serviceRows(host);
      // The rows whose listeners on this host changed (a new version of one service leaves its other rows alone).
      for (const [r, ls] of rows) if (!isDeepStrictEqual(before?.rows.get(r), ls)) touched.add(r);
      for (const r of before?.rows.keys() ?? []) if (!rows.has(r)) touched.add(r);
      next.set(n.name, { record: n, endpoints, viewSinceMs: status.sinceMs, host, rows });
      return host;
    });
    // A node gone: the rows it was in.
    for (const [name, b] of this.built) if (!next.has(name)) for (const r of b.rows.keys()) touched.add(r);
    this.built = next;
    const fresh = fleetServices(hosts, touched);
    for (const r of touched) this.services.delete(r);
    for (const s of fresh) this.services.set(serviceRowKey(s), s);
    const services = [...this.services.values()].sort(compareServices);
    this.lastRead = { hosts: rebuilt, services: fresh.length };
    return {
      hosts,
      services,
      unnamed: fleetUnnamed(hosts),
      source: { kind: 'cluster', endpoints: this.where.endpoints, prefix: this.where.prefix, revision: status.revision, view: status.state, viewSince: new Date(status.sinceMs).toISOString() },
    };
  }
}

/**
 * One FleetHost per node of the view, sorted by name, each with its
 * listeners (TCP and UDP): one per address other hosts reach it at (a
 * wildcard bind stands for the node's addresses), with its names, and the
 * node's registry digest. Only what nodes publish is there: listeners other
 * hosts can reach, on claimed ports. Every node is reachable: its lease is
 * alive. `viewSinceMs` stands for `collectedAtMs` where a node gives no
 * `observedAt` (fleetFromView).
 */
export function fleetHostsFromView(reader: ClusterViewReader, prefix: string, viewSinceMs: number): FleetHost[] {
  const byNode = endpointsByNode(reader);
  return reader.nodes().map((n) => fleetHostOf(n, byNode.get(n.name) ?? [], prefix, viewSinceMs));
}

/** The view's instances by node, each node's in the view's order (by port, then protocol and namespace). */
function endpointsByNode(reader: ClusterViewReader): Map<string, ClusterEndpoint[]> {
  const byNode = new Map<string, ClusterEndpoint[]>();
  for (const port of reader.ports()) {
    for (const e of reader.endpointsOnPort(port)) {
      let mine = byNode.get(e.node);
      if (!mine) byNode.set(e.node, (mine = []));
      mine.push(e);
    }
  }
  return byNode;
}

/** One node's FleetHost from its record and its instances (in the view's order: by port, then protocol and namespace). */
function fleetHostOf(n: NodeRecord, endpoints: readonly ClusterEndpoint[], prefix: string, viewSinceMs: number): FleetHost {
  const listeners: FleetListener[] = [];
  for (const e of endpoints) {
    const port = e.port;
    // A container's or pod's instance (issue 26) keeps its namespace, so two replicas on one node stay two listeners.
    const namespace = e.namespace !== HOST_NAMESPACE ? { namespace: { label: e.namespace, addresses: [...e.addresses], ...(e.addresses[0] ? { published: e.addresses[0] } : {}), ...(e.container ? { container: { runtime: '', ...e.container } } : {}) } } : {};
    const base = { port, services: [...e.services], names: e.names.map((x) => ({ name: x.name, source: x.source })), version: e.version, versionSource: e.versionSource, scheme: e.scheme, since: e.since, ...instanceState(e), ...namespace };
    // No address when a wildcard bind has none of its family on the node (IPv4-only bind, IPv6-only node): still listening there.
    const addresses = e.addresses.length > 0 ? e.addresses : [''];
    for (const address of addresses) listeners.push({ ...base, address, family: `${e.protocol}${isIPv6(address) ? '6' : ''}` as FleetListener['family'] });
  }
  const observed = n.observedAt !== undefined ? Date.parse(n.observedAt) : NaN;
  return {
    host: n.name,
    target: nodeKey(prefix, n.name),
    reachable: true,
    inventory: { host: n.name, collectedAtMs: Number.isNaN(observed) ? viewSinceMs : observed, listeners, registryDigest: n.registryDigest, node: n.name },
    node: { addresses: [...n.addresses], canonportVersion: n.canonportVersion, registryDigest: n.registryDigest, started: n.started, ...(n.observedAt ? { observedAt: n.observedAt } : {}) },
  };
}

/**
 * A logger for the cluster client that keeps the last reason etcd could not
 * be read (its CP_CLUSTER_UNREACHABLE lines, in canonport's words: once the
 * client's circuit breaker opens, the reason before it stands, see
 * cluster/etcd-errors.ts).
 */
function lastFailure(): { logger: ReturnType<typeof createLogger>; last: () => string | undefined } {
  let last: string | undefined;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.includes(ErrorCodes.CLUSTER_UNREACHABLE)) continue;
        try {
          const entry = JSON.parse(line) as { code?: string; err?: string };
          if (entry.code !== ErrorCodes.CLUSTER_UNREACHABLE || !entry.err) continue;
          last = entry.err.trim();
        } catch {
          // not one of ours
        }
      }
      done();
    },
  });
  return { logger: createLogger({ level: 'warn', format: 'json', destination: sink }), last: () => last };
}
