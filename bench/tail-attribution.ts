import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { percentile } from './dnsperf.js';
import type { LatencyScenario } from './latency-report.js';
import { table } from './table.js';

/**
 * Where the slow 1 % goes (issue 24, `--latency-parts attribution`): a
 * daemon run under V8's sampling profiler (`--cpu-prof`, one sample every
 * 100 µs) while dnsperf asks it at a fixed rate, and each stretch of the
 * main thread's work between two idle samples put down to what it ran: the
 * answer path, the inventory's scan, the walk for sockets' owners, metrics,
 * the cluster view, the etcd client, garbage collection, V8/libuv's own
 * native work. A query that arrives while the loop runs a stretch waits
 * for (at least part of) it, so the stretches longer than the slice bound
 * (0.2 ms) are the ones that make slow answers: at a paced rate R, a
 * stretch of d ms meets d × R / 1000 queries. The table prints, per cause,
 * those stretches, their time, and the queries they met as a share of the
 * queries over the p99 line (1 % of the answers). Beside it, from
 * `/proc/<pid>/task/<pid>/schedstat`, how long the main thread was
 * runnable but waited for a CPU (other processes): on a shared machine that
 * time also shows as long stretches of whatever was running.
 *
 * Pure parts (profile → rows, rows → table) are exported for tests; the
 * runner (latency.ts) starts the daemon through profilingLauncher().
 */

/** A stretch of work longer than this holds a query past the bound the brief sets for one task (~0.2 ms). */
export const LONG_STRETCH_MS = 0.2;

/** The profile's sampling interval, µs. */
export const PROFILE_INTERVAL_US = 100;

/** What V8's .cpuprofile holds (the parts read here). */
export interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string }; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface AttributionCause {
  cause: string;
  /** Stretches longer than LONG_STRETCH_MS put down to it. */
  stretches: number;
  ms: number;
  maxMs: number;
  /** Queries paced at the run's rate that arrived during them. */
  queries: number;
  /**
   * Of those, the ones that waited past the p99 line: a query arriving x ms
   * into a stretch of d ms waits d − x more, so a stretch meets R × (d − L)
   * / 1000 queries that wait over L = p99 − p50 (any stretch, short ones
   * included, counts for L < 0.2 ms).
   */
  overLine: number;
}

export interface AttributionRow {
  /** canonical, cached, cluster, or `first second after ready` (canonical, a fresh daemon). */
  scenario: LatencyScenario | 'first second after ready';
  server: string;
  rate: number;
  answers: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** Answers over the p99 line. */
  overP99: number;
  windowMs: number;
  /** The main thread's own work in the window (non-idle samples), ms. */
  busyMs: number;
  /** The main thread runnable but not running (schedstat), ms in the window; null when /proc does not say. */
  waitedForCpuMs: number | null;
  causes: AttributionCause[];
}

