import type { Target } from './target.js';
import { table } from './table.js';
import { attributionTable, type AttributionRow } from './tail-attribution.js';

/**
 * The latency scenario's figures (`npm run bench -- --only latency`,
 * issue 24): per-query latency at fixed rates, canonport beside unbound in
 * the same run, alternating; the daemon's own event-loop delay and garbage
 * collections during each of its runs; runs begun the moment a fresh
 * daemon's /readyz turns ready. Its targets and tables. Pure: the runner is
 * latency.ts.
 */

export type LatencyScenario = 'canonical' | 'cached' | 'cluster';

/** What the daemon said about itself over one run (from /metrics before and after). */
export interface DaemonSide {
  /** Event-loop delay histogram over the run, ms (nodejs_eventloop_lag_*). */
  loopP50Ms: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /** Garbage collections during the run, by kind, and their total time (ms). */
  gc: Record<string, { count: number; ms: number }>;
  /** Collections that took 1 ms or more (any kind). */
  gcOver1ms: number;
}

export interface LatencyCell {
  scenario: LatencyScenario;
  server: string;
  rate: number;
  /** Answers measured (every round pooled) and queries lost. */
  answers: number;
  lost: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  /** p99 of each round, to show the spread. */
  roundP99Ms: number[];
  /** Queries per second reached (mean of the rounds). */
  qps: number;
  daemon?: DaemonSide | undefined;
  /** Most CPU other processes took during one of its rounds, % of a core (a loaded machine makes tails long). */
  otherCpu: number;
}

/** A fresh daemon asked at a fixed rate from the moment /readyz said ready. */
export interface WarmRun {
  server: string;
  /** Spawn → /readyz 200 (canonport) or first answer (unbound), ms. */
  readyMs: number;
  rate: number;
  /** Latencies of the answers to queries sent in the first second after ready. */
  firstSecond: { answers: number; p50Ms: number; p99Ms: number; p999Ms: number };
  /** The whole run. */
  all: { answers: number; p50Ms: number; p99Ms: number; p999Ms: number; lost: number };
  daemon?: DaemonSide | undefined;
}

export interface LatencyResult {
  method: string;
  cells: LatencyCell[];
  warm: WarmRun[];
  /** V8 compiler events after ready (warm-trace.ts): this checkout's daemon, then the baseline's. */
  trace?: { server: string; steps: { queries: number; optimized: number; deoptimized: number }[] }[];
  /** The cluster scenario's view and churn, as run. */
  cluster: { nodes: number; servicesPerNode: number; pool: number; instancesPerService: number; churnPerSecond: number; changes: number; answer: string } | null;
  /** Where the slow answers went (`--latency-parts attribution`): profiled daemons, per scenario. */
  attribution?: AttributionRow[];
  notes: string[];
  errors: string[];
}

export const LATENCY_CANONPORT = 'canonport';
export const LATENCY_UNBOUND = 'unbound';
/** The rate issue 24's targets are set at. */
export const TARGET_RATE = 3000;

export type LatencyTarget = Target;

const ms3 = (v: number) => (Number.isFinite(v) ? v.toFixed(3) : '–');

/**
 * Issue 24: at 3,000 q/s with one client, for canonical, cached and
 * cluster answers, p99 ≤ 1.5 × unbound's (same run) and ≤ 0.5 ms, p99.9
 * ≤ 2 ms; and the same bound for the first second after /readyz.
 */
export function latencyTargets(r: LatencyResult): LatencyTarget[] {
  const out: LatencyTarget[] = [];
  const cell = (scenario: LatencyScenario, server: string) => r.cells.find((c) => c.scenario === scenario && c.server === server && c.rate === TARGET_RATE && c.answers > 0);
  const status = (ok: boolean | null): LatencyTarget['status'] => (ok === null ? 'n/a' : ok ? 'PASS' : 'MISS');
  for (const scenario of ['canonical', 'cached', 'cluster'] as const) {
    const cp = cell(scenario, LATENCY_CANONPORT);
    // Cluster answers are compared with unbound's canonical row of the same run (unbound has no cluster view).
    const ub = cell(scenario === 'cluster' ? 'canonical' : scenario, LATENCY_UNBOUND);
    const ratio = cp && ub ? cp.p99Ms / ub.p99Ms : null;
    out.push({
      id: `latency-${scenario}-p99`,
      description: `${scenario} p99 at 3k q/s ≤ 1.5 × unbound's and ≤ 0.5 ms`,
      status: status(cp && ub ? ratio! <= 1.5 && cp.p99Ms <= 0.5 : null),
      value: cp ? cp.p99Ms : null,
      threshold: 0.5,
      detail: cp && ub ? `${ms3(cp.p99Ms)} ms, ${ratio!.toFixed(2)} × unbound's ${ms3(ub.p99Ms)} ms` : cp ? `${ms3(cp.p99Ms)} ms, unbound not measured` : 'not measured',
    });
    out.push({
      id: `latency-${scenario}-p999`,
      description: `${scenario} p99.9 at 3k q/s ≤ 2 ms`,
      status: status(cp ? cp.p999Ms <= 2 : null),
      value: cp ? cp.p999Ms : null,
      threshold: 2,
      detail: cp ? `${ms3(cp.p999Ms)} ms (unbound ${ub ? ms3(ub.p999Ms) : '–'} ms)` : 'not measured',
    });
  }
  const warm = r.warm.filter((w) => w.server === LATENCY_CANONPORT && w.firstSecond.answers > 0);
  const ubWarm = cell('canonical', LATENCY_UNBOUND);
  const worst = warm.length ? warm.reduce((a, b) => (b.firstSecond.p99Ms > a.firstSecond.p99Ms ? b : a)) : null;
  out.push({
    id: 'latency-warm-p99',
    description: 'first second after /readyz: p99 at 3k q/s ≤ 1.5 × unbound and ≤ 0.5 ms',
    status: status(worst && ubWarm ? worst.firstSecond.p99Ms <= 0.5 && worst.firstSecond.p99Ms / ubWarm.p99Ms <= 1.5 : null),
    value: worst ? worst.firstSecond.p99Ms : null,
    threshold: 0.5,
    detail: worst ? `worst of ${warm.length} start(s): ${ms3(worst.firstSecond.p99Ms)} ms (p99.9 ${ms3(worst.firstSecond.p999Ms)}); each: ${warm.map((w) => ms3(w.firstSecond.p99Ms)).join(', ')} ms` : 'not measured',
  });
  out.push({
    id: 'latency-warm-p999',
    description: 'first second after /readyz: p99.9 at 3k q/s ≤ 2 ms',
    status: status(worst ? Math.max(...warm.map((w) => w.firstSecond.p999Ms)) <= 2 : null),
    value: worst ? Math.max(...warm.map((w) => w.firstSecond.p999Ms)) : null,
    threshold: 2,
    detail: worst ? `each start: ${warm.map((w) => ms3(w.firstSecond.p999Ms)).join(', ')} ms` : 'not measured',
  });
  return out;
}

