import type { EventEmitter } from 'node:events';
import type { Config } from './config/config.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics/metrics.js';
import type { ServingState } from './core/state.js';
import type { Discovery } from './discovery/discovery.js';
import type { InventoryProvider, NamespaceScope } from './inventory/types.js';

export interface DaemonEvents {
  /** After a successful reload, with the new state. */
  reload: [ServingState];
  /** Readiness changed. */
  ready: [boolean];
  /** `canonport leave` withdrew this host: the process should stop (serve does, as on SIGTERM). */
  leave: [];
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
  clusterStatus?: (() => { state: 'missing' | 'synced' | 'stale'; sinceMs: number; fromSnapshot?: boolean | undefined; syncError?: string | undefined } | null) | undefined;
  /** When set, /metrics serves this text (a cluster primary aggregating its workers) instead of `metrics.registry`. */
  metricsText?: (() => Promise<string>) | undefined;
  /**
   * Cluster mode: why the daemon must not be routed to though its listeners
   * are up (a view neither etcd nor a snapshot filled); null when there is no such reason.
   */
  notReadyReason?: (() => string | null) | undefined;
  /** Which network namespaces the inventory observes (issue 26), as of its last scan; undefined before the first. */
  namespaces?: (() => NamespaceScope | undefined) | undefined;
  /** Cluster mode's operations on this host (canonport.v1.Admin); undefined without cluster mode. */
  admin?: AdminOperations | undefined;
}

/** What `canonport drain`, `undrain` and `leave` do (the daemon implements them; gRPC's Admin service calls them). */
export interface AdminOperations {
  drain(service: string, opts: { wait: boolean; timeoutMs: number }): Promise<{ ports: number[]; acked: string[]; unconfirmed: string[]; ttlWaitedMs: number }>;
  undrain(service: string): Promise<{ ports: number[] }>;
  /** Withdraws the host (revokes the lease) and stops the daemon. */
  leave(): Promise<{ node: string }>;
}
