import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Children } from './children.js';

/**
 * Driving dnsperf and reading what it prints. The parsers are pure so the
 * smoke test can feed them captured output.
 */

export interface DnsperfOptions {
  /** Server address (default 127.0.0.1). */
  server?: string;
  port: number;
  /** Transport (default udp). */
  mode?: 'udp' | 'tcp';
  file: string;
  /** Seconds; dnsperf stops after this even when the file is not exhausted. */
  seconds: number;
  clients?: number;
  /** Pace to this many queries per second (for latency runs). */
  maxQps?: number;
  /** Go through the file at most this many times (1 = every name once: cold runs, warm-ups). */
  maxRuns?: number;
  /** Print one line per answer, for percentiles. */
  verbose?: boolean;
  /** Seconds before an outstanding query counts as lost. */
  timeout?: number;
}

export function dnsperfArgs(o: DnsperfOptions): string[] {
  const args = ['-s', o.server ?? '127.0.0.1', '-p', String(o.port), '-d', o.file, '-c', String(o.clients ?? 4), '-l', String(o.seconds)];
  if (o.mode === 'tcp') args.push('-m', 'tcp');
  args.push('-t', String(o.timeout ?? 2));
  if (o.maxQps !== undefined) args.push('-Q', String(o.maxQps));
  if (o.maxRuns !== undefined) args.push('-n', String(o.maxRuns));
  if (o.verbose) args.push('-v');
  return args;
}

/** dnsperf's closing statistics. Latencies in milliseconds. */
export interface DnsperfStats {
  sent: number;
  completed: number;
  lost: number;
  qps: number;
  runtimeS: number;
  avgMs: number;
  minMs: number;
  maxMs: number;
  stddevMs: number;
  /** Answers by response code: { NOERROR: 123, NXDOMAIN: 4 }. */
  rcodes: Record<string, number>;
  /** Why dnsperf stopped: "time limit", "end of file", … */
  stopReason: string;
}

function num(text: string, re: RegExp, what: string): number {
  const m = re.exec(text);
  if (!m) throw new Error(`dnsperf output has no "${what}" line`);
  return Number(m[1]);
}

/** Parses the "Statistics:" block dnsperf 2.x prints at the end of a run. */
export function parseDnsperfOutput(text: string): DnsperfStats {
  const rcodes: Record<string, number> = {};
  const rc = /^\s*Response codes:\s*(.*)$/m.exec(text);
  if (rc) {
    for (const m of rc[1]!.matchAll(/([A-Z]+) (\d+)/g)) rcodes[m[1]!] = Number(m[2]);
  }
  const lat = /Average Latency \(s\):\s*([\d.]+)\s*\(min ([\d.]+), max ([\d.]+)\)/.exec(text);
  if (!lat) throw new Error('dnsperf output has no "Average Latency" line');
  const stddev = /Latency StdDev \(s\):\s*([\d.]+)/.exec(text);
  return {
    sent: num(text, /Queries sent:\s*(\d+)/, 'Queries sent'),
    completed: num(text, /Queries completed:\s*(\d+)/, 'Queries completed'),
    lost: num(text, /Queries lost:\s*(\d+)/, 'Queries lost'),
    qps: num(text, /Queries per second:\s*([\d.]+)/, 'Queries per second'),
    runtimeS: num(text, /Run time \(s\):\s*([\d.]+)/, 'Run time'),
    avgMs: Number(lat[1]) * 1000,
    minMs: Number(lat[2]) * 1000,
    maxMs: Number(lat[3]) * 1000,
    stddevMs: stddev ? Number(stddev[1]) * 1000 : Number.NaN,
    rcodes,
    stopReason: /Testing complete \(([^)]*)\)/.exec(text)?.[1] ?? 'unknown',
  };
}

/** One `-v` answer line: `> NOERROR _svc0001._tcp.bench.test SRV 0.000091`. */
export interface VerboseAnswer {
  rcode: string;
  name: string;
  type: string;
  latencyMs: number;
}

export function parseVerboseLine(line: string): VerboseAnswer | null {
  const m = /^> (\S+) (\S+) (\S+) ([\d.]+)$/.exec(line.trimEnd());
  if (!m) return null;
  return { rcode: m[1]!, name: m[2]!, type: m[3]!, latencyMs: Number(m[4]) * 1000 };
}

/** The p-th percentile (0–100) by nearest rank; NaN for no values. */
export function percentile(values: ArrayLike<number>, p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface DnsperfRun {
  stats: DnsperfStats;
  /** Per-answer latencies (verbose runs only). */
  latenciesMs: number[];
  args: string[];
}

/**
 * Runs dnsperf to completion, tracked by `children` so it dies with the
 * bench. Killed after `seconds + 15` whatever happens.
 */
export async function runDnsperf(o: DnsperfOptions, children: Children): Promise<DnsperfRun> {
  const args = dnsperfArgs(o);
  const proc = spawn('dnsperf', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const untrack = children.track('dnsperf', proc);
  const latenciesMs: number[] = [];
  let text = '';
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 16_384) stderr += d;
  });
  const lines = createInterface({ input: proc.stdout });
  lines.on('line', (line) => {
    if (line.startsWith('> ')) {
      const a = parseVerboseLine(line);
      if (a) latenciesMs.push(a.latencyMs);
    } else {
      text += `${line}\n`;
    }
  });
  const guard = setTimeout(() => proc.kill('SIGKILL'), (o.seconds + 15) * 1000);
  const code = await new Promise<number | null>((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (c) => resolve(c));
  }).finally(() => {
    clearTimeout(guard);
    untrack();
  });
  if (code !== 0) throw new Error(`dnsperf ${args.join(' ')} exited ${code}: ${stderr.trim().slice(-500) || text.slice(-500)}`);
  return { stats: parseDnsperfOutput(text), latenciesMs, args };
}
