import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import { base32Port } from '../src/scheme/index.js';
import { until } from './helpers/cluster.js';
import { GRPC_PORT, srvTargets, startBackend, startLab, startNode, ZONE, type Backend, type Lab, type NodeDaemon } from './helpers/cluster-lab.js';
import type { Host } from './helpers/netns.js';
import { requirePythonGrpc, SYSTEM_PYTHON } from './helpers/python.js';
import { REPO } from './helpers/serve-process.js';
import { requireTool } from './helpers/tools.js';
import { bootstrapFile } from './helpers/xds.js';

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

const API = base32Port('api');
const RPC = base32Port('rpc');
const WEB = base32Port('web');
const WARMUP_MS = 1_500;
const CANONPORT = join(REPO, 'bin', 'canonport.js');
let lab: Lab;
let hosts: Host[];
let client: Host;
const daemons: NodeDaemon[] = [];
const backends = new Map<string, Backend>();
const netnsDirs: string[] = [];
/** Daemon flags: short observed TTL so drains' TTL waits stay short (the default is 5 s). */
const FLAGS = ['--observed-ttl', '2', '--lease-ttl', '6'];

beforeAll(async () => {
  requireTool('curl', 'curl');
  requirePythonGrpc();
  lab = await startLab({ hosts: 4 });
  hosts = lab.hosts.slice(0, 3);
  client = lab.hosts[3]!;
  for (const [i, h] of lab.hosts.entries()) daemons.push(await startNode(lab, h, `host-${i}`, FLAGS));
  // Every host's own resolv.conf names its daemon (`ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf),
  // written after the daemons started so they keep the machine's upstreams.
  for (const h of lab.hosts) {
    const dir = `/etc/netns/${h.ns}`;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'resolv.conf'), `nameserver ${h.address}\noptions timeout:1 attempts:2\n`);
    netnsDirs.push(dir);
  }
  await Promise.all(hosts.map((h, i) => deploy(h, i, 1)));
  await untilServing(3);
}, 180_000);

afterAll(async () => {
  await lab?.stop();
  for (const d of netnsDirs) rmSync(d, { recursive: true, force: true });
});

/** Starts (again) host i's api and rpc, warming up like real servers; resolves once both listen. */
async function deploy(h: Host, i: number, version: number): Promise<void> {
  const api = await startBackend(h, 'http', API, `host-${i}`, { version: `1.${version}`, warmupMs: WARMUP_MS });
  const rpc = await startBackend(h, 'grpc', RPC, `host-${i}`, { warmupMs: WARMUP_MS, health: true });
  backends.set(`api-${i}`, api);
  backends.set(`rpc-${i}`, rpc);
}

const daemonOf = (i: number) => daemons[i]!;
const clientDaemon = () => daemons[3]!;
const srvNodes = async (d: NodeDaemon, name: string) => srvTargets(await d.dig(['SRV', `${name}.${ZONE}`])).map((t) => t.split(' ')[1]!.split('.')[0]!).sort();

async function untilServing(n: number, except?: number): Promise<void> {
  const want = hosts.map((_, i) => `host-${i}`).filter((_, i) => i !== except).slice(0, n).join();
  for (const svc of ['api', 'rpc']) {
    await until(`${svc} on ${want} in the client host's answers`, async () => ((await srvNodes(clientDaemon(), svc)).join() === want ? true : undefined), 30_000, 100);
  }
}

/** `canonport drain SVC --wait` inside host i (its Admin call comes from the host's own address). */
function drain(i: number, service: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = hosts[i]!.spawn(process.execPath, [CANONPORT, 'drain', service, '--wait', '--timeout', '20000', '--daemon', `${hosts[i]!.address}:${GRPC_PORT}`]);
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (err += d));
    child.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`canonport drain ${service} on host-${i} exited ${code}: ${err}`))));
  });
}

interface Tally {
  ok: number;
  failed: number;
  errors: Record<string, number>;
}

