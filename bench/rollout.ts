import { Resolver } from 'node:dns/promises';
import { createServer, type Server as HttpServer } from 'node:http';
import os from 'node:os';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { DNS_PORT, ZONE } from '../test/helpers/cluster-lab.js';
import { REPO } from '../test/helpers/serve-process.js';
import { clients, type Tally } from '../test/helpers/rollout-clients.js';
import { API, LEASE_TTL_MS, startRolloutLab, type RolloutLab } from '../test/helpers/rollout-lab.js';
import type { Children } from './children.js';
import { answerCostRows } from './cluster-bench.js';
import type { AnswerCostRow } from './cluster-report.js';
import { percentile } from './dnsperf.js';

/**
 * `npm run bench -- --only rollout` (issue 20): the figures the issue asks
 * for, on the lab of test/rollout-netns.test.ts (four hosts in network
 * namespaces, real etcd, daemons on port 53, real clients):
 *
 * - failed requests per client kind during a rolling deploy of three hosts
 *   (drain --wait, stop, start, 1.5 s warm-up, next host); target 0;
 * - a daemon restart (SIGTERM, and SIGKILL then start): failed requests and
 *   how long host 0 was absent from host 3's answers; target 0 and 0 ms;
 * - readiness reaching another host (ready → in its answers, not ready →
 *   out), p50/p99 over the trials, default settings; target p99 ≤ 1.5 s;
 * - answer q/s with 10 instances against a canonical answer, same run
 *   (dnsperf, cluster-bench's answer-cost rows); target ≥ 0.8×;
 * - the prober's CPU with 20 and 200 probed HTTP listeners at the default
 *   interval, against the same process idle in the same run.
 *
 * Timings on a shared machine are noisy: the load average rides along.
 */

/** The parts of the section, in the order they run (`--rollout-parts`). */
export const ROLLOUT_PARTS = ['probe-cpu', 'deploy', 'restarts', 'convergence', 'answers'] as const;
export type RolloutPart = (typeof ROLLOUT_PARTS)[number];

export interface RolloutBenchOptions {
  /** Readiness flips each way (50 by default, 10 with --quick). */
  trials: number;
  seconds: number;
  cpuSeconds: number;
  workDir: string;
  /** Default: every part. */
  parts?: readonly RolloutPart[] | undefined;
}

export interface RolloutBenchResult {
  load: { start: number; end: number };
  deploy: { ms: number; clients: Record<string, Tally> } | null;
  restarts: { signal: string; absentMs: number; checks: number; clients: Record<string, Tally> }[];
  convergence: { in: { p50: number; p99: number; n: number } | null; out: { p50: number; p99: number; n: number } | null };
  answerCost: AnswerCostRow[];
  probeCpu: ({ listeners: number; intervalMs: number } & ProberCost)[];
  errors: string[];
}

const POLL_MS = 10;

export async function runRolloutBench(o: RolloutBenchOptions, progress: (m: string) => void, children: Children): Promise<RolloutBenchResult> {
  const r: RolloutBenchResult = { load: { start: os.loadavg()[0]!, end: 0 }, deploy: null, restarts: [], convergence: { in: null, out: null }, answerCost: [], probeCpu: [], errors: [] };
  const want = (part: RolloutPart) => (o.parts ?? ROLLOUT_PARTS).includes(part);
  if (want('probe-cpu')) {
    try {
      r.probeCpu = await probeCpu(o.cpuSeconds, progress);
    } catch (err) {
      r.errors.push(`probe cpu: ${(err as Error).message}`);
    }
  }
  if (!want('deploy') && !want('restarts') && !want('convergence') && !want('answers')) {
    r.load.end = os.loadavg()[0]!;
    return r;
  }
  if (process.getuid?.() !== 0) {
    r.errors.push('the rollout bench needs root (network namespaces)');
    return r;
  }
  progress('rollout: starting etcd and four hosts (network namespaces)');
  const rl = await startRolloutLab();
  try {
    await Promise.all(rl.hosts.map((_, i) => rl.deploy(i, 1)));
    await rl.untilServing();
    const step = async (what: string, fn: () => Promise<void>) => {
      try {
        await fn();
      } catch (err) {
        r.errors.push(`${what}: ${(err as Error).message}`);
        progress(`rollout: ${what} failed: ${(err as Error).message}`);
      }
    };
    if (want('deploy')) await step('rolling deploy', async () => {
      progress('rollout: a rolling deploy of three hosts under four kinds of client');
      const running = await clients(rl.client, { api: API });
      const t0 = Date.now();
      await rl.rollingDeploy(2);
      r.deploy = { ms: Date.now() - t0, clients: await running.stop() };
    });
    for (const signal of want('restarts') ? (['SIGTERM', 'SIGKILL'] as const) : []) {
      await step(`restart ${signal}`, async () => {
        progress(`rollout: host-0's daemon ${signal}, then started again`);
        const running = await clients(rl.client, { api: API });
        const watch = absence(rl);
        await rl.restartDaemon(0, signal);
        // Past the old process's lease TTL.
        await new Promise((res) => setTimeout(res, LEASE_TTL_MS + 1_000));
        const seen = await watch.stop();
        r.restarts.push({ signal, ...seen, clients: await running.stop() });
      });
    }
    if (want('convergence')) await step('convergence', async () => {
      progress(`rollout: readiness convergence, ${o.trials} trials each way`);
      r.convergence = await convergence(rl, o.trials);
    });
    if (want('answers')) await step('answer cost', async () => {
      progress('rollout: answer q/s with 10 instances against a canonical answer (dnsperf)');
      r.answerCost = await answerCostRows(rl.lab, rl.daemons[3]!, { seconds: o.seconds, workDir: o.workDir }, children, progress);
    });
  } finally {
    await rl.stop();
    r.load.end = os.loadavg()[0]!;
  }
  return r;
}

