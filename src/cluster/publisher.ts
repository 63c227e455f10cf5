import etcd3 from 'etcd3';
import type { Etcd3, IRequestOp } from 'etcd3';
import { ErrorCodes } from '../errors.js';
import { socketKey as instanceOf } from '../inventory/inventory.js';
import { byFamilyThenAddress } from '../inventory/procnet.js';
import type { InventoryListener, InventorySnapshot } from '../inventory/types.js';
import { protocolOf } from '../inventory/procnet.js';
import { reachableListeners } from '../inventory/reachable.js';
import { silentLogger, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { Backoff, sleep } from './backoff.js';
import {
  encodeDrain,
  encodeInstance,
  encodeListener,
  encodeNode,
  HOST_NAMESPACE,
  instanceKey,
  legacyNodeKey,
  listenerKey,
  listenersPrefix,
  MAX_NODE_DRAINS,
  nodeKey,
  nodePrefix,
  parseKey,
  prefixEnd,
  type Bind,
  type InstanceRecord,
  type ListenerRecord,
  type NodeRecord,
  type Protocol,
} from './keys.js';
import { KeptLease } from './lease.js';
import type { StateDir } from './state-dir.js';
import { etcdReason } from './etcd-errors.js';

/**
 * Publishes what this host's inventory observes into etcd, under one lease.
 *
 * - Only listeners other hosts can reach (bound to a wildcard or a
 *   non-loopback address) on claimed ports (services non-empty), one v2
 *   instance record each with its readiness; a v1 mirror of the ready ones
 *   while `writeV1` is on (keys.ts says why).
 * - With `requireVerdict` (the daemon), a listener is published only once
 *   its readiness has a first verdict: a warming instance is never handed out.
 * - Only what changed is written: the publisher remembers the exact value
 *   bytes it wrote under the current lease, so a steady host costs etcd
 *   nothing but keepalives.
 * - A restart within the lease TTL takes the previous lease back (its id is
 *   in the state directory) and keeps what it finds under it until its own
 *   first scan and verdicts say otherwise: other hosts see no change.
 * - A node name held by another *live* lease is not taken (unless
 *   `nodeTakeover`): CP_CLUSTER_NODE_TAKEN, retried until that lease ends.
 *   Keys under another live lease are never deleted.
 * - A lost lease (etcd down longer than the TTL, or revoked) is granted
 *   again and everything re-published.
 * - Nothing here blocks its caller: update() records the wish and a single
 *   loop writes, retrying with backoff.
 * - Writes only this node's keys.
 */

const { EtcdLeaseInvalidError, EtcdPermissionDeniedError } = etcd3;

/** etcd's default --max-txn-ops is 128; stay under it. */
const OPS_PER_TXN = 100;
/** Drains this node keeps in progress at once (an operator's commands; more are refused): the layout's bound. */
export const MAX_LOCAL_DRAINS = MAX_NODE_DRAINS;

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
  /** Publish a listener only once it has a readiness verdict (the daemon); else listeners read as ready (tcp). */
  requireVerdict?: boolean | undefined;
  /** Also write the v1 layout (ready instances only). Default true. */
  writeV1?: boolean | undefined;
  /** Where the lease id is remembered across restarts. */
  state?: StateDir | undefined;
  /** Take the node name even from another live lease. */
  nodeTakeover?: boolean | undefined;
}

export interface PublisherStatus {
  /** The current lease, in decimal, or undefined while none is granted. */
  leaseId: string | undefined;
  /** Keys written under the current lease. */
  published: number;
  /** True when etcd holds exactly what the last snapshot and identity ask for. */
  inSync: boolean;
  lastError: string | undefined;
  /** How the current lease was had: granted at start, taken back from a previous run, granted after a loss. */
  leaseOrigin?: 'granted' | 'adopted' | undefined;
  /** Set while another live daemon holds this node's name and this one waits. */
  conflict?: { holderLease: string } | undefined;
}

/** Another live daemon holds the node name. */
class NodeTaken extends Error {
  constructor(readonly holderLease: string) {
    super(`another live daemon holds this node name (lease ${holderLease})`);
  }
}

