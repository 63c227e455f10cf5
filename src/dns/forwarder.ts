import { randomFillSync } from 'node:crypto';
import { formatHostPort, type HostPort } from '../config/address.js';
import { ErrorCodes, Rcode } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { UpstreamClient } from './upstream.js';

/**
 * The upstream resolvers as one shared service: whoever needs an answer
 * from the real DNS (the forward plugin for clients' queries, the
 * discovery core for the addresses of in-zone hosts) asks here, so both
 * get the same ordering, backoff, coalescing, in-flight cap, 0x20 spelling
 * and loop detection, and neither goes through the other.
 */

export interface ForwarderOptions {
  upstreams: readonly HostPort[];
  /** Per-upstream timeout, ms. */
  timeoutMs: number;
  /** Distinct upstream queries in flight at once; beyond it the query fails at once. */
  maxInflight: number;
}

export interface ForwarderDeps {
  metrics: Metrics;
  logger: Logger;
  /** Clock (ms) for upstream backoff. */
  now: () => number;
}

/** A question to send: the question section's bytes (name, type, class) and the flags that travel with it. */
export interface Question {
  /** Coalescing key: identical questions in flight share one upstream query. */
  key: string;
  wire: Buffer;
  dnssecOk: boolean;
  checkingDisabled: boolean;
}

export type Forwarded =
  /** An upstream's answer: NOERROR or NXDOMAIN, without the upstream's OPT and with AA cleared. */
  | { kind: 'answer'; message: Buffer; rcode: number }
  /**
   * Every upstream answered, and each refused the question (REFUSED,
   * FORMERR or NOTIMP): a definitive word, not a failure. `rcode` is the
   * first upstream's.
   */
  | { kind: 'refused'; rcode: number }
  /** Nobody answered usefully: timeouts, SERVFAIL, unusable replies, or no upstream at all. */
  | { kind: 'failed'; why: 'upstreams' | 'inflight-cap' | 'no-upstream' };

/** Tries at drawing a marking spelling before the question goes out unmarked. */
const MARK_TRIES = 16;
/** A timed-out upstream is tried last for 1 s, doubling per further failure, up to this. */
const MAX_BACKOFF_MS = 60_000;
const OUTCOME: Record<number, string> = { [Rcode.SERVFAIL]: 'servfail', [Rcode.REFUSED]: 'refused', [Rcode.NOTIMP]: 'notimp', [Rcode.FORMERR]: 'formerr' };
/** Rcodes that say "not this question, not from me": asking the same upstream again will not change them. */
const REFUSALS = new Set<number>([Rcode.REFUSED, Rcode.FORMERR, Rcode.NOTIMP]);

/**
 * CSPRNG octets drawn 4 KiB at a time. randomBytes() per forwarded query
 * was a call into OpenSSL plus a Buffer each time: 4.5% of a cold forward
 * under perf. (randomInt, used for query IDs, pools the same way inside Node.)
 */
const entropy = Buffer.allocUnsafe(4096);
let entropyUsed = entropy.length;
function randomOctet(): number {
  if (entropyUsed === entropy.length) {
    randomFillSync(entropy);
    entropyUsed = 0;
  }
  return entropy[entropyUsed++]!;
}

/**
 * The question as we send it upstream, with each letter's case chosen at
 * random (DNS 0x20). The spelling adds entropy an off-path spoofer must
 * guess (replies are still matched case-insensitively, RFC 5452, since some
 * servers do not preserve case), and it marks the query as ours, so a loop
 * can be recognised when it comes back.
 *
 * A mark is only worth something if no honest client would send it: it must
 * differ from the requester's own spelling (else a second client asking the
 * same thing at the same moment is taken for our query coming back) and mix
 * both cases (clients send all-lowercase, or as typed). A name with fewer
 * than two letters (the root `.`, a name of digits) cannot carry such a
 * mark, so it goes out `marked: false` and is never called a loop; a loop
 * on such a name costs one upstream timeout, nothing worse.
 */
