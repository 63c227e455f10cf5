import { CoalescingQueue } from '../concurrency.js';
import { FollowedName } from '../discovery/follow.js';
import type { DiscoveryReader } from '../discovery/model.js';
import { GrpcStatus, errorToGrpcStatus } from '../errors.js';
import type { Logger } from '../log.js';
import type { Resolution } from './resolution.js';

/**
 * The names Watch streams follow, each resolved once however many streams
 * watch it, again at its TTL and whenever the discovery says answers may
 * have changed. Resolutions go through a queue of their own with at most
 * `concurrency` in flight, so Watch streams never take the forwarder's
 * in-flight share from DNS clients (issue 21, finding 9: 2,000 distinct
 * names each resolving on its own filled the forwarder's cap, and 1,198
 * streams ended UNAVAILABLE). A name nobody watches any more is dropped
 * with its timer: nothing is kept for nobody.
 */

/** One stream following a name. */
export interface Watcher {
  /** A resolution of the name (possibly the same as the last one: the watcher compares). */
  deliver(r: Resolution): void;
  /** Resolving failed; `transient` (UNAVAILABLE, INTERNAL) failures keep the last answer when there is one. */
  fail(err: unknown, transient: boolean): void;
}

/**
 * Lookups in flight at once for streams that follow names, Watch's and
 * xDS's each: 32, and at most an eighth of the forwarder's in-flight cap
 * (maxInflight; a lookup may ask the upstreams for A and AAAA), so
 * streams never crowd DNS clients out of the forwarder. Their own limit,
 * not the forwarder's: a flood of names waits in their queues instead of
 * failing UNAVAILABLE at the forwarder's cap.
 */
export function streamLookupConcurrency(maxInflight: number): number {
  return Math.max(1, Math.min(32, Math.floor(maxInflight / 8)));
}

export interface WatchHubOptions {
  resolve(name: string): Promise<Resolution>;
  /** Re-resolve period: fixed (tests), else the answer's TTL with this floor. */
  intervalMs?: number | undefined;
  minIntervalMs: number;
  /** Resolutions in flight at once, every watched name together (read as they start: it follows a reload). */
  concurrency: () => number;
  logger: Logger;
  /** What answers are built from (discovery/follow.ts): a change re-resolves only the names it touched. Without it: every name. */
  discovery?: Pick<DiscoveryReader, 'dependencyOn' | 'isCurrent'> | undefined;
}

interface Entry {
  name: string;
  /** The streams following it: at most the Watch stream bound in total (watchMaxStreams), one entry each. */
  watchers: Set<Watcher>;
  last: Resolution | undefined;
  timer: NodeJS.Timeout | undefined;
  followed: FollowedName | undefined;
}

export class WatchHub {
  /** Watched names: at most one per open Watch stream. */
  private readonly entries = new Map<string, Entry>();
  /** Names waiting for a resolution or being resolved, each once: no more than `entries`. */
  private readonly resolutions: CoalescingQueue<Entry>;
  private closed = false;

  constructor(private readonly o: WatchHubOptions) {
    this.resolutions = new CoalescingQueue((e) => this.resolveOne(e), {
      concurrency: o.concurrency,
      live: (e) => this.entries.get(e.name) === e,
      onError: (err, e) => o.logger.error({ err, name: e.name }, 'Watch: resolving failed'),
    });
  }

  /** Distinct names watched. */
  get size(): number {
    return this.entries.size;
  }

  /** `w` follows `name` from now on: the current answer at once when there is one. Returns how to stop. */
  add(name: string, w: Watcher): () => void {
    let entry = this.entries.get(name);
    if (!entry) {
      entry = { name, watchers: new Set(), last: undefined, timer: undefined, followed: this.o.discovery ? new FollowedName(this.o.discovery) : undefined };
      this.entries.set(name, entry);
      this.enqueue(entry);
    } else if (entry.last) {
      const last = entry.last;
      queueMicrotask(() => entry!.watchers.has(w) && w.deliver(last));
    }
    entry.watchers.add(w);
    const e = entry;
    return () => {
      e.watchers.delete(w);
      if (e.watchers.size === 0 && this.entries.get(name) === e) {
        clearTimeout(e.timer);
        this.entries.delete(name);
        if (this.entries.size === 0) this.resolutions.clear();
      }
    };
  }

  /** Answers may have changed (a reload, a learned address, the cluster view): every name whose answer may have is resolved again. */
  refreshAll(): void {
    for (const e of this.entries.values()) if (!e.followed?.unchanged()) this.enqueue(e);
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) clearTimeout(e.timer);
    this.entries.clear();
    this.resolutions.close();
  }

  private enqueue(e: Entry): void {
    if (this.closed) return;
    clearTimeout(e.timer);
    e.timer = undefined;
    this.resolutions.enqueue(e);
  }

  private async resolveOne(e: Entry): Promise<void> {
    let next: number;
    const begun = e.followed?.begin();
    try {
      const r = await this.o.resolve(e.name);
      if (this.entries.get(e.name) !== e) return;
      e.followed?.settle(begun, r.port);
      e.last = r;
      for (const w of [...e.watchers]) w.deliver(r);
      next = this.o.intervalMs ?? Math.max(this.o.minIntervalMs, r.ttl * 1000);
    } catch (err) {
      if (this.entries.get(e.name) !== e) return;
      e.followed?.settle(begun, undefined);
      const code = errorToGrpcStatus(err);
      const transient = code === GrpcStatus.INTERNAL || code === GrpcStatus.UNAVAILABLE;
      if (transient && e.last) {
        this.o.logger.warn({ err, name: e.name, watchers: e.watchers.size }, 'Watch: re-resolve failed; keeping the last answer');
      }
      for (const w of [...e.watchers]) w.fail(err, transient);
      // Tried again when the last answer would have been: at its TTL.
      next = this.o.intervalMs ?? Math.max(this.o.minIntervalMs, (e.last?.ttl ?? 0) * 1000);
    }
    if (this.closed || this.entries.get(e.name) !== e || e.watchers.size === 0) return;
    clearTimeout(e.timer);
    e.timer = setTimeout(() => this.enqueue(e), next);
  }
}
