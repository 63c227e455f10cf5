import dgram from 'node:dgram';
import net from 'node:net';

/**
 * A real DNS server on 127.0.0.1 (UDP and TCP on one port) whose behaviour
 * the test sets, globally or per query name, to inject upstream faults:
 *
 *   answer          A/AAAA/TXT records (address, TTL, how many), NODATA+SOA otherwise
 *   nxdomain        NXDOMAIN with an SOA (negative caching)
 *   silent          never answers
 *   delay           answers after `ms`
 *   servfail        SERVFAIL
 *   refused         REFUSED
 *   formerr         FORMERR (the question echoed)
 *   notimp          NOTIMP (the question echoed)
 *   wrong-id        a reply with another ID (then, with thenReal, the real one)
 *   wrong-question  a reply for another name (then, with thenReal, the real one)
 *   wrong-case      the reply with the question's letters all lowercase, not as
 *                   the query spelled them (DNS 0x20; then, with thenReal, the real one)
 *   spoof           the otherwise-correct reply from a second socket on another
 *                   port (then, with thenReal, the real one from the right port)
 *   truncate        TC=1 and no records over UDP; the full answer over TCP
 *
 * Faked replies carry `spoofAddress` (default 203.0.113.66) so a test can
 * see whether one ever reached a client. down() closes every socket and
 * up() binds the same port again. Queries received are counted per
 * transport and per name.
 */

export type FakeKind =
  | 'answer'
  | 'nxdomain'
  | 'silent'
  | 'delay'
  | 'servfail'
  | 'refused'
  | 'formerr'
  | 'notimp'
  | 'wrong-id'
  | 'wrong-question'
  | 'wrong-case'
  | 'spoof'
  | 'truncate';

export interface FakeMode {
  kind: FakeKind;
  /** TTL of answer records (default 300). */
  ttl?: number;
  /** A record address (default 192.0.2.1); AAAA answers get 2001:db8::1. */
  address?: string;
  /** Records per answer (default 1). */
  records?: number;
  /** delay: how long to wait before answering. */
  ms?: number;
  /** wrong-id, wrong-question, wrong-case, spoof: also send the real answer afterwards. */
  thenReal?: boolean;
  /** How long after the faked reply the real one follows (default 30 ms). */
  thenAfterMs?: number;
  /** Address carried by faked replies (default 203.0.113.66). */
  spoofAddress?: string;
}

export interface ReceivedQuery {
  name: string;
  qtype: number;
  id: number;
  transport: 'udp' | 'tcp';
}

interface ParsedQuery {
  id: number;
  flags: number;
  /** lowercase, no trailing dot */
  name: string;
  qtype: number;
  question: Buffer;
  edns: boolean;
}

export class FakeUpstream {
  readonly host = '127.0.0.1';
  /** Global mode, used when no per-name mode matches. */
  mode: FakeMode = { kind: 'answer' };
  readonly received: ReceivedQuery[] = [];
  private readonly perName = new Map<string, FakeMode>();
  private udp: dgram.Socket | null = null;
  private tcp: net.Server | null = null;
  private spoofer: dgram.Socket | null = null;
  private readonly conns = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(public port: number) {}

  /** Binds UDP and TCP on one free port of 127.0.0.1. */
  static async start(mode?: FakeMode): Promise<FakeUpstream> {
    for (let attempt = 0; attempt < 10; attempt++) {
      const f = new FakeUpstream(0);
      if (mode) f.mode = mode;
      try {
        await f.bind(0);
        return f;
      } catch (err) {
        await f.close();
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
      }
    }
    throw new Error('could not bind a fake upstream on one port for UDP and TCP');
  }

  /** "127.0.0.1:port", as --upstream takes it. */
  get address(): string {
    return `${this.host}:${this.port}`;
  }

  /** Sets the mode for one name (any case, trailing dot optional; `*.example.org` for every name under it); null removes it. */
  setMode(name: string, mode: FakeMode | null): void {
    const k = name.toLowerCase().replace(/\.$/, '');
    if (mode) this.perName.set(k, mode);
    else this.perName.delete(k);
  }

  /** Queries received, optionally only for one name and/or transport. */
  count(filter: { name?: string; transport?: 'udp' | 'tcp' } = {}): number {
    const name = filter.name?.toLowerCase().replace(/\.$/, '');
    return this.received.filter((r) => (name === undefined || r.name === name) && (filter.transport === undefined || r.transport === filter.transport)).length;
  }

  get isUp(): boolean {
    return this.udp !== null;
  }

