import { spawnSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { startBackend, whoAmI, type Backend } from '../test/helpers/xds-backend.js';
import { PythonXdsClient, requirePythonGrpc } from '../test/helpers/xds-python.js';
import type { Children, Server } from './children.js';
import { cpuSnapshot } from './cpu.js';
import { httpGet, readRss, waitForReadyz } from './probe.js';
import { REPO_ROOT } from './servers.js';
import { allHave, FanClient } from './xds-fanout.js';
import { fmt, fmtLatency, latencyStats, median, metricSum, type FanRound, type LatencyStats, type XdsBenchOptions, type XdsBenchResult } from './xds-report.js';

/**
 * `npm run bench -- --only xds`: the xDS control plane as it ships, inside
 * `canonport serve` (its own process, so its CPU and memory are its own),
 * driven the way a host drives it: the registry file rewritten (the
 * daemon's watcher reloads it) or SIGHUP.
 *
 * - Push latency: the registry pins api to the other of two ports; time
 *   from the file's rename until a stock client's next call is answered by
 *   the backend on the new port (watcher, reload, lookup, push, the
 *   client's update, its new connection, one call). Node
 *   (@grpc/grpc-js-xds, in this process) and Python (python3-grpcio, C
 *   core), one channel each through all trials.
 * - Fan-out: N raw ADS clients, each on its own connection, subscribed to
 *   all four types for one shared name and one of their own, ACKing every
 *   response; one registry change moves the shared name, another moves
 *   every client's own name. Time until the last client has it, and the
 *   daemon's CPU (from /proc) and RSS.
 * - Steady state: the same clients idle, then reloads (SIGHUP) that change
 *   nothing: responses the daemon sent (its own counter) and its CPU.
 */

export const XDS_ZONE = 'cluster-1.example.com';
const API = `api.${XDS_ZONE}`;
const FAN = `fan.${XDS_ZONE}`;
/** Backends live on their own loopback address, away from the tests' 127.1xx.x.x. */
const BACKEND_HOST = '127.200.0.2';

/** Letters only: a digit would not read as a base32 service label. */
function ownName(i: number): string {
  const a = 'abcdefghijklmnopqrstuvwxyz';
  return `own${a[Math.floor(i / 676) % 26]}${a[Math.floor(i / 26) % 26]}${a[i % 26]}.${XDS_ZONE}`;
}
/** The address of client i's own name in generation g of the registry. */
const ownAddress = (i: number, g: number) => `10.${1 + (g % 200)}.${i >> 8}.${i & 255}`;

export interface XdsBenchDeps {
  children: Children;
  workDir: string;
  progress(msg: string): void;
  /** Throws once the bench's time budget is spent. */
  check(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function xdsBenchOptions(quick: boolean): XdsBenchOptions {
  return { quick, trials: quick ? 50 : 60, clients: 1000, rounds: quick ? 3 : 5, idleSeconds: quick ? 5 : 10 };
}


/** What the registry says in one state of the bench. */
interface RegistryState {
  apiPort: number;
  fanPort: number;
  /** Own names and their generation (their addresses change with it); 0 names: none listed. */
  own: number;
  generation: number;
}

/** The registry file, rewritten the way editors and ConfigMap updates do: written aside, renamed over. */
class RegistryFile {
  readonly path: string;
  constructor(readonly dir: string) {
    mkdirSync(dir, { recursive: true });
    this.path = join(dir, 'registry.yaml');
  }

  write(s: RegistryState): void {
    const lines = ['# canonport bench: xDS', 'hosts:', `  ${API}: [${BACKEND_HOST}]`, `  ${FAN}: [10.0.0.1]`];
    for (let i = 0; i < s.own; i++) lines.push(`  ${ownName(i)}: [${ownAddress(i, s.generation)}]`);
    lines.push('services:', '  api:', `    port: ${s.apiPort}`, '  fan:', `    port: ${s.fanPort}`);
    const aside = join(this.dir, '.registry.yaml.new');
    writeFileSync(aside, `${lines.join('\n')}\n`);
    renameSync(aside, this.path);
  }
}

/** The daemon: `canonport serve` on loopback ports, the xDS zone served, this registry. */
async function startDaemon(deps: XdsBenchDeps, registry: RegistryFile): Promise<{ server: Server; grpc: string; httpPort: number }> {
  const [dns, grpcPort, httpPort, nowhere] = [await deps.children.freePort(), await deps.children.freePort(), await deps.children.freePort(), await deps.children.freePort()];
  const args = ['serve', '--dns', `127.0.0.1:${dns}`, '--grpc', `127.0.0.1:${grpcPort}`, '--http', `127.0.0.1:${httpPort}`, '--zone', XDS_ZONE, '--upstream', `127.0.0.1:${nowhere}`, '--registry', registry.path];
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CANONPORT_')));
  const server = deps.children.spawnServer('canonport-xds', join(REPO_ROOT, 'bin', 'canonport.js'), args, dns, env);
  await waitForReadyz(server, httpPort, 20_000, 20);
  return { server, grpc: `127.0.0.1:${grpcPort}`, httpPort };
}

export async function runXdsBench(deps: XdsBenchDeps, opts: XdsBenchOptions): Promise<XdsBenchResult> {
  const { progress, check } = deps;
  const registry = new RegistryFile(join(deps.workDir, 'xds'));
  const backends: Backend[] = [];
  const notes: string[] = [];
  let state: RegistryState = { apiPort: 0, fanPort: 20_000, own: 0, generation: 0 };

  const a = await startBackend(BACKEND_HOST, 0);
  const b = await startBackend(BACKEND_HOST, 0);
  backends.push(a, b);
  state = { ...state, apiPort: a.port };
  registry.write(state);
  const daemon = await startDaemon(deps, registry);
  const pid = daemon.server.pid;
  const metrics = async () => (await httpGet(daemon.httpPort, '/metrics', 5000)).body;
  const cpuMs = () => (cpuSnapshot(pid).server ?? Number.NaN) * 10;
  progress(`xds: canonport serve (pid ${pid}) on gRPC ${daemon.grpc}, RSS ${readRss(pid).rssMiB.toFixed(1)} MiB`);

  // The bootstrap as a host gets it: `canonport xds-bootstrap --server ADDR`.
  const boot = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'canonport.js'), 'xds-bootstrap', '--server', daemon.grpc, '--node-id', 'bench'], { encoding: 'utf8', timeout: 15_000 });
  if (boot.status !== 0) throw new Error(`canonport xds-bootstrap failed: ${boot.stderr}`);
  const bootstrapPath = join(registry.dir, 'xds-bootstrap.json');
  writeFileSync(bootstrapPath, boot.stdout);

  const result: XdsBenchResult = {
    method: '',
    options: opts,
    daemon: { pid, grpc: daemon.grpc, rssMiBIdle: readRss(pid).rssMiB },
    pushLatency: { node: { error: 'not run' }, python: { error: 'not run' } },
    pushLatencySighup: { node: { error: 'not run' }, python: { error: 'not run' } },
    fanout: null,
    steady: null,
    notes,
  };
  result.method =
    `canonport serve in its own process; registry changes are file rewrites (written aside, renamed over: the daemon's watcher reloads ` +
    `after 200 ms of quiet), alone or with SIGHUP; push latency over ${opts.trials} trials per stock client, alternating api between two pinned ports; ` +
    `fan-out ${opts.clients} raw ADS clients on their own connections (4 types × 2 names, ACKing), ${opts.rounds} rounds per change; idle ${opts.idleSeconds} s`;

  /**
   * One trial series: pin api to the other port, time until `reaches(id)`
   * holds. `file`: the rewrite alone (the watcher reloads after 200 ms of
   * quiet); `sighup`: the rewrite and SIGHUP at once (the reload starts
   * then; the watcher's own reload follows, finds nothing changed and
   * sends nothing).
   */
  const latency = async (how: 'file' | 'sighup', reaches: (id: string) => Promise<boolean>): Promise<LatencyStats> => {
    const ms: number[] = [];
    let failed = 0;
    for (let i = 0; i < opts.trials; i++) {
      check();
      const to = [a, b][(i + 1) % 2]!;
      const start = performance.now();
      state = { ...state, apiPort: to.port };
      registry.write(state);
      if (how === 'sighup') process.kill(pid, 'SIGHUP');
      if (await reaches(to.id)) ms.push(performance.now() - start);
      else failed++;
      // The client's ACK lands and the watcher's reload passes before the next change, as between two edits.
      await sleep(how === 'sighup' ? 300 : 50);
    }
    return latencyStats(ms, failed);
  };

  try {
    // --- push latency, Node ---
    progress(`xds: push latency, Node (@grpc/grpc-js-xds), ${opts.trials} trials`);
    state = { ...state, apiPort: a.port };
    registry.write(state);
    process.env.GRPC_XDS_BOOTSTRAP = bootstrapPath;
    grpcXds.register();
    const node = new grpc.Client(`xds:///${API}`, grpc.credentials.createInsecure());
    const nodeUntil = async (id: string, limitMs = 5000) => {
      const deadline = performance.now() + limitMs;
      while (performance.now() < deadline) if ((await whoAmI(node, 1000)).id === id) return true;
      return false;
    };
    try {
      if (!(await nodeUntil(a.id, 20_000))) throw new Error('the Node client never reached the first backend');
      result.pushLatency.node = await latency('file', (id) => nodeUntil(id));
      result.pushLatencySighup.node = await latency('sighup', (id) => nodeUntil(id));
    } catch (err) {
      result.pushLatency.node = result.pushLatencySighup.node = { error: (err as Error).message };
    } finally {
      node.close();
    }
    progress(`xds: Node: file ${fmtLatency(result.pushLatency.node)}; SIGHUP ${fmtLatency(result.pushLatencySighup.node)}`);

    // --- push latency, Python ---
    let python: PythonXdsClient | undefined;
    try {
      requirePythonGrpc();
      check();
      progress(`xds: push latency, Python (python3-grpcio, C core), ${opts.trials} trials`);
      state = { ...state, apiPort: a.port };
      registry.write(state);
      python = new PythonXdsClient(`xds:///${API}`, bootstrapPath);
      const py = python;
      if (!(await py.until(a.id, 20_000)).ok) throw new Error(`the Python client never reached the first backend: ${py.stderr.slice(-5).join('\n')}`);
      result.pushLatency.python = await latency('file', async (id) => (await py.until(id, 5000)).ok);
      result.pushLatencySighup.python = await latency('sighup', async (id) => (await py.until(id, 5000)).ok);
    } catch (err) {
      result.pushLatency.python = result.pushLatencySighup.python = { error: (err as Error).message };
    } finally {
      python?.close();
    }
    progress(`xds: Python: file ${fmtLatency(result.pushLatency.python)}; SIGHUP ${fmtLatency(result.pushLatencySighup.python)}`);

    // --- fan-out ---
    check();
    const n = opts.clients;
    progress(`xds: fan-out, ${n} ADS clients on their own connections, 4 types × 2 names`);
    const reloadsOk = async () => {
      const m = /^canonport_config_reloads_total\{result="ok"\} (\d+)$/m.exec(await metrics());
      return Number(m?.[1] ?? 0);
    };
    const reloadsBefore = await reloadsOk();
    state = { ...state, own: n, generation: 0 };
    registry.write(state);
    for (const deadline = performance.now() + 20_000; (await reloadsOk()) <= reloadsBefore; ) {
      if (performance.now() > deadline) throw new Error('the daemon did not reload the fan-out registry within 20 s');
      await sleep(20);
    }
    await sleep(500);
    const setupCpu0 = cpuMs();
    const rssBefore = readRss(pid).rssMiB;
    const clients: FanClient[] = [];
    const connectStart = performance.now();
    try {
      for (let i = 0; i < n; i++) {
        clients.push(new FanClient(daemon.grpc, [FAN, ownName(i)]));
        if (i % 100 === 99) await sleep(1);
      }
      if (!(await allHave(clients, FAN, state.fanPort, 60_000))) throw new Error('not every fan-out client got the first answer');
      const allSubscribedMs = performance.now() - connectStart;
      await sleep(1000);
      const body = await metrics();
      result.fanout = {
        clients: n,
        streams: metricSum(body, 'canonport_xds_clients'),
        allSubscribedMs,
        setupDaemonCpuMs: cpuMs() - setupCpu0,
        rssMiBBefore: rssBefore,
        rssMiBAfter: readRss(pid).rssMiB,
        sharedName: [],
        everyName: [],
      };

      const round = async (change: () => void, done: () => boolean): Promise<FanRound> => {
        check();
        const body0 = await metrics();
        const cpu0 = cpuMs();
        const start = performance.now();
        change();
        for (const deadline = start + 30_000; !done(); ) {
          if (performance.now() > deadline) throw new Error('not every client got the change within 30 s');
          await sleep(2);
        }
        const last = Math.max(...clients.map((c) => c.lastChangeAt)) - start;
        await sleep(300);
        const body1 = await metrics();
        return {
          lastClientMs: last,
          daemonCpuMs: cpuMs() - cpu0,
          responses: metricSum(body1, 'canonport_xds_pushes_total') - metricSum(body0, 'canonport_xds_pushes_total'),
          resources: metricSum(body1, 'canonport_xds_resources_sent_total') - metricSum(body0, 'canonport_xds_resources_sent_total'),
        };
      };
      for (let r = 0; r < opts.rounds; r++) {
        const port = state.fanPort + 1;
        result.fanout.sharedName.push(
          await round(
            () => registry.write((state = { ...state, fanPort: port })),
            () => clients.every((c) => c.ports.get(FAN) === port),
          ),
        );
      }
      for (let r = 0; r < opts.rounds; r++) {
        const g = state.generation + 1;
        result.fanout.everyName.push(
          await round(
            () => registry.write((state = { ...state, generation: g })),
            () => clients.every((c, i) => c.endpoints.get(ownName(i))?.startsWith(`${ownAddress(i, g)}:`) === true),
          ),
        );
      }
      progress(`xds: fan-out: shared name p50 ${fmt(median(result.fanout.sharedName.map((x) => x.lastClientMs)))} ms, every name p50 ${fmt(median(result.fanout.everyName.map((x) => x.lastClientMs)))} ms`);

      // --- steady state ---
      check();
      progress(`xds: steady state, ${n} idle clients for ${opts.idleSeconds} s, then 10 reloads (SIGHUP) that change nothing`);
      const b0 = await metrics();
      const c0 = cpuMs();
      const clientResponses0 = clients.reduce((s, c) => s + c.responses, 0);
      const t0 = performance.now();
      await sleep(opts.idleSeconds * 1000);
      const idleMs = performance.now() - t0;
      const c1 = cpuMs();
      const b1 = await metrics();
      const idleClientResponses = clients.reduce((s, c) => s + c.responses, 0) - clientResponses0;
      const r0 = await reloadsOk();
      for (let k = 0; k < 10; k++) {
        process.kill(pid, 'SIGHUP');
        for (const deadline = performance.now() + 10_000; (await reloadsOk()) < r0 + k + 1; ) {
          if (performance.now() > deadline) throw new Error('a SIGHUP reload did not complete within 10 s');
          await sleep(5);
        }
      }
      // Each reload re-looks up every subscribed name (over a thousand): let them finish.
      await sleep(2000);
      const b2 = await metrics();
      result.steady = {
        idleSeconds: opts.idleSeconds,
        idleResponses: metricSum(b1, 'canonport_xds_pushes_total') - metricSum(b0, 'canonport_xds_pushes_total'),
        idleClientResponses,
        idleDaemonCpuPct: ((c1 - c0) / idleMs) * 100,
        noopReloads: 10,
        noopReloadResponses: metricSum(b2, 'canonport_xds_pushes_total') - metricSum(b1, 'canonport_xds_pushes_total'),
        noopReloadDaemonCpuMs: cpuMs() - c1,
        nacks: metricSum(b2, 'canonport_xds_nacks_total'),
        rssMiB: readRss(pid).rssMiB,
      };
      progress(`xds: steady: ${result.steady.idleResponses} responses while idle, ${result.steady.noopReloadResponses} after 10 no-op reloads`);
    } finally {
      for (const c of clients) c.close();
    }
  } finally {
    for (const bk of backends) bk.stop();
    await deps.children.stop(daemon.server);
  }
  return result;
}

