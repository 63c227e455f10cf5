/**
 * Minimal DNS wire-format reading, by hand on purpose.
 *
 * dns2 stays the codec for building answers (src/dns/message.ts), but it
 * cannot do three things this daemon needs: tell a malformed question from
 * an empty one (Packet.parse swallows the error and returns questions = []),
 * relay an upstream answer byte-exact (it drops record types it has no
 * decoder for), and parse only the header and question on the hot path (its
 * bit reader is the slow part). Everything here is bounds-checked and never
 * follows compression pointers, so hostile packets cannot loop it.
 */

export const HEADER_SIZE = 12;
export const TYPE = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, IXFR: 251, AXFR: 252, ANY: 255 } as const;
export const CLASS_IN = 1;
export const CLASS_CH = 3;
export const CLASS_ANY = 255;
export const MAX_NAME_WIRE = 255;

/**
 * How far a malformed query was read: the question when it parsed
 * (`questionEnd` > 0) and its EDNS when an OPT record was found, so the
 * FORMERR can echo the one and carry an OPT for the other (RFC 6891 §7).
 */
export interface PartialQuery {
  questionEnd: number;
  edns: Edns | null;
}

const NOTHING_READ: PartialQuery = Object.freeze({ questionEnd: 0, edns: null });

/** Thrown for a packet whose header parsed but whose body is malformed (→ FORMERR), with what was read of it. */
export class WireError extends Error {
  override readonly name = 'WireError';
  constructor(
    message: string,
    readonly partial: PartialQuery = NOTHING_READ,
  ) {
    super(message);
  }
}

export interface Edns {
  udpSize: number;
  do: boolean;
  version: number;
}

/** A parsed query: header fields, the one question, EDNS. */
export interface Query {
  id: number;
  opcode: number;
  qr: boolean;
  rd: boolean;
  cd: boolean;
  /** Question name as asked, presentation form without the trailing dot ('' for the root). */
  qname: string;
  /** qname lowercased (ASCII only, as DNS compares). */
  lname: string;
  qtype: number;
  qclass: number;
  /** Offset just past the question section. */
  questionEnd: number;
  edns: Edns | null;
}

