import type { Config } from '../config/config.js';
import type { ServingState } from '../core/state.js';
import type { Discovery } from '../discovery/discovery.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Forwarder } from './forwarder.js';
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

/** A stage built by a plugin: it takes new options on reload and keeps its state (a cache's entries). */
export interface PluginStage<O> extends Stage {
  /** Applies options from the next query on. Never called synchronously from serve(). */
  configure(opts: O): void;
  /** Releases timers and stores. */
  close?(): void;
}

/** What the composition root hands every plugin: shared services, never another stage. */
export interface PluginDeps {
  state: () => ServingState;
  discovery: Discovery;
  forwarder: Forwarder;
  metrics: Metrics;
  logger: Logger;
  /** Clock, ms. */
  now: () => number;
}

/** What a plugin's setup may read besides the config: facts of this process, not settings. */
export interface SetupContext {
  /** Loopback clients may always recurse (false only in tests, to exercise --allow from 127.0.0.x). */
  trustLoopback: boolean;
}

/**
 * A DNS plugin, CoreDNS-style: `setup` turns the checked config into the
 * stage's options (pure: config in, options out, so a reload is a new
 * setup applied with `configure`), and `create` builds the stage once.
 */
export interface Plugin<O> {
  readonly name: (typeof CHAIN_ORDER)[number];
  setup(config: Config, ctx: SetupContext): O;
  create(deps: PluginDeps, opts: O): PluginStage<O>;
}

/**
 * The chain, in order. Written down in one place with the reason for the order:
 *
 *   acl      first: a client that may not use this resolver costs nothing more.
 *   chaos    CH identity queries (version.bind, id.server…): this server's own,
 *            never forwarded; before the zones, so no zone stage sees class CH.
 *   local    canonical zones (and `localhost`): answered from the discovery
 *            core, never cached here or forwarded, so a reload is seen at once.
 *   cache    forwarded answers, before the forwarder so a hit never leaves the host.
 *   forward  the upstreams: rate limit, then the shared Forwarder (RFC 5452
 *            matching, TCP retry, coalescing, the in-flight cap).
 */
export const CHAIN_ORDER = ['acl', 'chaos', 'local', 'cache', 'forward'] as const;

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