export function mixCase(question: Buffer): { question: Buffer; marked: boolean } {
  const nameEnd = question.length - 4;
  const letters: number[] = [];
  for (let i = 0; i < nameEnd; i++) {
    const c = question[i]! | 0x20;
    if (c >= 97 && c <= 122) letters.push(i);
  }
  const out = Buffer.from(question);
  if (letters.length < 2) return { question: out, marked: false };
  for (let attempt = 0; attempt < MARK_TRIES; attempt++) {
    let bits = 0;
    let upper = 0;
    let same = true;
    for (let k = 0; k < letters.length; k++) {
      if ((k & 7) === 0) bits = randomOctet();
      const i = letters[k]!;
      const lower = question[i]! | 0x20;
      const c = bits & (1 << (k & 7)) ? lower - 32 : lower;
      if (c < 97) upper++;
      if (c !== question[i]) same = false;
      out[i] = c;
    }
    if (!same && upper > 0 && upper < letters.length) return { question: out, marked: true };
  }
  return { question: out, marked: false };
}

/**
 * The upstreams, in order: a timeout, SERVFAIL, REFUSED or unusable reply
 * moves on to the next. When every one refused (REFUSED, FORMERR, NOTIMP)
 * that is the answer (`refused`); any other failure among them makes it a
 * failure, which the cache may cover with a stale answer. Identical questions in flight share one upstream
 * query, and the number in flight is capped, so memory stays bounded
 * however fast clients send. Options are read per query, so a reload
 * applies to the next one.
 */
export class Forwarder {
  private opts: ForwarderOptions;
  private readonly client: UpstreamClient;
  /** Distinct questions out to the upstreams: at most maxInflight (past it SERVFAIL at once). */
  private readonly inflight = new Map<string, Promise<Forwarded>>();
  /** Upstreams that timed out or failed at the socket level, and until when they go last: the configured upstreams only. */
  private readonly backoff = new Map<string, { failures: number; until: number }>();
  /** Questions out to upstreams right now, exactly as spelled on the wire: one per entry of `inflight`. */
  private readonly outgoing = new Set<string>();
  private loopLoggedAt = -Infinity;

  constructor(
    private readonly deps: ForwarderDeps,
    opts: ForwarderOptions,
  ) {
    this.opts = opts;
    this.client = new UpstreamClient(
      () => this.opts.timeoutMs,
      (up, why) => {
        this.deps.metrics.upstreamMismatches.inc({ upstream: formatHostPort(up), reason: why });
        this.deps.logger.warn({ code: ErrorCodes.UPSTREAM_MISMATCH, upstream: formatHostPort(up), why }, 'dropped an upstream reply that did not match the query');
      },
    );
  }

  /** Applies new options to every query from now on; queries in flight finish as they started. */
  configure(opts: ForwarderOptions): void {
    this.opts = opts;
    const live = new Set(opts.upstreams.map(formatHostPort));
    for (const k of this.backoff.keys()) if (!live.has(k)) this.backoff.delete(k);
  }

  get upstreams(): readonly HostPort[] {
    return this.opts.upstreams;
  }

  /** Asks the upstreams; never rejects. Returns synchronously only when it fails at once. */
  query(q: Question): Forwarded | Promise<Forwarded> {
    const shared = this.inflight.get(q.key);
    if (shared) return shared;
    if (this.opts.upstreams.length === 0) return { kind: 'failed', why: 'no-upstream' };
    if (this.inflight.size >= this.opts.maxInflight) {
      this.deps.metrics.dnsDropped.inc({ reason: 'inflight_cap' });
      return { kind: 'failed', why: 'inflight-cap' };
    }
    const p = this.send(q).finally(() => {
      this.inflight.delete(q.key);
      this.deps.metrics.inflight.set(this.inflight.size);
    });
    this.inflight.set(q.key, p);
    this.deps.metrics.inflight.set(this.inflight.size);
    return p;
  }

