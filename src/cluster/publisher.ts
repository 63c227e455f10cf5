import etcd3 from 'etcd3';
import type { Etcd3, IRequestOp, Lease } from 'etcd3';
import { ErrorCodes } from '../errors.js';
import { byFamilyThenAddress } from '../inventory/procnet.js';
import type { InventoryListener, InventorySnapshot } from '../inventory/types.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { Backoff, sleep } from './backoff.js';
import { encodeListener, encodeNode, listenerKey, listenersPrefix, nodeKey, type Bind, type ListenerRecord } from './keys.js';

/**
 * Publishes what this host's inventory observes into etcd, under one lease.
 *
 * - Only listeners other hosts can reach (bound to a wildcard or a
 *   non-loopback address) on claimed ports (services non-empty).
 * - Only what changed is written: the publisher remembers the exact value
 *   bytes it wrote under the current lease, so a steady host costs etcd
 *   nothing but keepalives.
 * - A lost lease (etcd down longer than the TTL, or revoked) is granted
 *   again and everything re-published; after every grant, keys of this node
 *   left by an earlier lease (a restart within the TTL) are taken over or deleted.
 * - Nothing here blocks its caller: update() records the wish and a single
 *   loop writes, retrying with backoff.
 * - Writes only this node's keys.
 */

const { EtcdLeaseInvalidError, EtcdPermissionDeniedError } = etcd3;

/** etcd's default --max-txn-ops is 128; stay under it. */
const OPS_PER_TXN = 100;

export interface NodeIdentity {
  name: string;
  addresses: string[];
  canonportVersion: string;
  registryDigest: string;
  startedMs: number;
}

export interface PublisherOptions {
  client: Etcd3;
  prefix: string;
  leaseTtlSeconds: number;
  metrics?: Metrics | undefined;
  logger?: Logger | undefined;
  backoff?: Backoff | undefined;
}

export interface PublisherStatus {
  /** The current lease, in decimal, or undefined while none is granted. */
  leaseId: string | undefined;
  /** Keys written under the current lease. */
  published: number;
  /** True when etcd holds exactly what the last snapshot and identity ask for. */
  inSync: boolean;
  lastError: string | undefined;
}

export class Publisher {
  private readonly opts: PublisherOptions;
  private readonly logger: Logger;
  private readonly backoff: Backoff;
  private identity: NodeIdentity | undefined;
  private listeners: InventoryListener[] | undefined;
  /** port → when this process first saw it reachable and claimed (ms). */
  private readonly firstSeen = new Map<number, number>();
  /** key → value bytes as written under the current lease. */
  private published = new Map<string, string>();
  /** Keys of this node found in etcd under an older lease, to delete unless wanted. */
  private strays = new Set<string>();
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private grants = 0;
  private dirty = false;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private lastError: string | undefined;
  private readonly waiters = new Set<() => void>();

  constructor(opts: PublisherOptions) {
    this.opts = opts;
    this.logger = opts.logger ?? silentLogger;
    this.backoff = opts.backoff ?? new Backoff();
  }

  /** This node's record; a change (a registry reload changes the digest) is published. */
  setIdentity(identity: NodeIdentity): void {
    this.identity = identity;
    this.kick();
  }

  /**
   * The host's latest inventory. Nothing is written before the first one,
   * so a restarted daemon does not withdraw its listeners for the moment
   * before its first scan.
   */
  update(snapshot: InventorySnapshot): void {
    const reachable = reachableListeners(snapshot.listeners);
    const ports = new Set(reachable.map((l) => l.port));
    for (const port of this.firstSeen.keys()) if (!ports.has(port)) this.firstSeen.delete(port);
    for (const port of ports) if (!this.firstSeen.has(port)) this.firstSeen.set(port, snapshot.collectedAtMs);
    this.listeners = reachable;
    this.kick();
  }

  status(): PublisherStatus {
    return { leaseId: this.leaseId, published: this.published.size, inSync: this.isInSync(), lastError: this.lastError };
  }

