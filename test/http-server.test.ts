import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { buildConfig } from '../src/config/config.js';
import type { ServingState } from '../src/core/state.js';
import { Discovery } from '../src/discovery/discovery.js';
import type { DaemonContext } from '../src/context.js';
import { ErrorCodes } from '../src/errors.js';
import { Metrics } from '../src/metrics/metrics.js';
import { startHttpServer, type HttpServer } from '../src/http/server.js';
import { Registry } from '../src/registry/registry.js';
import { testDaemon, type TestDaemon } from './grpc-fixtures.js';
import { countLoopTurns } from './helpers/loop-turns.js';

/** A real context (test/grpc-fixtures.ts): real Metrics with the process series, readiness switchable, no listeners. */
function testContext(): TestDaemon {
  return testDaemon('', { ready: false, metrics: new Metrics(), inventory: { snapshot: async () => ({ host: 'test', collectedAtMs: 0, listeners: [] }) } });
}

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request on a fresh connection (no agent: nothing lingers after the test). */
function http(server: HttpServer, method: string, path: string, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: server.address.host, port: server.address.port, method, path, headers, agent: false, timeout: 5000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Sends raw bytes and returns whatever comes back before the server closes (or 5 s pass). */
function raw(server: HttpServer, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server.address.host, port: server.address.port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => sock.destroy(), 5000);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
  });
}

