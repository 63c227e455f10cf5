import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { registerCanonResolver, resolveWithoutDaemon } from '../src/grpc/canon-resolver.js';
import { startGrpcServer, type GrpcHandle } from '../src/grpc/server.js';
import { base32Port } from '../src/scheme/index.js';
import { closedPort } from './helpers/ports.js';
import { REPO } from './helpers/serve-process.js';
import { call, eventually, Health, healthServer as sharedHealthServer, healthServerOnCanonicalPort, testDaemon, type TestDaemon } from './grpc-fixtures.js';

/**
 * The `canon:` resolver end to end: a real grpc-js client dials
 * `canon:///name` and reaches a real gRPC server (the stock health service)
 * listening on the name's port, through the daemon and without it.
 */

const ZONE = 'cluster-1.example.com';

let servers: grpc.Server[] = [];
let daemons: GrpcHandle[] = [];
let clients: grpc.Client[] = [];
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'canonport-grpc-client-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of clients) c.close();
  await Promise.all(daemons.map((d) => d.close(0)));
  for (const s of servers) s.forceShutdown();
  servers = [];
  daemons = [];
  clients = [];
});

/** A health server answering SERVING for `tag`, stopped after the test. */
async function healthServer(tag: string, port = 0): Promise<number> {
  const h = await sharedHealthServer(tag, port);
  servers.push(h.server);
  return h.port;
}

/** A health server on the canonical port of a fresh name, stopped after the test. */
async function serverOnCanonicalPort(tag: string): Promise<{ label: string; port: number }> {
  const h = await healthServerOnCanonicalPort(tag);
  servers.push(h.server);
  return { label: h.label, port: h.port };
}

async function daemon(d: TestDaemon, port = 0): Promise<GrpcHandle> {
  const h = await startGrpcServer(d.ctx, { host: '127.0.0.1', port });
  daemons.push(h);
  return h;
}


function dial(target: string): grpc.Client {
  const c = new Health(target, grpc.credentials.createInsecure());
  clients.push(c);
  return c;
}

const check = (c: grpc.Client, service: string) => call<{ status: string }>(c, 'Check', { service }, 5000);

describe('canon: resolver through the daemon', () => {
  it('connects a real client to the port and address the daemon answers', async () => {
    const port = await healthServer('server-a');
    const d = testDaemon(`zones: [${ZONE}]\nhosts: {kab.${ZONE}: [127.0.0.1]}\nservices: {kab: {port: ${port}}}\n`);
    const h = await daemon(d);
    registerCanonResolver({ daemon: `127.0.0.1:${h.address.port}` });
    const c = dial(`canon:///kab.${ZONE}`);
    expect((await check(c, 'server-a')).status).toBe('SERVING');
    // The channel holds a Watch on the daemon; closing the channel ends it.
    expect(d.ctx.discovery.listenerCount).toBe(1);
    c.close();
    await eventually(async () => expect(d.ctx.discovery.listenerCount).toBe(0));
  });

  it('follows a Watch update: a registry reload moves the service and the client reconnects there', async () => {
    const portA = await healthServer('server-a');
    const portB = await healthServer('server-b');
    const registry = (p: number) => `zones: [${ZONE}]\nhosts: {kab.${ZONE}: [127.0.0.1]}\nservices: {kab: {port: ${p}}}\n`;
    const d = testDaemon(registry(portA));
    const h = await daemon(d);
    registerCanonResolver({ daemon: `127.0.0.1:${h.address.port}` });
    const c = dial(`canon:///kab.${ZONE}`);
    expect((await check(c, 'server-a')).status).toBe('SERVING');

    d.reload(registry(portB));
    const answer = await eventually(() => check(c, 'server-b'), 100, 50);
    expect(answer.status).toBe('SERVING');
  });

  it('takes the daemon address from the target authority', async () => {
    const port = await healthServer('server-a');
    const d = testDaemon(`zones: [${ZONE}]\nhosts: {kab.${ZONE}: [127.0.0.1]}\nservices: {kab: {port: ${port}}}\n`);
    const h = await daemon(d);
    registerCanonResolver({ daemon: `127.0.0.1:${await closedPort()}` });
    const c = dial(`canon://127.0.0.1:${h.address.port}/kab.${ZONE}`);
    expect((await check(c, 'server-a')).status).toBe('SERVING');
  });

  it('fails calls with UNAVAILABLE naming the reason when the daemon says NOT_FOUND', async () => {
    const d = testDaemon(`zones: [${ZONE}]\n`);
    const h = await daemon(d);
    registerCanonResolver({ daemon: `127.0.0.1:${h.address.port}` });
    const c = dial(`canon:///db.${ZONE}`);
    const err = (await check(c, '').catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.details).toMatch(/canon:\/\/\/db\.cluster-1\.example\.com: .*has no address/);
  });

  it('rejects a malformed name when the channel is created', () => {
    registerCanonResolver({});
    expect(() => new Health('canon:///bad!name', grpc.credentials.createInsecure())).toThrow(/characters outside/);
  });
});

