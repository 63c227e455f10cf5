import { buildQuery, optRr, parseMessage, RCODE, T, type Message } from './dns-wire.js';

/**
 * Packet generators for the DNS fuzz tests, each paired with what the
 * daemon must do with the packet (an oracle written from RFC 1035/6891,
 * not from the daemon's code):
 *
 *   drop     no reply (header unreadable, or QR=1: never answer a response)
 *   formerr  FORMERR
 *   notimp   NOTIMP (opcode other than QUERY)
 *   badvers  BADVERS (EDNS version > 0): header rcode 0, OPT extended rcode 1
 *   answer   a well-formed query: any reply but FORMERR
 *   reply    some reply (QR=1, same ID), rcode not predicted
 */
export type Expect = 'drop' | 'formerr' | 'notimp' | 'badvers' | 'answer' | 'reply';

export interface FuzzCase {
  kind: string;
  packet: Buffer;
  expect: Expect;
  /** UDP reply size limit this query allows (512 without EDNS), when known. */
  udpLimit?: number;
}

/** mulberry32: small, seedable, good enough to pick mutations reproducibly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Fuzzer {
  constructor(
    private readonly rnd: () => number,
    private readonly zone: string,
  ) {}

  int(n: number): number {
    return Math.floor(this.rnd() * n);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  label(max = 12): string {
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-_';
    let s = '';
    const n = 1 + this.int(max);
    for (let i = 0; i < n; i++) s += chars[this.int(chars.length)];
    return s;
  }

  /** Random ASCII case (0x20): the reply must echo it exactly. */
  mixCase(name: string): string {
    return [...name].map((c) => (this.rnd() < 0.5 ? c.toUpperCase() : c)).join('');
  }

  name(): string {
    const z = this.zone;
    const names = [
      'api.localhost',
      '_api._tcp.localhost',
      `${this.label()}.localhost`,
      `api.${z}`,
      `_api._tcp.${z}`,
      `users.${z}`,
      `v2.users.${z}`,
      `_legacy._udp.east.${z}`,
      `splash-api.${z}`,
      z,
      `_tcp.${z}`,
      `_bad.${z}`,
      `${this.label()}.${this.label()}.${z}`,
      `${this.label()}.example.org`,
      `${this.label()}.${this.label()}.example.net`,
      'example.com',
      '',
    ];
    return this.mixCase(this.pick(names));
  }

  qtype(): number {
    return this.rnd() < 0.85 ? this.pick([T.A, T.AAAA, T.SRV, T.TXT, T.SOA, T.ANY, T.NS, T.MX, T.PTR]) : this.int(0x10000);
  }

  /** A well-formed query, with or without EDNS. */
  valid(): FuzzCase {
    const edns = this.rnd() < 0.5 ? { udpSize: this.pick([0, 100, 512, 1232, 1400, 4096, 65535]), do: this.rnd() < 0.3 } : null;
    const packet = buildQuery({ name: this.name(), type: this.qtype(), edns, flags: this.rnd() < 0.8 ? 0x0100 : this.pick([0, 0x0110, 0x0120, 0x0140, 0x0300]) });
    return { kind: 'valid', packet, expect: 'answer', udpLimit: edns ? Math.min(Math.max(edns.udpSize, 512), 1232) : 512 };
  }

  /** Truly random bytes of random length (mostly around a header's size). */
  random(): FuzzCase {
    const r = this.rnd();
    const len = r < 0.3 ? this.int(16) : r < 0.8 ? 12 + this.int(64) : 64 + this.int(600);
    const packet = this.bytes(len);
    return { kind: 'random', packet, expect: headerOracle(packet) };
  }

  /** Random bytes behind a plausible header (QR=0, one question), to reach the question parser. */
  randomBody(): FuzzCase {
    const packet = this.bytes(12 + this.int(80));
    packet[2] = packet[2]! & 0x07; // QR=0, opcode QUERY
    packet.writeUInt16BE(1, 4);
    if (this.rnd() < 0.5) packet.writeUInt32BE(0, 6); // sometimes honest an/ns counts
    return { kind: 'random-body', packet, expect: headerOracle(packet) };
  }

  /** A valid query with one mutation, and what that mutation must lead to. */
  mutated(): FuzzCase {
    const v = this.valid();
    const p = Buffer.from(v.packet);
    const qEnd = questionEnd(p);
    const m = this.int(17);
    switch (m) {
      case 0: {
        const cut = this.int(p.length);
        return { kind: 'truncated', packet: p.subarray(0, cut), expect: cut < 12 ? 'drop' : 'formerr' };
      }
      case 1: {
        // Compression pointer loop in the question: a pointer to itself, or two pointing at each other.
        const loop = this.rnd() < 0.5 ? Buffer.from([0xc0, 0x0c]) : Buffer.from([0x01, 0x61, 0xc0, 0x0e, 0xc0, 0x0c]);
        const packet = Buffer.concat([p.subarray(0, 12), loop, Buffer.from([0, 1, 0, 1])]);
        packet.writeUInt16BE(0, 10);
        return { kind: 'qname-pointer-loop', packet, expect: 'formerr' };
      }
      case 2: {
        // A record in the additional section whose owner is a pointer to itself.
        const off = p.length;
        const rr = Buffer.alloc(16);
        rr.writeUInt16BE(0xc000 | off, 0);
        const opt = this.rnd() < 0.3;
        rr.writeUInt16BE(opt ? T.OPT : T.A, 2);
        rr.writeUInt16BE(opt ? 1232 : 1, 4);
        rr.writeUInt16BE(4, 10);
        const packet = Buffer.concat([p, rr]);
        packet.writeUInt16BE(packet.readUInt16BE(10) + 1, 10);
        // The daemon never follows pointers in records it skips; an OPT must be owned by the root.
        return { kind: 'additional-pointer-loop', packet, expect: opt ? 'formerr' : 'reply' };
      }
      case 3: {
        // A label length running past the end of the packet.
        const labels = labelOffsets(p);
        const at = this.pick(labels);
        const packet = Buffer.from(p.subarray(0, at + 1 + this.int(p[at]! + 1)));
        packet[at] = Math.min(63, packet.length - at + this.int(40));
        return { kind: 'label-past-end', packet, expect: 'formerr' };
      }
      case 4: {
        p.writeUInt16BE(this.pick([0, 2, 3, 65535]), 4);
        if (this.rnd() < 0.3 && p.readUInt16BE(4) === 2) {
          const q = p.subarray(12, qEnd);
          return { kind: 'two-questions', packet: Buffer.concat([p.subarray(0, qEnd), q, p.subarray(qEnd)]), expect: 'formerr' };
        }
        return { kind: 'qdcount-lies', packet: p, expect: 'formerr' };
      }
      case 5: {
        const field = this.pick([6, 8, 10]);
        p.writeUInt16BE(p.readUInt16BE(field) + this.pick([1, 2, 5, 65535 - p.readUInt16BE(field)]), field);
        return { kind: 'rrcount-lies', packet: p, expect: 'formerr' };
      }
      case 6: {
        // Names at and past 255 octets.
        const wire = this.pick([254, 255, 256, 300, 500]);
        const name: Buffer[] = [];
        let left = wire - 1;
        while (left > 0) {
          let n = Math.min(63, left - 1);
          if (left - (n + 1) === 1) n -= 1; // never leave one octet: no label fits in it
          name.push(Buffer.concat([Buffer.from([n]), Buffer.alloc(n, 0x61)]));
          left -= n + 1;
        }
        name.push(Buffer.from([0]));
        const qn = Buffer.concat(name);
        const packet = Buffer.concat([p.subarray(0, 12), qn, Buffer.from([0, 1, 0, 1])]);
        packet.writeUInt16BE(0, 10);
        return { kind: `name-${qn.length}`, packet, expect: qn.length > 255 ? 'formerr' : 'answer' };
      }
      case 7: {
        p.writeUInt16BE(this.int(0x10000), qEnd - 4);
        p.writeUInt16BE(this.int(0x10000), qEnd - 2);
        return { kind: 'unknown-type-class', packet: p, expect: 'answer', udpLimit: v.udpLimit! };
      }
      case 8:
        p[2] = p[2]! | 0x80;
        return { kind: 'qr-set', packet: p, expect: 'drop' };
      case 9:
        p[2] = (p[2]! & 0x87) | ((1 + this.int(15)) << 3);
        return { kind: 'opcode', packet: p, expect: 'notimp' };
      case 10: {
        const packet = Buffer.concat([p.subarray(0, qEnd), optRr(1232), optRr(512, true)]);
        packet.writeUInt16BE(2, 10);
        packet.writeUInt32BE(0, 6);
        return { kind: 'two-opt', packet, expect: 'formerr' };
      }
      case 11: {
        const packet = Buffer.concat([p.subarray(0, qEnd), optRr(1232, false, 1 + this.int(255))]);
        packet.writeUInt16BE(1, 10);
        packet.writeUInt32BE(0, 6);
        return { kind: 'edns-version', packet, expect: 'badvers' };
      }
      case 12: {
        const flips = 1 + this.int(8);
        for (let i = 0; i < flips; i++) {
          const at = this.int(p.length);
          p[at] = p[at]! ^ (1 << this.int(8));
        }
        return { kind: 'bit-flips', packet: p, expect: headerOracle(p) };
      }
      case 13: {
        // OPT owned by a name, or in the answer section.
        const opt = optRr(1232);
        if (this.rnd() < 0.5) {
          const packet = Buffer.concat([p.subarray(0, qEnd), Buffer.from([1, 0x78]), opt]);
          packet.writeUInt16BE(1, 10);
          packet.writeUInt32BE(0, 6);
          return { kind: 'opt-owner', packet, expect: 'formerr' };
        }
        const packet = Buffer.concat([p.subarray(0, qEnd), opt]);
        packet.writeUInt16BE(1, 6);
        packet.writeUInt16BE(0, 8);
        packet.writeUInt16BE(0, 10);
        return { kind: 'opt-in-answer', packet, expect: 'formerr' };
      }
      case 14:
        // Bytes after the last record: tolerated or FORMERR, but answered.
        return { kind: 'trailing-garbage', packet: Buffer.concat([p, this.bytes(1 + this.int(40))]), expect: 'reply' };
      case 15: {
        // A compression pointer in the question pointing at the header (valid-looking, never followed).
        const packet = Buffer.concat([p.subarray(0, 12), Buffer.from([0x03, 0x61, 0x70, 0x69, 0xc0, this.int(12)]), Buffer.from([0, 33, 0, 1])]);
        packet.writeUInt16BE(0, 10);
        return { kind: 'qname-pointer', packet, expect: 'formerr' };
      }
      default: {
        // Reserved label types (0x40, 0x80) in the question.
        const labels = labelOffsets(p);
        p[this.pick(labels)] = this.pick([0x40, 0x41, 0x80, 0xbf]);
        return { kind: 'reserved-label-type', packet: p, expect: 'formerr' };
      }
    }
  }

  next(): FuzzCase {
    const r = this.rnd();
    if (r < 0.3) return this.random();
    if (r < 0.4) return this.randomBody();
    if (r < 0.5) return this.valid();
    return this.mutated();
  }
}

