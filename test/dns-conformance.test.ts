import { readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { startDaemon, tempDir } from './helpers/daemon.js';
import { dig } from './helpers/dig.js';
import { CLASS, craft, FLAG, labelsOf, OPCODE, opt, QTYPE, question, wireName } from './helpers/dns-craft.js';
import { parseMessage, RCODE, T, UdpClient, type Message, type QuerySpec, type Server } from './helpers/dns-wire.js';
import { FakeUpstream, type FakeMode } from './helpers/fake-upstream.js';
import { startAuthoritativeUnbound, startDnsmasq, startUnboundResolver, zoneApex } from './helpers/reference-dns.js';
import type { Unbound } from './helpers/unbound.js';

/**
 * The ten deviations of issue 12, each probed over the wire and asserted
 * as the RFCs (and the issue) want it, next to what unbound or dnsmasq do
 * with the same query in the same run where the issue compares with them.
 *
 * The reference servers, all real processes on loopback:
 *   authoritative  unbound serving ZONE (its own SOA, distinct from
 *                  canonport's, and A records for web/db) and UPSTREAM_ZONE;
 *   resolver       unbound as a caching resolver forwarding both zones to
 *                  `authoritative`, refusing 127.0.0.3 (for the RA probe).
 */

const ZONE = 'cluster-1.example.com';
const UPSTREAM_ZONE = 'example.org';
const UPSTREAM_SOA = { mname: `upstream-ns.${ZONE}`, serial: 7 };

let authoritative: Unbound;
let resolver: Unbound;
let client: UdpClient;
const daemons: Daemon[] = [];
const fakes: FakeUpstream[] = [];

beforeAll(async () => {
  authoritative = await startAuthoritativeUnbound(
    [ZONE, UPSTREAM_ZONE],
    [
      ...zoneApex(ZONE, { mname: UPSTREAM_SOA.mname, serial: UPSTREAM_SOA.serial, minimum: 120 }),
      `web.${ZONE}. 300 IN A 192.0.2.20`,
      `db.${ZONE}. 300 IN A 192.0.2.30`,
      ...zoneApex(UPSTREAM_ZONE),
      `www.${UPSTREAM_ZONE}. 300 IN A 192.0.2.10`,
    ],
  );
  resolver = await startUnboundResolver(
    [
      { zone: ZONE, port: authoritative.port },
      { zone: UPSTREAM_ZONE, port: authoritative.port },
    ],
    ['access-control: 127.0.0.3/32 refuse'],
  );
  client = await UdpClient.open('127.0.0.1');
}, 60_000);

afterAll(async () => {
  while (daemons.length) await daemons.pop()!.close(100);
  while (fakes.length) await fakes.pop()!.close();
  await client?.close();
  await resolver?.stop();
  await authoritative?.stop();
});

const at = (port: number): Server => ({ host: '127.0.0.1', port });

async function daemon(flags: Parameters<typeof startDaemon>[0], opts: Parameters<typeof startDaemon>[1] = {}): Promise<Daemon> {
  const d = await startDaemon(flags, opts);
  daemons.push(d);
  return d;
}

async function fake(mode?: FakeMode): Promise<FakeUpstream> {
  const f = await FakeUpstream.start(mode);
  fakes.push(f);
  return f;
}

/** One question, one parsed reply (fails the test on silence). */
async function ask(server: Server, q: Omit<QuerySpec, 'id'>, from: UdpClient = client): Promise<Message> {
  const { msg } = await from.ask(server, q);
  if (!msg) throw new Error(`no reply from ${server.host}:${server.port} to ${q.name} type ${q.type ?? T.A}`);
  return msg;
}

/** A hand-made message (built for the ID it is given), its reply parsed strictly. */
async function exchange(server: Server, build: (id: number) => Buffer, from: UdpClient = client): Promise<Message> {
  const id = from.id();
  const raw = await from.send(server, build(id), id);
  if (!raw) throw new Error(`no reply from ${server.host}:${server.port}`);
  return parseMessage(raw);
}

/** canonport's own SOA for ZONE, as it answers `SOA ZONE`. */
async function zoneSoa(server: Server): Promise<{ mname: string; rname: string; serial: number }> {
  const m = await ask(server, { name: ZONE, type: T.SOA });
  const soa = m.answers.find((r) => r.type === T.SOA);
  if (!soa) throw new Error(`SOA ${ZONE} had no SOA in the answer (rcode ${m.rcode})`);
  const { mname, rname, serial } = soa.data as { mname: string; rname: string; serial: number };
  return { mname, rname, serial };
}

/** The SOA in a negative answer's authority section, owner and fields. */
function negativeSoa(m: Message): { owner: string; mname: string; rname: string; serial: number } | null {
  const soa = m.authority.find((r) => r.type === T.SOA);
  if (!soa) return null;
  const { mname, rname, serial } = soa.data as { mname: string; rname: string; serial: number };
  return { owner: soa.name.toLowerCase(), mname, rname, serial };
}

const rcodeName = (n: number) => Object.entries(RCODE).find(([, v]) => v === n)?.[0] ?? `RCODE${n}`;

/** What a negative answer is judged on, in one object so a failure shows all of it. */
function negative(m: Message): { rcode: string; answers: number; aa: boolean; soa: ReturnType<typeof negativeSoa> } {
  return { rcode: rcodeName(m.rcode), answers: m.answers.length, aa: m.aa, soa: negativeSoa(m) };
}

describe('1. AA only on canonical and zone answers (RFC 1035 §4.1.1)', () => {
  let viaAuthoritative: Daemon;
  let viaResolver: Daemon;
  beforeAll(async () => {
    viaAuthoritative = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${authoritative.port}`] });
    viaResolver = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${resolver.port}`] });
  });

  it('a forwarded answer has AA clear, from the upstream and again from the cache, as unbound answers it', async () => {
    const name = `www.${UPSTREAM_ZONE}`;
    const reference = await ask(at(resolver.port), { name });
    expect(reference.answers.map((r) => r.data)).toEqual(['192.0.2.10']);
    expect(reference.aa).toBe(false);
    const first = await ask(viaAuthoritative.addresses.dns, { name });
    const cached = await ask(viaAuthoritative.addresses.dns, { name });
    expect(first.answers.map((r) => r.data)).toEqual(['192.0.2.10']);
    expect({ first: first.aa, cached: cached.aa }).toEqual({ first: false, cached: false });
  });

  it('a forwarded NXDOMAIN has AA clear, as unbound answers it', async () => {
    const name = `nothere.${UPSTREAM_ZONE}`;
    const reference = await ask(at(resolver.port), { name });
    expect(reference.rcode).toBe(RCODE.NXDOMAIN);
    expect(reference.aa).toBe(false);
    const m = await ask(viaAuthoritative.addresses.dns, { name });
    expect(m.rcode).toBe(RCODE.NXDOMAIN);
    expect(m.aa).toBe(false);
  });

  it('an in-zone address learned from a (non-authoritative) upstream has AA, like the SRV of the same name', async () => {
    const srv = await ask(viaResolver.addresses.dns, { name: `web.${ZONE}`, type: T.SRV });
    expect(srv.aa).toBe(true);
    const a = await ask(viaResolver.addresses.dns, { name: `web.${ZONE}` });
    expect(a.answers.map((r) => r.data)).toEqual(['192.0.2.20']);
    expect(a.aa).toBe(true);
  });

  it('NODATA for an in-zone name the upstream knows (AAAA web.<zone>) carries the zone\'s own SOA, with AA', async () => {
    const own = await zoneSoa(viaResolver.addresses.dns);
    const m = await ask(viaResolver.addresses.dns, { name: `web.${ZONE}`, type: T.AAAA });
    expect(negative(m)).toEqual({ rcode: 'NOERROR', answers: 0, aa: true, soa: { owner: ZONE, ...own } });
  });

  it('NODATA for an in-zone name the upstream denies (A nothere.<zone>) carries the zone\'s own SOA, with AA', async () => {
    const own = await zoneSoa(viaResolver.addresses.dns);
    const m = await ask(viaResolver.addresses.dns, { name: `nothere.${ZONE}` });
    expect(negative(m)).toEqual({ rcode: 'NOERROR', answers: 0, aa: true, soa: { owner: ZONE, ...own } });
  });
});