export function readU16(buf: Buffer, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/**
 * `src[from..to)` into `dst` at `at`, octet by octet. For the few dozen
 * octets of a question on the answer path: Node 20's Buffer.copy of part
 * of a buffer makes a Uint8Array view per call (~100 bytes a query).
 */
export function copyRange(src: Uint8Array, from: number, to: number, dst: Uint8Array, at: number): void {
  for (let i = from; i < to; i++) dst[at + i - from] = src[i]!;
}

/** The 12-byte header, with the section counts parseQuery checks. */
export interface Header extends Pick<Query, 'id' | 'opcode' | 'qr' | 'rd' | 'cd'> {
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

/**
 * Reads only the 12-byte header. Null when the packet is shorter. The
 * server reads it first: a response is dropped and an opcode other than
 * QUERY answered NOTIMP before anything past the header is read.
 */
export function parseHeader(buf: Buffer): Header | null {
  if (buf.length < HEADER_SIZE) return null;
  const flags = readU16(buf, 2);
  return {
    id: readU16(buf, 0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    rd: (flags & 0x0100) !== 0,
    cd: (flags & 0x0010) !== 0,
    qdcount: readU16(buf, 4),
    ancount: readU16(buf, 6),
    nscount: readU16(buf, 8),
    arcount: readU16(buf, 10),
  };
}

/** Where a plain name's text is assembled: 255 octets of wire form make at most 253 characters. */
const nameScratch = Buffer.allocUnsafe(MAX_NAME_WIRE);

/**
 * Reads an uncompressed name at `off` (questions never need compression).
 * Returns presentation text (dots between labels; `.`, `\` and non-printable
 * bytes escaped as \DDD like dig) and the offset after it.
 *
 * The common name, printable labels only, is validated in one pass and
 * turned into a string with one latin1 slice of a scratch buffer (dots in
 * place of the length octets) rather than a slice and a concatenation per
 * label: this runs for every query.
 */
export function readQuestionName(buf: Buffer, off: number): { name: string; end: number } {
  const start = off;
  let wire = 0;
  let plain = true;
  for (;;) {
    if (off >= buf.length) throw new WireError('question name runs past the end of the packet');
    const len = buf[off]!;
    if (len === 0) {
      off += 1;
      wire += 1;
      break;
    }
    if (len & 0xc0) throw new WireError(len >= 0xc0 ? 'compression pointer in the question' : 'reserved label type');
    if (off + 1 + len > buf.length) throw new WireError('label length runs past the end of the packet');
    wire += len + 1;
    if (wire > MAX_NAME_WIRE - 1) throw new WireError('name longer than 255 octets');
    if (plain) plain = plainLabel(buf, off + 1, off + 1 + len);
    off += len + 1;
  }
  if (!plain) return { name: escapedName(buf, start), end: off };
  let n = 0;
  for (let p = start; buf[p] !== 0; ) {
    const len = buf[p]!;
    if (n > 0) nameScratch[n++] = 0x2e;
    for (let i = p + 1; i <= p + len; i++) nameScratch[n++] = buf[i]!;
    p += len + 1;
  }
  return { name: nameScratch.toString('latin1', 0, n), end: off };
}

/** A validated name with at least one label needing escapes, label by label. */
function escapedName(buf: Buffer, off: number): string {
  let name = '';
  for (let len = buf[off]!; len !== 0; off += len + 1, len = buf[off]!) {
    if (name.length > 0) name += '.';
    name += plainLabel(buf, off + 1, off + 1 + len) ? buf.toString('latin1', off + 1, off + 1 + len) : escapedLabel(buf, off + 1, off + 1 + len);
  }
  return name;
}

/** True when every byte is printable ASCII other than `.` and `\` (the common case: slice it as is). */
function plainLabel(buf: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = buf[i]!;
    if (c <= 0x20 || c >= 0x7f || c === 0x2e || c === 0x5c) return false;
  }
  return true;
}

function escapedLabel(buf: Buffer, from: number, to: number): string {
  let out = '';
  for (let i = from; i < to; i++) {
    const c = buf[i]!;
    out += c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c ? String.fromCharCode(c) : `\\${String(c).padStart(3, '0')}`;
  }
  return out;
}

/**
 * ASCII-only lowercase (DNS case-insensitivity, RFC 4343), leaving escapes
 * intact. A scan instead of a regular expression: the usual name is already
 * lowercase and comes back as is.
 */
export function lowerName(name: string): string {
  let ascii = true;
  let upper = false;
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 65 && c <= 90) upper = true;
    else if (c >= 0x80) ascii = false;
  }
  if (!upper) return name;
  // toLowerCase would also fold non-ASCII letters, which DNS does not.
  return ascii ? name.toLowerCase() : name.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/** Skips a possibly-compressed name without following pointers; returns the offset after it. */
export function skipName(buf: Buffer, off: number): number {
  for (let guard = 0; guard < 128; guard++) {
    if (off >= buf.length) throw new WireError('name runs past the end of the packet');
    const len = buf[off]!;
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) {
      if (off + 2 > buf.length) throw new WireError('compression pointer runs past the end');
      return off + 2;
    }
    if (len & 0xc0) throw new WireError('reserved label type');
    off += len + 1;
  }
  throw new WireError('name has too many labels');
}

/** One resource record's position in a message. */
export interface RecordRef {
  section: 0 | 1 | 2; // answer, authority, additional
  start: number;
  type: number;
  klass: number;
  ttlOffset: number;
  ttl: number;
  rdataOffset: number;
  rdlength: number;
  end: number;
}

/**
 * Walks the answer, authority and additional sections after `from` (the end
 * of the question). Throws WireError if a count lies or a record overruns.
 */
export function walkRecords(buf: Buffer, from: number, counts: [number, number, number]): RecordRef[] {
  const out: RecordRef[] = [];
  let off = from;
  for (let section = 0 as 0 | 1 | 2; section < 3; section = (section + 1) as 0 | 1 | 2) {
    for (let i = 0; i < counts[section]; i++) {
      const start = off;
      off = skipName(buf, off);
      if (off + 10 > buf.length) throw new WireError('record header runs past the end of the packet');
      const type = readU16(buf, off);
      const klass = readU16(buf, off + 2);
      const ttl = buf.readUInt32BE(off + 4);
      const rdlength = readU16(buf, off + 8);
      const rdataOffset = off + 10;
      const end = rdataOffset + rdlength;
      if (end > buf.length) throw new WireError('record data runs past the end of the packet');
      out.push({ section, start, type, klass, ttlOffset: off + 4, ttl, rdataOffset, rdlength, end });
      off = end;
    }
    if (section === 2) break;
  }
  return out;
}

