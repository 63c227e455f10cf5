import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HttpProbeConnection } from '../src/inventory/http-probe.js';
import { ReadinessProber, readyRule, type ReadinessTarget, type Verdict } from '../src/inventory/readiness.js';
import { until } from './helpers/cluster.js';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostInventory } from '../src/inventory/inventory.js';
import { Metrics } from '../src/metrics/metrics.js';
import { parseRegistry } from '../src/registry/load.js';
import { bindCanonical, closeServer } from './inventory-support.js';

/**
 * The readiness prober's schedule (issue 24's idle budget): HTTP probes go
 * out in rounds, one timer per interval whatever the number of listeners,
 * one deadline for a round's requests, no timer at all while nothing needs
 * polling, and every listener asked once per round over its kept
 * connection. Scheduling is checked with fake timers (only setTimeout and
 * clearTimeout: sockets, Date and performance.now stay real); the probes
 * go to real node:http servers on loopback.
 */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  while (cleanups.length) await cleanups.pop()!();
});

const target = (port: number, rule = readyRule(undefined), life = 'inode-1'): ReadinessTarget => ({ port, address: '127.0.0.1', life, rule });

interface Listener {
  port: number;
  requests: IncomingMessage[];
  /** TCP connections accepted: a reconnect would move the host's ActiveOpens and cost the scan a full /proc read. */
  connections: number;
  server: HttpServer;
}

async function http(handler: (req: IncomingMessage) => number | undefined = () => 200): Promise<Listener> {
  const l: Listener = { port: 0, requests: [], connections: 0, server: undefined as unknown as HttpServer };
  l.server = createHttpServer((req, res) => {
    l.requests.push(req);
    const status = handler(req);
    if (status !== undefined) res.writeHead(status).end('x');
  });
  l.server.on('connection', () => l.connections++);
  await new Promise<void>((r) => l.server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => l.server.close(r)).then(() => l.server.closeAllConnections()));
  l.port = (l.server.address() as { port: number }).port;
  return l;
}

/** Waits on real I/O (setImmediate, which is not faked) until `check` holds; 10 s of wall clock at most. */
async function settle(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const readyz = (l: Listener) => l.requests.filter((r) => r.url === '/readyz').length;

describe('rounds, not a timer per listener', () => {
  it('twenty HTTP listeners: one timer between rounds, one more while answers are missing; each asked once a round over one kept connection', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const listeners = await Promise.all(Array.from({ length: 20 }, () => http()));
    const p = new ReadinessProber({ intervalMs: () => 1_000, timeoutMs: () => 500, onVerdict: () => undefined });
    cleanups.push(() => p.close());
    p.reconcile(listeners.map((l) => target(l.port)));
    // Detection (gRPC preface, then HTTP) and the first verdict, at once, without waiting for a round.
    await settle('every first verdict', () => listeners.every((l) => p.verdict(l.port)?.state === 'ready'));
    await settle('detection timers cleared', () => vi.getTimerCount() === 1);
    expect(p.rounds).toBe(0);
    const base = listeners.map(readyz);
    const connections = listeners.map((l) => l.connections);

    for (let round = 1; round <= 5; round++) {
      // The round fires within the interval (jitter 0.9–1.0 of it), never later.
      await vi.advanceTimersByTimeAsync(1_000);
      expect(p.rounds).toBe(round);
      await settle(`round ${round}'s answers`, () => listeners.every((l, i) => readyz(l) === base[i]! + round));
      // Every answer in: the deadline was cleared, only the next round is armed (the old schedule: a timer per listener).
      await settle('the deadline cleared', () => vi.getTimerCount() === 1);
    }
    // Exactly one request per listener per round, and no listener asked over a new connection.
    listeners.forEach((l, i) => expect(readyz(l) - base[i]!).toBe(5));
    expect(listeners.map((l) => l.connections)).toEqual(connections);
  });

  it('no timer at all while nothing needs polling: listeners ready while they listen', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const server = createTcpServer((sock) => {
      sock.on('data', () => sock.end('-ERR unknown command\r\n'));
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const port = (server.address() as { port: number }).port;
    const p = new ReadinessProber({ intervalMs: () => 1_000, timeoutMs: () => 500, onVerdict: () => undefined });
    cleanups.push(() => p.close());
    p.reconcile([target(port), target(1, readyRule('tcp'))]);
    await settle('both verdicts', () => p.verdict(port)?.state === 'ready' && p.verdict(1)?.state === 'ready');
    await settle('detection timers cleared', () => vi.getTimerCount() <= 1);
    // At most the one round armed while detecting; it finds nothing to poll and arms no other.
    await vi.advanceTimersByTimeAsync(1_000);
    expect(vi.getTimerCount()).toBe(0);
    const rounds = p.rounds;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(p.rounds).toBe(rounds);
    // A new HTTP listener starts the rounds again.
    const l = await http();
    p.reconcile([target(port), target(1, readyRule('tcp')), target(l.port)]);
    await settle('its first verdict', () => p.verdict(l.port)?.state === 'ready');
    await vi.advanceTimersByTimeAsync(1_000);
    await settle('asked in a round', () => readyz(l) >= 2);
    expect(p.rounds).toBe(rounds + 1);
  });
});

describe('rounds riding the scan\'s timer (issue 24: one wake-up does both)', () => {
  it('with a ticker at the interval, no timer of its own: a round on every tick, each listener asked once a tick', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const listeners = await Promise.all(Array.from({ length: 5 }, () => http()));
    const p = new ReadinessProber({ intervalMs: () => 1_000, timeoutMs: () => 500, onVerdict: () => undefined, ticker: () => 1_000 });
    cleanups.push(() => p.close());
    p.reconcile(listeners.map((l) => target(l.port)));
    await settle('every first verdict', () => listeners.every((l) => p.verdict(l.port)?.state === 'ready'));
    // Nothing armed between rounds: the ticker's owner (the scan) holds the only timer. Without the ticker: one round timer.
    await settle('detection timers cleared', () => vi.getTimerCount() === 0);
    const base = listeners.map(readyz);
    for (let tick = 1; tick <= 4; tick++) {
      p.onTick();
      expect(p.rounds).toBe(tick);
      await settle(`tick ${tick}'s answers`, () => listeners.every((l, i) => readyz(l) === base[i]! + tick));
      await settle('the deadline cleared', () => vi.getTimerCount() === 0);
    }
    // Time alone runs no round: only ticks do.
    await vi.advanceTimersByTimeAsync(5_000);
    expect(p.rounds).toBe(4);
  });

  it('an interval of ten ticks runs a round every tenth tick; an interval shorter than the tick keeps a timer of its own', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const l = await http();
    let interval = 10_000;
    const p = new ReadinessProber({ intervalMs: () => interval, timeoutMs: () => 500, onVerdict: () => undefined, ticker: () => 1_000 });
    cleanups.push(() => p.close());
    p.reconcile([target(l.port)]);
    await settle('its first verdict', () => p.verdict(l.port)?.state === 'ready');
    await settle('detection timers cleared', () => vi.getTimerCount() === 0);
    for (let tick = 1; tick <= 25; tick++) {
      p.onTick();
      expect(p.rounds).toBe(Math.floor(tick / 10));
      await settle('answers in', () => vi.getTimerCount() === 0);
    }
    // Shorter than a tick: the ticker cannot keep it, the round's own timer does (0.9–1.0 of the interval).
    interval = 400;
    for (let tick = 26; tick <= 30; tick++) p.onTick();
    expect(p.rounds).toBe(3);
    await settle('answers in', () => vi.getTimerCount() === 1);
    const rounds = p.rounds;
    await vi.advanceTimersByTimeAsync(400);
    expect(p.rounds).toBe(rounds + 1);
  });
});

