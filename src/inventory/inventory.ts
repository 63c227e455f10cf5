import { forEachLimited } from '../concurrency.js';
import { hostname as osHostname } from 'node:os';
import type { ForwardedTo, InventoryListener, InventoryProvider, InventorySnapshot, ListenerNamespace } from './types.js';
import type { ServingState } from '../core/state.js';
import type { Metrics } from '../metrics/metrics.js';
import { silentLogger, type Logger } from '../log.js';
import { claimOf, type PortClaim } from './claim.js';
import { isDeepStrictEqual } from 'node:util';
import { isWildcard, ListenerScanner, protocolOf, type ListeningSocket, type ProcNetResult } from './procnet.js';
import { nameListener } from '../core/naming.js';
import type { HostPort } from '../config/address.js';
import { parsePortList, parsePortRange } from '../registry/host-facts.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { processNames } from './process-names.js';
import { SocketOwners } from './socket-owner.js';
import { probeVersion, type ProbeResult, type ProbeTarget } from './version-probe.js';
import { ReadinessProber, readyRule, type ReadinessTarget } from './readiness.js';
import type { ListenerReadiness } from './types.js';
import { NamespaceWatcher, publishedAddress, type NamespaceMode, type NamespaceScope, type ObservedNamespace } from './namespaces.js';
import { isLoopback, NetworkSet, type Cidr } from '../config/cidr.js';
import { forwardCandidates, ForwarderIndex, markForwarded } from './forwarders.js';

export const DEFAULT_INTERVAL_MS = 15_000;
/**
 * A scan that found nothing changed reuses the last snapshot (quietScan) for
 * at most this long: a full one at least this often. A safety net, as the
 * other once-a-minute ones (the socket files read, every PID looked at,
 * versions probed again): what a full scan would change has its own signal.
 * Was 10 s: with 100 containers of 5 listeners, remaking their 500 every
 * 10 s was half of what they added to an idle daemon's CPU (issue 26).
 */
export const QUIET_MAX_MS = 60_000;
export const DEFAULT_PROBE_TIMEOUT_MS = 500;
/** Probes in flight at once during one refresh. */
const PROBE_CONCURRENCY = 16;
/**
 * How long a port's probed version stands while its sockets do not change.
 * A new version is a new process, which binds new sockets (new inodes): that
 * is asked at the next scan, whatever this says. This bound is for what a
 * socket cannot show: a version changed behind a socket that stayed (systemd
 * socket activation keeps the listener across restarts; hot reloads). 60 s
 * bounds that staleness, and at cluster mode's 1 s scan sends a port one
 * probe a minute instead of one a second.
 */
export const DEFAULT_REPROBE_MS = 60_000;
/** A failed probe is tried again after 2 s, then 4, 8… up to the reprobe interval: a service may bind before it can answer. */
const FAILED_REPROBE_FIRST_MS = 2_000;

export interface HostInventoryOptions {
  /** The daemon's current state; read on every refresh, so reloads apply at the next one. */
  state: () => ServingState;
  metrics: Metrics;
  logger?: Logger | undefined;
  /** Refresh period when started. Default: registry `inventory.intervalMs`, else 15000. */
  intervalMs?: number | undefined;
  /** Deadline of one version probe. Default: registry `inventory.probeTimeoutMs`, else 500. */
  probeTimeoutMs?: number | undefined;
  /** Path probed on every claimed port without a port version. Default: registry `inventory.versionPath`. */
  versionPath?: string | undefined;
  /** False: learn versions from ports only, send no HTTP (default true). */
  probe?: boolean | undefined;
  /** Where `net/tcp` and `net/tcp6` are read (default /proc); tests point it at fixtures. */
  procRoot?: string | undefined;
  /** Host name reported in snapshots (default os.hostname()). */
  hostname?: string | undefined;
  now?: (() => number) | undefined;
  /**
   * Ports never probed: the daemon's own DNS, gRPC and HTTP listeners (a
   * global version path would otherwise send HTTP to its own DNS-over-TCP
   * port). They are still listed.
   */
  skipPorts?: (() => readonly number[]) | undefined;
  /** How long a probed version stands while the port's sockets do not change (default DEFAULT_REPROBE_MS). */
  reprobeMs?: number | undefined;
  /** The probe itself; injectable only to count or fail probes in tests. */
  probeVersion?: ((target: ProbeTarget) => Promise<ProbeResult>) | undefined;
  /**
   * Called with every new snapshot, right after a refresh (cluster mode
   * publishes from it, so a change reaches etcd one scan after it happens,
   * not one scan plus a polling delay). `changed` is false when its
   * listeners are those of the last snapshot (readiness included): most
   * scans, which need no work downstream. A throw is logged, never propagated.
   */
  onSnapshot?: ((snapshot: InventorySnapshot, changed: boolean) => void) | undefined;
  /**
   * Cluster mode: probe the readiness of claimed listeners other hosts can
   * reach (readiness.ts), every `intervalMs`. Off (undefined): no probes,
   * no readiness in snapshots.
   */
  readiness?: { intervalMs: () => number; reachable: (address: string) => boolean } | undefined;
  /**
   * Other network namespaces (issue 26, namespaces.ts): `all` reads every
   * container's and pod's listeners too; those whose namespace owns an
   * address in `containerNetworks` are published at that address (and
   * probed there). Absent: only the daemon's own namespace.
   */
  namespaces?: { mode: () => NamespaceMode; containerNetworks: () => readonly Cidr[]; podDirectory?: string | undefined } | undefined;
  /**
   * The daemon's own DNS, gRPC and HTTP sockets: listed, marked `daemon`,
   * never named after a process or probed (core/naming.ts: they are this
   * host's daemon, not a service).
   */
  ownSockets?: (() => readonly HostPort[]) | undefined;
  /** Cluster mode: this daemon's node name, carried in snapshots (fleet reads what a node publishes). */
  node?: (() => string) | undefined;
  /**
   * Names (issue 22, core/naming.ts): the names clients asked for on a port
   * (the cluster's and this host's), and whether a listener may be named
   * after its process (`--process-names`). Absent: listeners carry only the
   * registry's names (the CLI's `inventory` without a daemon).
   */
  names?: { asked: (port: number) => readonly string[]; processNames: () => boolean } | undefined;
}

