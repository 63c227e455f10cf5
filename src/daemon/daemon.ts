import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';
import { formatHostPort, type HostPort } from '../config/address.js';
import { NetworkSet } from '../config/cidr.js';
import { checkForwardLoop, configFromEnv, resolveConfig, type Config, type ConfigInput } from '../config/config.js';
import { ServiceResolver, type ServingState } from '../core/resolver.js';
import { classifyName, LOCALHOST_ZONE } from '../core/service-name.js';
import { ChainAddressSource } from '../dns/address-source.js';
import { EtcHosts } from '../dns/etc-hosts.js';
import { buildChain } from '../dns/pipeline.js';
import { RateLimiter } from '../dns/rate-limit.js';
import { DnsServer } from '../dns/server.js';
import { AclStage } from '../dns/plugins/acl/acl.js';
import { CacheStage } from '../dns/plugins/cache/cache.js';
import { ForwardStage } from '../dns/plugins/forward/forward.js';
import { LocalZonesStage } from '../dns/plugins/local/local.js';
import { UpstreamClient } from '../dns/upstream.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import { startGrpcServer, type GrpcHandle } from '../grpc/server.js';
import { Metrics } from '../metrics/metrics.js';
import { startHttpServer, type HttpServer } from '../http/server.js';
import { HostInventory } from '../inventory/inventory.js';
import { silentLogger, type Logger } from '../log.js';
import type { Registry } from '../registry/registry.js';
import type { DaemonContext, DaemonEvents } from './context.js';

export interface DaemonOptions {
  flags: ConfigInput;
  env?: ConfigInput | undefined;
  logger?: Logger | undefined;
  /** resolv.conf to read default upstreams from (tests point it elsewhere). */
  resolvConf?: string | undefined;
  /** /etc/hosts path (tests point it elsewhere). */
  hostsFile?: string | undefined;
  /** Clock for cache freshness and rate limits (ms). */
  now?: (() => number) | undefined;
  /** Watch the registry file and reload on change (default true). */
  watchRegistry?: boolean | undefined;
  /** Start the inventory refresh timer (default true). */
  inventory?: boolean | undefined;
  /**
   * What this process serves. `all` (default): DNS, gRPC and HTTP.
   * With `--workers`, the primary is `front` (gRPC, HTTP, inventory, no DNS
   * socket) and each worker is `dns` (only the DNS listeners, on a socket the
   * cluster shares). See src/daemon/cluster.ts.
   */
  role?: 'all' | 'front' | 'dns' | undefined;
  /** Metrics text for /metrics when it must cover more than this process (cluster primary). */
  metricsText?: (() => Promise<string>) | undefined;
  /** Loopback clients may always forward (default true; tests set false to exercise --allow from 127.0.0.x). */
  trustLoopback?: boolean | undefined;
  /** Overrides applied on top of the built config (tests: small timeouts, limits). */
  tune?: ((c: Config) => Config) | undefined;
}

export interface DaemonAddresses {
  dns: HostPort;
  grpc: HostPort;
  http: HostPort;
}

/**
 * One canonport daemon: DNS (UDP+TCP), gRPC and HTTP over one shared,
 * reloadable state. Start with Daemon.start(); stop with close().
 */
export class Daemon {
  readonly events = new EventEmitter<DaemonEvents>();
  readonly metrics = new Metrics();
  readonly logger: Logger;
  private cfg: Config;
  private serving: ServingState;
  private dns!: DnsServer;
  private grpc: GrpcHandle | null = null;
  private http: HttpServer | null = null;
  private readonly cache: CacheStage;
  private readonly inventory: HostInventory;
  private readonly etcHosts: EtcHosts;
  private allowed: NetworkSet;
  private watcher: FSWatcher | null = null;
  private reloadTimer: NodeJS.Timeout | null = null;
  private isReady = false;
  private closed = false;
  readonly ctx: DaemonContext;
  addresses!: DaemonAddresses;