describe('the inventory: the scan\'s timer runs the readiness rounds (issue 24)', () => {
  it('started in cluster mode (scan and readiness every 1 s), one timer between ticks, and each tick asks every listener once', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    // A real HTTP service on a canonical port the registry claims, listed in a fixture /proc/net/tcp.
    let asked = 0;
    const bound = await bindCanonical(['rvx-rdy', 'rwb-rdy', 'rxc-rdy', 'ryd-rdy'], () =>
      createHttpServer((req, res) => {
        if (req.url === '/readyz') asked++;
        res.writeHead(req.url === '/readyz' ? 200 : 404).end('ok');
      }),
    );
    cleanups.push(() => Promise.all(bound.servers.map(closeServer)));
    const root = await mkdtemp(join(tmpdir(), 'canonport-rounds-'));
    cleanups.push(() => rm(root, { recursive: true, force: true }));
    await mkdir(join(root, 'net'));
    const hex = bound.port.toString(16).toUpperCase().padStart(4, '0');
    await writeFile(
      join(root, 'net', 'tcp'),
      `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:${hex} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n`,
    );
    const registry = parseRegistry(`services:\n  ${bound.name}: {}\n`, 'rounds-test.yaml');
    const inv = new HostInventory({
      state: () => ({ registry, zones: ['localhost'] }),
      metrics: new Metrics({ defaultMetrics: false }),
      probe: false,
      procRoot: root,
      intervalMs: 1_000,
      readiness: { intervalMs: () => 1_000, reachable: () => true },
    });
    cleanups.push(() => inv.stop());
    inv.start();
    const readiness = () => inv.current?.listeners.find((l) => l.port === bound.port)?.readiness?.state;
    await settle('its first verdict', () => readiness() === 'ready');
    // The scan's timer, and nothing else: the round rides it (before: a round timer of its own beside it, two wake-ups a second).
    await settle('one timer', () => vi.getTimerCount() === 1);
    const base = asked;
    for (let tick = 1; tick <= 5; tick++) {
      await vi.advanceTimersByTimeAsync(1_000);
      await settle(`tick ${tick}: asked once, the scan done, its deadline cleared`, () => asked === base + tick && vi.getTimerCount() === 1);
    }
    expect(readiness()).toBe('ready');
  });
});