/**
 * What listens on this host, named by canonical port. Reads the listening
 * TCP sockets from /proc, names each port (claimOf), learns versions from
 * versioned ports and HTTP probes, and mirrors the result in the
 * `canonport_service_listening` series.
 *
 * Not started, snapshot() refreshes when the last snapshot is older than the
 * interval (the CLI's use). Started, a timer refreshes every interval and
 * snapshot() answers at once with the latest.
 */
export class HostInventory implements InventoryProvider {
  private readonly opts: HostInventoryOptions;
  private readonly logger: Logger;
  private readonly now: () => number;
  private latest: InventorySnapshot | undefined;
  private inflight: Promise<InventorySnapshot> | undefined;
  /** When the refresh in flight began (performance.now()). */
  private inflightAt = 0;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private lastErrorText = '';
  /** instance (instanceKey) → the last probe of it: what was asked (path, address, sockets) and what came back. */
  private readonly probed = new Map<string, ProbeMemo>();
  /** Files that could not be read at the last refresh. */
  errors: { file: string; message: string }[] = [];
  private readonly prober: ReadinessProber | undefined;
  /**
   * service → the socket lives (instance → inode key) it was drained at. A
   * drain lasts for that life of the socket: a restarted instance (new
   * inodes) comes back by itself once ready. Bounded by the services the
   * registry and the host's ports can name (an operator's command adds one).
   */
  private readonly drained = new Map<string, Map<string, string>>();
  /** service → when its drain began (same keys as `drained`). */
  private readonly drainStarted = new Map<string, number>();
  private reemitQueued = false;
  /** (kind, outcome) → the readiness probe counter's child (probeCounter()). */
  private readonly probeCounters = new Map<string, { inc(): void }>();
  /** instance (instanceKey: its port and namespace; TCP and UDP sockets together) → the key of its sockets' life (their inodes) at the last scan. */
  private lives = new Map<string, string>();
  /** Containers and pods: every other network namespace (absent: only the daemon's own). */
  private readonly namespaces: NamespaceWatcher | undefined;
  /** The last scan's listeners before readiness and names (re-decorated when a verdict or a process name comes). */
  private base: InventoryListener[] = [];
  /** socketKey (`<port>/<protocol>`, and `/<namespace>` for a container's) → the inodes of its sockets at the last scan (process names). */
  private inodes = new Map<string, string[]>();
  /** UDP instance (instanceKey) → the life of its sockets and when that life was first seen (a UDP listener is ready since then). */
  private udpSeen = new Map<string, { life: string; sinceMs: number }>();
  /** Which process holds a socket (socket-owner.ts), for process names. */
  readonly owners: SocketOwners;
  /** Reads /proc/net/{tcp,udp}{,6} only when the socket counters say something may have changed (procnet.ts). */
  private readonly scanner: ListenerScanner;
  /** docker-proxy processes behind host ports that double a published container listener (forwarders.ts). */
  private readonly forwarders: ForwarderIndex;

