import dns2 from 'dns2';
import { describe, expect, it } from 'vitest';
import { TYPE_A, TYPE_SRV, bareAnswer, encodeQuery, parseQuestion } from '../bench/dns-wire.js';
import { BENCH_TTL } from '../bench/fixtures.js';
import { base32Port } from '../src/scheme/base32.js';

const { Packet } = dns2;

/** The "dgram bare" reply to a query, decoded by dns2 (an independent codec). */
function answer(name: string, type: number, id = 0x1234): InstanceType<typeof Packet> {
  const q = encodeQuery(id, name, type);
  const parsed = parseQuestion(q);
  expect(parsed).not.toBeNull();
  return Packet.parse(bareAnswer(q, parsed!));
}

describe('bench wire: the dgram bare reference', () => {
  it('encodes a query dns2 reads back', () => {
    const p = Packet.parse(encodeQuery(7, 'api.bench.test', TYPE_SRV));
    expect(p.header).toMatchObject({ id: 7, qr: 0, rd: 1, qdcount: 1 });
    expect(p.questions[0]).toMatchObject({ name: 'api.bench.test', type: TYPE_SRV, class: 1 });
  });

  it('answers _svc._tcp.zone SRV with 0 0 <base32 port> svc.zone., question echoed, ID kept', () => {
    const p = answer('_svc0042._tcp.bench.test', TYPE_SRV);
    expect(p.header).toMatchObject({ id: 0x1234, qr: 1, aa: 1, rd: 1, rcode: 0, qdcount: 1, ancount: 1, nscount: 0, arcount: 0 });
    expect(p.questions[0]!.name).toBe('_svc0042._tcp.bench.test');
    expect(p.answers).toHaveLength(1);
    expect(p.answers[0]).toMatchObject({ name: '_svc0042._tcp.bench.test', type: TYPE_SRV, ttl: BENCH_TTL, priority: 0, weight: 0, port: base32Port('svc0042') });
    expect(String(p.answers[0]!.target).replace(/\.$/, '')).toBe('svc0042.bench.test');
  });

  it('answers svc.zone SRV with itself as target, keeping the asked case', () => {
    const p = answer('Api.Bench.Test', TYPE_SRV);
    expect(p.questions[0]!.name).toBe('Api.Bench.Test');
    expect(p.answers[0]).toMatchObject({ port: 12082 });
    expect(String(p.answers[0]!.target).replace(/\.$/, '')).toBe('Api.Bench.Test');
  });

  it('answers A of any name with 127.0.0.1 and other types with NODATA', () => {
    expect(answer('n0000001.rss.test', TYPE_A).answers[0]).toMatchObject({ type: TYPE_A, address: '127.0.0.1', ttl: BENCH_TTL });
    const txt = answer('api.bench.test', 16);
    expect(txt.header).toMatchObject({ rcode: 0, ancount: 0 });
  });

  it('ignores what is not one well-formed question', () => {
    const q = encodeQuery(1, 'api.bench.test', TYPE_A);
    expect(parseQuestion(q.subarray(0, 11))).toBeNull(); // short header
    expect(parseQuestion(q.subarray(0, q.length - 2))).toBeNull(); // truncated qclass
    const response = Buffer.from(q);
    response[2] = response[2]! | 0x80;
    expect(parseQuestion(response)).toBeNull();
    const two = Buffer.from(q);
    two.writeUInt16BE(2, 4);
    expect(parseQuestion(two)).toBeNull();
    const pointer = Buffer.from(q);
    pointer[12] = 0xc0;
    expect(parseQuestion(pointer)).toBeNull();
  });
});