function resolverAt(host: string): Resolver {
  const res = new Resolver({ timeout: 500, tries: 1 });
  res.setServers([`${host}:${DNS_PORT}`]);
  return res;
}

async function srvNodes(res: Resolver, name: string): Promise<string[]> {
  try {
    return (await res.resolveSrv(name)).map((s) => s.name.split('.')[0]!).sort();
  } catch {
    return [];
  }
}

/** Polls host 3's answers for api; the longest stretch without host-0, and how many checks. */
function absence(rl: RolloutLab): { stop(): Promise<{ absentMs: number; checks: number }> } {
  const res = resolverAt(rl.client.address);
  let running = true;
  let checks = 0;
  let absentMs = 0;
  let since: number | undefined;
  const loop = (async () => {
    while (running) {
      checks++;
      const has = (await srvNodes(res, `api.${ZONE}`)).includes('host-0');
      const now = Date.now();
      if (!has) since ??= now;
      else if (since !== undefined) {
        absentMs = Math.max(absentMs, now - since);
        since = undefined;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    if (since !== undefined) absentMs = Math.max(absentMs, Date.now() - since);
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { absentMs, checks };
    },
  };
}

/** Flips host 0's api readiness (SIGUSR2: /readyz 503 ↔ 200) and times how long host 3's answers take to follow. */
async function convergence(rl: RolloutLab, trials: number): Promise<RolloutBenchResult['convergence']> {
  const res = resolverAt(rl.client.address);
  const api = rl.backends.get('api-0')!;
  const ins: number[] = [];
  const outs: number[] = [];
  for (let t = 0; t < trials; t++) {
    for (const [want, into] of [[false, outs], [true, ins]] as const) {
      api.signal('SIGUSR2');
      const t0 = Date.now();
      for (;;) {
        if ((await srvNodes(res, `api.${ZONE}`)).includes('host-0') === want) break;
        if (Date.now() - t0 > 15_000) throw new Error(`host-0 ${want ? 'never came back' : 'never left'} within 15 s (trial ${t})`);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
      into.push(Date.now() - t0);
      // A random pause, so flips land anywhere in the probe's interval.
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 400));
    }
  }
  const stats = (xs: number[]) => ({ p50: percentile(xs, 50), p99: percentile(xs, 99), n: xs.length });
  return { in: stats(ins), out: stats(outs) };
}

/**
 * The prober alone, in a process of its own (the built dist/, as the daemon
 * runs it), against N real HTTP listeners served from this process, at the
 * default interval; the same process with the prober idle is the reference.
 */
async function probeCpu(seconds: number, progress: (m: string) => void): Promise<RolloutBenchResult['probeCpu']> {
  const out: RolloutBenchResult['probeCpu'] = [];
  const servers: HttpServer[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      const s = createServer((req, res) => res.end(req.url === '/readyz' ? 'ok' : 'x'));
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      servers.push(s);
    }
    const ports = servers.map((s) => (s.address() as { port: number }).port);
    for (const n of [20, 200]) {
      progress(`rollout: prober CPU with ${n} HTTP listeners, ${seconds} s`);
      out.push({ listeners: n, intervalMs: 1000, ...(await proberChild(ports.slice(0, n), seconds)) });
    }
  } finally {
    for (const s of servers) s.close();
  }
  return out;
}