  /** Resolves once etcd holds what was asked (tests and shutdown use it). */
  whenInSync(): Promise<void> {
    if (this.isInSync()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  /**
   * Stops writing. With `revoke` (a clean shutdown) the lease is revoked so
   * this node disappears from every view at once; otherwise its keys live
   * until the lease expires.
   */
  async stop(opts: { revoke: boolean } = { revoke: true }): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (!lease) return;
    if (!opts.revoke) {
      lease.release();
      return;
    }
    try {
      // Bounded: a shutdown must not wait long on an etcd that is gone (the lease then expires by itself).
      await lease.revoke({ deadline: Date.now() + 2_000 });
      this.opts.metrics?.clusterEtcdWrites.inc({ kind: 'lease_revoke' });
    } catch (err) {
      // etcd is gone: the lease expires by itself within its TTL.
      this.logger.warn({ code: ErrorCodes.CLUSTER_PUBLISH_FAILED, err: String(err) }, 'cannot revoke the cluster lease; it expires by itself');
    }
  }

  /** The keys and values etcd should hold for this node now. */
  desired(): Map<string, string> {
    const out = new Map<string, string>();
    const id = this.identity;
    if (!id || !this.listeners) return out;
    const { prefix } = this.opts;
    out.set(nodeKey(prefix, id.name), encodeNode({
      name: id.name,
      addresses: id.addresses,
      canonportVersion: id.canonportVersion,
      registryDigest: id.registryDigest,
      started: new Date(id.startedMs).toISOString(),
    }));
    for (const record of listenerRecords(this.listeners, this.firstSeen)) out.set(listenerKey(prefix, id.name, record.port), encodeListener(record));
    return out;
  }

  private wake(): void {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const w of waiters) w();
  }

  private isInSync(): boolean {
    if (!this.identity || !this.listeners || !this.leaseId || this.strays.size > 0) return false;
    const want = this.desired();
    if (want.size !== this.published.size) return false;
    for (const [k, v] of want) if (this.published.get(k) !== v) return false;
    return true;
  }

  private kick(): void {
    if (this.stopped) return;
    this.dirty = true;
    this.loop ??= this.run().finally(() => {
      this.loop = undefined;
      // A kick during the loop's last await found it still running: start again.
      if (this.dirty && !this.stopped) this.kick();
    });
  }

  private async run(): Promise<void> {
    while (this.dirty && !this.stopped) {
      this.dirty = false;
      if (!this.identity || !this.listeners) return;
      try {
        await this.ensureLease();
        await this.sync();
        this.backoff.reset();
        if (this.lastError) this.logger.info({ node: this.identity.name }, 'cluster publication restored');
        this.lastError = undefined;
        if (this.isInSync()) this.wake();
      } catch (err) {
        if (this.stopped) return;
        this.dirty = true;
        this.opts.metrics?.clusterEtcdErrors.inc({ op: 'publish' });
        if (err instanceof EtcdLeaseInvalidError) {
          this.loseLease('rejected by etcd');
          continue;
        }
        const text = err instanceof Error ? err.message : String(err);
        if (text !== this.lastError) {
          const permission = err instanceof EtcdPermissionDeniedError;
          this.logger.warn(
            { code: permission ? ErrorCodes.CLUSTER_PUBLISH_FAILED : ErrorCodes.CLUSTER_UNREACHABLE, err: text, node: this.identity.name },
            permission ? 'etcd refused this node\'s writes (check its role)' : 'cannot publish to etcd; retrying',
          );
        }
        this.lastError = text;
        await sleep(this.backoff.next(), this.abort.signal);
      }
    }
  }

  private async ensureLease(): Promise<void> {
    if (this.lease) return;
    const { client, leaseTtlSeconds, prefix } = this.opts;
    const lease = client.lease(leaseTtlSeconds, { autoKeepAlive: true });
    let id: string;
    try {
      id = await lease.grant();
    } catch (err) {
      lease.release();
      throw err;
    }
    if (this.stopped) {
      await lease.revoke().catch(() => undefined);
      return;
    }
    const reason = this.grants === 0 ? 'start' : 'lost';
    this.opts.metrics?.clusterEtcdWrites.inc({ kind: 'lease_grant' });
    lease.on('lost', (err: Error) => {
      if (this.lease === lease) this.loseLease(err.message);
    });
    // Keys this node left under an earlier lease: re-put (to move them to this lease) or delete.
    const name = this.identity!.name;
    try {
      const own = await client.kv.range({ key: Buffer.from(nodeKey(prefix, name)), keys_only: true });
      const listeners = await client.getAll().prefix(listenersPrefix(prefix, name)).keys();
      this.strays = new Set([...own.kvs.map((kv) => kv.key.toString()), ...listeners]);
    } catch (err) {
      // Not kept: stop its keepalives so it expires, and grant a fresh one on the retry.
      lease.release();
      throw err;
    }
    this.published = new Map();
    this.lease = lease;
    this.leaseId = id;
    this.grants++;
    this.opts.metrics?.clusterLeaseGrants.inc({ reason });
    this.logger.info({ node: name, lease: id, ttl: leaseTtlSeconds, reason }, 'cluster lease granted');
  }

