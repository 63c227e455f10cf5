import { execFileSync, spawn } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { until } from './helpers/cluster.js';
import { GRPC_PORT, startBackend, ZONE, type NodeDaemon } from './helpers/cluster-lab.js';
import type { Host } from './helpers/netns.js';
import { requirePythonGrpc } from './helpers/python.js';
import { clients } from './helpers/rollout-clients.js';
import { API, CANONPORT, LEASE_TTL_MS, startRolloutLab, type RolloutLab } from './helpers/rollout-lab.js';
import { requireTool } from './helpers/tools.js';
import { freePort } from './helpers/ports.js';

/**
 * Issue 20's measure, end to end: a rolling deploy of `api` (HTTP) and
 * `rpc` (gRPC) over three hosts, each instance warming up for 1.5 s after it
 * binds (503 / NOT_SERVING), while clients that know only the names run on
 * a fourth host and in the root namespace: Python urllib through glibc and
 * the host's resolv.conf (its daemon on port 53), curl the same way, a
 * grpc-js channel on `canon:` with round_robin, and a stock Python grpcio
 * client on `xds:///`. The deploy is the documented one, host by host:
 * `canonport drain SVC --wait`, stop, start, wait until ready. Then the
 * daemons themselves restart (SIGTERM, SIGKILL) mid-traffic; a service that
 * never becomes ready; a gRPC server flipping its health; TTLs of names the
 * view decides. One lab for the file (real etcd, real daemons on port 53).
 */

const WEB = base32Port('web');
let rl: RolloutLab;
let hosts: Host[];
let client: Host;

beforeAll(async () => {
  requireTool('curl', 'curl');
  requirePythonGrpc();
  rl = await startRolloutLab();
  ({ hosts, client } = rl);
  await Promise.all(hosts.map((_, i) => rl.deploy(i, 1)));
  await rl.untilServing();
}, 180_000);

afterAll(async () => {
  await rl?.stop();
});

const daemonOf = (i: number) => rl.daemons[i]!;
const clientDaemon = () => rl.daemons[3]!;
const srvNodes = (d: NodeDaemon, name: string) => rl.srvNodes(d, name);

describe('a rolling deploy, watched by clients that know only the name', () => {
  it('loses no request: drain --wait, stop, start, warm up, next host', async () => {
    const running = await clients(client, { api: API });
    const started = Date.now();
    for (const i of hosts.keys()) {
      const [api, rpc] = await Promise.all([rl.drain(i, 'api'), rl.drain(i, 'rpc')]);
      expect(api).toMatch(/drained port/);
      expect(rpc).toMatch(/drained port/);
      // Drained everywhere: the client host no longer hands it out.
      expect(await srvNodes(clientDaemon(), 'api')).not.toContain(`host-${i}`);
      await Promise.all([rl.backends.get(`api-${i}`)!.stop(), rl.backends.get(`rpc-${i}`)!.stop()]);
      await rl.deploy(i, 2);
      // Back (by itself: new sockets end the drain) once its warm-up is over and a probe said ready.
      await rl.untilServing();
    }
    const tallies = await running.stop();
    console.log(`rolling deploy of 3 hosts in ${Date.now() - started} ms: ${JSON.stringify(tallies)}`);
    for (const [kind, t] of Object.entries(tallies)) {
      expect(t.ok, `${kind} made requests`).toBeGreaterThan(20);
      expect(t.errors, `${kind} failures`).toEqual({});
    }
  }, 180_000);
});

