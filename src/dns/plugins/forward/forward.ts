import { Rcode } from '../../../errors.js';
import type { Metrics } from '../../../metrics/metrics.js';
import type { Forwarded, Forwarder } from '../../forwarder.js';
import type { Plugin, PluginStage } from '../../pipeline.js';
import { questionRcode } from '../../question-policy.js';
import { RateLimiter } from '../../rate-limit.js';
import { errorReply } from '../../reply.js';
import type { DnsReply, DnsRequest } from '../../request.js';
import { HEADER_SIZE } from '../../wire.js';
import { setup, type ForwardOptions } from './setup.js';

/**
 * Names outside the served zones go to the upstreams: the client must be
 * allowed to recurse and within its rate, then the shared Forwarder asks.
 * When every upstream fails the reply says so (`upstreamFailed`) and the
 * cache before this stage may serve a stale answer.
 */
export class ForwardStage implements PluginStage<ForwardOptions> {
  readonly name = 'forward';
  private opts: ForwardOptions;
  private readonly limiter: RateLimiter;

  constructor(
    private readonly forwarder: Forwarder,
    private readonly metrics: Metrics,
    now: () => number,
    opts: ForwardOptions,
  ) {
    this.opts = opts;
    this.limiter = new RateLimiter(() => this.opts.rateLimit, now);
  }

  configure(opts: ForwardOptions): void {
    this.opts = opts;
  }

  serve(req: DnsRequest): DnsReply | Promise<DnsReply> {
    const from = req.client.address;
    if (!req.mayRecurse) return errorReply(req, Rcode.REFUSED, 'refused');
    const q = req.query;
    // Zone transfers, meta types and other classes are answered here, never sent upstream (question-policy.ts).
    const refusal = questionRcode(q.qtype, q.qclass);
    if (refusal !== null) return errorReply(req, refusal, refusal === Rcode.REFUSED ? 'refused' : 'error');
    // RD=0 asks what we hold, not that we go and find out: the cache before this stage answered what it
    // could; anything else is REFUSED, as unbound does (RFC 1034 §4.3.1: recursion only when RD asks for it).
    if (!q.rd) return errorReply(req, Rcode.REFUSED, 'refused');
    if (!this.limiter.allow(from)) {
      this.metrics.dnsDropped.inc({ reason: 'ratelimit' });
      return errorReply(req, Rcode.REFUSED, 'refused');
    }
    const wire = req.raw.subarray(HEADER_SIZE, q.questionEnd);
    // Our own query, sent back by a stub that routes it to us: answer at once rather than wait on ourselves.
    if (this.forwarder.isLoop(wire, q.lname, from)) return failed(req);
    const r = this.forwarder.query({ key: req.key, wire, dnssecOk: q.edns?.do ?? false, checkingDisabled: q.cd });
    return r instanceof Promise ? r.then((f) => toReply(req, f)) : toReply(req, r);
  }
}

function toReply(req: DnsRequest, f: Forwarded): DnsReply {
  switch (f.kind) {
    case 'answer':
      return { message: f.message, rcode: f.rcode, source: 'forward' };
    case 'refused':
      // Every upstream refused (REFUSED, FORMERR or NOTIMP): asking again will not help, and serving
      // stale would hide a policy. REFUSED, whichever the upstream's word: a FORMERR or NOTIMP was about
      // the query we sent, which the client's (well-formed) query must not be blamed for.
      return errorReply(req, Rcode.REFUSED, 'forward');
    case 'failed':
      return failed(req);
  }
}

function failed(req: DnsRequest): DnsReply {
  return { ...errorReply(req, Rcode.SERVFAIL, 'forward'), upstreamFailed: true };
}

export const forwardPlugin: Plugin<ForwardOptions> = {
  name: 'forward',
  setup,
  create: (deps, opts) => new ForwardStage(deps.forwarder, deps.metrics, deps.now, opts),
};
