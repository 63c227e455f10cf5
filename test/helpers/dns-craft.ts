import { optRr, T } from './dns-wire.js';

/**
 * Hand-made DNS messages that the query builder in dns-wire.ts cannot
 * express on purpose: labels holding '.', '\' or any octet, opcodes other
 * than QUERY, any section counts, OPT records where they do not belong.
 * The conformance tests send these to see what a server answers.
 */

export const CLASS = { IN: 1, CH: 3, NONE: 254, ANY: 255 } as const;
export const QTYPE = { ...T, TKEY: 249, TSIG: 250, IXFR: 251, AXFR: 252, MAILB: 253, MAILA: 254 } as const;
export const OPCODE = { QUERY: 0, UNASSIGNED_3: 3, UNASSIGNED_15: 15 } as const;

/** Header flag bits of the second word (RFC 1035 §4.1.1, RFC 4035 for AD/CD). */
export const FLAG = { QR: 0x8000, AA: 0x0400, TC: 0x0200, RD: 0x0100, RA: 0x0080, Z: 0x0040, AD: 0x0020, CD: 0x0010 } as const;

/** A wire name from labels given as text (latin1, taken literally: a '.' inside is part of the label) or raw octets. */
export function wireName(labels: readonly (string | Uint8Array)[]): Buffer {
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = typeof l === 'string' ? Buffer.from(l, 'latin1') : Buffer.from(l);
    if (b.length === 0 || b.length > 63) throw new Error(`label of ${b.length} octets`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

/** The labels of a presentation name without escapes ('a.b.c' → ['a', 'b', 'c']). */
export function labelsOf(name: string): string[] {
  return name.split('.').filter((l) => l.length > 0);
}

export function question(name: Buffer, qtype: number, qclass: number = CLASS.IN): Buffer {
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(qtype, 0);
  tail.writeUInt16BE(qclass, 2);
  return Buffer.concat([name, tail]);
}

/** An OPT record; `owner` defaults to the root, as RFC 6891 §6.1.2 requires. */
export function opt(owner: Buffer = Buffer.from([0]), udpSize = 1232): Buffer {
  return Buffer.concat([owner, optRr(udpSize).subarray(1)]);
}

export interface Crafted {
  id: number;
  opcode?: number;
  /** Flag bits (FLAG.*) besides the opcode. */
  flags?: number;
  questions?: Buffer[];
  answer?: Buffer[];
  authority?: Buffer[];
  additional?: Buffer[];
}

/** A message whose counts are the lengths of the sections given. */
export function craft(m: Crafted): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt16BE(m.id, 0);
  h.writeUInt16BE(((m.opcode ?? 0) << 11) | (m.flags ?? 0), 2);
  const sections = [m.questions ?? [], m.answer ?? [], m.authority ?? [], m.additional ?? []];
  sections.forEach((s, i) => h.writeUInt16BE(s.length, 4 + 2 * i));
  return Buffer.concat([h, ...sections.flat()]);
}
