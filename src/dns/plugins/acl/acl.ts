import { Rcode } from '../../../errors.js';
import type { MaybePromise, Next, Plugin, PluginStage } from '../../pipeline.js';
import { errorReply } from '../../reply.js';
import type { DnsReply, DnsRequest } from '../../request.js';
import { setup, type AclOptions } from './setup.js';

/**
 * Who may use this resolver, decided before anything else runs. Clients
 * that may recurse (loopback, `--allow`) go on; others get REFUSED for
 * names outside the served zones, and answers about the zones unless
 * `--canonical-clients allowed`.
 */
export class AclStage implements PluginStage<AclOptions> {
  readonly name = 'acl';

  constructor(private opts: AclOptions) {}

  configure(opts: AclOptions): void {
    this.opts = opts;
  }

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    if (req.mayRecurse) return next(req);
    if (req.cls.kind === 'outside' || this.opts.canonicalClients === 'allowed') return errorReply(req, Rcode.REFUSED, 'refused');
    return next(req);
  }
}

export const aclPlugin: Plugin<AclOptions> = {
  name: 'acl',
  setup,
  create: (_deps, opts) => new AclStage(opts),
};