  constructor(opts: HostInventoryOptions) {
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
    this.now = opts.now ?? Date.now;
    this.owners = new SocketOwners({ procRoot: opts.procRoot, now: this.now });
    // A walk placed a socket's process: the snapshot goes out again with its name.
    this.owners.onLearned = () => this.reemit();
    this.scanner = new ListenerScanner(opts.procRoot ?? '/proc', { now: this.now });
    this.forwarders = new ForwarderIndex(opts.procRoot ?? '/proc');
    if (opts.readiness) {
      this.prober = new ReadinessProber({
        intervalMs: opts.readiness.intervalMs,
        timeoutMs: () => this.opts.probeTimeoutMs ?? this.opts.state().registry.inventory.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS,
        onVerdict: () => this.reemit(),
        logger: this.logger.child({ component: 'readiness' }),
        now: this.now,
        count: (kind, outcome) => this.probeCounter(kind, outcome).inc(),
        // A server restarted on its port leaves the socket counters as they were (one listener closed, one opened):
        // its probe connection going away says to walk the tables at the next scan (its namespace's, for a
        // container's), or a warming instance would inherit the old one's verdict.
        onConnectionLost: (_port, key) => this.invalidate(key),
        // Rounds ride the scan's timer while it runs (issue 24: one wake-up a second does both in cluster mode).
        ticker: () => (this.started ? this.intervalMs() : undefined),
      });
    }
    if (opts.namespaces) {
      const ns = opts.namespaces;
      this.namespaces = new NamespaceWatcher({
        procRoot: opts.procRoot ?? '/proc',
        mode: ns.mode,
        podDirectory: ns.podDirectory,
        logger: this.logger.child({ component: 'namespaces' }),
        now: this.now,
        countRead: (trigger) => this.opts.metrics.namespaceReads.inc({ trigger }),
        // A container that just started moved its counters: scan now rather than at the next interval.
        onHint: () => {
          if (this.started) void this.refresh();
        },
      });
    }
  }

  /**
   * The probe counter's child for (kind, outcome), looked up once: a probe
   * a second per listener then costs no label hashing. Bounded: 4 kinds ×
   * the outcomes (HTTP status codes, a few words).
   */
  private probeCounter(kind: string, outcome: string): { inc(): void } {
    const key = `${kind} ${outcome}`;
    let c = this.probeCounters.get(key);
    if (!c) this.probeCounters.set(key, (c = this.opts.metrics.readinessProbes.labels(kind, outcome)));
    return c;
  }

  /**
   * Takes this host's listeners claimed for `service` out of every answer
   * (`canonport drain`) until their sockets are replaced (a restart) or
   * `undrain`. Returns the ports drained (empty: nothing of it listens here).
   */
  drain(service: string): number[] {
    const lives = new Map<string, string>();
    const ports = new Set<number>();
    for (const l of this.latest?.listeners ?? []) {
      if (!l.services.includes(service)) continue;
      const key = instanceKey(l);
      lives.set(key, this.lives.get(key) ?? '');
      ports.add(l.port);
    }
    if (lives.size === 0) return [];
    this.drained.set(service, lives);
    if (!this.drainStarted.has(service)) this.drainStarted.set(service, this.now());
    // At once, not on a later tick: the caller's drain record must go out in the same write as these instances.
    this.emitNow();
    return [...ports].sort((a, b) => a - b);
  }

  /** Ends a drain; returns whether one was in force. */
  undrain(service: string): boolean {
    const had = this.drained.delete(service);
    this.drainStarted.delete(service);
    if (had) this.reemit();
    return had;
  }

  /**
   * The next scan reads instance `key`'s sockets whatever the counters say:
   * the daemon's own namespace's (a host listener's key is its port), or
   * its container's (`<port>/<label>`).
   */
  private invalidate(key: string): void {
    const slash = key.indexOf('/');
    if (slash < 0) this.scanner.invalidate();
    else this.namespaces?.invalidate(key.slice(slash + 1));
  }

  /** The latest snapshot, if any (no refresh). */
  get current(): InventorySnapshot | undefined {
    return this.latest;
  }

  /** Refreshes now, then every interval. The timer never keeps the process alive. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.tickAt = performance.now();
    this.schedule();
    void this.refresh();
  }

  /** Stops the timer and waits for a refresh in progress. */
  async stop(): Promise<void> {
    this.started = false;
    this.prober?.close();
    this.namespaces?.close();
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inflight?.catch(() => undefined);
  }

  async snapshot(): Promise<InventorySnapshot> {
    if (this.latest && (this.started || this.now() - this.latest.collectedAtMs < this.intervalMs())) return this.latest;
    return this.refresh();
  }

  /** Reads /proc, probes, updates the metrics. Concurrent calls share one refresh. Never rejects. */
  refresh(): Promise<InventorySnapshot> {
    if (this.inflight) this.logger.debug({ sinceMs: Math.round(performance.now() - this.inflightAt) }, 'inventory scan asked while one runs: joined');
    else this.inflightAt = performance.now();
    this.inflight ??= this.collect()
      .catch((err: unknown) => {
        // collect() handles every expected failure; this is a bug, kept from killing the timer.
        this.logger.error({ err }, 'inventory refresh failed');
        return this.latest ?? { host: this.hostname(), collectedAtMs: this.now(), listeners: [] };
      })
      .finally(() => {
        this.inflight = undefined;
      });
    return this.inflight;
  }

  /** When the scan timer last fired (performance.now()). */
  private tickAt = 0;

