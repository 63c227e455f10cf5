import { Rcode } from '../../../errors.js';
import type { AccessPolicy } from '../../access.js';
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
  private access: AccessPolicy;

  constructor(opts: AclOptions) {
    this.access = opts.access;
  }

  configure(opts: AclOptions): void {
    this.access = opts.access;
  }

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    const from = req.client.address;
    if (this.access.mayRecurse(from)) return next(req);
    if (req.cls.kind === 'outside' || !this.access.mayAskZones(from)) return errorReply(req, Rcode.REFUSED, 'refused');
    return next(req);
  }
}

export const aclPlugin: Plugin<AclOptions> = {
  name: 'acl',
  setup,
  create: (_deps, opts) => new AclStage(opts),
};
