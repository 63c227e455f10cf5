import type { Config } from '../config/config.js';
import { isLoopback, NetworkSet, type Cidr } from '../config/cidr.js';
import type { SetupContext } from './pipeline.js';

/**
 * Who may recurse: have their queries forwarded to the upstreams. The chain
 * holds one policy (chain.ts) and the server asks it once per query, lazily
 * (DnsRequest.mayRecurse), so the stages that turn clients away (acl,
 * forward), the one that asks the upstreams for in-zone addresses (local)
 * and the RA bit of every reply (reply.ts) all read the same answer.
 *
 * Recursion is for loopback and `--allow` networks only: an open resolver
 * is an amplifier. Answers about the served zones are local knowledge and
 * small, so the acl plugin gives them to every client unless
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
    private readonly trustLoopback = true,
  ) {
    this.allowed = new NetworkSet(allow);
  }

  /** May `address` have its queries forwarded to the upstreams? */
  mayRecurse(address: string): boolean {
    return (this.trustLoopback && isLoopback(address)) || this.allowed.has(address);
  }
}

/** `--allow` as the access policy. Pure. */
export function accessPolicy(config: Pick<Config, 'allow'>, ctx: SetupContext): AccessPolicy {
  return new AccessPolicy(config.allow, ctx.trustLoopback);
}