  /**
   * The next tick, one interval after the last one began, whatever its scan
   * took: the readiness rounds ride these ticks (ReadinessProber.onTick), and
   * a round may not come later than its interval. A tick that finds the
   * last scan still running runs the round and joins that scan (refresh()).
   */
  private schedule(): void {
    if (!this.started) return;
    const wait = Math.max(0, this.tickAt + this.intervalMs() - performance.now());
    this.timer = setTimeout(() => {
      this.tickAt = performance.now();
      this.schedule();
      // The round first: its replies come back while the scan reads, in the same wake-up.
      this.prober?.onTick();
      void this.refresh();
    }, wait);
    this.timer.unref();
  }

  private intervalMs(): number {
    return this.opts.intervalMs ?? this.opts.state().registry.inventory.intervalMs ?? DEFAULT_INTERVAL_MS;
  }

  private hostname(): string {
    return this.opts.hostname ?? osHostname();
  }

  private async collect(): Promise<InventorySnapshot> {
    const collectedAtMs = this.now();
    // A drain waits for the service's restart (new sockets end it), which the counters may not show: full reads of the
    // drained instances' namespaces meanwhile.
    for (const lives of this.drained.values()) for (const key of lives.keys()) this.invalidate(key);
    const read = await this.scanner.read();
    const errors = read.errors;
    this.errors = errors;
    const errorText = errors.map((e) => `${e.file}: ${e.message}`).join('; ');
    if (errorText !== this.lastErrorText) {
      // Once per change, not every interval: a host without /proc would flood the log.
      if (errorText) this.logger.warn({ errors }, 'cannot read listening sockets');
      else this.logger.info('listening sockets readable again');
      this.lastErrorText = errorText;
    }
    const { registry } = this.opts.state();
    // The host's sockets, then every other namespace's (containers, pods), each an instance of its own.
    const observed = await this.namespaces?.scan();
    if (observed) this.opts.metrics.namespacesObserved.set(observed.scope.count);
    const quiet = this.quietScan(read, observed, registry, collectedAtMs);
    if (quiet) return quiet;
    this.fullScans++;
    const all = await this.markForwarders(
      await this.withoutClientSockets<InstanceSocket>(
        [...read.sockets, ...(observed ? this.namespaceSockets(observed.namespaces, observed.changed) : [])],
        (port) => registry.ownersOf(port).length > 0,
      ),
    );
    // Probes (versions, readiness) speak TCP: UDP listeners are named and listed, and ready while they listen.
    const byInstance = new Map<string, InstanceSocket[]>();
    for (const s of all) {
      if (protocolOf(s.family) !== 'tcp') continue;
      const key = instanceKey(s);
      const list = byInstance.get(key);
      if (list) list.push(s);
      else byInstance.set(key, [s]);
    }

    const globalPath = this.opts.versionPath ?? registry.inventory.versionPath;
    const timeoutMs = this.opts.probeTimeoutMs ?? registry.inventory.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
    const probing = this.opts.probe !== false;
    const claims = new Map<number, PortClaim>();
    const probes: { key: string; memo: string; target: ProbeTarget }[] = [];
    const skip = new Set(this.opts.skipPorts?.() ?? []);
    /** Instances asked for a version this scan (or answered from a recent probe). */
    const eligible = new Set<string>();
    for (const s of all) if (!claims.has(s.port)) claims.set(s.port, claimOf(s.port, registry));
    for (const [key, socks] of byInstance) {
      const port = socks[0]!.port;
      const claim = claims.get(port)!;
      // The daemon's own ports are skipped in its own namespace only: a container may use them.
      if (!probing || claim.services.length === 0 || (skip.has(port) && !socks[0]!.namespace)) continue;
      // A service's own path is asked even when the port names a version (it may say "2.3.1" where the port says "2");
      // the global path only fills in what the port does not tell.
      const path = claim.versionPath ?? (claim.portVersion === '' ? globalPath : undefined);
      const address = dialAddress(socks);
      if (path === undefined || address === undefined) continue;
      eligible.add(key);
      const target = { address, port, path, timeoutMs };
      // Asked again only when something it depends on changed, or the last answer is old enough (see DEFAULT_REPROBE_MS).
      const memo = `${path} ${target.address} ${socks.flatMap((s) => s.inodes).sort().join(',')}`;
      if (!this.probeDue(key, memo, collectedAtMs)) continue;
      probes.push({ key, memo, target });
    }
    // Gone, or no longer asked (a reload removed its path): forget what it said.
    for (const key of this.probed.keys()) if (!eligible.has(key)) this.probed.delete(key);
    let nextProbeAtMs = Number.POSITIVE_INFINITY;

    const probe = this.opts.probeVersion ?? probeVersion;
    await forEachLimited(probes, PROBE_CONCURRENCY, async ({ key, memo, target }) => {
      const r = await probe(target);
      this.opts.metrics.inventoryProbes.inc({ result: r.outcome });
      const before = this.probed.get(key);
      const failures = r.outcome === 'ok' ? 0 : before !== undefined && before.key === memo ? before.failures + 1 : 1;
      this.probed.set(key, { key: memo, version: r.outcome === 'ok' ? r.version : '', atMs: collectedAtMs, failures });
      if (r.outcome !== 'ok') this.logger.debug({ port: target.port, address: target.address, path: target.path, outcome: r.outcome, reason: r.reason }, 'version probe failed');
    });
    const probed = new Map<string, string>();
    for (const [key, memo] of this.probed) if (memo.version !== '') probed.set(key, memo.version);
    for (const memo of this.probed.values()) nextProbeAtMs = Math.min(nextProbeAtMs, memo.atMs + this.reprobeWait(memo.failures));

    const tcpLives = new Map<string, string>();
    for (const [key, socks] of byInstance) tcpLives.set(key, lifeKey(socks.flatMap((s) => s.inodes)));
    // A drain lasts for the life of every socket of the instance (TCP and UDP).
    const lives = new Map<string, string>();
    const liveInodes = new Map<string, string[]>();
    const udpInodes = new Map<string, string[]>();
    const inodes = new Map<string, string[]>();
    const add = (m: Map<string, string[]>, key: string, list: readonly string[]) => {
      const at = m.get(key);
      if (at) at.push(...list);
      else m.set(key, [...list]);
    };
    for (const s of all) {
      add(inodes, socketKey(s), s.inodes);
      add(liveInodes, instanceKey(s), s.inodes);
      if (protocolOf(s.family) === 'udp') add(udpInodes, instanceKey(s), s.inodes);
    }
    for (const [key, list] of liveInodes) lives.set(key, lifeKey(list));
    this.lives = lives;
    this.inodes = inodes;
    this.owners.retain(new Set(all.flatMap((s) => s.inodes)));
    const udpSeen = new Map<string, { life: string; sinceMs: number }>();
    for (const [key, list] of udpInodes) {
      const life = lifeKey(list);
      const before = this.udpSeen.get(key);
      udpSeen.set(key, before && before.life === life ? before : { life, sinceMs: collectedAtMs });
    }
    this.udpSeen = udpSeen;
    if (this.prober) {
      const targets: ReadinessTarget[] = [];
      const reachable = this.opts.readiness!.reachable;
      for (const [key, socks] of byInstance) {
        const first = socks[0]!;
        const claim = claims.get(first.port)!;
        if (claim.services.length === 0) continue;
        // A container's listener is probed at the address other hosts are handed, from the host; the host's own as before.
        if (first.namespace ? first.namespace.published === undefined : skip.has(first.port) || first.forwardedTo || !socks.some((s) => reachable(s.address))) continue;
        targets.push({ key, port: first.port, address: dialAddress(socks)!, life: tcpLives.get(key)!, rule: readyRule(claim.ready) });
      }
      this.prober.reconcile(targets);
    }
    const listeners: InventoryListener[] = all.map((s) => {
      const claim = claims.get(s.port)!;
      // An HTTP probe's version is the TCP listener's; a versioned port tells both.
      const http = protocolOf(s.family) === 'tcp' ? probed.get(instanceKey(s)) : undefined;
      const [version, versionSource] = http ? [http, 'http' as const] : claim.portVersion ? [claim.portVersion, 'port' as const] : ['', '' as const];
      const l: InventoryListener = { port: s.port, address: s.address, family: s.family, services: [...claim.services], version, versionSource, scheme: claim.scheme };
      return s.namespace ? { ...l, namespace: s.namespace } : s.forwardedTo ? { ...l, forwardedTo: s.forwardedTo } : l;
    });
    this.base = listeners;
    this.basePorts = [...new Set(listeners.map((l) => l.port))];
    this.claims = claims;
    const node = this.opts.node?.();
    const snap: InventorySnapshot = {
      host: this.hostname(),
      collectedAtMs,
      listeners: this.decorate(listeners),
      ...(observed ? { namespaces: observed.scope } : {}),
      ...(node ? { node } : {}),
    };
    // Nothing changed since the last scan (the usual case, every second in cluster mode): no metrics
    // to redo, and the hook told so (issue 24: a scan that finds nothing new costs next to nothing).
    const changed =
      this.latest === undefined || !isDeepStrictEqual(this.latest.listeners, snap.listeners) || !isDeepStrictEqual(this.latest.namespaces, snap.namespaces);
    if (changed) this.publish(snap);
    this.latest = snap;
    this.lastInputs = { read, observed: observed !== undefined, registry, key: this.inputsKey(), sinceMs: collectedAtMs, nextProbeAtMs: eligible.size > this.probed.size ? collectedAtMs : nextProbeAtMs };
    this.notify(snap, changed);
    return snap;
  }