const servers: HttpServer[] = [];
async function start(ctx: DaemonContext, host = '127.0.0.1', port = 0): Promise<HttpServer> {
  const s = await startHttpServer(ctx, { host, port });
  servers.push(s);
  return s;
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('startHttpServer', () => {
  it('binds exactly the address asked for and reports the real port', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    expect(s.address.host).toBe('127.0.0.1');
    expect(s.address.port).toBeGreaterThan(0);
  });

  it('serves /healthz with 200 "ok" whatever the readiness', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    const r = await http(s, 'GET', '/healthz');
    expect(r.status).toBe(200);
    expect(r.body).toBe('ok\n');
    expect(r.headers['content-type']).toMatch(/^text\/plain/);
  });

  it('answers /readyz 503 with a JSON reason until ready, then 200, and back', async () => {
    const t = testContext();
    const s = await start(t.ctx);
    const before = await http(s, 'GET', '/readyz');
    expect(before.status).toBe(503);
    expect(before.headers['content-type']).toMatch(/^application\/json/);
    const reason = JSON.parse(before.body) as { ready: boolean; reason: string };
    expect(reason.ready).toBe(false);
    expect(reason.reason).toMatch(/not ready/);
    t.setReady(true);
    const after = await http(s, 'GET', '/readyz');
    expect(after.status).toBe(200);
    expect(JSON.parse(after.body)).toEqual({ ready: true });
    t.setReady(false);
    expect((await http(s, 'GET', '/readyz')).status).toBe(503);
  });

  it('serves /metrics in the Prometheus text format with the live values', async () => {
    const t = testContext();
    const s = await start(t.ctx);
    for (let i = 0; i < 3; i++) t.ctx.metrics.countQuery(33, 0, 'canonical', 'udp');
    t.ctx.metrics.countQuery(-1, 1, 'error', 'tcp');
    t.ctx.metrics.countQuery(28, 16, 'forward', 'udp'); // BADVERS: an extended rcode keeps its number
    const r = await http(s, 'GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.body).toContain('# TYPE canonport_dns_queries_total counter');
    expect(r.body).toContain('canonport_dns_queries_total{type="SRV",rcode="NOERROR",source="canonical",transport="udp"} 3');
    expect(r.body).toContain('canonport_dns_queries_total{type="other",rcode="FORMERR",source="error",transport="tcp"} 1');
    expect(r.body).toContain('canonport_dns_queries_total{type="AAAA",rcode="16",source="forward",transport="udp"} 1');
    expect(r.body).toMatch(/^canonport_ready 0$/m);
    // Process metrics come with the daemon's prefix, so dashboards can tell canonport's heap from others'.
    expect(r.body).toMatch(/^canonport_process_resident_memory_bytes \d+/m);
    t.setReady(true);
    const again = await http(s, 'GET', '/metrics?format=ignored');
    expect(again.status).toBe(200);
    expect(again.body).toMatch(/^canonport_ready 1$/m);
    expect(again.body).toMatch(/^canonport_http_requests_total\{handler="metrics",code="200"\} 2$/m);
    // Counted between scrapes and added once: neither lost nor counted twice.
    t.ctx.metrics.countQuery(33, 0, 'canonical', 'udp');
    expect(again.body).toContain('canonport_dns_queries_total{type="SRV",rcode="NOERROR",source="canonical",transport="udp"} 3');
    expect((await http(s, 'GET', '/metrics')).body).toContain('canonport_dns_queries_total{type="SRV",rcode="NOERROR",source="canonical",transport="udp"} 4');
  });

  it('answers HEAD like GET without a body', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    const r = await http(s, 'HEAD', '/healthz');
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe('3');
    expect(r.body).toBe('');
  });

  it('answers 405 with Allow for other methods, 404 for other paths', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
      const r = await http(s, method, '/metrics');
      expect(r.status, method).toBe(405);
      expect(r.headers.allow).toBe('GET, HEAD');
    }
    for (const path of ['/', '/metric', '/healthz/extra', '/../metrics/x', '/%zz']) {
      expect((await http(s, 'GET', path)).status, path).toBe(404);
    }
    const counted = await ctx.metrics.httpRequests.get();
    const notFound = counted.values.find((v) => v.labels.handler === 'other' && v.labels.code === '404');
    expect(notFound?.value).toBe(5);
  });

  it('accepts the absolute form of a request target', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    const reply = await raw(s, `GET http://${s.address.host}:${s.address.port}/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect(reply).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(reply.endsWith('\r\n\r\nok\n')).toBe(true);
  });

  it('answers malformed requests with 400/431 and keeps serving', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    expect(await raw(s, 'this is not http\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    expect(await raw(s, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)).toMatch(/^HTTP\/1\.1 431 /);
    expect(await raw(s, '\x00\x01\x02\xff\r\n\r\n')).toMatch(/^HTTP\/1\.1 400 /);
    // A client that hangs up half-way through its request: the server releases the socket (it does not wait for a timeout).
    const releasedByServer = await new Promise<boolean>((resolve) => {
      const sock = connect({ host: s.address.host, port: s.address.port }, () => sock.end('GET /metr'));
      const timer = setTimeout(() => {
        resolve(false);
        sock.destroy();
      }, 5000);
      sock.on('close', () => {
        clearTimeout(timer);
        resolve(true);
      });
      sock.on('error', () => undefined);
    });
    expect(releasedByServer).toBe(true);
    // A GET with a body: the body is discarded and the answer is normal.
    const withBody = await raw(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    expect(withBody).toMatch(/^HTTP\/1\.1 200 /);
    expect((await http(s, 'GET', '/healthz')).status).toBe(200);
  });

  it('serves many concurrent scrapes', async () => {
    const { ctx } = testContext();
    const s = await start(ctx);
    const replies = await Promise.all(Array.from({ length: 40 }, (_, i) => http(s, 'GET', i % 2 ? '/metrics' : '/healthz')));
    expect(replies.every((r) => r.status === 200)).toBe(true);
  });

  it('binds IPv6 loopback', async () => {
    const { ctx } = testContext();
    const s = await start(ctx, '::1');
    expect(s.address.host).toBe('::1');
    const r = await http(s, 'GET', '/healthz');
    expect(r.status).toBe(200);
  });

  it('rejects with CP_LISTEN_FAILED when the address is taken', async () => {
    const { ctx } = testContext();
    const first = await start(ctx);
    const err = await startHttpServer(testContext().ctx, first.address).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: ErrorCodes.LISTEN_FAILED });
    expect(String((err as Error).message)).toContain(`127.0.0.1:${first.address.port}`);
  });

  it('close() ends idle keep-alive connections and stops listening', async () => {
    const { ctx } = testContext();
    const s = await startHttpServer(ctx, { host: '127.0.0.1', port: 0 });
    // A keep-alive connection left open by the client must not hold close() forever.
    const sock = connect({ host: s.address.host, port: s.address.port });
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => {
      sock.once('data', () => resolve());
      sock.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    });
    await s.close();
    await closed;
    await s.close(); // idempotent
    const refused = await http(s, 'GET', '/healthz').then(
      () => null,
      (e: NodeJS.ErrnoException) => e.code,
    );
    expect(refused).toBe('ECONNREFUSED');
  });
});

// Issue 21, finding 4 (its HTTP half): /sd/prometheus is bounded per reply and never one long stall.
describe('/sd/prometheus over a large cluster view', () => {
  /** A view of `ports` ports with `hostsPerPort` hosts each: ports × hostsPerPort target groups. */
  function clusterContext(ports: number, hostsPerPort: number, maxGroups: number): DaemonContext {
    const { ctx } = testContext();
    const state: ServingState = { registry: Registry.empty(), zones: ['localhost'], cluster: { onlyListening: false, observedTtl: 5 } };
    const list = Array.from({ length: ports }, (_, i) => 20_000 + i);
    const hostsOn = (port: number) =>
      Array.from({ length: hostsPerPort }, (_, h) => ({ node: `n${h}`, addresses: [`10.0.${h >> 8}.${h & 255}`], services: [`svc${port}`], scheme: 'base32', version: '1.0.0', since: '2026-01-01T00:00:00Z' }));
    const discovery = new Discovery({
      state: () => state,
      observed: { onPort: hostsOn, ports: () => list, nodeAddresses: () => null, instanceAddress: () => null, generation: 1, onChange: () => () => {} },
    });
    const config = buildConfig({ upstreams: ['127.0.0.1:53'], httpSdMaxGroups: maxGroups }, {}, Registry.empty());
    return { ...ctx, state: () => state, discovery, config: () => config };
  }

  it('25,000 groups at 10,000 a reply: three pages that join to the whole list, headers saying so; the event loop turns meanwhile', async () => {
    const ctx = clusterContext(500, 50, 10_000);
    const s = await start(ctx);
    // Turns of the event loop while a page is built: a view walked in one go would give none.
    const loop = countLoopTurns();
    const first = await http(s, 'GET', '/sd/prometheus');
    const turns = loop.stop();
    expect(first.status).toBe(200);
    expect(first.headers['x-canonport-pages']).toBe('3');
    expect(first.headers['x-canonport-groups']).toBe('25000');
    expect(first.headers.link).toBe('</sd/prometheus?page=2>; rel="next"');
    expect(turns).toBeGreaterThanOrEqual(10);
    const pages = [JSON.parse(first.body) as unknown[]];
    for (const n of [2, 3]) pages.push(JSON.parse((await http(s, 'GET', `/sd/prometheus?page=${n}`)).body) as unknown[]);
    expect(pages.map((p) => p.length)).toEqual([10_000, 10_000, 5_000]);
    const all = pages.flat() as { labels: Record<string, string>; targets: string[] }[];
    expect(new Set(all.map((g) => `${g.labels.__meta_canonport_port}/${g.labels.__meta_canonport_node}`)).size).toBe(25_000);
    expect(all[0]).toEqual({ targets: ['10.0.0.0:20000'], labels: { __meta_canonport_service: 'svc20000', __meta_canonport_port: '20000', __meta_canonport_node: 'n0', __meta_canonport_version: '1.0.0', __meta_canonport_scheme: 'base32', __meta_canonport_readiness: 'ready', __meta_canonport_name_source: 'registry', __meta_canonport_names: ',svc20000,' } });
    expect(JSON.parse((await http(s, 'GET', '/sd/prometheus?page=4')).body)).toEqual([]);
    expect((await http(s, 'GET', '/sd/prometheus?page=0')).status).toBe(400);
    expect((await http(s, 'GET', '/sd/prometheus?page=x')).status).toBe(400);
  });

  it('a list that fits one page is one reply with no next link', async () => {
    const s = await start(clusterContext(3, 2, 10_000));
    const r = await http(s, 'GET', '/sd/prometheus');
    expect(JSON.parse(r.body)).toHaveLength(6);
    expect(r.headers['x-canonport-pages']).toBe('1');
    expect(r.headers.link).toBeUndefined();
  });
});