describe('2. names with escaped or non-printable octets get NXDOMAIN with the zone SOA (RFC 2308 §3)', () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${resolver.port}`] });
  });

  const cases: [string, (string | Uint8Array)[]][] = [
    [`a\\.b.${ZONE} (a dot inside a label)`, ['a.b', ...labelsOf(ZONE)]],
    [`\\200api.${ZONE} (octet 200)`, [Uint8Array.from([200, 0x61, 0x70, 0x69]), ...labelsOf(ZONE)]],
  ];

  it.each(cases)('%s: NXDOMAIN, AA, and the SOA of the zone, as unbound authoritative for the zone answers', async (_label, labels) => {
    const query = (id: number) => craft({ id, questions: [question(wireName(labels), T.A)] });
    const reference = negative(await exchange(at(authoritative.port), query));
    expect({ ...reference, soa: reference.soa?.owner }).toEqual({ rcode: 'NXDOMAIN', answers: 0, aa: true, soa: ZONE });

    const own = await zoneSoa(d.addresses.dns);
    const m = await exchange(d.addresses.dns, query);
    expect(negative(m)).toEqual({ rcode: 'NXDOMAIN', answers: 0, aa: true, soa: { owner: ZONE, ...own } });
  });

  it(`a\\.${ZONE} spelled as one label "a.cluster-1" under example.com is outside the zone: forwarded, not answered from it`, async () => {
    const upstream = await fake({ kind: 'answer', address: '192.0.2.44' });
    const viaFake = await daemon({ zones: [ZONE], upstreams: [upstream.address] });
    const m = await exchange(viaFake.addresses.dns, (id) => craft({ id, flags: FLAG.RD, questions: [question(wireName(['a.cluster-1', 'example', 'com']), T.A)] }));
    expect(upstream.count({ name: 'a.cluster-1.example.com' }), 'the name was answered from the zone instead of forwarded').toBe(1);
    expect({ rcode: rcodeName(m.rcode), aa: m.aa, answers: m.answers.map((r) => r.data) }).toEqual({ rcode: 'NOERROR', aa: false, answers: ['192.0.2.44'] });
  });
});

describe('3. FORMERR to an EDNS query carries an OPT record and the question that parsed (RFC 6891 §7)', () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${resolver.port}`] });
  });

  const q = question(wireName(labelsOf(`www.${UPSTREAM_ZONE}`)), T.A);
  const cases: { label: string; build: (id: number) => Buffer; hasQuestion: boolean }[] = [
    { label: 'two OPT records', build: (id) => craft({ id, flags: FLAG.RD, questions: [q], additional: [opt(), opt()] }), hasQuestion: true },
    { label: 'OPT in the answer section', build: (id) => craft({ id, flags: FLAG.RD, questions: [q], answer: [opt()] }), hasQuestion: true },
    { label: 'OPT in the authority section', build: (id) => craft({ id, flags: FLAG.RD, questions: [q], authority: [opt()] }), hasQuestion: true },
    { label: 'OPT owned by a name other than the root', build: (id) => craft({ id, flags: FLAG.RD, questions: [q], additional: [opt(wireName(['x']))] }), hasQuestion: true },
    { label: 'QDCOUNT=0 with an OPT record', build: (id) => craft({ id, flags: FLAG.RD, additional: [opt()] }), hasQuestion: false },
  ];

  it.each(cases.map((c) => [c.label, c] as const))('%s: FORMERR with one OPT record, and the question when there was one', async (_label, { build, hasQuestion }) => {
    const m = await exchange(d.addresses.dns, build);
    expect(rcodeName(m.fullRcode)).toBe('FORMERR');
    expect(m.opt, 'the reply has no OPT record').not.toBeNull();
    expect(m.opt!.version).toBe(0);
    if (hasQuestion) {
      expect(m.questions.map((x) => [x.name.toLowerCase(), x.type, x.klass])).toEqual([[`www.${UPSTREAM_ZONE}`, T.A, CLASS.IN]]);
    } else {
      expect(m.questions).toHaveLength(0);
    }
  });
});