function gcText(d: DaemonSide | undefined): string {
  if (!d) return '–';
  const kinds = Object.entries(d.gc)
    .filter(([, v]) => v.count > 0)
    .map(([k, v]) => `${v.count} ${k} ${v.ms.toFixed(0)} ms`);
  return kinds.length ? `${kinds.join(', ')}; ≥1 ms: ${d.gcOver1ms}` : 'none';
}

export function latencyTable(r: LatencyResult): string {
  const out = [`latency at fixed rates (issue 24)`, `  ${r.method}`];
  const rows = r.cells.map((c) => [
    c.scenario,
    c.server,
    c.rate.toLocaleString('en-US'),
    ms3(c.p50Ms),
    ms3(c.p99Ms),
    ms3(c.p999Ms),
    c.roundP99Ms.map(ms3).join(' / '),
    String(c.answers),
    String(c.lost),
    c.daemon ? `${c.daemon.loopP50Ms.toFixed(1)} / ${c.daemon.loopP99Ms.toFixed(1)} / ${c.daemon.loopMaxMs.toFixed(1)}` : '–',
    gcText(c.daemon),
    `${c.otherCpu.toFixed(0)}%`,
  ]);
  out.push(table(['answers', 'server', 'q/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'p99 per round', 'answers', 'lost', 'loop delay p50/p99/max ms', 'GC during the run', 'other'], rows, 2));
  if (r.cluster) {
    const c = r.cluster;
    out.push(
      `  cluster: a view of ${c.nodes.toLocaleString('en-US')} hosts × ${c.servicesPerNode} services (${c.pool.toLocaleString('en-US')} services, ${c.instancesPerService} instances each) in etcd, ` +
        `${c.churnPerSecond} listener changes a second during the runs (${c.changes} in all); an answer: ${c.answer}; compared with unbound's canonical row`,
    );
  }
  if (r.warm.length) {
    out.push('  from the moment /readyz turned ready (fresh daemon, canonical SRV, one client):');
    out.push(
      table(
        ['server', 'ready ms', 'q/s', 'first second p50', 'p99', 'p99.9', 'answers', 'whole run p99', 'p99.9', 'lost', 'GC during the run'],
        r.warm.map((w) => [
          w.server,
          w.readyMs.toFixed(0),
          w.rate.toLocaleString('en-US'),
          ms3(w.firstSecond.p50Ms),
          ms3(w.firstSecond.p99Ms),
          ms3(w.firstSecond.p999Ms),
          String(w.firstSecond.answers),
          ms3(w.all.p99Ms),
          ms3(w.all.p999Ms),
          String(w.all.lost),
          gcText(w.daemon),
        ]),
        1,
      ),
    );
  }
  if (r.trace?.length) {
    out.push('  V8 compiling after /readyz said ready (node --trace-opt --trace-deopt; 2,000 canonical queries at a time, paced at 3,000 q/s):');
    out.push(
      table(
        ['server', ...r.trace[0]!.steps.slice(1).map((s) => `after ${s.queries.toLocaleString('en-US')} queries`)],
        r.trace.map((t) => [t.server, ...t.steps.slice(1).map((s) => `${s.optimized} optimized, ${s.deoptimized} deopt`)]),
        1,
      ),
    );
  }
  if (r.attribution?.length) out.push(attributionTable(r.attribution));
  for (const n of r.notes) out.push(`  note: ${n}`);
  for (const e of r.errors) out.push(`  error: ${e}`);
  return out.join('\n');
}
