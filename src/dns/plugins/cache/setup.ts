import type { Config } from '../../../config/config.js';

export interface CacheOptions {
  maxEntries: number;
  /** Cap on positive TTLs, seconds. */
  maxTtl: number;
  /** Cap on negative TTLs (RFC 2308), seconds. */
  maxNegativeTtl: number;
  /** How long past expiry an answer may be served when every upstream fails (RFC 8767), seconds. */
  staleTtl: number;
}

/** `--cache-size` and the fixed TTL caps. Pure. */
export function setup(config: Config): CacheOptions {
  return { ...config.cache };
}
