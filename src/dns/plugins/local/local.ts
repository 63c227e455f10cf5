import type { ServingState } from '../../../core/resolver.js';
import { LOCALHOST_ZONE } from '../../../core/service-name.js';
import { Rcode } from '../../../errors.js';
import type { Registry } from '../../../registry/registry.js';
import type { EtcHosts } from '../../etc-hosts.js';
import { bareReply, encodeAnswer, type Rr } from '../../message.js';
import type { Next, Stage, MaybePromise } from '../../pipeline.js';
import type { DnsReply, DnsRequest } from '../../request.js';
import { CLASS_ANY, CLASS_IN, TYPE } from '../../wire.js';

const LOOPBACK = { v4: ['127.0.0.1'], v6: ['::1'] };
/** Entries in the encoded-answer cache before it is cleared; canonical answers are cheap to rebuild. */
const MAX_ENCODED = 50_000;

/**
 * Canonical zones: answers SRV, TXT, A/AAAA and negatives for every name
 * under a served zone, from the registry and the scheme. Answers are
 * encoded once and kept as bytes (the hot path: a hit is a map read), until
 * the registry or /etc/hosts changes.
 */
export class LocalZonesStage implements Stage {
  readonly name = 'local';
  private encoded = new Map<string, DnsReply>();
  private encodedFor: ServingState | null = null;
  private hostsGeneration = -1;
  private readonly serial = Math.floor(Date.now() / 1000);

  constructor(
    private readonly state: () => ServingState,
    private readonly etcHosts: EtcHosts,
  ) {}

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    const state = this.state();
    if (state !== this.encodedFor || this.etcHosts.generation !== this.hostsGeneration) {
      this.encoded = new Map();
      this.encodedFor = state;
      this.hostsGeneration = this.etcHosts.generation;
    }
    // Keyed like the forwarding cache (name, type, class, DO): the DO bit only splits entries in two.
    // Looked up before the name is classified: only names in a served zone are ever stored.
    const hit = this.encoded.get(req.key);
    if (hit) return hit;
    if (req.cls.kind === 'outside') return next(req);