describe('4. definitive upstream refusals are relayed; zone transfers, meta types and odd classes are answered locally', () => {
  const upstreamRcodes = [
    ['refused', RCODE.REFUSED],
    ['formerr', RCODE.FORMERR],
    ['notimp', RCODE.NOTIMP],
  ] as const;

  /**
   * canonport relays every definitive refusal as REFUSED (docs/dns.md, "Where
   * canonport differs from unbound"): dnsmasq relays the upstream's own
   * rcode, and unbound turns it into SERVFAIL, which invites a retry and a
   * stale answer where the upstream has said no.
   */
  it.each(upstreamRcodes)('an upstream answering %s: REFUSED at once, never SERVFAIL (dnsmasq relays the rcode, unbound SERVFAILs)', async (kind, rcode) => {
    const upstream = await fake();
    const name = `${kind}.example.net`;
    upstream.setMode(name, { kind });
    const d = await daemon({ zones: [ZONE], upstreams: [upstream.address] });
    const dnsmasq = await startDnsmasq([`127.0.0.1#${upstream.port}`]);
    const unbound = await startUnboundResolver([{ zone: '.', port: upstream.port }]);
    try {
      const relayed = await ask(at(dnsmasq.port), { name });
      expect(rcodeName(relayed.rcode), 'dnsmasq relays the upstream rcode').toBe(rcodeName(rcode));
      const unboundSays = await ask(at(unbound.port), { name });
      expect(rcodeName(unboundSays.rcode), 'unbound turns it into SERVFAIL').toBe('SERVFAIL');
    } finally {
      await dnsmasq.stop();
      await unbound.stop();
    }
    const m = await ask(d.addresses.dns, { name });
    expect(upstream.count({ name }), 'canonport asked the upstream').toBeGreaterThan(0);
    expect({ rcode: rcodeName(m.rcode), aa: m.aa, ra: m.ra }).toEqual({ rcode: 'REFUSED', aa: false, ra: true });
  });

  it('one upstream refuses and the next times out: not a definitive word, so SERVFAIL (or a stale answer), not REFUSED', async () => {
    const refusing = await fake({ kind: 'refused' });
    const silent = await fake({ kind: 'silent' });
    const d = await daemon({ zones: [ZONE], upstreams: [refusing.address, silent.address], upstreamTimeoutMs: 200 });
    const name = 'mixed.example.net';
    const m = await ask(d.addresses.dns, { name });
    expect({ rcode: rcodeName(m.rcode), refusing: refusing.count({ name }), silent: silent.count({ name }) }).toEqual({ rcode: 'SERVFAIL', refusing: 1, silent: 1 });
  });

  const local: [string, number, number, string][] = [
    ['AXFR over UDP', QTYPE.AXFR, CLASS.IN, 'REFUSED'],
    ['IXFR over UDP', QTYPE.IXFR, CLASS.IN, 'REFUSED'],
    ['MAILA', QTYPE.MAILA, CLASS.IN, 'NOTIMP'],
    ['MAILB', QTYPE.MAILB, CLASS.IN, 'NOTIMP'],
    ['TSIG as a question', QTYPE.TSIG, CLASS.IN, 'NOTIMP'],
    ['TKEY as a question', QTYPE.TKEY, CLASS.IN, 'NOTIMP'],
    ['OPT as a question', QTYPE.OPT, CLASS.IN, 'NOTIMP'],
    ['type 200 (unassigned meta range)', 200, CLASS.IN, 'NOTIMP'],
    ['class 3000', T.A, 3000, 'REFUSED'],
    ['class NONE', T.A, CLASS.NONE, 'REFUSED'],
    ['class CH, not an identity name', T.TXT, CLASS.CH, 'REFUSED'],
  ];

  // unbound answers the meta types FORMERR; canonport NOTIMP, on purpose (docs/dns.md): the question is well formed, and
  // RFC 1035 §4.1.1 has NOTIMP for "does not support the requested kind of query".
  it.each(local)('%s for a forwarded name: %s at once, never sent upstream, as unbound answers at once', async (label, qtype, qclass, expected) => {
    const upstream = await fake();
    const d = await daemon({ zones: [ZONE], upstreams: [upstream.address] });
    const name = `${label.split(' ')[0]!.toLowerCase()}-${qtype}-${qclass}.example.net`;
    const query = (id: number) => craft({ id, flags: FLAG.RD, questions: [question(wireName(labelsOf(name)), qtype, qclass)] });
    const reference = await exchange(at(resolver.port), query);
    expect(rcodeName(reference.rcode), 'unbound').toBeOneOf(['REFUSED', 'FORMERR', 'NOTIMP']);
    const m = await exchange(d.addresses.dns, query);
    expect({ rcode: rcodeName(m.rcode), sentUpstream: upstream.count() }).toEqual({ rcode: expected, sentUpstream: 0 });
  });

  it.each(local)('%s for a name in the zone: %s, as for a forwarded name', async (_label, qtype, qclass, expected) => {
    const upstream = await fake();
    const d = await daemon({ zones: [ZONE], upstreams: [upstream.address] });
    const m = await exchange(d.addresses.dns, (id) => craft({ id, flags: FLAG.RD, questions: [question(wireName(labelsOf(`api.${ZONE}`)), qtype, qclass)] }));
    expect({ rcode: rcodeName(m.rcode), sentUpstream: upstream.count() }).toEqual({ rcode: expected, sentUpstream: 0 });
  });
});