describe('canon: resolver without a daemon', () => {
  it('computes the base32 port itself and resolves the host through the system resolver', async () => {
    const { label, port } = await serverOnCanonicalPort('server-a');
    expect(port).toBe(base32Port(label));
    registerCanonResolver({ daemon: `127.0.0.1:${await closedPort()}`, registryFile: undefined });
    const c = dial(`canon:///${label}.localhost`);
    expect((await check(c, 'server-a')).status).toBe('SERVING');
  });

  it('does not wait for a daemon that accepts connections but never answers', async () => {
    const { label } = await serverOnCanonicalPort('server-a');
    const sockets: Socket[] = [];
    const mute = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
    try {
      registerCanonResolver({ daemon: `127.0.0.1:${(mute.address() as AddressInfo).port}`, registryFile: undefined, daemonTimeoutMs: 200 });
      const c = dial(`canon:///${label}.localhost`);
      expect((await check(c, 'server-a')).status).toBe('SERVING');
      expect(sockets.length).toBeGreaterThan(0);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise((r) => mute.close(r));
    }
  });

  it('uses the registry file for pins and hosts', async () => {
    const port = await healthServer('server-a');
    const file = join(dir, 'registry.yaml');
    writeFileSync(file, `zones: [${ZONE}]\nhosts: {kab.${ZONE}: [127.0.0.1]}\nservices: {kab: {port: ${port}}}\n`);
    registerCanonResolver({ daemon: `127.0.0.1:${await closedPort()}`, registryFile: file });
    const c = dial(`canon:///_kab._tcp.${ZONE}`);
    expect((await check(c, 'server-a')).status).toBe('SERVING');
  });

  it('fails calls with UNAVAILABLE when the system resolver does not know the host either', async () => {
    registerCanonResolver({ daemon: `127.0.0.1:${await closedPort()}`, registryFile: undefined });
    const c = dial('canon:///kab.invalid');
    const err = (await check(c, '').catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.details).toMatch(/canon:\/\/\/kab\.invalid: kab\.invalid has no address/);
  });

  it('ends a call at its deadline, without spinning, when nothing listens where the fallback points', async () => {
    // A fresh label whose canonical port was free a moment ago, closed again: nothing listens there.
    const h = await healthServerOnCanonicalPort('nobody');
    h.server.forceShutdown();
    // In a process of its own (the built package, as an application loads it): a resolver that answers every
    // request to resolve again within the same tick spins that process's event loop, and no timer fires in it,
    // the call's deadline included. Here the process is killed after a wide bound and the test says why.
    const script = `
      import * as grpc from '@grpc/grpc-js';
      import { registerCanonResolver } from './dist/index.js';
      registerCanonResolver({ grpc, daemon: '127.0.0.1:${await closedPort()}', registryFile: undefined, daemonTimeoutMs: 200 });
      const c = new grpc.Client('canon:///${h.label}.localhost', grpc.credentials.createInsecure());
      c.makeUnaryRequest('/grpc.health.v1.Health/Check', () => Buffer.alloc(0), (b) => b, {}, { deadline: Date.now() + 1000 }, (err) => {
        // The channel keeps asking to resolve again: count a 20 ms ticker over the next 500 ms, then report.
        let ticks = 0;
        const ticker = setInterval(() => ticks++, 20);
        setTimeout(() => {
          clearInterval(ticker);
          console.log(JSON.stringify({ code: err ? err.code : 0, ticks }));
          c.close();
        }, 500);
      });
    `;
    const out = await new Promise<string>((resolve, reject) => {
      const p = execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, timeout: 15_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) =>
        err ? reject(new Error(err.killed ? `the client process never ended its call (killed after 15 s): its event loop was starved` : `${err.message}\n${stderr}`)) : resolve(stdout),
      );
      p.stdin?.end();
    });
    const r = JSON.parse(out) as { code: number; ticks: number };
    // Connection refused: the call fails (fast, or at its deadline), it does not hang.
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(r.code);
    // 500 ms of a 20 ms ticker: a starved loop ticks rarely or never; a free one about 25 times.
    expect(r.ticks).toBeGreaterThanOrEqual(10);
  });

  it('reports an unreadable registry file instead of guessing a port', async () => {
    registerCanonResolver({ daemon: `127.0.0.1:${await closedPort()}`, registryFile: join(dir, 'missing.yaml') });
    const c = dial('canon:///kab.localhost');
    const err = (await check(c, '').catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.details).toMatch(/cannot read registry file .*missing\.yaml/);
  });

  it('keeps serving from the fallback when the daemon goes away, and follows the daemon again when it returns', async () => {
    const { label, port: portA } = await serverOnCanonicalPort('server-a');
    const portB = await healthServer('server-b');
    const registry = (pin: string) => `hosts: {${label}.localhost: [127.0.0.1]}\nservices: {${label}: {${pin}}}\n`;
    const d1 = testDaemon(registry(''));
    const h1 = await daemon(d1);
    const daemonPort = h1.address.port;
    registerCanonResolver({ daemon: `127.0.0.1:${daemonPort}`, registryFile: undefined, retryMs: 100 });
    const c = dial(`canon:///${label}.localhost`);
    expect((await check(c, 'server-a')).status).toBe('SERVING');
    expect(portA).toBe(base32Port(label));

    await h1.close(0);
    // Daemon gone: same base32 port from the fallback, calls still work.
    expect((await check(c, 'server-a')).status).toBe('SERVING');

    // A daemon comes back on the same address with the service pinned elsewhere.
    const d2 = testDaemon(registry(`port: ${portB}`));
    await daemon(d2, daemonPort);
    const answer = await eventually(() => check(c, 'server-b'), 100, 50);
    expect(answer.status).toBe('SERVING');
  });
});

