import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { formatHostPort } from '../src/config/address.js';
import type { Daemon } from '../src/daemon/daemon.js';
import { ErrorCodes } from '../src/errors.js';
import { createCanonportClient, DaemonError, type CanonportClient } from '../src/grpc/canonport-client.js';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import type { Resolution } from '../src/grpc/resolution.js';
import { base32Port } from '../src/scheme/index.js';
import { stopChild } from './helpers/child.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { startUnbound, waitForDns } from './helpers/unbound.js';
import { startBackend, whoAmI, type Backend } from './helpers/xds-backend.js';
import { loopbackHost } from './helpers/xds-daemon.js';

/**
 * Issue 11, bug 2, end to end: an in-zone name whose address comes from the
 * upstream, and the upstream dies. Resolve says UNAVAILABLE
 * (CP_UPSTREAM_FAILED), never NOT_FOUND "has no address", and the clients
 * built on it take the outage as transient:
 *
 *   - a Watch on the name keeps its stream and its last answer, sends
 *     nothing that says the name is gone, and sends the new address once the
 *     upstream is back;
 *   - a grpc-js channel dialing `canon:///web.<zone>` keeps the last
 *     addresses (it reconnects to them when its backend restarts during the
 *     outage) and follows the daemon again afterwards; one dialed during the
 *     outage fails UNAVAILABLE and then works, on its own, once the upstream
 *     is back.
 *
 * Real parts: a real unbound as the upstream (killed and started again on
 * the same port), a real daemon, real grpc-js clients and backends on
 * loopback addresses of this worker. The re-lookups are triggered by
 * registry reloads (what SIGHUP does), and the daemon's own log line
 * "keeping the last answer" is the barrier that the failed re-lookup has
 * been handled.
 *
 * unbound answers AAAA for the name with NODATA and no SOA, which is not
 * cacheable (RFC 2308), so the daemon keeps no copy of the answer (and has
 * nothing stale to serve): each re-lookup asks the upstream. The registry's
 * TTL is long, so Watch's own TTL timer never re-resolves during a test:
 * the reloads are the only triggers.
 */

const ZONE = 'cluster-1.example.com';
const WEB = `web.${ZONE}`;
const WEB_PORT = base32Port('web');
const REGISTRY = `zones: [${ZONE}]\nttl: 3600\n`;
/** Wide correctness bound on anything awaited. */
const WITHIN_MS = 20_000;

const KEEPING = /keeping the last answer/;

// ---------------------------------------------------------------- helpers

/** Wakes every `until` whenever something it may be waiting for happened. */
class Wake {
  private readonly waiters = new Set<() => void>();
  poke(): void {
    for (const w of [...this.waiters]) w();
  }
  /** Resolves with check()'s first defined value, re-checked on every poke; fails after `ms`. */
  until<T>(what: string, check: () => T | undefined, ms = WITHIN_MS): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const test = () => {
        const v = check();
        if (v === undefined) return false;
        this.waiters.delete(test);
        clearTimeout(timer);
        resolve(v);
        return true;
      };
      const timer = setTimeout(() => {
        this.waiters.delete(test);
        reject(new Error(`not within ${ms} ms: ${what}`));
      }, ms);
      this.waiters.add(test);
      test();
    });
  }
}

interface LogLine {
  level: number;
  msg: string;
  name?: unknown;
  err?: { code?: string; message?: string };
}

/** The daemon's JSON log lines, kept. */
function captureLogger(lines: LogLine[], wake: Wake): pino.Logger {
  return pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line) as LogLine);
        wake.poke();
        cb();
      },
    }),
  );
}

/** A real unbound answering A for web.<zone>, which the test kills and starts again on the same port. */
interface Upstream {
  port: number;
  /** SIGTERM, waits for the exit: the port is closed, queries go unanswered. */
  kill(): Promise<void>;
  /** Starts unbound again on the same port (same config), now answering `address`; resolves once it answers. */
  restart(address: string): Promise<void>;
}

const record = (address: string) => `${WEB}. 3600 IN A ${address}`;

