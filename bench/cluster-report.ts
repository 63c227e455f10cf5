import type { Target } from './target.js';

/**
 * The cluster scenario's figures (`npm run bench -- --only cluster`), its
 * targets (issue 14) and its table. Pure: the runner is cluster-bench.ts.
 */

export interface Percentiles {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

export interface AnswerCostRow {
  /** What was asked: `canonical` (no host reports it: the single-host answer) or `N instances`. */
  label: string;
  instances: number;
  transport: 'udp' | 'tcp';
  qps: number | null;
  avgMs: number | null;
  /** Records in the answer (and whether UDP answers came truncated). */
  answer: string;
  error?: string | undefined;
}

export interface ClusterBenchResult {
  /** Load on the machine while it ran (1-minute load average at start and end; 2 cores). */
  load: { start: number; end: number };
  settings: { leaseTtlSeconds: number; scanIntervalMs: number; observedTtlSeconds: number; pollMs: number };
  convergence: {
    /** A listener starts on host A: until SRV at host B's daemon lists it (ms). */
    listenerAppears: Percentiles | null;
    /** It closes: until B's SRV drops it (ms). */
    listenerCloses: Percentiles | null;
    /** The same starts, seen by an xDS client subscribed at B: until its ClusterLoadAssignment lists A (ms). */
    xdsAppears?: Percentiles | null;
    /** The same closes: until B pushes a ClusterLoadAssignment without A (ms). */
    xdsCloses?: Percentiles | null;
    /** A host's daemon is SIGKILLed: until B's SRV drops that host (ms). */
    daemonKilled: Percentiles | null;
  };
  answerCost: AnswerCostRow[];
  /** bench/cluster-scale.ts's JSON, as it printed it. */
  scale: Record<string, unknown> | null;
  /** Reading a namespace's /proc/net/tcp with `sockets` sockets: the whole file vs up to the first connection (ms, median of 20). */
  procnet: { sockets: number; wholeFileMs: number; listenersOnlyMs: number; wholeBytes: number; listenersOnlyBytes: number } | null;
  errors: string[];
}

export function percentiles(xs: readonly number[]): Percentiles | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
  return { n: s.length, p50: Math.round(at(50)), p99: Math.round(at(99)), max: Math.round(s[s.length - 1]!) };
}

export type ClusterTarget = Target;

/** Issue 14's targets against this run. */
export function clusterTargets(r: ClusterBenchResult): ClusterTarget[] {
  const out: ClusterTarget[] = [];
  const push = (id: string, description: string, value: number | null, threshold: number, ok: (v: number) => boolean, detail: string) =>
    out.push({ id, description, value, threshold, status: value === null || !Number.isFinite(value) ? 'n/a' : ok(value) ? 'PASS' : 'MISS', detail: value === null ? 'not measured' : detail });
  const c = r.convergence;
  push('cluster-appear-p99', 'listener starts on A → SRV on B lists it, p99 ≤ 2 s', c.listenerAppears?.p99 ?? null, 2000, (v) => v <= 2000, c.listenerAppears ? `p99 ${c.listenerAppears.p99} ms over ${c.listenerAppears.n}` : '');
  push('cluster-close-p99', 'listener closes on A → SRV on B drops it, p99 ≤ 2 s', c.listenerCloses?.p99 ?? null, 2000, (v) => v <= 2000, c.listenerCloses ? `p99 ${c.listenerCloses.p99} ms over ${c.listenerCloses.n}` : '');
  // Issue 15: a listener change in cluster mode reaches a subscribed xDS client, p99 ≤ 2 s.
  if (c.xdsAppears !== undefined) push('cluster-xds-appear-p99', 'listener starts on A → B pushes it to an xDS client, p99 ≤ 2 s', c.xdsAppears?.p99 ?? null, 2000, (v) => v <= 2000, c.xdsAppears ? `p99 ${c.xdsAppears.p99} ms over ${c.xdsAppears.n}` : '');
  if (c.xdsCloses !== undefined) push('cluster-xds-close-p99', 'listener closes on A → B pushes its removal, p99 ≤ 2 s', c.xdsCloses?.p99 ?? null, 2000, (v) => v <= 2000, c.xdsCloses ? `p99 ${c.xdsCloses.p99} ms over ${c.xdsCloses.n}` : '');
  const killBound = (r.settings.leaseTtlSeconds + 1) * 1000;
  push('cluster-kill-p99', `daemon SIGKILLed → dropped, p99 ≤ lease TTL + 1 s (${killBound / 1000} s)`, c.daemonKilled?.p99 ?? null, killBound, (v) => v <= killBound, c.daemonKilled ? `p99 ${c.daemonKilled.p99} ms over ${c.daemonKilled.n}` : '');
  const canonical = r.answerCost.find((x) => x.instances === 0 && x.transport === 'udp')?.qps ?? null;
  const ten = r.answerCost.find((x) => x.instances === 10 && x.transport === 'udp')?.qps ?? null;
  const ratio = canonical && ten ? ten / canonical : null;
  push('cluster-srv10-ratio', 'SRV with 10 instances ≥ 0.8× the canonical answer\'s q/s', ratio, 0.8, (v) => v >= 0.8, ratio !== null ? `${ratio.toFixed(2)}× (${Math.round(ten!)} vs ${Math.round(canonical!)} q/s)` : '');
  return out;
}