export class Publisher {
  private readonly opts: PublisherOptions;
  private readonly logger: Logger;
  private readonly backoff: Backoff;
  private identity: NodeIdentity | undefined;
  private listeners: InventoryListener[] | undefined;
  /** instance (inventory's socketKey: port, protocol, namespace) → when this process first saw it reachable and claimed (ms). */
  private readonly firstSeen = new Map<string, number>();
  /** What the instance records said at the last change, and when the scan that found it ran (the node record's observedAt). */
  private observed: { signature: string; atMs: number } | undefined;
  /** Names clients asked this node for (asked-names.ts; bounded there), published in its node record. */
  private askedNames: readonly { port: number; name: string }[] = [];
  /** key → value bytes as written under the current lease. */
  private published = new Map<string, string>();
  /** What an adopted lease held at start: kept for a listener still waiting for its first verdict. */
  private carried = new Map<string, string>();
  /** Keys of this node found in etcd under a dead lease (or none), to delete unless wanted. */
  private strays = new Set<string>();
  /** Local drains in progress: id → services. Bounded by MAX_LOCAL_DRAINS. */
  private readonly drains = new Map<string, { services: string[]; requested: string }>();
  /** Ack keys this node should hold (set from the view by the cluster). */
  private acks = new Map<string, string>();
  private lease: KeptLease | undefined;
  private leaseId: string | undefined;
  private leaseOrigin: 'granted' | 'adopted' | undefined;
  private conflict: { holderLease: string } | undefined;
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
    const keys = new Set(reachable.map(instanceOf));
    for (const key of this.firstSeen.keys()) if (!keys.has(key)) this.firstSeen.delete(key);
    for (const key of keys) if (!this.firstSeen.has(key)) this.firstSeen.set(key, snapshot.collectedAtMs);
    this.listeners = reachable;
    // observedAt: the scan that found what the records now say (a steady host keeps its time and writes nothing).
    const signature = JSON.stringify(instanceRecords(reachable, this.firstSeen, { requireVerdict: this.opts.requireVerdict === true }));
    if (this.observed?.signature !== signature) this.observed = { signature, atMs: snapshot.collectedAtMs };
    this.kick();
  }

  /** The names clients asked this node for (published in its node record; the caller bounds and rate-limits them). */
  setAskedNames(names: readonly { port: number; name: string }[]): void {
    this.askedNames = [...names];
    this.kick();
  }

  /** Starts a drain record (written with the draining instances, in one transaction when they change together). */
  addDrain(id: string, services: string[]): void {
    if (!this.drains.has(id) && this.drains.size >= MAX_LOCAL_DRAINS) throw new Error(`at most ${MAX_LOCAL_DRAINS} drains at once`);
    this.drains.set(id, { services: [...services].sort(), requested: new Date().toISOString() });
    this.kick();
  }

  removeDrain(id: string): void {
    if (this.drains.delete(id)) this.kick();
  }

  /** The ack keys (and values) this node should hold now. */
  setAcks(acks: Map<string, string>): void {
    if (acks.size === this.acks.size && [...acks].every(([k, v]) => this.acks.get(k) === v)) return;
    this.acks = acks;
    this.kick();
  }

  /** The lease this daemon writes under (decimal), without status()'s comparison of everything published. */
  currentLease(): string | undefined {
    return this.leaseId;
  }

  status(): PublisherStatus {
    return {
      leaseId: this.leaseId,
      published: this.published.size,
      inSync: this.isInSync(),
      lastError: this.lastError,
      ...(this.leaseOrigin ? { leaseOrigin: this.leaseOrigin } : {}),
      ...(this.conflict ? { conflict: this.conflict } : {}),
    };
  }

  /**
   * What this lease wrote is no longer in etcd as written (another daemon
   * took the node name with --node-takeover, overwrote the keys under its
   * lease, and has gone with them): write everything again. What was
   * written turns into strays, so a key no longer wanted is deleted, not
   * left behind.
   */
  republish(): void {
    for (const k of this.published.keys()) this.strays.add(k);
    this.published = new Map();
    this.kick();
  }

  /** Resolves once etcd holds what was asked (tests and shutdown use it). */
  whenInSync(): Promise<void> {
    if (this.isInSync()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.add(resolve));
  }

  /**
   * Stops writing. With `revoke` (a host leaving for good) the lease is
   * revoked so this node disappears from every view at once, and the state
   * directory forgets it; otherwise its keys live until the lease expires,
   * and a restart within that time takes the lease back.
   */
  async stop(opts: { revoke: boolean } = { revoke: true }): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    if (opts.revoke) this.forgetLease();
    if (!lease) return;
    if (!opts.revoke) {
      // One last renewal (bounded): the restart that follows has the whole TTL from now to take the lease back,
      // not what was left since the last keepalive.
      await lease.renewOnce(1_000).catch(() => undefined);
      lease.release();
      return;
    }
    try {
      // Bounded: a shutdown must not wait long on an etcd that is gone (the lease then expires by itself).
      await lease.revoke(2_000);
      this.opts.metrics?.clusterEtcdWrites.inc({ kind: 'lease_revoke' });
    } catch (err) {
      // etcd is gone: the lease expires by itself within its TTL.
      this.logger.warn({ code: ErrorCodes.CLUSTER_PUBLISH_FAILED, err: etcdReason(err, this.opts.client) }, 'cannot revoke the cluster lease; it expires by itself');
    }
  }

  /** The keys and values etcd should hold for this node now. */
  desired(): Map<string, string> {
    const out = new Map<string, string>();
    const id = this.identity;
    if (!id || !this.listeners) return out;
    const { prefix } = this.opts;
    const writeV1 = this.opts.writeV1 !== false;
    const base: NodeRecord = {
      name: id.name,
      addresses: id.addresses,
      canonportVersion: id.canonportVersion,
      registryDigest: id.registryDigest,
      started: new Date(id.startedMs).toISOString(),
    };
    out.set(nodeKey(prefix, id.name), encodeNode({
      ...base,
      ...(this.observed ? { observedAt: new Date(this.observed.atMs).toISOString() } : {}),
      ...(this.askedNames.length > 0 ? { askedNames: [...this.askedNames] } : {}),
    }));
    // The v1 mirror keeps v1's fields: what changes with every scan or query is of no use to a daemon that cannot read it.
    if (writeV1) out.set(legacyNodeKey(prefix, id.name), encodeNode(base));
    for (const record of instanceRecords(this.listeners, this.firstSeen, { requireVerdict: this.opts.requireVerdict === true })) {
      const key = instanceKey(prefix, id.name, record.port, record.protocol, record.namespace);
      // v1 has one listener per port and no protocol: it mirrors TCP instances only.
      const v1 = record.protocol === 'tcp' ? listenerKey(prefix, id.name, record.port) : undefined;
      if (record.readiness === undefined) {
        // No verdict yet: what the previous run published stands until there is one.
        const kept = this.carried.get(key);
        if (kept !== undefined) out.set(key, kept);
        const keptV1 = v1 === undefined ? undefined : this.carried.get(v1);
        if (writeV1 && keptV1 !== undefined) out.set(v1!, keptV1);
        continue;
      }
      out.set(key, encodeInstance(record as InstanceRecord));
      // v1 has one record per port, at the node's addresses: only the host's own TCP instances fit it.
      if (writeV1 && v1 !== undefined && record.readiness.state === 'ready' && record.namespace === HOST_NAMESPACE) out.set(v1, encodeListener(toListenerRecord(record)));
    }
    for (const [drainId, d] of this.drains) out.set(`${nodePrefix(prefix, id.name)}drains/${drainId}`, encodeDrain({ id: drainId, services: d.services, requested: d.requested }));
    for (const [k, v] of this.acks) out.set(k, v);
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
      if (!this.identity) return;
      try {
        // The lease first, as soon as this node's identity is known and before the first inventory: a restarted
        // daemon takes its previous lease back while its keys still live, however long its first scan takes.
        await this.ensureLease();
        if (!this.listeners) return;
        await this.sync();
        this.backoff.reset();
        if (this.lastError) this.logger.info({ node: this.identity.name }, 'cluster publication restored');
        this.lastError = undefined;
        if (this.isInSync()) this.wake();
      } catch (err) {
        if (this.stopped) return;
        this.dirty = true;
        if (err instanceof NodeTaken) {
          // Not an etcd failure: wait for the other daemon's lease to end (at most its TTL), then look again.
          if (this.conflict?.holderLease !== err.holderLease) {
            this.opts.metrics?.clusterNodeConflicts.inc({ side: 'refused' });
            this.logger.error(
              { code: ErrorCodes.CLUSTER_NODE_TAKEN, node: this.identity.name, holderLease: err.holderLease },
              'another live daemon holds this node name: not publishing until its lease ends (use another --node, or --node-takeover)',
            );
          }
          this.conflict = { holderLease: err.holderLease };
          this.lastError = err.message;
          await sleep(Math.max(500, (this.opts.leaseTtlSeconds * 1000) / 4), this.abort.signal);
          continue;
        }
        this.opts.metrics?.clusterEtcdErrors.inc({ op: 'publish' });
        if (err instanceof EtcdLeaseInvalidError) {
          this.loseLease(etcdReason(err));
          continue;
        }
        const text = etcdReason(err, this.opts.client);
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

  /** The lease of whoever holds this node's record now (v2, else v1), if any. */
  private async holderLease(name: string): Promise<string | undefined> {
    const { client, prefix } = this.opts;
    for (const key of [nodeKey(prefix, name), legacyNodeKey(prefix, name)]) {
      const res = await client.kv.range({ key: Buffer.from(key) });
      const lease = res.kvs[0]?.lease;
      if (lease !== undefined && lease !== '0') return lease;
    }
    return undefined;
  }

  private async ensureLease(): Promise<void> {
    if (this.lease) return;
    const { client, leaseTtlSeconds, prefix } = this.opts;
    const name = this.identity!.name;
    const remembered = this.opts.state?.readNode();
    const mine = remembered && remembered.node === name && remembered.prefix === prefix ? remembered.leaseId : undefined;
    const holder = await this.holderLease(name);
    const alive = async (id: string | undefined) => id !== undefined && (await KeptLease.remaining(client, id)) > 0;
    let lease: KeptLease | undefined;
    if (holder !== undefined && holder !== mine && (await alive(holder)) && !this.opts.nodeTakeover) throw new NodeTaken(holder);
    if (this.conflict) {
      this.logger.info({ node: name, previousHolder: this.conflict.holderLease }, 'the other daemon\'s lease ended: taking this node name');
      this.conflict = undefined;
    }
    if (mine !== undefined && (holder === mine || holder === undefined) && (await alive(mine))) {
      try {
        lease = await KeptLease.adopt(client, mine, leaseTtlSeconds);
        this.leaseOrigin = 'adopted';
      } catch (err) {
        // Expired in between, or etcd refused the renewal: grant a new one (a restart then withdraws and re-publishes).
        this.logger.warn({ code: ErrorCodes.CLUSTER_PUBLISH_FAILED, node: name, lease: mine, err: etcdReason(err, client) }, 'cannot take the previous run\'s lease back; granting a new one');
        lease = undefined;
      }
    }
    if (!lease) {
      lease = await KeptLease.grant(client, leaseTtlSeconds);
      this.leaseOrigin = 'granted';
    }
    if (this.stopped) {
      await lease.revoke().catch(() => undefined);
      return;
    }
    const id = lease.id;
    const reason = this.leaseOrigin === 'adopted' ? 'adopted' : this.grants === 0 ? 'start' : 'lost';
    if (this.leaseOrigin === 'granted') this.opts.metrics?.clusterEtcdWrites.inc({ kind: 'lease_grant' });
    lease.on('lost', (err: Error) => {
      if (this.lease === lease) this.loseLease(etcdReason(err));
    });
    // This node's keys in etcd now: under the adopted lease they are ours (kept until a verdict says otherwise);
    // under a dead lease (or none) strays to delete unless wanted; under another live lease (a takeover) left alone.
    const published = new Map<string, string>();
    const strays = new Set<string>();
    try {
      const found: { key: string; value: string; lease: string }[] = [];
      for (const p of [nodePrefix(prefix, name), listenersPrefix(prefix, name)]) {
        const res = await client.kv.range({ key: Buffer.from(p), range_end: prefixEnd(Buffer.from(p)) });
        for (const kv of res.kvs) found.push({ key: kv.key.toString(), value: kv.value.toString(), lease: kv.lease });
      }
      const v1node = await client.kv.range({ key: Buffer.from(legacyNodeKey(prefix, name)) });
      for (const kv of v1node.kvs) found.push({ key: kv.key.toString(), value: kv.value.toString(), lease: kv.lease });
      const liveOther = new Map<string, boolean>();
      for (const f of found) {
        if (parseKey(prefix, f.key).kind === 'foreign') continue;
        if (f.lease === id) {
          published.set(f.key, f.value);
          continue;
        }
        if (f.lease !== '0' && !liveOther.has(f.lease)) liveOther.set(f.lease, await alive(f.lease));
        if (f.lease !== '0' && liveOther.get(f.lease)) continue;
        strays.add(f.key);
      }
    } catch (err) {
      // Not kept: stop its keepalives so it expires (an adopted one too: the next try adopts it again), and retry.
      lease.release();
      throw err;
    }
    this.published = published;
    this.carried = this.leaseOrigin === 'adopted' ? new Map(published) : new Map();
    this.strays = strays;
    this.lease = lease;
    this.leaseId = id;
    this.grants++;
    this.opts.metrics?.clusterLeaseGrants.inc({ reason });
    this.rememberLease(name, id);
    this.logger.info({ node: name, lease: id, ttl: leaseTtlSeconds, reason, kept: published.size }, reason === 'adopted' ? 'cluster lease taken back from the previous run' : 'cluster lease granted');
  }

  private rememberLease(node: string, leaseId: string): void {
    const state = this.opts.state;
    if (!state) return;
    try {
      state.writeNode({ node, prefix: this.opts.prefix, leaseId, savedAt: new Date().toISOString() });
    } catch (err) {
      this.logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, dir: state.dir, err: String(err) }, 'cannot remember the cluster lease: a restart will withdraw and re-publish');
    }
  }

  private forgetLease(): void {
    try {
      this.opts.state?.clearNode();
    } catch {
      // Nothing to take back either way: the lease is revoked.
    }
  }

  private loseLease(why: string): void {
    const lease = this.lease;
    this.lease = undefined;
    this.leaseId = undefined;
    this.published = new Map();
    this.carried = new Map();
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
    // The node record first: a reader never sees instances of a node it does not know. Drain records come after
    // the instances they drain (desired() orders them so), in the same transaction when they fit in one.
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
          this.carried.delete(key);
        },
        kind: 'delete' as const,
      })),
    ];
    for (let i = 0; i < ops.length; i += OPS_PER_TXN) {
      const chunk = ops.slice(i, i + OPS_PER_TXN);
      const res = await this.opts.client.kv.txn({ success: chunk.map((c) => c.op) });
      if (this.logger.isLevelEnabled('debug')) this.logger.debug({ revision: Number(res.header.revision), puts: chunk.filter((c) => c.kind === 'put').length, deletes: chunk.filter((c) => c.kind === 'delete').length }, 'cluster publication written');
      if (this.lease !== lease) return; // lost meanwhile: the next round starts over
      for (const c of chunk) {
        c.apply();
        this.opts.metrics?.clusterEtcdWrites.inc({ kind: c.kind });
      }
      this.opts.metrics?.clusterEtcdWrites.inc({ kind: 'txn' });
    }
  }
}


