import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, retry } from 'cockatiel';
import etcd3 from 'etcd3';
import type { Etcd3 as Etcd3Client, IOptions, IWatchResponse } from 'etcd3';
import { parseEtcdUrl, type EtcdEndpoint } from '../config/etcd-url.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import type { InventorySnapshot } from '../inventory/types.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { Backoff, sleep } from './backoff.js';
import { ackKey, DEFAULT_PREFIX, encodeAck, isNodeName, isValidPrefix, prefixEnd, watchPrefix } from './keys.js';
import { Publisher, type PublisherStatus } from './publisher.js';
import { StateDir } from './state-dir.js';
import { ClusterView, decodeKeyValue, type ClusterViewReader, type DecodedKeyValue, type ViewCaps, type WatchChange } from './view.js';
import { etcdReason } from './etcd-errors.js';

/**
 * Cluster mode's connection to etcd: one client, one lease (the
 * publisher), one prefix watch (the view). start() returns at once and
 * everything after it runs in the background with retries, so nothing here
 * delays the daemon's start or any answer.
 */

const { Etcd3 } = etcd3;

export const DEFAULT_LEASE_TTL_SECONDS = 10;
/**
 * The inventory scan interval proposed for cluster mode (HostInventory's
 * intervalMs; 15 s otherwise): a change reaches other hosts within one scan
 * plus a write and a watch delivery, so 1 s keeps the p99 ≤ 2 s
 * (measured through real daemons: p99 1.02 s, `npm run bench -- --only
 * cluster`). A scan reads /proc/net/tcp only up to the first connection
 * (0.6 ms with 11,500 sockets, 79 ms for the whole file) and probes a
 * port's version only when its sockets change or every 60 s.
 */
export const CLUSTER_SCAN_INTERVAL_MS = 1_000;
/** Deadline of one unary etcd call: a black-holed endpoint must not hang the loops. */
const CALL_DEADLINE_MS = 5_000;
/**
 * Keys per page when listing the prefix, at most. Values of up to
 * MAX_VALUE_BYTES make a page of ~64 MiB at worst, the client's message
 * limit; a page that comes back larger (values over the size a value may
 * have, written to deny the list: issue 21, finding 3) is asked again at
 * half the keys, down to one, and a single value too large for a message
 * is skipped, counted as too large. Each success doubles the page again.
 */
const LIST_PAGE = 1_000;
/** The client's message limit (grpc.max_receive_message_length). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
/**
 * A full list asked for by the view (entries refused by a cap were lost
 * for want of room to wait, and room has appeared: admission.ts) comes at
 * most this often: 30 s, doubling up to 10 min while such lists keep
 * being wanted, so a writer who makes room again and again cannot turn
 * every daemon into a lister of the whole prefix.
 */
const RELIST_MIN_MS = 30_000;
const RELIST_MAX_MS = 600_000;

/** A response larger than the client's message limit (grpc-js: RESOURCE_EXHAUSTED "Received message larger than max"). */
export function isTooLarge(err: unknown): boolean {
  return /larger than max/i.test(String((err as Error)?.message ?? err));
}

export interface ClusterTlsOptions {
  /** PEM file of the CA that signed etcd's certificate (else the system roots). */
  caFile?: string | undefined;
  /** PEM files of this node's client certificate and key, for etcd's --client-cert-auth. */
  certFile?: string | undefined;
  keyFile?: string | undefined;
}

export interface ClusterOptions {
  /** `etcd://HOST:PORT[,HOST:PORT…]` (IPv6 hosts in brackets). */
  endpoints: string;
  /** This host's name in the cluster (a DNS label); default: the hostname made one. */
  node?: string | undefined;
  /** Where other hosts reach this host; detected when empty (the source address toward the first endpoint). */
  advertise?: string[] | undefined;
  leaseTtlSeconds?: number | undefined;
  /** Key prefix (default /canonport); see keys.ts for the layout under it. */
  prefix?: string | undefined;
  /** TLS toward etcd; given (even empty) means https. */
  tls?: ClusterTlsOptions | undefined;
  auth?: { username: string; password: string } | undefined;
  caps?: Partial<ViewCaps> | undefined;
  /** Drop a view that has been stale this long (ms); undefined or 0: serve the last view for ever. */
  maxStalenessMs?: number | undefined;
  /**
   * False: read the view only, publish nothing (a `--workers` DNS worker,
   * whose primary publishes for the host; `canonport fleet --cluster`).
   */
  publish?: boolean | undefined;
  /** Published in the node record. */
  canonportVersion?: string | undefined;
  registryDigest?: string | undefined;
  /**
   * The state directory (state-dir.ts): the lease is remembered there (a
   * restart takes it back) and the view snapshotted (served, stale, when
   * etcd is away at start). Undefined or null: neither. A reader
   * (`publish: false`, a --workers DNS worker) only reads the snapshot.
   */
  stateDir?: string | null | undefined;
  /** Publish a listener only after its first readiness verdict (the daemon, which probes). */
  requireVerdict?: boolean | undefined;
  /** Also write the v1 layout (default true). */
  writeV1?: boolean | undefined;
  /** Take the node name from another live daemon (default false). */
  nodeTakeover?: boolean | undefined;
}

