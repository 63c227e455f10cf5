import type { Config } from '../../../config/config.js';
import { AccessPolicy } from '../../access.js';
import type { SetupContext } from '../../pipeline.js';

/**
 * The local zones' options. The zones, the registry and the TTL come with
 * the serving state, which the stage reads per query; the access policy
 * says who may make the daemon ask the upstreams for an in-zone address.
 */
export interface LocalOptions {
  access: AccessPolicy;
}

/** Pure. */
export function setup(config: Config, ctx: SetupContext): LocalOptions {
  return { access: new AccessPolicy(config.allow, config.canonicalClients, ctx.trustLoopback) };
}
