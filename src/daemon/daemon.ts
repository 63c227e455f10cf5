import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname } from 'node:path';
import { formatHostPort, type HostPort } from '../config/address.js';
import { applyReload, checkForwardLoop, configFromEnv, type Config, type ConfigInput } from '../config/config.js';
import { resolveConfig } from './load.js';
import { checkListeners } from '../config/listen-policy.js';
import { TlsSource, tlsFilesOf } from '../config/tls.js';
import { classifyIn, LOCALHOST_ZONE } from '../core/service-name.js';
import type { ServingState } from '../core/state.js';
import type { Cluster, ClusterOptions } from '../cluster/cluster.js';
import { etcdAccess } from '../cluster/access.js';
import { observedFrom } from '../cluster/observed.js';
import { isReachableBind } from '../inventory/reachable.js';
import { chooseStateDir } from '../cluster/state-dir.js';
import { Discovery } from '../discovery/discovery.js';
import { EtcHosts } from '../discovery/etc-hosts.js';
import { DnsChain } from '../dns/chain.js';
import { Forwarder, type ForwarderOptions } from '../dns/forwarder.js';
import type { CacheStage } from '../dns/plugins/cache/cache.js';
import { DnsServer } from '../dns/server.js';
import { WARM_UP_QUERIES, WARM_UP_ROUNDS, warmUpQueries } from '../dns/warm-up.js';
import { UpstreamAddresses, type UpstreamAddressesOptions } from '../dns/upstream-addresses.js';
import { NameServerHosts } from '../dns/zone-apex.js';
import { CanonportError, ErrorCodes, isDescriptorExhaustion } from '../errors.js';
import { startGrpcServer, type GrpcHandle } from '../grpc/server.js';
import { streamLookupConcurrency } from '../grpc/watch-hub.js';
import { Metrics } from '../metrics/metrics.js';
import { startHttpServer, type HttpServer } from '../http/server.js';
import { HostInventory, isOwnSocket } from '../inventory/inventory.js';
import { AskedNames } from '../discovery/asked-names.js';
import type { InventorySnapshot } from '../inventory/types.js';
import { LogThrottle, silentLogger, type Logger } from '../log.js';
import { CANONPORT_VERSION } from '../version.js';
import { addXdsService } from '../xds/server.js';
import { LiveStreams } from '../ui/events.js';
import { FleetFeed } from '../ui/feed.js';
import { uiRoute } from '../ui/route.js';
import { inventorySource, viewSource } from '../ui/sources.js';
import type { Registry } from '../registry/registry.js';
import type { AdminOperations, DaemonContext, DaemonEvents } from '../context.js';
import type { PageInfo } from '../ui/route.js';
import { randomBytes } from 'node:crypto';

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
  /** A `--workers` DNS worker: hands the names clients asked it for to its primary (which publishes them). */
  onAskedNames?: ((names: { port: number; name: string; lastMs: number }[]) => void) | undefined;
  /** Metrics text for /metrics when it must cover more than this process (cluster primary). */
  metricsText?: (() => Promise<string>) | undefined;
  /** Loopback clients may always forward (default true; tests set false to exercise --allow from 127.0.0.x). */
  trustLoopback?: boolean | undefined;
  /** Overrides applied on top of the built config (tests: small timeouts, limits). */
  tune?: ((c: Config) => Config) | undefined;
  /**
   * Queries in each round of the warm-up before ready (default WARM_UP_QUERIES). Tests that start hundreds of
   * daemons in-process ask fewer: the same rounds, query kinds and clean-up, without most of the ~100 ms of CPU
   * a full warm-up costs each start (issue 23); the ones about the warm-up keep the default.
   */
  warmUpQueries?: number | undefined;
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
  /** The certificate sets of TLS listeners, re-read on change and on reload. */
  private tls: TlsSource[] = [];
  private readonly chain: DnsChain;
  private readonly forwarder: Forwarder;
  private readonly upstreamAddresses: UpstreamAddresses;
  readonly discovery: Discovery;
  /** Cluster mode: this host's publisher and every host's view; null without --cluster. */
  readonly cluster: Cluster | null;
  private readonly inventory: HostInventory;
  /** The names clients ask for (issue 22): learned here, published in cluster mode (a --workers DNS worker hands them to its primary). */
  readonly askedNames: AskedNames;
  /** The fleet page (`/ui`): its document feed and live streams; null in a `--workers` DNS worker (no HTTP). */
  private readonly ui: { feed: FleetFeed; streams: LiveStreams; inventoryChanged: (() => void) | undefined } | null;
  private watcher: FSWatcher | null = null;
  private reloadTimer: NodeJS.Timeout | null = null;
  private isReady = false;
  private closed = false;
  /** Aborted by close(): a reload still reading a large registry stops at its next slice. */
  private readonly stopping = new AbortController();
  /** The reload running (or the last one): reloads run one after another. */
  private reloading: Promise<void> = Promise.resolve();
  readonly ctx: DaemonContext;
  addresses!: DaemonAddresses;

  /**
   * The composition root: builds each part once from the first config, and
   * on reload hands each its new options (configure) rather than reaching
   * into it. Parts: the discovery core (where services run) over its
   * sources; the shared Forwarder (the upstreams); the DNS chain of plugins;
   * the listeners; the inventory.
   */
  private constructor(
    private readonly opts: DaemonOptions,
    config: Config,
    registry: Registry,
    /** The cluster module, loaded only in cluster mode (its etcd client costs half a second to load). */
    clusterModule: typeof import('../cluster/cluster.js') | null,
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.cfg = config;
    this.applyLogLevel();
    this.serving = stateOf(config, registry);
    const now = opts.now ?? Date.now;
    const state = () => this.serving;
    this.forwarder = new Forwarder({ metrics: this.metrics, logger: this.logger, now }, forwarderOptions(config));
    // Learned in-zone addresses change answers: tell the core's listeners (Watch, xDS).
    this.upstreamAddresses = new UpstreamAddresses(this.forwarder, upstreamAddressOptions(config), now, () => this.discovery.notify());
    // Cluster mode: a --workers DNS worker reads the view only; its primary publishes for the host.
    this.cluster = clusterModule ? new clusterModule.Cluster(clusterOptions(config, registry, opts.role !== 'dns', this.logger), { metrics: this.metrics, logger: this.logger, now }) : null;
    // /etc/hosts, and each zone's name server host (ns.<zone>) at this daemon's DNS address (zone-apex.ts).
    const interfacesLog = new LogThrottle();
    const hosts = new NameServerHosts(new EtcHosts(opts.hostsFile ?? '/etc/hosts', now), {
      zones: () => this.serving.zones,
      listen: config.dns,
      now,
      onError: (err) =>
        interfacesLog.run('interfaces', (heldBack) =>
          this.logger.error(
            { code: isDescriptorExhaustion(err) ? ErrorCodes.FD_EXHAUSTED : ErrorCodes.HANDLER_FAILED, errno: err.code, err: err.message, heldBack },
            "cannot read the host's interface addresses (for ns.<zone>); keeping the last ones",
          ),
        ),
    });
    // A name is learned while some host listens on its port: the cluster's view when there is one, else this host's inventory.
    const listening = (port: number): boolean => {
      if (this.cluster && this.cluster.reader.status().state !== 'missing') return this.cluster.reader.endpointsOnPort(port).length > 0;
      return (this.inventory?.current?.listeners ?? []).some((l) => l.port === port && l.services.length > 0 && !l.daemon);
    };
    this.askedNames = new AskedNames({
      listening,
      registryNames: (port) => this.serving.registry.ownersOf(port).length > 0,
      enabled: () => this.cfg.learnNames,
      ttlMs: () => this.cfg.learnedNameTtl * 1000,
      onChange: (names) => {
        if (opts.role === 'dns') opts.onAskedNames?.(this.askedNames.entries());
        else this.cluster?.publishAskedNames(names);
      },
    });
    this.discovery = new Discovery({
      state,
      hosts,
      addresses: this.upstreamAddresses,
      observed: this.cluster ? observedFrom(this.cluster.reader, this.cluster.nodeName) : undefined,
      onNoReady: (service) => this.metrics.noReadyAnswers.inc({ service }),
      // Once ready: the warm-up's own queries (dns/warm-up.ts, `cpwarm…`) are nobody asking for a service.
      onAsked: (name, port) => (this.isReady ? this.askedNames.ask(name, port) : undefined),
    });
    this.chain = new DnsChain(
      { state, discovery: this.discovery, forwarder: this.forwarder, metrics: this.metrics, logger: this.logger, now },
      config,
      { trustLoopback: opts.trustLoopback !== false },
    );
    this.inventory = new HostInventory({
      state,
      metrics: this.metrics,
      logger: this.logger,
      procRoot: config.procRoot,
      skipPorts: () => (this.addresses ? [this.addresses.dns.port, this.addresses.grpc.port, this.addresses.http.port] : []),
      ownSockets: () => (this.addresses ? [this.addresses.dns, this.addresses.grpc, this.addresses.http] : []),
      node: this.cluster ? () => this.cluster!.nodeName : undefined,
      names: {
        // The cluster's asked names (every node's record) and this host's own, not yet in the view.
        asked: (port) => [...new Set([...(this.cluster?.reader.askedOn(port) ?? []), ...this.askedNames.namesOn(port)])],
        processNames: () => this.cfg.processNames,
      },
      // Cluster mode: what listens here reaches every host within a scan, so scan often (registry inventory.intervalMs still wins).
      intervalMs: clusterModule && registry.inventory.intervalMs === undefined ? clusterModule.CLUSTER_SCAN_INTERVAL_MS : undefined,
      // The daemon's own DNS, gRPC and HTTP sockets are this host's daemon, not a service it observes:
      // published, they would show as services named by their ports' base32 prefixes (13656 → "cao").
      // A scan that found the listeners of the last one has nothing to publish (the fleet page still shows its time).
      onSnapshot: (snap, changed) => {
        if (changed) this.cluster?.publish(withoutOwnSockets(snap, this.addresses ? [this.addresses.dns, this.addresses.grpc, this.addresses.http] : []));
        this.ui?.inventoryChanged?.();
      },
      // Cluster mode: what other hosts are handed must serve, so this host's reachable claimed listeners are probed.
      readiness: clusterModule && opts.role !== 'dns' ? { intervalMs: () => this.cfg.readyInterval, reachable: isReachableBind } : undefined,
      // Containers and pods: every other network namespace on the host (issue 26).
      namespaces: { mode: () => this.cfg.namespaces, containerNetworks: () => this.cfg.containerNetworks, podDirectory: config.podDirectory },
    });
    // The fleet page reads the view every answer reads (cluster mode), else this host's inventory.
    if (opts.role === 'dns') this.ui = null;
    else {
      const local = this.cluster ? undefined : inventorySource(this.inventory);
      const source = this.cluster ? viewSource(this.cluster.reader, { endpoints: config.cluster!, prefix: this.cluster.prefix }) : local!;
      const feed = new FleetFeed(source, { logger: this.logger.child({ component: 'ui' }) });
      this.ui = { feed, streams: new LiveStreams(feed, { metrics: this.metrics, logger: this.logger.child({ component: 'ui' }) }), inventoryChanged: local?.changed };
    }
    this.ctx = {
      logger: this.logger,
      metrics: this.metrics,
      config: () => this.cfg,
      state,
      discovery: this.discovery,
      inventory: this.inventory,
      events: this.events,
      ready: () => this.isReady,
      clusterStatus: () => (this.cluster ? { ...this.cluster.reader.status(), syncError: this.cluster.syncError() } : null),
      metricsText: opts.metricsText,
      notReadyReason: () => this.notReadyReason(),
      namespaces: () => this.inventory.current?.namespaces,
      admin: this.cluster && opts.role !== 'dns' ? this.adminOperations() : undefined,
    };
    this.dns = new DnsServer({
      listen: config.dns,
      handler: this.chain.handler,
      classify: (lname: string) => classifyIn(this.serving, lname),
      mayRecurse: (address: string) => this.chain.mayRecurse(address),
      metrics: this.metrics,
      logger: this.logger,
      queryLogRate: () => this.cfg.queryLog,
      tcp: () => ({ ...this.cfg.tcp, perSource: this.cfg.connectionsPerSource }),
      shared: opts.role === 'dns',
    });
  }

  /**
   * Cluster mode: a daemon whose view neither etcd nor a snapshot filled
   * knows nothing of the cluster; an orchestrator must not route to it.
   */
  private notReadyReason(): string | null {
    const s = this.cluster?.reader.status();
    if (!s || s.state !== 'missing') return null;
    const error = this.cluster!.syncError();
    const noSnapshot = s.revision === 0 && this.cluster!.state === undefined ? 'there is no state directory to keep a snapshot in' : 'no snapshot of an earlier view was found';
    // Both halves: why etcd gives nothing (its error when it answered one), and why nothing stands in for it.
    if (error) return `cluster view missing: the cluster prefix cannot be read from etcd (${error.slice(0, 300)}), and ${noSnapshot}`;
    return `cluster view missing: etcd has not answered since start${noSnapshot.startsWith('no snapshot') ? ' (or the view was dropped after --cluster-max-staleness)' : ''}, and ${noSnapshot}`;
  }

  /** canonport.v1.Admin's operations (drain, undrain, leave), in cluster mode. */
  private adminOperations(): AdminOperations {
    return {
      drain: async (service, { wait, timeoutMs }) => {
        const ports = this.inventory.drain(service);
        if (ports.length === 0 || !wait) return { ports, acked: [], unconfirmed: [], ttlWaitedMs: 0 };
        const started = Date.now();
        const { acked, unconfirmed } = await this.cluster!.drain(randomBytes(8).toString('hex'), [service], timeoutMs);
        // Every view has dropped it; answers handed out before that may sit in caches for their TTL (observed answers carry at most this).
        const ttlMs = Math.min(this.serving.registry.ttl, this.cfg.observedTtl) * 1000;
        await new Promise((r) => setTimeout(r, ttlMs));
        this.logger.info({ service, ports, acked, unconfirmed, waitedMs: Date.now() - started }, 'drain complete: no daemon hands it out, and no answer for it is left in a cache');
        return { ports, acked, unconfirmed, ttlWaitedMs: ttlMs };
      },
      undrain: async (service) => {
        const ports = (this.inventory.current?.listeners ?? []).filter((l) => l.services.includes(service) && l.readiness?.state === 'draining').map((l) => l.port);
        return { ports: this.inventory.undrain(service) ? [...new Set(ports)].sort((a, b) => a - b) : [] };
      },
      leave: async () => {
        const node = this.cluster!.nodeName;
        this.logger.info({ node }, 'leaving the cluster: lease revoked, every host drops this one now');
        await this.cluster!.leave();
        queueMicrotask(() => this.events.emit('leave'));
        return { node };
      },
    };
  }

  /** Loads config and registry, binds every listener, and reports ready. */
  static async start(opts: DaemonOptions): Promise<Daemon> {
    // Env is read once, at start: a reload re-reads the registry file, not the environment.
    const withEnv = { ...opts, env: opts.env ?? configFromEnv() };
    const { config, registry } = await Daemon.load(withEnv);
    const clusterModule = config.cluster === null ? null : await import('../cluster/cluster.js');
    const d = new Daemon(withEnv, config, registry, clusterModule);
    try {
      await d.listen();
    } catch (err) {
      await d.close(0);
      throw err;
    }
    return d;
  }

  /** Flags, env and the registry file into one checked config: the same path at start and at reload. */
  private static async load(opts: DaemonOptions, signal?: AbortSignal): Promise<{ config: Config; registry: Registry }> {
    const { config, registry } = await resolveConfig(opts.flags, opts.env, { resolvConf: opts.resolvConf, signal });
    const tuned = opts.tune ? opts.tune(config) : config;
    checkForwardLoop(tuned);
    checkListeners(tuned);
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
    return (this.chain.stage('cache') as unknown as CacheStage).size;
  }

  private async listen(): Promise<void> {
    const role = this.opts.role ?? 'all';
    // The cluster first, never awaited: etcd being down must not hold the start (answers fall back to the snapshot,
    // or this host's, until the view syncs). Started before the listeners and the warm-up, a restarted daemon takes
    // its previous lease back while that lease still lives, however long the rest of the start takes on a busy host.
    this.cluster?.start();
    const dns = role === 'front' ? this.cfg.dns : await this.dns.start();
    if (role !== 'front') {
      this.logger.debug({ event: 'dns-bound', dns: formatHostPort(dns) }, 'DNS answering; warming up');
      // Ready means warm: the DNS path compiled by answering queries to itself first (dns/warm-up.ts, issue 24),
      // while DNS already answers and before HTTP opens (so /metrics never shows the warm-up's queries).
      // Twice: the first round encodes every answer (the path of a name not asked before), the second finds
      // them all kept (the path of every later query), and starts after the first round's clean-up (sampler
      // asleep, warm-up socket gone): V8 then has seen every transition the first real queries make, and
      // does not deoptimize the path at the first of them (bench/warm-trace.ts, first 6,000 queries after
      // ready: 23 functions optimized and none deoptimized, against 34 and 2 before, with one round).
      const queries = warmUpQueries(this.serving.zones, this.opts.warmUpQueries ?? WARM_UP_QUERIES);
      let ms = 0;
      for (let round = 0; round < WARM_UP_ROUNDS; round++) ms += await this.dns.warmUp(queries);
      // The same configuration again, as a reload would: the warm-up's answers leave the stages' memory (encoded answers).
      this.chain.configure(this.cfg);
      this.logger.debug({ event: 'warm-up', queries: queries.length * WARM_UP_ROUNDS, ms: Math.round(ms) }, 'DNS path warmed up');
    }
    if (role !== 'dns') {
      // Certificates are read (and checked) before anything binds: a bad one stops the start with CP_TLS_INVALID.
      const source = (l: 'grpc' | 'http') => {
        const files = tlsFilesOf(this.cfg, l);
        if (!files) return undefined;
        const t = new TlsSource(l, files, { logger: this.logger, metrics: this.metrics });
        this.tls.push(t);
        t.watch();
        return t;
      };
      const grpcTls = source('grpc');
      const httpTls = source('http');
      const ui = this.ui && uiRoute({ feed: this.ui.feed, streams: this.ui.streams, info: () => this.pageInfo(!!grpcTls), logger: this.logger });
      this.http = await startHttpServer(this.ctx, this.cfg.http, { tls: httpTls, routes: ui ? [ui] : [] });
      // xDS rides on the gRPC port: gRPC clients in every language find services through it
      // (Envoy's protos are parsed on the first xDS message, not here: xds/protos.ts).
      const xds = (server: Parameters<typeof addXdsService>[0]) =>
        addXdsService(server, {
          discovery: this.discovery,
          metrics: this.metrics,
          logger: this.logger.child({ component: 'xds' }),
          // Read at each new stream and subscription: a reload applies from then on.
          limits: () => ({
            maxStreams: this.cfg.xdsMaxStreams,
            maxStreamsPerClient: this.cfg.xdsMaxStreamsPerClient,
            maxNames: this.cfg.xdsMaxNames,
            maxNamesPerClient: this.cfg.xdsMaxNamesPerClient,
            lookupConcurrency: streamLookupConcurrency(this.cfg.maxInflight),
          }),
        });
      this.grpc = await startGrpcServer(this.ctx, this.cfg.grpc, { services: [xds], tls: grpcTls && { source: grpcTls, clientAuth: this.cfg.grpcTlsClientAuth } });
    }
    this.addresses = { dns, grpc: this.grpc?.address ?? this.cfg.grpc, http: this.http?.address ?? this.cfg.http };
    if (this.opts.inventory !== false && role !== 'dns') {
      this.inventory.start();
      // Start-up work done before ready, not in the first second of queries (issue 24): the first scan reads
      // every socket's owner in /proc (~260 ms of the main thread on a host of a few hundred processes, per a
      // --cpu-prof of the first 2 s after ready) and, in cluster mode, hands the publisher this host's listeners.
      // The owners' walk the scan asked for runs in the background (SocketOwners.peek): waited for here too, or
      // it ran in the first second of queries (issue 24: the largest share of that second's slow queries beside
      // ~400 processes, per --cpu-prof).
      // Bounded: a scan held up by slow version probes never holds /readyz longer than FIRST_SCAN_WAIT_MS.
      await firstOf(
        this.inventory.snapshot().then(() => this.inventory.owners.settled()),
        FIRST_SCAN_WAIT_MS,
      );
    }
    this.askedNames.start();
    if (this.opts.watchRegistry !== false && role !== 'dns') this.watchRegistry();
    if (this.cfg.upstreams.length === 0) {
      this.logger.warn({ code: ErrorCodes.NO_UPSTREAM }, 'no upstream resolvers: names outside the served zones get SERVFAIL');
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
   * Listen addresses cannot change without a restart. Certificates are
   * re-read too, each set on its own: a bad one keeps the running one.
   */
  reload(): Promise<{ ok: true } | { ok: false; error: CanonportError }> {
    // One at a time: a large registry is read over many turns of the event loop, and a reload asked for
    // meanwhile must not finish first and then be overwritten by the older one.
    const next = this.reloading.then(() => this.reloadNow());
    this.reloading = next.then(() => undefined);
    return next;
  }

  private async reloadNow(): Promise<{ ok: true } | { ok: false; error: CanonportError }> {
    for (const t of this.tls) t.reload('signal');
    try {
      const loaded = await Daemon.load(this.opts, this.stopping.signal);
      const { registry } = loaded;
      // Restart-only settings (listen addresses, workers, procRoot…) keep their running values, each logged.
      const { config: next, restart } = applyReload(this.cfg, loaded.config);
      // What goes into force (running listen addresses, new allow-lists) must pass what a start would.
      checkListeners(next);
      for (const r of restart) {
        this.logger.warn(
          { code: ErrorCodes.RESTART_NEEDED, setting: r.key, running: r.running, configured: r.configured },
          `${r.name} changed: restart to apply (still running with ${JSON.stringify(r.running)})`,
        );
      }
      this.apply(next, registry);
      this.metrics.reloads.inc({ result: 'ok' });
      this.logger.info({ event: 'reload', zones: this.serving.zones, services: registry.services.size }, 'configuration reloaded');
      this.events.emit('reload', this.serving);
      return { ok: true };
    } catch (err) {
      const error =
        err instanceof CanonportError ? err : new CanonportError(ErrorCodes.CONFIG_INVALID, (err as Error).message, undefined, { cause: err });
      // Abandoned because the daemon is stopping: not a failed reload.
      if (this.closed) return { ok: false, error };
      this.metrics.reloads.inc({ result: 'failed' });
      this.logger.error({ code: error.code, err: error.message }, 'reload failed; still serving the previous configuration');
      return { ok: false, error };
    }
  }

  /** Hands every part its options from a new config: from the next query on, every reloadable setting is in force. */
  private apply(config: Config, registry: Registry): void {
    this.cfg = config;
    this.applyLogLevel();
    this.serving = stateOf(config, registry);
    this.forwarder.configure(forwarderOptions(config));
    this.upstreamAddresses.configure(upstreamAddressOptions(config));
    this.chain.configure(config);
    this.cluster?.setRegistryDigest(registry.digest);
    this.discovery.changed();
  }

  /** Stops accepting, drains in-flight queries (up to graceMs), closes everything. */
  async close(graceMs = 5000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopping.abort();
    this.isReady = false;
    this.events.emit('ready', false);
    this.watcher?.close();
    if (this.reloadTimer) clearTimeout(this.reloadTimer);
    for (const t of this.tls) t.close();
    // Live fleet pages end first: their streams would hold the HTTP server's close for its grace period.
    this.ui?.streams.closeAll();
    this.ui?.feed.close();
    await Promise.all([this.opts.role === 'front' ? undefined : this.dns.close(graceMs), this.grpc?.close(graceMs), this.http?.close()]);
    await this.inventory.stop();
    this.askedNames.close();
    // A stop keeps the lease alive for its TTL (a restart takes it back: other hosts see no change), unless
    // --leave-on-terminate or `canonport leave` (which revokes before this): then this host leaves every view at once.
    await this.cluster?.stop({ revoke: this.cfg.leaveOnTerminate });
    this.chain.close();
    this.upstreamAddresses.close();
    this.discovery.close();
    this.metrics.close();
  }

  /** What the fleet page says about this daemon. */
  private pageInfo(grpcTls: boolean): PageInfo {
    const zones = this.serving.zones.filter((z) => z !== LOCALHOST_ZONE);
    return {
      mode: this.cluster ? 'cluster' : 'local',
      node: this.cluster?.nodeName ?? hostname(),
      zones: zones.length > 0 ? zones : [LOCALHOST_ZONE],
      dns: this.addresses.dns,
      grpc: { ...this.addresses.grpc, tls: grpcTls },
      version: CANONPORT_VERSION,
    };
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
      this.watcher.on('error', (err) => this.logger.warn({ code: ErrorCodes.WATCH_FAILED, err: err.message }, 'registry watch failed; SIGHUP still reloads'));
    } catch (err) {
      this.logger.warn({ code: ErrorCodes.WATCH_FAILED, err: (err as Error).message }, 'cannot watch the registry file; SIGHUP still reloads');
    }
  }
}

