import type { Config } from '../../../config/config.js';

/**
 * The local zones' options. The zones, the registry and the TTL come with
 * the serving state, which the stage reads per query; who may make the
 * daemon ask the upstreams for an in-zone address is the request's
 * recursion right (access.ts).
 */
export interface LocalOptions {
  /** DNS-SD browsing lists unnamed listeners too (`--sd-unnamed`; core/naming.ts). */
  sdUnnamed: boolean;
}

/** Pure. */
export function setup(config: Config): LocalOptions {
  return { sdUnnamed: config.sdUnnamed };
}
