import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { xdsBootstrap } from '../src/xds/bootstrap.js';
import { startBackend, whoAmI, type Backend } from '../test/helpers/xds-backend.js';
import { PythonXdsClient, requirePythonGrpc } from '../test/helpers/xds-python.js';
import type { ControlRequest, ControlStats } from './xds-control-plane.js';
import { allHave, FanClient } from './xds-fanout.js';

/**
 * `npm run bench:xds`: the xDS control plane (issue 15), in its own process
 * with the in-memory discovery, measured from stock clients.
 *
 * - Push latency: the discovery moves a service to another port; time until
 *   a stock client's next call is answered by the backend on the new port
 *   (push, client update, connect, call). Node (@grpc/grpc-js-xds) and
 *   Python (python3-grpcio, C core), alternating between two ports.
 * - Fan-out: N raw ADS clients (own connections, all four types, ACKing)
 *   share one name and each watch one of their own; time until the last has
 *   a change of the shared name, and of all N own names in one reload; the
 *   control plane's CPU and memory for it.
 * - Steady state: the same N clients idle, then reloads that change
 *   nothing: responses sent (should be 0) and CPU.
 *
 * Figures only: targets (issue 15: p99 ≤ 1 s for a registry change) are
 * reported, never asserted. Written to bench-results/xds-latest.json.
 */

const USAGE = `usage: npm run bench:xds -- [--quick] [--json] [--trials N] [--clients N]

  --quick       20 latency trials, 3 fan-out rounds, 3 s idle (default 60, 5, 10 s)
  --trials N    push-latency trials per client (≥ 50 for the issue's p99)
  --clients N   fan-out clients (default 1000)
  --json        print the result as JSON on stdout`;

const NAME = 'api.cluster-1.example.com';
const FAN = 'fan.cluster-1.example.com';
const ownName = (i: number) => `own${i}.cluster-1.example.com`;

const t0 = performance.now();
const progress = (msg: string) => process.stderr.write(`[bench:xds +${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function summary(ms: number[]): { n: number; p50: number; p99: number; max: number; min: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, min: s[0] ?? Number.NaN, p50: percentile(s, 50), p99: percentile(s, 99), max: s.at(-1) ?? Number.NaN };
}

/** The control plane's child process and a request/reply channel to it. */
class ControlPlane {
  private nextId = 1;
  private readonly waiting = new Map<number, (m: Record<string, unknown>) => void>();
  private constructor(
    readonly proc: ChildProcess,
    readonly address: string,
  ) {
    proc.on('message', (m: Record<string, unknown>) => {
      const w = this.waiting.get(m.id as number);
      this.waiting.delete(m.id as number);
      w?.(m);
    });
  }

  static async start(): Promise<ControlPlane> {
    const script = fileURLToPath(new URL('./xds-control-plane.js', import.meta.url));
    const proc = fork(script, [], { execArgv: ['--expose-gc', ...(process.env.XDS_BENCH_PROF ? ['--cpu-prof', '--cpu-prof-dir=bench-results/prof'] : [])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const address = await new Promise<string>((resolve, reject) => {
      proc.once('message', (m: { ready?: boolean; address?: string }) => (m.ready ? resolve(m.address!) : reject(new Error('control plane did not start'))));
      proc.once('exit', (code) => reject(new Error(`control plane exited (${code})`)));
    });
    return new ControlPlane(proc, address);
  }

  ask(req: ControlRequest extends infer R ? (R extends ControlRequest ? Omit<R, 'id'> : never) : never): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.proc.send({ ...req, id });
    });
  }

  async stats(): Promise<ControlStats> {
    return (await this.ask({ op: 'stats' })).stats as ControlStats;
  }

  stop(): void {
    this.proc.disconnect();
  }
}

interface Options {
  quick: boolean;
  json: boolean;
  trials: number;
  clients: number;
  rounds: number;
  idleSeconds: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      trials: { type: 'string' },
      clients: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const quick = values.quick ?? false;
  const int = (v: string | undefined, dflt: number, min: number, max: number, flag: string) => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${flag} must be a whole number from ${min} to ${max}`);
    return n;
  };
  return {
    quick,
    json: values.json ?? false,
    trials: int(values.trials, quick ? 20 : 60, 1, 10_000, '--trials'),
    clients: int(values.clients, 1000, 1, 10_000, '--clients'),
    rounds: quick ? 3 : 5,
    idleSeconds: quick ? 3 : 10,
  };
}

