import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Metrics } from '../src/metrics/metrics.js';
import { encodeAnswer, OPT_RECORD_SIZE, optRecord, patchHeader, writeOptRecord, type Rr } from '../src/dns/message.js';
import { AMPLIFICATION_FACTOR, finishReply, type Truncation } from '../src/dns/reply.js';
import { requestKey, type DnsReply, type DnsRequest, type Transport } from '../src/dns/request.js';
import { DnsServer, literalLookup } from '../src/dns/server.js';
import { EDNS_SIZE } from '../src/dns/upstream.js';
import { warmUpQueries } from '../src/dns/warm-up.js';
import { HEADER_SIZE, parseQuery, readU16, type Query } from '../src/dns/wire.js';
import { buildQuery, parseMessage, rawUdp, T } from './helpers/dns-wire.js';
import { prng } from './helpers/fuzz.js';

/**
 * The answer path every query takes (issue 24): finishReply writes the
 * OPT record in place and copies without Buffer.copy, the request key is
 * built from a kept suffix, the warm-up runs every call a real query makes,
 * and UDP answers go out without a DNS lookup tick. Each must give exactly
 * what the code before it gave; these tests hold them to that.
 */

/**
 * finishReply as it was before the allocation work (commit b9261ac),
 * verbatim but for names: the oracle the new one must match octet for octet.
 */
