import { lookupError } from '../discovery/discovery.js';
import type { Lookup, ServiceInstances } from '../discovery/model.js';

/** What a service name resolves to over gRPC: the `canonport.v1.Resolution` message's fields. */
export interface Resolution {
  name: string;
  zone: string;
  service: string;
  port: number;
  scheme: string;
  prefix: string;
  version?: number | undefined;
  host: string;
  addresses: string[];
  ttl: number;
  collidesWith: string[];
  /** Where the service runs, one per address: in cluster mode the hosts that report it, with node, version and since. */
  endpoints: ResolvedEndpoint[];
}

/** The `canonport.v1.Endpoint` message's fields (empty strings where a field does not apply). */
export interface ResolvedEndpoint {
  address: string;
  port: number;
  /** observed, registry, etc-hosts, upstream or loopback. */
  source: string;
  node: string;
  version: string;
  since: string;
  /** Cluster mode: ready, or not-ready in a panic answer; "" otherwise. */
  readiness?: string | undefined;
  /** Cluster mode: this daemon's own host. */
  local?: boolean | undefined;
  /** Cluster mode: the container's or pod's namespace label; "" for the node's own. */
  namespace?: string | undefined;
  containerId?: string | undefined;
  pod?: string | undefined;
  podNamespace?: string | undefined;
  /** Cluster mode: `tcp` or `udp`; "" otherwise. */
  protocol?: string | undefined;
  /** Cluster mode: the names people know it by (core/naming.ts); empty: unnamed. */
  names?: { name: string; source: string }[] | undefined;
}

/** A discovery result as a Resolution; throws the catalogued error (NOT_FOUND, UNAVAILABLE…) when it found nothing. */
export function resolutionOf(l: Lookup): Resolution {
  if (!l.ok) throw lookupError(l);
  return fromInstances(l.instances);
}

/** What a name reads as when no address is known (CP_NO_ADDRESS, a failing upstream): the port and the rest, no addresses. */
export function describedResolution(l: Lookup & { ok: false }): Resolution | undefined {
  return l.description ? fromInstances({ ...l.description, endpoints: [] }) : undefined;
}

export function fromInstances(i: ServiceInstances): Resolution {
  return {
    name: i.name,
    zone: i.zone,
    service: i.service,
    port: i.port,
    scheme: i.scheme,
    prefix: i.prefix,
    ...(i.version !== undefined ? { version: i.version } : {}),
    host: i.host,
    addresses: [...new Set(i.endpoints.map((e) => e.address))],
    ttl: i.ttl,
    collidesWith: [...i.collidesWith],
    endpoints: i.endpoints.map((e) => ({
      address: e.address,
      port: e.port,
      source: e.source,
      node: e.node ?? '',
      version: e.version ?? '',
      since: e.since ?? '',
      readiness: e.readiness ?? '',
      local: e.local === true,
      namespace: e.namespace ?? '',
      containerId: e.container?.id ?? '',
      pod: e.container?.pod ?? '',
      podNamespace: e.container?.podNamespace ?? '',
      protocol: e.protocol ?? '',
      names: (e.names ?? []).map((n) => ({ name: n.name, source: n.source })),
    })),
  };
}
