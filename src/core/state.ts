import type { Registry } from '../registry/registry.js';

/** What the daemon serves right now: replaced whole on reload, never mutated. */
export interface ServingState {
  registry: Registry;
  /** Served zones, lowercase, `localhost` included. */
  zones: readonly string[];
}
