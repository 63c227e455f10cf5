import dns2 from 'dns2';
import { CanonportError, ErrorCodes } from '../errors.js';
import { HEADER_SIZE, TYPE, CLASS_IN, type Query } from './wire.js';

const { Packet } = dns2;

/**
 * The one thin layer over dns2's packet shapes. The rest of the daemon
 * speaks these record types and gets back wire bytes.
 */
export type Rr =
  | { type: 'SRV'; name: string; ttl: number; priority: number; weight: number; port: number; target: string }
  | { type: 'A'; name: string; ttl: number; address: string }
  | { type: 'AAAA'; name: string; ttl: number; address: string }
  | { type: 'NS'; name: string; ttl: number; ns: string }
  /** `klass`: IN unless given (CH for the identity answers). */
  | { type: 'TXT'; name: string; ttl: number; data: string[]; klass?: number }
  | { type: 'PTR'; name: string; ttl: number; target: string }
  | {
      type: 'SOA';
      name: string;
      ttl: number;
      primary: string;
      admin: string;
      serial: number;
      refresh: number;
      retry: number;
      expiration: number;
      minimum: number;
    };

export interface AnswerSpec {
  qname: string;
  qtype: number;
  qclass?: number;
  /**
   * The question section's wire bytes, for a name dns2 cannot spell: its
   * encoder splits text on dots and writes characters as octets, so a label
   * holding a dot, a backslash or a non-printable octet (`a\.b`, `\200api`)
   * cannot round-trip through text. When given, the question is written from
   * these bytes and `qname`, `qtype` and `qclass` are not used.
   */
  question?: Buffer | undefined;
  rcode: number;
  aa: boolean;
  answers?: Rr[];
  authorities?: Rr[];
  additionals?: Rr[];
}

/** The header fields an encoded answer sets (the server patches ID, RD, RA and CD per client). */
interface ReplyHeader {
  id: number;
  qr: 1;
  opcode: number;
  aa: 0 | 1;
  ra: 0;
  rcode: number;
}

function toDns2(rr: Rr): Record<string, unknown> {
  if (rr.type === 'PTR') return { name: rr.name, ttl: rr.ttl, domain: rr.target, type: TYPE.PTR, class: CLASS_IN };
  if (rr.type === 'TXT') return { name: rr.name, ttl: rr.ttl, type: TYPE.TXT, class: rr.klass ?? CLASS_IN, data: characterStrings(rr.data) };
  const { type, ...rest } = rr;
  const klass = 'klass' in rest ? rest.klass : undefined;
  return { ...rest, type: TYPE[type], class: klass ?? CLASS_IN };
}

/** The most octets one <character-string> holds: its length is one octet (RFC 1035 §3.3). */
export const MAX_CHARACTER_STRING = 255;
/** The most octets of TXT RDATA: RDLENGTH is two octets (RFC 1035 §3.2.1). */
const MAX_RDATA = 0xffff;

/**
 * TXT data as <character-string>s of at most 255 octets: a longer string
 * (a `versions=` list across a fleet, a `collision=` list) is split into
 * consecutive ones, at a UTF-8 character boundary, as SPF and DKIM records
 * are; readers join them. dns2's writer writes the length as one octet
 * whatever it is, so a 300-octet string went out with length 44 and the
 * rest read as other strings or garbage (issue 21, finding 6). RDATA over
 * 65,535 octets cannot be written at all: refused with CP_HANDLER_FAILED
 * (the query gets SERVFAIL) rather than sent corrupt.
 */
export function characterStrings(data: readonly string[]): Buffer[] {
  const out: Buffer[] = [];
  let total = 0;
  for (const text of data) {
    const bytes = Buffer.from(text, 'utf8');
    // An empty string is left out, as dns2 always did.
    if (bytes.length === 0) continue;
    let at = 0;
    while (at < bytes.length) {
      let end = Math.min(bytes.length, at + MAX_CHARACTER_STRING);
      // Never cut a character in two: back off over UTF-8 continuation octets (10xxxxxx).
      if (end < bytes.length) while (end > at + 1 && (bytes[end]! & 0xc0) === 0x80) end--;
      out.push(bytes.subarray(at, end));
      total += 1 + end - at;
      at = end;
    }
  }
  if (total > MAX_RDATA) throw new CanonportError(ErrorCodes.HANDLER_FAILED, `TXT data of ${total} octets is over the ${MAX_RDATA} a record can hold`, { octets: total });
  return out;
}

/**
 * Encodes a response with dns2 (ID 0; the server patches ID, RD, RA, CD and
 * the question's case per query, reply.ts). dns2 compresses names.
 */
export function encodeAnswer(spec: AnswerSpec): Buffer {
  const header: ReplyHeader = { id: 0, qr: 1, opcode: 0, aa: spec.aa ? 1 : 0, ra: 0, rcode: spec.rcode };
  if (spec.question) return encodeWithQuestion(header, spec.question, spec);
  const sections = [spec.answers ?? [], spec.authorities ?? [], spec.additionals ?? []];
  const writer = new Packet.Writer() as Writer;
  writer.names = new Map(); // dns2 compresses names when the writer has this table (as Packet.toBuffer sets it)
  new Packet.Header({ ...header, qdcount: 1, ancount: sections[0]!.length, nscount: sections[1]!.length, arcount: sections[2]!.length }).toBuffer(writer);
  Packet.Question.encode({ name: spec.qname, type: spec.qtype, class: spec.qclass ?? CLASS_IN } as never, writer);
  for (const rr of sections.flat()) encodeResource(toDns2(rr), writer);
  return writer.toBuffer();
}

