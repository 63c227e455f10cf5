import type { Target } from './target.js';
import { table } from './table.js';

/**
 * The idle scenario's figures (`npm run bench -- --only idle`, issue 24),
 * its targets and its table. Pure: the runner is idle.ts.
 *
 * CPU time a process consumed over a window (utime + stime from
 * /proc/PID/stat) does not depend on what else runs on the machine, so
 * these figures hold on a loaded machine, unlike latencies.
 */

/** One process left alone for the window. */
export interface IdleRow {
  server: string;
  /** What it runs as: "single-host, 20 listeners", "cluster mode", … */
  role: string;
  /** utime + stime over the window, % of one core. */
  cpuPct: number | null;
  /** Context switches of its main thread per second: how often it is woken (timers, I/O). */
  wakeupsPerSec: number | null;
  /** The same over every thread (libuv's pool, V8's helpers, grpc's). */
  allThreadWakeupsPerSec: number | null;
  /** VmRSS, median of samples every 5 s through the window, MB (10^6 bytes). */
  rssMB: number | null;
  /** The largest of those samples. */
  rssMaxMB: number | null;
  /** canonport's garbage collections over the window, by kind, with their time (its /metrics): V8's memory reducer collects in the first minutes after start. */
  gc?: string | undefined;
  error?: string | undefined;
}

export interface IdleResult {
  seconds: number;
  /** Listening services on each canonport's host, probed for versions. */
  listeners: number;
  method: string;
  rows: IdleRow[];
  notes: string[];
  errors: string[];
}

/** Row names the targets read. */
export const IDLE_SINGLE = 'canonport';
export const IDLE_CLUSTER = 'canonport --cluster';
export const IDLE_BARE_NODE = 'bare node';

export type IdleTarget = Target;

/** Issue 24's idle targets: CPU ≤ 0.3 % of a core in cluster mode with the listeners; RSS ≤ 60 MB single-host, ≤ 70 MB in cluster mode. */
export function idleTargets(r: IdleResult): IdleTarget[] {
  const row = (name: string) => r.rows.find((x) => x.server === name && !x.error);
  const single = row(IDLE_SINGLE);
  const cluster = row(IDLE_CLUSTER);
  const bare = row(IDLE_BARE_NODE);
  const out: IdleTarget[] = [];
  const push = (id: string, description: string, value: number | null | undefined, threshold: number, detail: string) =>
    out.push({ id, description, value: value ?? null, threshold, status: value === null || value === undefined || !Number.isFinite(value) ? 'n/a' : value <= threshold ? 'PASS' : 'MISS', detail: value == null ? 'not measured' : detail });
  push(
    'idle-cpu-cluster',
    `idle CPU ≤ 0.3 % of a core (cluster mode, ${r.listeners} listeners probed)`,
    cluster?.cpuPct,
    0.3,
    cluster ? `${cluster.cpuPct!.toFixed(3)} % over ${r.seconds} s, ${cluster.wakeupsPerSec!.toFixed(1)} wakeups/s` : '',
  );
  push(
    'idle-cpu-single',
    `idle CPU ≤ 0.3 % of a core (single-host, ${r.listeners} listeners probed)`,
    single?.cpuPct,
    0.3,
    single ? `${single.cpuPct!.toFixed(3)} % over ${r.seconds} s, ${single.wakeupsPerSec!.toFixed(1)} wakeups/s` : '',
  );
  const vsBare = (x: IdleRow | undefined) => (x && bare?.rssMB ? `, bare node ${bare.rssMB.toFixed(1)} MB (+${(x.rssMB! - bare.rssMB).toFixed(1)})` : '');
  // With --baseline: the other checkout's daemon in the same window ("canonport @abc1234"), the same-run reference.
  const baseline = (name: string) => r.rows.find((x) => x.server.startsWith(`${name} @`) && !x.error && x.rssMB !== null);
  const vsBase = (x: IdleRow | undefined, name: string) => {
    const b = baseline(name);
    if (!x || !b) return '';
    const d = x.rssMB! - b.rssMB!;
    return `; baseline ${b.server.slice(name.length + 1)} ${b.rssMB!.toFixed(1)} MB (${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(1)})`;
  };
  push('idle-rss-single', 'idle RSS ≤ 60 MB single-host', single?.rssMB, 60, single ? `${single.rssMB!.toFixed(1)} MB${vsBare(single)}${vsBase(single, IDLE_SINGLE)}` : '');
  push('idle-rss-cluster', 'idle RSS ≤ 70 MB in cluster mode', cluster?.rssMB, 70, cluster ? `${cluster.rssMB!.toFixed(1)} MB${vsBare(cluster)}${vsBase(cluster, IDLE_CLUSTER)}` : '');
  return out;
}

const fixed = (v: number | null, digits: number) => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(digits));

export function idleTable(r: IdleResult): string {
  const rows = r.rows.map((x) => [x.server, x.role, x.error ? 'error' : fixed(x.cpuPct, 3), fixed(x.wakeupsPerSec, 1), fixed(x.allThreadWakeupsPerSec, 1), fixed(x.rssMB, 1), fixed(x.rssMaxMB, 1), x.gc ?? '']);
  const out = [
    `idle cost: ${r.seconds} s with nothing asked`,
    `  ${r.method}`,
    table(['process', 'runs as', 'cpu % of a core', 'wakeups/s main', 'all threads', 'RSS MB', 'max', 'GCs in the window (ms)'], rows, 2),
  ];
  for (const x of r.rows) if (x.error) out.push(`  ${x.server}: ${x.error}`);
  for (const n of r.notes) out.push(`  note: ${n}`);
  for (const e of r.errors) out.push(`  error: ${e}`);
  return out.join('\n');
}