/** Push latency as a stock client sees it: change → first call answered on the new port. */
async function latency(
  cp: ControlPlane,
  backends: [Backend & { port: number }, Backend & { port: number }],
  trials: number,
  callUntil: (id: string) => Promise<boolean>,
): Promise<{ ms: number[]; failed: number }> {
  const ms: number[] = [];
  let failed = 0;
  for (let i = 0; i < trials; i++) {
    const to = backends[(i + 1) % 2]!;
    const start = performance.now();
    await cp.ask({ op: 'set', name: NAME, port: to.port, addresses: ['127.0.0.2'] });
    const ok = await callUntil(to.id);
    if (ok) ms.push(performance.now() - start);
    else failed++;
    // Let the ACKs land before the next change, as between two real reloads.
    await sleep(30);
  }
  return { ms, failed };
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench:xds: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const result: Record<string, unknown> = {
    startedAt: new Date().toISOString(),
    options: opts,
    host: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', load: os.loadavg() },
  };
  const cp = await ControlPlane.start();
  const outDir = join(fileURLToPath(new URL('../..', import.meta.url)), 'bench-results');
  mkdirSync(outDir, { recursive: true });
  const bootstrapPath = join(outDir, 'xds-bootstrap.json');
  writeFileSync(bootstrapPath, JSON.stringify(xdsBootstrap({ server: cp.address, nodeId: 'bench' })));
  const idle = await cp.stats();
  result.controlPlaneIdle = { rssMiB: idle.rss / 2 ** 20, heapMiB: idle.heapUsed / 2 ** 20 };

  const a = await startBackend('127.0.0.2', 0);
  const b = await startBackend('127.0.0.2', 0);
  await cp.ask({ op: 'set', name: NAME, port: a.port, addresses: ['127.0.0.2'] });

  // --- push latency, Node ---
  progress(`push latency: Node (@grpc/grpc-js-xds), ${opts.trials} trials`);
  process.env.GRPC_XDS_BOOTSTRAP = bootstrapPath;
  grpcXds.register();
  const node = new grpc.Client(`xds:///${NAME}`, grpc.credentials.createInsecure());
  const nodeUntil = async (id: string) => {
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline) if ((await whoAmI(node, 1000)).id === id) return true;
    return false;
  };
  if (!(await nodeUntil(a.id))) throw new Error('the Node client never reached the first backend');
  const nodeLat = await latency(cp, [a, b], opts.trials, nodeUntil);
  node.close();
  result.pushLatencyNode = { ...summary(nodeLat.ms), failed: nodeLat.failed, samplesMs: nodeLat.ms.map((x) => Math.round(x * 10) / 10) };

  // --- push latency, Python ---
  let python: PythonXdsClient | undefined;
  try {
    requirePythonGrpc();
    progress(`push latency: Python (python3-grpcio, C core), ${opts.trials} trials`);
    await cp.ask({ op: 'set', name: NAME, port: a.port, addresses: ['127.0.0.2'] });
    python = new PythonXdsClient(`xds:///${NAME}`, bootstrapPath);
    if (!(await python.until(a.id, 20_000)).ok) throw new Error(`the Python client never reached the first backend: ${python.stderr.slice(-5).join('\n')}`);
    const py = python;
    const pyLat = await latency(cp, [a, b], opts.trials, async (id) => (await py.until(id, 5000)).ok);
    result.pushLatencyPython = { ...summary(pyLat.ms), failed: pyLat.failed, samplesMs: pyLat.ms.map((x) => Math.round(x * 10) / 10) };
  } catch (err) {
    result.pushLatencyPython = { error: (err as Error).message };
    progress(`Python skipped: ${(err as Error).message}`);
  } finally {
    python?.close();
  }
  a.stop();
  b.stop();

  // --- fan-out ---
  const n = opts.clients;
  progress(`fan-out: ${n} ADS clients, each on its own connection, 4 types × 2 names`);
  let fanPort = 20_000;
  await cp.ask({ op: 'setMany', entries: [[FAN, fanPort, ['10.0.0.1']], ...Array.from({ length: n }, (_, i): [string, number, string[]] => [ownName(i), 30_000, [`10.1.${i >> 8}.${i & 255}`]])] });
  await cp.ask({ op: 'gc' });
  const beforeClients = await cp.stats();
  const clients: FanClient[] = [];
  const connectStart = performance.now();
  for (let i = 0; i < n; i++) {
    clients.push(new FanClient(cp.address, [FAN, ownName(i)]));
    if (i % 100 === 99) await sleep(1); // let the event loop breathe while opening connections
  }
  if (!(await allHave(clients, FAN, fanPort, 60_000))) throw new Error('not every fan-out client got the first answer');
  const connectMs = performance.now() - connectStart;
  await sleep(500);
  await cp.ask({ op: 'gc' });
  const connected = await cp.stats();
  result.fanoutSetup = {
    clients: n,
    streams: connected.streams,
    names: connected.names,
    allSubscribedMs: connectMs,
    controlPlaneCpuMs: (connected.cpuUs - beforeClients.cpuUs) / 1000,
    rssMiBBefore: beforeClients.rss / 2 ** 20,
    rssMiBAfter: connected.rss / 2 ** 20,
    heapKiBPerClient: (connected.heapUsed - beforeClients.heapUsed) / 1024 / n,
    rssKiBPerClient: (connected.rss - beforeClients.rss) / 1024 / n,
  };

  const shared: Array<Record<string, number>> = [];
  for (let r = 0; r < opts.rounds; r++) {
    fanPort++;
    const s0 = await cp.stats();
    const start = performance.now();
    await cp.ask({ op: 'set', name: FAN, port: fanPort, addresses: ['10.0.0.1'] });
    if (!(await allHave(clients, FAN, fanPort, 30_000))) throw new Error(`round ${r}: not every client got the change`);
    const last = Math.max(...clients.map((c) => c.lastChangeAt)) - start;
    await sleep(200);
    const s1 = await cp.stats();
    shared.push({ lastClientMs: last, lastWrittenMs: s1.lastPushAt - (performance.timeOrigin + start), controlPlaneCpuMs: (s1.cpuUs - s0.cpuUs) / 1000, responses: s1.pushes - s0.pushes, resources: s1.resourcesSent - s0.resourcesSent, lookups: s1.lookups - s0.lookups, rssMiB: s1.rss / 2 ** 20 });
  }
  result.fanoutSharedName = shared;

  const reload: Array<Record<string, number>> = [];
  for (let r = 0; r < opts.rounds; r++) {
    const port = 30_001 + r;
    const s0 = await cp.stats();
    const start = performance.now();
    await cp.ask({ op: 'setMany', entries: Array.from({ length: n }, (_, i): [string, number, string[]] => [ownName(i), port, [`10.1.${i >> 8}.${i & 255}`]]) });
    const ok = await (async () => {
      const deadline = performance.now() + 30_000;
      while (performance.now() < deadline) {
        if (clients.every((c, i) => c.ports.get(ownName(i)) === port)) return true;
        await sleep(2);
      }
      return false;
    })();
    if (!ok) throw new Error(`reload round ${r}: not every client got its change`);
    const last = Math.max(...clients.map((c) => c.lastChangeAt)) - start;
    await sleep(200);
    const s1 = await cp.stats();
    reload.push({ lastClientMs: last, lastWrittenMs: s1.lastPushAt - (performance.timeOrigin + start), controlPlaneCpuMs: (s1.cpuUs - s0.cpuUs) / 1000, responses: s1.pushes - s0.pushes, resources: s1.resourcesSent - s0.resourcesSent, lookups: s1.lookups - s0.lookups });
  }
  result.fanoutReloadAllNames = reload;

  // --- steady state ---
  progress(`steady state: ${n} idle clients for ${opts.idleSeconds} s, then 10 reloads that change nothing`);
  const i0 = await cp.stats();
  const responsesBefore = clients.reduce((s, c) => s + c.responses, 0);
  await sleep(opts.idleSeconds * 1000);
  const i1 = await cp.stats();
  for (let k = 0; k < 10; k++) await cp.ask({ op: 'changed' });
  const wantLookups = i1.lookups + 10 * (n + 1);
  for (const deadline = performance.now() + 30_000; performance.now() < deadline; ) {
    if ((await cp.stats()).lookups >= wantLookups) break;
    await sleep(20);
  }
  await sleep(300);
  const i2 = await cp.stats();
  result.steadyState = {
    idleSeconds: opts.idleSeconds,
    idleResponses: i1.pushes - i0.pushes,
    idleControlPlaneCpuPct: ((i1.cpuUs - i0.cpuUs) / 1e6 / opts.idleSeconds) * 100,
    noopReloads: 10,
    noopReloadLookups: i2.lookups - i1.lookups,
    noopReloadResponses: i2.pushes - i1.pushes,
    noopReloadCpuMs: (i2.cpuUs - i1.cpuUs) / 1000,
    clientSideResponsesWhileIdle: clients.reduce((s, c) => s + c.responses, 0) - responsesBefore,
    nacks: i2.nacks,
    rssMiB: i2.rss / 2 ** 20,
  };

  for (const c of clients) c.close();
  cp.stop();
  result.finishedAt = new Date().toISOString();
  writeFileSync(join(outDir, 'xds-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(render(result));
  return 0;
}

const f = (x: unknown, d = 1) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : String(x));

