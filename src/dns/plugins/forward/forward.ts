import { randomFillSync } from 'node:crypto';
import type { HostPort } from '../../../config/address.js';
import { formatHostPort } from '../../../config/address.js';
import { Rcode } from '../../../errors.js';
import type { Metrics } from '../../../metrics/metrics.js';
import type { Logger } from '../../../log.js';
import { bareReply } from '../../message.js';
import type { Stage } from '../../pipeline.js';
import type { RateLimiter } from '../../rate-limit.js';
import type { DnsReply, DnsRequest } from '../../request.js';
import type { UpstreamClient } from '../../upstream.js';
import { HEADER_SIZE } from '../../wire.js';
import { refused, type AclStage } from '../acl/acl.js';

/** Tries at drawing a marking spelling before the question goes out unmarked. */
const MARK_TRIES = 16;

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

export interface ForwardOptions {
  upstreams: () => readonly HostPort[];
  client: UpstreamClient;
  acl: AclStage;
  rateLimiter: RateLimiter;
  /** Distinct upstream queries in flight at once; beyond it SERVFAIL at once. */
  maxInflight: () => number;
  metrics: Metrics;
  logger: Logger;
  /** Clock (ms) for upstream backoff. */
  now: () => number;
}

/** A timed-out upstream is tried last for 1 s, doubling per further failure, up to this. */
const MAX_BACKOFF_MS = 60_000;

const OUTCOME: Record<number, string> = { [Rcode.SERVFAIL]: 'servfail', [Rcode.REFUSED]: 'refused', [Rcode.NOTIMP]: 'notimp', [Rcode.FORMERR]: 'formerr' };

/**
 * The upstreams, in order: a timeout, SERVFAIL, REFUSED or unusable reply
 * moves on to the next; when all fail the reply says so (`upstreamFailed`)
 * and the cache may serve stale. Identical questions in flight share one
 * upstream query, and the number in flight is capped, so memory stays
 * bounded however fast clients send.
 */
export class ForwardStage implements Stage {
  readonly name = 'forward';
  private readonly inflight = new Map<string, Promise<DnsReply>>();
  /** Upstreams that timed out or failed at the socket level, and until when they go last. */
  private readonly backoff = new Map<string, { failures: number; until: number }>();
  private loopLoggedAt = -Infinity;
  /** Questions out to upstreams right now, exactly as spelled on the wire. */
  private readonly outgoing = new Set<string>();

  constructor(private readonly o: ForwardOptions) {}

  serve(req: DnsRequest): DnsReply | Promise<DnsReply> {
    if (req.transport !== 'internal') {
      if (!this.o.acl.mayForward(req.client.address)) return refused(req);
      if (!this.o.rateLimiter.allow(req.client.address)) {
        this.o.metrics.dnsDropped.inc({ reason: 'ratelimit' });
        return refused(req);
      }
    }
    const shared = this.inflight.get(req.key);
    if (shared) return this.isLoop(req) ? this.breakLoop(req) : shared;
    if (this.inflight.size >= this.o.maxInflight()) {
      this.o.metrics.dnsDropped.inc({ reason: 'inflight_cap' });
      return this.failed(req);
    }
    const p = this.resolve(req).finally(() => {
      this.inflight.delete(req.key);
      this.o.metrics.inflight.set(this.inflight.size);
    });
    this.inflight.set(req.key, p);
    this.o.metrics.inflight.set(this.inflight.size);
    return p;
  }

  private async resolve(req: DnsRequest): Promise<DnsReply> {
    const q = req.query;
    const { question, marked } = mixCase(req.raw.subarray(HEADER_SIZE, q.questionEnd));
    if (!marked) return this.tryUpstreams(req, question);
    // Remember our exact spelling while it is out: if it comes back to us, it is a loop.
    const spelling = question.toString('latin1');
    this.outgoing.add(spelling);
    try {
      return await this.tryUpstreams(req, question);
    } finally {
      this.outgoing.delete(spelling);
    }
  }

