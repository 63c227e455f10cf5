import type { DnsReply, DnsRequest } from './request.js';

export type MaybePromise<T> = T | Promise<T>;

/** Hands the request to the rest of the chain. */
export type Next = (req: DnsRequest) => MaybePromise<DnsReply>;

/**
 * One stage of the DNS chain. Every stage has this one contract (after
 * CoreDNS's ServeDNS/Next).
 */
export interface Stage {
  readonly name: string;
  /**
   * Answers the request or passes it on with `next`. May return
   * synchronously (the hot path does) or a promise; must never reject for
   * a client's input: the server turns a rejection into SERVFAIL and a log line.
   */
  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply>;
}

/**
 * The chain, in order. Written down in one place with the reason for the order:
 *
 *   acl      first: a client that may not use this resolver costs nothing more.
 *   local    canonical zones (and `localhost`): answered from the registry and
 *            the scheme, never cached or forwarded, so a reload is seen at once.
 *   cache    forwarded answers, before the forwarder so a hit never leaves the host.
 *   forward  the upstreams: rate limit, in-flight cap, RFC 5452 matching, TCP retry.
 */
export const CHAIN_ORDER = ['acl', 'local', 'cache', 'forward'] as const;

/**
 * Composes stages into one handler, in CHAIN_ORDER (checked, so the order
 * written above is the order that runs). The last stage's `next` is a
 * programming error.
 */
export function buildChain(stages: readonly Stage[]): (req: DnsRequest) => MaybePromise<DnsReply> {
  const names = stages.map((s) => s.name).join(' → ');
  if (names !== CHAIN_ORDER.join(' → ')) throw new Error(`DNS chain is ${names}, expected ${CHAIN_ORDER.join(' → ')}`);
  let next: Next = () => {
    throw new Error('DNS chain ended without an answer');
  };
  for (let i = stages.length - 1; i >= 0; i--) {
    const stage = stages[i]!;
    const after = next;
    next = (req) => stage.serve(req, after);
  }
  return next;
}
