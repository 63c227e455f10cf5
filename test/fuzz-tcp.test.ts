import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { startDaemon } from './helpers/daemon.js';
import { buildQuery, frame, parseMessage, RCODE, T, tcpAsk, UdpClient, unframe, type Server } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { Fuzzer, headerOracle, judge, prng, type FuzzCase } from './helpers/fuzz.js';

/**
 * Hostile input over TCP against the real daemon: garbage streams, fuzzed
 * frames with bad tails, lying length prefixes, half frames, slowloris
 * clients, pipelined queries split at odd byte boundaries, a client that
 * half-closes, and a connection flood past maxConnections.
 */

const IDLE_MS = 400;
const MAX_CONNS = 16;
/** How long past the idle timeout a stalled connection may stay open (a loaded machine is slow). */
const CLOSE_BOUND_MS = IDLE_MS + 4000;

let fake: FakeUpstream;
let d: Daemon;
let flood: Daemon;
const crashes: string[] = [];
const onCrash = (err: unknown) => crashes.push(String(err));

beforeAll(async () => {
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  fake = await FakeUpstream.start({ kind: 'answer', ttl: 60, records: 3 });
  const flags = { upstreams: [fake.address], upstreamTimeoutMs: 500, zones: ['cluster-1.example.com'] };
  d = await startDaemon(flags, { tune: (c) => ({ ...c, tcp: { idleTimeoutMs: IDLE_MS, maxConnections: 64 } }) });
  flood = await startDaemon(flags, { tune: (c) => ({ ...c, tcp: { idleTimeoutMs: 10_000, maxConnections: MAX_CONNS } }) });
});

afterAll(async () => {
  await d?.close(0);
  await flood?.close(0);
  await fake?.close();
  process.off('uncaughtException', onCrash);
  process.off('unhandledRejection', onCrash);
  expect(crashes).toEqual([]);
});

