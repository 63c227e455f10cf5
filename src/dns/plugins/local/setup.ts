import type { Config } from '../../../config/config.js';

/**
 * The local zones' options. The zones, the registry and the TTL come with
 * the serving state, which the stage reads per query; who may make the
 * daemon ask the upstreams for an in-zone address is the request's
 * recursion right (access.ts).
 */
export interface LocalOptions {}

/** Pure. */
export function setup(_config: Config): LocalOptions {
  return {};
}