/** cluster-scale.ts's JSON in one line of prose. */
export function scaleText(x: Record<string, unknown>): string {
  const s = x as {
    nodes: number;
    servicesPerNode: number;
    keys: number;
    write: { ms: number };
    view: { loadMs: number; heapBytes: number; endpointsOnOnePort: number; firstLookupMs: number; cachedLookupNs: number };
    steady: { seconds: number; etcdPutsPerSecond: number; keepalivesPerSecond: number; expectedKeepalivesPerSecond: number };
  };
  return (
    `${s.nodes.toLocaleString('en-US')} nodes × ${s.servicesPerNode} services = ${s.keys.toLocaleString('en-US')} keys, written in ${(s.write.ms / 1000).toFixed(1)} s; ` +
    `a view lists and indexes them in ${s.view.loadMs} ms, ${(s.view.heapBytes / 1e6).toFixed(1)} MB of heap; ` +
    `the ${s.view.endpointsOnOnePort} endpoints of one port: ${s.view.firstLookupMs} ms to build, then ${s.view.cachedLookupNs} ns; ` +
    `steady state over ${s.steady.seconds} s: ${s.steady.etcdPutsPerSecond} puts/s, ${s.steady.keepalivesPerSecond} keepalives/s (${s.steady.expectedKeepalivesPerSecond} expected)`
  );
}

const ms = (p: Percentiles | null) => (p ? `p50 ${p.p50} ms, p99 ${p.p99} ms, max ${p.max} ms (n=${p.n})` : '–');

export function renderCluster(r: ClusterBenchResult): string {
  const lines = [
    `cluster mode (issue 14): real daemons in network namespaces, etcd from Debian; load average ${r.load.start.toFixed(1)} → ${r.load.end.toFixed(1)} on ${2} cores`,
    `  settings: lease TTL ${r.settings.leaseTtlSeconds} s, scan every ${r.settings.scanIntervalMs} ms, observed TTL ${r.settings.observedTtlSeconds} s; host B polled every ${r.settings.pollMs} ms`,
    `  convergence, listener starts on A → SRV at B lists it:  ${ms(r.convergence.listenerAppears)}`,
    `  convergence, listener closes on A → SRV at B drops it:  ${ms(r.convergence.listenerCloses)}`,
    ...(r.convergence.xdsAppears !== undefined ? [`  the same starts, pushed by B to an xDS client (EDS):     ${ms(r.convergence.xdsAppears)}`] : []),
    ...(r.convergence.xdsCloses !== undefined ? [`  the same closes, pushed by B to an xDS client (EDS):     ${ms(r.convergence.xdsCloses)}`] : []),
    `  daemon SIGKILLed → SRV at B drops its host:             ${ms(r.convergence.daemonKilled)}`,
    '  answer cost (dnsperf -c 4 against host B\'s daemon, same run, runs interleaved):',
    ...r.answerCost.map((x) => `    ${x.label.padEnd(14)} ${x.transport}  ${x.qps !== null ? `${Math.round(x.qps).toLocaleString('en-US').padStart(7)} q/s, avg ${x.avgMs!.toFixed(3)} ms` : `error: ${x.error ?? '?'}`}  (${x.answer})`),
  ];
  if (r.procnet) {
    const p = r.procnet;
    lines.push(`  /proc/net/tcp with ${p.sockets.toLocaleString('en-US')} sockets: whole file ${p.wholeFileMs.toFixed(2)} ms (${p.wholeBytes.toLocaleString('en-US')} B), up to the first connection ${p.listenersOnlyMs.toFixed(2)} ms (${p.listenersOnlyBytes.toLocaleString('en-US')} B); median of 20`);
  }
  if (r.scale) lines.push(`  scale (bench/cluster-scale.ts): ${scaleText(r.scale)}`);
  lines.push('targets (issue 14)', ...clusterTargets(r).map((t) => `  ${t.status.padEnd(4)}  ${t.description.padEnd(62)}  ${t.detail}`));
  for (const e of r.errors) lines.push(`  error: ${e}`);
  return lines.join('\n');
}
