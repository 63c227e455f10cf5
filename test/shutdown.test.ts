import net from 'node:net';
import { afterEach, describe, expect, test } from 'vitest';
import { buildQuery, frame, parseMessage, RCODE, T, tcpAsk, UdpClient, unframe, type Message } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';

/**
 * Clean shutdown of a real `canonport serve` process: a signal arrives
 * while forwarded queries wait on a slow upstream. The daemon must stop
 * taking new queries at once, answer every query already in flight (UDP
 * and TCP), and exit 0 within its drain bound.
 */

const UPSTREAM_DELAY_MS = 1200;
/** serve drains for up to 5 s; a loaded machine gets a margin on top. */
const EXIT_BOUND_MS = 5000 + 5000;

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.reverse()) await c();
  cleanup = [];
});

async function until(cond: () => boolean, ms: number): Promise<void> {
  const deadline = performance.now() + ms;
  while (!cond() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`condition not met within ${ms} ms`);
}

/** A TCP connection carrying one query; resolves with the reply, or null if the connection ends without one. */
function tcpQueryOn(sock: net.Socket, id: number, name: string): Promise<Message | null> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const m = unframe(buf).messages.find((x) => x.readUInt16BE(0) === id);
      if (m) resolve(parseMessage(m));
    });
    sock.on('close', () => resolve(null));
    sock.on('error', () => resolve(null));
    sock.write(frame(buildQuery({ id, name, type: T.A })));
  });
}

describe.each(['SIGTERM', 'SIGINT'] as const)('%s', (signal) => {
  // Which answer comes last matters: it is the one that ends the drain.
  test.each(['tcp', 'udp'] as const)('drains: in-flight queries answered (the last over %s), new ones refused, exit 0 within the bound', async (last) => {
    const fake = await FakeUpstream.start({ kind: 'delay', ms: UPSTREAM_DELAY_MS, address: '192.0.2.7' });
    cleanup.push(() => fake.close());
    const s: ServeProcess = await startServe(['--upstream', fake.address, '--upstream-timeout', '4000']);
    cleanup.push(() => s.stop());
    const client = await UdpClient.open();
    cleanup.push(() => client.close());

    // Warm: the daemon answers.
    const warm = await client.ask(s.dns, { name: 'api.localhost', type: T.SRV });
    expect(warm.msg?.rcode).toBe(RCODE.NOERROR);

    // In flight: 10 over UDP and one over TCP, all waiting on the slow upstream, answered in the order sent.
    const sock = net.connect(s.dns.port, s.dns.host);
    await new Promise((r) => sock.once('connect', r));
    const sendUdp = () =>
      Array.from({ length: 10 }, (_, i) =>
        client.ask(s.dns, { name: `drain${i}.example.org`, type: T.A }, 15_000).then((r) => ({ ...r, at: performance.now() })),
      );
    let inflight: ReturnType<typeof sendUdp> = [];
    let overTcp: Promise<Message | null>;
    if (last === 'tcp') {
      inflight = sendUdp();
      await until(() => fake.count() >= 10, 5000);
      overTcp = tcpQueryOn(sock, 4242, 'drain-tcp.example.org');
    } else {
      overTcp = tcpQueryOn(sock, 4242, 'drain-tcp.example.org');
      await until(() => fake.count() >= 1, 5000);
      inflight = sendUdp();
    }
    await until(() => fake.count() >= 11, 5000);

    const signalled = performance.now();
    s.proc.kill(signal);
    await s.waitForLog((l) => l.event === 'shutdown', 5000);

    // Draining now: new queries get nothing, new TCP connections are refused.
    const lateSent = performance.now();
    const lateUdp = client.ask(s.dns, { name: 'api.localhost', type: T.SRV }, 1500);
    const lateTcp = tcpAsk(s.dns, { name: 'api.localhost', type: T.SRV }, 1500);

    const answers = await Promise.all(inflight);
    const tcpAnswer = await overTcp;
    const { code, signal: bySignal } = await s.exited;
    const exitMs = performance.now() - signalled;
    sock.destroy();

    // Exit first: a crash while draining (exit 1, a stack on stderr) explains every other failure.
    expect({ code, bySignal, stderr: s.text }).toEqual({ code: 0, bySignal: null, stderr: [] });
    for (const a of answers) {
      expect(a.msg?.rcode).toBe(RCODE.NOERROR);
      expect(a.msg?.answers.map((r) => r.data)).toEqual(['192.0.2.7']);
    }
    expect(tcpAnswer?.rcode).toBe(RCODE.NOERROR);
    expect(tcpAnswer?.answers.map((r) => r.data)).toEqual(['192.0.2.7']);
    // The late query reached a daemon that was still running (answers were yet to come) and got nothing.
    expect((await lateUdp).msg).toBeNull();
    expect(await lateTcp).toBeNull();
    expect(lateSent).toBeLessThan(Math.min(...answers.map((a) => a.at)));
    expect(exitMs).toBeLessThan(EXIT_BOUND_MS);
    expect(s.logs.some((l) => l.event === 'stopped')).toBe(true);
    expect(s.logs.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
  });
});

test('queries still in flight when the drain bound ends: the daemon exits 0 without them, and without crashing', { timeout: 30_000 }, async () => {
  // The upstream never answers and its timeout outlasts the 5 s drain: the answers (SERVFAIL) come after the sockets closed.
  const fake = await FakeUpstream.start({ kind: 'silent' });
  cleanup.push(() => fake.close());
  const s = await startServe(['--upstream', fake.address, '--upstream-timeout', '6500']);
  cleanup.push(() => s.stop());
  const client = await UdpClient.open();
  cleanup.push(() => client.close());
  const inflight = Array.from({ length: 3 }, (_, i) => client.ask(s.dns, { name: `stuck${i}.example.org`, type: T.A }, 8000));
  await until(() => fake.count() >= 3, 5000);
  const signalled = performance.now();
  s.proc.kill('SIGTERM');
  const { code, signal } = await s.exited;
  const exitMs = performance.now() - signalled;
  expect({ code, signal, stderr: s.text }).toEqual({ code: 0, signal: null, stderr: [] });
  expect(exitMs).toBeLessThan(6500 + EXIT_BOUND_MS);
  for (const a of await Promise.all(inflight)) expect(a.msg).toBeNull();
});