/**
 * Parses a query: header, exactly one question, and the OPT record if any.
 * Returns null when even the header is unreadable (drop the packet); throws
 * WireError (answer FORMERR) when the header parsed but the rest did not.
 */
export function parseQuery(buf: Buffer, h: Header | null = parseHeader(buf)): Query | null {
  if (!h) return null;
  if (h.qdcount !== 1) throw new WireError(`${h.qdcount} questions (exactly one is supported)`, { questionEnd: 0, edns: findEdns(buf, h) });
  const { name, end } = readQuestionName(buf, HEADER_SIZE);
  if (end + 4 > buf.length) throw new WireError('question type and class run past the end of the packet');
  const qtype = readU16(buf, end);
  const qclass = readU16(buf, end + 2);
  const questionEnd = end + 4;
  let edns: Edns | null = null;
  if (h.ancount === 0 && h.nscount === 0 && h.arcount === 1 && buf[questionEnd] === 0 && questionEnd + 11 <= buf.length && readU16(buf, questionEnd + 1) === TYPE.OPT) {
    // The usual query: one OPT record owned by the root and nothing else. Read in place.
    if (questionEnd + 11 + readU16(buf, questionEnd + 9) > buf.length) throw new WireError('record data runs past the end of the packet', { questionEnd, edns: null });
    const ttl = buf.readUInt32BE(questionEnd + 5);
    edns = { udpSize: readU16(buf, questionEnd + 3), version: (ttl >>> 16) & 0xff, do: (ttl & 0x8000) !== 0 };
  } else if (h.ancount || h.nscount || h.arcount) {
    let records: RecordRef[];
    try {
      records = walkRecords(buf, questionEnd, [h.ancount, h.nscount, h.arcount]);
    } catch (err) {
      throw new WireError((err as Error).message, { questionEnd, edns: null });
    }
    // Every OPT record is checked; a malformed one still says the client speaks EDNS (the first one's values).
    const opts = records.filter((r) => r.type === TYPE.OPT);
    edns = opts.length > 0 ? ednsOf(opts[0]!) : null;
    const partial = { questionEnd, edns };
    if (opts.length > 1) throw new WireError('more than one OPT record', partial);
    if (edns && opts[0]!.section !== 2) throw new WireError('OPT record outside the additional section', partial);
    if (edns && buf[opts[0]!.start] !== 0) throw new WireError('OPT record owner is not the root', partial);
  }
  return {
    id: h.id,
    opcode: h.opcode,
    qr: h.qr,
    rd: h.rd,
    cd: h.cd,
    qname: name,
    lname: lowerName(name),
    qtype,
    qclass,
    questionEnd,
    edns,
  };
}

function ednsOf(opt: RecordRef): Edns {
  return { udpSize: opt.klass, version: (opt.ttl >>> 16) & 0xff, do: (opt.ttl & 0x8000) !== 0 };
}

/**
 * The EDNS of a query whose question section is not the one question we
 * read (QDCOUNT 0, or several): the first OPT record past the questions, or
 * null when there is none or the message does not parse that far.
 */
function findEdns(buf: Buffer, h: Header): Edns | null {
  try {
    let off = HEADER_SIZE;
    for (let i = 0; i < h.qdcount; i++) off = skipName(buf, off) + 4;
    const opt = walkRecords(buf, off, [h.ancount, h.nscount, h.arcount]).find((r) => r.type === TYPE.OPT);
    return opt ? ednsOf(opt) : null;
  } catch {
    return null;
  }
}

/** The question (name bytes + type + class) of a message, for matching replies to queries. */
export function questionBytes(buf: Buffer): Buffer | null {
  if (buf.length < HEADER_SIZE || readU16(buf, 4) !== 1) return null;
  try {
    const { end } = readQuestionName(buf, HEADER_SIZE);
    if (end + 4 > buf.length) return null;
    return buf.subarray(HEADER_SIZE, end + 4);
  } catch {
    return null;
  }
}

/**
 * Every record of a whole message (one question, then answer, authority and
 * additional), or null when the question or any record does not parse.
 * A caller that has already read the question passes its length.
 */
export function messageRecords(buf: Buffer, questionLength = questionBytes(buf)?.length): RecordRef[] | null {
  if (questionLength === undefined) return null;
  try {
    return walkRecords(buf, HEADER_SIZE + questionLength, [readU16(buf, 6), readU16(buf, 8), readU16(buf, 10)]);
  } catch {
    return null;
  }
}

