import type { Config } from '../../../config/config.js';

export interface AclOptions {
  /** Who gets answers about the served zones: any client, or only those that may recurse. */
  canonicalClients: Config['canonicalClients'];
}

/** `--canonical-clients`. Who may recurse is the chain's access policy (access.ts), read from the request. Pure. */
export function setup(config: Config): AclOptions {
  return { canonicalClients: config.canonicalClients };
}
