import dgram from 'node:dgram';
import net from 'node:net';

/**
 * DNS wire format for tests, written independently of src/dns/wire.ts so a
 * bug there cannot hide itself: a query builder, a strict message parser
 * (follows compression pointers with a loop guard, rejects trailing bytes),
 * and small raw UDP/TCP clients that match replies by ID.
 */

export const T = { A: 1, NS: 2, CNAME: 5, SOA: 6, PTR: 12, MX: 15, TXT: 16, AAAA: 28, SRV: 33, OPT: 41, ANY: 255 } as const;
export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface QuerySpec {
  id?: number;
  name: string;
  type?: number;
  klass?: number;
  rd?: boolean;
  /** Raw second header word; overrides rd. */
  flags?: number;
  edns?: { udpSize?: number; do?: boolean; version?: number } | null;
}

/** Encodes a name in presentation form (no escapes; '' or '.' is the root). */
export function encodeName(name: string): Buffer {
  const parts = name.replace(/\.$/, '').split('.').filter((l) => l.length > 0);
  const bufs: Buffer[] = [];
  for (const p of parts) {
    const b = Buffer.from(p, 'latin1');
    bufs.push(Buffer.from([b.length]), b);
  }
  bufs.push(Buffer.from([0]));
  return Buffer.concat(bufs);
}

/** An EDNS0 OPT record: root owner, udp size, extended rcode 0, version, DO. */
export function optRr(udpSize = 1232, dnssecOk = false, version = 0): Buffer {
  const b = Buffer.alloc(11);
  b.writeUInt16BE(T.OPT, 1);
  b.writeUInt16BE(udpSize, 3);
  b[6] = version;
  b[7] = dnssecOk ? 0x80 : 0;
  return b;
}

export function buildQuery(q: QuerySpec): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id ?? 0, 0);
  header.writeUInt16BE(q.flags ?? (q.rd === false ? 0 : 0x0100), 2);
  header.writeUInt16BE(1, 4);
  const opt = q.edns ? optRr(q.edns.udpSize ?? 1232, q.edns.do ?? false, q.edns.version ?? 0) : null;
  header.writeUInt16BE(opt ? 1 : 0, 10);
  const question = Buffer.alloc(4);
  question.writeUInt16BE(q.type ?? T.A, 0);
  question.writeUInt16BE(q.klass ?? 1, 2);
  return Buffer.concat([header, encodeName(q.name), question, ...(opt ? [opt] : [])]);
}

export interface Question {
  name: string;
  type: number;
  klass: number;
  /** The question's bytes as sent (name, type, class), when the name was uncompressed. */
  bytes: Buffer;
}

export interface Rr {
  name: string;
  type: number;
  klass: number;
  ttl: number;
  rdata: Buffer;
  /** Decoded rdata for A, AAAA, SRV, TXT, SOA; otherwise undefined. */
  data?: unknown;
}

export interface Message {
  id: number;
  flags: number;
  qr: boolean;
  opcode: number;
  aa: boolean;
  tc: boolean;
  rd: boolean;
  ra: boolean;
  /** Header rcode (4 bits). */
  rcode: number;
  /** Full rcode: header rcode plus the OPT extended bits. */
  fullRcode: number;
  questions: Question[];
  answers: Rr[];
  authority: Rr[];
  additional: Rr[];
  opt: { udpSize: number; extRcode: number; version: number; do: boolean } | null;
}

export class ParseError extends Error {}

/** Reads a possibly-compressed name; pointers must point backwards; total ≤ 255 octets. */
export function readName(buf: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  let end = -1;
  let wire = 0;
  let jumps = 0;
  let pos = off;
  for (;;) {
    if (pos >= buf.length) throw new ParseError('name runs past the end');
    const len = buf[pos]!;
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) throw new ParseError('pointer runs past the end');
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (target >= pos) throw new ParseError('forward or self compression pointer');
      if (++jumps > 64) throw new ParseError('too many compression pointers');
      if (end < 0) end = pos + 2;
      pos = target;
      continue;
    }
    if (len & 0xc0) throw new ParseError('reserved label type');
    if (len === 0) {
      wire += 1;
      if (end < 0) end = pos + 1;
      break;
    }
    if (pos + 1 + len > buf.length) throw new ParseError('label runs past the end');
    wire += len + 1;
    if (wire > 255) throw new ParseError('name longer than 255 octets');
    labels.push(buf.subarray(pos + 1, pos + 1 + len).toString('latin1'));
    pos += len + 1;
  }
  return { name: labels.join('.'), end };
}