  /** Closes every socket (queries now go unanswered: ICMP port unreachable / RST). */
  async down(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    const udp = this.udp;
    const tcp = this.tcp;
    const spoofer = this.spoofer;
    this.udp = this.tcp = this.spoofer = null;
    await Promise.all([
      udp ? new Promise<void>((r) => udp.close(() => r())) : undefined,
      tcp ? new Promise<void>((r) => tcp.close(() => r())) : undefined,
      spoofer ? new Promise<void>((r) => spoofer.close(() => r())) : undefined,
    ]);
  }

  /** Binds the same port again after down(). */
  async up(): Promise<void> {
    if (this.udp) return;
    await this.bind(this.port);
  }

  close(): Promise<void> {
    return this.down();
  }

  private async bind(port: number): Promise<void> {
    const udp = dgram.createSocket('udp4');
    this.udp = udp;
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, this.host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    this.port = udp.address().port;
    udp.on('message', (msg, rinfo) => this.onUdp(msg, rinfo));
    udp.on('error', () => {});
    const tcp = net.createServer((sock) => this.onTcp(sock));
    this.tcp = tcp;
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ port: this.port, host: this.host, exclusive: true }, () => {
        tcp.off('error', reject);
        resolve();
      });
    });
    const spoofer = dgram.createSocket('udp4');
    this.spoofer = spoofer;
    await new Promise<void>((resolve) => spoofer.bind(0, this.host, () => resolve()));
    spoofer.on('error', () => {});
  }

  /** The mode for a name: its own, else the nearest `*.parent` wildcard, else the global mode. */
  private modeFor(name: string): FakeMode {
    const own = this.perName.get(name);
    if (own) return own;
    for (let i = name.indexOf('.'); i >= 0; i = name.indexOf('.', i + 1)) {
      const wild = this.perName.get(`*${name.slice(i)}`);
      if (wild) return wild;
    }
    return this.mode;
  }

  private later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  private onUdp(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const q = parseQuery(msg);
    if (!q) return;
    this.received.push({ name: q.name, qtype: q.qtype, id: q.id, transport: 'udp' });
    const m = this.modeFor(q.name);
    const send = (out: Buffer, from: dgram.Socket | null = this.udp) => from?.send(out, rinfo.port, rinfo.address);
    switch (m.kind) {
      case 'silent':
        return;
      case 'delay':
        return this.later(m.ms ?? 1000, () => send(answerFor(q, m)));
      case 'truncate':
        return send(truncated(q));
      case 'wrong-id':
      case 'wrong-question':
      case 'wrong-case':
      case 'spoof': {
        send(faked(q, m), m.kind === 'spoof' ? this.spoofer : this.udp);
        if (m.thenReal) this.later(m.thenAfterMs ?? 30, () => send(answerFor(q, m)));
        return;
      }
      default:
        return send(answerFor(q, m));
    }
  }

  private onTcp(sock: net.Socket): void {
    this.conns.add(sock);
    sock.on('close', () => this.conns.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    const write = (out: Buffer) => {
      if (sock.destroyed) return;
      const len = Buffer.alloc(2);
      len.writeUInt16BE(out.length);
      sock.write(Buffer.concat([len, out]));
    };
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        const q = parseQuery(msg);
        if (!q) continue;
        this.received.push({ name: q.name, qtype: q.qtype, id: q.id, transport: 'tcp' });
        const m = this.modeFor(q.name);
        switch (m.kind) {
          case 'silent':
            break;
          case 'delay':
            this.later(m.ms ?? 1000, () => write(answerFor(q, m)));
            break;
          case 'wrong-id':
          case 'wrong-question':
          case 'wrong-case':
            write(faked(q, m));
            if (m.thenReal) this.later(m.thenAfterMs ?? 30, () => write(answerFor(q, m)));
            break;
          default:
            write(answerFor(q, m)); // truncate and spoof: the full, correct answer over TCP
        }
      }
    });
  }
}

function parseQuery(msg: Buffer): ParsedQuery | null {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return null;
  let off = 12;
  const labels: string[] = [];
  while (off < msg.length && msg[off] !== 0) {
    const len = msg[off]!;
    if (len > 63 || off + 1 + len > msg.length) return null;
    labels.push(msg.subarray(off + 1, off + 1 + len).toString('latin1'));
    off += len + 1;
  }
  if (off + 5 > msg.length) return null;
  const question = msg.subarray(12, off + 5);
  return {
    id: msg.readUInt16BE(0),
    flags: msg.readUInt16BE(2),
    name: labels.join('.').toLowerCase(),
    qtype: msg.readUInt16BE(off + 1),
    question,
    edns: msg.readUInt16BE(10) > 0,
  };
}

