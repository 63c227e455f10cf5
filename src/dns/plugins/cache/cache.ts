import { Rcode } from '../../../errors.js';
import type { Metrics } from '../../../metrics/metrics.js';
import type { Next, MaybePromise, Plugin, PluginStage } from '../../pipeline.js';
import type { DnsReply, DnsRequest } from '../../request.js';
import { ExpiringMap } from '../../expiring-map.js';
import { HEADER_SIZE, TYPE, messageRecords, rewriteTtls } from '../../wire.js';
import { setup, type CacheOptions } from './setup.js';

export type { CacheOptions };

/** RFC 8767 §4: a stale answer goes out with a TTL of 30 s. */
export const STALE_ANSWER_TTL = 30;

/**
 * One cached answer. The message is kept as a latin1 string: about a tenth
 * of the memory of a Buffer per entry (no typed-array object, no slab
 * share), and a hit copies it anyway to patch TTLs.
 */
interface Entry {
  readonly message: string;
  readonly storedAt: number;
  /** Set by a hit, cleared by eviction's second chance (CLOCK): popular answers survive floods of one-off names. */
  used: boolean;
  /** Freshness lifetime, seconds. */
  readonly ttl: number;
  readonly rcode: number;
  /**
   * The reply as last rendered, for the age (whole seconds) it was rendered
   * at: every hit within the same second returns it as is, so a popular
   * answer costs a map read, like a canonical one, instead of a copy and a
   * TTL rewrite per query. Replies are never mutated (the server copies).
   */
  rendered: DnsReply | null;
  renderedAge: number;
}

/**
 * The forwarding cache: whole upstream answers kept as bytes and keyed by
 * name, type, class and DO bit. A hit copies the bytes and rewrites each
 * record's TTL to what remains. Freshness uses the injected clock (so TTL
 * tests need no sleeping); an entry is kept until it is past even the
 * serve-stale window (ExpiringMap: expired on read, swept a batch at a time).
 * At most `maxEntries` (--cache-size), evicted before each new one.
 */
export class CacheStage implements PluginStage<CacheOptions> {
  readonly name = 'cache';
  /** Bounded by opts.maxEntries: makeRoom() runs before every new key. */
  private readonly store: ExpiringMap<Entry>;
  private opts: CacheOptions;

  constructor(
    opts: CacheOptions,
    private readonly metrics: Metrics,
    private readonly now: () => number = Date.now,
  ) {
    this.opts = opts;
    this.store = new ExpiringMap<Entry>({ now, onSweep: (size) => this.metrics.cacheEntries.set(size) });
  }

  get size(): number {
    return this.store.size;
  }

  close(): void {
    this.store.close();
  }

  /** New limits from the next query on; a smaller size evicts down to it at once. */
  configure(opts: CacheOptions): void {
    this.opts = opts;
    while (this.store.size > opts.maxEntries) {
      const before = this.store.size;
      this.makeRoom(null, before - opts.maxEntries);
      if (this.store.size >= before) break;
    }
    this.metrics.cacheEntries.set(this.store.size);
  }

