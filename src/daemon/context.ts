import type { EventEmitter } from 'node:events';
import type { Config } from '../config/config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../http/metrics.js';
import type { ServiceResolver, ServingState } from '../core/resolver.js';

/** One listening socket on this host, named by canonical port. */
export interface InventoryListener {
  port: number;
  address: string;
  family: 'tcp' | 'tcp6';
  /** Services the port is canonical for; empty when nobody claims it. */
  services: string[];
  version: string;
  versionSource: 'port' | 'http' | '';
  scheme: string;
}

export interface InventorySnapshot {
  host: string;
  collectedAtMs: number;
  listeners: InventoryListener[];
}

export interface InventoryProvider {
  /** The latest snapshot; never rejects (an unreadable /proc gives an empty list and a log line). */
  snapshot(): Promise<InventorySnapshot>;
}

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
  resolver: ServiceResolver;
  inventory: InventoryProvider;
  events: EventEmitter<DaemonEvents>;
  /** All listeners bound and config loaded. */
  ready(): boolean;
  /** When set, /metrics serves this text (a cluster primary aggregating its workers) instead of `metrics.registry`. */
  metricsText?: (() => Promise<string>) | undefined;
}