function header(q: ParsedQuery, rcode: number, counts: [number, number, number], tc = false, id = q.id): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  // QR, opcode 0, RD copied, RA, TC as asked
  h.writeUInt16BE(0x8080 | (q.flags & 0x0100) | (tc ? 0x0200 : 0) | rcode, 2);
  h.writeUInt16BE(1, 4);
  h.writeUInt16BE(counts[0], 6);
  h.writeUInt16BE(counts[1], 8);
  h.writeUInt16BE(counts[2] + (q.edns ? 1 : 0), 10);
  return h;
}

function opt(q: ParsedQuery): Buffer[] {
  if (!q.edns) return [];
  const b = Buffer.alloc(11);
  b.writeUInt16BE(41, 1);
  b.writeUInt16BE(1232, 3);
  return [b];
}

/** An RR owned by the question name (compression pointer to offset 12). */
function rr(type: number, ttl: number, rdata: Buffer): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0xc00c, 0);
  b.writeUInt16BE(type, 2);
  b.writeUInt16BE(1, 4);
  b.writeUInt32BE(ttl, 6);
  b.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([b, rdata]);
}

function soa(ttl: number): Buffer {
  const rdata = Buffer.alloc(22); // root mname, root rname, five 32-bit fields
  rdata.writeUInt32BE(1, 2);
  rdata.writeUInt32BE(3600, 6);
  rdata.writeUInt32BE(600, 10);
  rdata.writeUInt32BE(86400, 14);
  rdata.writeUInt32BE(ttl, 18);
  return rr(6, ttl, rdata);
}

function ipv4(address: string, i: number): Buffer {
  const parts = address.split('.').map(Number);
  parts[3] = (parts[3]! + i) & 0xff;
  return Buffer.from(parts);
}

/** The correct answer for the query under mode `m` (rcode from servfail/refused/nxdomain, else records). */
function answerFor(q: ParsedQuery, m: FakeMode, address = m.address ?? '192.0.2.1'): Buffer {
  const ttl = m.ttl ?? 300;
  if (m.kind === 'servfail') return Buffer.concat([header(q, 2, [0, 0, 0]), q.question, ...opt(q)]);
  if (m.kind === 'refused') return Buffer.concat([header(q, 5, [0, 0, 0]), q.question, ...opt(q)]);
  if (m.kind === 'formerr') return Buffer.concat([header(q, 1, [0, 0, 0]), q.question, ...opt(q)]);
  if (m.kind === 'notimp') return Buffer.concat([header(q, 4, [0, 0, 0]), q.question, ...opt(q)]);
  if (m.kind === 'nxdomain') return Buffer.concat([header(q, 3, [0, 1, 0]), q.question, soa(ttl), ...opt(q)]);
  const n = m.records ?? 1;
  const records: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    if (q.qtype === 1) records.push(rr(1, ttl, ipv4(address, i)));
    else if (q.qtype === 28) {
      const a = Buffer.alloc(16);
      a.writeUInt16BE(0x2001, 0);
      a.writeUInt16BE(0x0db8, 2);
      a.writeUInt16BE(i + 1, 14);
      records.push(rr(28, ttl, a));
    } else if (q.qtype === 16) {
      const text = Buffer.from(`fake ${address} ${i}`);
      records.push(rr(16, ttl, Buffer.concat([Buffer.from([text.length]), text])));
    }
  }
  if (records.length === 0) return Buffer.concat([header(q, 0, [0, 1, 0]), q.question, soa(ttl), ...opt(q)]);
  return Buffer.concat([header(q, 0, [records.length, 0, 0]), q.question, ...records, ...opt(q)]);
}

/** A reply that must be dropped: another ID, another question, or the right reply from the wrong port. */
function faked(q: ParsedQuery, m: FakeMode): Buffer {
  const evil = m.spoofAddress ?? '203.0.113.66';
  const fake: FakeMode = { kind: 'answer', ttl: 86400, address: evil };
  if (m.kind === 'wrong-id') {
    const out = answerFor(q, fake, evil);
    out.writeUInt16BE((q.id + 1) & 0xffff, 0);
    return out;
  }
  if (m.kind === 'wrong-case') {
    // The same question, spelled all in lowercase: the daemon never sends it so (forwarder.ts mixCase).
    const lower = Buffer.from(q.question);
    for (let i = 0; i < lower.length - 4; i++) if (lower[i]! >= 65 && lower[i]! <= 90) lower[i]! += 32;
    return answerFor({ ...q, question: lower }, fake, evil);
  }
  if (m.kind === 'wrong-question') {
    const other = Buffer.concat([Buffer.from('\x04evil\x07example\x00', 'latin1'), q.question.subarray(q.question.length - 4)]);
    return answerFor({ ...q, question: other }, fake, evil);
  }
  return answerFor(q, fake, evil);
}

function truncated(q: ParsedQuery): Buffer {
  return Buffer.concat([header(q, 0, [0, 0, 0], true), q.question, ...opt(q)]);
}