  private constructor(
    private readonly opts: DaemonOptions,
    config: Config,
    registry: Registry,
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.cfg = config;
    this.applyLogLevel();
    this.serving = stateOf(config, registry);
    this.allowed = new NetworkSet(config.allow);
    const now = opts.now ?? Date.now;
    this.etcHosts = new EtcHosts(opts.hostsFile ?? '/etc/hosts', now);
    const acl = new AclStage(() => this.allowed, opts.trustLoopback !== false, () => this.cfg.canonicalClients);
    const local = new LocalZonesStage(() => this.serving, this.etcHosts);
    this.cache = new CacheStage(config.cache, this.metrics, now);
    const forward = new ForwardStage({
      upstreams: () => this.cfg.upstreams,
      client: new UpstreamClient(config.upstreamTimeoutMs, (up, why) => {
        this.metrics.upstreamMismatches.inc({ upstream: formatHostPort(up) });
        this.logger.warn({ code: 'CP_UPSTREAM_MISMATCH', upstream: formatHostPort(up), why }, 'dropped an upstream reply that did not match the query');
      }),
      acl,
      rateLimiter: new RateLimiter(() => this.cfg.rateLimit, now),
      maxInflight: () => this.cfg.maxInflight,
      metrics: this.metrics,
      logger: this.logger,
      now,
    });
    const chain = buildChain([acl, local, this.cache, forward]);
    const classify = (lname: string) => classifyName(lname, this.serving.zones, this.serving.registry);
    const resolver = new ServiceResolver(() => this.serving, new ChainAddressSource(() => this.serving, local, chain, classify));
    this.inventory = new HostInventory({
      state: () => this.serving,
      metrics: this.metrics,
      logger: this.logger,
      procRoot: config.procRoot,
      skipPorts: () => (this.addresses ? [this.addresses.dns.port, this.addresses.grpc.port, this.addresses.http.port] : []),
    });
    this.ctx = {
      logger: this.logger,
      metrics: this.metrics,
      config: () => this.cfg,
      state: () => this.serving,
      resolver,
      inventory: this.inventory,
      events: this.events,
      ready: () => this.isReady,
      metricsText: opts.metricsText,
    };
    this.dns = new DnsServer({
      listen: config.dns,
      handler: chain,
      classify,
      metrics: this.metrics,
      logger: this.logger,
      queryLogRate: () => this.cfg.queryLog,
      tcp: config.tcp,
      shared: opts.role === 'dns',
    });
  }

  /** Loads config and registry, binds every listener, and reports ready. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    // Env is read once, at start: a reload re-reads the registry file, not the environment.
    const withEnv = { ...opts, env: opts.env ?? configFromEnv() };
    const { config, registry } = await Daemon.load(withEnv);
    const d = new Daemon(withEnv, config, registry);
    try {
      await d.listen();
    } catch (err) {
      await d.close(0);
      throw err;
    }
    return d;
  }

  /** Flags, env and the registry file into one checked config: the same path at start and at reload. */
  private static async load(opts: DaemonOptions): Promise<{ config: Config; registry: Registry }> {
    const { config, registry } = await resolveConfig(opts.flags, opts.env, { resolvConf: opts.resolvConf });
    const tuned = opts.tune ? opts.tune(config) : config;
    checkForwardLoop(tuned);
    return { config: tuned, registry };
  }

  /** A logger handed in (the process's own) follows the configured level; the silent default stays silent. */
  private applyLogLevel(): void {
    if (this.opts.logger) this.logger.level = this.cfg.logLevel;
  }