async function startUpstream(address: string, procs: ChildProcess[]): Promise<Upstream> {
  const first = await startUnbound({ zones: [ZONE], localData: [record(address)] });
  procs.push(first.proc);
  let proc: ChildProcess = first.proc;
  // The helper's unbound runs `unbound -d -c FILE`: the same file, edited, starts it again on the same port.
  const [, ...args] = first.proc.spawnargs;
  const conf = args[args.indexOf('-c') + 1];
  if (args.indexOf('-c') < 0 || conf === undefined) throw new Error(`unbound started without -c: ${first.proc.spawnargs.join(' ')}`);
  return {
    port: first.port,
    kill: () => stopChild(proc),
    async restart(next) {
      const text = readFileSync(conf, 'utf8');
      const edited = text.replace(/local-data: "[^"]*"/, `local-data: "${record(next)}"`);
      if (!edited.includes(record(next))) throw new Error(`cannot point unbound's ${conf} at ${next}`);
      writeFileSync(conf, edited);
      proc = spawn(first.proc.spawnfile, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      procs.push(proc);
      let stderr = '';
      proc.stderr!.on('data', (d) => (stderr += d));
      const p = proc;
      await waitForDns(first.port, () => (p.exitCode !== null ? `unbound exited: ${stderr}` : null));
    },
  };
}

/** What a Watch stream delivered: every message, and how it ended (if it did). */
interface Watched {
  messages: Resolution[];
  ended: boolean;
  error: DaemonError | Error | undefined;
}

function follow(client: CanonportClient, name: string, wake: Wake, cancels: Array<() => void>): Watched {
  const seen: Watched = { messages: [], ended: false, error: undefined };
  const stream = client.watch(name);
  cancels.push(() => stream.cancel());
  void (async () => {
    try {
      for await (const r of stream) {
        seen.messages.push(r);
        wake.poke();
      }
    } catch (err) {
      seen.error = err as Error;
    }
    seen.ended = true;
    wake.poke();
  })();
  return seen;
}

/** Resolve's failure (a DaemonError), or its answer. */
async function resolveOutcome(client: CanonportClient, name: string): Promise<{ status: number; code: string; message: string } | { addresses: string[] }> {
  try {
    return { addresses: [...(await client.resolve(name)).addresses].sort() };
  } catch (err) {
    if (!(err instanceof DaemonError)) throw err;
    return { status: err.status, code: err.code, message: err.message };
  }
}

/** The daemon's answer while the upstream is dead: UNAVAILABLE for a failing upstream, never "no such host". */
async function expectUpstreamFailed(client: CanonportClient): Promise<void> {
  const r = await resolveOutcome(client, WEB);
  expect(r).toMatchObject({ status: grpc.status.UNAVAILABLE, code: ErrorCodes.UPSTREAM_FAILED });
  expect((r as { message: string }).message).not.toMatch(/has no address/);
}

/** Resolves once the channel leaves `from` (a barrier on grpc-js's own state machine). */
function leaves(client: grpc.Client, from: grpc.connectivityState, ms = WITHIN_MS): Promise<void> {
  const channel = client.getChannel();
  return new Promise((resolve, reject) => {
    if (channel.getConnectivityState(false) !== from) return resolve();
    channel.watchConnectivityState(from, Date.now() + ms, (err) => (err ? reject(new Error(`the channel stayed ${grpc.connectivityState[from]}: ${err.message}`)) : resolve()));
  });
}

/** Resolves once the channel is READY (connecting it if idle). */
function ready(client: grpc.Client, ms = WITHIN_MS): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + ms, (err) => (err ? reject(err) : resolve())));
}

// ---------------------------------------------------------------- per-test parts

let procs: ChildProcess[] = [];
let daemons: Daemon[] = [];
let backends: Backend[] = [];
let closers: Array<() => void> = [];

afterEach(async () => {
  for (const c of closers.splice(0)) c();
  for (const b of backends.splice(0)) b.stop();
  await Promise.all(daemons.splice(0).map((d) => d.close(0)));
  await Promise.all(procs.splice(0).map((p) => stopChild(p)));
});

