import { expect } from 'vitest';
import type { MaybePromise, Next, Stage } from '../../src/dns/pipeline.js';
import { finishReply } from '../../src/dns/reply.js';
import { requestKey, ServerRequest, type DnsReply, type DnsRequest, type RequestReader } from '../../src/dns/request.js';
import { parseQuery } from '../../src/dns/wire.js';
import { buildQuery, parseMessage, T, type Rr } from './dns-wire.js';

/**
 * A table-driven harness for DNS stages, in the spirit of CoreDNS's
 * `test.Case`: each case is a question and the sections expected back. The
 * query is built and the reply read with the test's own codec
 * (helpers/dns-wire.ts), independent of the daemon's, and the reply goes
 * through the same finishing step the server uses. Records are compared as
 * presentation text (`api.localhost. 60 IN SRV 0 0 12082 api.localhost.`),
 * in any order within a section.
 */

export interface Case {
  qname: string;
  qtype: keyof typeof T | number;
  /** Query class (default IN). */
  qclass?: number;
  /** Client address (default 127.0.0.1). */
  client?: string;
  /** EDNS DO bit (adds an OPT). */
  do?: boolean;
  rcode: keyof typeof RCODES;
  /** AA expected (default: not checked). */
  aa?: boolean;
  /** RA expected (default: not checked): set only for clients that may recurse. */
  ra?: boolean;
  answer?: string[];
  ns?: string[];
  extra?: string[];
  /** Whether the stage passed the query on (default: not checked). */
  next?: boolean;
}

const RCODES = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const TYPE_NAMES = Object.fromEntries(Object.entries(T).map(([k, v]) => [v, k])) as Record<number, string>;

/** What `next` answers in the harness: a recognisable REFUSED from "the rest of the chain". */
export const NEXT_RCODE = 'REFUSED';

/** One record as presentation text, with the TTL. */
export function rrText(r: Rr): string {
  const type = TYPE_NAMES[r.type] ?? `TYPE${r.type}`;
  const owner = `${r.name}.`.replace(/^\.$/, '.');
  let data: string;
  switch (r.type) {
    case T.A:
      data = String(r.data);
      break;
    case T.AAAA:
      data = new URL(`http://[${String(r.data)}]`).hostname.slice(1, -1);
      break;
    case T.SRV: {
      const d = r.data as { priority: number; weight: number; port: number; target: string };
      data = `${d.priority} ${d.weight} ${d.port} ${d.target}.`;
      break;
    }
    case T.TXT:
      data = (r.data as string[]).map((s) => JSON.stringify(s)).join(' ');
      break;
    case T.SOA: {
      const d = r.data as { mname: string; rname: string; minimum: number };
      data = `${d.mname}. ${d.rname}. (minimum ${d.minimum})`;
      break;
    }
    default:
      data = r.rdata.toString('hex');
  }
  return `${owner} ${r.ttl} IN ${type} ${data}`;
}

/** Runs one case against `stage` (or a whole chain's handler) and checks every expectation it states. */
export async function runCase(
  handler: Stage | ((req: DnsRequest) => MaybePromise<DnsReply>),
  c: Case,
  reader: RequestReader,
): Promise<void> {
  const qtype = typeof c.qtype === 'number' ? c.qtype : T[c.qtype];
  const raw = buildQuery({ id: 4242, name: c.qname, type: qtype, klass: c.qclass ?? 1, edns: c.do ? { do: true } : null });
  const q = parseQuery(raw)!;
  // Over TCP, so the reply is finished whole (no UDP size limit).
  const req = new ServerRequest(q, raw, { address: c.client ?? '127.0.0.1', port: 5353 }, 'tcp', requestKey(q), reader);
  let nextCalled = false;
  const next: Next = () => {
    nextCalled = true;
    return { message: Buffer.from(raw), rcode: RCODES[NEXT_RCODE], source: 'forward' };
  };
  const reply = await (typeof handler === 'function' ? handler(req) : handler.serve(req, next));
  const label = `${c.qname} ${typeof c.qtype === 'number' ? c.qtype : c.qtype}`;
  const out = nextCalled ? null : parseMessage(finishReply(req, reply));
  if (c.next !== undefined) expect(nextCalled, `${label}: passed on`).toBe(c.next);
  if (out === null) return;
  expect(out.id, label).toBe(4242);
  expect(out.rcode, `${label}: rcode`).toBe(RCODES[c.rcode]);
  if (c.aa !== undefined) expect(out.aa, `${label}: AA`).toBe(c.aa);
  if (c.ra !== undefined) expect(out.ra, `${label}: RA`).toBe(c.ra);
  const sorted = (rrs: Rr[]) => rrs.filter((r) => r.type !== T.OPT).map(rrText).sort();
  if (c.answer) expect(sorted(out.answers), `${label}: answer`).toEqual([...c.answer].sort());
  if (c.ns) expect(sorted(out.authority), `${label}: authority`).toEqual([...c.ns].sort());
  if (c.extra) expect(sorted(out.additional), `${label}: additional`).toEqual([...c.extra].sort());
}

/** Runs every case in order (a failing case names itself). */
export async function runCases(
  handler: Stage | ((req: DnsRequest) => MaybePromise<DnsReply>),
  cases: readonly Case[],
  reader: RequestReader,
): Promise<void> {
  for (const c of cases) await runCase(handler, c, reader);
}