/** What one sample's stack was doing, by the frames it holds (leaf first). */
export function causeOf(frames: readonly { functionName: string; url: string }[]): string {
  const leaf = frames[0];
  if (!leaf) return 'native (V8, libuv)';
  if (leaf.functionName === '(idle)') return 'idle';
  if (leaf.functionName === '(garbage collector)') return 'garbage collection';
  if (leaf.functionName === '(program)') return 'native (V8, libuv)';
  const has = (re: RegExp) => frames.some((f) => re.test(f.url));
  if (has(/\/inventory\/socket-owner\.js$/)) return "inventory: sockets' owners walk (/proc/*/fd)";
  if (has(/\/inventory\/readiness\.js$|\/inventory\/(http|version)-probe\.js$/)) return 'inventory: readiness and version probes';
  if (has(/\/inventory\//)) return 'inventory: scan (/proc/net, namespaces)';
  if (has(/\/metrics\/|\/prom-client\//)) return 'metrics';
  if (has(/\/cluster\//)) return 'cluster view and publisher';
  if (has(/\/etcd3\/|\/@grpc\/grpc-js\//)) return 'etcd client (gRPC)';
  if (has(/\/dns\/|\/dns2\//)) return 'answer path';
  if (has(/\/discovery\//)) return 'discovery';
  if (has(/\/pino\/|\/log\.js$/)) return 'logging';
  if (frames.some((f) => f.url.startsWith('node:internal/perf/'))) return 'performance observers (GC metrics)';
  if (frames.some((f) => f.url.startsWith('node:internal/timers'))) return 'timers';
  if (frames.some((f) => f.url.startsWith('node:internal/fs/'))) return 'file system callbacks';
  return 'other';
}

/**
 * The profile's stretches of work in [fromUs, toUs] (its own clock: the
 * monotonic one process.hrtime reads in any process of the machine), each
 * put down to its main cause: the cause other than the answer path and
 * native work with the most samples when it holds a quarter of them or
 * more (a scan that ran inside a stretch of answers made it long), else the
 * one with the most samples.
 */
export function attributeProfile(p: CpuProfile, fromUs: number, toUs: number, ratePerS: number, lineMs = LONG_STRETCH_MS): { causes: AttributionCause[]; busyMs: number } {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const memo = new Map<number, string>();
  const cause = (id: number): string => {
    let c = memo.get(id);
    if (c !== undefined) return c;
    const frames: { functionName: string; url: string }[] = [];
    for (let k: number | undefined = id; k !== undefined; k = parent.get(k)) frames.push(byId.get(k)!.callFrame);
    c = causeOf(frames);
    memo.set(id, c);
    return c;
  };
  const out = new Map<string, AttributionCause>();
  let busyUs = 0;
  let stretch: { start: number; last: number; counts: Map<string, number> } | null = null;
  const close = (end: number) => {
    if (!stretch) return;
    const us = end - stretch.start;
    busyUs += us;
    const over = Math.max(0, us / 1000 - lineMs);
    if (us >= LONG_STRETCH_MS * 1000 || over > 0) {
      let top = '';
      let topN = 0;
      let side = '';
      let sideN = 0;
      let all = 0;
      for (const [c, n] of stretch.counts) {
        all += n;
        if (n > topN) [top, topN] = [c, n];
        if (c !== 'answer path' && c !== 'native (V8, libuv)' && n > sideN) [side, sideN] = [c, n];
      }
      const name = side && sideN * 4 >= all ? side : top;
      const a = out.get(name) ?? { cause: name, stretches: 0, ms: 0, maxMs: 0, queries: 0, overLine: 0 };
      if (us >= LONG_STRETCH_MS * 1000) {
        a.stretches++;
        a.ms += us / 1000;
        a.maxMs = Math.max(a.maxMs, us / 1000);
        a.queries += (us / 1e6) * ratePerS;
      }
      a.overLine += (over / 1000) * ratePerS;
      out.set(name, a);
    }
    stretch = null;
  };
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (t < fromUs || t > toUs) {
      close(t);
      continue;
    }
    const c = cause(p.samples[i]!);
    if (c === 'idle') {
      close(t);
      continue;
    }
    stretch ??= { start: t, last: t, counts: new Map() };
    stretch.last = t;
    stretch.counts.set(c, (stretch.counts.get(c) ?? 0) + 1);
  }
  close(t);
  const causes = [...out.values()].sort((a, b) => b.overLine - a.overLine || b.queries - a.queries);
  for (const c of causes) {
    c.queries = Math.round(c.queries);
    c.overLine = Math.round(c.overLine);
  }
  return { causes, busyMs: busyUs / 1000 };
}

/** Summary of a run's latencies beside the attribution. */
export function latencySummary(latenciesMs: readonly number[]) {
  const l = [...latenciesMs];
  return { answers: l.length, p50Ms: percentile(l, 50), p99Ms: percentile(l, 99), p999Ms: percentile(l, 99.9), overP99: Math.floor(l.length / 100) };
}

/**
 * A checkout's launcher with the profiler on: `dir/bin/canonport.js` runs
 * `repo`'s dist with the flags its own launcher sets plus --cpu-prof
 * (NODE_OPTIONS may not carry it), the profile written to `dir/prof` when
 * the daemon exits. Pass `dir` as Servers.startCanonport's repo.
 */
export function profilingLauncher(repo: string, dir: string): { dir: string; profiles: string } {
  const launcher = readFileSync(join(repo, 'bin', 'canonport.js'), 'utf8');
  const shebang = launcher.split('\n')[0]!;
  if (!shebang.startsWith('#!') || !shebang.includes(' node')) throw new Error(`${repo}/bin/canonport.js: no node shebang to add --cpu-prof to`);
  const profiles = join(dir, 'prof');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  rmSync(profiles, { recursive: true, force: true });
  mkdirSync(profiles, { recursive: true });
  const body = launcher.split('\n').slice(1).join('\n').replace(/from '\.\.\/dist\//g, `from '${join(repo, 'dist')}/`);
  writeFileSync(join(dir, 'bin', 'canonport.js'), `${shebang} --cpu-prof --cpu-prof-dir=${profiles} --cpu-prof-interval=${PROFILE_INTERVAL_US}\n${body}`);
  chmodSync(join(dir, 'bin', 'canonport.js'), 0o755);
  return { dir, profiles };
}

/** The one profile a stopped daemon wrote. */
export function readProfile(profiles: string): CpuProfile {
  const f = readdirSync(profiles).find((n) => n.endsWith('.cpuprofile'));
  if (!f) throw new Error(`no .cpuprofile in ${profiles} (did the daemon exit cleanly?)`);
  return JSON.parse(readFileSync(join(profiles, f), 'utf8')) as CpuProfile;
}

/** The main thread's time waiting on a run queue, ms (schedstat's second field); null when unreadable. */
export function runQueueWaitMs(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return null;
  }
}

/** The process's monotonic clock in µs, as .cpuprofile's timestamps read it. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

const ms3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '–');

export function attributionTable(rows: readonly AttributionRow[]): string {
  const out = [
    `where the slow 1 % goes (--latency-parts attribution): the daemon under --cpu-prof (a sample every ${PROFILE_INTERVAL_US} µs), ` +
      `stretches of main-thread work ≥ ${LONG_STRETCH_MS} ms put down to what they ran; "queries" = paced queries that arrived during them; ` +
      `"over the line" = those a stretch held past p99 − p50 (R × (d − line) per stretch of d ms), and their share of the answers above p99. ` +
      `The profile samples wall time: a thread waiting for a CPU shows as a long stretch of whatever it ran (its runnable wait, from schedstat, is printed per row). ` +
      `The profiler slows the daemon: compare shares, not latencies, with the rows above`,
  ];
  for (const r of rows) {
    out.push(
      `  ${r.scenario}, ${r.server}, ${r.rate.toLocaleString('en-US')} q/s: ${r.answers} answers, p50 ${ms3(r.p50Ms)} / p99 ${ms3(r.p99Ms)} / p99.9 ${ms3(r.p999Ms)} ms, ` +
        `${r.overP99} over the p99 line; main thread busy ${r.busyMs.toFixed(0)} ms of ${r.windowMs.toFixed(0)}, ` +
        `waited for a CPU ${r.waitedForCpuMs === null ? '–' : `${r.waitedForCpuMs.toFixed(0)} ms (≈ ${Math.round((r.waitedForCpuMs * r.rate) / 1000)} queries)`}`,
    );
    const rows2 = r.causes.slice(0, 10).map((c) => [
      c.cause,
      String(c.stretches),
      c.ms.toFixed(1),
      c.maxMs.toFixed(2),
      String(c.queries),
      String(c.overLine),
      r.overP99 > 0 ? `${((100 * c.overLine) / r.overP99).toFixed(0)} %` : '–',
    ]);
    out.push(rows2.length ? table(['cause', 'stretches ≥ 0.2 ms', 'ms', 'longest ms', 'queries', 'over the line', 'share of > p99'], rows2, 2) : '    no stretch of work ≥ 0.2 ms');
  }
  return out.join('\n');
}