/** How often the view snapshot is rewritten at most while the view changes (and once at stop). */
export const SNAPSHOT_EVERY_MS = 5_000;

export interface ClusterDeps {
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  now?: (() => number) | undefined;
}

export type { EtcdEndpoint };

/** Parses `etcd://HOST:PORT[,HOST:PORT…]`; throws CP_CONFIG_INVALID with the reason (config/etcd-url.ts, where the settings check it too). */
export const parseClusterEndpoints = parseEtcdUrl;

/** The hostname as a DNS label: first label, lowercased, other characters as `-`, at most 63. */
export function defaultNodeName(hostname = osHostname()): string {
  const label = (hostname.split('.')[0] ?? '')
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, 63)
    .replace(/^-+|-+$/g, '');
  return label || 'node';
}

/**
 * The local address this host uses toward `target`: a connected UDP socket
 * makes the kernel choose the route and source address, and sends nothing.
 */
export async function sourceAddressToward(target: EtcdEndpoint): Promise<string> {
  const address = isIP(target.host) ? target.host : (await lookup(target.host)).address;
  const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(target.port, address, () => resolve());
    });
    return socket.address().address;
  } finally {
    socket.close();
  }
}

function urlHost(e: EtcdEndpoint, https: boolean): string {
  const host = isIP(e.host) === 6 ? `[${e.host}]` : e.host;
  return `${https ? 'https' : 'http'}://${host}:${e.port}`;
}

