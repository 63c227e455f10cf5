import { Rcode } from '../../../errors.js';
import type { Metrics } from '../../../metrics/metrics.js';
import type { Forwarded, Forwarder } from '../../forwarder.js';
import type { Plugin, PluginStage } from '../../pipeline.js';
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
    if (!this.limiter.allow(from)) {
      this.metrics.dnsDropped.inc({ reason: 'ratelimit' });
      return errorReply(req, Rcode.REFUSED, 'refused');
    }
    const q = req.query;
    const wire = req.raw.subarray(HEADER_SIZE, q.questionEnd);
    // Our own query, sent back by a stub that routes it to us: answer at once rather than wait on ourselves.
    if (this.forwarder.isLoop(wire, q.lname, from)) return failed(req);
    const r = this.forwarder.query({ key: req.key, wire, dnssecOk: q.edns?.do ?? false, checkingDisabled: q.cd });
    return r instanceof Promise ? r.then((f) => toReply(req, f)) : toReply(req, r);
  }
}

function toReply(req: DnsRequest, f: Forwarded): DnsReply {
  return f.kind === 'answer' ? { message: f.message, rcode: f.rcode, source: 'forward' } : failed(req);
}

function failed(req: DnsRequest): DnsReply {
  return { ...errorReply(req, Rcode.SERVFAIL, 'forward'), upstreamFailed: true };
}

export const forwardPlugin: Plugin<ForwardOptions> = {
  name: 'forward',
  setup,
  create: (deps, opts) => new ForwardStage(deps.forwarder, deps.metrics, deps.now, opts),
};