interface Setup {
  daemon: Daemon;
  upstream: Upstream;
  client: CanonportClient;
  wake: Wake;
  log: LogLine[];
  /** "keeping the last answer" lines for web so far. */
  kept(): LogLine[];
  /** Reloads the registry (SIGHUP's path) and checks it went through. */
  reload(): Promise<void>;
  backend(address: string): Promise<Backend>;
}

async function setup(address: string): Promise<Setup> {
  const wake = new Wake();
  const log: LogLine[] = [];
  const upstream = await startUpstream(address, procs);
  const daemon = await startDaemon(
    { registry: writeRegistry(REGISTRY), upstreams: [`127.0.0.1:${upstream.port}`], upstreamTimeoutMs: 300 },
    { logger: captureLogger(log, wake) },
  );
  daemons.push(daemon);
  const client = createCanonportClient(daemon.addresses.grpc);
  closers.push(() => client.close());
  return {
    daemon,
    upstream,
    client,
    wake,
    log,
    kept: () => log.filter((l) => l.level === 40 && KEEPING.test(l.msg) && l.name === WEB),
    async reload() {
      const r = await daemon.reload();
      expect(r.ok).toBe(true);
    },
    async backend(at) {
      const b = await startBackend(at, WEB_PORT);
      backends.push(b);
      return b;
    },
  };
}

// ---------------------------------------------------------------- tests