  flush(): void {
    this.store.clear();
    this.metrics.cacheEntries.set(0);
  }

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    const k = req.key;
    const entry = this.store.get(k);
    const now = this.now();
    if (entry) {
      const age = Math.floor((now - entry.storedAt) / 1000);
      if (age < entry.ttl) {
        entry.used = true;
        this.metrics.countCacheLookup('hit');
        if (entry.rendered === null || entry.renderedAge !== age) {
          entry.rendered = { message: this.render(entry, (t) => t - age), rcode: entry.rcode, source: 'cache' };
          entry.renderedAge = age;
        }
        return entry.rendered;
      }
    }
    this.metrics.countCacheLookup('miss');
    return Promise.resolve(next(req)).then((reply) => {
      if (reply.upstreamFailed) {
        const stale = this.store.get(k);
        if (stale && now - stale.storedAt <= (stale.ttl + this.opts.staleTtl) * 1000) {
          this.metrics.countCacheLookup('stale');
          return { message: this.render(stale, () => STALE_ANSWER_TTL), rcode: stale.rcode, source: 'stale' };
        }
        return reply;
      }
      return reply.source === 'forward' ? this.put(k, reply) : reply;
    });
  }

  /**
   * Stores a forwarded answer if RFC 2308 / TTL rules allow it, and returns
   * the reply to send: with its TTLs capped as stored, so the first client
   * sees the same TTLs as the ones served from the cache after it.
   */
  private put(k: string, reply: DnsReply): DnsReply {
    const msg = reply.message;
    if (this.opts.maxEntries === 0) return reply; // --cache-size 0: no cache
    if (msg.length < HEADER_SIZE || msg[2]! & 0x02) return reply; // TC answers are never cached
    const rcode = reply.rcode;
    if (rcode !== Rcode.NOERROR && rcode !== Rcode.NXDOMAIN) return reply;
    const records = messageRecords(msg);
    if (!records) return reply;
    let ttl: number;
    const positive = rcode === Rcode.NOERROR && records.some((r) => r.section === 0);
    if (positive) {
      ttl = Math.min(this.opts.maxTtl, ...records.filter((r) => r.type !== TYPE.OPT).map((r) => r.ttl));
    } else {
      // RFC 2308 §5: negative answers are cached for min(SOA TTL, SOA MINIMUM); without an SOA, not at all.
      const soa = records.find((r) => r.section === 1 && r.type === TYPE.SOA && r.rdlength >= 20);
      if (!soa) return reply;
      const minimum = msg.readUInt32BE(soa.rdataOffset + soa.rdlength - 4);
      ttl = Math.min(this.opts.maxNegativeTtl, soa.ttl, minimum);
    }
    if (!(ttl > 0)) return reply;
    const capped = Buffer.from(msg);
    const cap = positive ? this.opts.maxTtl : ttl;
    for (const r of records) if (r.type !== TYPE.OPT && r.ttl > cap) capped.writeUInt32BE(cap, r.ttlOffset);
    const entry: Entry = { message: capped.toString('latin1'), storedAt: this.now(), ttl, rcode, used: false, rendered: null, renderedAge: -1 };
    this.makeRoom(k);
    this.store.set(k, entry, ttl + this.opts.staleTtl);
    this.metrics.cacheEntries.set(this.store.size);
    return { ...reply, message: capped };
  }

  /**
   * Bounds the size: frees 1% by walking from the oldest, second-chance
   * (CLOCK) style: an entry hit since the last pass moves to the back once
   * instead of going, so a flood of one-off names cannot push out the
   * answers clients keep asking for. Reads only the oldest entries, never
   * the whole map.
   */
  private makeRoom(k: string | null, atLeast = 1): void {
    if (k !== null && (this.store.size < this.opts.maxEntries || this.store.has(k))) return;
    const target = Math.max(atLeast, Math.ceil(this.opts.maxEntries / 100));
    const victims: string[] = [];
    const spared: string[] = [];
    for (const [key, e, live] of this.store.entries()) {
      if (victims.length >= target) break;
      // Bound the walk: past ten times the target, the oldest go whether used or not.
      if (live && e.used && spared.length < target * 10) {
        e.used = false;
        spared.push(key);
      } else {
        victims.push(key);
      }
    }
    for (const key of victims) this.store.delete(key);
    // Moved after the walk, so it never meets them again.
    for (const key of spared) this.store.moveToBack(key);
  }

  private render(entry: Entry, ttlFor: (orig: number) => number): Buffer {
    const out = Buffer.from(entry.message, 'latin1');
    rewriteTtls(out, ttlFor);
    return out;
  }
}

export const cachePlugin: Plugin<CacheOptions> = {
  name: 'cache',
  setup,
  create: (deps, opts) => new CacheStage(opts, deps.metrics, deps.now),
};