function decodeRdata(buf: Buffer, type: number, off: number, len: number): unknown {
  const r = buf.subarray(off, off + len);
  switch (type) {
    case T.A:
      if (len !== 4) throw new ParseError('A rdata is not 4 octets');
      return [...r].join('.');
    case T.AAAA:
      if (len !== 16) throw new ParseError('AAAA rdata is not 16 octets');
      return r.toString('hex').match(/.{4}/g)!.join(':');
    case T.SRV: {
      if (len < 7) throw new ParseError('SRV rdata too short');
      const target = readName(buf, off + 6);
      if (target.end !== off + len) throw new ParseError('SRV rdata length disagrees with its target');
      return { priority: r.readUInt16BE(0), weight: r.readUInt16BE(2), port: r.readUInt16BE(4), target: target.name };
    }
    case T.TXT: {
      const out: string[] = [];
      let p = 0;
      while (p < len) {
        const l = r[p]!;
        if (p + 1 + l > len) throw new ParseError('TXT string runs past its rdata');
        out.push(r.subarray(p + 1, p + 1 + l).toString('latin1'));
        p += 1 + l;
      }
      return out;
    }
    case T.SOA: {
      const m = readName(buf, off);
      const rn = readName(buf, m.end);
      if (rn.end + 20 !== off + len) throw new ParseError('SOA rdata length disagrees with its fields');
      return { mname: m.name, rname: rn.name, serial: buf.readUInt32BE(rn.end), minimum: buf.readUInt32BE(rn.end + 16) };
    }
    default:
      return undefined;
  }
}

/** Parses a whole DNS message strictly: every count honest, nothing left over. */
export function parseMessage(buf: Buffer): Message {
  if (buf.length < 12) throw new ParseError(`message of ${buf.length} octets is shorter than a header`);
  const flags = buf.readUInt16BE(2);
  const counts = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const;
  let off = 12;
  const questions: Question[] = [];
  for (let i = 0; i < counts[0]; i++) {
    const start = off;
    const n = readName(buf, off);
    if (n.end + 4 > buf.length) throw new ParseError('question runs past the end');
    questions.push({ name: n.name, type: buf.readUInt16BE(n.end), klass: buf.readUInt16BE(n.end + 2), bytes: buf.subarray(start, n.end + 4) });
    off = n.end + 4;
  }
  const sections: Rr[][] = [[], [], []];
  let opt: Message['opt'] = null;
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]!; i++) {
      const n = readName(buf, off);
      if (n.end + 10 > buf.length) throw new ParseError('record header runs past the end');
      const type = buf.readUInt16BE(n.end);
      const klass = buf.readUInt16BE(n.end + 2);
      const ttl = buf.readUInt32BE(n.end + 4);
      const rdlen = buf.readUInt16BE(n.end + 8);
      const rdOff = n.end + 10;
      if (rdOff + rdlen > buf.length) throw new ParseError('rdata runs past the end');
      if (type === T.OPT) {
        if (s !== 2) throw new ParseError('OPT outside the additional section');
        if (opt) throw new ParseError('two OPT records');
        if (n.name !== '') throw new ParseError('OPT owner is not the root');
        opt = { udpSize: klass, extRcode: ttl >>> 24, version: (ttl >>> 16) & 0xff, do: (ttl & 0x8000) !== 0 };
      }
      sections[s]!.push({ name: n.name, type, klass, ttl, rdata: buf.subarray(rdOff, rdOff + rdlen), data: decodeRdata(buf, type, rdOff, rdlen) });
      off = rdOff + rdlen;
    }
  }
  if (off !== buf.length) throw new ParseError(`${buf.length - off} octets after the last record`);
  const rcode = flags & 0xf;
  return {
    id: buf.readUInt16BE(0),
    flags,
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rd: (flags & 0x0100) !== 0,
    ra: (flags & 0x0080) !== 0,
    rcode,
    fullRcode: ((opt?.extRcode ?? 0) << 4) | rcode,
    questions,
    answers: sections[0]!,
    authority: sections[1]!,
    additional: sections[2]!,
    opt,
  };
}

export interface Server {
  host: string;
  port: number;
}

/**
 * A raw UDP client on one socket (optionally bound to a given loopback
 * address, e.g. 127.0.0.2). Replies are matched to queries by ID; replies
 * nobody waits for are kept in `unmatched`.
 */