    const result = this.answer(req, state.registry, next);
    if (result instanceof Promise) return result; // depends on upstream: not kept
    if (this.encoded.size >= MAX_ENCODED) this.encoded.clear();
    this.encoded.set(req.key, result);
    return result;
  }

  private answer(req: DnsRequest, registry: Registry, next: Next): DnsReply | Promise<DnsReply> {
    const { cls, query: q } = req;
    if (cls.kind === 'outside') return next(req);
    const zone = cls.zone;
    if (q.qclass !== CLASS_IN && q.qclass !== CLASS_ANY) return this.bare(req, Rcode.REFUSED);
    if (q.qtype === TYPE.AXFR || q.qtype === TYPE.IXFR) return this.bare(req, Rcode.REFUSED);
    if (q.lname.includes('\\')) return this.bare(req, Rcode.NXDOMAIN); // not a name we could hold

    const ttl = registry.ttl;
    const soa = this.soa(zone, ttl);
    const reply = (rcode: number, answers: Rr[] = [], additionals: Rr[] = []): DnsReply => ({
      message: encodeAnswer({
        qname: q.lname,
        qtype: q.qtype,
        qclass: q.qclass,
        rcode,
        aa: true,
        answers,
        authorities: answers.length === 0 ? [soa] : [],
        additionals,
      }),
      rcode,
      source: 'canonical',
    });

    // RFC 6761 §6.3: every name under localhost is the loopback host.
    if (zone === LOCALHOST_ZONE && (q.qtype === TYPE.A || q.qtype === TYPE.AAAA)) {
      return reply(Rcode.NOERROR, this.addressRrs(q.lname, q.qtype, LOOPBACK, ttl));
    }

    switch (cls.kind) {
      case 'apex':
        if (q.qtype === TYPE.SOA || q.qtype === TYPE.ANY) return reply(Rcode.NOERROR, [soa]);
        return reply(Rcode.NOERROR);
      case 'empty':
        return reply(Rcode.NOERROR);
      case 'nxdomain':
        return reply(Rcode.NXDOMAIN);
      case 'service':
        break;
    }

    const a = registry.lookup(cls.service, cls.version);
    if (a.port === null) return reply(Rcode.NXDOMAIN); // e.g. versioned id 100 v101 → 8100101
    const srv: Rr = { type: 'SRV', name: q.lname, ttl, priority: 0, weight: 0, port: a.port, target: cls.host };

    switch (q.qtype) {
      case TYPE.SRV:
      // RFC 8482: ANY gets one RRset, not everything; the SRV set is the useful one.
      case TYPE.ANY: {
        const known = this.knownAddresses(cls.host, zone, registry);
        const additionals = known
          ? [...this.addressRrs(cls.host, TYPE.A, known, ttl), ...this.addressRrs(cls.host, TYPE.AAAA, known, ttl)]
          : [];
        return reply(Rcode.NOERROR, [srv], additionals);
      }
      case TYPE.TXT: {
        const data = [`port=${a.port}`, `scheme=${a.scheme}`, `prefix=${a.prefix}`];
        if (a.version !== undefined) data.push(`version=${a.version}`);
        if (a.collidesWith.length > 0) data.push(`collision=shares port ${a.port} with ${a.collidesWith.join(',')}`);
        return reply(Rcode.NOERROR, [{ type: 'TXT', name: q.lname, ttl, data }]);
      }
      case TYPE.A:
      case TYPE.AAAA: {
        if (cls.form === 'srv') return reply(Rcode.NOERROR); // `_svc._tcp` names hold SRV/TXT only
        const known = this.knownAddresses(cls.host, zone, registry);
        if (known) return reply(Rcode.NOERROR, this.addressRrs(q.lname, q.qtype, known, ttl));
        // The real DNS knows which hosts carry the service: ask upstream, but an
        // upstream NXDOMAIN must not deny the SRV and TXT records living here.
        return Promise.resolve(next(req)).then((r) => (r.rcode === Rcode.NXDOMAIN ? reply(Rcode.NOERROR) : r));
      }
      default:
        return reply(Rcode.NOERROR);
    }
  }

  /**
   * Addresses known without the network: loopback under `localhost`, then
   * the registry's hosts map, then /etc/hosts. `zone` is null for a name
   * outside every served zone (the gRPC side asks for those too).
   */
  knownAddresses(host: string, zone: string | null, registry: Registry): { v4: readonly string[]; v6: readonly string[] } | null {
    if (zone === LOCALHOST_ZONE) return LOOPBACK;
    const fromRegistry = registry.hosts.get(host);
    if (fromRegistry) {
      return { v4: fromRegistry.filter((x) => !x.includes(':')), v6: fromRegistry.filter((x) => x.includes(':')) };
    }
    return this.etcHosts.lookup(host);
  }

  private addressRrs(name: string, qtype: number, addrs: { v4: readonly string[]; v6: readonly string[] }, ttl: number): Rr[] {
    return qtype === TYPE.A
      ? addrs.v4.map((address) => ({ type: 'A' as const, name, ttl, address }))
      : addrs.v6.map((address) => ({ type: 'AAAA' as const, name, ttl, address }));
  }

  private soa(zone: string, ttl: number): Rr {
    const negative = Math.min(ttl, 300);
    return {
      type: 'SOA',
      name: zone,
      ttl: negative,
      primary: zone === LOCALHOST_ZONE ? 'localhost' : `ns.${zone}`,
      admin: `hostmaster.${zone}`,
      serial: this.serial,
      refresh: 3600,
      retry: 600,
      expiration: 86400,
      minimum: negative,
    };
  }

  private bare(req: DnsRequest, rcode: number): DnsReply {
    return { message: bareReply(req.raw, req.query.questionEnd, rcode), rcode, source: 'canonical' };
  }
}
