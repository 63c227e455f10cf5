import { isLoopback, NetworkSet } from '../../../config/cidr.js';
import { Rcode } from '../../../errors.js';
import { bareReply } from '../../message.js';
import type { Next, Stage, MaybePromise } from '../../pipeline.js';
import type { DnsReply, DnsRequest } from '../../request.js';

/**
 * Who may use this resolver. Loopback clients always may; others only from
 * `--allow` networks. A client outside them still gets canonical answers
 * (they are the product, and small) unless `--canonical-clients allowed`,
 * but never recursion: an open resolver is an amplifier. The forwarder asks `mayForward` again for in-zone
 * address lookups that fall through to the upstreams.
 */
export class AclStage implements Stage {
  readonly name = 'acl';
  /**
   * @param trustLoopback false only in tests, so the allow list can be
   *   exercised from distinct loopback source addresses (127.0.0.2, …).
   */
  constructor(
    private readonly allowed: () => NetworkSet,
    private readonly trustLoopback = true,
    private readonly canonicalClients: () => 'any' | 'allowed' = () => 'any',
  ) {}

  mayForward(address: string): boolean {
    return (this.trustLoopback && isLoopback(address)) || this.allowed().has(address);
  }

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    if (req.transport === 'internal' || this.mayForward(req.client.address)) return next(req);
    if (req.cls.kind === 'outside' || this.canonicalClients() === 'allowed') return refused(req);
    return next(req);
  }
}

export function refused(req: DnsRequest): DnsReply {
  return { message: bareReply(req.raw, req.query.questionEnd, Rcode.REFUSED), rcode: Rcode.REFUSED, source: 'refused' };
}
