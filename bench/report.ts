import type { CpuUse } from './cpu.js';
import { renderCluster, type ClusterBenchResult } from './cluster-report.js';
import { renderUi, type UiBenchResult } from './ui-report.js';
import { formatRollout, type RolloutBenchResult } from './rollout.js';
import { formatContainers, type ContainersBenchResult } from './containers.js';
import type { GrpcLoadResult } from './grpc-load.js';
import { idleTable, idleTargets, type IdleResult } from './idle-report.js';
import { latencyTable, latencyTargets, type LatencyResult } from './latency-report.js';
import type { Target, TargetStatus } from './target.js';
import { table } from './table.js';
import { xdsReport, type XdsBenchResult } from './xds-report.js';

export { table };

/**
 * The bench's result (also its JSON), the targets of issue 5 checked against
 * it, and the tables printed for people. Pure.
 */

export const CANONPORT = 'canonport';
/** The same daemon with `--workers WORKERS`: DNS workers sharing one socket. */
export const WORKERS = 2;
export const CANONPORT_WORKERS = `canonport ×${WORKERS}`;
export const UNBOUND = 'unbound';
export const DNSMASQ = 'dnsmasq';
export const DNS2_PLAIN = 'dns2 plain';
export const DGRAM_BARE = 'dgram bare';
/** % of one core used by other processes during a run, above which its figures are flagged. */
export const OTHER_CPU_WARN = 15;

/** One server in one DNS scenario. Latencies in ms; null where not measured. */
export interface ServerResult {
  server: string;
  /** How it answers in this scenario: "local-data", "forwarding + cache", … */
  role: string;
  qps: number | null;
  avgMs: number | null;
  completed: number | null;
  lost: number | null;
  rcodes: Record<string, number>;
  /** The paced run with the median p99 (rate reached, p99, average), and every paced run with the CPU other processes took. */
  paced: { qps: number; p99Ms: number; avgMs: number; answers: number; runs: { qps: number; p99Ms: number; avgMs: number; answers: number; otherCpu: number }[] } | null;
  /** "ok", or what differed from the expected answer. */
  answerCheck: string;
  /** CPU during the throughput run, % of one core: the server's, dnsperf's, and everything else on the machine's. */
  cpu: CpuUse | null;
  error?: string;
}

export type DnsScenarioId = 'canonical' | 'cached' | 'cold';

export interface DnsScenarioResult {
  id: DnsScenarioId;
  title: string;
  method: string;
  rows: ServerResult[];
  notes: string[];
}

export interface GrpcResult {
  name: string;
  method: string;
  rows: { concurrency: number; canonport: GrpcLoadResult | null; noop: GrpcLoadResult | null }[];
  /** ResolveMany with `size` names per call, `concurrency` calls in flight (canonport only). */
  batch: { size: number; concurrency: number; canonport: GrpcLoadResult } | null;
  notes: string[];
}

export interface RssResult {
  names: number;
  completed: number;
  lost: number;
  seconds: number;
  cacheEntries: number | null;
  /** Megabytes (10^6 bytes), as the target is written. */
  baselineMB: number;
  rssMB: number;
  peakMB: number;
  notes: string[];
}

export interface StartupResult {
  /** Spawn → first canonical SRV answer, ms, one per canonport start in this run. */
  firstAnswerMs: number[];
  /** Spawn → /readyz 200, ms. */
  readyzMs: number[];
}

export type { Target, TargetStatus };

export interface BenchResult {
  version: 1;
  startedAt: string;
  finishedAt: string;
  durationS: number;
  options: { quick: boolean; only: string[]; seconds: number; pacedQps: number; pacedSeconds: number; pacedRuns: number };
  host: { node: string; cpus: number; cpuModel: string; kernel: string; commit: string | null };
  tools: Record<string, string | null>;
  canonport: { available: boolean; reason?: string };
  scenarios: Partial<Record<DnsScenarioId, DnsScenarioResult>>;
  grpc: GrpcResult | null;
  rss: RssResult | null;
  startup: StartupResult | null;
  /** The xDS scenario (issue 15); absent in results from before it existed. */
  xds?: XdsBenchResult | null;
  /** The idle scenario (issue 24): CPU, wakeups and RSS with nothing asked; absent in results from before it existed. */
  idle?: IdleResult | null;
  /** The latency scenario (issue 24): fixed rates beside unbound, loop delay and GCs, runs from /readyz. */
  latency?: LatencyResult | null;
  /** `--only cluster` (issue 14): figures, targets and its own table (cluster-report.ts). */
  cluster?: ClusterBenchResult | null | undefined;
  /** `--only ui` (issue 25): the fleet page's weight, first render and live cost (ui.ts). */
  ui?: UiBenchResult | null | undefined;
  /** `--only rollout` (issue 20): deploys, restarts, readiness convergence, probe cost (rollout.ts). */
  rollout?: RolloutBenchResult | null | undefined;
  /** `--only containers` (issue 26): scan cost with 100 containers, idle CPU, convergence (containers.ts). */
  containers?: ContainersBenchResult | null | undefined;
  targets: Target[];
  errors: string[];
}

