import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { Children, type Server } from './children.js';
import { cpuSnapshot, cpuUse } from './cpu.js';
import { TYPE_A, TYPE_SRV } from './dns-wire.js';
import { percentile, runDnsperf, type DnsperfRun } from './dnsperf.js';
import {
  BENCH_ZONE,
  COLD_ZONE,
  FWD_ZONE,
  GRPC_NAME,
  RSS_NAMES,
  SRV_NAMES,
  benchRegistry,
  canonicalSrv,
  COLD_WARM_NAMES,
  coldSet,
  queryFile,
  rssQueries,
  serviceLabelAt,
  srvQueries,
  srvRecords,
} from './fixtures.js';
import { grpcLoad, grpcResolveOnce, mergeLoads } from './grpc-load.js';
import { runClusterBench } from './cluster-bench.js';
import { runUiBench } from './ui.js';
import { ROLLOUT_PARTS, runRolloutBench, type RolloutPart } from './rollout.js';
import { runContainersBench } from './containers.js';
import { askDns, httpGet, metricValue, readRss } from './probe.js';
import {
  CANONPORT,
  CANONPORT_WORKERS,
  WORKERS,
  DGRAM_BARE,
  DNS2_PLAIN,
  DNSMASQ,
  UNBOUND,
  evaluateTargets,
  renderReport,
  type BenchResult,
  type DnsScenarioId,
  type DnsScenarioResult,
  type GrpcResult,
  type ServerResult,
} from './report.js';
import { runIdleBench } from './idle.js';
import { LATENCY_PARTS, runLatencyBench, type LatencyPart } from './latency.js';
import { runXdsBench, xdsBenchOptions } from './xds-daemon.js';
import {
  INSTALL_COMMAND,
  REPO_ROOT,
  Servers,
  TOOL_PACKAGES,
  canonportServeAvailable,
  toolVersion,
  type CanonportInstance,
} from './servers.js';

/**
 * `npm run bench`: canonport against unbound, dnsmasq, a plain dns2 handler
 * and a bare dgram socket, all serving the same answers, driven by dnsperf
 * in the same run; gRPC Resolve against a no-op grpc-js handler; the
 * daemon's RSS with 100k cached names and its time to first answer; the
 * xDS control plane inside the daemon (bench/xds-daemon.ts) with stock
 * gRPC clients. Issues 5 and 15 have the targets; they are reported here,
 * never asserted by tests.
 */

/** Names per ResolveMany call in the batching row. */
const GRPC_BATCH = 100;

