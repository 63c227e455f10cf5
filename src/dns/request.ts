import type { NameClass } from '../core/service-name.js';
import { CLASS_IN, type Query } from './wire.js';

export type Transport = 'udp' | 'tcp';

/**
 * One query as every stage sees it: computed once by the server (lowercased
 * name, type, client, transport) so no stage re-parses the packet.
 */
export interface DnsRequest {
  query: Query;
  /** The packet as received. */
  raw: Buffer;
  client: { address: string; port: number };
  transport: Transport;
  /** How the name reads against the served zones (classifyName), computed once. */
  cls: NameClass;
  /** Cache / coalescing key: name, type, class, DO bit. */
  key: string;
  /**
   * May this client recurse (have its queries forwarded)? Decided once per
   * query by the chain's access policy (access.ts): the stages that refuse
   * or ask the upstreams read it, and the reply's RA bit says it (reply.ts).
   */
  mayRecurse: boolean;
}

/**
 * Where an answer came from: the `source` label of canonport_dns_queries_total.
 * `builtin`: what the daemon answers itself outside its zones (CH identity,
 * the special-use names of RFC 6761 and RFC 7686).
 */
export type Source = 'canonical' | 'builtin' | 'cache' | 'stale' | 'forward' | 'refused' | 'error';

/**
 * A stage's answer: a complete DNS message without OPT, whose ID, RD, CD
 * and question case the server patches for the client. Never mutated after
 * it is returned (it may be shared by a cache), so the server copies it.
 */
export interface DnsReply {
  message: Buffer;
  rcode: number;
  source: Source;
  /** Set by the forwarder when every upstream failed (lets the cache serve stale). */
  upstreamFailed?: boolean;
}

/**
 * The server's DnsRequest: the name is classified only when a stage first
 * asks (`cls`), since the hot path, a canonical answer already encoded, is
 * found by `key` alone and never needs it. Classifying costs a split and a
 * few regular-expression tests per query: about 5% of the server's time
 * (perf, canonical SRV under dnsperf).
 */
export class ServerRequest implements DnsRequest {
  private classified: NameClass | undefined;
  private recursion: boolean | undefined;

  constructor(
    readonly query: Query,
    readonly raw: Buffer,
    readonly client: { address: string; port: number },
    readonly transport: Transport,
    readonly key: string,
    private readonly reader: RequestReader,
  ) {}

  get cls(): NameClass {
    return (this.classified ??= this.reader.classify(this.query.lname));
  }

  get mayRecurse(): boolean {
    return (this.recursion ??= this.reader.mayRecurse(this.client.address));
  }
}

/** What the server asks about each query, lazily: how its name reads, and whether its client may recurse. */
export interface RequestReader {
  classify(lname: string): NameClass;
  mayRecurse(address: string): boolean;
}

export function requestKey(q: Pick<Query, 'lname' | 'qtype' | 'qclass' | 'edns'>): string {
  const d = q.edns?.do ? 1 : 0;
  // Class IN and a type below 256 (every query but a few): the name and one kept suffix, so a key is one
  // concatenation per query instead of three and two numbers written out (issue 24, bytes per answer).
  if (q.qclass === CLASS_IN && q.qtype < 256) return q.lname + (KEY_SUFFIXES[q.qtype * 2 + d] ??= `|${q.qtype}|${CLASS_IN}|${d}`);
  return `${q.lname}|${q.qtype}|${q.qclass}|${d}`;
}

/** requestKey's `|type|1|do` for types below 256: at most 512 strings, made on first use. */
const KEY_SUFFIXES: (string | undefined)[] = new Array<string | undefined>(512).fill(undefined);
