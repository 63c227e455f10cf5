import dgram from 'node:dgram';
import { metricSum } from './helpers/serve-process.js';
import { afterAll, beforeAll, expect, test } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { dig } from './helpers/dig.js';
import { RCODE, T, UdpClient } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { Fuzzer, judge, prng, type FuzzCase } from './helpers/fuzz.js';

/**
 * Hostile input over UDP against the real daemon: at least 100,000 random
 * and mutated packets (see test/helpers/fuzz.ts for the mutations and the
 * oracle), sent in bursts from a fixed set of client sockets. Every reply
 * must parse strictly, carry QR=1 and the ID of the packet it answers,
 * have the rcode the oracle demands, echo the question exactly as asked,
 * and fit the client's UDP size; packets that must be dropped get nothing;
 * and `SRV api.localhost` answers correctly after every burst.
 *
 * Reproduce a run with CANONPORT_FUZZ_SEED=<seed printed below>.
 */

const ZONE = 'cluster-1.example.com';
const TARGET = Number(process.env.CANONPORT_FUZZ_PACKETS ?? 100_000);
const TIME_LIMIT_MS = 100_000;
const SOCKETS = 8;
/** Packets per socket per burst: 64 in flight at most, far below the receive buffers. */
const PER_SOCKET = 8;
const REPLY_WAIT_MS = 3000;
const CLIENT = '127.0.0.1';

interface Sent {
  c: FuzzCase;
  answered: boolean;
}

let fake: FakeUpstream;
let d: Daemon;
const crashes: string[] = [];
const onCrash = (err: unknown) => crashes.push(String(err));

beforeAll(async () => {
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  // 40 records per forwarded answer: many exceed 512 octets, so the TC path is fuzzed too.
  fake = await FakeUpstream.start({ kind: 'answer', ttl: 60, records: 40 });
  const registry = writeRegistry(
    [
      `zones: [${ZONE}]`,
      'hosts:',
      `  api.${ZONE}: [10.0.0.1, "fd00::1"]`,
      'services:',
      '  legacy: {port: 8080}',
      '  users: {id: 1, versions: [1, 2]}',
      '  splash: {block: 7000, roles: [api, psql]}',
    ].join('\n'),
  );
  d = await startDaemon({ registry, upstreams: [fake.address], upstreamTimeoutMs: 500 });
});

afterAll(async () => {
  await d?.close(0);
  await fake?.close();
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
});

