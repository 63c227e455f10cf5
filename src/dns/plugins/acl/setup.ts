import type { Config } from '../../../config/config.js';
import { AccessPolicy } from '../../access.js';
import type { SetupContext } from '../../pipeline.js';

export interface AclOptions {
  access: AccessPolicy;
}

/** `--allow` and `--canonical-clients` as the access policy. Pure. */
export function setup(config: Config, ctx: SetupContext): AclOptions {
  return { access: new AccessPolicy(config.allow, config.canonicalClients, ctx.trustLoopback) };
}