export class UdpClient {
  readonly unmatched: Buffer[] = [];
  private readonly waiting = new Map<number, (msg: Buffer) => void>();
  private nextId = Math.floor(Math.random() * 0x10000);

  private constructor(readonly sock: dgram.Socket) {
    sock.on('message', (msg) => {
      const id = msg.length >= 2 ? msg.readUInt16BE(0) : -1;
      const w = this.waiting.get(id);
      if (w) {
        this.waiting.delete(id);
        w(msg);
      } else this.unmatched.push(msg);
    });
  }

  static async open(address = '127.0.0.1'): Promise<UdpClient> {
    const sock = dgram.createSocket(net.isIPv6(address) ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, address, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    return new UdpClient(sock);
  }

  /** A fresh ID not waited on by this client. */
  id(): number {
    for (let i = 0; i < 0x10000; i++) {
      this.nextId = (this.nextId + 1) & 0xffff;
      if (!this.waiting.has(this.nextId)) return this.nextId;
    }
    throw new Error('no free query ID');
  }

  /** Sends a raw packet and waits for the reply with `id` (null on timeout). */
  send(server: Server, packet: Buffer, id: number, timeoutMs = 2000): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        resolve(null);
      }, timeoutMs);
      this.waiting.set(id, (msg) => {
        clearTimeout(t);
        resolve(msg);
      });
      this.sock.send(packet, server.port, server.host);
    });
  }

  /** Asks one question; resolves with the parsed reply and the client-visible delay. */
  async ask(server: Server, q: Omit<QuerySpec, 'id'>, timeoutMs = 2000): Promise<{ msg: Message | null; ms: number }> {
    const id = this.id();
    const started = performance.now();
    const raw = await this.send(server, buildQuery({ ...q, id }), id, timeoutMs);
    return { msg: raw ? parseMessage(raw) : null, ms: performance.now() - started };
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.sock.close(() => resolve()));
  }
}

/** Frames a message for DNS over TCP (two-octet length prefix). */
export function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

/** Splits a TCP byte stream into messages; returns the messages and the leftover bytes. */
export function unframe(buf: Buffer): { messages: Buffer[]; rest: Buffer } {
  const messages: Buffer[] = [];
  let off = 0;
  while (buf.length - off >= 2) {
    const len = buf.readUInt16BE(off);
    if (buf.length - off < 2 + len) break;
    messages.push(buf.subarray(off + 2, off + 2 + len));
    off += 2 + len;
  }
  return { messages, rest: buf.subarray(off) };
}

/** One question over a fresh TCP connection. */
export async function tcpAsk(server: Server, q: Omit<QuerySpec, 'id'>, timeoutMs = 2000): Promise<Message | null> {
  const id = Math.floor(Math.random() * 0x10000);
  return new Promise((resolve) => {
    const sock = net.connect(server.port, server.host);
    let buf: Buffer = Buffer.alloc(0);
    const done = (m: Message | null) => {
      clearTimeout(t);
      sock.destroy();
      resolve(m);
    };
    const t = setTimeout(() => done(null), timeoutMs);
    sock.on('error', () => done(null));
    sock.on('close', () => done(null));
    sock.on('connect', () => sock.write(frame(buildQuery({ ...q, id }))));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const { messages } = unframe(buf);
      const m = messages.find((x) => x.readUInt16BE(0) === id);
      if (m) done(parseMessage(m));
    });
  });
}

/** Sends one raw message over UDP and resolves with the first reply (bytes, unparsed). */
export function rawUdp(to: { host: string; port: number }, msg: Buffer, timeoutMs = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(to.host) ? 'udp6' : 'udp4');
    const t = setTimeout(() => {
      s.close();
      reject(new Error('no UDP reply'));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(m);
    });
    s.send(msg, to.port, to.host);
  });
}

/** Writes raw bytes on one TCP connection and collects `expect` framed replies. */
export function tcpExchange(to: { host: string; port: number }, data: Buffer, expect: number, timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let buf: Buffer = Buffer.alloc(0);
    const s = net.connect(to.port, to.host, () => s.write(data));
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`got ${out.length} of ${expect} TCP replies`));
    }, timeoutMs);
    s.on('data', (d) => {
      const { messages, rest } = unframe(Buffer.concat([buf, d]));
      out.push(...messages);
      buf = rest;
      if (out.length >= expect) {
        clearTimeout(t);
        s.destroy();
        resolve(out);
      }
    });
    s.on('error', reject);
  });
}