describe('resolveWithoutDaemon', () => {
  it('answers like the daemon for localhost names', async () => {
    const r = await resolveWithoutDaemon('api.localhost');
    expect(r).toMatchObject({ service: 'api', port: 12082, scheme: 'base32', host: 'api.localhost', zone: 'localhost' });
    expect(r.addresses.length).toBeGreaterThan(0);
    expect(r.addresses.every((a) => a === '127.0.0.1' || a === '::1')).toBe(true);
  });
});

describe('canon: resolver on either listener grpc-js hands it', () => {
  /** The resolver class registerCanonResolver gives grpc-js, captured from a stand-in for the real module (its version unknown: judged by its features). */
  function resolverClass(daemon: string): new (target: unknown, listener: unknown, options: object) => { updateResolution(): void; destroy(): void } {
    let captured: unknown;
    const experimental = { ...grpc.experimental, registerResolver: (_scheme: string, cls: unknown) => void (captured = cls) };
    registerCanonResolver({ grpc: { ...grpc, experimental }, daemon, daemonTimeoutMs: 200 });
    return captured as never;
  }
  const target = (path: string) => ({ scheme: 'canon', authority: '', path });

  it('1.10–1.13: an object listener gets the endpoints through onSuccessfulResolution and a failure through onError, never synchronously', async () => {
    const Resolver = resolverClass(`127.0.0.1:${await closedPort()}`);
    const calls: { method: string; args: unknown[] }[] = [];
    const listener = {
      onSuccessfulResolution: (...args: unknown[]) => void calls.push({ method: 'ok', args }),
      onError: (...args: unknown[]) => void calls.push({ method: 'error', args }),
    };
    const ok = new Resolver(target('old-listener.localhost'), listener, {});
    ok.updateResolution();
    expect(calls).toEqual([]);
    await eventually(async () => expect(calls).toHaveLength(1));
    expect(calls[0]).toEqual({ method: 'ok', args: [[{ addresses: [{ host: '127.0.0.1', port: base32Port('old-listener') }] }, { addresses: [{ host: '::1', port: base32Port('old-listener') }] }], null, null, null, {}] });
    ok.destroy();
    const bad = new Resolver(target('_nosuch.localhost'), listener, {});
    bad.updateResolution();
    await eventually(async () => expect(calls).toHaveLength(2));
    expect(calls[1]).toMatchObject({ method: 'error', args: [{ code: grpc.status.UNAVAILABLE, details: expect.stringContaining('canon:///_nosuch.localhost') }] });
    bad.destroy();
  });

  it('1.14: a function listener gets a StatusOr, no service config and no resolution note', async () => {
    const Resolver = resolverClass(`127.0.0.1:${await closedPort()}`);
    const calls: unknown[][] = [];
    const r = new Resolver(target('new-listener.localhost'), (...args: unknown[]) => calls.push(args), {});
    r.updateResolution();
    await eventually(async () => expect(calls).toHaveLength(1));
    expect(calls[0]).toEqual([{ ok: true, value: [{ addresses: [{ host: '127.0.0.1', port: base32Port('new-listener') }] }, { addresses: [{ host: '::1', port: base32Port('new-listener') }] }] }, {}, null, '']);
    r.destroy();
  });
});