describe('5. opcodes: NOTIMP for an unknown opcode, RA only where recursion is offered (RFC 1035 §4.1.1)', () => {
  let d: Daemon;
  let closed: Daemon;
  let outsider: UdpClient;
  let allowed: UdpClient;
  beforeAll(async () => {
    d = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${resolver.port}`] });
    // As bound to a public address: loopback not trusted, only 127.0.0.2 may recurse.
    closed = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${resolver.port}`], allow: ['127.0.0.2/32'] }, { trustLoopback: false });
    outsider = await UdpClient.open('127.0.0.3');
    allowed = await UdpClient.open('127.0.0.2');
  });
  afterAll(async () => {
    await outsider?.close();
    await allowed?.close();
  });

  it('opcode 15 with QDCOUNT=0 (genreport `opcode`): NOTIMP, opcode echoed, empty sections, no RA, as unbound answers', async () => {
    const query = (id: number) => craft({ id, opcode: OPCODE.UNASSIGNED_15 });
    const reference = await exchange(at(resolver.port), query);
    expect({ rcode: rcodeName(reference.rcode), ra: reference.ra }).toEqual({ rcode: 'NOTIMP', ra: false });
    const m = await exchange(d.addresses.dns, query);
    expect(rcodeName(m.rcode)).toBe('NOTIMP');
    expect(m.opcode).toBe(OPCODE.UNASSIGNED_15);
    expect([m.questions.length, m.answers.length, m.authority.length, m.additional.length]).toEqual([0, 0, 0, 0]);
    expect({ aa: m.aa, ra: m.ra }).toEqual({ aa: false, ra: false });
  });

  it('an unassigned opcode with a question: NOTIMP without RA, as unbound answers', async () => {
    const query = (id: number) => craft({ id, opcode: OPCODE.UNASSIGNED_3, flags: FLAG.RD, questions: [question(wireName(labelsOf(`www.${UPSTREAM_ZONE}`)), T.A)] });
    const reference = await exchange(at(resolver.port), query);
    expect({ rcode: rcodeName(reference.rcode), ra: reference.ra }).toEqual({ rcode: 'NOTIMP', ra: false });
    const m = await exchange(d.addresses.dns, query);
    expect({ rcode: rcodeName(m.rcode), opcode: m.opcode, ra: m.ra }).toEqual({ rcode: 'NOTIMP', opcode: OPCODE.UNASSIGNED_3, ra: false });
  });

  it('opcode 15 with every flag set (genreport `opcodeflg`): NOTIMP, and no AA, RA, AD, CD or Z in the reply', async () => {
    const all = FLAG.TC | FLAG.RD | FLAG.RA | FLAG.AD | FLAG.CD | FLAG.AA | FLAG.Z;
    const m = await exchange(d.addresses.dns, (id) => craft({ id, opcode: OPCODE.UNASSIGNED_15, flags: all }));
    expect(rcodeName(m.rcode)).toBe('NOTIMP');
    expect(m.flags & (FLAG.AA | FLAG.RA | FLAG.AD | FLAG.CD | FLAG.Z)).toBe(0);
  });

  it('REFUSED to a client that may not recurse has RA clear, as unbound refuses it', async () => {
    const name = `www.${UPSTREAM_ZONE}`;
    const reference = await ask(at(resolver.port), { name }, outsider);
    expect({ rcode: rcodeName(reference.rcode), ra: reference.ra }).toEqual({ rcode: 'REFUSED', ra: false });
    const m = await ask(closed.addresses.dns, { name }, outsider);
    expect({ rcode: rcodeName(m.rcode), ra: m.ra }).toEqual({ rcode: 'REFUSED', ra: false });
  });

  it('a canonical answer has RA clear for a client that may not recurse, and set for one that may', async () => {
    const out = await ask(closed.addresses.dns, { name: `api.${ZONE}`, type: T.SRV }, outsider);
    const ok = await ask(closed.addresses.dns, { name: `api.${ZONE}`, type: T.SRV }, allowed);
    expect(out.answers).toHaveLength(1);
    expect({ outsider: out.ra, allowed: ok.ra }).toEqual({ outsider: false, allowed: true });
  });
});

