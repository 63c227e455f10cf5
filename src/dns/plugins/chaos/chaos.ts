import { Rcode } from '../../../errors.js';
import { encodeAnswer } from '../../message.js';
import type { MaybePromise, Next, Plugin, PluginStage } from '../../pipeline.js';
import { errorReply } from '../../reply.js';
import type { DnsReply, DnsRequest } from '../../request.js';
import { CLASS_CH, TYPE } from '../../wire.js';
import { setup, type ChaosOptions } from './setup.js';

/** The identity names servers answer in class CH (BIND's and RFC 4892's), and which fact each tells. */
const IDENTITY: ReadonlyMap<string, 'version' | 'hostname'> = new Map([
  ['version.bind', 'version'],
  ['version.server', 'version'],
  ['hostname.bind', 'hostname'],
  ['id.server', 'hostname'],
]);

/**
 * CH TXT identity queries (version.bind, version.server, hostname.bind,
 * id.server, RFC 4892) answered by canonport itself, after CoreDNS's chaos
 * plugin: its own version and host name, or REFUSED under `--identity hide`.
 * Never forwarded: the upstream's identity is not ours to give out, and a
 * client asking this server means this server. Other types at these names
 * are REFUSED, as unbound does; other CH names go on and are REFUSED for
 * their class (question-policy.ts).
 */
export class ChaosStage implements PluginStage<ChaosOptions> {
  readonly name = 'chaos';

  constructor(private opts: ChaosOptions) {}

  configure(opts: ChaosOptions): void {
    this.opts = opts;
  }

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    const q = req.query;
    if (q.qclass !== CLASS_CH) return next(req);
    const fact = IDENTITY.get(q.lname);
    if (fact === undefined) return next(req);
    if (this.opts.hide || (q.qtype !== TYPE.TXT && q.qtype !== TYPE.ANY)) return errorReply(req, Rcode.REFUSED, 'refused');
    const text = fact === 'version' ? this.opts.version : this.opts.hostname;
    // TTL 0 and no AA, as unbound and BIND answer them: a fact about this server at this moment, not zone data.
    const message = encodeAnswer({
      qname: q.lname,
      qtype: q.qtype,
      qclass: CLASS_CH,
      rcode: Rcode.NOERROR,
      aa: false,
      answers: [{ type: 'TXT', name: q.lname, ttl: 0, data: [text], klass: CLASS_CH }],
    });
    return { message, rcode: Rcode.NOERROR, source: 'builtin' };
  }
}

export const chaosPlugin: Plugin<ChaosOptions> = {
  name: 'chaos',
  setup,
  create: (_deps, opts) => new ChaosStage(opts),
};