describe('daemon restarts keep the host\'s services', () => {
  it.each(['SIGTERM', 'SIGKILL'] as const)('%s and start again: no request fails, and the host never leaves another host\'s answers', async (signal) => {
    const running = await clients(client, { api: API });
    let absent = 0;
    let asked = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        asked++;
        if (!(await srvNodes(clientDaemon(), 'api')).includes('host-0')) absent++;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const restarted = await rl.restartDaemon(0, signal);
    await until('the restarted daemon to take its lease back', () => (restarted.logs.some((l) => l.reason === 'adopted') ? true : undefined), 20_000, 100).catch((err: Error) => {
      throw new Error(`${err.message}; its cluster log: ${JSON.stringify(restarted.logs.filter((l) => l.component === 'cluster' || Number(l.level) >= 40).slice(0, 12))}`);
    });
    // Past the old lease's TTL: still listed, because the lease was taken back.
    await new Promise((r) => setTimeout(r, LEASE_TTL_MS + 1_000));
    watching = false;
    await watch;
    const tallies = await running.stop();
    console.log(`daemon ${signal} and restart: host-0 absent from host-3's answers in ${absent} of ${asked} checks; ${JSON.stringify(tallies)}`);
    expect(asked).toBeGreaterThan(10);
    expect(absent).toBe(0);
    for (const [kind, t] of Object.entries(tallies)) expect(t.errors, `${kind} failures`).toEqual({});
  }, 90_000);
});