describe('6. the zone has NS at the apex, hosts that resolve, and an SOA serial from its content (RFC 1034 §4.2.1)', () => {
  const REGISTRY = `zones:\n  - ${ZONE}\nttl: 30\nservices:\n  caterpillar:\n    port: 13700\n`;
  const CHANGED = `${REGISTRY}  legacy:\n    port: 9999\n`;

  /** The same registry content in a file of its own, as each host has its own copy. */
  function registryFile(text: string): string {
    const file = join(tempDir('canonport-conformance-'), 'registry.yaml');
    writeFileSync(file, text);
    return file;
  }

  it('NS <zone> is answered with AA, and every NS target and the SOA MNAME have an address: the daemon\'s own', async () => {
    const d = await daemon({ registry: registryFile(REGISTRY) }, { watchRegistry: false });
    const ns = await dig(d.addresses.dns, ['+norec', 'NS', ZONE]);
    expect(ns.status).toBe('NOERROR');
    expect(ns.flags).toContain('aa');
    const targets = ns.answer.filter((r) => r[3] === 'NS').map((r) => r[4]!);
    expect(targets.length, `no NS records:\n${ns.raw}`).toBeGreaterThan(0);
    const soa = await dig(d.addresses.dns, ['+norec', 'SOA', ZONE]);
    const mname = soa.answer.find((r) => r[3] === 'SOA')?.[4];
    expect(mname).toBeDefined();
    for (const host of [...targets, mname!]) {
      const addrs: string[] = [];
      for (const type of ['A', 'AAAA']) {
        // With recursion: a target outside the zone is a valid design, and RD=0 would only ask the cache.
        const r = await dig(d.addresses.dns, [type, host]);
        addrs.push(...r.answer.filter((x) => x[3] === type).map((x) => x[4]!));
      }
      expect(addrs, `${host} has no address`).toContain(d.addresses.dns.host);
    }
    // The targets' addresses ride along in the additional section.
    const glue = ns.additional.filter((r) => r[3] === 'A' || r[3] === 'AAAA').map((r) => [r[0], r[4]]);
    expect(glue).toEqual(targets.map((t) => [t, d.addresses.dns.host]));
  });

  it('the registry\'s hosts map names the name server\'s address instead: in the NS glue and in A ns.<zone> alike', async () => {
    const d = await daemon({ registry: registryFile(`${REGISTRY}hosts:\n  ns.${ZONE}: [192.0.2.53]\n`) }, { watchRegistry: false });
    const ns = await dig(d.addresses.dns, ['+norec', 'NS', ZONE]);
    expect(ns.answer.map((r) => [r[3], r[4]])).toEqual([['NS', `ns.${ZONE}.`]]);
    expect(ns.additional.filter((r) => r[3] === 'A').map((r) => r[4])).toEqual(['192.0.2.53']);
    expect((await dig(d.addresses.dns, ['+norec', 'A', `ns.${ZONE}`])).answer.map((r) => r[4])).toEqual(['192.0.2.53']);
  });

  it('two hosts with the same registry have the same SOA serial; a changed registry changes it on reload; an unchanged one keeps it', async () => {
    const fileA = registryFile(REGISTRY);
    const fileB = registryFile(REGISTRY);
    const a = await daemon({ registry: fileA }, { watchRegistry: false });
    // Start the second host in a later second of the wall clock: a serial taken from the start time
    // would agree only by the accident of both starting within one second.
    const started = Math.floor(Date.now() / 1000);
    while (Math.floor(Date.now() / 1000) === started) await new Promise((r) => setTimeout(r, 50));
    const b = await daemon({ registry: fileB }, { watchRegistry: false });
    const serial = async (x: Daemon) => (await zoneSoa(x.addresses.dns)).serial;

    const before = await serial(a);
    expect(await serial(b), 'two hosts with the same registry disagree').toBe(before);

    expect((await a.reload()).ok).toBe(true);
    expect(await serial(a), 'a reload of the same content changed the serial').toBe(before);

    writeFileSync(fileA, CHANGED);
    expect((await a.reload()).ok).toBe(true);
    const changed = await serial(a);
    expect(changed, 'the registry changed but the serial did not').not.toBe(before);

    writeFileSync(fileB, CHANGED);
    expect((await b.reload()).ok).toBe(true);
    expect(await serial(b), 'after the same change the hosts disagree').toBe(changed);
  });
});

