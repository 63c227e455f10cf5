import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { HealthImplementation } from 'grpc-health-check';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { chunkedEnd, HttpProbeConnection } from '../src/inventory/http-probe.js';
import { GrpcReader, healthStatus, ReadinessProber, readyRule, USER_AGENT, type ReadinessTarget, type Verdict } from '../src/inventory/readiness.js';
import { until } from './helpers/cluster.js';

/**
 * The readiness prober against real servers on loopback: node:http servers
 * that warm up, grpc-js servers with the standard health service (Watch and
 * Check, flipping), a gRPC server without it, and a TCP server that speaks
 * neither. No mocks: what a probe sends is what these servers see.
 */

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!();
});

function prober(intervalMs = 100): { p: ReadinessProber; changes: number[] } {
  const changes: number[] = [];
  const p = new ReadinessProber({ intervalMs: () => intervalMs, timeoutMs: () => 500, onVerdict: (key) => changes.push(Number(key)) });
  cleanups.push(() => p.close());
  return { p, changes };
}

const target = (port: number, rule = readyRule(undefined), life = 'inode-1'): ReadinessTarget => ({ port, address: '127.0.0.1', life, rule });
const verdict = (p: ReadinessProber, port: number, state: Verdict['state'], timeoutMs = 5_000) => until(`port ${port} ${state}`, () => (p.verdict(port)?.state === state ? p.verdict(port) : undefined), timeoutMs);

async function http(handler: (req: IncomingMessage) => number): Promise<{ port: number; requests: IncomingMessage[]; server: HttpServer }> {
  const requests: IncomingMessage[] = [];
  const server = createHttpServer((req, res) => {
    requests.push(req);
    res.writeHead(handler(req)).end('x');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(r)).then(() => server.closeAllConnections()));
  return { port: (server.address() as { port: number }).port, requests, server };
}

async function grpcServer(setup: (server: grpc.Server) => void): Promise<{ port: number; server: grpc.Server }> {
  const server = new grpc.Server();
  setup(server);
  const port = await new Promise<number>((r, j) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? j(e) : r(p))));
  cleanups.push(() => server.forceShutdown());
  return { port, server };
}

describe('HTTP: /readyz, then /healthz', () => {
  it('is not ready while /readyz answers 503, ready at 2xx, with canonport\'s User-Agent over one kept connection', async () => {
    let warm = false;
    const s = await http((req) => (req.url === '/readyz' ? (warm ? 200 : 503) : 404));
    const { p } = prober();
    p.reconcile([target(s.port)]);
    expect((await verdict(p, s.port, 'not-ready')).detail).toBe('HTTP 503 from /readyz');
    warm = true;
    expect(await verdict(p, s.port, 'ready')).toMatchObject({ by: 'http', detail: 'HTTP 200 from /readyz' });
    expect(new Set(s.requests.map((r) => r.headers['user-agent']))).toEqual(new Set([USER_AGENT]));
    // Keep-alive: the probes after the first two (the gRPC preface tried first is another connection) ride one socket.
    const sockets = new Set(s.requests.filter((r) => r.url === '/readyz').map((r) => r.socket));
    expect(sockets.size).toBe(1);
  });

  it('asks /healthz when /readyz is 404, and a server with neither is ready while it listens', async () => {
    const withHealthz = await http((req) => (req.url === '/healthz' ? 500 : 404));
    const neither = await http(() => 404);
    const { p } = prober();
    p.reconcile([target(withHealthz.port), target(neither.port)]);
    expect((await verdict(p, withHealthz.port, 'not-ready')).detail).toBe('HTTP 500 from /healthz');
    expect(await verdict(p, neither.port, 'ready')).toMatchObject({ by: 'tcp' });
  });

  it('one probe per listener per interval, however long it runs (jitter stays inside the interval)', async () => {
    const s = await http(() => 200);
    const { p } = prober(200);
    p.reconcile([target(s.port)]);
    await verdict(p, s.port, 'ready');
    const start = s.requests.length;
    await new Promise((r) => setTimeout(r, 2_000));
    const probes = s.requests.length - start;
    // 2 s at 180–200 ms per probe: 10 or 11, never a flood, never idle.
    expect(probes).toBeGreaterThanOrEqual(5); // wide: a loaded machine delays timers, it never adds probes
    expect(probes).toBeLessThanOrEqual(12);
  });

  it('a ready listener that stops answering is not ready only after three probes without an answer; a 503 counts at once', async () => {
    let hang = false;
    const s = await http(() => 200);
    s.server.removeAllListeners('request');
    s.server.on('request', (req, res) => {
      s.requests.push(req);
      if (!hang) res.writeHead(200).end('ok');
    });
    const p = new ReadinessProber({ intervalMs: () => 100, timeoutMs: () => 150, onVerdict: () => undefined });
    cleanups.push(() => p.close());
    p.reconcile([target(s.port)]);
    await verdict(p, s.port, 'ready');
    hang = true;
    const asked = s.requests.length;
    await until('three unanswered probes', () => (s.requests.length >= asked + 2 ? true : undefined), 5_000, 10);
    // Fewer than three probes unanswered: still ready (a loaded host is slow, not down).
    const state = p.verdict(s.port)?.state;
    if (s.requests.length - asked < 3) expect(state).toBe('ready');
    expect((await verdict(p, s.port, 'not-ready')).detail).toMatch(/no HTTP answer within 150 ms/);
    expect(s.requests.length - asked).toBeGreaterThanOrEqual(3);
  });

  it('follows the registry: http:/status asks that path only', async () => {
    const s = await http((req) => (req.url === '/status' ? 204 : 500));
    const { p } = prober();
    p.reconcile([target(s.port, readyRule('http:/status'))]);
    expect(await verdict(p, s.port, 'ready')).toMatchObject({ by: 'registry', detail: 'HTTP 204 from /status' });
    expect(new Set(s.requests.map((r) => r.url))).toEqual(new Set(['/status']));
  });
});

