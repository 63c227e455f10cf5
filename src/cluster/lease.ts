import { EventEmitter } from 'node:events';
import etcd3 from 'etcd3';
import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { LeaseSilentError } from './etcd-errors.js';

/**
 * One etcd lease kept alive: granted fresh, or *adopted* by id (a daemon
 * restarted within the TTL takes its previous lease back, so its keys never
 * leave etcd). Hand-written because etcd3's Lease can only grant: it has no
 * way to keep alive a lease it did not grant. Otherwise it follows etcd3's
 * (and the Go client's) scheme: one keepalive stream, a keepalive every
 * TTL/3, a new stream when one goes silent, and `lost` when etcd says the
 * lease is gone or nothing was heard for two TTLs.
 */

const { EtcdLeaseInvalidError } = etcd3;

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

export class KeptLease extends EventEmitter<{ lost: [Error] }> {
  private timer: NodeJS.Timeout | undefined;
  private stream: KeepAliveStream | undefined;
  private lastAliveMs: number;
  private closed = false;

  private constructor(
    private readonly client: Etcd3,
    readonly id: string,
    readonly ttlSeconds: number,
  ) {
    super();
    this.lastAliveMs = Date.now();
    this.loop();
  }

  /** A new lease of `ttlSeconds`. */
  static async grant(client: Etcd3, ttlSeconds: number): Promise<KeptLease> {
    const res = await client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
    return new KeptLease(client, String(res.ID), ttlSeconds);
  }

  /** The remaining TTL of lease `id` in seconds, or -1 when etcd no longer has it. */
  static async remaining(client: Etcd3, id: string): Promise<number> {
    const res = await client.leaseClient.leaseTimeToLive({ ID: id, keys: false });
    return Number(res.TTL);
  }

  /** Keeps an existing lease alive (a restart taking its lease back); rejects when it is gone. */
  static async adopt(client: Etcd3, id: string, ttlSeconds: number): Promise<KeptLease> {
    const left = await KeptLease.remaining(client, id);
    if (left <= 0) throw new EtcdLeaseInvalidError(id);
    const lease = new KeptLease(client, id, ttlSeconds);
    // Renew at once: the remaining TTL may be short.
    await lease.keepaliveOnce();
    return lease;
  }

  /** One keepalive now, given up after `deadlineMs` (a stop must not wait on an etcd that is gone). */
  async renewOnce(deadlineMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no keepalive answer within ${deadlineMs} ms`)), deadlineMs);
    });
    try {
      await Promise.race([this.keepaliveOnce(), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops the keepalives; the lease expires by itself within its TTL (a restart takes it back before then). */
  release(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.stream?.end();
    this.stream = undefined;
  }

  /** Revokes the lease: every key under it goes at once. */
  async revoke(deadlineMs = 2_000): Promise<void> {
    this.release();
    try {
      await this.client.leaseClient.leaseRevoke({ ID: this.id }, { deadline: Date.now() + deadlineMs });
    } catch (err) {
      if (!(err instanceof EtcdLeaseInvalidError)) throw err;
    }
  }

  private async keepaliveOnce(): Promise<void> {
    const stream = await this.client.leaseClient.leaseKeepAlive();
    try {
      const res = await new Promise<ILeaseKeepAliveResponse>((resolve, reject) => {
        stream.on('data', resolve);
        stream.on('error', reject);
        stream.write({ ID: this.id });
      });
      if (Number(res.TTL) <= 0) throw new EtcdLeaseInvalidError(this.id);
      this.lastAliveMs = Date.now();
    } finally {
      stream.end();
    }
  }

  private loop(): void {
    if (this.closed) return;
    this.schedule(this.every());
  }

  private every(): number {
    return Math.max(500, (this.ttlSeconds * 1000) / 3);
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  /**
   * One keepalive. A stream that answered nothing since the last tick is
   * replaced (a member that died without a reset leaves it silent until
   * gRPC's own keepalive notices, 15 s later): the pool picks a live member.
   * Lost only after two TTLs without an answer, as etcd3's Lease does: if the
   * lease ran out meanwhile, etcd says so on the next answer anyway.
   */
  private async tick(): Promise<void> {
    if (this.closed) return;
    const silentMs = Date.now() - this.lastAliveMs;
    if (silentMs > 2 * this.ttlSeconds * 1000) return this.lose(new LeaseSilentError(this.ttlSeconds));
    if (this.stream && silentMs > this.every() + 1_000) {
      this.stream.end();
      this.stream = undefined;
    }
    try {
      if (!this.stream) await this.open();
      this.stream?.write({ ID: this.id });
    } catch {
      this.stream = undefined; // reopened on the next tick
    }
    this.schedule(this.every());
  }

  private async open(): Promise<void> {
    const stream = await this.client.leaseClient.leaseKeepAlive();
    if (this.closed) {
      stream.end();
      return;
    }
    stream.on('data', (res: ILeaseKeepAliveResponse) => {
      if (Number(res.TTL) <= 0) this.lose(new EtcdLeaseInvalidError(this.id));
      else this.lastAliveMs = Date.now();
    });
    stream.on('error', () => {
      if (this.stream !== stream) return;
      this.stream = undefined;
      // Soon, on another stream (another member), not a whole interval later.
      this.schedule(250);
    });
    stream.on('end', () => {
      if (this.stream === stream) this.stream = undefined;
    });
    this.stream = stream;
  }

  private lose(err: Error): void {
    if (this.closed) return;
    this.release();
    this.emit('lost', err);
  }
}
