import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { lowerName, parseQuery, WireError } from '../src/dns/wire.js';

/**
 * The hot-path question parser against a plain reference: every name
 * (printable, escaped, upper and lower case, the root), with and without an
 * OPT record, must read exactly as the label-by-label definition says.
 */

/** Presentation form as dig writes it: `.` and `\` and non-printable octets as \DDD. */
function presentation(labels: Uint8Array[]): string {
  return labels
    .map((l) => [...l].map((c) => (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c ? String.fromCharCode(c) : `\\${String(c).padStart(3, '0')}`)).join(''))
    .join('.');
}

function query(labels: Uint8Array[], opt: { udpSize: number; version: number; do: boolean } | null, trailingAr = false): Buffer {
  const name = Buffer.concat([...labels.flatMap((l) => [Buffer.from([l.length]), Buffer.from(l)]), Buffer.from([0])]);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(0x1234, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const records: Buffer[] = [];
  if (opt) {
    const r = Buffer.alloc(11);
    r.writeUInt16BE(41, 1);
    r.writeUInt16BE(opt.udpSize, 3);
    r.writeUInt32BE(((opt.version & 0xff) << 16) | (opt.do ? 0x8000 : 0), 5);
    records.push(r);
  }
  if (trailingAr) {
    // An A record owned by the root after the OPT: the general path must take over.
    const r = Buffer.alloc(15);
    r.writeUInt16BE(1, 1);
    r.writeUInt16BE(1, 3);
    r.writeUInt16BE(4, 9);
    records.push(r);
  }
  header.writeUInt16BE(records.length, 10);
  return Buffer.concat([header, name, Buffer.from([0, 33, 0, 1]), ...records]);
}

const label = fc.oneof(
  fc.uint8Array({ minLength: 1, maxLength: 20 }),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/).map((s) => new Uint8Array(Buffer.from(s, 'latin1'))),
);
const labels = fc.array(label, { maxLength: 6 });
const opt = fc.option(fc.record({ udpSize: fc.integer({ min: 0, max: 65535 }), version: fc.integer({ min: 0, max: 255 }), do: fc.boolean() }));

describe('parseQuery', () => {
  it('reads every question name and OPT exactly as the reference does', () => {
    fc.assert(
      fc.property(labels, opt, fc.boolean(), (ls, o, trailing) => {
        const q = parseQuery(query(ls, o, trailing))!;
        const text = presentation(ls);
        expect(q.qname).toBe(text);
        expect(q.lname).toBe(text.replace(/[A-Z]/g, (c) => c.toLowerCase()));
        expect(q.qtype).toBe(33);
        expect(q.edns).toEqual(o ? { udpSize: o.udpSize, version: o.version, do: o.do } : null);
      }),
      { numRuns: 3000 },
    );
  });

  it('rejects an OPT record whose data runs past the end', () => {
    const buf = query([new Uint8Array(Buffer.from('api'))], { udpSize: 1232, version: 0, do: false });
    buf.writeUInt16BE(5, buf.length - 2); // rdlength 5, no data follows
    expect(() => parseQuery(buf)).toThrow(WireError);
  });

  it('rejects a second OPT record and one outside the additional section', () => {
    const one = query([new Uint8Array(Buffer.from('api'))], { udpSize: 1232, version: 0, do: false });
    const two = Buffer.concat([one, one.subarray(one.length - 11)]);
    two.writeUInt16BE(2, 10);
    expect(() => parseQuery(two)).toThrow(/more than one OPT/);
    const inAnswer = Buffer.from(one);
    inAnswer.writeUInt16BE(1, 6);
    inAnswer.writeUInt16BE(0, 10);
    expect(() => parseQuery(inAnswer)).toThrow(/outside the additional section/);
  });
});

describe('lowerName', () => {
  it('folds ASCII letters only, and returns the same string when there is nothing to fold', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        expect(lowerName(s)).toBe(s.replace(/[A-Z]/g, (c) => c.toLowerCase()));
      }),
      { numRuns: 3000 },
    );
    expect(lowerName('ÀPI.Example')).toBe('Àpi.example');
  });
});
