import { percentile } from './dnsperf.js';

/**
 * The xDS scenario's result and its section of the bench report
 * (bench/xds-daemon.ts measures; this file only shapes and prints).
 */

export interface XdsBenchOptions {
  quick: boolean;
  /** Push-latency trials per client (≥ 50 for a p99). */
  trials: number;
  /** Fan-out clients. */
  clients: number;
  rounds: number;
  idleSeconds: number;
}

export interface LatencyStats {
  n: number;
  failed: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  samplesMs: number[];
}

export interface FanRound {
  /** From the registry file's rename until the last client had the change. */
  lastClientMs: number;
  /** Daemon CPU over the round (reload, lookups, encoding, writing), ms. */
  daemonCpuMs: number;
  /** Responses and resources the daemon sent for it (its own counters). */
  responses: number;
  resources: number;
}

export interface XdsBenchResult {
  method: string;
  options: XdsBenchOptions;
  daemon: { pid: number; grpc: string; rssMiBIdle: number };
  /** Registry file rewritten; the daemon's watcher reloads after 200 ms of quiet. */
  pushLatency: { node: LatencyStats | { error: string }; python: LatencyStats | { error: string } };
  /** Registry file rewritten and SIGHUP sent at once (systemd's ExecReload): the reload starts at once. */
  pushLatencySighup: { node: LatencyStats | { error: string }; python: LatencyStats | { error: string } };
  fanout: {
    clients: number;
    streams: number | null;
    allSubscribedMs: number;
    setupDaemonCpuMs: number;
    rssMiBBefore: number;
    rssMiBAfter: number;
    sharedName: FanRound[];
    everyName: FanRound[];
  } | null;
  steady: {
    idleSeconds: number;
    idleResponses: number;
    idleClientResponses: number;
    idleDaemonCpuPct: number;
    noopReloads: number;
    noopReloadResponses: number;
    noopReloadDaemonCpuMs: number;
    nacks: number;
    rssMiB: number;
  } | null;
  notes: string[];
}

export function latencyStats(ms: number[], failed: number): LatencyStats {
  const s = [...ms].sort((a, b) => a - b);
  return { n: s.length, failed, min: s[0] ?? Number.NaN, p50: percentile(s, 50), p99: percentile(s, 99), max: s.at(-1) ?? Number.NaN, samplesMs: ms.map((x) => Math.round(x * 10) / 10) };
}

/** The sum of every series of a metric (all label sets) in a /metrics body. */
export function metricSum(body: string, name: string): number {
  let sum = 0;
  for (const m of body.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.eE+-]+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

export const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '–');
export const median = (xs: number[]) => percentile(xs, 50);

export function fmtLatency(v: LatencyStats | { error: string }): string {
  return 'error' in v ? `not measured (${v.error})` : `n=${v.n} p50 ${fmt(v.p50)} ms, p99 ${fmt(v.p99)} ms, max ${fmt(v.max)} ms, failed ${v.failed}`;
}

/** The report's xDS section. */
export function xdsReport(r: XdsBenchResult): string {
  const lines = [`xDS control plane inside canonport serve (issue 15)`, `  method: ${r.method}`];
  lines.push(`  push latency, registry change → a stock client's next call answered on the new port (target p99 ≤ 1000 ms):`);
  lines.push(`    file rewrite (watcher, 200 ms quiet)  Node   @grpc/grpc-js-xds  ${fmtLatency(r.pushLatency.node)}`);
  lines.push(`                                          Python grpcio (C core)    ${fmtLatency(r.pushLatency.python)}`);
  lines.push(`    file rewrite + SIGHUP                 Node   @grpc/grpc-js-xds  ${fmtLatency(r.pushLatencySighup.node)}`);
  lines.push(`                                          Python grpcio (C core)    ${fmtLatency(r.pushLatencySighup.python)}`);
  const f = r.fanout;
  if (f) {
    lines.push(
      `  fan-out: ${f.clients} clients (${f.streams ?? '?'} streams at the daemon) subscribed in ${fmt(f.allSubscribedMs, 0)} ms, daemon CPU ${fmt(f.setupDaemonCpuMs, 0)} ms; daemon RSS ${fmt(f.rssMiBBefore)} → ${fmt(f.rssMiBAfter)} MiB (${fmt(((f.rssMiBAfter - f.rssMiBBefore) * 1024) / f.clients)} KiB per client)`,
    );
    const rounds = (label: string, rs: FanRound[]) => {
      if (rs.length === 0) return;
      const last = rs.map((x) => x.lastClientMs);
      lines.push(
        `    ${label}: last client has it after p50 ${fmt(median(last))} ms (max ${fmt(Math.max(...last))}); daemon CPU p50 ${fmt(median(rs.map((x) => x.daemonCpuMs)), 0)} ms; responses/round ${rs.map((x) => x.responses).join(',')}`,
      );
    };
    rounds('one registry change moves the name all clients share', f.sharedName);
    rounds('one registry change moves every client\'s own name  ', f.everyName);
  }
  const s = r.steady;
  if (s) {
    lines.push(
      `  steady state: ${s.idleSeconds} s with ${f?.clients ?? '?'} idle clients → ${s.idleResponses} responses (clients received ${s.idleClientResponses}), daemon CPU ${fmt(s.idleDaemonCpuPct, 2)} %; ${s.noopReloads} reloads changing nothing → ${s.noopReloadResponses} responses, daemon CPU ${fmt(s.noopReloadDaemonCpuMs, 0)} ms; NACKs ${s.nacks}; RSS ${fmt(s.rssMiB)} MiB`,
    );
  }
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines.join('\n');
}