const PROBER_CHILD = `
const { ReadinessProber, readyRule } = await import(process.argv[1]);
const { readFileSync } = await import('node:fs');
const ports = JSON.parse(process.argv[2]);
const ms = Number(process.argv[3]) * 1000;
// Context switches of the main thread: how often the event loop woke.
const switches = () => {
  const t = readFileSync('/proc/self/task/' + process.pid + '/status', 'utf8');
  return Number(/^voluntary_ctxt_switches:\\s+(\\d+)/m.exec(t)?.[1] ?? 0) + Number(/^nonvoluntary_ctxt_switches:\\s+(\\d+)/m.exec(t)?.[1] ?? 0);
};
let wakeups = 0;
const measure = async () => {
  const a = process.cpuUsage();
  const s0 = switches();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const d = process.cpuUsage(a);
  const elapsed = performance.now() - t0;
  wakeups = Number((((switches() - s0) / elapsed) * 1000).toFixed(1));
  return Number((((d.user + d.system) / 1000 / elapsed) * 100).toFixed(3));
};
const idlePercent = await measure();
const idleWakeups = wakeups;
const p = new ReadinessProber({ intervalMs: () => 1000, timeoutMs: () => 500, onVerdict: () => undefined });
p.reconcile(ports.map((port) => ({ port, address: '127.0.0.1', life: String(port), rule: readyRule(undefined) })));
// The first round detects (gRPC, then HTTP); the steady state is what costs.
await new Promise((r) => setTimeout(r, 3000));
const cpuPercent = await measure();
p.close();
console.log(JSON.stringify({ cpuPercent, idlePercent, wakeupsPerSec: wakeups, idleWakeupsPerSec: idleWakeups }));
`;

type ProberCost = { cpuPercent: number; idlePercent: number; wakeupsPerSec: number; idleWakeupsPerSec: number };

function proberChild(ports: number[], seconds: number): Promise<ProberCost> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', PROBER_CHILD, join(REPO, 'dist', 'inventory', 'readiness.js'), JSON.stringify(ports), String(seconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.once('exit', (code) => {
      try {
        resolve(JSON.parse(out.trim().split('\n').at(-1)!) as ProberCost);
      } catch {
        reject(new Error(`prober child exited ${code}: ${err}`));
      }
    });
  });
}

/** Lines for the bench's text report. */
export function formatRollout(r: RolloutBenchResult): string[] {
  const lines = [`rollout (issue 20; load ${r.load.start.toFixed(2)} → ${r.load.end.toFixed(2)}, a shared machine):`];
  const tallies = (c: Record<string, Tally>) => Object.entries(c).map(([k, t]) => `${k} ${t.failed} failed of ${t.ok + t.failed}`).join('; ');
  if (r.deploy) lines.push(`  rolling deploy of 3 hosts (${(r.deploy.ms / 1000).toFixed(1)} s): ${tallies(r.deploy.clients)}  [target 0 failed]`);
  for (const x of r.restarts) lines.push(`  daemon ${x.signal} and restart: host-0 absent ${x.absentMs} ms (${x.checks} checks); ${tallies(x.clients)}  [target 0 ms, 0 failed]`);
  const c = r.convergence;
  if (c.in && c.out) lines.push(`  readiness to another host: ready→in p50 ${c.in.p50} ms p99 ${c.in.p99} ms, not ready→out p50 ${c.out.p50} ms p99 ${c.out.p99} ms (n=${c.in.n} each)  [target p99 ≤ 1500 ms]`);
  const canonical = r.answerCost.find((x) => x.label === 'canonical' && x.transport === 'udp')?.qps;
  const ten = r.answerCost.find((x) => x.instances === 10)?.qps;
  if (canonical && ten) lines.push(`  answers: 10 instances ${Math.round(ten)} q/s vs canonical ${Math.round(canonical)} q/s = ${(ten / canonical).toFixed(2)}×  [target ≥ 0.8×]`);
  for (const p of r.probeCpu) lines.push(`  prober, ${p.listeners} HTTP listeners every ${p.intervalMs} ms: ${p.cpuPercent}% of a core, ${p.wakeupsPerSec} wake-ups/s (the same process idle: ${p.idlePercent}%, ${p.idleWakeupsPerSec}/s)`);
  for (const e of r.errors) lines.push(`  error: ${e}`);
  return lines;
}