  private loseLease(why: string): void {
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    this.published = new Map();
    lease?.release();
    if (this.stopped) return;
    this.logger.warn({ code: ErrorCodes.CLUSTER_LEASE_LOST, node: this.identity?.name, why }, 'cluster lease lost; granting a new one and publishing again');
    this.kick();
  }

  /** Writes the difference between what etcd holds under this lease and what is wanted, in transactions. */
  private async sync(): Promise<void> {
    const lease = this.lease;
    const leaseId = this.leaseId;
    if (!lease || !leaseId) return;
    const want = this.desired();
    const puts: [string, string][] = [];
    const deletes: string[] = [];
    // The node record first: a reader never sees listeners of a node it does not know.
    for (const [k, v] of want) if (this.published.get(k) !== v) puts.push([k, v]);
    for (const k of this.published.keys()) if (!want.has(k)) deletes.push(k);
    for (const k of this.strays) if (!want.has(k) && !this.published.has(k)) deletes.push(k);
    const ops: { op: IRequestOp; apply: () => void; kind: 'put' | 'delete' }[] = [
      ...puts.map(([key, value]) => ({
        op: { request_put: { key: Buffer.from(key), value: Buffer.from(value), lease: leaseId } },
        apply: () => {
          this.published.set(key, value);
          this.strays.delete(key);
        },
        kind: 'put' as const,
      })),
      ...deletes.map((key) => ({
        op: { request_delete_range: { key: Buffer.from(key) } },
        apply: () => {
          this.published.delete(key);
          this.strays.delete(key);
        },
        kind: 'delete' as const,
      })),
    ];
    for (let i = 0; i < ops.length; i += OPS_PER_TXN) {
      const chunk = ops.slice(i, i + OPS_PER_TXN);
      await this.opts.client.kv.txn({ success: chunk.map((c) => c.op) });
      if (this.lease !== lease) return; // lost meanwhile: the next round starts over
      for (const c of chunk) {
        c.apply();
        this.opts.metrics?.clusterEtcdWrites.inc({ kind: c.kind });
      }
      this.opts.metrics?.clusterEtcdWrites.inc({ kind: 'txn' });
    }
  }
}

const LOOPBACK_V4 = /^(::ffff:)?127\./i;

/** True when other hosts can reach a socket bound to `address` (a wildcard or a non-loopback address). */
export function isReachableBind(address: string): boolean {
  return !(LOOPBACK_V4.test(address) || address === '::1');
}

/** The listeners worth publishing: claimed by a service and reachable from other hosts. */
export function reachableListeners(listeners: readonly InventoryListener[]): InventoryListener[] {
  return listeners.filter((l) => l.services.length > 0 && isReachableBind(l.address));
}

/** One record per port, its sockets folded into `bind`, sorted so equal inventories give equal bytes. */
export function listenerRecords(listeners: readonly InventoryListener[], firstSeen: ReadonlyMap<number, number>): ListenerRecord[] {
  const byPort = new Map<number, InventoryListener[]>();
  for (const l of listeners) byPort.set(l.port, [...(byPort.get(l.port) ?? []), l]);
  const out: ListenerRecord[] = [];
  for (const [port, ls] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const first = ls[0]!;
    // The sockets of one port share the claim; the version may differ only by probe timing: take the first known.
    const versioned = ls.find((l) => l.version !== '') ?? first;
    const bind: Bind[] = ls
      .map((l) => ({ family: l.family, address: l.address }))
      .sort(byFamilyThenAddress);
    out.push({
      port,
      services: [...first.services].sort(),
      scheme: first.scheme,
      version: versioned.version,
      versionSource: versioned.versionSource,
      since: new Date(firstSeen.get(port) ?? Date.now()).toISOString(),
      bind,
    });
  }
  return out;
}
