import { Rcode } from '../errors.js';
import { CLASS_ANY, CLASS_IN, TYPE } from './wire.js';

/**
 * Questions answered at once, for any name, before it is looked up or
 * forwarded: the rcode for them, or null for an ordinary question. Shared
 * by the local plugin (the served zones) and the forward plugin (every
 * other name), so a zone transfer or a meta type gets the same answer
 * whichever the name, and none of them is ever sent upstream.
 *
 *   AXFR, IXFR     REFUSED. No zone is transferred from here: the canonical
 *                  zones are computed, not stored, and forwarded zones are
 *                  not ours to serve (RFC 5936 §4.2 lets a server refuse;
 *                  over UDP AXFR is not even defined).
 *   OPT (41) and 128–254 but IXFR/AXFR (TKEY, TSIG, MAILB, MAILA, the
 *                  unassigned rest)
 *                  NOTIMP. Meta-TYPEs describe a message, not data at a
 *                  name, and the remaining QTYPEs are obsolete or unassigned
 *                  (RFC 6895 §3.1): "the name server does not support the
 *                  requested kind of query" (RFC 1035 §4.1.1). ANY (255)
 *                  is a question we answer (RFC 8482).
 *   a class other than IN and ANY
 *                  REFUSED, as unbound does: no data of another class is
 *                  held or forwarded (CH identity queries are answered
 *                  before this, by the chaos plugin).
 */
export function questionRcode(qtype: number, qclass: number): number | null {
  if (qclass !== CLASS_IN && qclass !== CLASS_ANY) return Rcode.REFUSED;
  if (qtype === TYPE.AXFR || qtype === TYPE.IXFR) return Rcode.REFUSED;
  if (qtype === TYPE.OPT || (qtype >= 128 && qtype < TYPE.ANY)) return Rcode.NOTIMP;
  return null;
}