export { isReachableBind, reachableListeners } from '../inventory/reachable.js';

/** One record per port (TCP, the host's namespace), its sockets folded into `bind`, sorted so equal inventories give equal bytes. */
export function listenerRecords(listeners: readonly InventoryListener[], firstSeen: ReadonlyMap<string, number>): ListenerRecord[] {
  return instanceRecords(listeners, firstSeen, { requireVerdict: false })
    .filter((r) => r.protocol === 'tcp' && r.namespace === HOST_NAMESPACE)
    .map(toListenerRecord);
}

/** An instance record without its readiness: what a listener is before its first verdict. */
export type PendingInstance = Omit<InstanceRecord, 'readiness'> & { readiness: InstanceRecord['readiness'] | undefined };

/**
 * One instance per port, protocol and namespace, its sockets folded into
 * `bind`, sorted so equal inventories give equal bytes. A container's
 * instance carries its namespace's label, the address other hosts reach it
 * at (`address`, which answers use instead of the node's) and its container
 * or pod. Readiness from the listeners' verdicts; without one, undefined
 * (requireVerdict) or ready by listening. Names: what this host's own
 * sources give (the registry's, the process's); names clients asked for go
 * in the node record instead (keys.ts).
 */
export function instanceRecords(listeners: readonly InventoryListener[], firstSeen: ReadonlyMap<string, number>, opts: { requireVerdict: boolean }): PendingInstance[] {
  const byInstance = new Map<string, { port: number; protocol: Protocol; ls: InventoryListener[] }>();
  for (const l of listeners) {
    const key = instanceOf(l);
    const at = byInstance.get(key) ?? { port: l.port, protocol: protocolOf(l.family), ls: [] };
    at.ls.push(l);
    byInstance.set(key, at);
  }
  const label = (x: { ls: InventoryListener[] }) => x.ls[0]!.namespace?.label ?? '';
  const ordered = [...byInstance.values()].sort((a, b) => a.port - b.port || (a.protocol === b.protocol ? 0 : a.protocol < b.protocol ? -1 : 1) || cmpText(label(a), label(b)));
  const out: PendingInstance[] = [];
  for (const { port, protocol, ls } of ordered) {
    const first = ls[0]!;
    const ns = first.namespace;
    // The sockets of one port share the claim; the version may differ only by probe timing: take the first known.
    const versioned = ls.find((l) => l.version !== '') ?? first;
    const bind: Bind[] = ls
      .map((l) => ({ family: l.family, address: l.address }))
      .sort(byFamilyThenAddress);
    const since = new Date(firstSeen.get(instanceOf(first)) ?? Date.now()).toISOString();
    const verdict = ls.find((l) => l.readiness)?.readiness;
    const readiness = verdict
      ? { state: verdict.state, since: new Date(verdict.sinceMs).toISOString(), by: verdict.by, ...(verdict.detail ? { detail: printable(verdict.detail) } : {}) }
      : opts.requireVerdict
        ? undefined
        : { state: 'ready' as const, since, by: protocol };
    const own = (first.names ?? []).filter((n) => n.source !== 'query');
    out.push({
      port,
      protocol,
      namespace: ns?.label ?? HOST_NAMESPACE,
      services: [...first.services].sort(),
      scheme: first.scheme,
      version: versioned.version,
      versionSource: versioned.versionSource,
      since,
      bind,
      readiness,
      ...(ns?.published ? { address: ns.published } : {}),
      ...(ns?.container ? { container: containerField(ns.container) } : {}),
      // A snapshot that says nothing of names (names undefined: built by hand, or before issue 22) publishes none: readers take its claim.
      ...(first.names === undefined ? {} : own.length > 0 ? { names: own.map((n) => n.name), nameSource: own[0]!.source as 'registry' | 'process' } : { nameSource: 'none' as const }),
    });
  }
  return out;
}

/** The record's `container`: the id, and the pod where it is known. */
function containerField(c: NonNullable<NonNullable<InventoryListener['namespace']>['container']>): NonNullable<InstanceRecord['container']> {
  return { id: c.id, ...(c.pod ? { pod: c.pod } : {}), ...(c.podNamespace ? { podNamespace: c.podNamespace } : {}) };
}

function cmpText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function toListenerRecord(r: PendingInstance): ListenerRecord {
  return { port: r.port, services: r.services, scheme: r.scheme, version: r.version, versionSource: r.versionSource, since: r.since, bind: r.bind };
}

/** A detail fit for the record: printable ASCII, at most 200 characters. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);
}

