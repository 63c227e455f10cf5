import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import etcd3 from 'etcd3';
import { startEtcd, type EtcdCluster } from '../test/helpers/etcd.js';
import { metric } from '../test/helpers/serve-process.js';
import type { Children, Server } from './children.js';
import { serviceNames, writeScaleFleet, type ScaleOptions } from '../test/helpers/scale-fleet.js';
import { ListenerChurn } from './cluster-view.js';
import { cpuSnapshot, cpuUse } from './cpu.js';
import { TYPE_SRV } from './dns-wire.js';
import { percentile, runDnsperf } from './dnsperf.js';
import { BENCH_ZONE, queryFile } from './fixtures.js';
import {
  LATENCY_CANONPORT,
  LATENCY_UNBOUND,
  TARGET_RATE,
  type DaemonSide,
  type LatencyCell,
  type LatencyResult,
  type LatencyScenario,
} from './latency-report.js';
import { askDns, httpGet } from './probe.js';
import { REPO_ROOT, type CanonportInstance, type Servers } from './servers.js';
import { warmTrace } from './warm-trace.js';
import { attributeProfile, latencySummary, nowUs, profilingLauncher, readProfile, runQueueWaitMs, type AttributionRow } from './tail-attribution.js';

/**
 * `npm run bench -- --only latency` (issue 24): where the slow 1 % goes.
 *
 * Per-query latency with one client at fixed rates (`dnsperf -c 1 -Q RATE
 * -v`), canonport and unbound in the same run, alternating (unbound,
 * canonport, then the other way round), for canonical SRV answers, cached
 * forwarded answers (after a warm-up pass) and cluster answers (a second
 * daemon in cluster mode over a view of N hosts × S services in a real etcd
 * while listeners change). Around each canonport run the bench reads its
 * /metrics: the event loop's own delay histogram over the run and the
 * garbage collections in it (events, countable on a loaded machine, where
 * wall-clock tails are not). Then fresh daemons asked from the moment
 * /readyz turns ready.
 */

/**
 * The parts of the section (`--latency-parts`): single-host rows, cluster rows, runs from /readyz (with the compiler
 * trace), and where the slow 1 % goes (tail-attribution.ts: daemons under --cpu-prof, canonical and cached; with
 * `cluster` run too, the cluster rows get theirs).
 */
export const LATENCY_PARTS = ['single', 'cluster', 'warm', 'attribution'] as const;
export type LatencyPart = (typeof LATENCY_PARTS)[number];

export interface LatencyOptions {
  rates: number[];
  seconds: number;
  rounds: number;
  warmStarts: number;
  warmSeconds: number;
  workDir: string;
  files: { canonical: string; cached: string };
  cluster: { nodes: number; servicesPerNode: number; pool: number; churnPerSecond: number } | null;
  baseline?: { dir: string; label: string } | undefined;
  /** Default all. */
  parts?: readonly LatencyPart[] | undefined;
}

export interface LatencyDeps {
  children: Children;
  servers: Servers;
  unbound: () => Promise<Server>;
  progress: (m: string) => void;
  check: () => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The event-loop delay and GC series of a daemon's /metrics. */
function metricsOf(text: string) {
  const gc: Record<string, { count: number; sum: number; under1ms: number }> = {};
  for (const kind of ['minor', 'major', 'incremental', 'weakcb']) {
    const count = metric(text, 'canonport_nodejs_gc_duration_seconds_count', { kind });
    gc[kind] = {
      count: Number.isFinite(count) ? count : 0,
      sum: metric(text, 'canonport_nodejs_gc_duration_seconds_sum', { kind }) || 0,
      under1ms: metric(text, 'canonport_nodejs_gc_duration_seconds_bucket', { kind, le: '0.001' }) || 0,
    };
  }
  const lag = (k: string) => metric(text, `canonport_nodejs_eventloop_lag_${k}_seconds`, {}) * 1000;
  return { gc, p50: lag('p50'), p99: lag('p99'), max: lag('max') };
}

/** The daemon's side of one run: the loop-delay histogram the second scrape reports (the first reset it), and GC deltas. */
export function daemonSide(beforeText: string, afterText: string): DaemonSide {
  const a = metricsOf(beforeText);
  const b = metricsOf(afterText);
  const gc: DaemonSide['gc'] = {};
  let over = 0;
  for (const kind of Object.keys(b.gc)) {
    const count = b.gc[kind]!.count - (a.gc[kind]?.count ?? 0);
    gc[kind] = { count, ms: (b.gc[kind]!.sum - (a.gc[kind]?.sum ?? 0)) * 1000 };
    over += count - (b.gc[kind]!.under1ms - (a.gc[kind]?.under1ms ?? 0));
  }
  return { loopP50Ms: b.p50, loopP99Ms: b.p99, loopMaxMs: b.max, gc, gcOver1ms: over };
}

async function scrape(httpPort: number): Promise<string> {
  return (await httpGet(httpPort, '/metrics', 3000)).body;
}

interface Target {
  name: string;
  server: Server;
  httpPort?: number | undefined;
}

function summary(latencies: number[]) {
  return { p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), p999Ms: percentile(latencies, 99.9) };
}