  /** Hands a snapshot to the onSnapshot hook; a hook that throws is logged, never the scan's failure. */
  private notify(snap: InventorySnapshot, changed: boolean): void {
    try {
      this.opts.onSnapshot?.(snap, changed);
    } catch (err) {
      this.logger.error({ err }, 'inventory onSnapshot hook threw');
    }
  }

  /** Scans that remade the snapshot (not quietScan()'s): tests and diagnostics. */
  fullScans = 0;
  /** The ports of `base`, each once. */
  private basePorts: number[] = [];
  /** What the last full scan was made from (quietScan()). */
  private lastInputs: { read: ProcNetResult; observed: boolean; registry: unknown; key: string; sinceMs: number; nextProbeAtMs: number } | undefined;

  /**
   * The last snapshot again, with this scan's time, when nothing it was made
   * from changed: the same socket list from the host's scanner (it returns
   * the very object while the counters stand still), no namespace changed,
   * the same registry, container networks, skipped and own ports, node,
   * names and process-name setting, no version probe due, no drain in
   * force. Verdicts, drains and process names learned between scans go out
   * through reemit() meanwhile. Undefined when a full scan is needed, and at
   * least every QUIET_MAX_MS. (issue 24: with 100 containers of 5
   * listeners, remaking the snapshot was most of an idle daemon's CPU.)
   */
  private quietScan(read: ProcNetResult, observed: { changed: boolean; scope: NamespaceScope } | undefined, registry: unknown, nowMs: number): InventorySnapshot | undefined {
    const last = this.lastInputs;
    const latest = this.latest;
    if (!last || !latest || last.read !== read || last.registry !== registry || last.observed !== (observed !== undefined)) return undefined;
    if (observed && (observed.changed || !isDeepStrictEqual(observed.scope, latest.namespaces))) return undefined;
    if (this.drained.size > 0 || nowMs >= last.nextProbeAtMs || nowMs - last.sinceMs >= QUIET_MAX_MS) return undefined;
    if (this.portRange && nowMs - this.portRange.atMs >= DEFAULT_REPROBE_MS) return undefined;
    if (this.inputsKey() !== last.key) return undefined;
    const snap: InventorySnapshot = { ...latest, collectedAtMs: nowMs };
    this.latest = snap;
    this.notify(snap, false);
    return snap;
  }

