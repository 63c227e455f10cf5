import type { Rr } from './message.js';

/**
 * What sits at the apex of each zone the daemon answers itself.
 */

/**
 * The SOA of a special-use zone (`invalid`, `onion`, a `_` TLD): the one
 * unbound gives its own empty local zones, so a stub or a cache sees the
 * same negative answer from either, cacheable for 3 hours (RFC 2308 §5).
 */
export function specialZoneSoa(zone: string): Rr {
  return {
    type: 'SOA',
    name: zone,
    ttl: 10800,
    primary: 'localhost',
    admin: 'nobody.invalid',
    serial: 1,
    refresh: 3600,
    retry: 1200,
    expiration: 604800,
    minimum: 10800,
  };
}