  private async tryUpstreams(req: DnsRequest, question: Buffer): Promise<DnsReply> {
    const q = req.query;
    for (const up of this.ordered()) {
      const label = formatHostPort(up);
      const started = performance.now();
      const r = await this.o.client.query(up, { question, dnssecOk: q.edns?.do ?? false, checkingDisabled: q.cd });
      this.o.metrics.upstreamDuration.observe({ upstream: label }, (performance.now() - started) / 1000);
      if (r.kind === 'answer') {
        this.backoff.delete(label);
        if (r.rcode === Rcode.NOERROR || r.rcode === Rcode.NXDOMAIN) {
          this.o.metrics.upstreamQueries.inc({ upstream: label, outcome: r.transport === 'tcp' ? 'ok_tcp' : 'ok' });
          return { message: r.message, rcode: r.rcode, source: 'forward' };
        }
        this.o.metrics.upstreamQueries.inc({ upstream: label, outcome: OUTCOME[r.rcode] ?? `rcode_${r.rcode}` });
      } else {
        this.o.metrics.upstreamQueries.inc({ upstream: label, outcome: r.kind });
        const b = this.backoff.get(label) ?? { failures: 0, until: 0 };
        b.failures++;
        b.until = this.o.now() + Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (b.failures - 1));
        this.backoff.set(label, b);
        if (r.kind === 'error') this.o.logger.debug({ code: 'CP_UPSTREAM_ERROR', upstream: label, reason: r.reason }, 'upstream error');
      }
    }
    this.o.logger.debug({ code: 'CP_UPSTREAM_FAILED', name: q.lname, qtype: q.qtype }, 'every upstream failed');
    return this.failed(req);
  }

  /**
   * A question we are forwarding right now that arrives spelled exactly as we
   * spelled it (our random letter case) is our own query coming back: a stub
   * resolver (systemd-resolved, dnsmasq) that routes the zone to us again.
   * Waiting would deadlock until the timeout, on every lookup. A client
   * asking the same name at the same time in the requester's spelling, or in
   * one case, cannot match the mark (see mixCase), so it shares the answer.
   */
  private isLoop(req: DnsRequest): boolean {
    return this.outgoing.has(req.raw.toString('latin1', HEADER_SIZE, req.query.questionEnd));
  }

  /**
   * Breaks the loop at once: an in-zone name gets NXDOMAIN (which the local
   * stage turns into NODATA when the upstream relays it back to us), any
   * other SERVFAIL. Logged with CP_FORWARD_LOOP, once a minute at most.
   */
  private breakLoop(req: DnsRequest): DnsReply {
    this.o.metrics.dnsDropped.inc({ reason: 'forward_loop' });
    const now = this.o.now();
    if (now - this.loopLoggedAt > 60_000) {
      this.loopLoggedAt = now;
      this.o.logger.warn(
        { code: 'CP_FORWARD_LOOP', name: req.query.lname, from: req.client.address },
        'forwarding loop: an upstream sent our own query back; set --upstream to a resolver that does not route these names to canonport',
      );
    }
    const rcode = req.cls.kind === 'outside' ? Rcode.SERVFAIL : Rcode.NXDOMAIN;
    return { message: bareReply(req.raw, req.query.questionEnd, rcode), rcode, source: 'forward' };
  }

  /**
   * Upstreams in configured order, except that one which recently timed out
   * goes last until its backoff ends: a dead first upstream must not cost
   * every query a timeout. All are still tried, so nothing is lost.
   */
  private ordered(): readonly HostPort[] {
    const ups = this.o.upstreams();
    if (this.backoff.size === 0) return ups;
    const now = this.o.now();
    const down = (u: HostPort) => (this.backoff.get(formatHostPort(u))?.until ?? 0) > now;
    return [...ups.filter((u) => !down(u)), ...ups.filter(down)];
  }

  private failed(req: DnsRequest): DnsReply {
    return {
      message: bareReply(req.raw, req.query.questionEnd, Rcode.SERVFAIL),
      rcode: Rcode.SERVFAIL,
      source: 'forward',
      upstreamFailed: true,
    };
  }
}
