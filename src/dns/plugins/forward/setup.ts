import type { Config } from '../../../config/config.js';

export interface ForwardOptions {
  /** Forwarded queries per second per client; 0 = unlimited. */
  rateLimit: number;
}

/**
 * How fast a client may recurse. Who may is the chain's access policy
 * (access.ts, read from the request); the upstreams themselves are the
 * shared Forwarder's (forwarder.ts). Pure.
 */
export function setup(config: Config): ForwardOptions {
  return { rateLimit: config.rateLimit };
}
