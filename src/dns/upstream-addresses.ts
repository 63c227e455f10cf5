import type { AddressAnswer, AddressResolver } from '../discovery/discovery.js';
import { Rcode } from '../errors.js';
import { ExpiringMap } from './expiring-map.js';
import type { Forwarded, Forwarder } from './forwarder.js';
import { answerAddresses, encodeQuestion, TYPE } from './wire.js';

/**
 * The addresses of in-zone host names from the upstream resolvers, for the
 * discovery core: A and AAAA asked together through the shared Forwarder,
 * the answer kept for its TTL (negative answers for what their SOA allows,
 * RFC 2308), and served stale for a while when every upstream fails
 * (RFC 8767), as the forwarding cache does for forwarded names.
 */

export interface UpstreamAddressesOptions {
  /** Host names kept at most (the oldest 1% go when full). */
  maxEntries: number;
  /** Cap on positive TTLs, seconds. */
  maxTtl: number;
  /** Cap on negative TTLs, seconds. */
  maxNegativeTtl: number;
  /** How long past expiry an answer may still be served when the upstreams fail, seconds. */
  staleTtl: number;
}

interface Entry {
  readonly v4: readonly string[];
  readonly v6: readonly string[];
  /** When it was stored and for how long it is fresh (ms, s). */
  readonly storedAt: number;
  readonly ttl: number;
}

/** RFC 8767 §4: a stale answer goes out with a TTL of 30 s. */
const STALE_TTL = 30;

export class UpstreamAddresses implements AddressResolver {
  readonly source = 'upstream' as const;
  /** Bounded by opts.maxEntries (put() evicts the oldest 1% when full). */
  private store: ExpiringMap<Entry>;
  private readonly inflight = new Map<string, Promise<AddressAnswer>>();
  private gen = 0;

  constructor(
    private readonly forwarder: Forwarder,
    private opts: UpstreamAddressesOptions,
    private readonly now: () => number = Date.now,
    /** Called when an answer appears or changes, so answers that use it can be rebuilt. */
    private readonly onLearned: () => void = () => {},
  ) {
    this.store = new ExpiringMap<Entry>({ now });
  }

  get generation(): number {
    return this.gen;
  }

  configure(opts: UpstreamAddressesOptions): void {
    this.opts = opts;
  }

  close(): void {
    this.store.close();
  }

  peek(host: string): AddressAnswer | null {
    const e = this.store.get(host);
    if (!e) return null;
    const left = e.ttl - Math.floor((this.now() - e.storedAt) / 1000);
    if (left <= 0) return null;
    return answerOf(e, left);
  }

  resolve(host: string): Promise<AddressAnswer> {
    const shared = this.inflight.get(host);
    if (shared) return shared;
    const p = this.ask(host).finally(() => this.inflight.delete(host));
    this.inflight.set(host, p);
    return p;
  }

  private async ask(host: string): Promise<AddressAnswer> {
    const [a, aaaa] = await Promise.all([this.query(host, TYPE.A), this.query(host, TYPE.AAAA)]);
    if (a.kind === 'failed' && aaaa.kind === 'failed') {
      const stale = this.store.get(host);
      if (stale && this.now() - stale.storedAt <= (stale.ttl + this.opts.staleTtl) * 1000) return answerOf(stale, STALE_TTL);
      return { kind: 'failed', reason: a.reason };
    }
    const v4 = a.kind === 'ok' ? a.addresses : [];
    const v6 = aaaa.kind === 'ok' ? aaaa.addresses : [];
    const ok = [a, aaaa].filter((r): r is Asked & { kind: 'ok' } => r.kind === 'ok');
    // Kept for as long as every part of it holds: a family's absence (NODATA) expires too.
    const keep = Math.min(...ok.map((r) => r.ttl));
    // Half an answer (one family failed) is used but not kept: the other half is unknown, not absent.
    if (ok.length === 2 && keep > 0) this.put(host, { v4, v6, storedAt: this.now(), ttl: keep });
    if (v4.length + v6.length === 0) return { kind: 'none', ttl: keep };
    return { kind: 'found', v4, v6, ttl: Math.min(...ok.filter((r) => r.addresses.length > 0).map((r) => r.ttl)) };
  }

  private async query(host: string, qtype: number): Promise<Asked> {
    let r: Forwarded;
    try {
      const wire = encodeQuestion(host, qtype);
      r = await this.forwarder.query({ key: `${host}|${qtype}|1|0`, wire, dnssecOk: false, checkingDisabled: false });
    } catch (err) {
      return { kind: 'failed', reason: (err as Error).message };
    }
    // No upstream configured: the local sources are all there is, so the address is unknown, not failed.
    if (r.kind === 'failed' && r.why === 'no-upstream') return { kind: 'ok', addresses: [], ttl: 0 };
    if (r.kind === 'failed') return { kind: 'failed', reason: r.why === 'upstreams' ? 'every upstream failed' : r.why };
    // A refusal says nothing about whether the host has addresses: unknown, as for a failure.
    if (r.kind === 'refused') return { kind: 'failed', reason: `every upstream refused (rcode ${r.rcode})` };
    if (r.rcode !== Rcode.NOERROR && r.rcode !== Rcode.NXDOMAIN) return { kind: 'failed', reason: `upstream rcode ${r.rcode}` };
    const parsed = answerAddresses(r.message);
    if (!parsed) return { kind: 'failed', reason: 'malformed upstream answer' };
    const addresses = qtype === TYPE.A ? parsed.v4 : parsed.v6;
    if (addresses.length > 0) return { kind: 'ok', addresses, ttl: Math.min(parsed.ttl, this.opts.maxTtl) };
    // No SOA: RFC 2308 says do not cache the negative answer at all.
    return { kind: 'ok', addresses: [], ttl: parsed.negativeTtl === null ? 0 : Math.min(parsed.negativeTtl, this.opts.maxNegativeTtl) };
  }

  private put(host: string, e: Entry): void {
    const before = this.store.get(host);
    if (!before && this.store.size >= this.opts.maxEntries) {
      // Full: drop the oldest 1%.
      const drop: string[] = [];
      for (const [key] of this.store.entries()) {
        if (drop.length >= Math.max(1, Math.ceil(this.opts.maxEntries / 100))) break;
        drop.push(key);
      }
      for (const key of drop) this.store.delete(key);
    }
    this.store.set(host, Object.freeze(e), e.ttl + this.opts.staleTtl);
    if (!before || !sameAddresses(before, e)) {
      this.gen++;
      this.onLearned();
    }
  }
}

type Asked = { kind: 'ok'; addresses: string[]; ttl: number } | { kind: 'failed'; reason: string };

function answerOf(e: Entry, ttl: number): AddressAnswer {
  return e.v4.length + e.v6.length > 0 ? { kind: 'found', v4: e.v4, v6: e.v6, ttl } : { kind: 'none', ttl };
}

function sameAddresses(a: Entry, b: Entry): boolean {
  const key = (e: Entry) => [...e.v4, ...e.v6].sort().join(',');
  return key(a) === key(b);
}