  /** The scan's other inputs, as text: container networks, skipped and own ports, node, names asked for the listening ports, the process-name setting. */
  private inputsKey(): string {
    const networks = this.opts.namespaces?.containerNetworks() ?? [];
    const own = this.opts.ownSockets?.() ?? [];
    const names = this.opts.names;
    const asked = names ? this.basePorts.map((p) => names.asked(p).join(',')).join(';') : '';
    return [networks.map((c) => `${c.address}/${c.prefix}`).join(','), (this.opts.skipPorts?.() ?? []).join(','), own.map((h) => `${h.host}:${h.port}`).join(','), this.opts.node?.() ?? '', names?.processNames() ?? '', asked].join(' ');
  }

  /** The last namespaceSockets() and the container networks it was made for. */
  private nsSockets: { networks: readonly Cidr[]; sockets: InstanceSocket[] } | undefined;

  /**
   * Every other namespace's sockets, each with its namespace (and the
   * address it is published at, if any). The last list again when no
   * namespace changed and neither did the networks (issue 24: with 100
   * containers, remaking it was most of an idle scan's work).
   */
  private namespaceSockets(namespaces: readonly ObservedNamespace[], changed: boolean): InstanceSocket[] {
    const cidrs = this.opts.namespaces!.containerNetworks();
    if (!changed && this.nsSockets?.networks === cidrs) return this.nsSockets.sockets;
    const networks = new NetworkSet(cidrs);
    const out: InstanceSocket[] = [];
    for (const ns of namespaces) {
      const base = { label: ns.label, addresses: [...ns.addresses], ...(ns.container ? { container: { ...ns.container } } : {}) };
      for (const s of ns.sockets) {
        // Loopback-only listeners of a container serve that container alone.
        if (isLoopback(s.address)) continue;
        const published = publishedAddress(ns, s.address, networks);
        out.push({ ...s, namespace: published ? { ...base, published } : base });
      }
    }
    this.nsSockets = { networks: cidrs, sockets: out };
    return out;
  }

  /**
   * Marks the host's sockets that are a docker-proxy forwarding the same
   * port and protocol to a container listener published at its own
   * address (forwarders.ts): the container's address wins, the host's port
   * is not published again. The processes are looked at only when such a
   * double appears or changes.
   */
  private async markForwarders(sockets: InstanceSocket[]): Promise<InstanceSocket[]> {
    const forwarders = await this.forwarders.lookup(forwardCandidates(sockets));
    return forwarders.length === 0 ? sockets : markForwarded(sockets, forwarders);
  }

  /** port → its claim at the last scan. */
  private claims = new Map<number, PortClaim>();
  /** The ephemeral port range and the ports reserved from it, as last read. */
  private portRange: { atMs: number; range: [number, number] | null; reserved: ReadonlySet<number> } | undefined;