/** etcd3 client options from ClusterOptions; reads the TLS files (CP_CONFIG_INVALID when one cannot be read). */
export function etcdClientOptions(opts: ClusterOptions): IOptions {
  const endpoints = parseClusterEndpoints(opts.endpoints);
  const https = opts.tls !== undefined;
  const read = (what: string, file: string | undefined): Buffer | undefined => {
    if (file === undefined) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new CanonportError(ErrorCodes.CONFIG_INVALID, `cannot read the etcd ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const ca = read('CA', opts.tls?.caFile);
  const cert = read('client certificate', opts.tls?.certFile);
  const key = read('client key', opts.tls?.keyFile);
  if ((cert === undefined) !== (key === undefined)) throw new CanonportError(ErrorCodes.CONFIG_INVALID, 'an etcd client certificate needs its key, and a key its certificate');
  const options: IOptions = {
    hosts: endpoints.map((e) => urlHost(e, https)),
    // Unary calls get a deadline; streams (watch, keepalive) live on.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    grpcOptions: {
      // Notice a dead etcd without a TCP reset (a partition): etcd allows pings every 5 s (--grpc-keepalive-min-time).
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
      // grpc-js backs off reconnects up to 120 s: after an etcd outage the view would stay stale for minutes.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 2_000,
    },
    faultHandling: {
      // etcd3's default breaker keeps a member shunned for 5 s; a restarted member should be used again sooner.
      host: () => etcd3Breaker(),
      global: etcd3Retry(endpoints.length),
    },
  };
  if (https) {
    options.credentials = {
      // The system roots when no CA file is given, as grpc-js does with a null root.
      rootCertificate: ca ?? (null as unknown as Buffer),
      ...(key ? { privateKey: key } : {}),
      ...(cert ? { certChain: cert } : {}),
    };
  }
  if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
  return options;
}

/**
 * Failures that say a member is unwell. A reply too large for a message is
 * not one (etcd3 files RESOURCE_EXHAUSTED as recoverable): the list asks
 * again with a smaller page, and counting it would open the breaker for
 * every call to a healthy member, the lease's keepalive included.
 */
const memberFailure = (err: Error): boolean => etcd3.isRecoverableError(err) && !isTooLarge(err);

function etcd3Breaker() {
  return circuitBreaker(handleWhen(memberFailure), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) });
}

function etcd3Retry(hosts: number) {
  return retry(handleWhen(memberFailure), { maxAttempts: Math.max(1, hosts) });
}

/**
 * One daemon's membership in the cluster: publishes this host (publish())
 * and keeps the cluster view (view) in sync.
 */
export class Cluster {
  readonly view: ClusterView;
  readonly prefix: string;
  readonly nodeName: string;
  private readonly opts: ClusterOptions;
  private readonly metrics: Metrics | undefined;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly client: Etcd3Client;
  private readonly publisher: Publisher;
  private readonly abort = new AbortController();
  private readonly startedMs: number;
  private addresses: string[] | undefined;
  private registryDigest: string;
  private stopped = false;
  private syncLoop: Promise<void> | undefined;
  private identityLoop: Promise<void> | undefined;
  private stalenessTimer: NodeJS.Timeout | undefined;
  private listError: string | undefined;
  /** Ends the watch in progress so the loop lists again (the view wants a list: see relistWanted). */
  private interruptWatch: (() => void) | undefined;
  private readonly relistBackoff = new Backoff(RELIST_MIN_MS, RELIST_MAX_MS);
  private nextRelistMs = 0;
  readonly state: StateDir | undefined;
  private snapshotTimer: NodeJS.Timeout | undefined;
  /** The periodic snapshot being written in slices, if one is. */
  private snapshotting: Promise<void> | undefined;
  private snapshotRevision = -1;
  private unsubscribeView: (() => void) | undefined;
  /** Ack keys written for drains, with their fixed values (an ack is written once per drain, never rewritten). */
  private readonly ackValues = new Map<string, string>();
  private takenBy: string | undefined;

  /** Validates the options (CP_CONFIG_INVALID) and builds the client; connects nothing yet. */
  constructor(opts: ClusterOptions, deps: ClusterDeps = {}) {
    this.opts = opts;
    this.metrics = deps.metrics;
    this.logger = (deps.logger ?? silentLogger).child({ component: 'cluster' });
    this.now = deps.now ?? Date.now;
    this.startedMs = this.now();
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    if (!isValidPrefix(this.prefix)) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `cluster prefix ${JSON.stringify(this.prefix)} must look like /name[/name…]`);
    this.nodeName = opts.node ?? defaultNodeName();
    if (!isNodeName(this.nodeName)) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `node name ${JSON.stringify(this.nodeName)} is not a DNS label (a-z, 0-9, -; at most 63)`);
    const ttl = opts.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    if (!Number.isInteger(ttl) || ttl < 2 || ttl > 3600) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `lease TTL ${ttl} s: want a whole number of seconds in 2–3600`);
    for (const a of opts.advertise ?? []) if (!isIP(a)) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `advertise address ${JSON.stringify(a)} is not an IP address`);
    if (opts.advertise?.length) this.addresses = [...opts.advertise];
    this.registryDigest = opts.registryDigest ?? '';
    this.client = new Etcd3(etcdClientOptions(opts));
    this.view = new ClusterView({ prefix: this.prefix, self: this.nodeName, caps: opts.caps, metrics: this.metrics, logger: this.logger, now: this.now });
    this.state = opts.stateDir ? new StateDir(opts.stateDir, this.logger) : undefined;
    this.publisher = new Publisher({
      client: this.client,
      prefix: this.prefix,
      leaseTtlSeconds: ttl,
      metrics: this.metrics,
      logger: this.logger,
      requireVerdict: opts.requireVerdict,
      writeV1: opts.writeV1,
      state: opts.publish !== false ? this.state : undefined,
      nodeTakeover: opts.nodeTakeover,
    });
  }

  /** The read side answers use. */
  get reader(): ClusterViewReader {
    return this.view;
  }

  /** Starts publishing and watching in the background; returns at once. */
  start(): void {
    if (this.syncLoop || this.stopped) return;
    if (this.metrics) this.metrics.clusterStalenessSource = () => this.stalenessSeconds();
    if (this.opts.publish !== false) this.identityLoop = this.resolveIdentity();
    this.loadSnapshot();
    // A view loaded from the snapshot is stale until etcd answers: its maximum staleness counts from now.
    this.armStaleness();
    this.unsubscribeView = this.view.onChange(() => this.viewChanged());
    this.syncLoop = this.runSync();
  }

  /** Hands the publisher this host's latest inventory. */
  publish(snapshot: InventorySnapshot): void {
    if (this.opts.publish !== false) this.publisher.update(snapshot);
  }

  /** The names clients asked this host for (discovery/asked-names.ts, which bounds and rate-limits them): in its node record. */
  publishAskedNames(names: readonly { port: number; name: string }[]): void {
    if (this.opts.publish !== false) this.publisher.setAskedNames(names);
  }

  /** A registry reload changed the digest: the node record is rewritten. */
  setRegistryDigest(digest: string): void {
    this.registryDigest = digest;
    this.pushIdentity();
  }

  publisherStatus(): PublisherStatus {
    return this.publisher.status();
  }

  /**
   * Why the last read of the prefix failed (a list or a watch), while it
   * keeps failing; undefined once the view is listed and watched again.
   * `/readyz` says it, so a view that cannot be listed is not mistaken for
   * one that is merely quiet.
   */
  syncError(): string | undefined {
    return this.listError;
  }

  /** The addresses published for this node (undefined until detected). */
  advertisedAddresses(): readonly string[] | undefined {
    return this.addresses;
  }

  /** Resolves when etcd holds this node's current state (tests, benchmarks). */
  whenPublished(): Promise<void> {
    return this.publisher.whenInSync();
  }

  /** Resolves when the view is synced (bounded by `timeoutMs`; rejects after). */
  async whenSynced(timeoutMs = 10_000): Promise<void> {
    const deadline = this.now() + timeoutMs;
    while (this.view.status().state !== 'synced') {
      if (this.now() > deadline) throw new Error(`cluster view not synced within ${timeoutMs} ms (state ${this.view.status().state})`);
      await sleep(20);
    }
  }

  /**
   * Stops everything. A clean stop revokes the lease (the node vanishes from
   * every view at once); `revoke: false` leaves it to expire, as a crash would.
   */
  async stop(opts: { revoke: boolean } = { revoke: true }): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.abort.abort();
    clearTimeout(this.stalenessTimer);
    this.stalenessTimer = undefined;
    clearTimeout(this.snapshotTimer);
    this.unsubscribeView?.();
    // A periodic write still in progress ends first: the last word is the view at stop.
    await this.snapshotting;
    this.saveSnapshot();
    if (this.metrics?.clusterStalenessSource) this.metrics.clusterStalenessSource = undefined;
    await this.identityLoop;
    if (this.opts.publish !== false) await this.publisher.stop(opts);
    await this.syncLoop;
    this.client.close();
  }

  /**
   * Drains `services` here: the inventory has already marked their
   * instances draining (the caller does that first, synchronously, so the
   * drain record goes out in the same transaction as the instances). With
   * `waitMs`, resolves once every live v2 daemon has acknowledged (its view
   * holds the change), else rejects with CP_DRAIN_TIMEOUT naming the
   * others; the drain record is removed either way.
   */
  async drain(id: string, services: string[], waitMs: number): Promise<{ acked: string[]; unconfirmed: string[] }> {
    if (this.opts.publish === false) throw new CanonportError(ErrorCodes.BAD_REQUEST, 'this process does not publish (a --workers DNS worker or a reader)');
    try {
      this.publisher.addDrain(id, services);
    } catch (err) {
      throw new CanonportError(ErrorCodes.BAD_REQUEST, (err as Error).message);
    }
    const deadline = this.now() + waitMs;
    try {
      for (;;) {
        const live = this.view.nodes().map((n) => n.name);
        const acks = this.view.acks(this.nodeName, id);
        const v2 = live.filter((n) => this.view.speaksV2(n));
        const missing = v2.filter((n) => !acks.has(n));
        // Our own ack is in the view only after our drain record and instances are: it proves the write landed.
        if (acks.has(this.nodeName) && missing.length === 0) {
          this.metrics?.clusterDrains.inc({ result: 'acked' });
          return { acked: v2, unconfirmed: live.filter((n) => !this.view.speaksV2(n)) };
        }
        if (this.now() >= deadline) {
          this.metrics?.clusterDrains.inc({ result: 'timeout' });
          const why = this.view.status().state !== 'synced' ? `; this daemon's view is ${this.view.status().state} (etcd unreachable?)` : '';
          throw new CanonportError(ErrorCodes.DRAIN_TIMEOUT, `drain of ${services.join(', ')} not acknowledged within ${waitMs} ms by ${missing.length ? missing.join(', ') : 'this node'}${why}; the instances stay drained`, { missing });
        }
        await sleep(25, this.abort.signal);
        if (this.stopped) throw new CanonportError(ErrorCodes.SHUTTING_DOWN, 'the daemon is stopping');
      }
    } finally {
      this.publisher.removeDrain(id);
    }
  }

  /** Withdraws this host at once (revokes the lease, forgets it in the state directory) and stops. */
  async leave(): Promise<void> {
    await this.stop({ revoke: true });
  }

  // --- the view's side effects: acks, snapshots, a node name someone else took ---

  private viewChanged(): void {
    if (this.opts.publish !== false) {
      this.updateAcks();
      this.checkNodeHolder();
    }
    this.scheduleSnapshot();
  }

  /** One ack per drain this view holds, written once with the revision reached, deleted when the drain goes. */
  private updateAcks(): void {
    const want = new Map<string, string>();
    for (const d of this.view.drains()) {
      const key = ackKey(this.prefix, this.nodeName, d.node, d.id);
      want.set(key, this.ackValues.get(key) ?? encodeAck({ revision: this.view.status().revision }));
    }
    this.ackValues.clear();
    for (const [k, v] of want) this.ackValues.set(k, v);
    this.publisher.setAcks(want);
  }

  /**
   * Another daemon wrote this node's record under its own lease: said once
   * per holder (the other side of CP_CLUSTER_NODE_TAKEN). Once that
   * daemon's record is gone (it stopped, or its lease ended), this one
   * writes its own again: otherwise the node stays missing for good
   * (issue 21, finding 5).
   */
  private checkNodeHolder(): void {
    // Not status(): it encodes and compares all this host publishes, on every change of the view (issue 24).
    const mine = this.publisher.currentLease();
    const holder = this.view.nodeLease(this.nodeName);
    const record = this.view.node(this.nodeName);
    if (this.takenBy !== undefined && mine && holder === undefined && this.view.status().state === 'synced') {
      this.logger.info({ node: this.nodeName, lease: mine, previousHolder: this.takenBy }, 'the daemon that took this node name has gone: publishing this node again');
      this.takenBy = undefined;
      this.publisher.republish();
      return;
    }
    if (!mine || !holder || holder === mine || !record || record.started === new Date(this.startedMs).toISOString()) return;
    if (this.takenBy === holder) return;
    this.takenBy = holder;
    this.metrics?.clusterNodeConflicts.inc({ side: 'taken' });
    this.logger.error(
      { code: ErrorCodes.CLUSTER_NODE_TAKEN, node: this.nodeName, lease: mine, holderLease: holder, holderAddresses: record.addresses },
      'another daemon took this node name: readers follow its record; this daemon\'s keys are ignored until it stops',
    );
  }

  private loadSnapshot(): void {
    if (!this.state || this.view.status().state !== 'missing') return;
    const snap = this.state.readSnapshot(this.prefix);
    if (!snap) return;
    this.view.replaceAll(snap.entries, snap.revision, { snapshot: true });
    this.snapshotRevision = snap.revision;
    this.logger.info({ revision: snap.revision, savedAt: snap.savedAt, nodes: this.view.nodes().length }, 'cluster view loaded from the snapshot (stale until etcd answers)');
  }

  private scheduleSnapshot(): void {
    if (!this.state || this.opts.publish === false || this.snapshotTimer || this.stopped) return;
    this.snapshotTimer = setTimeout(() => {
      this.snapshotTimer = undefined;
      // The last one still being written (a slow disk, a huge view): one writer at a time, this one later.
      if (this.snapshotting) return this.scheduleSnapshot();
      this.snapshotting = this.saveSnapshotInSlices().finally(() => {
        this.snapshotting = undefined;
      });
    }, SNAPSHOT_EVERY_MS);
    this.snapshotTimer.unref();
  }

  /** Whether the view is synced and changed since the last write (the publishing process only: a reader shares its directory). */
  private snapshotWanted(): boolean {
    const s = this.view.status();
    return !!this.state && this.opts.publish !== false && s.state === 'synced' && s.revision !== this.snapshotRevision;
  }

  /** Writes the view at once (at stop). */
  private saveSnapshot(): void {
    if (!this.snapshotWanted()) return;
    const s = this.view.status();
    try {
      this.state!.writeSnapshot({ prefix: this.prefix, revision: s.revision, savedAt: new Date(this.now()).toISOString(), entries: this.view.capture().entries });
      this.snapshotRevision = s.revision;
    } catch (err) {
      this.logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, dir: this.state!.dir, err: String(err) }, 'cannot write the cluster view snapshot');
    }
  }

  /**
   * The periodic write while the view changes: the view captured at once,
   * then encoded and written a slice per turn (state-dir.ts), so a view of
   * 20,000 instances never holds answers for the whole pass (issue 24).
   */
  private async saveSnapshotInSlices(): Promise<void> {
    if (!this.snapshotWanted()) return;
    const s = this.view.status();
    try {
      await this.state!.writeSnapshotInSlices({ prefix: this.prefix, revision: s.revision, savedAt: new Date(this.now()).toISOString(), entries: this.view.capture().entries });
      this.snapshotRevision = s.revision;
    } catch (err) {
      this.logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, dir: this.state!.dir, err: String(err) }, 'cannot write the cluster view snapshot');
    }
  }

  // --- identity ---

  private pushIdentity(): void {
    if (!this.addresses) return;
    this.publisher.setIdentity({
      name: this.nodeName,
      addresses: this.addresses,
      canonportVersion: this.opts.canonportVersion ?? '',
      registryDigest: this.registryDigest,
      startedMs: this.startedMs,
    });
  }

  private async resolveIdentity(): Promise<void> {
    const backoff = new Backoff(500, 10_000);
    while (!this.addresses && !this.stopped) {
      try {
        const target = parseClusterEndpoints(this.opts.endpoints)[0]!;
        const address = await sourceAddressToward(target);
        this.addresses = [address];
        this.logger.info({ node: this.nodeName, address, toward: `${target.host}:${target.port}` }, 'advertise address detected');
        if (/^(127\.|::1$)/.test(address)) this.logger.warn({ node: this.nodeName, address }, 'the detected advertise address is loopback: other hosts cannot reach this one (set --advertise)');
      } catch (err) {
        this.logger.warn({ code: ErrorCodes.CLUSTER_UNREACHABLE, err: etcdReason(err) }, 'cannot detect an advertise address; retrying');
        await sleep(backoff.next(), this.abort.signal);
      }
    }
    if (this.addresses) {
      this.logger.info({ node: this.nodeName, addresses: this.addresses, prefix: this.prefix }, 'cluster node identity');
      this.pushIdentity();
    }
  }

  // --- the view: list, then watch from the list's revision ---

  private async runSync(): Promise<void> {
    const backoff = new Backoff();
    let listReason: 'start' | 'compacted' | 'watch_cancelled' | 'dropped' | 'too_large' | 'refused' = 'start';
    let needList = true;
    let next = 0;
    while (!this.stopped) {
      if (!needList && this.view.status().state === 'missing') {
        // Dropped after the maximum staleness: a watch would only bring changes to an empty view.
        listReason = 'dropped';
        needList = true;
      }
      if (!needList) {
        // Resuming after a break: is the history from `next` on still whole?
        try {
          if (!(await this.historyFrom(next))) {
            this.logger.warn({ code: ErrorCodes.CLUSTER_WATCH_RESTARTED, revision: next }, 'etcd compacted past the watch revision: listing again');
            listReason = 'compacted';
            needList = true;
          }
        } catch (err) {
          if (this.stopped) return;
          this.unreachable('watch', err);
          await sleep(backoff.next(), this.abort.signal);
          continue;
        }
      }
      if (needList) {
        try {
          next = (await this.list()) + 1;
          this.metrics?.clusterViewLists.inc({ reason: listReason });
          needList = false;
          if (this.listError) this.logger.info({ revision: next - 1 }, 'etcd reachable again: cluster view listed');
          this.listError = undefined;
        } catch (err) {
          if (this.stopped) return;
          this.unreachable('list', err);
          await sleep(backoff.next(), this.abort.signal);
          continue;
        }
      }
      // From the revision the view already holds, not the one after it: etcd accepts a watch that starts
      // exactly at its compaction revision but has dropped the deletions made there. Those at `next − 1` the
      // view already has (watchFrom skips their replay); one compacted away at `next` or later is below
      // this start, so etcd cancels the watch and the view is listed again. No window is left.
      const outcome = await this.watchFrom(Math.max(1, next - 1), (revision) => {
        next = revision;
        backoff.reset();
      });
      if (outcome === 'stopped') return;
      if (outcome === 'too_large') {
        // A watch catching up was sent a batch larger than a message may be: a list reads it in pages, and the watch
        // then starts from the list's revision with nothing to catch up. Resuming would be sent the same batch for ever.
        this.logger.warn({ code: ErrorCodes.CLUSTER_WATCH_RESTARTED, revision: next }, 'etcd sent the watch a batch larger than a message may be: listing again');
        listReason = 'too_large';
        needList = true;
        continue;
      }
      if (outcome === 'relist') {
        this.logger.info({ revision: next }, 'entries refused by a cap were lost and room has appeared: listing again');
        listReason = 'refused';
        needList = true;
        continue;
      }
      if (outcome === 'cancelled') {
        this.logger.warn({ code: ErrorCodes.CLUSTER_WATCH_RESTARTED, revision: next }, 'etcd cancelled the watch: listing again');
        listReason = 'watch_cancelled';
        needList = true;
        continue;
      }
      // Disconnected: resume from `next` once etcd answers again.
      this.markStale();
      this.metrics?.clusterEtcdErrors.inc({ op: 'watch' });
      await sleep(backoff.next(), this.abort.signal);
    }
  }

  private unreachable(op: 'list' | 'watch', err: unknown): void {
    this.metrics?.clusterEtcdErrors.inc({ op });
    const text = etcdReason(err, this.client);
    if (text !== this.listError) this.logger.warn({ code: ErrorCodes.CLUSTER_UNREACHABLE, op, err: text }, 'cannot read the cluster prefix from etcd; retrying');
    this.listError = text;
    this.markStale();
  }

  /**
   * The view is stale from now (if it was synced): with a maximum
   * staleness, one timer is armed for the moment it would pass. Nothing
   * ticks while the view is synced (issue 24: an idle daemon is not woken
   * every second to find nothing to do).
   */
  private markStale(): void {
    this.view.markStale();
    this.armStaleness();
  }

  private armStaleness(): void {
    const max = this.opts.maxStalenessMs;
    if (!max || this.stalenessTimer || this.stopped) return;
    const s = this.view.status();
    if (s.state !== 'stale') return;
    this.stalenessTimer = setTimeout(() => {
      this.stalenessTimer = undefined;
      this.checkStaleness();
      this.armStaleness();
    }, Math.max(0, s.sinceMs + max - this.now()));
    this.stalenessTimer.unref();
  }

  /**
   * True when a watch from `next` would see every change since the view's
   * revision: a read at `next − 1` succeeds only if etcd has not compacted
   * past it. Watching from exactly the compaction revision is accepted by
   * etcd but misses the deletions made at that revision (compaction drops
   * their tombstones), so the check is needed even where the watch itself
   * would not be cancelled. (A compaction landing between this read and the
   * watch's creation is caught by watching from one revision earlier: see
   * runSync.)
   */
  private async historyFrom(next: number): Promise<boolean> {
    const key = Buffer.from(watchPrefix(this.prefix));
    try {
      await this.client.kv.range({ key, range_end: prefixEnd(key), revision: next - 1, count_only: true });
      return true;
    } catch (err) {
      // etcd answers OUT_OF_RANGE for a compacted revision, and for a future one (a store restored from an older snapshot).
      if (/compacted|future revision/.test(String(err))) return false;
      throw err;
    }
  }

  /**
   * Lists the prefix in pages at one revision; replaces the view. Returns
   * that revision. Pages are decoded as they arrive, so a value too large
   * to be ours is dropped before the next page is asked for (the list holds
   * records, never piles of raw values), and a page too large for a message
   * is asked again smaller (LIST_PAGE).
   */
  private async list(): Promise<number> {
    const start = Buffer.from(watchPrefix(this.prefix));
    const end = prefixEnd(start);
    const kvs: DecodedKeyValue[] = [];
    let key = start;
    let revision: string | undefined;
    let limit = LIST_PAGE;
    const at = () => (revision ? { revision } : {});
    for (;;) {
      let res: Awaited<ReturnType<Etcd3Client['kv']['range']>>;
      try {
        res = await this.client.kv.range({ key, range_end: end, limit, ...at() });
      } catch (err) {
        if (!isTooLarge(err) || this.stopped) throw err;
        if (limit > 1) {
          limit = Math.max(1, Math.floor(limit / 2));
          continue;
        }
        // One value alone does not fit in a message: skip its key, counted as a value too large to be ours.
        const probe = await this.client.kv.range({ key, range_end: end, limit: 1, keys_only: true, ...at() });
        revision ??= probe.header.revision;
        const k = probe.kvs[0];
        if (!k) break;
        kvs.push({ key: k.key.toString(), entry: { kind: 'ignored', reason: 'too_large', detail: `more than ${MAX_MESSAGE_BYTES} bytes` }, bytes: MAX_MESSAGE_BYTES });
        key = Buffer.concat([k.key, Buffer.from([0])]);
        continue;
      }
      revision ??= res.header.revision;
      for (const kv of res.kvs) {
        kvs.push(decodeKeyValue(this.prefix, { key: kv.key.toString(), value: kv.value, lease: kv.lease, modRevision: Number(kv.mod_revision), createRevision: Number(kv.create_revision) }));
      }
      if (!res.more || res.kvs.length === 0) break;
      key = Buffer.concat([res.kvs[res.kvs.length - 1]!.key, Buffer.from([0])]);
      limit = Math.min(LIST_PAGE, limit * 2);
    }
    this.view.replaceDecoded(kvs, Number(revision));
    return Number(revision);
  }

  /**
   * Watches the prefix from `from` until the stream breaks ('disconnected'),
   * etcd cancels it ('cancelled': compaction) or stop ('stopped').
   * `progress(next)` gets the revision to resume from after each response.
   *
   * The resume point is tracked here, not by etcd3's Watcher, which moves
   * it to a response's header revision: while a watch catches up, etcd
   * sends batches whose header is the store's current revision, and a
   * break in the middle would skip the rest.
   */
  private watchFrom(from: number, progress: (next: number) => void): Promise<'disconnected' | 'cancelled' | 'stopped' | 'too_large' | 'relist'> {
    // Stopped while a list was under way: an abort listener added now would never fire, and the watch would hold stop().
    if (this.abort.signal.aborted) return Promise.resolve('stopped');
    return new Promise((resolve) => {
      let next = from;
      const watcher = this.client.watch().prefix(watchPrefix(this.prefix)).startRevision(String(from)).watcher();
      let settled = false;
      const finish = (outcome: 'disconnected' | 'cancelled' | 'stopped' | 'too_large' | 'relist', cancel: boolean) => {
        if (settled) return;
        settled = true;
        this.interruptWatch = undefined;
        this.abort.signal.removeEventListener('abort', onAbort);
        watcher.removeAllListeners();
        // Keep an 'error' listener: an EventEmitter without one throws.
        watcher.on('error', () => undefined);
        if (cancel) void watcher.cancel().catch(() => undefined);
        resolve(outcome);
      };
      const onAbort = () => finish('stopped', true);
      this.abort.signal.addEventListener('abort', onAbort, { once: true });
      this.interruptWatch = () => finish('relist', true);
      watcher.on('connected', () => this.view.markSynced());
      watcher.on('data', (res: IWatchResponse) => {
        const changes: WatchChange[] = [];
        let maxRevision = 0;
        for (const ev of res.events) {
          // A watch starts at the revision the view already holds (see the loop): etcd replays that
          // revision's events. Applied again they would change nothing in the view, but an ignored
          // value among them would be counted twice.
          if (Number(ev.kv.mod_revision) <= from) continue;
          const key = ev.kv.key.toString();
          changes.push(
            ev.type === 'Delete'
              ? { type: 'delete', key }
              : { type: 'put', key, value: ev.kv.value, lease: ev.kv.lease, modRevision: Number(ev.kv.mod_revision), createRevision: Number(ev.kv.create_revision) },
          );
          maxRevision = Math.max(maxRevision, Number(ev.kv.mod_revision));
        }
        // An empty response is a progress notice, sent only once the watch is caught up: its header revision is safe.
        next = Math.max(next, res.events.length > 0 ? maxRevision + 1 : Number(res.header.revision) + 1);
        this.view.applyChanges(changes, next - 1);
        // Convergence's last stages, traced (bench/containers.ts reads it at --log-level debug): what the view took when.
        if (changes.length > 0 && this.logger.isLevelEnabled('debug')) this.logger.debug({ revision: next - 1, changes: changes.length }, 'cluster view watch applied');
        progress(next);
        this.maybeRelist();
      });
      // The manager already reconnects by itself, from its own (unsafe) revision: cancel, resume from ours.
      watcher.on('disconnected', (err: unknown) => finish(isTooLarge(err) ? 'too_large' : 'disconnected', true));
      // etcd cancelled the watch; the manager has already forgotten it, so no cancel request.
      watcher.on('error', () => finish('cancelled', false));
    });
  }

  /**
   * The view lost refused entries for want of room to wait and has room
   * now: end the watch so the loop lists again, at most every RELIST_MIN_MS
   * (doubling while it keeps being wanted).
   */
  private maybeRelist(): void {
    if (!this.interruptWatch || !this.view.relistWanted) return;
    const now = this.now();
    if (now < this.nextRelistMs) return;
    this.nextRelistMs = now + this.relistBackoff.next();
    this.interruptWatch();
  }

  private stalenessSeconds(): number {
    const s = this.view.status();
    return s.state === 'synced' ? 0 : Math.max(0, (this.now() - s.sinceMs) / 1000);
  }

  private checkStaleness(): void {
    this.maybeRelist();
    const max = this.opts.maxStalenessMs;
    if (!max) return;
    const s = this.view.status();
    if (s.state === 'stale' && this.now() - s.sinceMs >= max) {
      this.logger.warn({ code: ErrorCodes.CLUSTER_VIEW_DROPPED, staleMs: this.now() - s.sinceMs, maxStalenessMs: max }, 'cluster view stale too long: dropped');
      this.view.drop();
    }
  }
}