function row(s: DnsScenarioResult | undefined, server: string): ServerResult | undefined {
  return s?.rows.find((r) => r.server === server && r.qps !== null);
}

function fmtQps(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Two decimals, or three where two would round onto the threshold (1.996 shown as "2.00" next to MISS). */
export function ratioText(value: number, threshold: number): string {
  return Math.abs(value - threshold) < 0.005 ? value.toFixed(3) : value.toFixed(2);
}

/** The targets of issues 5 and 11, each PASS / MISS / n/a against this run. */
export function evaluateTargets(r: BenchResult): Target[] {
  const out: Target[] = [];
  const unavailable = r.canonport.available ? 'not measured' : `canonport serve not available${r.canonport.reason ? ` (${r.canonport.reason})` : ''}`;
  /** A target; with no value, `detail` says why (else that canonport was not measured). */
  const push = (id: string, description: string, value: number | null, threshold: number, ok: (v: number) => boolean, detail: string) =>
    out.push({
      id,
      description,
      value,
      threshold,
      status: value === null || !Number.isFinite(value) ? 'n/a' : ok(value) ? 'PASS' : 'MISS',
      detail: value === null ? detail || unavailable : detail,
    });

  for (const [sid, label] of [
    ['canonical', 'canonical SRV'],
    ['cached', 'cached forwarded'],
  ] as const) {
    const s = r.scenarios[sid];
    const cp = row(s, CANONPORT);
    const ratio = (ref: string, id: string, desc: string, threshold: number, ok: (v: number) => boolean) => {
      const rr = row(s, ref);
      const value = cp && rr ? cp.qps! / rr.qps! : null;
      const detail = cp && rr ? `${ratioText(value!, threshold)} × (${fmtQps(cp.qps!)} vs ${fmtQps(rr.qps!)} q/s)` : !s ? 'scenario not run' : !rr ? `${ref} not measured` : unavailable;
      push(id, desc, value, threshold, ok, detail);
    };
    ratio(UNBOUND, `${sid}-vs-unbound`, `${label} ≥ 0.30 × unbound q/s`, 0.3, (v) => v >= 0.3);
    ratio(DNSMASQ, `${sid}-vs-dnsmasq`, `${label} above dnsmasq q/s`, 1, (v) => v > 1);
    ratio(DNS2_PLAIN, `${sid}-vs-dns2`, `${label} ≥ 2 × dns2 plain q/s`, 2, (v) => v >= 2);
  }

  // Issue 11: a cache hit as cheap as a canonical hit (both answers kept encoded), measured in the same run.
  const canonCp = row(r.scenarios.canonical, CANONPORT);
  const cachedCp = row(r.scenarios.cached, CANONPORT);
  const hitRatio = canonCp && cachedCp ? cachedCp.qps! / canonCp.qps! : null;
  push(
    'cached-vs-canonical',
    'cached forwarded ≥ 0.9 × canonical q/s (canonport, same run)',
    hitRatio,
    0.9,
    (v) => v >= 0.9,
    hitRatio !== null ? `${ratioText(hitRatio, 0.9)} × (${fmtQps(cachedCp!.qps!)} vs ${fmtQps(canonCp!.qps!)} q/s)` : '',
  );

  const canonPaced = row(r.scenarios.canonical, CANONPORT)?.paced ?? null;
  push(
    'p99-at-5k',
    `p99 latency < 2 ms at ${fmtQps(r.options.pacedQps)} q/s (canonical SRV)`,
    canonPaced ? canonPaced.p99Ms : null,
    2,
    (v) => v < 2,
    canonPaced ? `${canonPaced.p99Ms.toFixed(3)} ms at ${fmtQps(canonPaced.qps)} q/s reached` : '',
  );

  let grpcMin: number | null = null;
  let grpcDetail = '';
  for (const g of r.grpc?.rows ?? []) {
    if (!g.canonport || !g.noop || g.canonport.errors > 0) continue;
    const v = g.canonport.callsPerSec / g.noop.callsPerSec;
    if (grpcMin === null || v < grpcMin) {
      grpcMin = v;
      grpcDetail = `worst at concurrency ${g.concurrency}: ${ratioText(v, 0.8)} × (${fmtQps(g.canonport.callsPerSec)} vs ${fmtQps(g.noop.callsPerSec)} calls/s)`;
    }
  }
  const grpcErr = r.grpc?.rows.find((g) => g.canonport && g.canonport.errors > 0)?.canonport?.firstError;
  if (grpcErr) grpcDetail = `canonport Resolve failed: ${grpcErr}`;
  push('grpc-vs-noop', 'gRPC Resolve ≥ 0.8 × no-op grpc-js handler (every concurrency)', grpcErr ? null : grpcMin, 0.8, (v) => v >= 0.8, grpcDetail);

  const rss = r.rss;
  push(
    'rss-100k',
    'RSS < 150 MB with 100k cached names',
    rss ? rss.rssMB : null,
    150,
    (v) => v < 150,
    rss ? `${rss.rssMB.toFixed(1)} MB (peak ${rss.peakMB.toFixed(1)}, at start ${rss.baselineMB.toFixed(1)}; cache entries ${rss.cacheEntries ?? 'unknown'})` : '',
  );

  const st = r.startup;
  const worst = st && st.firstAnswerMs.length ? Math.max(...st.firstAnswerMs) : null;
  push(
    'ready-500ms',
    'ready to answer within 500 ms of start',
    worst,
    500,
    (v) => v <= 500,
    st ? `worst ${worst?.toFixed(0)} ms over ${st.firstAnswerMs.length} start(s): ${st.firstAnswerMs.map((v) => v.toFixed(0)).join(', ')} ms` : '',
  );
  // Issue 24's targets, where their scenario ran.
  if (r.latency) out.push(...latencyTargets(r.latency));
  if (r.idle) out.push(...idleTargets(r.idle));
  return out;
}

const ms = (v: number | null | undefined) => (v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(3));

/** One DNS scenario's table: the last column is canonport's q/s divided by that row's. */
export function dnsScenarioTable(s: DnsScenarioResult): string {
  const cp = row(s, CANONPORT);
  const rows = s.rows.map((r) => [
    r.server,
    r.role,
    r.qps === null ? (r.error ? 'error' : '–') : fmtQps(r.qps),
    ms(r.avgMs),
    ms(r.paced?.p99Ms),
    r.lost === null ? '–' : String(r.lost),
    r.cpu?.server == null ? '–' : `${r.cpu.server.toFixed(0)}%`,
    r.cpu ? `${r.cpu.loadGenerator.toFixed(0)}%` : '–',
    r.cpu && r.cpu.upstream > 0 ? `${r.cpu.upstream.toFixed(0)}%` : '–',
    r.cpu ? `${r.cpu.other.toFixed(0)}%` : '–',
    r.answerCheck === 'ok' ? 'ok' : 'DIFF',
    cp && r.qps ? (cp.qps! / r.qps).toFixed(2) : '–',
  ]);
  const out = [`${s.title}`, `  ${s.method}`, table(['server', 'answers from', 'q/s', 'avg ms', 'p99 ms', 'lost', 'cpu', 'dnsperf', 'upstream', 'other', 'answer', 'canonport/this'], rows, 2)];
  for (const r of s.rows) {
    if (r.error) out.push(`  ${r.server}: ${r.error}`);
    else if (r.answerCheck !== 'ok') out.push(`  ${r.server}: answer differs: ${r.answerCheck}`);
  }
  const busy = s.rows
    .map((r) => ({ r, other: Math.max(r.cpu?.other ?? 0, ...(r.paced?.runs ?? []).map((x) => x.otherCpu)) }))
    .filter((x) => x.other > OTHER_CPU_WARN);
  if (busy.length) {
    out.push(
      `  warning: other processes took CPU while measuring ${busy.map((x) => `${x.r.server} (up to ${x.other.toFixed(0)}% of a core)`).join(', ')}: their q/s are low and p99 high`,
    );
  }
  for (const n of s.notes) out.push(`  note: ${n}`);
  return out.join('\n');
}

export function grpcTable(g: GrpcResult): string {
  const rows = g.rows.map((x) => [
    String(x.concurrency),
    x.canonport ? fmtQps(x.canonport.callsPerSec) : '–',
    x.canonport ? ms(x.canonport.p99Ms) : '–',
    x.canonport ? String(x.canonport.errors) : '–',
    x.noop ? fmtQps(x.noop.callsPerSec) : '–',
    x.noop ? ms(x.noop.p99Ms) : '–',
    x.canonport && x.noop ? (x.canonport.callsPerSec / x.noop.callsPerSec).toFixed(2) : '–',
  ]);
  const out = [
    `gRPC Resolve("${g.name}")`,
    `  ${g.method}`,
    table(['in flight', 'canonport calls/s', 'p99 ms', 'errors', 'no-op calls/s', 'p99 ms', 'canonport/no-op'], rows),
  ];
  for (const x of g.rows) if (x.canonport?.firstError) out.push(`  canonport at ${x.concurrency}: ${x.canonport.firstError}`);
  if (g.batch) {
    const b = g.batch.canonport;
    const single = g.rows.find((x) => x.concurrency === g.batch!.concurrency)?.canonport;
    const names = b.callsPerSec * g.batch.size;
    out.push(
      `  ResolveMany, ${g.batch.size} names per call, ${g.batch.concurrency} in flight: ${fmtQps(b.callsPerSec)} calls/s = ${fmtQps(names)} names/s, p99 ${ms(b.p99Ms)} ms` +
        (single ? `, ${(names / single.callsPerSec).toFixed(1)} × single Resolve calls` : '') +
        (b.errors ? `; ${b.errors} errors: ${b.firstError ?? ''}` : ''),
    );
  }
  for (const n of g.notes) out.push(`  note: ${n}`);
  return out.join('\n');
}

export function targetsTable(targets: Target[]): string {
  const issues = targets.some((t) => t.id.startsWith('idle-') || t.id.startsWith('latency-')) ? 'issues 5, 11 and 24' : 'issues 5 and 11';
  return [`targets (${issues})`, ...targets.map((t) => `  ${t.status.padEnd(4)}  ${t.description.padEnd(62)}  ${t.detail}`)].join('\n');
}

/** The whole human-readable report. */
export function renderReport(r: BenchResult): string {
  const parts: string[] = [];
  const tools = Object.entries(r.tools)
    .map(([k, v]) => `${k} ${v ?? 'missing'}`)
    .join(', ');
  parts.push(
    `canonport bench ${r.startedAt} — node ${r.host.node}, ${r.host.cpus} CPUs (${r.host.cpuModel}), ${tools}; commit ${r.host.commit ?? 'unknown'}${r.options.quick ? '; --quick' : ''}`,
  );
  if (!r.canonport.available) parts.push(`canonport serve not available: ${r.canonport.reason ?? ''} — references only`);
  for (const id of ['canonical', 'cached', 'cold'] as const) {
    const s = r.scenarios[id];
    if (s) parts.push(dnsScenarioTable(s));
  }
  if (r.grpc) parts.push(grpcTable(r.grpc));
  if (r.rss) {
    const x = r.rss;
    parts.push(
      [
        `RSS with ${fmtQps(x.names)} forwarded names cached`,
        `  ${fmtQps(x.completed)} answered, ${x.lost} lost in ${x.seconds.toFixed(1)} s; cache entries ${x.cacheEntries ?? 'unknown'}`,
        `  RSS ${x.rssMB.toFixed(1)} MB (at start ${x.baselineMB.toFixed(1)} MB, peak ${x.peakMB.toFixed(1)} MB)`,
        ...x.notes.map((n) => `  note: ${n}`),
      ].join('\n'),
    );
  }
  if (r.startup) {
    parts.push(
      `startup: spawn → first answer ${r.startup.firstAnswerMs.map((v) => `${v.toFixed(0)} ms`).join(', ') || '–'}; spawn → /readyz 200 ${r.startup.readyzMs.map((v) => `${v.toFixed(0)} ms`).join(', ') || '–'}`,
    );
  }
  if (r.latency) parts.push(latencyTable(r.latency));
  if (r.idle) parts.push(idleTable(r.idle));
  if (r.xds) parts.push(xdsReport(r.xds));
  if (r.cluster) parts.push(renderCluster(r.cluster));
  if (r.ui) parts.push(renderUi(r.ui));
  if (r.rollout) parts.push(formatRollout(r.rollout).join('\n'));
  if (r.containers) parts.push(formatContainers(r.containers).join('\n'));
  if (r.targets.length > 0 || (!r.cluster && !r.ui)) parts.push(targetsTable(r.targets));
  for (const e of r.errors) parts.push(`error: ${e}`);
  parts.push(`(${r.durationS.toFixed(0)} s)`);
  return `${parts.join('\n\n')}\n`;
}