  /**
   * UDP sockets that are a client's, not a service's: an unconnected UDP
   * socket a program sends from (sendto) without binding gets a port the
   * kernel picks in the ephemeral range (ip_local_port_range, minus
   * ip_local_reserved_ports). Such a port is not a listener unless the
   * registry lists it; a service bound on purpose in that range (names
   * v–z land there, as `check` warns) is seen once its port is reserved.
   */
  private async withoutClientSockets<S extends ListeningSocket>(sockets: S[], listed: (port: number) => boolean): Promise<S[]> {
    if (!sockets.some((s) => protocolOf(s.family) === 'udp')) return sockets;
    const nowMs = this.now();
    if (!this.portRange || nowMs - this.portRange.atMs >= DEFAULT_REPROBE_MS) {
      // Read once a minute: an administrator changing the range is rare, and a scan a second need not reread it.
      const root = this.opts.procRoot ?? '/proc';
      const read = (f: string) => readFile(join(root, 'sys', 'net', 'ipv4', f), 'latin1').catch(() => null);
      const [rangeText, reservedText] = await Promise.all([read('ip_local_port_range'), read('ip_local_reserved_ports')]);
      this.portRange = { atMs: nowMs, range: rangeText === null ? null : parsePortRange(rangeText), reserved: reservedText === null ? new Set() : parsePortList(reservedText) };
    }
    const { range, reserved } = this.portRange;
    if (!range) return sockets;
    return sockets.filter((s) => protocolOf(s.family) !== 'udp' || s.port < range[0] || s.port > range[1] || reserved.has(s.port) || listed(s.port));
  }

  /** Listeners with their readiness and names, and the daemon's own sockets marked. */
  private decorate(listeners: readonly InventoryListener[]): InventoryListener[] {
    const own = this.opts.ownSockets?.() ?? [];
    return this.withNames(this.withReadiness(listeners.map((l) => (own.length > 0 && !l.namespace && isOwnSocket(l, own) ? { ...l, daemon: true as const } : l))));
  }

  /**
   * Each claimed listener's names (core/naming.ts): the registry's when it
   * lists the port; else the names clients asked for, and its process's
   * own (socket-owner.ts, looked up once per new socket, in the background:
   * a name found later goes out with a re-emitted snapshot). Unclaimed ports
   * and the daemon's own sockets get none.
   */
  private withNames(listeners: InventoryListener[]): InventoryListener[] {
    const { registry } = this.opts.state();
    const names = this.opts.names;
    const byKey = new Map<string, InventoryListener['names']>();
    const namesOf = (l: InventoryListener): InventoryListener['names'] => {
      const claim = this.claims.get(l.port);
      if (!claim || l.services.length === 0 || l.daemon) return undefined;
      const key = socketKey(l);
      if (byKey.has(key)) return byKey.get(key);
      let process: string[] = [];
      if (!claim.byRegistry && names?.processNames()) {
        const owners = this.owners.peek(this.inodes.get(key) ?? []);
        const owner = [...owners.values()].find((o) => o);
        if (owner) process = processNames(owner, l.port, registry);
      }
      const out = nameListener({ registry: claim.byRegistry ? l.services : [], query: claim.byRegistry ? [] : (names?.asked(l.port) ?? []), process });
      byKey.set(key, out);
      return out;
    };
    return listeners.map((l) => {
      const n = namesOf(l);
      return n === undefined ? l : { ...l, names: n };
    });
  }

  /** Listeners with their readiness: the prober's verdict, or draining; drains of replaced sockets end here. */
  private withReadiness(listeners: readonly InventoryListener[]): InventoryListener[] {
    if (!this.prober) return [...listeners];
    for (const [service, lives] of this.drained) {
      for (const [key, life] of lives) if (this.lives.get(key) !== life) lives.delete(key);
      if (lives.size === 0) {
        this.drained.delete(service);
        this.drainStarted.delete(service);
        this.logger.info({ service }, 'drain ended: the drained instance was replaced');
      }
    }
    const counts = { ready: 0, 'not-ready': 0, draining: 0, unknown: 0 };
    const seen = new Set<string>();
    const out = listeners.map((l) => {
      const key = instanceKey(l);
      // A UDP listener is ready while it listens: no probe can ask it without speaking its protocol.
      const udp = protocolOf(l.family) === 'udp' ? this.udpSeen.get(key) : undefined;
      const verdict = udp ? { state: 'ready' as const, by: 'udp' as const, sinceMs: udp.sinceMs, detail: undefined } : this.prober!.verdict(key);
      let readiness: ListenerReadiness | undefined = verdict && { state: verdict.state, by: verdict.by, sinceMs: verdict.sinceMs, detail: verdict.detail };
      const drainedBy = [...this.drained].find(([, lives]) => lives.has(key));
      if (drainedBy) readiness = { state: 'draining', by: 'admin', sinceMs: this.drainSince(drainedBy[0]), detail: `canonport drain ${drainedBy[0]}` };
      if (!seen.has(key) && l.services.length > 0) {
        seen.add(key);
        counts[readiness?.state ?? 'unknown']++;
      }
      return readiness ? { ...l, readiness } : { ...l, readiness: undefined };
    });
    for (const [state, n] of Object.entries(counts)) this.opts.metrics.readinessListeners.set({ state }, n);
    return out;
  }