  /**
   * A question we are forwarding right now that arrives spelled exactly as we
   * spelled it (our random letter case) is our own query coming back: a stub
   * resolver (systemd-resolved, dnsmasq) that routes the name to us again.
   * Waiting for it would deadlock until the timeout, on every lookup. A client
   * asking the same name at the same moment in its own spelling, or in one
   * case, cannot match the mark (see mixCase).
   *
   * `wire` is the question section as received. A loop found is counted and
   * logged (CP_FORWARD_LOOP, once a minute at most).
   */
  isLoop(wire: Buffer, name: string, from: string): boolean {
    if (this.outgoing.size === 0 || !this.outgoing.has(wire.toString('latin1'))) return false;
    this.deps.metrics.dnsDropped.inc({ reason: 'forward_loop' });
    const now = this.deps.now();
    if (now - this.loopLoggedAt > 60_000) {
      this.loopLoggedAt = now;
      this.deps.logger.warn(
        { code: ErrorCodes.FORWARD_LOOP, name, from },
        'forwarding loop: an upstream sent our own query back; set --upstream to a resolver that does not route these names to canonport',
      );
    }
    return true;
  }

  private async send(q: Question): Promise<Forwarded> {
    const { question, marked } = mixCase(q.wire);
    if (!marked) return this.tryUpstreams(q, question);
    // Remember our exact spelling while it is out: if it comes back to us, it is a loop.
    const spelling = question.toString('latin1');
    this.outgoing.add(spelling);
    try {
      return await this.tryUpstreams(q, question);
    } finally {
      this.outgoing.delete(spelling);
    }
  }

  private async tryUpstreams(q: Question, question: Buffer): Promise<Forwarded> {
    const { metrics } = this.deps;
    /** The first refusal, while every upstream tried has refused; null once one failed otherwise. */
    let refused: number | null | undefined;
    for (const up of this.ordered()) {
      const label = formatHostPort(up);
      const started = performance.now();
      const r = await this.client.query(up, { question, dnssecOk: q.dnssecOk, checkingDisabled: q.checkingDisabled });
      metrics.upstreamDuration.observe({ upstream: label }, (performance.now() - started) / 1000);
      if (r.kind === 'answer') {
        this.backoff.delete(label);
        if (r.rcode === Rcode.NOERROR || r.rcode === Rcode.NXDOMAIN) {
          metrics.upstreamQueries.inc({ upstream: label, outcome: r.transport === 'tcp' ? 'ok_tcp' : 'ok' });
          // Relayed data is not ours to vouch for (RFC 1035 §4.1.1: AA is for the authority of the zone):
          // cleared here, so neither the client nor the cache ever sees an upstream's AA.
          r.message[2] = r.message[2]! & ~0x04;
          return { kind: 'answer', message: r.message, rcode: r.rcode };
        }
        metrics.upstreamQueries.inc({ upstream: label, outcome: OUTCOME[r.rcode] ?? `rcode_${r.rcode}` });
        refused = REFUSALS.has(r.rcode) && refused !== null ? (refused ?? r.rcode) : null;
      } else {
        refused = null;
        metrics.upstreamQueries.inc({ upstream: label, outcome: r.kind });
        const b = this.backoff.get(label) ?? { failures: 0, until: 0 };
        b.failures++;
        b.until = this.deps.now() + Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (b.failures - 1));
        this.backoff.set(label, b);
        if (r.kind === 'error') this.deps.logger.debug({ code: ErrorCodes.UPSTREAM_ERROR, upstream: label, reason: r.reason }, 'upstream error');
      }
    }
    if (typeof refused === 'number') return { kind: 'refused', rcode: refused };
    this.deps.logger.debug({ code: ErrorCodes.UPSTREAM_FAILED, key: q.key }, 'every upstream failed');
    return { kind: 'failed', why: 'upstreams' };
  }

  /**
   * Upstreams in configured order, except that one which recently timed out
   * goes last until its backoff ends: a dead first upstream must not cost
   * every query a timeout. All are still tried, so nothing is lost.
   */
  private ordered(): readonly HostPort[] {
    const ups = this.opts.upstreams;
    if (this.backoff.size === 0) return ups;
    const now = this.deps.now();
    const down = (u: HostPort) => (this.backoff.get(formatHostPort(u))?.until ?? 0) > now;
    return [...ups.filter((u) => !down(u)), ...ups.filter(down)];
  }
}
