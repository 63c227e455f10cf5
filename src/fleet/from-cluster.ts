import { isIPv6 } from 'node:net';
import { Writable } from 'node:stream';
import type { ClusterTlsOptions } from '../cluster/cluster.js';
import { DEFAULT_PREFIX, HOST_NAMESPACE, nodeKey } from '../cluster/keys.js';
import type { ClusterEndpoint, ClusterViewReader } from '../cluster/view.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import { createLogger } from '../log.js';
import { fleetServices, type FleetHost, type FleetListener, type FleetReport } from './fleet.js';

/**
 * The fleet read from the cluster view instead of asked host by host
 * (`canonport fleet --cluster`): every node whose lease is alive in etcd,
 * with the listeners it published, as one FleetHost each. The table,
 * expectations and findings are then the same as for a host list.
 */

/** How long `fleet --cluster` waits for the view by default: a list of 1,000 nodes × 20 services takes ~2.5 s here. */
export const DEFAULT_FLEET_CLUSTER_TIMEOUT_MS = 10_000;

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
  try {
    try {
      await cluster.whenSynced(timeoutMs);
    } catch {
      const why = failures.last() ? `: ${failures.last()}` : '';
      throw new CanonportError(ErrorCodes.CLUSTER_UNREACHABLE, `cannot read the cluster view from ${opts.endpoints} (prefix ${prefix}) within ${timeoutMs} ms${why}`, {
        endpoints: opts.endpoints,
      });
    }
    return fleetFromView(cluster.reader, { endpoints: opts.endpoints, prefix });
  } finally {
    await cluster.stop();
  }
}

/**
 * The fleet a cluster view holds: `fleet --cluster` calls it on the view it
 * lists, a daemon's fleet page on the view it keeps. A view that is stale
 * or missing says so in `source.view`. Every host's `collectedAtMs` is when
 * the view entered its state: synced, it has been current since then;
 * stale, that is when it was last known current.
 */
export function fleetFromView(reader: ClusterViewReader, where: { endpoints: string; prefix: string }): FleetReport {
  const status = reader.status();
  const hosts = fleetHostsFromView(reader, where.prefix, status.sinceMs);
  return {
    hosts,
    services: fleetServices(hosts),
    source: { kind: 'cluster', endpoints: where.endpoints, prefix: where.prefix, revision: status.revision, view: status.state, viewSince: new Date(status.sinceMs).toISOString() },
  };
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

/**
 * One FleetHost per node of the view, sorted by name, each with its
 * listeners: one per address other hosts reach it at (a wildcard bind
 * stands for the node's addresses), and the node's registry digest. Only
 * what nodes publish is there: listeners other hosts can reach, on claimed
 * ports. Every node is reachable: its lease is alive.
 */
export function fleetHostsFromView(reader: ClusterViewReader, prefix: string, collectedAtMs: number): FleetHost[] {
  const listeners = new Map<string, FleetListener[]>();
  for (const port of reader.ports()) {
    for (const e of reader.endpointsOnPort(port)) {
      let mine = listeners.get(e.node);
      if (!mine) listeners.set(e.node, (mine = []));
      if (e.protocol !== 'tcp') continue;
      // A container's or pod's instance (issue 26) keeps its namespace, so two replicas on one node stay two listeners.
      const namespace = e.namespace !== HOST_NAMESPACE ? { namespace: { label: e.namespace, addresses: [...e.addresses], ...(e.addresses[0] ? { published: e.addresses[0] } : {}), ...(e.container ? { container: { runtime: '', ...e.container } } : {}) } } : {};
      const base = { port, services: [...e.services], version: e.version, versionSource: e.versionSource, scheme: e.scheme, since: e.since, ...instanceState(e), ...namespace };
      // No address when a wildcard bind has none of its family on the node (IPv4-only bind, IPv6-only node): still listening there.
      const addresses = e.addresses.length > 0 ? e.addresses : [''];
      for (const address of addresses) mine.push({ ...base, address, family: isIPv6(address) ? 'tcp6' : 'tcp' });
    }
  }
  return reader.nodes().map((n) => ({
    host: n.name,
    target: nodeKey(prefix, n.name),
    reachable: true,
    inventory: { host: n.name, collectedAtMs, listeners: listeners.get(n.name) ?? [], registryDigest: n.registryDigest },
    node: { addresses: [...n.addresses], canonportVersion: n.canonportVersion, registryDigest: n.registryDigest, started: n.started },
  }));
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