describe('readiness, end to end', () => {
  it('a service that never becomes ready is handed out only when no instance is (counted), and shows as not ready', async () => {
    const never = await startBackend(hosts[1]!, 'http', WEB, 'host-1', { neverReady: true });
    try {
      // Nobody else runs it: every listening instance is answered (the panic answer), and counted.
      await until('web listed (panic)', async () => ((await srvNodes(clientDaemon(), 'web')).join() === 'host-1' ? true : undefined), 20_000, 100);
      const inventory = JSON.parse(execFileSync('ip', ['netns', 'exec', hosts[1]!.ns, process.execPath, CANONPORT, 'inventory', '--json', '--daemon', `${hosts[1]!.address}:${GRPC_PORT}`], { encoding: 'utf8' })) as {
        listeners: { port: number; readiness?: { state: string; by: string; detail?: string } }[];
      };
      expect(inventory.listeners.find((l) => l.port === WEB)?.readiness).toMatchObject({ state: 'not-ready', by: 'http', detail: 'HTTP 503 from /readyz' });
      expect(await clientDaemon().metric('canonport_cluster_no_ready_instance_total', { service: 'web' })).toBeGreaterThan(0);
      // A ready instance appears: only it is answered.
      const ready = await startBackend(hosts[2]!, 'http', WEB, 'host-2');
      try {
        await until('only the ready instance', async () => ((await srvNodes(clientDaemon(), 'web')).join() === 'host-2' ? true : undefined), 20_000, 100);
      } finally {
        await ready.stop();
      }
    } finally {
      await never.stop();
    }
  }, 60_000);

  it('drain, undrain and leave are only for the host itself: another host is refused with CP_ADMIN_REFUSED', async () => {
    let out = '';
    const code = await new Promise<number | null>((resolve) => {
      const child = client.spawn(process.execPath, [CANONPORT, 'drain', 'api', '--daemon', `${hosts[0]!.address}:${GRPC_PORT}`]);
      child.stderr!.on('data', (d) => (out += d));
      child.once('exit', resolve);
    });
    expect(code).toBe(1);
    expect(out).toMatch(/CP_ADMIN_REFUSED/);
    // Nothing was drained.
    expect(await srvNodes(clientDaemon(), 'api')).toContain('host-0');
  });

  it('a gRPC server flipping its health leaves every host\'s answers and comes back, through its health Watch', async () => {
    const rpc = rl.backends.get('rpc-0')!;
    rpc.signal('SIGUSR2');
    let t0 = Date.now();
    await until('host-0 out of rpc', async () => ((await srvNodes(clientDaemon(), 'rpc')).includes('host-0') ? undefined : true), 10_000, 25);
    const outMs = Date.now() - t0;
    rpc.signal('SIGUSR2');
    t0 = Date.now();
    await until('host-0 back in rpc', async () => ((await srvNodes(clientDaemon(), 'rpc')).includes('host-0') ? true : undefined), 10_000, 25);
    console.log(`gRPC health flip reached host-3's answers: NOT_SERVING in ${outMs} ms, SERVING in ${Date.now() - t0} ms`);
  }, 30_000);

  it('this host\'s ready instance first, the others turned per answer; SRV weights equal and non-zero', async () => {
    const firsts = new Map<string, number>();
    for (let n = 0; n < 12; n++) {
      const r = await daemonOf(0).dig(['A', `api.${ZONE}`]);
      const first = r.answer[0]?.[4];
      firsts.set(first!, (firsts.get(first!) ?? 0) + 1);
    }
    // Host 0 runs api: its own address leads every answer.
    expect([...firsts.keys()]).toEqual([hosts[0]!.address]);
    const srv = await daemonOf(0).dig(['SRV', `api.${ZONE}`]);
    const rows = srv.answer.map((a) => ({ priority: Number(a[4]), weight: Number(a[5]), target: a[7]! }));
    expect(rows.find((r) => r.target.startsWith('host-0.'))?.priority).toBe(0);
    expect(rows.filter((r) => !r.target.startsWith('host-0.')).map((r) => r.priority)).toEqual([1, 1]);
    expect(new Set(rows.map((r) => r.weight))).toEqual(new Set([10]));
    // The client host runs none: the first address turns, each host leading as often.
    const leaders = new Map<string, number>();
    for (let n = 0; n < 30; n++) {
      const first = (await clientDaemon().dig(['A', `api.${ZONE}`])).answer[0]?.[4]!;
      leaders.set(first, (leaders.get(first) ?? 0) + 1);
    }
    // (A view change mid-loop starts the turn over, so not exactly 10 each.)
    expect(leaders.size).toBe(3);
    for (const n of leaders.values()) expect(n).toBeGreaterThanOrEqual(5);
  });

  it('a new service shows through a caching dnsmasq within the observed TTL plus convergence, not the zone TTL', async () => {
    requireTool('dnsmasq', 'dnsmasq');
    const dir = mkdtempSync(join(tmpdir(), 'cp-rollout-dnsmasq-'));
    // deploy/dnsmasq/canonport.conf's two lines, aimed at the client host's daemon; dnsmasq caches (its default).
    writeFileSync(join(dir, 'canonport.conf'), `server=/${ZONE}/${client.address}#53\nrebind-domain-ok=/${ZONE}/\n`);
    const port = await freePort();
    const dnsmasq = spawn('dnsmasq', ['--keep-in-foreground', `--conf-file=${join(dir, 'canonport.conf')}`, `--port=${port}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts', '--pid-file=', '--log-facility=-', '--cache-size=1000'], { stdio: 'ignore' });
    const stub = new Resolver({ timeout: 1000, tries: 1 });
    stub.setServers([`127.0.0.1:${port}`]);
    const srvVia = async () => (await stub.resolveSrv(`fresh.${ZONE}`).catch(() => [])).map((r) => r.name.split('.')[0]!);
    let backend: Awaited<ReturnType<typeof startBackend>> | undefined;
    try {
      // No host runs it: the fallback answer, cached by dnsmasq for its TTL (the observed TTL, 2 s here; it was the zone's 60).
      await until('dnsmasq to answer', async () => ((await srvVia()).length > 0 ? true : undefined), 10_000, 100);
      expect(await srvVia()).toEqual(['fresh']);
      backend = await startBackend(hosts[1]!, 'http', base32Port('fresh'), 'host-1');
      const t0 = Date.now();
      await until('fresh on host-1 through dnsmasq', async () => ((await srvVia()).includes('host-1') ? true : undefined), 15_000, 50);
      const ms = Date.now() - t0;
      console.log(`a new service through dnsmasq: visible after ${ms} ms (observed TTL 2 s)`);
      // The TTL (2 s) plus a scan, a verdict and a watch delivery (about 1 s each at most), with a wide margin: not 60 s.
      expect(ms).toBeLessThan(10_000);
    } finally {
      await backend?.stop();
      dnsmasq.kill('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 40_000);

  it('names the view decides carry the observed TTL, the fallback for a service no host runs included', async () => {
    const none = await clientDaemon().dig(['SRV', `nobody-runs-this.${ZONE}`]);
    expect(none.status).toBe('NOERROR');
    expect(none.answer.map((a) => a[1])).toEqual(['2']);
    const running = await clientDaemon().dig(['A', `api.${ZONE}`]);
    expect(new Set(running.answer.map((a) => a[1]))).toEqual(new Set(['2']));
  });
});