const SCENARIOS = ['canonical', 'cached', 'cold', 'grpc', 'rss', 'startup', 'xds', 'latency', 'idle', 'cluster', 'ui', 'rollout', 'containers'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** Run unless --only names others. `cluster` needs root and takes minutes, `ui` Chromium: only when asked for. */
const DEFAULT_SCENARIOS: readonly Scenario[] = SCENARIOS.filter((s) => s !== 'cluster' && s !== 'ui' && s !== 'rollout' && s !== 'containers');

const USAGE = `usage: npm run bench -- [--quick] [--json] [--only SCENARIO[,SCENARIO…]] [--seconds N]

  --quick       3 s per dnsperf run instead of 10 (whole bench ≤ ~90 s)
  --json        print the result as JSON on stdout (the tables go to stderr)
  --only        run some scenarios: ${SCENARIOS.join(', ')}
                (cluster, issue 14: only when named; needs root, etcd-server, dnsperf, dig)
                (ui, issue 25: only when named; needs etcd-server and chromium)
                (rollout, issue 20: only when named; needs root, etcd-server, dnsperf, dig, curl, python3-grpcio)
                (containers, issue 26: only when named; needs root, etcd-server, util-linux's nsenter)
                (latency, issue 24: fixed rates beside unbound, cluster answers (needs etcd-server), runs from /readyz,
                where the slow 1 % goes: daemons under --cpu-prof, each stretch of work put down to its cause)
                (idle, issue 24: needs root and etcd-server; 60 s, 20 s with --quick)
  --seconds N   seconds per dnsperf throughput run
  --baseline DIR  another checkout of canonport, built (npm ci): its daemon runs beside this one
                in the canonical, cached, idle and latency sections, in the same window (before/after figures);
                in containers, its daemon's idle CPU on the same host with the same containers, just after this one's,
                and its late binds' convergence
  --rollout-parts LIST  the parts of the rollout section to run: ${ROLLOUT_PARTS.join(', ')}
                (default all; \`convergence,probe-cpu\` is the readiness schedule's figures alone)
  --latency-parts LIST  the parts of the latency section to run: ${LATENCY_PARTS.join(', ')}
                (default all; \`cluster\` is the answers under listener churn alone; \`attribution,cluster\` where their slow 1 % goes)
  --idle-settle S  seconds the idle section waits after every daemon is ready before its window (default 30, 8 with --quick),
                and the containers section before each of its idle windows;
                V8's memory reducer makes its major collections in the first ~70 s after start (docs/performance.md),
                so 120 measures the steady state the fleet pays for, 30 includes that one-off

Results are always written to bench-results/latest.json.
Needs dnsperf and unbound (dnsmasq optional): ${INSTALL_COMMAND}
(grpc and xds need neither; xds also runs Debian's python3-grpcio for /usr/bin/python3)`;

interface Options {
  quick: boolean;
  json: boolean;
  only: Scenario[];
  seconds: number;
  pacedQps: number;
  pacedSeconds: number;
  pacedRuns: number;
  grpcMs: number;
  budgetMs: number;
  rssSeconds: number;
  idleSeconds: number;
  /** The idle section's wait between every daemon ready and its window (--idle-settle). */
  idleSettleSeconds: number;
  baseline: { dir: string; label: string } | undefined;
  rolloutParts: RolloutPart[];
  latencyParts: LatencyPart[];
}

/** A `--<section>-parts` list: the parts named, each one of `all` (default all). */
function partsOf<P extends string>(section: string, value: string | undefined, all: readonly P[]): P[] {
  const parts = (value ?? all.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of parts) if (!(all as readonly string[]).includes(s)) throw new Error(`unknown ${section} part "${s}": use ${all.join(', ')}`);
  return parts as P[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      only: { type: 'string', multiple: true },
      seconds: { type: 'string' },
      baseline: { type: 'string' },
      'rollout-parts': { type: 'string' },
      'latency-parts': { type: 'string' },
      'idle-settle': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const only = (values.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const s of only) if (!(SCENARIOS as readonly string[]).includes(s)) throw new Error(`unknown scenario "${s}": use ${SCENARIOS.join(', ')}`);
  const rolloutParts = partsOf('rollout', values['rollout-parts'], ROLLOUT_PARTS);
  const latencyParts = partsOf('latency', values['latency-parts'], LATENCY_PARTS);
  const quick = values.quick ?? false;
  const seconds = values.seconds !== undefined ? Number(values.seconds) : quick ? 3 : 10;
  if (!Number.isInteger(seconds) || seconds < 1 || seconds > 120) throw new Error(`--seconds must be a whole number from 1 to 120`);
  const idleSettleSeconds = values['idle-settle'] !== undefined ? Number(values['idle-settle']) : quick ? 8 : 30;
  if (!Number.isInteger(idleSettleSeconds) || idleSettleSeconds < 0 || idleSettleSeconds > 600) throw new Error(`--idle-settle must be a whole number from 0 to 600`);
  return {
    quick,
    json: values.json ?? false,
    only: only.length ? (only as Scenario[]) : [...DEFAULT_SCENARIOS],
    seconds,
    pacedQps: 5000,
    pacedSeconds: quick ? 1 : 2,
    pacedRuns: quick ? 1 : 3,
    grpcMs: quick ? 1500 : 4000,
    rssSeconds: quick ? 40 : 60,
    idleSeconds: quick ? 20 : 60,
    idleSettleSeconds,
    baseline: values.baseline ? baselineOf(values.baseline) : undefined,
    rolloutParts,
    latencyParts,
    // The watchdog: past this, every child is killed and the partial result reported.
    budgetMs:
      (quick ? 110 : 360) * 1000 +
      Math.max(0, seconds - (quick ? 3 : 10)) * 20_000 +
      (only.length === 0 || only.includes('xds') ? (quick ? 150 : 240) * 1000 : 0) +
      (only.length === 0 || only.includes('idle') ? ((quick ? 90 : 180) + Math.max(0, idleSettleSeconds - (quick ? 8 : 30))) * 1000 : 0) +
      (only.length === 0 || only.includes('latency') ? (quick ? 360 : 840) * 1000 : 0) +
      (only.includes('cluster') ? (quick ? 300 : 1500) * 1000 : 0) +
      (only.includes('ui') ? (quick ? 240 : 420) * 1000 + (values.baseline ? 180_000 : 0) : 0) +
      (only.includes('rollout') ? (quick ? 400 : 900) * 1000 : 0) +
      (only.includes('containers') ? (quick ? 420 : 1560) * 1000 + 2 * idleSettleSeconds * 1000 : 0),
  };
}

/** A baseline checkout: its directory and a label (its commit, when it is a git checkout or names one). */
function baselineOf(dir: string): { dir: string; label: string } {
  if (!existsSync(join(dir, 'bin', 'canonport.js')) || !existsSync(join(dir, 'dist', 'cli', 'main.js'))) throw new Error(`--baseline ${dir}: no built canonport there (bin/canonport.js and dist/: run npm ci in it)`);
  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: dir, encoding: 'utf8' }).stdout?.trim();
  return { dir, label: `@${commit || basename(dir)}` };
}