function render(r: Record<string, unknown>): string {
  const lines: string[] = [];
  const lat = (label: string, v: unknown) => {
    const s = v as { n?: number; p50?: number; p99?: number; max?: number; failed?: number; error?: string };
    lines.push(s.error ? `  ${label}: not measured (${s.error})` : `  ${label}: n=${s.n} p50 ${f(s.p50)} ms  p99 ${f(s.p99)} ms  max ${f(s.max)} ms  failed ${s.failed}   (target p99 ≤ 1000 ms)`);
  };
  lines.push('xDS push latency (discovery change → a stock client’s call answered on the new port)');
  lat('Node   @grpc/grpc-js-xds', r.pushLatencyNode);
  lat('Python grpcio C core   ', r.pushLatencyPython);
  const setup = r.fanoutSetup as Record<string, number>;
  lines.push(`Fan-out: ${setup.clients} ADS clients (own connections, 4 types × 2 names): all subscribed in ${f(setup.allSubscribedMs, 0)} ms, control plane ${f(setup.controlPlaneCpuMs, 0)} ms CPU, RSS ${f(setup.rssMiBBefore)} → ${f(setup.rssMiBAfter)} MiB (${f(setup.rssKiBPerClient)} KiB/client, heap ${f(setup.heapKiBPerClient)} KiB/client)`);
  const rows = (label: string, v: unknown) => {
    const rs = v as Array<Record<string, number>>;
    const last = summary(rs.map((x) => x.lastClientMs!));
    const written = summary(rs.map((x) => x.lastWrittenMs!));
    const cpu = summary(rs.map((x) => x.controlPlaneCpuMs!));
    lines.push(`  ${label}: last response written after p50 ${f(written.p50)} ms, last client has it after p50 ${f(last.p50)} ms (max ${f(last.max)}); control plane CPU p50 ${f(cpu.p50)} ms; responses/round ${rs.map((x) => x.responses).join(',')}; lookups/round ${rs.map((x) => x.lookups).join(',')}`);
  };
  rows('one shared name changes      ', r.fanoutSharedName);
  rows('a reload changes all own names', r.fanoutReloadAllNames);
  const st = r.steadyState as Record<string, number>;
  lines.push(
    `Steady state: ${st.idleSeconds} s idle → ${st.idleResponses} responses, control plane ${f(st.idleControlPlaneCpuPct, 2)} % CPU; ${st.noopReloads} reloads changing nothing → ${st.noopReloadLookups} lookups, ${st.noopReloadResponses} responses, ${f(st.noopReloadCpuMs, 0)} ms CPU; NACKs ${st.nacks}; RSS ${f(st.rssMiB)} MiB`,
  );
  const host = r.host as { cpus: number; cpuModel: string; load: number[] };
  lines.push(`(host: ${host.cpus} × ${host.cpuModel}, load ${host.load.map((x) => x.toFixed(2)).join(' ')}; bench-results/xds-latest.json)`);
  return `${lines.join('\n')}\n`;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench:xds: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