/** Why a reply is wrong for its packet, or null when it is right. */
export function judge(c: FuzzCase, raw: Buffer, transport: 'udp' | 'tcp'): string | null {
  if (c.expect === 'drop') return 'replied to a packet that must be dropped';
  let m: Message;
  try {
    m = parseMessage(raw);
  } catch (err) {
    return `reply does not parse: ${(err as Error).message}`;
  }
  const q = c.packet;
  if (!m.qr) return 'reply without QR';
  if (m.id !== q.readUInt16BE(0)) return 'reply with another ID';
  if (m.opcode !== ((q[2]! >> 3) & 0xf)) return 'reply with another opcode';
  switch (c.expect) {
    case 'formerr':
      if (m.rcode !== RCODE.FORMERR) return `rcode ${m.rcode}, expected FORMERR`;
      break;
    case 'notimp':
      if (m.rcode !== RCODE.NOTIMP) return `rcode ${m.rcode}, expected NOTIMP`;
      break;
    case 'badvers':
      if (m.fullRcode !== 16 || !m.opt) return `rcode ${m.fullRcode}, expected BADVERS with an OPT record`;
      break;
    case 'answer':
      if (m.rcode === RCODE.FORMERR) return 'FORMERR for a well-formed query';
      if (m.rcode === RCODE.SERVFAIL) return 'SERVFAIL for a well-formed query (the upstream answers everything)';
      break;
    case 'reply':
      break;
  }
  if (m.questions.length > 1) return 'reply with several questions';
  if (m.questions.length === 1 && c.expect !== 'reply') {
    const asked = q.subarray(12, 12 + m.questions[0]!.bytes.length);
    if (!asked.equals(m.questions[0]!.bytes)) return 'question not echoed exactly as asked';
  }
  if (transport === 'tcp' && m.tc) return 'TC set over TCP';
  if (m.tc && (m.answers.length > 0 || m.authority.length > 0)) return 'TC set on a trimmed answer (RFC 2181 §9: header and question only)';
  if (transport === 'udp' && c.udpLimit !== undefined && raw.length > c.udpLimit) return `reply of ${raw.length} octets over the client's UDP limit ${c.udpLimit}`;
  return null;
}

/** What a packet must get judging by its header alone. */
export function headerOracle(p: Buffer): Expect {
  if (p.length < 12) return 'drop';
  if (p[2]! & 0x80) return 'drop';
  // The opcode is read before the question (RFC 1035 §4.1.1, genreport `opcode`): NOTIMP whatever QDCOUNT says.
  if ((p[2]! >> 3) & 0xf) return 'notimp';
  if (p.readUInt16BE(4) !== 1) return 'formerr';
  return 'reply';
}

function questionEnd(p: Buffer): number {
  let off = 12;
  while (p[off] !== 0) off += p[off]! + 1;
  return off + 5;
}

function labelOffsets(p: Buffer): number[] {
  const out: number[] = [];
  let off = 12;
  while (p[off] !== 0) {
    out.push(off);
    off += p[off]! + 1;
  }
  return out.length ? out : [12];
}

