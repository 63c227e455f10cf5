import { base32Port } from '../src/scheme/base32.js';
import { BENCH_TTL } from './fixtures.js';

/**
 * The few DNS wire operations the bench needs without a codec: building a
 * query for probes, and the "dgram bare" reference's parse-question /
 * write-fixed-shape-answer path. Deliberately minimal: this is the floor a
 * Node UDP server can reach, not a DNS implementation.
 */

export const TYPE_A = 1;
export const TYPE_SRV = 33;
const CLASS_IN = 1;
const HEADER = 12;

/** A standard query (RD set, no EDNS) for `name`, as dnsperf sends it. */
export function encodeQuery(id: number, name: string, type: number): Buffer {
  const labels = name.replace(/\.$/, '').split('.');
  const nameLen = labels.reduce((n, l) => n + 1 + Buffer.byteLength(l), 1);
  const buf = Buffer.alloc(HEADER + nameLen + 4);
  buf.writeUInt16BE(id, 0);
  buf.writeUInt16BE(0x0100, 2); // RD
  buf.writeUInt16BE(1, 4); // QDCOUNT
  let o = HEADER;
  for (const l of labels) {
    o = buf.writeUInt8(Buffer.byteLength(l), o);
    o += buf.write(l, o, 'latin1');
  }
  o = buf.writeUInt8(0, o);
  o = buf.writeUInt16BE(type, o);
  buf.writeUInt16BE(CLASS_IN, o);
  return buf;
}

/** The question of a query: where its labels start, where it ends, its type. */
export interface WireQuestion {
  /** Offsets of each label's length byte. */
  labels: number[];
  /** Offset just past QTYPE/QCLASS. */
  end: number;
  qtype: number;
  qclass: number;
}

/** Parses the single question of a query; null when it is not one well-formed uncompressed question. */
export function parseQuestion(msg: Buffer): WireQuestion | null {
  if (msg.length < HEADER + 5) return null;
  if (msg[2]! & 0x80) return null; // a response, not a query
  if (msg.readUInt16BE(4) !== 1) return null;
  const labels: number[] = [];
  let o = HEADER;
  for (;;) {
    if (o >= msg.length) return null;
    const len = msg[o]!;
    if (len === 0) break;
    if (len > 63) return null; // compression or extended label types never appear in a question we accept
    labels.push(o);
    o += 1 + len;
    if (labels.length > 127) return null;
  }
  o += 1;
  if (o + 4 > msg.length) return null;
  return { labels, end: o + 4, qtype: msg.readUInt16BE(o), qclass: msg.readUInt16BE(o + 2) };
}

function labelAt(msg: Buffer, off: number): string {
  return msg.toString('latin1', off + 1, off + 1 + msg[off]!);
}

/**
 * The "dgram bare" answer: header and question copied, one answer whose name
 * points at the question. SRV `_svc._tcp.rest` → `0 0 <base32 port> svc.rest.`
 * (`svc.rest` SRV → itself as target), the target written uncompressed as
 * RFC 2782 asks and as unbound writes it; A of any name → 127.0.0.1; any
 * other type → NODATA. Additional records of the query (EDNS) are not echoed.
 */
export function bareAnswer(msg: Buffer, q: WireQuestion): Buffer {
  const qEnd = q.end;
  let rdata: Buffer | null = null;
  let type = q.qtype;
  if (q.qclass === CLASS_IN && q.qtype === TYPE_SRV && q.labels.length > 0) {
    let first = labelAt(msg, q.labels[0]!);
    let restIdx = 1;
    if (first.startsWith('_') && q.labels.length > 2) {
      const proto = labelAt(msg, q.labels[1]!).toLowerCase();
      if (proto === '_tcp' || proto === '_udp') {
        first = first.slice(1);
        restIdx = 2;
      }
    }
    const restStart = restIdx < q.labels.length ? q.labels[restIdx]! : qEnd - 5;
    const restLen = qEnd - 4 - restStart; // labels after the service, incl. the root byte
    const firstBytes = Buffer.byteLength(first, 'latin1');
    rdata = Buffer.allocUnsafe(6 + 1 + firstBytes + restLen);
    rdata.writeUInt16BE(0, 0);
    rdata.writeUInt16BE(0, 2);
    rdata.writeUInt16BE(base32Port(first), 4);
    rdata.writeUInt8(firstBytes, 6);
    rdata.write(first, 7, 'latin1');
    msg.copy(rdata, 7 + firstBytes, restStart, restStart + restLen);
  } else if (q.qclass === CLASS_IN && q.qtype === TYPE_A) {
    rdata = Buffer.from([127, 0, 0, 1]);
    type = TYPE_A;
  }
  const out = Buffer.allocUnsafe(qEnd + (rdata ? 12 + rdata.length : 0));
  msg.copy(out, 0, 0, qEnd);
  // QR, opcode and RD from the query, AA set, RA clear, NOERROR.
  out[2] = 0x80 | (msg[2]! & 0x79) | 0x04;
  out[3] = 0;
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(rdata ? 1 : 0, 6);
  out.writeUInt32BE(0, 8); // NSCOUNT, ARCOUNT
  if (rdata) {
    let o = qEnd;
    o = out.writeUInt16BE(0xc000 | HEADER, o);
    o = out.writeUInt16BE(type, o);
    o = out.writeUInt16BE(CLASS_IN, o);
    o = out.writeUInt32BE(BENCH_TTL, o);
    o = out.writeUInt16BE(rdata.length, o);
    rdata.copy(out, o);
  }
  return out;
}
