import dns2 from 'dns2';
import { describe, expect, it } from 'vitest';
import { encodeAnswer, type AnswerSpec, type Rr } from '../src/dns/message.js';
import { TYPE } from '../src/dns/wire.js';

const { Packet } = dns2;

/** The same answer through dns2's own Packet.toBuffer (what encodeAnswer called before it wrote records itself). */
function viaPacket(spec: AnswerSpec): Buffer {
  const p = new Packet();
  p.header = new Packet.Header({ id: 0, qr: 1, opcode: 0, aa: spec.aa ? 1 : 0, ra: 0, rcode: spec.rcode });
  p.questions.push({ name: spec.qname, type: spec.qtype, class: 1 } as never);
  const conv = (rr: Rr): Record<string, unknown> => {
    if (rr.type === 'PTR') return { name: rr.name, ttl: rr.ttl, domain: rr.target, type: TYPE.PTR, class: 1 };
    if (rr.type === 'TXT') return { name: rr.name, ttl: rr.ttl, type: TYPE.TXT, class: 1, data: rr.data.map((d) => Buffer.from(d)) };
    return { ...rr, type: TYPE[rr.type], class: 1 };
  };
  for (const rr of spec.answers ?? []) p.answers.push(conv(rr) as never);
  for (const rr of spec.authorities ?? []) p.authorities.push(conv(rr) as never);
  for (const rr of spec.additionals ?? []) p.additionals.push(conv(rr) as never);
  return p.toBuffer();
}

const node = (i: number) => `n${i}.node.c.test`;

describe('encodeAnswer (its own record loop over dns2\'s encoders, issue 21)', () => {
  it.each([
    ['SRV with A and AAAA additionals', { qname: 'api.c.test', qtype: TYPE.SRV, rcode: 0, aa: true, answers: [1, 2, 3].map((i): Rr => ({ type: 'SRV', name: 'api.c.test', ttl: 5, priority: i, weight: 10, port: 12082, target: node(i) })), additionals: [...[1, 2, 3].map((i): Rr => ({ type: 'A', name: node(i), ttl: 5, address: `10.0.0.${i}` })), { type: 'AAAA', name: node(1), ttl: 5, address: 'fd00::1' }] }],
    ['TXT', { qname: 'api.c.test', qtype: TYPE.TXT, rcode: 0, aa: true, answers: [{ type: 'TXT', name: 'api.c.test', ttl: 5, data: ['port=12082', 'x'.repeat(200)] }] }],
    ['NXDOMAIN with its SOA', { qname: 'nope.c.test', qtype: TYPE.A, rcode: 3, aa: true, authorities: [{ type: 'SOA', name: 'c.test', ttl: 5, primary: 'ns.c.test', admin: 'hostmaster.c.test', serial: 1, refresh: 2, retry: 3, expiration: 4, minimum: 5 }] }],
    ['PTR and NS', { qname: '_services._dns-sd._udp.c.test', qtype: TYPE.PTR, rcode: 0, aa: false, answers: [{ type: 'PTR', name: '_services._dns-sd._udp.c.test', ttl: 5, target: '_api._tcp.c.test' }, { type: 'NS', name: 'c.test', ttl: 5, ns: 'ns.c.test' }] }],
    ['300 SRV records and their addresses (dns2 itself takes quadratic time here)', { qname: 'api.c.test', qtype: TYPE.SRV, rcode: 0, aa: true, answers: Array.from({ length: 300 }, (_, i): Rr => ({ type: 'SRV', name: 'api.c.test', ttl: 5, priority: 1, weight: 10, port: 12082, target: node(i) })), additionals: Array.from({ length: 300 }, (_, i): Rr => ({ type: 'A', name: node(i), ttl: 5, address: `10.1.${i >> 8}.${i & 255}` })) }],
  ] as [string, AnswerSpec][])('writes the bytes dns2\'s Packet.toBuffer writes (names compressed alike): %s', (_, spec) => {
    const ours = encodeAnswer(spec);
    expect(ours.equals(viaPacket(spec))).toBe(true);
    // And a real parser reads it back whole.
    const parsed = Packet.parse(ours) as { answers: unknown[]; authorities: unknown[]; additionals: unknown[] };
    expect([parsed.answers.length, parsed.authorities.length, parsed.additionals.length]).toEqual([spec.answers?.length ?? 0, spec.authorities?.length ?? 0, spec.additionals?.length ?? 0]);
  });
});