describe('gRPC: grpc.health.v1', () => {
  it('follows a server flipping its health through Watch, pushed (no polling)', async () => {
    const health = new HealthImplementation({ '': 'NOT_SERVING' });
    let calls = 0;
    const s = await grpcServer((server) => {
      health.addToServer({
        addService: (def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) =>
          server.addService(def, Object.fromEntries(Object.entries(impl).map(([k, f]) => [k, (...a: unknown[]) => (calls++, (f as (...x: unknown[]) => void)(...a))]))),
      } as unknown as grpc.Server);
    });
    const { p } = prober(100);
    p.reconcile([target(s.port)]);
    expect(await verdict(p, s.port, 'not-ready')).toMatchObject({ by: 'grpc', detail: 'NOT_SERVING' });
    health.setStatus('', 'SERVING');
    expect(await verdict(p, s.port, 'ready', 1_000)).toMatchObject({ by: 'grpc', detail: 'SERVING' });
    health.setStatus('', 'NOT_SERVING');
    await verdict(p, s.port, 'not-ready', 1_000);
    const after = calls;
    await new Promise((r) => setTimeout(r, 1_000));
    // Ten intervals passed: the open Watch stream was enough, nothing was asked again.
    expect(calls).toBe(after);
  });

  it('falls back to Check on every interval when Watch is UNIMPLEMENTED', async () => {
    let serving = false;
    let checks = 0;
    const require = createRequire(import.meta.url);
    const protoFile = join(dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1/health.proto');
    const def = protoLoader.loadSync(protoFile, { keepCase: true, enums: String, defaults: true });
    const svc = (grpc.loadPackageDefinition(def) as unknown as { grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } } }).grpc.health.v1.Health;
    const s = await grpcServer((server) =>
      server.addService(svc.service, {
        Check: (_call: unknown, cb: grpc.sendUnaryData<{ status: string }>) => {
          checks++;
          cb(null, { status: serving ? 'SERVING' : 'NOT_SERVING' });
        },
      }),
    );
    const { p } = prober(100);
    p.reconcile([target(s.port)]);
    await verdict(p, s.port, 'not-ready');
    serving = true;
    await verdict(p, s.port, 'ready', 2_000);
    const c0 = checks;
    await new Promise((r) => setTimeout(r, 1_000));
    expect(checks - c0).toBeGreaterThanOrEqual(7);
  });

  it('a gRPC server without the health service is ready while it listens', async () => {
    const s = await grpcServer(() => undefined);
    const { p } = prober();
    p.reconcile([target(s.port)]);
    expect(await verdict(p, s.port, 'ready')).toMatchObject({ by: 'tcp', detail: expect.stringMatching(/without grpc.health.v1/) });
  });
});

