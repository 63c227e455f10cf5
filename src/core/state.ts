import type { Registry } from '../registry/registry.js';

/** What the daemon serves right now: replaced whole on reload, never mutated. */
export interface ServingState {
  registry: Registry;
  /** Served zones, lowercase, `localhost` included. */
  zones: readonly string[];
  /** Cluster mode's answer settings; null or absent when cluster mode is off. */
  cluster?: ClusterAnswers | null | undefined;
}

/** How answers read the cluster view (both reloadable). */
export interface ClusterAnswers {
  /** A service that no host reports listening does not exist. */
  onlyListening: boolean;
  /** TTL of answers made from observed listeners, seconds. */
  observedTtl: number;
  /** Answer with this host's ready instance first (a registry service's preferLocal overrides). */
  preferLocal?: boolean | undefined;
}
