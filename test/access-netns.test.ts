import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { writeFileSync } from 'node:fs';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { createHostNet, type Host, type HostNet } from './helpers/netns.js';

/**
 * The allow-lists as in production: the daemon listens on every address of
 * this machine, and real clients on two other "hosts" (network namespaces
 * joined by a bridge, test/helpers/netns.ts) call it: the canonport CLI
 * (`resolve`, `inventory --daemon`), a bare grpc-js client (health, xDS)
 * and curl. One host is in the allow-lists, the other is not; loopback is
 * always served. Everything the test creates is removed afterwards, on
 * failure too (the helper's cleanup and its exit hook).
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const PROBE = fileURLToPath(new URL('./helpers/grpc-probe.mjs', import.meta.url));

let net: HostNet;
let inside: Host;
let outside: Host;
const daemons: Daemon[] = [];
const logLines: Array<{ level: number; code?: string; msg: string; listener?: string }> = [];

/** A command in a host's namespace, asynchronously (the daemon it calls runs in this process). */
function runIn(host: Host, cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return host.exec(cmd, args, { cwd: REPO, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
}

const canonport = (host: Host, args: string[]) => runIn(host, process.execPath, ['bin/canonport.js', ...args]);

async function probe(host: Host, target: string, path: string, kind: 'unary' | 'bidi' = 'unary'): Promise<{ code: string; details: string; canonportCode: string | null }> {
  const r = await runIn(host, process.execPath, [PROBE, target, path, kind]);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as { code: string; details: string; canonportCode: string | null };
}

/** curl from a host: the status code (000 when no HTTP answer came). */
async function curl(host: Host | null, url: string): Promise<{ status: string; body: string }> {
  const args = ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '5', url];
  const r = host ? await runIn(host, 'curl', args) : await runLocal('curl', args);
  const at = r.stdout.lastIndexOf('\n');
  return { status: r.stdout.slice(at + 1).trim(), body: r.stdout.slice(0, at) };
}

async function runLocal(cmd: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

function captureLogger() {
  return pino(
    { level: 'debug' },
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) logLines.push(JSON.parse(line) as (typeof logLines)[number]);
        cb();
      },
    }),
  );
}

async function start(flags: Record<string, unknown>, opts: { watchRegistry?: boolean } = {}): Promise<Daemon> {
  const d = await startDaemon({ grpc: '0.0.0.0:0', http: '0.0.0.0:0', logLevel: 'debug', ...flags }, { logger: captureLogger(), ...opts });
  daemons.push(d);
  return d;
}

beforeAll(async () => {
  net = await createHostNet({ hosts: 2 });
  [inside, outside] = net.hosts as [Host, Host];
}, 60_000);

afterAll(async () => {
  for (const d of daemons) await d.close(100);
  net?.cleanup();
});