/** A raw client connection that records reply frames and who closed it. */
class Conn {
  readonly replies: Buffer[] = [];
  closedByPeer = false;
  closedAt = 0;
  readonly closed: Promise<void>;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];

  private constructor(readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      const { messages, rest } = unframe(this.buf);
      this.buf = Buffer.from(rest);
      this.replies.push(...messages.map((m) => Buffer.from(m)));
      this.notify();
    });
    sock.on('error', () => {});
    this.closed = new Promise((resolve) =>
      sock.on('close', () => {
        this.closedAt = performance.now();
        resolve();
        this.notify();
      }),
    );
    sock.on('end', () => (this.closedByPeer = true));
    sock.on('close', () => {
      if (!this.destroyedByUs) this.closedByPeer = true;
    });
  }

  private destroyedByUs = false;

  static open(server: Server): Promise<Conn> {
    return new Promise((resolve, reject) => {
      // From the upstream's own address (127.0.0.1): duplicates from there must not look like a forwarding loop.
      const sock = net.connect({ port: server.port, host: server.host, localAddress: '127.0.0.1' });
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(new Conn(sock));
      });
    });
  }

  get isClosed(): boolean {
    return this.sock.destroyed || this.closedAt > 0;
  }

  write(b: Buffer): Promise<void> {
    if (this.sock.destroyed) return Promise.resolve();
    return new Promise((resolve) => this.sock.write(b, () => resolve()));
  }

  /** Waits until `until()` holds, the connection closes, or `ms` pass. */
  wait(until: () => boolean, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (until() || this.isClosed) {
          clearTimeout(t);
          this.waiters = this.waiters.filter((w) => w !== check);
          resolve();
          return true;
        }
        return false;
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve();
      }, ms);
      if (!check()) this.waiters.push(check);
    });
  }

  destroy(): void {
    this.destroyedByUs = true;
    this.sock.destroy();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/**
 * How the daemon must read a byte stream: the complete frames, and how it
 * ends (clean, a length under a header's size, or an unfinished frame).
 */
function framesOf(stream: Buffer): { frames: Buffer[]; end: 'clean' | 'bad-length' | 'partial' } {
  const frames: Buffer[] = [];
  let off = 0;
  while (stream.length - off >= 2) {
    const len = stream.readUInt16BE(off);
    if (len < 12) return { frames, end: 'bad-length' };
    if (stream.length - off - 2 < len) return { frames, end: 'partial' };
    frames.push(stream.subarray(off + 2, off + 2 + len));
    off += 2 + len;
  }
  return { frames, end: off === stream.length ? 'clean' : 'partial' };
}

async function writeInChunks(c: Conn, data: Buffer, rnd: () => number, maxChunk: number): Promise<void> {
  for (let off = 0; off < data.length && !c.isClosed; ) {
    const n = 1 + Math.floor(rnd() * maxChunk);
    await c.write(data.subarray(off, off + n));
    off += n;
    if (rnd() < 0.3) await new Promise((r) => setImmediate(r));
  }
}

async function healthy(server: Server): Promise<boolean> {
  const m = await tcpAsk(server, { name: 'api.localhost', type: T.SRV }, 3000);
  return m?.rcode === RCODE.NOERROR && (m.answers[0]?.data as { port?: number } | undefined)?.port === 12082;
}

describe('TCP', () => {
  test('garbage streams and fuzzed frames with bad tails: every reply correct, the daemon closes what it cannot read', { timeout: 120_000 }, async () => {
    const seed = Number(process.env.CANONPORT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const rnd = prng(seed);
    const fz = new Fuzzer(rnd, 'cluster-1.example.com');
    const stats = { connections: 0, frames: 0, replies: 0, formerr: 0, closedByDaemon: 0, wrong: 0, missing: 0, stayedOpen: 0, health: 0 };
    const samples: string[] = [];
    const wrong = (why: string) => {
      stats.wrong++;
      if (samples.length < 10) samples.push(why);
    };

    const one = async () => {
      stats.connections++;
      let stream: Buffer;
      if (rnd() < 0.3) {
        stream = fz.bytes(1 + fz.int(3000));
      } else {
        const cases: FuzzCase[] = Array.from({ length: 10 + fz.int(50) }, () => fz.next());
        const tail = fz.pick(['none', 'none', 'bad', 'partial'] as const);
        const parts = cases.filter((c) => c.packet.length >= 12).map((c) => frame(c.packet));
        if (tail === 'bad') parts.push(Buffer.from([0, fz.int(12)]), fz.bytes(fz.int(30)));
        if (tail === 'partial') parts.push(Buffer.from([0, 200]), fz.bytes(fz.int(150)));
        stream = Buffer.concat(parts);
      }
      const { frames, end } = framesOf(stream);
      // Unique IDs per connection, written into the frames (views into the stream).
      frames.forEach((f, i) => f.writeUInt16BE(i, 0));
      const expects = frames.map((f) => headerOracle(f));
      const mustAnswer = expects.filter((e) => e !== 'drop').length;
      stats.frames += frames.length;

      const c = await Conn.open(d.addresses.dns);
      await writeInChunks(c, stream, rnd, 700);
      const answered = () => c.replies.length >= mustAnswer;
      if (end === 'clean') await c.wait(answered, 3000);
      else await c.wait(() => false, CLOSE_BOUND_MS);

      const seen = new Set<number>();
      for (const r of c.replies) {
        stats.replies++;
        const id = r.readUInt16BE(0);
        const f = frames[id];
        if (!f || seen.has(id)) {
          wrong(`reply with an unknown or repeated ID ${id}`);
          continue;
        }
        seen.add(id);
        if ((r[3]! & 0xf) === RCODE.FORMERR) stats.formerr++;
        const why = judge({ kind: 'tcp', packet: Buffer.from(f), expect: expects[id]! }, r, 'tcp');
        if (why) wrong(`${why}: ${f.toString('hex').slice(0, 80)}`);
      }
      if (end === 'bad-length') {
        // Frames before the bad length may lose their (asynchronous) answers when the daemon hangs up.
        if (!c.closedByPeer) wrong('daemon kept a connection open after a length under 12');
      } else {
        if (c.replies.length < mustAnswer) {
          stats.missing += mustAnswer - c.replies.length;
          wrong(`${mustAnswer - c.replies.length} frames unanswered (${end} stream)`);
        }
        if (end === 'partial' && !c.closedByPeer) {
          stats.stayedOpen++;
          wrong(`an unfinished frame stayed open past ${CLOSE_BOUND_MS} ms`);
        }
      }
      if (c.closedByPeer) stats.closedByDaemon++;
      c.destroy();
    };

    const started = performance.now();
    for (let batch = 0; batch < 30 && performance.now() - started < 60_000; batch++) {
      await Promise.all(Array.from({ length: 8 }, one));
      if (!(await healthy(d.addresses.dns))) stats.health++;
    }
    console.log(
      `fuzz-tcp seed=${seed}: connections ${stats.connections}, frames ${stats.frames}, replies ${stats.replies}, FORMERR ${stats.formerr}, ` +
        `closed by the daemon ${stats.closedByDaemon}, missing ${stats.missing}, wrong answers ${stats.wrong}, health failures ${stats.health}, crashes ${crashes.length}`,
    );
    if (samples.length) console.log(`fuzz-tcp wrong (first ${samples.length}):\n  ${samples.join('\n  ')}`);
    expect(samples).toEqual([]);
    expect(stats.health).toBe(0);
    expect(stats.connections).toBeGreaterThanOrEqual(200);
    expect(stats.formerr).toBeGreaterThan(0);
    expect(crashes).toEqual([]);
  });

  test.each([0, 1, 11])('length prefix %i: the daemon hangs up without a reply', async (len) => {
    const c = await Conn.open(d.addresses.dns);
    await c.write(Buffer.concat([Buffer.from([0, len]), Buffer.alloc(len, 0x41)]));
    await c.wait(() => false, CLOSE_BOUND_MS);
    expect(c.closedByPeer).toBe(true);
    expect(c.replies).toEqual([]);
    c.destroy();
  });

  test.each([
    ['length 65535 with 100 octets', Buffer.concat([Buffer.from([0xff, 0xff]), Buffer.alloc(100, 0x41)])],
    ['half a query', frame(buildQuery({ id: 7, name: 'api.localhost', type: T.SRV })).subarray(0, 15)],
    ['one octet of a length', Buffer.from([0])],
  ])('%s, then silence: closed by the idle timeout, no reply', async (_what, data) => {
    const c = await Conn.open(d.addresses.dns);
    const sent = performance.now();
    await c.write(data);
    await c.wait(() => false, CLOSE_BOUND_MS);
    expect(c.closedByPeer).toBe(true);
    expect(c.closedAt - sent).toBeLessThan(CLOSE_BOUND_MS);
    expect(c.replies).toEqual([]);
    c.destroy();
  });

  test('slowloris trickling a frame one octet at a time, never finishing it: closed', { timeout: 30_000 }, async () => {
    const c = await Conn.open(d.addresses.dns);
    const started = performance.now();
    // 2 + 300 octets at IDLE/4 apart would take 30 s; each octet alone resets an idle timer.
    const data = Buffer.concat([Buffer.from([0x01, 0x2c]), Buffer.alloc(300, 0x41)]);
    for (let i = 0; i < data.length && !c.isClosed && performance.now() - started < CLOSE_BOUND_MS * 2; i++) {
      await c.write(data.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, IDLE_MS / 4));
    }
    const open = !c.isClosed;
    c.destroy();
    expect(open, `still open after ${Math.round(performance.now() - started)} ms of trickling`).toBe(false);
    expect(c.closedByPeer).toBe(true);
    expect(c.replies).toEqual([]);
  });

  test('1,000 pipelined queries split at odd byte boundaries: all answered, matched by ID', async () => {
    // Delayed answers, so replies come back out of order. Distinct names: each is its own upstream query.
    fake.setMode('*.slow.example.org', { kind: 'delay', ms: 50, records: 2 });
    const rnd = prng(42);
    const asked = new Map<number, { name: string; type: number }>();
    const parts: Buffer[] = [];
    for (let id = 0; id < 1000; id++) {
      const pick = id % 4;
      const q =
        pick === 0
          ? { name: 'Api.LocalHost', type: T.SRV }
          : pick === 1
            ? { name: `_svc${id}._tcp.cluster-1.example.com`, type: T.SRV }
            : pick === 2
              ? { name: `n${id}.Example.org`, type: T.A }
              : { name: `q${id}.slow.example.org`, type: T.A };
      asked.set(id, q);
      parts.push(frame(buildQuery({ id, ...q, edns: id % 3 === 0 ? { udpSize: 512 } : null })));
    }
    const c = await Conn.open(d.addresses.dns);
    await writeInChunks(c, Buffer.concat(parts), rnd, 7);
    await c.wait(() => c.replies.length >= 1000, 10_000);
    const bad: string[] = [];
    const seen = new Set<number>();
    for (const r of c.replies) {
      const m = parseMessage(r);
      const q = asked.get(m.id);
      if (!q || seen.has(m.id)) {
        bad.push(`unexpected ID ${m.id}`);
        continue;
      }
      seen.add(m.id);
      if (m.questions[0]?.name !== q.name) bad.push(`${m.id}: question ${m.questions[0]?.name} for ${q.name}`);
      if (m.rcode !== RCODE.NOERROR) bad.push(`${m.id}: rcode ${m.rcode}`);
      if (m.tc) bad.push(`${m.id}: TC over TCP`);
      const srv = m.answers[0]?.data as { port?: number } | undefined;
      if (q.type === T.SRV && q.name.startsWith('Api') && srv?.port !== 12082) bad.push(`${m.id}: SRV port ${srv?.port}`);
      if (q.name.startsWith('_svc') && srv?.port === undefined) bad.push(`${m.id}: no SRV`);
      if (q.type === T.A && m.answers.filter((a) => a.type === T.A).length !== (q.name.endsWith('.slow.example.org') ? 2 : 3)) bad.push(`${m.id}: wrong A count`);
    }
    c.destroy();
    fake.setMode('*.slow.example.org', null);
    expect(bad.slice(0, 10)).toEqual([]);
    expect(seen.size).toBe(1000);
  });

  test('a client that half-closes after its queries still gets every answer', async () => {
    fake.setMode('late.example.org', { kind: 'delay', ms: 150 });
    const c = await Conn.open(d.addresses.dns);
    const qs = [
      buildQuery({ id: 1, name: 'late.example.org', type: T.A }),
      buildQuery({ id: 2, name: 'api.localhost', type: T.SRV }),
      buildQuery({ id: 3, name: 'other.example.org', type: T.A }),
    ];
    await c.write(Buffer.concat(qs.map(frame)));
    c.sock.end();
    await c.wait(() => c.replies.length >= 3, 3000);
    fake.setMode('late.example.org', null);
    expect(c.replies.map((r) => r.readUInt16BE(0)).sort()).toEqual([1, 2, 3]);
    c.destroy();
  });

  test(`a flood of connections past maxConnections (${MAX_CONNS}): the excess dropped, UDP and new TCP still served`, async () => {
    const server = flood.addresses.dns;
    const conns = await Promise.all(Array.from({ length: MAX_CONNS * 3 }, () => Conn.open(server).catch(() => null)));
    const open = conns.filter((c): c is Conn => c !== null);
    // Each asks one canonical question; only admitted connections can answer.
    await Promise.all(open.map((c, i) => c.write(frame(buildQuery({ id: i, name: 'api.localhost', type: T.SRV })))));
    await Promise.all(open.map((c) => c.wait(() => c.replies.length >= 1, 3000)));
    const answered = open.filter((c) => c.replies.length === 1 && !c.isClosed);
    const dropped = open.filter((c) => c.replies.length === 0 && c.closedByPeer);
    expect(answered.length).toBe(MAX_CONNS);
    expect(dropped.length + (conns.length - open.length)).toBe(MAX_CONNS * 2);
    const metric = (await flood.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'tcp_limit')?.value ?? 0;
    expect(metric).toBe(dropped.length);

    // While the limit is held: UDP answers, a new TCP connection is turned away.
    const udp = await UdpClient.open();
    const r = await udp.ask(server, { name: 'api.localhost', type: T.SRV });
    expect((r.msg?.answers[0]?.data as { port: number }).port).toBe(12082);
    expect(await tcpAsk(server, { name: 'api.localhost', type: T.SRV }, 1500)).toBeNull();

    // Once they close, new TCP connections are served again.
    for (const c of open) c.destroy();
    await Promise.all(open.map((c) => c.closed));
    let ok = false;
    for (let i = 0; i < 20 && !ok; i++) {
      ok = await healthy(server);
      if (!ok) await new Promise((res) => setTimeout(res, 100));
    }
    expect(ok).toBe(true);
    expect(await healthy(d.addresses.dns)).toBe(true);
    await udp.close();
  });
});
