import type { ServiceName } from '../core/naming.js';
import type { ErrorCode } from '../errors.js';

/**
 * The one model of "where does service S run, on which port, in which
 * version?". DNS, gRPC, xDS and HTTP service discovery all format their
 * answers from it; none of them asks another.
 */

/** Where an endpoint's address came from. */
export type EndpointSource =
  /** `*.localhost`: the loopback host (RFC 6761 §6.3). */
  | 'loopback'
  /** The registry's `hosts` map. */
  | 'registry'
  /** /etc/hosts. */
  | 'etc-hosts'
  /** A and AAAA from the upstream resolvers. */
  | 'upstream'
  /** Cluster mode: a daemon saw the service listening on its host. */
  | 'observed';

/** One place the service can be reached. */
export interface Endpoint {
  /** IPv4 or IPv6 address. */
  address: string;
  /** The port to dial: the service's canonical port. */
  port: number;
  source: EndpointSource;
  /** Cluster node that reported the endpoint (observed only). */
  node?: string | undefined;
  /** The version running there, when the node learned it (observed only). */
  version?: string | undefined;
  /** When the node first saw the listener, ISO 8601 (observed only). */
  since?: string | undefined;
  /**
   * Observed only: `ready`, or `not-ready` in a panic answer (no instance of
   * the service was ready; discovery.ts). Draining instances are never answered.
   */
  readiness?: 'ready' | 'not-ready' | 'draining' | undefined;
  /** Observed only: this daemon's own host (answers put it first). */
  local?: boolean | undefined;
  /**
   * Observed only: the transport it listens on. A plain name covers both;
   * a host that listens on both is `tcp` there (one endpoint per address).
   */
  protocol?: 'tcp' | 'udp' | undefined;
  /** Observed only: the names people know it by (core/naming.ts); empty: unnamed. */
  names?: readonly ServiceName[] | undefined;
  /** Observed only: the label of the container's or pod's network namespace it listens in (issue 26); absent: the node's own. */
  namespace?: string | undefined;
  /** Observed only: the container or pod, when its node could read it. */
  container?: Readonly<{ id: string; pod?: string | undefined; podNamespace?: string | undefined }> | undefined;
}

/** A service name read under the zones: everything known without asking the network. */
export interface ServiceDescription {
  /** The name as asked, lowercased, without trailing dot. */
  name: string;
  /** The served zone holding the name. */
  zone: string;
  /** The service label (`api`, `splashpage-api`, `user`). */
  service: string;
  port: number;
  /** `base32`, `versioned`, `block` or `pinned`. */
  scheme: string;
  /** base32 prefix the port decodes to; empty outside 1024–33791. */
  prefix: string;
  /** For versioned services: the version asked for (or the current one). */
  version?: number | undefined;
  /** The host name carrying the service: `api.cluster-1.example.com`. */
  host: string;
  /** Seconds an answer may be cached. */
  ttl: number;
  /** Other registry names on the same port. */
  collidesWith: string[];
  /**
   * The transport the name asks for: `_svc._udp` names UDP listeners only,
   * `_svc._tcp` TCP ones; a plain name (`svc.<zone>`), absent here, both.
   */
  protocol?: 'tcp' | 'udp' | undefined;
}

/** A service and where it runs. */
export interface ServiceInstances extends ServiceDescription {
  endpoints: Endpoint[];
}

/**
 * Why a lookup found nothing: the name is not a service here (NXDOMAIN,
 * gRPC NOT_FOUND), it is but no address is known (NODATA, NOT_FOUND with
 * the port), or a source failed (SERVFAIL, UNAVAILABLE).
 */
export type LookupFailure = 'no-such-name' | 'no-address' | 'unavailable';

export type Lookup =
  | { ok: true; instances: ServiceInstances }
  | {
      ok: false;
      failure: LookupFailure;
      /** Stable catalogue code (CP_NOT_FOUND, CP_NO_ADDRESS, CP_UPSTREAM_FAILED…). */
      code: ErrorCode;
      message: string;
      /** What is known without an address: set for `no-address` and `unavailable`. */
      description?: ServiceDescription | undefined;
    };

/** What consumers (gRPC, xDS, HTTP discovery) need of the discovery core. */
export interface DiscoveryReader {
  /**
   * The service a name (as in DNS: `api.cluster-1.example.com`,
   * `_api._tcp…`, `v2.user.<zone>`, `api.localhost`) runs as, and where.
   * Never rejects for the name or the sources: the result says why it
   * found nothing. Rejects only with CP_BAD_NAME for a malformed name.
   * `protocol` narrows a plain name to one transport (xDS: tcp).
   */
  lookup(name: string, opts?: { protocol?: 'tcp' | 'udp' | undefined }): Promise<Lookup>;
  /**
   * Calls `listener` whenever any answer may have changed (a reload, a
   * changed hosts file, the cluster view). Returns the unsubscribe function.
   */
  onChange(listener: () => void): () => void;
  /**
   * What an answer about `port` is built from, to keep beside it (issue 24):
   * isCurrent() says whether it still is, so a follower (Watch, xDS) looks a
   * name up again only when a change touched it. `port` undefined (not
   * known yet): the whole view. Optional: without them every change
   * re-resolves every followed name.
   */
  dependencyOn?(port: number | undefined): unknown;
  isCurrent?(dependency: unknown): boolean;
}
