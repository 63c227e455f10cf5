/** What the inventory reports: the listening sockets of one host, named by canonical port. */
import type { ServiceName } from '../core/naming.js';
import type { SocketFamily } from './procnet.js';

import type { ContainerIdentity } from './container.js';
import type { NamespaceScope } from './namespaces.js';

export type { ContainerIdentity, NamespaceScope };

/**
 * The network namespace a listener lives in when it is not the daemon's
 * own (issue 26): a container's or a pod's.
 */
export interface ListenerNamespace {
  /** Its label in cluster keys and answers (a DNS label): the container's short id, a `/run/netns` name, or `ns-<inode>`. */
  label: string;
  /** The unicast addresses the namespace owns. */
  addresses: string[];
  /**
   * The address other hosts reach the listener at: one of `addresses` inside
   * a `--container-network`. Absent: not published (a bridge-private address;
   * a port the host publishes for it is the host's own listener).
   */
  published?: string | undefined;
  container?: ContainerIdentity | undefined;
}

/** One listening socket on this host, named by canonical port. */
export interface InventoryListener {
  port: number;
  address: string;
  /** The /proc/net file it was read from: `tcp`, `tcp6`, or `udp`, `udp6` for a bound unconnected UDP socket. */
  family: SocketFamily;
  /** Services the port is canonical for; empty when nobody claims it. */
  services: string[];
  /**
   * The names people know it by (core/naming.ts), best source first: the
   * registry's, names clients asked for, its process's own; empty when no
   * source names it (it still answers its canonical `services`). Absent from
   * a daemon before issue 22, and for ports nobody claims.
   */
  names?: ServiceName[] | undefined;
  /** True for the daemon's own DNS, gRPC or HTTP socket: this host's daemon, not a service (fleet leaves it out). */
  daemon?: true | undefined;
  version: string;
  versionSource: 'port' | 'http' | '';
  scheme: string;
  /**
   * Cluster mode: whether the listener serves (src/inventory/readiness.ts),
   * or `draining` after `canonport drain`. Absent until the first verdict,
   * and outside cluster mode (nothing is probed).
   */
  readiness?: ListenerReadiness | undefined;
  /** Absent: the daemon's own network namespace (the host's). */
  namespace?: ListenerNamespace | undefined;
  /**
   * A host port that only forwards to a container listener published at
   * its own address (`docker run -p P:P` on a `--container-network`; the
   * forwarder is Docker's docker-proxy, forwarders.ts): listed, never
   * published, so one published port is one service.
   */
  forwardedTo?: ForwardedTo | undefined;
}

/** Where a forwarding host port sends its connections: the container listener that is published instead. */
export interface ForwardedTo {
  /** The container's published address and port. */
  address: string;
  port: number;
  /** The label of the container's namespace (ListenerNamespace.label). */
  namespace: string;
}

export interface ListenerReadiness {
  state: 'ready' | 'not-ready' | 'draining';
  /** `udp`: a UDP listener, ready while it listens (nothing is probed). */
  by: 'grpc' | 'http' | 'tcp' | 'udp' | 'registry' | 'admin';
  /** When this state began (ms since the epoch). */
  sinceMs: number;
  detail?: string | undefined;
}

export interface InventorySnapshot {
  host: string;
  collectedAtMs: number;
  listeners: InventoryListener[];
  /**
   * The digest of the registry that named the listeners (Registry.digest:
   * hex SHA-256 of what it says about names and ports); absent or "" when
   * unknown (a daemon from before the field). Hosts with different digests
   * may name one port differently.
   */
  registryDigest?: string | undefined;
  /** Which network namespaces the inventory observes (absent: only its own, from a daemon before issue 26). */
  namespaces?: NamespaceScope | undefined;
  /**
   * Cluster mode: this daemon's node name. Its fleet is then what it
   * publishes (listeners other hosts can reach), as `fleet --cluster` reads
   * it; absent outside cluster mode and from daemons before issue 22.
   */
  node?: string | undefined;
}

export interface InventoryProvider {
  /** The latest snapshot; never rejects (an unreadable /proc gives an empty list and a log line). */
  snapshot(): Promise<InventorySnapshot>;
}