/** Compares two questions ignoring ASCII case in the name (RFC 5452 §9.1 matching). */
export function sameQuestion(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    let x = a[i]!;
    let y = b[i]!;
    if (x >= 65 && x <= 90) x += 32;
    if (y >= 65 && y <= 90) y += 32;
    if (x !== y) return false;
  }
  return true;
}

/**
 * Rewrites every record's TTL in place (OPT excluded) as `ttl(original)`,
 * walking the message without allocating. Returns false if the message does
 * not parse (then nothing after the failure point was changed).
 */
export function rewriteTtls(buf: Buffer, ttl: (original: number) => number): boolean {
  if (buf.length < HEADER_SIZE) return false;
  let off = HEADER_SIZE;
  try {
    for (let i = readU16(buf, 4); i > 0; i--) off = skipName(buf, off) + 4;
    const records = readU16(buf, 6) + readU16(buf, 8) + readU16(buf, 10);
    for (let i = 0; i < records; i++) {
      off = skipName(buf, off);
      if (off + 10 > buf.length) return false;
      const rdEnd = off + 10 + readU16(buf, off + 8);
      if (rdEnd > buf.length) return false;
      if (readU16(buf, off) !== TYPE.OPT) buf.writeUInt32BE(Math.max(0, Math.min(0x7fffffff, ttl(buf.readUInt32BE(off + 4)))), off + 4);
      off = rdEnd;
    }
  } catch {
    return false;
  }
  return true;
}

/**
 * The question section for `name` (lowercase presentation form of plain
 * labels, as the discovery core holds names), type `qtype`, class IN.
 * Throws WireError for a label over 63 octets or a name over 255.
 */
export function encodeQuestion(name: string, qtype: number): Buffer {
  const labels = name === '' ? [] : name.split('.');
  let size = 1 + 4;
  for (const l of labels) size += 1 + l.length;
  if (size - 4 > MAX_NAME_WIRE) throw new WireError('name longer than 255 octets');
  const out = Buffer.alloc(size);
  let off = 0;
  for (const l of labels) {
    if (l.length === 0 || l.length > 63) throw new WireError(`label "${l}" is not 1–63 octets`);
    out[off++] = l.length;
    off += out.write(l, off, 'latin1');
  }
  out[off++] = 0;
  out.writeUInt16BE(qtype, off);
  out.writeUInt16BE(CLASS_IN, off + 2);
  return out;
}

/**
 * The A and AAAA addresses in a message's answer section (of any owner: a
 * recursive resolver's answer is the CNAME chain and its end), the least
 * TTL among them, and, for an answer without any, the negative TTL its
 * SOA allows (RFC 2308 §5: min(SOA TTL, MINIMUM)), or null without an SOA.
 * Null when the message does not parse.
 */
export function answerAddresses(msg: Buffer): { v4: string[]; v6: string[]; ttl: number; negativeTtl: number | null } | null {
  const records = messageRecords(msg);
  if (!records) return null;
  const v4: string[] = [];
  const v6: string[] = [];
  let ttl = Infinity;
  let negativeTtl: number | null = null;
  for (const r of records) {
    if (r.section === 0 && r.klass === CLASS_IN && r.type === TYPE.A && r.rdlength === 4) {
      v4.push(`${msg[r.rdataOffset]}.${msg[r.rdataOffset + 1]}.${msg[r.rdataOffset + 2]}.${msg[r.rdataOffset + 3]}`);
      ttl = Math.min(ttl, r.ttl);
    } else if (r.section === 0 && r.klass === CLASS_IN && r.type === TYPE.AAAA && r.rdlength === 16) {
      v6.push(formatIpv6(msg.subarray(r.rdataOffset, r.rdataOffset + 16)));
      ttl = Math.min(ttl, r.ttl);
    } else if (r.section === 1 && r.type === TYPE.SOA && r.rdlength >= 20) {
      negativeTtl = Math.min(r.ttl, msg.readUInt32BE(r.rdataOffset + r.rdlength - 4));
    }
  }
  return { v4, v6, ttl: ttl === Infinity ? 0 : ttl, negativeTtl };
}

/** RFC 5952 text of a 16-octet IPv6 address: lowercase, longest zero run (of two or more) as `::`. */
export function formatIpv6(b: Buffer): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
