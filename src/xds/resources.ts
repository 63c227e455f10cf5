import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { HTTP_CONNECTION_MANAGER_URL, ROUTER_URL, type ResourceType, type XdsProtos } from './protos.js';

/**
 * The four xDS resources of a name, derived from the name alone (gRFC A27):
 *
 *   Listener NAME (as the client asked, `:port` and case kept)
 *     api_listener → HttpConnectionManager, routes over ADS (RDS) → KEY
 *   RouteConfiguration KEY: one virtual host, domains *, every path → cluster KEY
 *   Cluster KEY: EDS over ADS, service_name KEY, round robin
 *   ClusterLoadAssignment KEY: the discovery's endpoints, each with its health
 *     status; cluster mode puts this host's own instances in a locality of
 *     their own at priority 0 and the others at priority 1 (local first;
 *     a client fails over to priority 1 when the local one goes)
 *
 * KEY is the name as the discovery reads it (lowercase, no trailing dot,
 * no `:port`), so `API.x`, `api.x.` and `api.x:12082` share one route,
 * cluster and endpoint set. Only the ClusterLoadAssignment depends on where
 * the service runs: a port or host change pushes EDS alone.
 */

/** An address and port a client dials. */
export interface SocketEndpoint {
  address: string;
  port: number;
  /** Cluster mode: `ready` is HEALTHY; anything else (a panic answer's not-ready instance) UNKNOWN, which gRPC still uses. */
  readiness?: string | undefined;
  /** Cluster mode: this daemon's own host. */
  local?: boolean | undefined;
}

/** What the discovery says about a name, as xDS needs it. */
export type XdsAnswer =
  /** Not looked up yet. */
  | { kind: 'pending' }
  /** No such service: its resources do not exist. */
  | { kind: 'absent' }
  /** A service; endpoints sorted and unique, possibly none (known service, no address yet). */
  | { kind: 'present'; endpoints: readonly SocketEndpoint[] };

/** DNS names are at most 253 characters; anything longer (plus a `:port`) cannot name a service. */
const MAX_NAME_LENGTH = 260;

/**
 * The discovery key of a resource name: `:port` and a trailing dot dropped,
 * lowercased. Null for what cannot be a DNS name at all (xdstp:// names,
 * spaces, over-long): such names are absent without asking the discovery.
 */
export function lookupKey(resourceName: string): string | null {
  if (resourceName.length === 0 || resourceName.length > MAX_NAME_LENGTH) return null;
  let name = resourceName.replace(/:\d{1,5}$/, '');
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) return null;
  return name.toLowerCase();
}

/** Endpoints in one canonical order without duplicates, so equal sets encode to equal bytes. */
export function canonicalEndpoints(endpoints: Iterable<SocketEndpoint>): SocketEndpoint[] {
  const seen = new Map<string, SocketEndpoint>();
  for (const e of endpoints) {
    if (isIP(e.address) === 0 || !Number.isInteger(e.port) || e.port < 1 || e.port > 65535) continue;
    seen.set(`${e.address}|${e.port}`, { address: e.address, port: e.port, ...(e.readiness ? { readiness: e.readiness } : {}), ...(e.local ? { local: true } : {}) });
  }
  return [...seen.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, e]) => e);
}

/** True when two answers would give different ClusterLoadAssignments. */
export function sameEndpoints(a: readonly SocketEndpoint[], b: readonly SocketEndpoint[]): boolean {
  return a.length === b.length && a.every((e, i) => e.address === b[i]!.address && e.port === b[i]!.port && e.readiness === b[i]!.readiness && e.local === b[i]!.local);
}

/** One encoded resource, with a token that changes exactly when its bytes do. */
export interface EncodedResource {
  name: string;
  bytes: Buffer;
  token: string;
}

const ADS_CONFIG_SOURCE = { ads: {}, resource_api_version: 'V3' };

/** The resource of `type` named `name` for a present service; `key` names its route, cluster and endpoints. */
export function encodeResource(protos: XdsProtos, type: ResourceType, name: string, key: string, endpoints: readonly SocketEndpoint[]): EncodedResource {
  const bytes = encoders[type](protos, name, key, endpoints);
  return { name, bytes, token: createHash('sha256').update(bytes).digest('base64url').slice(0, 16) };
}

const encoders: Record<ResourceType, (p: XdsProtos, name: string, key: string, endpoints: readonly SocketEndpoint[]) => Buffer> = {
  listener: (p, name, key) => {
    const hcm = p.encode('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', {
      rds: { config_source: ADS_CONFIG_SOURCE, route_config_name: key },
      // gRPC requires the router as the last (here: only) HTTP filter (gRFC A39).
      http_filters: [{ name: 'envoy.filters.http.router', typed_config: { type_url: ROUTER_URL, value: p.encode('envoy.extensions.filters.http.router.v3.Router', {}) } }],
    });
    return p.encode('envoy.config.listener.v3.Listener', {
      name,
      api_listener: { api_listener: { type_url: HTTP_CONNECTION_MANAGER_URL, value: hcm } },
    });
  },
  route: (p, name, key) =>
    p.encode('envoy.config.route.v3.RouteConfiguration', {
      name,
      // `*`: the client matches its own authority (NAME, with any :port) against these domains.
      virtual_hosts: [{ name: key, domains: ['*'], routes: [{ match: { prefix: '' }, route: { cluster: key } }] }],
    }),
  cluster: (p, name, key) =>
    p.encode('envoy.config.cluster.v3.Cluster', {
      name,
      type: 'EDS',
      eds_cluster_config: { eds_config: ADS_CONFIG_SOURCE, service_name: key },
      lb_policy: 'ROUND_ROBIN',
    }),
  endpoint: (p, name, _key, endpoints) => {
    const local = endpoints.filter((e) => e.local);
    const rest = endpoints.filter((e) => !e.local);
    // gRPC drops localities without a weight. Priorities are contiguous from 0: with no local instance, the rest are 0.
    const groups = local.length > 0 ? [{ sub_zone: 'local', priority: 0, eps: local }, ...(rest.length > 0 ? [{ sub_zone: '', priority: 1, eps: rest }] : [])] : rest.length > 0 ? [{ sub_zone: '', priority: 0, eps: rest }] : [];
    return p.encode('envoy.config.endpoint.v3.ClusterLoadAssignment', {
      cluster_name: name,
      endpoints: groups.map((g) => ({
        locality: { region: '', zone: '', sub_zone: g.sub_zone },
        load_balancing_weight: { value: 1 },
        priority: g.priority,
        lb_endpoints: g.eps.map((e) => ({
          endpoint: { address: { socket_address: { protocol: 'TCP', address: e.address, port_value: e.port } } },
          // HEALTHY for a ready instance; UNKNOWN otherwise (gRPC drops UNHEALTHY and DRAINING, and a panic answer must still be used).
          health_status: e.readiness === 'ready' ? 'HEALTHY' : 'UNKNOWN',
        })),
      })),
    });
  },
};