describe('7. the allow-list limits recursion, not answers about the served zones (--canonical-clients any)', () => {
  /**
   * A client outside --allow gets the zone as the daemon knows it without
   * asking anyone: SRV and TXT, A/AAAA from the registry's hosts, /etc/hosts
   * or addresses already learned, and NODATA (not REFUSED) where only an
   * upstream question could tell; it can never make the daemon send one.
   */
  let upstream: FakeUpstream;
  let d: Daemon;
  let outsider: UdpClient;
  let allowed: UdpClient;
  beforeAll(async () => {
    upstream = await fake({ kind: 'answer', address: '192.0.2.77' });
    const registry = join(tempDir('canonport-conformance-'), 'registry.yaml');
    writeFileSync(registry, `hosts:\n  pinned.${ZONE}: [10.0.0.30]\n`);
    d = await daemon({ zones: [ZONE], registry, upstreams: [upstream.address], allow: ['127.0.0.2/32'], canonicalClients: 'any' }, { trustLoopback: false, watchRegistry: false });
    outsider = await UdpClient.open('127.0.0.3');
    allowed = await UdpClient.open('127.0.0.2');
  });
  afterAll(async () => {
    await outsider?.close();
    await allowed?.close();
  });

  it('SRV and TXT db.<zone> are answered to a client outside the allow-list, with AA and without RA', async () => {
    const srv = await ask(d.addresses.dns, { name: `db.${ZONE}`, type: T.SRV }, outsider);
    expect({ rcode: rcodeName(srv.rcode), aa: srv.aa, ra: srv.ra, port: (srv.answers[0]?.data as { port: number } | undefined)?.port }).toEqual({ rcode: 'NOERROR', aa: true, ra: false, port: 14688 });
    const txt = await ask(d.addresses.dns, { name: `db.${ZONE}`, type: T.TXT }, outsider);
    expect(txt.answers.map((r) => r.data)).toEqual([['port=14688', 'scheme=base32', 'prefix=db0']]);
  });

  it('A of a host in the registry\'s hosts map: the same address for the outsider as for the allowed client', async () => {
    const name = `pinned.${ZONE}`;
    const out = await ask(d.addresses.dns, { name }, outsider);
    const ok = await ask(d.addresses.dns, { name }, allowed);
    expect({ outsider: out.answers.map((r) => r.data), aa: out.aa }).toEqual({ outsider: ['10.0.0.30'], aa: true });
    expect(ok.answers.map((r) => r.data)).toEqual(['10.0.0.30']);
  });

  it.each([['A', T.A] as const, ['AAAA', T.AAAA] as const])('%s db.<zone>, known only upstream, to a client outside the allow-list: NODATA with the zone SOA and AA (not REFUSED), no upstream query', async (_label, type) => {
    const name = `db.${ZONE}`;
    const m = await ask(d.addresses.dns, { name, type }, outsider);
    expect({ ...negative(m), sentUpstream: upstream.count({ name }) }).toEqual({ rcode: 'NOERROR', answers: 0, aa: true, soa: expect.objectContaining({ owner: ZONE }), sentUpstream: 0 });
  });

  it('once an allowed client has made the daemon learn an in-zone address, the outsider gets that address too', async () => {
    const name = `web.${ZONE}`;
    const ok = await ask(d.addresses.dns, { name }, allowed);
    expect(ok.answers.map((r) => r.data)).toEqual(['192.0.2.77']);
    const asked = upstream.count({ name });
    const out = await ask(d.addresses.dns, { name }, outsider);
    expect({ answers: out.answers.map((r) => r.data), aa: out.aa, sentUpstream: upstream.count({ name }) }).toEqual({ answers: ['192.0.2.77'], aa: true, sentUpstream: asked });
  });

  it('recursion still needs the allow-list: a forwarded name is REFUSED to the outsider and answered to the allowed client', async () => {
    const name = 'www.example.net';
    expect(rcodeName((await ask(d.addresses.dns, { name }, outsider)).rcode)).toBe('REFUSED');
    expect((await ask(d.addresses.dns, { name }, allowed)).answers.map((r) => r.data)).toEqual(['192.0.2.77']);
  });
});