describe('--grpc-allow and --http-allow, asked from other hosts', () => {
  let d: Daemon;
  let grpcAt: string;
  let httpAt: string;
  beforeAll(async () => {
    d = await start({ grpcAllow: [inside.address], httpAllow: [`${inside.address}/32`] });
    grpcAt = `${net.gateway}:${d.addresses.grpc.port}`;
    httpAt = `${net.gateway}:${d.addresses.http.port}`;
  });

  it('serves gRPC to a host in the allow-list', async () => {
    const r = await canonport(inside, ['resolve', '--daemon', grpcAt, 'api.localhost']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('port 12082');
  });

  it('refuses gRPC to a host outside it, before any handler, naming the flag', async () => {
    const r = await canonport(outside, ['resolve', '--daemon', grpcAt, 'api.localhost']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`the canonport daemon at ${grpcAt} refused the call: ${outside.address} may not call this daemon`);
    expect(r.stderr).toContain("--grpc-allow [CP_ACCESS_DENIED]");
  });

  it('refuses every service of the port to the outside host: health and xDS too', async () => {
    const health = await probe(outside, grpcAt, '/grpc.health.v1.Health/Check');
    expect(health).toMatchObject({ code: 'PERMISSION_DENIED', canonportCode: 'CP_ACCESS_DENIED' });
    const ads = await probe(outside, grpcAt, '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', 'bidi');
    expect(ads).toMatchObject({ code: 'PERMISSION_DENIED', canonportCode: 'CP_ACCESS_DENIED' });
    // The same calls from the allowed host reach their handlers.
    expect(await probe(inside, grpcAt, '/grpc.health.v1.Health/Check')).toMatchObject({ code: 'OK' });
    expect(await probe(inside, grpcAt, '/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', 'bidi')).toMatchObject({ code: 'OPEN' });
  });

  it('always serves loopback, which is in no allow-list', async () => {
    const client = createCanonportClient(`127.0.0.1:${d.addresses.grpc.port}`, { tls: false });
    try {
      expect((await client.resolve('api.localhost')).port).toBe(12082);
      expect((await client.inventory()).host).toBeTruthy();
    } finally {
      client.close();
    }
    expect((await curl(null, `http://127.0.0.1:${d.addresses.http.port}/metrics`)).status).toBe('200');
  });

  it('answers /metrics to the allowed host and 403 to the other; the probes answer both', async () => {
    const allowed = await curl(inside, `http://${httpAt}/metrics`);
    expect(allowed.status).toBe('200');
    expect(allowed.body).toContain('canonport_access_denied_total');
    const refused = await curl(outside, `http://${httpAt}/metrics`);
    expect(refused.status).toBe('403');
    expect(refused.body).toContain(`${outside.address} is not loopback and not in this daemon's --http-allow`);
    // The discovery endpoint (every service on every host of the cluster) is behind the same list.
    expect((await curl(outside, `http://${httpAt}/sd/prometheus`)).status).toBe('403');
    const sd = await curl(inside, `http://${httpAt}/sd/prometheus`);
    expect(sd.status).toBe('200');
    expect(JSON.parse(sd.body)).toEqual([]); // no cluster mode here: no targets, but served
    // Refused before routing: a path that does not exist is 403 too, not 404.
    expect((await curl(outside, `http://${httpAt}/nothing-here`)).status).toBe('403');
    expect((await curl(inside, `http://${httpAt}/nothing-here`)).status).toBe('404');
    for (const h of [inside, outside]) {
      expect((await curl(h, `http://${httpAt}/healthz`)).status).toBe('200');
      expect((await curl(h, `http://${httpAt}/readyz`)).status).toBe('200');
    }
  });

  it('counts refusals by listener and reason, and logs them at debug with at most one warning a minute', async () => {
    // The refusals of the tests above (several per listener) gave one warning per listener, the first.
    const warned = logLines.filter((l) => l.code === 'CP_ACCESS_DENIED' && l.level === 40);
    expect(warned.map((l) => l.listener).sort()).toEqual(['grpc', 'http']);
    logLines.length = 0;
    // prom-client hands out its live value objects: read the numbers at once.
    const count = async (listener: string, reason: string) =>
      (await d.metrics.accessDenied.get()).values.find((x) => x.labels.listener === listener && x.labels.reason === reason)?.value ?? 0;
    const before = { grpc: await count('grpc', 'address'), http: await count('http', 'address') };
    expect(before.grpc).toBeGreaterThan(0); // the tests above were refused too
    for (let i = 0; i < 3; i++) {
      expect((await probe(outside, grpcAt, '/grpc.health.v1.Health/Check')).code).toBe('PERMISSION_DENIED');
      expect((await curl(outside, `http://${httpAt}/metrics`)).status).toBe('403');
    }
    expect((await count('grpc', 'address')) - before.grpc).toBe(3);
    expect((await count('http', 'address')) - before.http).toBe(3);
    const refusals = logLines.filter((l) => l.code === 'CP_ACCESS_DENIED');
    expect(refusals.filter((l) => l.level === 20)).toHaveLength(6); // debug: each one
    // Earlier tests already warned once for each listener within the minute: nothing above debug now.
    expect(refusals.filter((l) => l.level >= 30)).toHaveLength(0);
  });
});

describe('--inventory-allow: Inventory narrower than the rest of gRPC', () => {
  let grpcAt: string;
  let d: Daemon;
  const refusedFor = async (reason: string) =>
    (await d.metrics.accessDenied.get()).values.find((x) => x.labels.listener === 'grpc' && x.labels.reason === reason)?.value ?? 0;
  beforeAll(async () => {
    d = await start({ grpcAllow: [`${net.subnet}.0/24`], httpAllow: [`${net.subnet}.0/24`], inventoryAllow: [inside.address] });
    grpcAt = `${net.gateway}:${d.addresses.grpc.port}`;
  });

  it('lets the outside host resolve but not read the inventory; the inside host does both', async () => {
    expect((await canonport(outside, ['resolve', '--daemon', grpcAt, 'api.localhost'])).code).toBe(0);
    const before = { inventory: await refusedFor('inventory_address'), address: await refusedFor('address') };
    const refused = await canonport(outside, ['inventory', '--daemon', grpcAt, '--json']);
    expect(refused.code).toBe(1);
    // Counted under its own reason: the host is inside the gRPC allow-list, outside Inventory's.
    expect((await refusedFor('inventory_address')) - before.inventory).toBe(1);
    expect((await refusedFor('address')) - before.address).toBe(0);
    expect(refused.stderr).toContain(`Inventory is limited to loopback and the daemon's --inventory-allow networks; ${outside.address} is not in them [CP_ACCESS_DENIED]`);
    const served = await canonport(inside, ['inventory', '--daemon', grpcAt, '--json']);
    expect(served.stderr).toBe('');
    expect(served.code).toBe(0);
    expect(JSON.parse(served.stdout)).toHaveProperty('listeners');
  });

  it('shows in the fleet view as a refused host, with the reason', async () => {
    const r = await canonport(outside, ['fleet', '--json', grpcAt]);
    expect(r.code).toBe(0);
    const fleet = JSON.parse(r.stdout) as { hosts: Array<{ reachable: boolean; code?: string; error?: string }> };
    expect(fleet.hosts[0]).toMatchObject({ reachable: false, code: 'CP_ACCESS_DENIED' });
    expect(fleet.hosts[0]!.error).toContain('--inventory-allow');
    const ok = await canonport(inside, ['fleet', '--json', grpcAt]);
    expect((JSON.parse(ok.stdout) as typeof fleet).hosts[0]).toMatchObject({ reachable: true });
  });
});

describe('what else opens the listeners to other hosts', () => {
  it('--insecure-listen: every host is served, on purpose', async () => {
    const d = await start({ insecureListen: true });
    const r = await canonport(outside, ['resolve', '--daemon', `${net.gateway}:${d.addresses.grpc.port}`, 'api.localhost']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect((await curl(outside, `http://${net.gateway}:${d.addresses.http.port}/metrics`)).status).toBe('200');
  });

  it('a reload that widens the allow-list lets the other host in from its next call', async () => {
    const file = writeRegistry(`daemon:\n  grpcAllow: [${inside.address}]\n  httpAllow: [${inside.address}]\n`, tempDir());
    const d = await start({ registry: file }, { watchRegistry: false });
    const grpcAt = `${net.gateway}:${d.addresses.grpc.port}`;
    expect((await canonport(outside, ['resolve', '--daemon', grpcAt, 'api.localhost'])).code).toBe(1);
    writeFileSync(file, `daemon:\n  grpcAllow: [${inside.address}, ${outside.address}]\n  httpAllow: [${inside.address}]\n`);
    expect((await d.reload()).ok).toBe(true);
    const r = await canonport(outside, ['resolve', '--daemon', grpcAt, 'api.localhost']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });
});