export async function runLatencyBench(o: LatencyOptions, d: LatencyDeps): Promise<LatencyResult> {
  const r: LatencyResult = {
    method:
      `dnsperf -c 1 -Q RATE -l ${o.seconds} -v, ${o.rounds} round(s) alternating (unbound first, then canonport first), every answer's latency pooled over the rounds; ` +
      `canonport's event-loop delay and GCs from its /metrics around each of its runs`,
    cells: [],
    warm: [],
    cluster: null,
    notes: [],
    errors: [],
  };
  const { children, servers, progress } = d;
  const up = await d.unbound();
  const started: CanonportInstance[] = [];
  let etcd: EtcdCluster | null = null;
  let client: etcd3.Etcd3 | null = null;
  try {
    const measure = async (scenario: LatencyScenario, file: string, targets: Target[]) => {
      for (const rate of o.rates) {
        const pooled = new Map<string, { lat: number[]; lost: number; qps: number[]; p99: number[]; other: number; daemon?: DaemonSide[] }>();
        for (let round = 0; round < o.rounds; round++) {
          d.check();
          const order = round % 2 === 0 ? targets : [...targets].reverse();
          for (const t of order) {
            const before = t.httpPort ? await scrape(t.httpPort) : null;
            await sleep(200);
            const cpu0 = cpuSnapshot(t.server.pid);
            const run = await runDnsperf({ port: t.server.port, file, seconds: o.seconds, clients: 1, maxQps: rate, verbose: true }, children);
            const cpu = cpuUse(cpu0, cpuSnapshot(t.server.pid));
            const after = t.httpPort ? await scrape(t.httpPort) : null;
            const p = pooled.get(t.name) ?? { lat: [], lost: 0, qps: [], p99: [], other: 0, daemon: [] };
            for (const v of run.latenciesMs) p.lat.push(v);
            p.lost += run.stats.lost;
            p.qps.push(run.stats.qps);
            p.p99.push(percentile(run.latenciesMs, 99));
            p.other = Math.max(p.other, cpu.other);
            if (before !== null && after !== null) p.daemon!.push(daemonSide(before, after));
            pooled.set(t.name, p);
          }
        }
        for (const t of targets) {
          const p = pooled.get(t.name)!;
          const ds = p.daemon!;
          // Over the rounds: the worst loop delays, the GCs summed.
          const daemon: DaemonSide | undefined = ds.length
            ? {
                loopP50Ms: Math.max(...ds.map((x) => x.loopP50Ms)),
                loopP99Ms: Math.max(...ds.map((x) => x.loopP99Ms)),
                loopMaxMs: Math.max(...ds.map((x) => x.loopMaxMs)),
                gcOver1ms: ds.reduce((n, x) => n + x.gcOver1ms, 0),
                gc: Object.fromEntries(Object.keys(ds[0]!.gc).map((k) => [k, { count: ds.reduce((n, x) => n + x.gc[k]!.count, 0), ms: ds.reduce((n, x) => n + x.gc[k]!.ms, 0) }])),
              }
            : undefined;
          const cell: LatencyCell = { scenario, server: t.name, rate, answers: p.lat.length, lost: p.lost, ...summary(p.lat), roundP99Ms: p.p99, qps: p.qps.reduce((a, b) => a + b, 0) / p.qps.length, daemon, otherCpu: p.other };
          r.cells.push(cell);
          progress(`latency: ${scenario} ${t.name} at ${rate} q/s: p50 ${cell.p50Ms.toFixed(3)}, p99 ${cell.p99Ms.toFixed(3)}, p99.9 ${cell.p999Ms.toFixed(3)} ms (${cell.answers} answers, ${cell.lost} lost)`);
        }
      }
    };

    const want = (part: LatencyPart) => !o.parts || o.parts.includes(part);

    /** Where one profiled daemon's slow answers go (tail-attribution.ts), at the target rate; the daemon is stopped to write its profile. */
    const attribute = async (scenario: AttributionRow['scenario'], server: string, c: CanonportInstance, profiles: string, file: string) => {
      d.check();
      // The first second after ready: its first TARGET_RATE answers and that second of the profile (the wait for a CPU is the run's).
      const first = scenario === 'first second after ready';
      const wait0 = runQueueWaitMs(c.server.pid);
      const from = nowUs();
      const run = await runDnsperf({ port: c.server.port, file, seconds: first ? o.warmSeconds : o.seconds, clients: 1, maxQps: TARGET_RATE, verbose: true }, children);
      const to = first ? from + 1e6 : nowUs();
      const wait1 = runQueueWaitMs(c.server.pid);
      await children.stop(c.server);
      const lat = latencySummary(first ? run.latenciesMs.slice(0, TARGET_RATE) : run.latenciesMs);
      const { causes, busyMs } = attributeProfile(readProfile(profiles), from, to, TARGET_RATE, lat.p99Ms - lat.p50Ms);
      const row: AttributionRow = {
        scenario,
        server,
        rate: TARGET_RATE,
        ...lat,
        windowMs: (to - from) / 1000,
        busyMs,
        waitedForCpuMs: wait0 !== null && wait1 !== null ? wait1 - wait0 : null,
        causes,
      };
      (r.attribution ??= []).push(row);
      const top = causes[0];
      progress(`latency: attribution ${scenario} ${server}: ${row.overP99} answers over p99 ${row.p99Ms.toFixed(3)} ms; first cause ${top ? `${top.cause} (${top.overLine} over the line)` : 'none'}`);
    };
    /** Both checkouts' daemons under the profiler: this one's, then the baseline's. */
    const profiled = () => [
      { server: LATENCY_CANONPORT, ...profilingLauncher(REPO_ROOT, join(o.workDir, 'prof-this')) },
      ...(o.baseline ? [{ server: `${LATENCY_CANONPORT} ${o.baseline.label}`, ...profilingLauncher(o.baseline.dir, join(o.workDir, 'prof-base')) }] : []),
    ];

    if (want('single')) {
      progress('latency: starting canonport (single-host)');
      const single = await servers.startCanonport(up.port);
      started.push(single);
      let base: CanonportInstance | null = null;
      if (o.baseline) {
        base = await servers.startCanonport(up.port, { repo: o.baseline.dir });
        started.push(base);
      }
      // Warm both daemons as a long-running one would be: the cached names fetched, the hot paths compiled.
      for (const c of [single, base]) {
        if (!c) continue;
        await runDnsperf({ port: c.server.port, file: o.files.cached, seconds: 30, maxRuns: 1, maxQps: 20_000 }, children);
        await runDnsperf({ port: c.server.port, file: o.files.canonical, seconds: 3, maxQps: 10_000 }, children);
      }

      const single1: Target[] = [
        { name: LATENCY_UNBOUND, server: up },
        { name: LATENCY_CANONPORT, server: single.server, httpPort: single.httpPort },
        ...(base ? [{ name: `${LATENCY_CANONPORT} ${o.baseline!.label}`, server: base.server, httpPort: base.httpPort }] : []),
      ];
      await measure('canonical', o.files.canonical, single1);
      await measure('cached', o.files.cached, single1);
      for (const c of started.splice(0)) await children.stop(c.server);
    }

    if (want('attribution')) {
      for (const [scenario, file] of [['canonical', o.files.canonical], ['cached', o.files.cached]] as const) {
        for (const p of profiled()) {
          progress(`latency: attribution: ${scenario}, ${p.server} under --cpu-prof`);
          const c = await servers.startCanonport(up.port, { repo: p.dir });
          started.push(c);
          await runDnsperf({ port: c.server.port, file: o.files.cached, seconds: 30, maxRuns: 1, maxQps: 20_000 }, children);
          await runDnsperf({ port: c.server.port, file: o.files.canonical, seconds: 3, maxQps: 10_000 }, children);
          await attribute(scenario, p.server, c, p.profiles, file);
          started.splice(started.indexOf(c), 1);
        }
      }
      for (const p of profiled()) {
        progress(`latency: attribution: first second after ready, ${p.server} under --cpu-prof`);
        const c = await servers.startCanonport(up.port, { repo: p.dir });
        started.push(c);
        await attribute('first second after ready', p.server, c, p.profiles, o.files.canonical);
        started.splice(started.indexOf(c), 1);
      }
    }

    // Cluster answers: a daemon in cluster mode over a synthetic view while listeners change.
    if (o.cluster && want('cluster')) {
      // The cluster rows are compared with unbound's canonical row: measured here when the single-host rows are not run.
      if (!want('single')) await measure('canonical', o.files.canonical, [{ name: LATENCY_UNBOUND, server: up }]);
      const prefix = '/canonport';
      const spec: ScaleOptions = { nodes: o.cluster.nodes, services: o.cluster.servicesPerNode, pool: o.cluster.pool };
      progress(`latency: cluster: etcd and a view of ${spec.nodes} hosts × ${spec.services} services`);
      etcd = await startEtcd();
      client = new etcd3.Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
      const leases = await writeScaleFleet(client, prefix, { ...spec, ttl: 60 });
      // Each daemon its own state directory: the default one is shared with every other daemon on the machine (its view snapshot, its lease).
      const clusterArgs = (node: string) => ['--cluster', etcd!.url, '--node', node, '--state-dir', join(o.workDir, `state-${node}`)];
      const cp = await servers.startCanonport(up.port, { extraArgs: clusterArgs('bench-self') });
      started.push(cp);
      const cpBase = o.baseline ? await servers.startCanonport(up.port, { extraArgs: clusterArgs('bench-base'), repo: o.baseline.dir }) : null;
      if (cpBase) started.push(cpBase);
      // With `attribution` named too: a profiled daemon of each checkout beside them, asked after the rows above.
      const cpProf = want('attribution') ? await Promise.all(profiled().map(async (p, i) => ({ ...p, c: await servers.startCanonport(up.port, { extraArgs: clusterArgs(`bench-prof${i}`), repo: p.dir }) }))) : [];
      for (const p of cpProf) started.push(p.c);
      const services = serviceNames(o.cluster.pool);
      const file = join(o.workDir, 'queries-cluster.txt');
      writeFileSync(file, queryFile(services.map((s) => ({ name: `${s}.${BENCH_ZONE}`, type: 'SRV' as const }))));
      const instances = Math.round((spec.nodes * Math.min(spec.services, o.cluster.pool)) / o.cluster.pool);
      // The view is loaded once a service answers with its instances.
      const probe = `${services[0]!}.${BENCH_ZONE}`;
      for (const c of [cp, cpBase, ...cpProf.map((p) => p.c)]) {
        if (!c) continue;
        const deadline = performance.now() + 120_000;
        for (;;) {
          const a = await askDns(c.server.port, probe, TYPE_SRV, 2000);
          if (a && a.answers.length >= instances) break;
          if (performance.now() > deadline) throw new Error(`cluster daemon: ${probe} did not list ${instances} instances within 120 s (last: ${a?.answers.length ?? 'no answer'})`);
          await sleep(500);
        }
        await runDnsperf({ port: c.server.port, file, seconds: 3, maxQps: 10_000 }, children);
      }
      const a = await askDns(cp.server.port, probe, TYPE_SRV, 2000);
      const churn = new ListenerChurn(client, prefix, spec, leases, o.cluster.churnPerSecond);
      churn.start();
      try {
        await measure('cluster', file, [
          { name: LATENCY_CANONPORT, server: cp.server, httpPort: cp.httpPort },
          ...(cpBase ? [{ name: `${LATENCY_CANONPORT} ${o.baseline!.label}`, server: cpBase.server, httpPort: cpBase.httpPort }] : []),
        ]);
        for (const p of cpProf) {
          await attribute('cluster', p.server, p.c, p.profiles, file);
          started.splice(started.indexOf(p.c), 1);
        }
      } finally {
        await churn.stop();
      }
      r.cluster = {
        nodes: spec.nodes,
        servicesPerNode: spec.services,
        pool: o.cluster.pool,
        instancesPerService: instances,
        churnPerSecond: o.cluster.churnPerSecond,
        changes: churn.changes,
        answer: a ? `${a.answers.length} SRV records (rcode ${a.rcode})` : 'no answer',
      };
      if (churn.errors) r.notes.push(`${churn.errors} listener changes failed to reach etcd`);
      for (const l of leases) l?.release();
      for (const c of started.splice(0)) await children.stop(c.server);
    }

    if (want('warm')) {
      // From the moment /readyz turns ready: fresh daemons, canonical names, the target rate.
      for (let i = 0; i < o.warmStarts; i++) {
        d.check();
        for (const which of [LATENCY_CANONPORT, ...(o.baseline ? [`${LATENCY_CANONPORT} ${o.baseline.label}`] : [])]) {
          const c = await servers.startCanonport(up.port, which === LATENCY_CANONPORT ? {} : { repo: o.baseline!.dir });
          try {
            const run = await runDnsperf({ port: c.server.port, file: o.files.canonical, seconds: o.warmSeconds, clients: 1, maxQps: TARGET_RATE, verbose: true }, children);
            const after = await scrape(c.httpPort);
            const first = run.latenciesMs.slice(0, TARGET_RATE);
            r.warm.push({
              server: which,
              readyMs: c.readyzMs,
              rate: TARGET_RATE,
              firstSecond: { answers: first.length, ...summary(first) },
              all: { answers: run.latenciesMs.length, lost: run.stats.lost, ...summary(run.latenciesMs) },
              // From the start of the process: every GC it has done, start-up included.
              daemon: daemonSide('', after),
            });
            const w = r.warm.at(-1)!;
            progress(`latency: warm start ${i + 1} (${which}): ready ${c.readyzMs.toFixed(0)} ms; first second p99 ${w.firstSecond.p99Ms.toFixed(3)} ms, p99.9 ${w.firstSecond.p999Ms.toFixed(3)} ms`);
          } finally {
            await children.stop(c.server);
          }
        }
      }
      r.notes.push(`warm rows: "first second" is the answers to the first ${TARGET_RATE.toLocaleString('en-US')} queries, sent from the moment /readyz answered 200; their GCs count from the process's start`);
      // Compiler events after ready: counts, not times, so they hold on a loaded machine.
      r.trace = [];
      for (const [server, repo] of [[LATENCY_CANONPORT, REPO_ROOT], ...(o.baseline ? [[`${LATENCY_CANONPORT} ${o.baseline.label}`, o.baseline.dir]] : [])] as [string, string][]) {
        d.check();
        const t = await warmTrace(repo, { workDir: o.workDir, file: o.files.canonical, children });
        r.trace.push({ server, steps: t.steps });
        progress(`latency: ${server}: ${t.steps.at(-1)!.optimized} optimizations, ${t.steps.at(-1)!.deoptimized} deoptimizations in the first ${t.steps.at(-1)!.queries} queries after ready`);
      }
    }
  } catch (err) {
    r.errors.push((err as Error).message.split('\n')[0]!);
    progress(`latency failed: ${(err as Error).message}`);
  } finally {
    for (const c of started) await children.stop(c.server);
    client?.close();
    await etcd?.stop();
  }
  return r;
}