type Writer = InstanceType<typeof Packet.Writer> & { names?: Map<string, number>; bitLength(): number; patch(bitOffset: number, value: number, size: number): void };
type RdataCodec = { encode(record: Record<string, unknown>, writer: Writer): void };

/**
 * One record onto `writer`: dns2's Packet.Resource.encode, step for step,
 * without its last line. That one (`return writer.toBuffer()`, 3.1.1)
 * turns the whole message written so far into a Buffer, bit by bit, after
 * every record, so a message of n records cost O(n²): 1,000 SRV records
 * and their addresses took seconds, 3,000 most of a minute, and DNS
 * stopped answering while a service claimed by a flood of made-up nodes
 * was encoded (issue 21, findings 4 and 7). dns2 owns the name, header
 * and RDATA encoders still; only the loop is here.
 */
function encodeResource(resource: Record<string, unknown>, writer: Writer): void {
  const type = resource.type as number;
  const codec = (Packet.Resource as unknown as Record<string, RdataCodec | undefined>)[(Packet as unknown as { TYPE_NAME: Record<number, string> }).TYPE_NAME[type] ?? ''];
  if (!codec?.encode) throw new CanonportError(ErrorCodes.HANDLER_FAILED, `no encoder for record type ${type}`);
  Packet.Name.encode(resource.name as string, writer as never);
  writer.write(type, 16);
  writer.write(resource.class as number, 16);
  // RFC 2181 §8, as dns2 does: TTLs with the high bit set are historically unsafe.
  writer.write(Math.min((resource.ttl as number) >>> 0, 0x7fffffff), 32);
  const rdlength = writer.bitLength();
  writer.write(0, 16);
  const start = writer.bitLength();
  codec.encode(resource, writer);
  writer.patch(rdlength, (writer.bitLength() - start) / 8, 16);
}

/**
 * The same message with its question copied from the query's bytes: the
 * header, those bytes, then each record through dns2's own record encoder.
 * Without compression (no name table on the writer): a pointer into a
 * question dns2 did not write could not be trusted, and these replies (an
 * NXDOMAIN and its SOA) are small.
 */
function encodeWithQuestion(header: ReplyHeader, question: Buffer, spec: AnswerSpec): Buffer {
  const sections = [spec.answers ?? [], spec.authorities ?? [], spec.additionals ?? []];
  const writer = new Packet.Writer();
  new Packet.Header({ ...header, qdcount: 1, ancount: sections[0]!.length, nscount: sections[1]!.length, arcount: sections[2]!.length }).toBuffer(writer);
  for (const octet of question) writer.write(octet, 8);
  for (const rr of sections.flat()) encodeResource(toDns2(rr), writer as Writer);
  return writer.toBuffer();
}

/**
 * A reply with no records (FORMERR, REFUSED, SERVFAIL, NOTIMP, or an
 * NXDOMAIN for an unprintable name), built by hand from the query's own
 * bytes so it works for any question dns2 could not re-encode. The
 * question is echoed when it parsed (`questionEnd` > 0).
 */
export function bareReply(query: Buffer, questionEnd: number, rcode: number): Buffer {
  const qlen = questionEnd > HEADER_SIZE ? questionEnd - HEADER_SIZE : 0;
  const out = Buffer.alloc(HEADER_SIZE + qlen);
  query.copy(out, 0, 0, 4);
  out[2] = (out[2]! & 0x79) | 0x80; // QR=1, keep opcode and RD, clear AA/TC
  out[3] = rcode & 0xf; // RA (set per client by patchHeader), Z, AD, CD clear
  out.writeUInt16BE(qlen ? 1 : 0, 4);
  if (qlen) query.copy(out, HEADER_SIZE, HEADER_SIZE, questionEnd);
  return out;
}

/** An EDNS0 OPT record (RFC 6891) as 11 bytes: root owner, our buffer size, DO echoed. */
export function optRecord(udpSize: number, dnssecOk: boolean, extendedRcode = 0): Buffer {
  const b = Buffer.alloc(OPT_RECORD_SIZE);
  writeOptRecord(b, 0, udpSize, dnssecOk, extendedRcode);
  return b;
}

/** Octets of an OPT record without options. */
export const OPT_RECORD_SIZE = 11;

/** optRecord's 11 bytes written into `out` at `at` (the answer path: no buffer per answer). */
export function writeOptRecord(out: Buffer, at: number, udpSize: number, dnssecOk: boolean, extendedRcode = 0): void {
  out[at] = 0; // root owner
  out[at + 1] = 0;
  out[at + 2] = TYPE.OPT;
  out[at + 3] = udpSize >> 8;
  out[at + 4] = udpSize & 0xff;
  out[at + 5] = extendedRcode;
  out[at + 6] = 0; // version 0
  out[at + 7] = dnssecOk ? 0x80 : 0;
  out[at + 8] = 0;
  out[at + 9] = 0; // RDLENGTH 0
  out[at + 10] = 0;
}

/** Rcodes above 15 need EDNS: BADVERS (16) is extended rcode 1, header rcode 0. */
export const RCODE_BADVERS = 16;

/**
 * A query's header copied onto a response: ID, RD and CD come from the
 * client; RA says whether this client may recurse (RFC 1035 §4.1.1: "whether
 * recursive query support is available in the name server", which it is only
 * for clients the access policy lets forward); Z is always zero.
 */
export function patchHeader(out: Buffer, q: Pick<Query, 'id' | 'rd' | 'cd'>, recursionAvailable: boolean): void {
  out.writeUInt16BE(q.id, 0);
  out[2] = (out[2]! & 0xfe) | (q.rd ? 1 : 0);
  out[3] = (out[3]! & 0x2f) | (recursionAvailable ? 0x80 : 0) | (q.cd ? 0x10 : 0);
}
