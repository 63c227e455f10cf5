/**
 * A Map whose entries expire, swept a little at a time. The forwarding
 * cache and the learned upstream addresses keep their entries here.
 *
 * Hand-written, not node-cache (used before) or lru-cache: node-cache keeps
 * its entries in a plain object and walks all of it at once, both in its
 * expiry sweep (every `checkperiod`) and in keys(), which eviction needs:
 * 130–200 ms of blocked event loop with 100,000 entries on the bench
 * machine, every two minutes and again on every eviction round of a full
 * cache (issue 24: the slow 1 % of queries). lru-cache's purge is one
 * synchronous walk too, and its auto-purge arms a timer per entry. Here:
 *
 * - a JavaScript Map, so iteration runs oldest first without copying the
 *   keys (eviction reads the oldest few), and an iterator survives the
 *   entries deleted and added while it is paused;
 * - expiry checked on every read (an expired entry is never returned), so
 *   the sweep only gives memory back: it runs every `sweepEveryMs` while
 *   the map holds anything (never on an empty one: an idle daemon is not
 *   woken), `sweepBatch` entries per turn of the event loop, so a query
 *   waits for at most one batch (about 0.1 ms).
 *
 * The size bound is the owner's: it evicts (its own policy) before set().
 */

export interface ExpiringMapOptions {
  /** Clock (ms); injected so TTL tests need no sleeping. */
  now?: (() => number) | undefined;
  /** How often a non-empty map is swept of expired entries (default 60 s). */
  sweepEveryMs?: number | undefined;
  /** Entries looked at per turn of the event loop during a sweep (default 1,000). */
  sweepBatch?: number | undefined;
  /** Told the new size after a sweep removed entries. */
  onSweep?: ((size: number) => void) | undefined;
}

interface Slot<V> {
  value: V;
  /** ms, on the injected clock. */
  expiresAt: number;
}

export class ExpiringMap<V> {
  private readonly map = new Map<string, Slot<V>>();
  private readonly now: () => number;
  private readonly sweepEveryMs: number;
  private readonly sweepBatch: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: IterableIterator<[string, Slot<V>]> | undefined;
  private pending: NodeJS.Immediate | undefined;
  private closed = false;

  constructor(private readonly opts: ExpiringMapOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.sweepEveryMs = opts.sweepEveryMs ?? 60_000;
    this.sweepBatch = opts.sweepBatch ?? 1_000;
  }

  get size(): number {
    return this.map.size;
  }

  /** The value, unless missing or expired (an expired entry is removed). */
  get(key: string): V | undefined {
    const slot = this.map.get(key);
    if (slot === undefined) return undefined;
    if (this.now() >= slot.expiresAt) {
      this.map.delete(key);
      return undefined;
    }
    return slot.value;
  }

  /** True when get() would return a value. */
  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Stores `value` for `lifetimeSeconds`; a new key goes to the back (the youngest), a known one keeps its place. */
  set(key: string, value: V, lifetimeSeconds: number): void {
    this.map.set(key, { value, expiresAt: this.now() + lifetimeSeconds * 1000 });
    this.scheduleSweep();
  }

  /** Moves a live entry to the back (a second chance in CLOCK eviction), keeping its expiry. */
  moveToBack(key: string): void {
    const slot = this.map.get(key);
    if (slot === undefined) return;
    this.map.delete(key);
    this.map.set(key, slot);
  }

  delete(key: string): boolean {
    return this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }

  /**
   * Every entry, oldest first, with whether it is still live, without
   * copying the keys (eviction reads the oldest few). Deleting and moving
   * the ones seen is safe; a moved one comes round again at the end.
   */
  *entries(): IterableIterator<[key: string, value: V, live: boolean]> {
    const now = this.now();
    for (const [key, slot] of this.map) yield [key, slot.value, now < slot.expiresAt];
  }

  /** Stops the sweep; the map stays readable. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.pending) clearImmediate(this.pending);
    this.timer = undefined;
    this.pending = undefined;
    this.sweeping = undefined;
  }

  private scheduleSweep(): void {
    if (this.timer || this.sweeping || this.closed || this.map.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.sweeping = this.map.entries();
      this.sweepSome();
    }, this.sweepEveryMs);
    this.timer.unref();
  }

  private sweepSome(): void {
    this.pending = undefined;
    const it = this.sweeping;
    if (!it || this.closed) return;
    const now = this.now();
    const before = this.map.size;
    for (let i = 0; i < this.sweepBatch; i++) {
      const next = it.next();
      if (next.done) {
        this.sweeping = undefined;
        break;
      }
      const [key, slot] = next.value;
      if (now >= slot.expiresAt) this.map.delete(key);
    }
    if (this.map.size !== before) this.opts.onSweep?.(this.map.size);
    if (this.sweeping) {
      this.pending = setImmediate(() => this.sweepSome());
      this.pending.unref();
    } else this.scheduleSweep();
  }
}