/** A client process that loops until its stdin closes, then prints one JSON tally. */
function pythonLoop(script: string, args: string[], env: NodeJS.ProcessEnv, where?: Host): { stop(): Promise<Tally>; child: ChildProcess } {
  const argv = ['-c', script, ...args];
  const child = where ? where.spawn(SYSTEM_PYTHON, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(SYSTEM_PYTHON, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  return {
    child,
    stop: () =>
      new Promise((resolve, reject) => {
        child.once('exit', () => {
          try {
            resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Tally);
          } catch {
            reject(new Error(`client printed no tally: ${out} ${err}`));
          }
        });
        child.stdin!.end();
      }),
  };
}

const URLLIB = `
import json, sys, threading, urllib.request
url = sys.argv[1]
tally = {"ok": 0, "failed": 0, "errors": {}}
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            r.read()
        tally["ok"] += 1
        stop.wait(0.005)
    except Exception as e:
        tally["failed"] += 1
        key = type(e).__name__ + ": " + str(e)[:80]
        tally["errors"][key] = tally["errors"].get(key, 0) + 1
print(json.dumps(tally), flush=True)
`;

const GRPCIO = `
import json, sys, threading, grpc
tally = {"ok": 0, "failed": 0, "errors": {}}
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
channel = grpc.insecure_channel(sys.argv[1])
name = channel.unary_unary("/canonport.test.Who/Name")
# Connected once before counting: the xDS resources' first fetch is setup, not the deploy.
name(b"", timeout=15, wait_for_ready=True)
while not stop.is_set():
    try:
        name(b"", timeout=3)
        tally["ok"] += 1
        stop.wait(0.005)
    except grpc.RpcError as e:
        tally["failed"] += 1
        key = str(e.code()) + ": " + (e.details() or "")[:80]
        tally["errors"][key] = tally["errors"].get(key, 0) + 1
print(json.dumps(tally), flush=True)
`;

/** curl inside the client host, one request after another (each a new resolution through glibc). */
function curlLoop(url: string): { stop(): Promise<Tally> } {
  const tally: Tally = { ok: 0, failed: 0, errors: {} };
  let running = true;
  const loop = (async () => {
    while (running) {
      const code = await new Promise<number>((resolve) => {
        const c = client.spawn('curl', ['-sS', '-f', '-o', '/dev/null', '--max-time', '3', url]);
        let err = '';
        c.stderr!.on('data', (d) => (err += d));
        c.once('exit', (code) => {
          if (code !== 0) tally.errors[err.trim().slice(0, 80)] = (tally.errors[err.trim().slice(0, 80)] ?? 0) + 1;
          resolve(code ?? 1);
        });
      });
      if (code === 0) tally.ok++;
      else tally.failed++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return tally;
    },
  };
}

/** A grpc-js channel on canon: with round_robin, calling in a loop. */
function canonLoop(): { stop(): Promise<Tally> } {
  registerCanonResolver({ grpc, daemon: `${client.address}:${GRPC_PORT}` });
  const Who = grpc.makeGenericClientConstructor(
    { Name: { path: '/canonport.test.Who/Name', requestStream: false, responseStream: false, requestSerialize: (x: Buffer) => x, requestDeserialize: (x: Buffer) => x, responseSerialize: (x: Buffer) => x, responseDeserialize: (x: Buffer) => x } },
    'Who',
  );
  const c = new Who(`canon:///rpc.${ZONE}`, grpc.credentials.createInsecure(), { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) }) as unknown as grpc.Client & {
    Name: (req: Buffer, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void;
  };
  const tally: Tally = { ok: 0, failed: 0, errors: {} };
  let running = true;
  const loop = (async () => {
    while (running) {
      const err = await new Promise<grpc.ServiceError | null>((resolve) => c.Name(Buffer.alloc(0), { deadline: Date.now() + 3000 }, resolve));
      if (!err) tally.ok++;
      else {
        tally.failed++;
        tally.errors[`${err.code} ${err.details}`.slice(0, 80)] = (tally.errors[`${err.code} ${err.details}`.slice(0, 80)] ?? 0) + 1;
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      c.close();
      return tally;
    },
  };
}

/** Starts every client kind; stop() returns each one's tally. */
async function clients(): Promise<{ stop(): Promise<Record<string, Tally>> }> {
  const url = `http://api.${ZONE}:${API}/`;
  const urllib = pythonLoop(URLLIB, [url], { PATH: process.env.PATH }, client);
  const bootstrap = await bootstrapFile(`${client.address}:${GRPC_PORT}`);
  const xds = pythonLoop(GRPCIO, [`xds:///rpc.${ZONE}`], { PATH: process.env.PATH, GRPC_XDS_BOOTSTRAP: bootstrap });
  const curl = curlLoop(url);
  const canon = canonLoop();
  // Every client has answers before the deploy starts (the first xDS fetch, the first resolution).
  await new Promise((r) => setTimeout(r, 2_000));
  return {
    stop: async () => {
      const [u, x, c, g] = await Promise.all([urllib.stop(), xds.stop(), curl.stop(), canon.stop()]);
      return { 'python urllib (glibc)': u, curl: c, 'grpc-js canon: round_robin': g, 'python grpcio xds:///': x };
    },
  };
}

describe('a rolling deploy, watched by clients that know only the name', () => {
  it('loses no request: drain --wait, stop, start, warm up, next host', async () => {
    const running = await clients();
    const started = Date.now();
    for (const [i, h] of hosts.entries()) {
      const [api, rpc] = await Promise.all([drain(i, 'api'), drain(i, 'rpc')]);
      expect(api).toMatch(/drained port/);
      expect(rpc).toMatch(/drained port/);
      // Drained everywhere: the client host no longer hands it out.
      expect(await srvNodes(clientDaemon(), 'api')).not.toContain(`host-${i}`);
      await Promise.all([backends.get(`api-${i}`)!.stop(), backends.get(`rpc-${i}`)!.stop()]);
      await deploy(h, i, 2);
      // Back (by itself: new sockets end the drain) once its warm-up is over and a probe said ready.
      await untilServing(3);
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
    const running = await clients();
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
    const d = daemonOf(0);
    d.proc.kill(signal);
    await d.exited;
    // Down for a moment, as an upgrade would be; then the same node, the same state directory.
    await new Promise((r) => setTimeout(r, 1_000));
    daemons[0] = await startNode(lab, hosts[0]!, 'host-0', FLAGS);
    const restarted = daemons[0];
    await until('the restarted daemon to take its lease back', () => (restarted.logs.some((l) => l.reason === 'adopted') ? true : undefined), 20_000, 100).catch((err: Error) => {
      throw new Error(`${err.message}; its cluster log: ${JSON.stringify(restarted.logs.filter((l) => l.component === 'cluster').slice(0, 12))}`);
    });
    // Past the old lease's TTL: still listed, because the lease was taken back.
    await new Promise((r) => setTimeout(r, 7_000));
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

  it('a gRPC server flipping its health leaves every host\'s answers and comes back, through its health Watch', async () => {
    const rpc = backends.get('rpc-0')!;
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

  it('names the view decides carry the observed TTL, the fallback for a service no host runs included', async () => {
    const none = await clientDaemon().dig(['SRV', `nobody-runs-this.${ZONE}`]);
    expect(none.status).toBe('NOERROR');
    expect(none.answer.map((a) => a[1])).toEqual(['2']);
    const running = await clientDaemon().dig(['A', `api.${ZONE}`]);
    expect(new Set(running.answer.map((a) => a[1]))).toEqual(new Set(['2']));
  });
});
