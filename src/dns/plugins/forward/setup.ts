import type { Config } from '../../../config/config.js';
import { AccessPolicy } from '../../access.js';
import type { SetupContext } from '../../pipeline.js';

export interface ForwardOptions {
  access: AccessPolicy;
  /** Forwarded queries per second per client; 0 = unlimited. */
  rateLimit: number;
}

/** Who may recurse and how fast. The upstreams themselves are the shared Forwarder's (forwarder.ts). Pure. */
export function setup(config: Config, ctx: SetupContext): ForwardOptions {
  return { access: new AccessPolicy(config.allow, config.canonicalClients, ctx.trustLoopback), rateLimit: config.rateLimit };
}
