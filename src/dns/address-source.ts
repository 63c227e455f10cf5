import dns2 from 'dns2';
import type { AddressSource, ServingState } from '../core/resolver.js';
import { zoneOf } from '../core/service-name.js';
import type { MaybePromise } from './pipeline.js';
import { requestKey, ServerRequest, type DnsReply, type DnsRequest } from './request.js';
import type { LocalZonesStage } from './plugins/local/local.js';
import { CLASS_IN, HEADER_SIZE, TYPE, parseQuery } from './wire.js';

const { Packet } = dns2;

/**
 * Addresses for the gRPC API, found exactly as a DNS client of this daemon
 * would find them: the registry's hosts map and /etc/hosts first, then A
 * and AAAA through the DNS chain itself (cache, upstreams).
 */
export class ChainAddressSource implements AddressSource {
  constructor(
    private readonly state: () => ServingState,
    private readonly local: LocalZonesStage,
    private readonly chain: (req: DnsRequest) => MaybePromise<DnsReply>,
    private readonly classify: (lname: string) => DnsRequest['cls'],
  ) {}

  async lookup(host: string): Promise<{ addresses: string[]; ttl: number }> {
    const { registry, zones } = this.state();
    const known = this.local.knownAddresses(host, zoneOf(host, zones), registry);
    if (known) return { addresses: [...known.v4, ...known.v6], ttl: registry.ttl };
    const [a, aaaa] = await Promise.all([this.ask(host, TYPE.A), this.ask(host, TYPE.AAAA)]);
    const addresses = [...a.addresses, ...aaaa.addresses];
    return { addresses, ttl: Math.min(a.ttl, aaaa.ttl, registry.ttl) };
  }

  private async ask(host: string, qtype: number): Promise<{ addresses: string[]; ttl: number }> {
    const raw = new Packet();
    raw.header = new Packet.Header({ id: 0, rd: 1 });
    raw.questions.push({ name: host, type: qtype, class: CLASS_IN } as never);
    const buf = raw.toBuffer();
    const query = parseQuery(buf)!;
    const reply = await this.chain(new ServerRequest(query, buf, { address: '127.0.0.1', port: 0 }, 'internal', requestKey(query), this.classify));
    if (reply.message.length <= HEADER_SIZE) return { addresses: [], ttl: Infinity };
    const parsed = Packet.parse(reply.message);
    const records = parsed.answers.filter((r: { type: number }) => r.type === qtype) as unknown as { address: string; ttl: number }[];
    return { addresses: records.map((r) => r.address), ttl: records.length ? Math.min(...records.map((r) => r.ttl)) : Infinity };
  }
}