describe('neither gRPC nor HTTP', () => {
  it('is asked once per life of its socket, never every interval; a new socket life is asked again', async () => {
    const connections: Socket[] = [];
    const server: TcpServer = createTcpServer((sock) => {
      connections.push(sock);
      sock.on('data', () => sock.end('-ERR unknown command\r\n'));
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    const port = (server.address() as { port: number }).port;
    const { p } = prober(50);
    p.reconcile([target(port)]);
    expect(await verdict(p, port, 'ready')).toMatchObject({ by: 'tcp' });
    const asked = connections.length;
    expect(asked).toBeGreaterThanOrEqual(1);
    expect(asked).toBeLessThanOrEqual(2); // the gRPC preface, then an HTTP request
    await new Promise((r) => setTimeout(r, 1_000));
    p.reconcile([target(port)]);
    expect(connections.length).toBe(asked);
    // A restart binds a new socket (new inode): asked once more.
    p.reconcile([target(port, readyRule(undefined), 'inode-2')]);
    await until('asked again', () => (connections.length > asked ? true : undefined));
  });

  it('the registry\'s tcp rule probes nothing', async () => {
    const { p } = prober();
    p.reconcile([target(1, readyRule('tcp'))]);
    expect(await verdict(p, 1, 'ready')).toMatchObject({ by: 'registry' });
  });
});

describe('the health message, by hand', () => {
  it('reads the status field and frames split across chunks', () => {
    expect(healthStatus(Buffer.from([0x08, 0x01]))).toBe(1);
    expect(healthStatus(Buffer.from([]))).toBe(0);
    expect(healthStatus(Buffer.from([0x12, 0x01, 0x41, 0x08, 0x02]))).toBe(2); // an unknown length-delimited field first
    const r = new GrpcReader();
    expect(r.push(Buffer.from([0, 0, 0]))).toBeUndefined();
    expect(r.push(Buffer.from([0, 2, 0x08]))).toBeUndefined();
    expect(r.push(Buffer.from([0x01, 0, 0, 0, 0, 2, 0x08, 0x02]))).toBe(1);
    expect(r.push(Buffer.alloc(0))).toBe(2);
  });
});

describe('the HTTP probe\'s own client (http-probe.ts)', () => {
  /** A raw TCP server answering each request with `reply(n)` (n counts requests on that connection); counts connections. */
  async function raw(reply: (n: number) => string, closeAfter = Infinity): Promise<{ port: number; connections: () => number }> {
    let connections = 0;
    const server = createTcpServer((sock) => {
      connections++;
      let n = 0;
      let buf = '';
      sock.on('error', () => undefined);
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        while (buf.includes('\r\n\r\n')) {
          buf = buf.slice(buf.indexOf('\r\n\r\n') + 4);
          sock.write(reply(n++));
          if (n >= closeAfter) sock.end();
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => server.close(r)));
    return { port: (server.address() as { port: number }).port, connections: () => connections };
  }

  it('reads Content-Length, chunked (split anywhere) and close-delimited replies, keeping the connection when it can', async () => {
    const chunked = await raw(() => 'HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwarm\r\n3;x=1\r\ning\r\n0\r\nX-Trailer: 1\r\n\r\n');
    const c = new HttpProbeConnection('127.0.0.1', chunked.port, 'test');
    cleanups.push(() => c.close());
    for (let i = 0; i < 3; i++) expect(await c.get('/readyz', 1000)).toEqual({ kind: 'http', status: 503 });
    expect(chunked.connections()).toBe(1);
    const lengthed = await raw(() => 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
    const l = new HttpProbeConnection('127.0.0.1', lengthed.port, 'test');
    cleanups.push(() => l.close());
    for (let i = 0; i < 3; i++) expect(await l.get('/readyz', 1000)).toEqual({ kind: 'http', status: 200 });
    expect(lengthed.connections()).toBe(1);
    // No framing: the body runs until close; the status is enough, and the next probe opens a new connection.
    const plain = await raw(() => 'HTTP/1.0 204 No Content\r\n\r\n', 1);
    const p = new HttpProbeConnection('127.0.0.1', plain.port, 'test');
    cleanups.push(() => p.close());
    expect(await p.get('/readyz', 1000)).toEqual({ kind: 'http', status: 204 });
    expect(await p.get('/readyz', 1000)).toEqual({ kind: 'http', status: 204 });
    expect(plain.connections()).toBe(2);
  });

  it('asks again on a fresh connection when the server closed the kept one, and calls anything else not HTTP', async () => {
    const closing = await raw(() => 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n', 1);
    const c = new HttpProbeConnection('127.0.0.1', closing.port, 'test');
    cleanups.push(() => c.close());
    expect(await c.get('/healthz', 1000)).toEqual({ kind: 'http', status: 200 });
    await new Promise((r) => setTimeout(r, 50));
    expect(await c.get('/healthz', 1000)).toEqual({ kind: 'http', status: 200 });
    const redis = await raw(() => '-ERR unknown command\r\n\r\n');
    const r = new HttpProbeConnection('127.0.0.1', redis.port, 'test');
    cleanups.push(() => r.close());
    expect(await r.get('/readyz', 1000)).toMatchObject({ kind: 'not-http' });
    expect(chunkedEnd(Buffer.from('5\r\nhel'))).toBeNull();
    expect(chunkedEnd(Buffer.from('0\r\n\r\n'))).toBe(5);
  });
});
