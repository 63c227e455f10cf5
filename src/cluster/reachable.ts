/**
 * Which binds other hosts can reach. Apart from the publisher (which
 * imports etcd3) so the daemon can ask it in every mode without loading
 * etcd3's client and protos in single-host mode (issue 24: 7 MB of RSS).
 */

const LOOPBACK_V4 = /^(::ffff:)?127\./i;

/** True when other hosts can reach a socket bound to `address` (a wildcard or a non-loopback address). */
export function isReachableBind(address: string): boolean {
  return !(LOOPBACK_V4.test(address) || address === '::1');
}