  private drainSince(service: string): number {
    return this.drainStarted.get(service) ?? this.now();
  }

  /** A verdict or a drain changed: the last snapshot goes out again with it, without a new scan (once per tick). */
  private reemit(): void {
    if (this.reemitQueued) return;
    this.reemitQueued = true;
    queueMicrotask(() => {
      this.reemitQueued = false;
      this.emitNow();
    });
  }

  private emitNow(): void {
    const last = this.latest;
    if (!last) return;
    const snap: InventorySnapshot = { ...last, listeners: this.decorate(this.base) };
    this.latest = snap;
    // A verdict or a drain: a change by definition.
    this.notify(snap, true);
  }

  /** True when instance `key` should be asked now: never asked, asked about other sockets or another path, or the answer is old. */
  private probeDue(instance: string, key: string, nowMs: number): boolean {
    const memo = this.probed.get(instance);
    if (!memo || memo.key !== key) return true;
    return nowMs - memo.atMs >= this.reprobeWait(memo.failures);
  }

  /** How long a version answer is kept before asking again (sooner after failures). */
  private reprobeWait(failures: number): number {
    const reprobeMs = this.opts.reprobeMs ?? DEFAULT_REPROBE_MS;
    return failures === 0 ? reprobeMs : Math.min(reprobeMs, FAILED_REPROBE_FIRST_MS * 2 ** (failures - 1));
  }

  /** One series per (service, port, version) listening now; stale ones go with the reset. */
  private publish(snap: InventorySnapshot): void {
    const gauge = this.opts.metrics.serviceListening;
    // reset and set run in one synchronous stretch, so a scrape never sees the gap.
    gauge.reset();
    for (const l of snap.listeners) {
      for (const service of l.services) gauge.set({ service, port: String(l.port), version: l.version }, 1);
    }
  }
}

/** A socket of this host's namespace, or of another one (a container's, a pod's). */
type InstanceSocket = ListeningSocket & { namespace?: ListenerNamespace | undefined; forwardedTo?: ForwardedTo | undefined };

/**
 * Which instance a socket or listener belongs to: its port in the host's
 * namespace (`12082`), its port and namespace label elsewhere
 * (`12082/3f4e5a6b7c8d`). Probes, socket lives and drains are per instance.
 */
export function instanceKey(l: { port: number; namespace?: { label: string } | undefined }): string {
  return l.namespace ? `${l.port}/${l.namespace.label}` : String(l.port);
}

/**
 * One instance's sockets of one protocol (`12082/tcp`, `15761/udp/3f4e5a6b7c8d`):
 * names are per port, protocol and namespace, as the cluster's instance keys are.
 */
export function socketKey(l: Pick<ListeningSocket, 'port' | 'family'> & { namespace?: { label: string } | undefined }): string {
  const key = `${l.port}/${protocolOf(l.family)}`;
  return l.namespace ? `${key}/${l.namespace.label}` : key;
}

/** Where to dial an instance from the host: a container's published address, else probeAddress; undefined for a container listener not published. */
function dialAddress(socks: readonly InstanceSocket[]): string | undefined {
  const ns = socks[0]!.namespace;
  return ns ? ns.published : probeAddress(socks);
}

/** Whether a listener is one of `own` (same port, and the same address or a wildcard bind of the daemon's). */
export function isOwnSocket(l: Pick<InventoryListener, 'port' | 'address'>, own: readonly HostPort[]): boolean {
  return own.some((o) => o.port === l.port && (o.host === l.address || o.host === '0.0.0.0' || o.host === '::' || l.address === `::ffff:${o.host}`));
}

/** The key of one life of a listener's sockets. */
function lifeKey(inodes: readonly string[]): string {
  return [...inodes].sort().join(',');
}

/** The last probe of a port. */
interface ProbeMemo {
  /** Path, address and socket inodes it was asked with: any change asks again. */
  key: string;
  /** "" when it failed. */
  version: string;
  atMs: number;
  /** Failures in a row with this key (0 after an answer). */
  failures: number;
}

/**
 * Where to send a probe for a port bound on these addresses: loopback
 * when the port is bound to a wildcard or loopback (no traffic leaves the
 * host), else the first concrete address. IPv4-mapped addresses are dialled as IPv4.
 */
export function probeAddress(sockets: readonly Pick<ListeningSocket, 'address'>[]): string {
  const addrs = sockets.map((s) => s.address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1'));
  if (addrs.some((a) => a === '0.0.0.0' || a.startsWith('127.'))) return addrs.find((a) => a.startsWith('127.')) ?? '127.0.0.1';
  if (addrs.some((a) => a === '::' || a === '::1')) return '::1';
  return addrs.find((a) => !isWildcard(a)) ?? '127.0.0.1';
}