describe('8. identity queries (CH TXT version.bind, id.server, hostname.bind) are answered locally', () => {
  const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  const names: [string, string][] = [
    ['version.bind', `canonport ${PACKAGE_VERSION}`],
    ['version.server', `canonport ${PACKAGE_VERSION}`],
    ['hostname.bind', hostname()],
    ['id.server', hostname()],
  ];
  let upstream: FakeUpstream;
  let viaFake: Daemon;
  let hiding: Daemon;
  let viaUnbound: Daemon;
  beforeAll(async () => {
    upstream = await fake();
    viaFake = await daemon({ zones: [ZONE], upstreams: [upstream.address] });
    hiding = await daemon({ zones: [ZONE], upstreams: [upstream.address], identity: 'hide' });
    viaUnbound = await daemon({ zones: [ZONE], upstreams: [`127.0.0.1:${authoritative.port}`] });
  });

  it.each(names)('CH TXT %s: canonport\'s own answer, "%s" (TXT in class CH, TTL 0, no AA, as unbound answers its own), no upstream query', async (name, text) => {
    const m = await ask(viaFake.addresses.dns, { name, type: T.TXT, klass: CLASS.CH });
    expect(upstream.count({ name }), 'the identity query was forwarded').toBe(0);
    expect({ rcode: rcodeName(m.rcode), aa: m.aa }).toEqual({ rcode: 'NOERROR', aa: false });
    expect(m.answers.map((r) => [r.name.toLowerCase(), r.type, r.klass, r.ttl, r.data])).toEqual([[name, T.TXT, CLASS.CH, 0, [text]]]);
  });

  it.each(names)('CH TXT %s under --identity hide: REFUSED, no upstream query', async (name) => {
    const m = await ask(hiding.addresses.dns, { name, type: T.TXT, klass: CLASS.CH });
    expect({ rcode: rcodeName(m.rcode), answers: m.answers.length, sentUpstream: upstream.count({ name }) }).toEqual({ rcode: 'REFUSED', answers: 0, sentUpstream: 0 });
  });

  it('CH A version.bind (not a TXT question): REFUSED, as unbound answers it', async () => {
    const reference = await ask(at(authoritative.port), { name: 'version.bind', type: T.A, klass: CLASS.CH });
    expect(rcodeName(reference.rcode)).toBe('REFUSED');
    const m = await ask(viaFake.addresses.dns, { name: 'version.bind', type: T.A, klass: CLASS.CH });
    expect({ rcode: rcodeName(m.rcode), sentUpstream: upstream.count({ name: 'version.bind' }) }).toEqual({ rcode: 'REFUSED', sentUpstream: 0 });
  });

  it('CH TXT version.bind through canonport is not the upstream unbound\'s version', async () => {
    const theirs = await ask(at(authoritative.port), { name: 'version.bind', type: T.TXT, klass: CLASS.CH });
    const theirText = theirs.answers.flatMap((r) => r.data as string[]).join(' ');
    expect(theirText).toMatch(/unbound/i);
    const m = await ask(viaUnbound.addresses.dns, { name: 'version.bind', type: T.TXT, klass: CLASS.CH });
    const text = m.answers.flatMap((r) => (r.type === T.TXT ? (r.data as string[]) : [])).join(' ');
    expect(text).toBe(`canonport ${PACKAGE_VERSION}`);
  });
});

