import { Rcode } from '../errors.js';
import { bareReply, OPT_RECORD_SIZE, optRecord, patchHeader, writeOptRecord } from './message.js';
import type { DnsReply, DnsRequest, Source } from './request.js';
import { EDNS_SIZE } from './upstream.js';
import { copyRange, HEADER_SIZE, readU16, type PartialQuery } from './wire.js';

/**
 * Where every reply is finished, like CoreDNS's request package: the one
 * builder of record-less replies (REFUSED, SERVFAIL, FORMERR, NOTIMP…),
 * and the last step before the wire (ID, RD, CD, RA for this client, the
 * question as asked, OPT, and TC when the answer does not fit). Stages
 * return messages without OPT and never patch headers themselves.
 */

/** A reply with no records for `req`, echoing its question. Rcodes above 15 go out through OPT. */
export function errorReply(req: Pick<DnsRequest, 'raw' | 'query'>, rcode: number, source: Source = 'error'): DnsReply {
  return { message: bareReply(req.raw, req.query.questionEnd, rcode & 0xf), rcode, source };
}

/**
 * How much larger than its query a UDP answer to a client outside `--allow`
 * may be. UDP source addresses can be forged, so a large answer to a small
 * query is an amplifier aimed at whoever the address names; past this
 * factor the answer goes out truncated (TC, no records), which costs the
 * forger's victim nothing and sends a real client to TCP, where addresses
 * cannot be forged (RFC 9210 §4 lets a server send TC for this). Clients
 * that may recurse (loopback, `--allow`) get what their EDNS buffer holds.
 */
export const AMPLIFICATION_FACTOR = 3;

/** Why finishReply sent TC instead of the answer: it did not fit the client's buffer, or the amplification bound. */
export type Truncation = 'size' | 'amplification';

/**
 * The bytes for this client: the stage's reply patched with the query's ID,
 * RD and CD, RA when this client may recurse (whatever the stage's or the
 * upstream's header said: a reply may be shared by clients with different
 * rights), the question exactly as asked (0x20), an OPT record when the
 * query had one, and TC with no records when it does not fit the client's
 * UDP buffer or, for a client outside `--allow`, AMPLIFICATION_FACTOR
 * times its query (never a trimmed answer, RFC 2181 §9). `onTruncate`
 * hears why when it sent TC.
 */
export function finishReply(req: Pick<DnsRequest, 'query' | 'raw' | 'transport' | 'mayRecurse'>, reply: DnsReply, onTruncate?: (why: Truncation) => void): Buffer {
  // One buffer per answer and nothing else (issue 24: every byte allocated here is paid in scavenges, at
  // every query): the OPT record is written in place, and the copies are a TypedArray set and a loop,
  // where Buffer.copy of part of a buffer makes a view per call.
  const { query: q, raw, transport } = req;
  const msg = reply.message;
  const optSize = q.edns ? OPT_RECORD_SIZE : 0;
  const buffer = transport === 'udp' ? (q.edns ? Math.min(Math.max(q.edns.udpSize, 512), EDNS_SIZE) : 512) : 65535;
  const limit = transport === 'udp' && !req.mayRecurse ? Math.min(buffer, AMPLIFICATION_FACTOR * raw.length) : buffer;
  let out: Buffer;
  if (msg.length + optSize > limit) {
    onTruncate?.(msg.length + optSize > buffer ? 'size' : 'amplification');
    out = Buffer.alloc(q.questionEnd + optSize);
    copyRange(msg, 0, 4, out, 0);
    out[2] = out[2]! | 0x02;
    out[5] = 1; // QDCOUNT 1, every other count 0
    copyRange(raw, HEADER_SIZE, q.questionEnd, out, HEADER_SIZE);
  } else {
    out = Buffer.allocUnsafe(msg.length + optSize);
    out.set(msg);
    // The question goes back exactly as asked (0x20 case), when it has the same shape.
    if (readU16(msg, 4) === 1 && msg.length >= q.questionEnd) copyRange(raw, HEADER_SIZE, q.questionEnd, out, HEADER_SIZE);
  }
  patchHeader(out, q, req.mayRecurse);
  if (q.edns) {
    writeOptRecord(out, out.length - OPT_RECORD_SIZE, EDNS_SIZE, q.edns.do, reply.rcode > 15 ? reply.rcode >> 4 : 0);
    out.writeUInt16BE(readU16(out, 10) + 1, 10);
  }
  return out;
}

/**
 * FORMERR for a query whose header parsed but whose body did not: the
 * question echoed when it parsed, nothing we could not read; an OPT record
 * when the query carried one, even a misplaced or doubled one (RFC 6891 §7:
 * without it the client takes the FORMERR as "no EDNS here" and retries
 * without); RA when this client may recurse.
 */
export function formerrReply(raw: Buffer, partial: PartialQuery, mayRecurse: boolean): Buffer {
  const bare = bareReply(raw, partial.questionEnd, Rcode.FORMERR);
  if (mayRecurse) bare[3] = bare[3]! | 0x80;
  if (!partial.edns) return bare;
  const out = Buffer.concat([bare, optRecord(EDNS_SIZE, partial.edns.do)]);
  out.writeUInt16BE(1, 10);
  return out;
}

/**
 * NOTIMP for an opcode other than QUERY, read from the header alone: the
 * opcode echoed, every section empty, and no flag that only QUERY defines
 * (RD, RA, AD, CD, AA: RFC 1035 §4.1.1 defines them for queries, and a
 * server that does not implement the opcode cannot claim them).
 */
export function notImplementedReply(raw: Buffer): Buffer {
  const out = bareReply(raw, 0, Rcode.NOTIMP);
  out[2] = out[2]! & 0xfe;
  return out;
}
