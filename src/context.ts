import type { EventEmitter } from 'node:events';
import type { Config } from './config/config.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics/metrics.js';
import type { ServingState } from './core/state.js';
import type { Discovery } from './discovery/discovery.js';
import type { InventoryProvider } from './inventory/types.js';

export interface DaemonEvents {
  /** After a successful reload, with the new state. */
  reload: [ServingState];
  /** Readiness changed. */
  ready: [boolean];
}

/**
 * What the daemon's parts (DNS, gRPC, HTTP, inventory) get from it. State
 * is read through functions because a reload replaces it whole.
 */
export interface DaemonContext {
  logger: Logger;
  metrics: Metrics;
  config(): Config;
  state(): ServingState;
  /** Where services run: every answer is formatted from it. */
  discovery: Discovery;
  inventory: InventoryProvider;
  events: EventEmitter<DaemonEvents>;
  /** All listeners bound and config loaded. */
  ready(): boolean;
  /**
   * Cluster mode: the state of the view (missing: never synced or dropped;
   * synced; stale: etcd unreachable, last view served) and since when.
   * Undefined, or returning null, without cluster mode.
   */
  clusterStatus?: (() => { state: 'missing' | 'synced' | 'stale'; sinceMs: number } | null) | undefined;
  /** When set, /metrics serves this text (a cluster primary aggregating its workers) instead of `metrics.registry`. */
  metricsText?: (() => Promise<string>) | undefined;
}