const t0 = performance.now();
function progress(msg: string): void {
  process.stderr.write(`[bench +${((performance.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class BudgetExceeded extends Error {}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const want = (s: Scenario) => opts.only.includes(s);
  const needsDns = opts.only.some((s) => s !== 'grpc' && s !== 'xds' && s !== 'cluster' && s !== 'ui' && s !== 'rollout' && s !== 'idle' && s !== 'containers');

  const tools = { dnsperf: toolVersion('dnsperf'), unbound: toolVersion('unbound'), dnsmasq: toolVersion('dnsmasq'), etcd: toolVersion('etcd') };
  const missing = (['dnsperf', 'unbound'] as const).filter((t) => (needsDns || (t === 'dnsperf' && (want('cluster') || want('rollout')))) && !tools[t]);
  if (missing.length) {
    process.stderr.write(
      `bench: missing ${missing.map((t) => `${t} (Debian package "${TOOL_PACKAGES[t]}")`).join(' and ')}.\n` +
        `Install them as root with:\n  ${INSTALL_COMMAND}\n`,
    );
    return 2;
  }
  if (!tools.dnsmasq) progress('dnsmasq not installed (Debian package "dnsmasq"): its rows are skipped');

  const canonport = canonportServeAvailable();
  if (!canonport.available) progress(`canonport serve not available (${canonport.reason}): measuring the references only`);

  const outDir = join(REPO_ROOT, 'bench-results');
  const workDir = join(outDir, 'work');
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });

  const commit = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout?.trim() || null;
  const startedAt = new Date();
  const result: BenchResult = {
    version: 1,
    startedAt: startedAt.toISOString(),
    finishedAt: '',
    durationS: 0,
    options: { quick: opts.quick, only: opts.only, seconds: opts.seconds, pacedQps: opts.pacedQps, pacedSeconds: opts.pacedSeconds, pacedRuns: opts.pacedRuns },
    host: { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', kernel: os.release(), commit },
    tools,
    canonport,
    scenarios: {},
    grpc: null,
    rss: null,
    startup: null,
    xds: null,
    idle: null,
    latency: null,
    targets: [],
    errors: [],
  };
  const startup = { firstAnswerMs: [] as number[], readyzMs: [] as number[] };

  // Fixtures: the same names and answers for every server.
  const canonRecords = srvRecords(BENCH_ZONE);
  const fwdRecords = srvRecords(FWD_ZONE);
  const cold = coldSet();
  const coldWarm = coldSet(COLD_WARM_NAMES, 'w');
  const files = {
    canonical: join(workDir, 'queries-canonical.txt'),
    cached: join(workDir, 'queries-cached.txt'),
    cold: join(workDir, 'queries-cold.txt'),
    coldWarm: join(workDir, 'queries-cold-warmup.txt'),
    rss: join(workDir, 'queries-rss.txt'),
    registry: join(workDir, 'registry.yaml'),
  };
  writeFileSync(files.canonical, queryFile(srvQueries(canonRecords)));
  writeFileSync(files.cached, queryFile(srvQueries(fwdRecords)));
  writeFileSync(files.cold, queryFile(cold.queries));
  writeFileSync(files.coldWarm, queryFile(coldWarm.queries));
  writeFileSync(files.registry, benchRegistry());
  if (want('rss')) writeFileSync(files.rss, queryFile(rssQueries()));

  const children = new Children(workDir);
  const servers = new Servers(children, workDir, files.registry);
  let aborted = false;
  const check = () => {
    if (aborted) throw new BudgetExceeded(`time budget of ${opts.budgetMs / 1000} s exceeded`);
  };
  const watchdog = setTimeout(() => {
    aborted = true;
    progress(`time budget of ${opts.budgetMs / 1000} s exceeded: stopping every child`);
    void children.stopAll(200);
  }, opts.budgetMs);
  const onSignal = (sig: NodeJS.Signals) => {
    progress(`${sig}: stopping every child`);
    children.killAllSync();
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', () => children.killAllSync());

  const noteStart = (c: CanonportInstance) => {
    startup.firstAnswerMs.push(c.firstAnswerMs);
    startup.readyzMs.push(c.readyzMs);
    progress(`canonport up: first answer ${c.firstAnswerMs.toFixed(0)} ms after spawn, /readyz ${c.readyzMs.toFixed(0)} ms`);
  };

  /** One server in one scenario: throughput run, then a paced run for p99, then an answer check. */
  const measure = async (
    scenario: DnsScenarioId,
    serverName: string,
    role: string,
    port: () => Promise<Server>,
    plan: {
      file: string;
      maxRuns?: number;
      /** Called before each paced run (fresh instances for cold runs). */
      between?: () => Promise<void>;
      /** Servers this one relies on during the run (its upstream), for the CPU breakdown. */
      helpers?: () => Promise<Server[]>;
      check: { name: string; type: number; expect: string };
    },
  ): Promise<ServerResult> => {
    const row: ServerResult = { server: serverName, role, qps: null, avgMs: null, completed: null, lost: null, rcodes: {}, paced: null, answerCheck: 'not checked', cpu: null };
    try {
      check();
      const srv = await port();
      const p = srv.port;
      progress(`${scenario}: ${serverName} (${role}) on 127.0.0.1:${p}: dnsperf ${opts.seconds} s…`);
      const helperPids = (await plan.helpers?.())?.map((h) => h.pid) ?? [];
      const before = cpuSnapshot(srv.pid, helperPids);
      const run: DnsperfRun = await runDnsperf({ port: p, file: plan.file, seconds: opts.seconds, ...(plan.maxRuns ? { maxRuns: plan.maxRuns } : {}) }, children);
      row.cpu = cpuUse(before, cpuSnapshot(srv.pid, helperPids));
      Object.assign(row, { qps: run.stats.qps, avgMs: run.stats.avgMs, completed: run.stats.completed, lost: run.stats.lost, rcodes: run.stats.rcodes });
      const a = await askDns(p, plan.check.name, plan.check.type, 2000);
      row.answerCheck = !a ? 'no answer' : a.rcode === 0 && a.answers.join('; ') === plan.check.expect ? 'ok' : `rcode ${a.rcode}, ${a.answers.join('; ') || 'no records'} (expected ${plan.check.expect})`;
      // The paced runs: p99 at a fixed rate, the median of several short runs so one
      // burst of other work on the machine does not decide it.
      const runs: NonNullable<ServerResult['paced']>['runs'] = [];
      for (let i = 0; i < opts.pacedRuns; i++) {
        check();
        await plan.between?.();
        const srv2 = await port();
        await sleep(300);
        const before2 = cpuSnapshot(srv2.pid);
        const paced = await runDnsperf(
          { port: srv2.port, file: plan.file, seconds: opts.pacedSeconds, maxQps: opts.pacedQps, verbose: true, ...(plan.maxRuns ? { maxRuns: plan.maxRuns } : {}) },
          children,
        );
        const use = cpuUse(before2, cpuSnapshot(srv2.pid));
        runs.push({ qps: paced.stats.qps, p99Ms: percentile(paced.latenciesMs, 99), avgMs: paced.stats.avgMs, answers: paced.latenciesMs.length, otherCpu: use.other });
      }
      const mid = [...runs].sort((a, b) => a.p99Ms - b.p99Ms)[Math.floor(runs.length / 2)]!;
      row.paced = { qps: mid.qps, p99Ms: mid.p99Ms, avgMs: mid.avgMs, answers: mid.answers, runs };
      progress(
        `${scenario}: ${serverName}: ${Math.round(row.qps!).toLocaleString('en-US')} q/s, avg ${row.avgMs!.toFixed(3)} ms, lost ${row.lost}; ` +
          `p99 ${row.paced.p99Ms.toFixed(3)} ms at ${Math.round(row.paced.qps)} q/s; answer ${row.answerCheck}; ` +
          `cpu: server ${row.cpu.server?.toFixed(0) ?? '?'}%, dnsperf ${row.cpu.loadGenerator.toFixed(0)}%, upstream ${row.cpu.upstream.toFixed(0)}%, other ${row.cpu.other.toFixed(0)}%`,
      );
    } catch (err) {
      if (err instanceof BudgetExceeded) throw err;
      row.error = (err as Error).message.split('\n')[0]!;
      result.errors.push(`${scenario}/${serverName}: ${(err as Error).message}`);
      progress(`${scenario}: ${serverName} failed: ${(err as Error).message}`);
      check();
    }
    await sleep(300);
    return row;
  };

  // Long-lived servers, started on first use.
  const lazy = <T>(start: () => Promise<T>) => {
    let p: Promise<T> | undefined;
    return () => (p ??= start());
  };
  const unbound = lazy(() => {
    progress('starting unbound (bench.test, fwd.test, cold.test as local-data)');
    return servers.startUnbound([
      { zone: BENCH_ZONE, srv: canonRecords },
      { zone: FWD_ZONE, srv: fwdRecords },
      { zone: COLD_ZONE, srv: [...cold.srv, ...coldWarm.srv], a: [...cold.a, ...coldWarm.a] },
    ]);
  });
  const dnsmasqAuth = lazy(() => servers.startDnsmasq('auth', { srv: canonRecords }));
  const dns2Plain = lazy(() => servers.startNodeReference('ref-dns2'));
  const dgramBare = lazy(() => servers.startNodeReference('ref-dgram'));
  let mainCanonport: CanonportInstance | null = null;
  const canonportMain = async () => {
    if (!mainCanonport) {
      const up = await unbound();
      progress('starting canonport serve (upstream: unbound)');
      mainCanonport = await servers.startCanonport(up.port);
      noteStart(mainCanonport);
    }
    return mainCanonport;
  };
  // The same daemon with two DNS workers sharing its socket: how it scales past one core.
  let workersCanonport: CanonportInstance | null = null;
  const canonportWorkers = async () => {
    if (!workersCanonport) {
      progress(`starting canonport serve --workers ${WORKERS} (upstream: unbound)`);
      workersCanonport = await servers.startCanonport((await unbound()).port, { workers: WORKERS });
    }
    return workersCanonport;
  };
  // The baseline checkout's daemon (--baseline), beside this one in the same run: the before of a before/after.
  let baseCanonport: CanonportInstance | null = null;
  const canonportBase = async () => {
    if (!baseCanonport) {
      progress(`starting the baseline's canonport serve (${opts.baseline!.dir})`);
      baseCanonport = await servers.startCanonport((await unbound()).port, { repo: opts.baseline!.dir });
    }
    return baseCanonport;
  };
  const baseName = () => `${CANONPORT} ${opts.baseline!.label}`;
  const srvExpect = (zone: string) => {
    const r = canonicalSrv(serviceLabelAt(0), zone);
    return { name: r.name, type: TYPE_SRV, expect: `SRV 0 0 ${r.port} ${r.target.replace(/\.$/, '')}` };
  };

  try {
    // (a) canonical SRV answers.
    if (want('canonical')) {
      const s: DnsScenarioResult = {
        id: 'canonical',
        title: `(a) canonical SRV answers: ${SRV_NAMES.toLocaleString('en-US')} names _svcNNNN._tcp.${BENCH_ZONE}`,
        method: `dnsperf -c 4 -l ${opts.seconds} (q/s, avg); p99: median of ${opts.pacedRuns} run(s) paced at ${opts.pacedQps} q/s for ${opts.pacedSeconds} s (dnsperf -Q -v)`,
        rows: [],
        notes: [],
      };
      const plan = { file: files.canonical, check: srvExpect(BENCH_ZONE) };
      if (canonport.available) s.rows.push(await measure('canonical', CANONPORT, 'canonical (scheme)', async () => (await canonportMain()).server, plan));
      if (canonport.available && opts.baseline) s.rows.push(await measure('canonical', baseName(), 'canonical (scheme), baseline', async () => (await canonportBase()).server, plan));
      if (canonport.available) s.rows.push(await measure('canonical', CANONPORT_WORKERS, `canonical, --workers ${WORKERS}`, async () => (await canonportWorkers()).server, plan));
      s.rows.push(await measure('canonical', UNBOUND, 'local-data', unbound, plan));
      if (tools.dnsmasq) s.rows.push(await measure('canonical', DNSMASQ, 'srv-host', dnsmasqAuth, plan));
      s.rows.push(await measure('canonical', DNS2_PLAIN, 'dns2 handler', dns2Plain, plan));
      s.rows.push(await measure('canonical', DGRAM_BARE, 'fixed-shape', dgramBare, plan));
      result.scenarios.canonical = s;
    }

    // (b) forwarded answers served from cache, after one warm-up pass.
    if (want('cached')) {
      const s: DnsScenarioResult = {
        id: 'cached',
        title: `(b) cached forwarded answers: ${SRV_NAMES.toLocaleString('en-US')} names _svcNNNN._tcp.${FWD_ZONE} (unbound's local-data), after a warm-up pass`,
        method: `forwarders warmed with dnsperf -n 1 over the file, then dnsperf -c 4 -l ${opts.seconds}; p99 as in (a)`,
        rows: [],
        notes: [],
      };
      const warm = async (name: string, port: number) => {
        const w = await runDnsperf({ port, file: files.cached, seconds: 30, maxRuns: 1, maxQps: 20_000 }, children);
        progress(`cached: ${name} warm-up: ${w.stats.completed} answered, ${w.stats.lost} lost`);
        if (w.stats.lost > 0) s.notes.push(`${name} warm-up lost ${w.stats.lost} of ${w.stats.sent}: those were fetched during the measured run`);
      };
      const plan = { file: files.cached, check: srvExpect(FWD_ZONE), helpers: async () => [await unbound()] };
      if (canonport.available) {
        let warmed = false;
        s.rows.push(
          await measure('cached', CANONPORT, 'forwarding + cache', async () => {
            const c = await canonportMain();
            if (!warmed) {
              await warm(CANONPORT, c.server.port);
              warmed = true;
            }
            return c.server;
          }, plan),
        );
      }
      if (canonport.available && opts.baseline) {
        let warmedB = false;
        s.rows.push(
          await measure('cached', baseName(), 'forwarding + cache, baseline', async () => {
            const c = await canonportBase();
            if (!warmedB) {
              await warm(baseName(), c.server.port);
              warmedB = true;
            }
            return c.server;
          }, plan),
        );
      }
      if (canonport.available) {
        let warmedW = false;
        s.rows.push(
          await measure('cached', CANONPORT_WORKERS, `forwarding + cache, --workers ${WORKERS}`, async () => {
            const c = await canonportWorkers();
            if (!warmedW) {
              // Each worker has its own cache: warm twice so both are likely filled.
              await warm(CANONPORT_WORKERS, c.server.port);
              await warm(CANONPORT_WORKERS, c.server.port);
              warmedW = true;
            }
            return c.server;
          }, plan),
        );
      }
      s.rows.push(await measure('cached', UNBOUND, 'local-data', unbound, { file: files.cached, check: srvExpect(FWD_ZONE) }));
      if (tools.dnsmasq) {
        let fwd: Server | null = null;
        s.rows.push(
          await measure('cached', DNSMASQ, 'forwarding + cache', async () => {
            if (!fwd) {
              fwd = await servers.startDnsmasq('fwd', { upstreamPort: (await unbound()).port });
              await warm(DNSMASQ, fwd.port);
            }
            return fwd;
          }, plan),
        );
        if (fwd) await children.stop(fwd);
      }
      s.rows.push(await measure('cached', DNS2_PLAIN, 'dns2 handler', dns2Plain, plan));
      s.rows.push(await measure('cached', DGRAM_BARE, 'fixed-shape', dgramBare, plan));
      result.scenarios.cached = s;
    }

    // The no-op and canonport gRPC servers, same client, alternating.
    if (want('grpc')) {
      const g: GrpcResult = {
        name: GRPC_NAME,
        method: `one grpc-js channel, N calls in flight, ${opts.grpcMs / 1000} s per cell (two halves, order no-op/canonport/canonport/no-op, each after 100 warm-up calls); no-op = same proto, Resolve returns a fixed Resolution`,
        rows: [],
        batch: null,
        notes: [],
      };
      progress('grpc: starting the no-op grpc-js server');
      const noop = await servers.startGrpcNoop();
      let cp: CanonportInstance | null = null;
      if (canonport.available) {
        try {
          cp = await canonportMain();
          const res = await grpcResolveOnce(`127.0.0.1:${cp.grpcPort}`, GRPC_NAME);
          g.notes.push(`canonport answers: ${JSON.stringify(res)}`);
        } catch (err) {
          g.notes.push(`canonport Resolve check failed: ${(err as Error).message}`);
        }
      } else g.notes.push('canonport serve not available: no-op reference only');
      for (const concurrency of [1, 16, 64]) {
        check();
        // Half the time each, in the order no-op, canonport, canonport, no-op: drift in
        // the machine's load (other work on it) then weighs on both sides alike.
        const load = (port: number) =>
          grpcLoad({ target: `127.0.0.1:${port}`, name: GRPC_NAME, concurrency, durationMs: opts.grpcMs / 2, maxCalls: 100_000, warmupCalls: 100 });
        const rowG: GrpcResult['rows'][number] = { concurrency, canonport: null, noop: null };
        try {
          const n1 = await load(noop.port);
          const c1 = cp ? await load(cp.grpcPort) : null;
          const c2 = cp ? await load(cp.grpcPort) : null;
          const n2 = await load(noop.port);
          rowG.noop = mergeLoads([n1, n2]);
          if (c1 && c2) rowG.canonport = mergeLoads([c1, c2]);
        } catch (err) {
          result.errors.push(`grpc at ${concurrency}: ${(err as Error).message}`);
        }
        progress(
          `grpc: ${concurrency} in flight: no-op ${rowG.noop ? Math.round(rowG.noop.callsPerSec) : '–'} calls/s` +
            (rowG.canonport ? `, canonport ${Math.round(rowG.canonport.callsPerSec)} calls/s (${rowG.canonport.errors} errors)` : ''),
        );
        g.rows.push(rowG);
      }
      // Batching: the same name BATCH times per ResolveMany call, at the middle concurrency.
      if (cp) {
        check();
        const concurrency = 16;
        try {
          const halves = [];
          for (let i = 0; i < 2; i++) {
            halves.push(
              await grpcLoad({ target: `127.0.0.1:${cp.grpcPort}`, name: GRPC_NAME, concurrency, durationMs: opts.grpcMs / 2, maxCalls: 100_000, warmupCalls: 20, batch: GRPC_BATCH }),
            );
          }
          g.batch = { size: GRPC_BATCH, concurrency, canonport: mergeLoads(halves) };
          progress(`grpc: ResolveMany of ${GRPC_BATCH}, ${concurrency} in flight: ${Math.round(g.batch.canonport.callsPerSec * GRPC_BATCH)} names/s`);
        } catch (err) {
          result.errors.push(`grpc ResolveMany: ${(err as Error).message}`);
        }
      }
      await children.stop(noop);
      result.grpc = g;
    }

    if (workersCanonport) {
      await children.stop((workersCanonport as CanonportInstance).server);
      workersCanonport = null;
    }
    if (baseCanonport) {
      await children.stop((baseCanonport as CanonportInstance).server);
      baseCanonport = null;
    }
    // From here on each canonport is fresh: stop the long-lived one.
    if (mainCanonport) {
      await children.stop((mainCanonport as CanonportInstance).server);
      mainCanonport = null;
    }

    // (c) cold-cache forwarding mix: a fresh forwarder per run, names it has never seen.
    if (want('cold')) {
      const s: DnsScenarioResult = {
        id: 'cold',
        title: `(c) cold-cache forwarding mix: ${cold.queries.length.toLocaleString('en-US')} distinct names under ${COLD_ZONE} (1/2 A, 1/4 SRV, 1/4 NXDOMAIN), upstream unbound`,
        method: `forwarders: a fresh instance per run (paced runs too), warmed up on ${COLD_WARM_NAMES.toLocaleString('en-US')} other names of the same mix, then dnsperf -n 1 (each name once, so every query is a miss) -c 4 -l ${opts.seconds}; unbound: its local-data for ${opts.seconds} s`,
        rows: [],
        notes: [],
      };
      const coldCheck = { name: cold.a[0]!.name, type: TYPE_A, expect: `A ${cold.a[0]!.address}` };
      // A fresh process is also a cold one (JIT, first allocations): without a warm-up, the p99
      // of the paced runs measured Node's start-up (18 ms), not a cache miss (1 ms warm).
      const warmUp = async (port: number) => {
        const w = await runDnsperf({ port, file: files.coldWarm, seconds: 30, maxRuns: 1, maxQps: 20_000 }, children);
        if (w.stats.lost > 0) s.notes.push(`a warm-up lost ${w.stats.lost} of ${w.stats.sent} queries`);
      };
      const plan = { file: files.cold, maxRuns: 1, check: coldCheck, helpers: async () => [await unbound()] };
      if (canonport.available) {
        let inst: CanonportInstance | null = null;
        const fresh = async () => {
          if (inst) await children.stop(inst.server);
          inst = await servers.startCanonport((await unbound()).port);
          noteStart(inst);
          await warmUp(inst.server.port);
        };
        s.rows.push(
          await measure('cold', CANONPORT, 'forwarding, cold', async () => {
            if (!inst) await fresh();
            return inst!.server;
          }, { ...plan, between: fresh }),
        );
        if (inst) await children.stop((inst as CanonportInstance).server);
      }
      s.rows.push(await measure('cold', UNBOUND, 'local-data', unbound, { file: files.cold, check: coldCheck }));
      if (tools.dnsmasq) {
        let fwd: Server | null = null;
        const fresh = async () => {
          if (fwd) await children.stop(fwd);
          fwd = await servers.startDnsmasq('fwd', { upstreamPort: (await unbound()).port });
          await warmUp(fwd.port);
        };
        s.rows.push(
          await measure('cold', DNSMASQ, 'forwarding, cold', async () => {
            if (!fwd) await fresh();
            return fwd!;
          }, { ...plan, between: fresh }),
        );
        if (fwd) await children.stop(fwd);
      }
      s.notes.push('the measured names are new to every forwarder: its readiness probe and the warm-up use other names');
      result.scenarios.cold = s;
    }

    // RSS after filling the cache with 100k distinct forwarded names.
    if (want('rss')) {
      if (!canonport.available) progress('rss: skipped, canonport serve not available');
      else {
        const up = await dgramBare();
        progress(`rss: fresh canonport forwarding to the dgram reference (answers A for any name); filling with ${RSS_NAMES.toLocaleString('en-US')} names`);
        const c = await servers.startCanonport(up.port);
        noteStart(c);
        const baseline = readRss(c.server.pid);
        const t = performance.now();
        const fill = await runDnsperf({ port: c.server.port, file: files.rss, seconds: opts.rssSeconds, maxRuns: 1 }, children);
        const seconds = (performance.now() - t) / 1000;
        await sleep(1000);
        const after = readRss(c.server.pid);
        let cacheEntries: number | null = null;
        try {
          cacheEntries = metricValue((await httpGet(c.httpPort, '/metrics', 3000)).body, 'canonport_cache_entries');
        } catch (err) {
          result.errors.push(`rss: /metrics: ${(err as Error).message}`);
        }
        const mb = (mib: number) => (mib * 1024 * 1024) / 1e6;
        result.rss = {
          names: RSS_NAMES,
          completed: fill.stats.completed,
          lost: fill.stats.lost,
          seconds,
          cacheEntries,
          baselineMB: mb(baseline.rssMiB),
          rssMB: mb(after.rssMiB),
          peakMB: mb(after.hwmMiB),
          notes: fill.stats.completed < RSS_NAMES ? [`only ${fill.stats.completed} of ${RSS_NAMES} answered within ${opts.rssSeconds} s (${fill.stats.stopReason})`] : [],
        };
        progress(`rss: ${result.rss.rssMB.toFixed(1)} MB after ${fill.stats.completed} answers, cache entries ${cacheEntries ?? 'unknown'}`);
        await children.stop(c.server);
      }
    }

    // Cluster mode (issue 14): real daemons in network namespaces, etcd; its own figures and targets.
    if (want('cluster')) {
      result.cluster = await runClusterBench(
        {
          trials: opts.quick ? 10 : 50,
          killRounds: opts.quick ? 2 : 10,
          seconds: opts.seconds,
          scaleNodes: opts.quick ? 200 : 1000,
          scaleServices: 20,
          workDir,
        },
        progress,
        children,
      );
      for (const e of result.cluster.errors) result.errors.push(`cluster: ${e}`);
    }

    // Readiness, drain, restarts (issue 20): the rollout lab, real clients.
    if (want('rollout')) {
      try {
        result.rollout = await runRolloutBench({ trials: opts.quick ? 10 : 50, seconds: opts.seconds, cpuSeconds: opts.quick ? 5 : 20, workDir, parts: opts.rolloutParts }, progress, children);
        for (const e of result.rollout.errors) result.errors.push(`rollout: ${e}`);
      } catch (err) {
        if (err instanceof BudgetExceeded) throw err;
        result.errors.push(`rollout: ${(err as Error).message}`);
      }
    }

    // Containers and pods (issue 26): scan cost with 100 containers, idle CPU, convergence of a container's listener.
    if (want('containers')) {
      try {
        result.containers = await runContainersBench({ containers: opts.quick ? 20 : 100, listenersEach: 5, scans: opts.quick ? 10 : 30, cpuSeconds: opts.quick ? 10 : 60, idleSettleMs: opts.idleSettleSeconds * 1000, trials: opts.quick ? 20 : 50, baseline: opts.baseline }, progress);
        for (const e of result.containers.errors) result.errors.push(`containers: ${e}`);
      } catch (err) {
        if (err instanceof BudgetExceeded) throw err;
        result.errors.push(`containers: ${(err as Error).message}`);
      }
    }

    // The fleet page (issue 25): a daemon on loopback, etcd, Chromium.
    if (want('ui')) {
      try {
        result.ui = await runUiBench(
          { services: 20, bigHosts: opts.quick ? 200 : 1000, loads: opts.quick ? 3 : 7, livePages: 20, churnSeconds: opts.quick ? 10 : 30, workDir, baseline: opts.baseline, liveChanges: opts.quick ? 3 : 5 },
          progress,
        );
      } catch (err) {
        if (err instanceof BudgetExceeded) throw err;
        result.errors.push(`ui: ${(err as Error).message}`);
        progress(`ui failed: ${(err as Error).message}`);
      }
    }

    // Startup: every start above counted; make it at least three.
    if (want('startup') && canonport.available) {
      for (let i = 0; startup.firstAnswerMs.length < 3 && i < 3; i++) {
        check();
        const c = await servers.startCanonport((await unbound()).port);
        noteStart(c);
        await children.stop(c.server);
      }
    }

    // Latency at fixed rates beside unbound, the daemon's loop delay and GCs, runs from /readyz (issue 24).
    if (want('latency')) {
      if (!canonport.available) progress('latency: skipped, canonport serve not available');
      else {
        check();
        result.latency = await runLatencyBench(
          {
            rates: [1000, 3000, 10_000],
            seconds: opts.quick ? 3 : 8,
            rounds: opts.quick ? 1 : 2,
            warmStarts: opts.quick ? 2 : 3,
            warmSeconds: 3,
            workDir,
            files: { canonical: files.canonical, cached: files.cached },
            cluster: tools.etcd ? { nodes: opts.quick ? 200 : 1000, servicesPerNode: 20, pool: opts.quick ? 800 : 4000, churnPerSecond: 10 } : null,
            baseline: opts.baseline,
            parts: opts.latencyParts,
          },
          { children, servers, unbound, progress, check },
        );
        if (!tools.etcd) result.latency.notes.push('cluster answers not measured: etcd is not installed (Debian package etcd-server)');
        for (const e of result.latency.errors) result.errors.push(`latency: ${e}`);
      }
    }

    // Idle cost (issue 24): CPU, wakeups and RSS of daemons nobody asks anything, beside the references.
    if (want('idle')) {
      if (!canonport.available) progress('idle: skipped, canonport serve not available');
      else {
        check();
        result.idle = await runIdleBench({ seconds: opts.idleSeconds, listeners: 20, workDir, settleMs: opts.idleSettleSeconds * 1000, baseline: opts.baseline }, progress, children, servers);
        for (const e of result.idle.errors) result.errors.push(`idle: ${e}`);
      }
    }

    // The xDS control plane inside canonport serve, with stock clients (issue 15).
    if (want('xds')) {
      if (!canonport.available) progress('xds: skipped, canonport serve not available');
      else {
        try {
          result.xds = await runXdsBench({ children, workDir, progress, check }, xdsBenchOptions(opts.quick));
        } catch (err) {
          if (err instanceof BudgetExceeded) throw err;
          result.errors.push(`xds: ${(err as Error).message}`);
          progress(`xds failed: ${(err as Error).message}`);
        }
      }
    }
  } catch (err) {
    result.errors.push((err as Error).message);
    progress(`stopped: ${(err as Error).message}`);
  } finally {
    clearTimeout(watchdog);
    await children.stopAll();
  }

  if (canonport.available && startup.firstAnswerMs.length) result.startup = startup;
  result.finishedAt = new Date().toISOString();
  result.durationS = (performance.now() - t0) / 1000;
  // Issue 5's targets are about the other scenarios; a cluster-only run has its own (in result.cluster).
  result.targets = opts.only.every((s) => s === 'cluster') ? [] : evaluateTargets(result);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  const report = renderReport(result);
  if (opts.json) {
    process.stderr.write(report);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else process.stdout.write(report);
  progress(`results written to ${join(outDir, 'latest.json')}; configs and server logs in ${workDir}`);
  return result.errors.length ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 1;
  },
);
