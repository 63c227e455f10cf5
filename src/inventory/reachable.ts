import type { InventoryListener } from './types.js';

/**
 * Which listeners other hosts can reach: what cluster mode publishes, and
 * what `fleet` shows of a cluster daemon either way it is read. Here, not
 * in cluster/publisher.ts, so `fleet` and the daemon use it without loading
 * the etcd client.
 */

const LOOPBACK_V4 = /^(::ffff:)?127\./i;

/** True when other hosts can reach a socket bound to `address` (a wildcard or a non-loopback address). */
export function isReachableBind(address: string): boolean {
  return !(LOOPBACK_V4.test(address) || address === '::1');
}

/**
 * The listeners worth publishing: claimed by a service, reachable from other
 * hosts, not the daemon's own sockets. In the host's namespace: bound to a
 * wildcard or a non-loopback address; in another (a container's, a pod's):
 * only when the inventory found it an address inside a `--container-network`
 * (`published`). A host port that only forwards to such a container
 * listener (`forwardedTo`, docker-proxy) is not: the container's own
 * address is that service, once. `fleet HOST…` keeps the same of a
 * cluster daemon's inventory, so both fleets list the same things.
 */
export function reachableListeners<L extends InventoryListener>(listeners: readonly L[]): L[] {
  return listeners.filter((l) => l.services.length > 0 && !l.daemon && !l.forwardedTo && (l.namespace ? l.namespace.published !== undefined : isReachableBind(l.address)));
}