  get config(): Config {
    return this.cfg;
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  private async listen(): Promise<void> {
    const role = this.opts.role ?? 'all';
    const dns = role === 'front' ? this.cfg.dns : await this.dns.start();
    if (role !== 'dns') {
      this.http = await startHttpServer(this.ctx, this.cfg.http);
      this.grpc = await startGrpcServer(this.ctx, this.cfg.grpc);
    }
    this.addresses = { dns, grpc: this.grpc?.address ?? this.cfg.grpc, http: this.http?.address ?? this.cfg.http };
    if (this.opts.inventory !== false && role !== 'dns') this.inventory.start();
    if (this.opts.watchRegistry !== false && role !== 'dns') this.watchRegistry();
    if (this.cfg.upstreams.length === 0) {
      this.logger.warn({ code: 'CP_NO_UPSTREAM' }, 'no upstream resolvers: names outside the served zones get SERVFAIL');
    }
    this.isReady = true;
    this.events.emit('ready', true);
    this.logger.info(
      {
        event: 'ready',
        dns: formatHostPort(dns),
        grpc: formatHostPort(this.addresses.grpc),
        http: formatHostPort(this.addresses.http),
        zones: this.serving.zones,
        upstreams: this.cfg.upstreams.map(formatHostPort),
        registry: this.cfg.registryFile,
      },
      'canonport ready',
    );
  }

  /**
   * Re-reads the registry file and re-applies flags and env. An invalid
   * file keeps the running config (nothing lost), logs why and counts it.
   * Listen addresses cannot change without a restart.
   */
  async reload(): Promise<{ ok: true } | { ok: false; error: CanonportError }> {
    try {
      const loaded = await Daemon.load(this.opts);
      const { registry } = loaded;
      let next = loaded.config;
      for (const k of ['dns', 'grpc', 'http'] as const) {
        if (formatHostPort(next[k]) !== formatHostPort(this.cfg[k])) {
          this.logger.warn({ code: 'CP_RESTART_NEEDED', setting: k }, `${k} listen address changed: restart to apply`);
          next = { ...next, [k]: this.cfg[k] };
        }
      }
      this.cfg = next;
      this.applyLogLevel();
      this.allowed = new NetworkSet(next.allow);
      this.serving = stateOf(next, registry);
      this.metrics.reloads.inc({ result: 'ok' });
      this.logger.info({ event: 'reload', zones: this.serving.zones, services: registry.services.size }, 'configuration reloaded');
      this.events.emit('reload', this.serving);
      return { ok: true };
    } catch (err) {
      const error =
        err instanceof CanonportError ? err : new CanonportError(ErrorCodes.CONFIG_INVALID, (err as Error).message, undefined, { cause: err });
      this.metrics.reloads.inc({ result: 'failed' });
      this.logger.error({ code: error.code, err: error.message }, 'reload failed; still serving the previous configuration');
      return { ok: false, error };
    }
  }

  /** Stops accepting, drains in-flight queries (up to graceMs), closes everything. */
  async close(graceMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.isReady = false;
    this.events.emit('ready', false);
    this.watcher?.close();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    await Promise.all([this.opts.role === 'front' ? undefined : this.dns.close(graceMs), this.grpc?.close(graceMs), this.http?.close()]);
    await this.inventory.stop();
    this.cache.close();
  }

  private watchRegistry(): void {
    const file = this.cfg.registryFile;
    if (!file) return;
    // Watch the directory: editors and ConfigMap updates replace the file rather than write it.
    try {
      this.watcher = watch(dirname(file), (_event, name) => {
        if (name !== null && name !== basename(file) && !name.startsWith('..')) return;
        if (this.reloadTimer) clearTimeout(this.reloadTimer);
        this.reloadTimer = setTimeout(() => void this.reload(), 200);
      });
      this.watcher.on('error', (err) => this.logger.warn({ code: 'CP_WATCH_FAILED', err: err.message }, 'registry watch failed; SIGHUP still reloads'));
    } catch (err) {
      this.logger.warn({ code: 'CP_WATCH_FAILED', err: (err as Error).message }, 'cannot watch the registry file; SIGHUP still reloads');
    }
  }
}

function stateOf(config: Config, registry: Registry): ServingState {
  return { registry, zones: Object.freeze([...new Set([LOCALHOST_ZONE, ...config.zones])]) };
}