describe('9. RD=0 for a forwarded name is answered from the cache only (or REFUSED), as unbound does', () => {
  // unbound 1.17 with a forward-zone REFUSES RD=0 even for a name it has cached; the issue accepts either.
  let upstream: FakeUpstream;
  let d: Daemon;
  let unbound: Unbound;
  beforeAll(async () => {
    upstream = await fake({ kind: 'answer', address: '192.0.2.9' });
    d = await daemon({ zones: [ZONE], upstreams: [upstream.address] });
    unbound = await startUnboundResolver([{ zone: '.', port: upstream.port }]);
  });
  afterAll(async () => {
    await unbound?.stop();
  });

  /**
   * RD=0 before and after the name is cached (by an RD=1 query): never a
   * query upstream for it; REFUSED or an empty answer while it is not
   * cached, REFUSED or the cached answer once it is.
   */
  async function cacheOnly(server: Server, name: string): Promise<{ cold: Message; cached: Message }> {
    const cold = await ask(server, { name, rd: false });
    expect(upstream.count({ name }), 'RD=0 made the server ask upstream').toBe(0);
    expect({ rcode: rcodeName(cold.rcode), answers: cold.answers.length }).toBeOneOf([
      { rcode: 'REFUSED', answers: 0 },
      { rcode: 'NOERROR', answers: 0 },
    ]);
    const warm = await ask(server, { name, rd: true });
    expect(warm.answers.map((r) => r.data)).toEqual(['192.0.2.9']);
    const asked = upstream.count({ name });
    expect(asked).toBeGreaterThan(0);
    const cached = await ask(server, { name, rd: false });
    expect(upstream.count({ name }), 'RD=0 on a cached name went upstream').toBe(asked);
    expect({ rcode: rcodeName(cached.rcode), answers: cached.answers.map((r) => r.data) }).toBeOneOf([
      { rcode: 'REFUSED', answers: [] },
      { rcode: 'NOERROR', answers: ['192.0.2.9'] },
    ]);
    return { cold, cached };
  }

  it('unbound (the reference)', async () => {
    await cacheOnly(at(unbound.port), 'cache-only-u.example.net');
  });

  it('canonport: REFUSED until cached, then the cached answer (RD clear, RA set: this client may recurse)', async () => {
    const { cold, cached } = await cacheOnly(d.addresses.dns, 'cache-only-c.example.net');
    expect({ rcode: rcodeName(cold.rcode), rd: cold.rd, ra: cold.ra }).toEqual({ rcode: 'REFUSED', rd: false, ra: true });
    expect({ rcode: rcodeName(cached.rcode), rd: cached.rd, ra: cached.ra, aa: cached.aa }).toEqual({ rcode: 'NOERROR', rd: false, ra: true, aa: false });
  });
});

describe('10. `_`-led top-level names, `invalid.` and `onion.` get NXDOMAIN at once, with no upstream round trip (RFC 6761 §6.4, RFC 7686)', () => {
  let upstream: FakeUpstream;
  let d: Daemon;
  beforeAll(async () => {
    // A silent upstream: what the search list met in the issue (the absolute name timed out, SERVFAIL, search abandoned).
    upstream = await fake({ kind: 'silent' });
    d = await daemon({ zones: [ZONE], upstreams: [upstream.address], upstreamTimeoutMs: 500 });
  });

  /** The SOA unbound gives its own empty local zones (invalid., onion., test.): canonport gives the same. */
  const specialSoa = (zone: string) => ({ owner: zone, mname: 'localhost', rname: 'nobody.invalid', serial: 1 });

  it.each([
    ['_api._tcp', '_tcp', T.SRV],
    ['_http._tcp', '_tcp', T.SRV],
    ['x._foo', '_foo', T.A],
  ] as const)('%s (under a top-level label no root zone can hold): NXDOMAIN with the SOA of %s., AA, never asked upstream', async (name, zone, type) => {
    const m = await ask(d.addresses.dns, { name, type });
    expect({ ...negative(m), sentUpstream: upstream.count({ name }) }).toEqual({ rcode: 'NXDOMAIN', answers: 0, aa: true, soa: specialSoa(zone), sentUpstream: 0 });
  });

  it.each([
    ['foo.invalid', 'invalid', T.A],
    ['a.b.invalid', 'invalid', T.AAAA],
    ['xyzexample.onion', 'onion', T.A],
  ] as const)('%s: NXDOMAIN with the SOA of %s., never asked upstream, as unbound answers it', async (name, zone, type) => {
    const reference = negative(await ask(at(resolver.port), { name, type }));
    expect(reference).toEqual({ rcode: 'NXDOMAIN', answers: 0, aa: true, soa: specialSoa(zone) });
    const m = await ask(d.addresses.dns, { name, type });
    expect({ ...negative(m), sentUpstream: upstream.count({ name }) }).toEqual({ ...reference, sentUpstream: 0 });
  });

  it.each(['invalid', 'onion', '_foo'])('%s. itself: the apex of an empty zone, NODATA with its SOA (as unbound answers invalid.), SOA answered, never asked upstream', async (zone) => {
    if (zone === 'invalid') expect(negative(await ask(at(resolver.port), { name: zone }))).toEqual({ rcode: 'NOERROR', answers: 0, aa: true, soa: specialSoa(zone) });
    const m = await ask(d.addresses.dns, { name: zone });
    expect({ ...negative(m), sentUpstream: upstream.count({ name: zone }) }).toEqual({ rcode: 'NOERROR', answers: 0, aa: true, soa: specialSoa(zone), sentUpstream: 0 });
    const soa = await ask(d.addresses.dns, { name: zone, type: T.SOA });
    expect(soa.answers.map((r) => [r.name.toLowerCase(), r.type])).toEqual([[zone, T.SOA]]);
  });

  it.each(['fwd.test', 'printer.local'])('%s stays forwarded (sites serve test. and local.): asked upstream', async (name) => {
    await ask(d.addresses.dns, { name });
    expect(upstream.count({ name })).toBeGreaterThan(0);
  });
});