function referenceFinishReply(req: Pick<DnsRequest, 'query' | 'raw' | 'transport' | 'mayRecurse'>, reply: DnsReply, onTruncate?: (why: Truncation) => void): Buffer {
  const { query: q, raw, transport } = req;
  const msg = reply.message;
  const ext = reply.rcode > 15 ? reply.rcode >> 4 : 0;
  const opt = q.edns ? optRecord(EDNS_SIZE, q.edns.do, ext) : null;
  const buffer = transport === 'udp' ? (q.edns ? Math.min(Math.max(q.edns.udpSize, 512), EDNS_SIZE) : 512) : 65535;
  const limit = transport === 'udp' && !req.mayRecurse ? Math.min(buffer, AMPLIFICATION_FACTOR * raw.length) : buffer;
  let out: Buffer;
  if (msg.length + (opt ? 11 : 0) > limit) {
    onTruncate?.(msg.length + (opt ? 11 : 0) > buffer ? 'size' : 'amplification');
    out = Buffer.alloc(q.questionEnd + (opt ? 11 : 0));
    msg.copy(out, 0, 0, 4);
    out[2] = out[2]! | 0x02;
    out.writeUInt16BE(1, 4);
    raw.copy(out, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
  } else {
    out = Buffer.allocUnsafe(msg.length + (opt ? 11 : 0));
    msg.copy(out);
    if (readU16(msg, 4) === 1 && msg.length >= q.questionEnd) raw.copy(out, HEADER_SIZE, HEADER_SIZE, q.questionEnd);
  }
  patchHeader(out, q, req.mayRecurse);
  if (opt) {
    opt.copy(out, out.length - 11);
    out.writeUInt16BE(readU16(out, 10) + 1, 10);
  }
  return out;
}

/** Random letter case, as a resolver using 0x20 asks. */
function mixCase(name: string, r: () => number): string {
  return [...name].map((c) => (r() < 0.5 ? c.toUpperCase() : c)).join('');
}

describe('finishReply', () => {
  it('gives the same octets and the same truncation as the encoder before it, over names, types, EDNS sizes, DO, rcodes, transports and rights', () => {
    const r = prng(24);
    const pick = <X>(xs: readonly X[]): X => xs[Math.floor(r() * xs.length)]!;
    const types = [T.SRV, T.A, T.AAAA, T.TXT, T.SOA, T.NS, T.PTR, T.ANY];
    let cases = 0;
    const seen = { truncated: 0, size: 0, amplification: 0, whole: 0, edns: 0, badvers: 0 };
    for (let i = 0; i < 4000; i++) {
      const base = `${pick(['_api._tcp.', 'db.', 'x.y.', ''])}svc${i}.${pick(['cluster.example.com', 'bench.test', 'a-much-longer-zone-name.internal.example.org'])}`;
      const qname = mixCase(base, r);
      const qtype = pick(types);
      const edns = r() < 0.7 ? { udpSize: pick([0, 256, 512, 600, 1232, 1400, 4096, 65535]), dnssecOk: r() < 0.3 } : null;
      const raw = buildQuery({ id: Math.floor(r() * 0x10000), name: qname, type: qtype, rd: r() < 0.8, ...(edns ? { edns: { udpSize: edns.udpSize, do: edns.dnssecOk } } : {}) });
      // CD set on some queries (buildQuery has no flag for it).
      if (r() < 0.2) raw[3] = raw[3]! | 0x10;
      const q = parseQuery(raw)!;
      // Answers from none to enough SRV records to pass every limit, some with an address beside each.
      const n = pick([0, 1, 2, 5, 10, 20, 40, 80]);
      const answers: Rr[] = Array.from({ length: n }, (_, k) => ({ type: 'SRV', name: base, ttl: 300, priority: 0, weight: 10, port: 8000 + k, target: `n${k}.node.${base}` }));
      const additionals: Rr[] = r() < 0.5 ? answers.map((a, k) => ({ type: 'A', name: (a as { target: string }).target, ttl: 300, address: `10.0.${k >> 8}.${k & 0xff}` })) : [];
      const rcode = pick([0, 0, 0, 3, 2, 5, 16]);
      const message = encodeAnswer({ qname: base, qtype, rcode: rcode & 0xf, aa: true, answers, additionals });
      const reply: DnsReply = { message, rcode, source: 'canonical' };
      const transport: Transport = pick(['udp', 'udp', 'udp', 'tcp']);
      const req = { query: q, raw, transport, mayRecurse: r() < 0.6 };
      const whyNew: Truncation[] = [];
      const whyOld: Truncation[] = [];
      const got = finishReply(req, reply, (w) => whyNew.push(w));
      const want = referenceFinishReply(req, reply, (w) => whyOld.push(w));
      expect(got.equals(want), `case ${i}: ${qname} type ${qtype} ${JSON.stringify(edns)} ${transport} n=${n}`).toBe(true);
      expect(whyNew).toEqual(whyOld);
      // The header is this query's: its ID, RD and CD; TC exactly when it was cut.
      expect(readU16(got, 0)).toBe(q.id);
      expect((got[2]! & 0x01) !== 0).toBe(q.rd);
      expect((got[3]! & 0x10) !== 0).toBe(q.cd);
      expect((got[3]! & 0x80) !== 0).toBe(req.mayRecurse);
      expect((got[2]! & 0x02) !== 0).toBe(whyNew.length > 0);
      // The question as asked, case and all.
      expect(got.subarray(HEADER_SIZE, q.questionEnd).equals(raw.subarray(HEADER_SIZE, q.questionEnd))).toBe(true);
      cases++;
      if (whyNew.length > 0) {
        seen.truncated++;
        seen[whyNew[0]!]++;
      } else seen.whole++;
      if (edns) seen.edns++;
      if (rcode === 16 && edns) seen.badvers++;
    }
    expect(cases).toBe(4000);
    // The cases reached every branch: whole and cut answers, for both reasons, with and without OPT, BADVERS through OPT.
    for (const [k, v] of Object.entries(seen)) expect(v, k).toBeGreaterThan(20);
  });

  it('cuts a UDP answer that does not fit to the header, the question and OPT, with TC, and parses as such', () => {
    const raw = buildQuery({ id: 0xbeef, name: '_API._tcp.Bench.Test', type: T.SRV, rd: true, edns: { udpSize: 512, do: true } });
    const q = parseQuery(raw)!;
    const answers: Rr[] = Array.from({ length: 60 }, (_, k) => ({ type: 'SRV', name: '_api._tcp.bench.test', ttl: 300, priority: 0, weight: 10, port: 9000 + k, target: `host${k}.node.bench.test` }));
    const message = encodeAnswer({ qname: '_api._tcp.bench.test', qtype: T.SRV, rcode: 0, aa: true, answers });
    expect(message.length).toBeGreaterThan(512);
    const out = finishReply({ query: q, raw, transport: 'udp', mayRecurse: true }, { message, rcode: 0, source: 'canonical' });
    expect(out.length).toBe(q.questionEnd + OPT_RECORD_SIZE);
    const m = parseMessage(out);
    expect(m.id).toBe(0xbeef);
    expect(m.tc).toBe(true);
    expect(m.rd).toBe(true);
    expect(m.answers).toHaveLength(0);
    expect(m.questions[0]!.name).toBe('_API._tcp.Bench.Test');
    // Over TCP the whole answer goes.
    const whole = finishReply({ query: q, raw, transport: 'tcp', mayRecurse: true }, { message, rcode: 0, source: 'canonical' });
    expect(parseMessage(whole).answers).toHaveLength(60);
    expect(parseMessage(whole).tc).toBe(false);
  });
});

describe('writeOptRecord', () => {
  it('writes what optRecord builds, over every size, DO and extended rcode, at any offset, touching nothing else', () => {
    for (const size of [0, 1, 255, 256, 512, 1232, 4096, 65535]) {
      for (const dnssecOk of [false, true]) {
        for (const ext of [0, 1, 15, 255]) {
          const out = Buffer.alloc(OPT_RECORD_SIZE + 6, 0xaa);
          writeOptRecord(out, 3, size, dnssecOk, ext);
          expect(out.subarray(3, 3 + OPT_RECORD_SIZE).equals(optRecord(size, dnssecOk, ext))).toBe(true);
          expect([...out.subarray(0, 3), ...out.subarray(3 + OPT_RECORD_SIZE)].every((b) => b === 0xaa)).toBe(true);
        }
      }
    }
  });
});

describe('requestKey', () => {
  it('is name|type|class|do for every type, class and DO bit, from the kept suffixes or not', () => {
    const reference = (q: Pick<Query, 'lname' | 'qtype' | 'qclass' | 'edns'>) => `${q.lname}|${q.qtype}|${q.qclass}|${q.edns?.do ? 1 : 0}`;
    for (const qtype of [0, 1, 33, 255, 256, 65535]) {
      for (const qclass of [1, 3, 255]) {
        for (const edns of [null, { udpSize: 1232, version: 0, do: false }, { udpSize: 1232, version: 0, do: true }]) {
          const q = { lname: '_api._tcp.bench.test', qtype, qclass, edns };
          // Twice: the first call makes the suffix, the second reads it.
          expect(requestKey(q)).toBe(reference(q));
          expect(requestKey(q)).toBe(reference(q));
        }
      }
    }
  });
});

describe('literalLookup (the UDP sockets’ address lookup)', () => {
  it('hands an address literal back at once, and asks dns.lookup for anything else', async () => {
    const calls: unknown[][] = [];
    literalLookup('127.0.0.1', { family: 4 }, (...a) => calls.push(a));
    literalLookup('::1', { family: 6 }, (...a) => calls.push(a));
    literalLookup('::ffff:10.1.2.3', { family: 6 }, (...a) => calls.push(a));
    // Synchronously: no tick between the answer and its send.
    expect(calls).toEqual([
      [null, '127.0.0.1', 4],
      [null, '::1', 6],
      [null, '::ffff:10.1.2.3', 6],
    ]);
    const named = await new Promise<unknown[]>((resolve) => {
      let sync = true;
      literalLookup('localhost', { family: 4 }, (...a) => resolve([sync, ...a]));
      sync = false;
    });
    // Through dns.lookup: later, and an address.
    expect(named[0]).toBe(false);
    expect(named[1]).toBeNull();
    expect(named[2]).toMatch(/^127\./);
  });
});

describe('DnsServer', () => {
  const servers: DnsServer[] = [];
  afterEach(async () => {
    while (servers.length) await servers.pop()!.close(0);
  });

  it('runs every call of a real query during the warm-up (the query-log rate is read per warm-up query) and logs none of them', async () => {
    const stream = new PassThrough();
    let text = '';
    stream.on('data', (b) => (text += b));
    let rateReads = 0;
    const server = new DnsServer({
      listen: { host: '127.0.0.1', port: 0 },
      handler: (req) => ({ message: encodeAnswer({ qname: req.query.lname, qtype: req.query.qtype, rcode: 0, aa: true }), rcode: 0, source: 'canonical' }),
      classify: () => ({ kind: 'outside' }),
      mayRecurse: () => true,
      metrics: new Metrics({ defaultMetrics: false }),
      logger: pino({ level: 'info' }, stream),
      // Every query would be logged, were it not the warm-up's.
      queryLogRate: () => {
        rateReads++;
        return 1;
      },
      tcp: () => ({ idleTimeoutMs: 1000, maxConnections: 10, perSource: 10 }),
    });
    servers.push(server);
    const { port } = await server.start();
    const packets = warmUpQueries(['bench.test'], 200);
    await server.warmUp(packets);
    // Before: the rate was read only after the warm-up's early return, so never, and V8 deoptimized the path at
    // the first real query (--trace-deopt: "insufficient type feedback").
    expect(rateReads).toBe(packets.length);
    expect(text).toBe('');
    // A real query is logged, and answered over the listening socket (its lookup: literalLookup).
    const answer = await rawUdp({ host: '127.0.0.1', port }, buildQuery({ id: 7, name: '_api._tcp.bench.test', type: T.SRV }));
    expect(parseMessage(answer).id).toBe(7);
    expect(rateReads).toBe(packets.length + 1);
    expect(text).toMatch(/"event":"query"/);
  });
});
