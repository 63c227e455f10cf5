import { isLoopback } from '../config/cidr.js';

/**
 * Who a call comes from, for the per-client bounds on streams (Watch, xDS):
 * its source address; on loopback, its connection (address and port),
 * since every process of the host shares 127.0.0.1 and one of them must
 * not use up the share of all the others. What loopback clients hold
 * together is bounded by the totals.
 */
export function clientOf(call: { getPeer(): string }): string {
  const peer = call.getPeer();
  const colon = peer.lastIndexOf(':');
  const address = (colon > 0 ? peer.slice(0, colon) : peer).replace(/^\[|\]$/g, '');
  return isLoopback(address) ? peer : address;
}