describe('one deadline for a round', () => {
  it('a listener that stops answering times out at the round\'s deadline while the others are asked every round', async () => {
    let hang = false;
    const slow = await http(() => (hang ? undefined : 200));
    const others = await Promise.all([http(), http(), http()]);
    const changes: number[] = [];
    const p = new ReadinessProber({ intervalMs: () => 100, timeoutMs: () => 150, onVerdict: (key) => changes.push(Number(key)) /* a host listener's instance key is its port */ });
    cleanups.push(() => p.close());
    p.reconcile([slow, ...others].map((l) => target(l.port)));
    await until('all ready', () => ([slow, ...others].every((l) => p.verdict(l.port)?.state === 'ready') ? true : undefined));
    hang = true;
    const before = others.map(readyz);
    const v: Verdict = await until('the silent one not ready', () => (p.verdict(slow.port)?.state === 'not-ready' ? p.verdict(slow.port) : undefined), 10_000);
    expect(v.detail).toBe('/readyz: no HTTP answer within 150 ms');
    // Meanwhile (three timeouts, the first of them at least 150 ms after its round) the others were asked round after round and stayed ready.
    others.forEach((l, i) => expect(readyz(l) - before[i]!).toBeGreaterThanOrEqual(3));
    for (const l of others) expect(p.verdict(l.port)?.state).toBe('ready');
    expect(changes.filter((port) => port !== slow.port)).toHaveLength(others.length); // their first verdicts only
  });

  it('a new listener asked between rounds gets its whole timeout, not what is left of the round\'s deadline', async () => {
    let answerAfterMs = 0;
    const early = await http();
    const p = new ReadinessProber({ intervalMs: () => 300, timeoutMs: () => 1_000, onVerdict: () => undefined });
    cleanups.push(() => p.close());
    // `late` answers 600 ms after each request: inside the timeout, whenever it is asked.
    const late = await http(() => undefined);
    late.server.removeAllListeners('request');
    late.server.on('request', (req, res) => {
      late.requests.push(req);
      setTimeout(() => res.writeHead(200).end('ok'), answerAfterMs);
    });
    // `hanging` never answers, so a deadline stays armed from the first round on.
    const hanging = await http(() => undefined);
    p.reconcile([target(early.port), target(hanging.port, readyRule('http:/readyz'))]);
    await until('early ready', () => (p.verdict(early.port)?.state === 'ready' ? true : undefined));
    await until('a round in flight', () => (readyz(hanging) >= 2 ? true : undefined), 5_000, 5);
    // The hanging request's deadline is about 300 ms away: the new listener, asked at once, still gets 1,000 ms.
    await new Promise((r) => setTimeout(r, 700));
    answerAfterMs = 600;
    p.reconcile([target(early.port), target(hanging.port, readyRule('http:/readyz')), target(late.port, readyRule('http:/readyz'))]);
    expect(await until('late\'s first verdict', () => p.verdict(late.port), 5_000, 5)).toMatchObject({ state: 'ready', detail: 'HTTP 200 from /readyz' });
  });
});

describe('the probes\' shared read buffer', () => {
  it('a reply split across reads is kept whole while another connection\'s reply lands in the same buffer', async () => {
    /** A raw server that hands the test each connection once a request arrived. */
    async function raw(): Promise<{ port: number; next: () => Promise<Socket> }> {
      const waiting: ((s: Socket) => void)[] = [];
      const ready: Socket[] = [];
      const server = createTcpServer((sock) => {
        sock.on('error', () => undefined);
        sock.once('data', () => {
          const w = waiting.shift();
          if (w) w(sock);
          else ready.push(sock);
        });
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      cleanups.push(() => new Promise((r) => server.close(r)));
      return {
        port: (server.address() as { port: number }).port,
        next: () => (ready.length ? Promise.resolve(ready.shift()!) : new Promise((r) => waiting.push(r))),
      };
    }
    const a = await raw();
    const b = await raw();
    const ca = new HttpProbeConnection('127.0.0.1', a.port, 'test');
    const cb = new HttpProbeConnection('127.0.0.1', b.port, 'test');
    cleanups.push(() => ca.close(), () => cb.close());
    const ra = ca.get('/readyz', 5_000);
    const rb = cb.get('/readyz', 5_000);
    const [sa, sb] = await Promise.all([a.next(), b.next()]);
    // A's reply, first half: read into the shared buffer, incomplete.
    const replyA = 'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nwarm';
    sa.write(replyA.slice(0, 30));
    await new Promise((r) => setTimeout(r, 50));
    // B's whole reply overwrites the shared buffer; then the rest of A's.
    sb.write('HTTP/1.1 200 OK\r\nContent-Length: 33\r\nX-Pad: zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n\r\nzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz');
    expect(await rb).toEqual({ kind: 'http', status: 200 });
    sa.write(replyA.slice(30));
    expect(await ra).toEqual({ kind: 'http', status: 503 });
  });
});