/** A snapshot without the sockets `own` names (same port, and the same address or the daemon bound to a wildcard). */
export function withoutOwnSockets(snap: InventorySnapshot, own: readonly HostPort[]): InventorySnapshot {
  if (own.length === 0) return snap;
  // Only in the daemon's own namespace: a container may well use the same ports.
  return { ...snap, listeners: snap.listeners.filter((l) => l.namespace !== undefined || !isOwnSocket(l, own)) };
}

function forwarderOptions(config: Config): ForwarderOptions {
  return { upstreams: config.upstreams, timeoutMs: config.upstreamTimeoutMs, maxInflight: config.maxInflight };
}

/** In-zone addresses from the upstreams are kept like forwarded answers (same TTL caps and stale window). */
function upstreamAddressOptions(config: Config): UpstreamAddressesOptions {
  return { maxEntries: Math.max(1, Math.min(config.cache.maxEntries, 10_000)), maxTtl: config.cache.maxTtl, maxNegativeTtl: config.cache.maxNegativeTtl, staleTtl: config.cache.staleTtl };
}

function stateOf(config: Config, registry: Registry): ServingState {
  return {
    registry,
    zones: Object.freeze([...new Set([LOCALHOST_ZONE, ...config.zones])]),
    cluster: config.cluster === null ? null : { onlyListening: config.onlyListening, observedTtl: config.observedTtl, preferLocal: config.preferLocal },
  };
}