test(`survives ${TARGET} random and mutated UDP packets`, { timeout: TIME_LIMIT_MS + 30_000 }, async () => {
  const seed = Number(process.env.CANONPORT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
  const fz = new Fuzzer(prng(seed), ZONE);
  const server = d.addresses.dns;
  // Clients share the upstream's address (127.0.0.1): duplicates from there must not look like a forwarding loop.
  const health = await UdpClient.open(CLIENT);

  const stats = { tried: 0, replies: 0, formerr: 0, truncated: 0, drops: 0, wrong: 0, missing: 0, healthFailures: 0, bursts: 0 };
  const wrongSamples: string[] = [];
  const byKind = new Map<string, number>();
  const wrong = (why: string, c?: FuzzCase) => {
    stats.wrong++;
    if (wrongSamples.length < 10) wrongSamples.push(`${why}${c ? ` [${c.kind}, expect ${c.expect}] ${c.packet.toString('hex')}` : ''}`);
  };

  // Fixed client sockets; each has its own ID space, so every reply maps to exactly one packet.
  const sockets: { sock: dgram.Socket; sent: Map<number, Sent>; next: number }[] = [];
  let waitingFor = 0;
  let wake: (() => void) | null = null;
  for (let i = 0; i < SOCKETS; i++) {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, CLIENT, r));
    const entry = { sock, sent: new Map<number, Sent>(), next: 0 };
    sock.on('message', (raw) => {
      stats.replies++;
      const s = raw.length >= 2 ? entry.sent.get(raw.readUInt16BE(0)) : undefined;
      if (!s) return wrong(`reply with an ID we never sent: ${raw.toString('hex').slice(0, 64)}`);
      if (s.answered) return wrong('second reply to one packet', s.c);
      s.answered = true;
      if ((raw[3]! & 0xf) === RCODE.FORMERR) stats.formerr++;
      if (raw.length > 3 && raw[2]! & 0x02) stats.truncated++;
      const why = judge(s.c, raw, 'udp');
      if (why) wrong(why, s.c);
      if (s.c.expect !== 'drop' && --waitingFor === 0 && wake) wake();
    });
    sockets.push(entry);
  }

  const started = performance.now();
  const dropsExpected: Sent[] = [];
  while (stats.tried < TARGET && performance.now() - started < TIME_LIMIT_MS) {
    stats.bursts++;
    waitingFor = 0;
    for (const s of sockets) {
      for (let k = 0; k < PER_SOCKET; k++) {
        const c = fz.next();
        const id = s.next++ & 0xffff;
        if (c.packet.length >= 2) c.packet.writeUInt16BE(id, 0);
        const sent: Sent = { c, answered: false };
        if (c.packet.length >= 2) s.sent.set(id, sent);
        if (c.expect === 'drop') dropsExpected.push(sent);
        else waitingFor++;
        byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
        s.sock.send(c.packet, server.port, server.host);
        stats.tried++;
      }
    }
    if (waitingFor > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, REPLY_WAIT_MS);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
      stats.missing += waitingFor;
      if (waitingFor > 0) wrong(`${waitingFor} packets got no reply within ${REPLY_WAIT_MS} ms`);
    }
    const h = await health.ask(server, { name: 'api.localhost', type: T.SRV }, REPLY_WAIT_MS);
    const srv = h.msg?.answers[0]?.data as { port?: number } | undefined;
    if (h.msg?.rcode !== RCODE.NOERROR || srv?.port !== 12082) stats.healthFailures++;
  }
  // Late replies to packets that must be dropped would arrive here.
  await new Promise((r) => setTimeout(r, 300));
  stats.drops = dropsExpected.filter((s) => !s.answered).length;
  const seconds = (performance.now() - started) / 1000;

  const viaDig = await dig(server, ['SRV', 'api.localhost']);
  const metricFormerr = await metricSum(d.metrics.dnsQueries, { rcode: 'FORMERR' });

  console.log(
    `fuzz-udp seed=${seed}: packets tried ${stats.tried} in ${seconds.toFixed(1)} s (${stats.bursts} bursts), replies ${stats.replies}, ` +
      `FORMERR ${stats.formerr}, TC ${stats.truncated}, drops ${stats.drops}, missing ${stats.missing}, wrong answers ${stats.wrong}, ` +
      `health failures ${stats.healthFailures}, crashes ${crashes.length}`,
  );
  console.log(`fuzz-udp packet kinds: ${[...byKind].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`).join(', ')}`);
  if (wrongSamples.length) console.log(`fuzz-udp wrong answers (first ${wrongSamples.length}):\n  ${wrongSamples.join('\n  ')}`);

  for (const s of sockets) s.sock.close();
  await health.close();

  expect(stats.tried).toBeGreaterThanOrEqual(TARGET);
  expect(crashes).toEqual([]);
  expect(wrongSamples).toEqual([]);
  expect(stats.wrong).toBe(0);
  expect(stats.healthFailures).toBe(0);
  expect(stats.formerr).toBeGreaterThan(TARGET / 10);
  expect(stats.truncated).toBeGreaterThan(0);
  expect(stats.drops).toBe(dropsExpected.length);
  expect(metricFormerr).toBe(stats.formerr);
  expect(viaDig.status).toBe('NOERROR');
  expect(viaDig.answer[0]?.slice(4)).toEqual(['0', '0', '12082', 'api.localhost.']);
});