describe('the upstream holding an in-zone address dies: an outage, not an answer', () => {
  it('Watch keeps its stream and last answer through the outage, sends no "gone", then sends the address the returned upstream gives', async () => {
    const [a1, a2] = [loopbackHost(41), loopbackHost(42)];
    const s = await setup(a1);
    const cancels: Array<() => void> = [];
    closers.push(() => cancels.forEach((c) => c()));

    const listeners = s.daemon.discovery.listenerCount;
    const seen = follow(s.client, WEB, s.wake, cancels);
    await s.wake.until('the first Watch message', () => (seen.messages.length > 0 || seen.ended ? true : undefined));
    expect(seen.error).toBeUndefined();
    // The open Watch subscribes the daemon's discovery listener for Watch streams.
    expect(s.daemon.discovery.listenerCount).toBe(listeners + 1);
    expect(seen.messages).toHaveLength(1);
    expect(seen.messages[0]).toMatchObject({ name: WEB, port: WEB_PORT, addresses: [a1] });
    expect(seen.messages[0]!.endpoints.map((e) => e.source)).toEqual(['upstream']);

    await s.upstream.kill();
    // Resolve: the upstream failed, which is UNAVAILABLE; not NOT_FOUND "has no address".
    await expectUpstreamFailed(s.client);

    // A reload makes the Watch look the name up again; the daemon logs that it keeps the last answer.
    const before = s.kept().length;
    await s.reload();
    const first = await s.wake.until('the Watch to handle the failed re-lookup', () => {
      if (seen.messages.length > 1) return 'a message';
      if (seen.ended) return `the stream ended (${seen.error?.message ?? 'OK'})`;
      if (s.kept().length > before) return 'kept';
      return undefined;
    });
    expect(first).toBe('kept');
    expect(s.kept().at(-1)?.err?.code).toBe(ErrorCodes.UPSTREAM_FAILED);
    expect(seen.ended).toBe(false);
    expect(seen.messages).toHaveLength(1);
    // The daemon still holds the stream: the Watch listener is still subscribed.
    expect(s.daemon.discovery.listenerCount).toBe(listeners + 1);

    // A second failed re-lookup is just as transient.
    await s.reload();
    await s.wake.until('the second failed re-lookup', () => (s.kept().length > before + 1 || seen.ended || seen.messages.length > 1 ? true : undefined));
    expect(seen.ended).toBe(false);
    expect(seen.messages).toHaveLength(1);
    await expectUpstreamFailed(s.client);

    // The upstream comes back with another address: the next message is it. The stream is
    // ordered, so nothing (no empty answer) was sent in between.
    await s.upstream.restart(a2);
    await s.reload();
    await s.wake.until('a Watch message after the upstream returned', () => (seen.messages.length > 1 || seen.ended ? true : undefined));
    expect(seen.error).toBeUndefined();
    expect(seen.ended).toBe(false);
    expect(seen.messages.map((m) => m.addresses)).toEqual([[a1], [a2]]);
    expect(seen.messages[1]).toMatchObject({ name: WEB, port: WEB_PORT });
    expect(await resolveOutcome(s.client, WEB)).toEqual({ addresses: [a2] });
  }, 60_000);

  it('canon:/// keeps the last addresses through the outage (its backend restarts and is reached again), then follows the daemon to the new address', async () => {
    const [a1, a2] = [loopbackHost(43), loopbackHost(44)];
    const s = await setup(a1);
    const b1 = await s.backend(a1);
    registerCanonResolver({ daemon: formatHostPort(s.daemon.addresses.grpc), registryFile: undefined, daemonTimeoutMs: 10_000, retryMs: 200 });
    const channel = new grpc.Client(`canon:///${WEB}`, grpc.credentials.createInsecure());
    closers.push(() => channel.close());
    expect(await whoAmI(channel, 10_000)).toEqual({ id: b1.id });
    expect(b1.id).toBe(`${a1}:${WEB_PORT}`);

    await s.upstream.kill();
    await expectUpstreamFailed(s.client);
    const before = s.kept().length;
    await s.reload();
    // The resolver's Watch is the daemon's only one: the daemon keeps its last answer (and the stream).
    await s.wake.until('the daemon to log that the resolver\'s Watch keeps its last answer (did it end the stream?)', () => (s.kept().length > before ? true : undefined));
    expect(s.kept().at(-1)?.err?.code).toBe(ErrorCodes.UPSTREAM_FAILED);
    expect(await whoAmI(channel)).toEqual({ id: b1.id });

    // The backend restarts during the outage: the channel loses its connection, re-resolves
    // and must reconnect to the addresses the resolver still has.
    b1.stop();
    await leaves(channel, grpc.connectivityState.READY);
    const down = await whoAmI(channel, 5000);
    expect(down.id).toBeUndefined();
    // A connection failure to the backend; not the resolver saying the name has no address.
    expect(down.error).toMatch(/^UNAVAILABLE: /);
    expect(down.error).not.toContain('canon:///');
    const b1again = await s.backend(a1);
    await ready(channel);
    expect(await whoAmI(channel)).toEqual({ id: b1again.id });
    // Reached through the kept addresses: the upstream is still dead.
    await expectUpstreamFailed(s.client);

    // The upstream returns with another address; the old backend goes away, so READY can
    // only mean the channel was re-pointed at the new address.
    const b2 = await s.backend(a2);
    b1again.stop();
    await leaves(channel, grpc.connectivityState.READY);
    await s.upstream.restart(a2);
    await s.reload();
    await ready(channel);
    expect(await whoAmI(channel)).toEqual({ id: b2.id });
    expect(b2.id).toBe(`${a2}:${WEB_PORT}`);
  }, 60_000);

  it('canon:/// dialed during the outage fails UNAVAILABLE with the upstream failure, then connects once the upstream is back, on the same channel', async () => {
    const a1 = loopbackHost(45);
    const s = await setup(a1);
    const b1 = await s.backend(a1);
    await s.upstream.kill();
    await expectUpstreamFailed(s.client);

    registerCanonResolver({ daemon: formatHostPort(s.daemon.addresses.grpc), registryFile: undefined, daemonTimeoutMs: 10_000, retryMs: 200 });
    const channel = new grpc.Client(`canon:///${WEB}`, grpc.credentials.createInsecure());
    closers.push(() => channel.close());
    // The daemon could not say where web runs: the resolver's UNAVAILABLE carries the daemon's reason.
    const during = await whoAmI(channel, 15_000);
    expect(during.id).toBeUndefined();
    expect(during.error).toMatch(/^UNAVAILABLE: canon:\/\/\/web\./);
    expect(during.error).toContain(ErrorCodes.UPSTREAM_FAILED);

    // No reload, no new channel: the resolver asks the daemon again and the channel connects.
    await s.upstream.restart(a1);
    await ready(channel);
    expect(await whoAmI(channel)).toEqual({ id: b1.id });
  }, 60_000);
});
