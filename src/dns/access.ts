import { isLoopback, NetworkSet, type Cidr } from '../config/cidr.js';

/**
 * Who may use this daemon for what. Shared by the acl plugin (which turns
 * clients away before anything else runs) and the forward plugin (which
 * asks again before recursing), so neither imports the other.
 *
 * Recursion (forwarding to the upstreams) is for loopback and `--allow`
 * networks only: an open resolver is an amplifier. Answers about the served
 * zones are local knowledge and small, so every client gets them unless
 * `--canonical-clients allowed`.
 */
export class AccessPolicy {
  private readonly allowed: NetworkSet;

  /**
   * @param trustLoopback false only in tests, so the allow list can be
   *   exercised from distinct loopback source addresses (127.0.0.2, …).
   */
  constructor(
    allow: readonly Cidr[],
    private readonly canonicalClients: 'any' | 'allowed',
    private readonly trustLoopback = true,
  ) {
    this.allowed = new NetworkSet(allow);
  }

  /** May `address` have its queries forwarded to the upstreams? */
  mayRecurse(address: string): boolean {
    return (this.trustLoopback && isLoopback(address)) || this.allowed.has(address);
  }

  /** May `address` ask about the served zones? */
  mayAskZones(address: string): boolean {
    return this.canonicalClients === 'any' || this.mayRecurse(address);
  }
}