/** The cluster's options from the checked config (etcd access: cluster/access.ts, shared with fleet --cluster). */
function clusterOptions(config: Config, registry: Registry, publish: boolean, logger: Logger): ClusterOptions {
  // The state directory: the primary (the publisher) owns it; a --workers DNS worker only reads the snapshot in it.
  const chosen = chooseStateDir(config.stateDir);
  const stateDir = chosen.dir;
  if (publish) {
    if (stateDir) logger.info({ stateDir }, 'cluster state directory');
    else logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, tried: chosen.tried }, 'no writable state directory: a restart withdraws and re-publishes this host, and a start without etcd knows nothing (set --state-dir)');
  }
  return {
    stateDir,
    requireVerdict: publish,
    writeV1: config.clusterWriteLegacy,
    nodeTakeover: config.nodeTakeover,
    endpoints: config.cluster!,
    node: config.node ?? undefined,
    advertise: config.advertise.length > 0 ? config.advertise : undefined,
    leaseTtlSeconds: config.leaseTtl,
    ...etcdAccess(config),
    caps: {
      maxNodes: config.clusterMaxNodes,
      maxEndpoints: config.clusterMaxEndpoints,
      maxNodeInstances: config.clusterMaxNodeInstances,
      maxNodeAddresses: config.clusterMaxNodeAddresses,
      maxNodeBytes: config.clusterMaxNodeBytes,
    },
    maxStalenessMs: config.clusterMaxStaleness * 1000,
    publish,
    canonportVersion: CANONPORT_VERSION,
    registryDigest: registry.digest,
  };
}

/** How long the start waits for the inventory's first scan before it reports ready anyway. */
export const FIRST_SCAN_WAIT_MS = 2_000;

/** Waits for `p` or `ms`, whichever comes first (the timer cleared either way). */
async function firstOf(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
