import { describe, expect, it } from 'vitest';
import { cpuUse, parseMachineBusy, parseProcStat, type CpuSnapshot } from '../bench/cpu.js';
import { mergeLoads, type GrpcLoadResult } from '../bench/grpc-load.js';
import { evaluateTargets, renderReport, type BenchResult, type ServerResult } from '../bench/report.js';

function row(server: string, qps: number, p99Ms = 0.5): ServerResult {
  return { server, role: 'x', qps, avgMs: 1, completed: 1, lost: 0, rcodes: { NOERROR: 1 }, paced: { qps: 5000, p99Ms, avgMs: 0.2, answers: 5000, runs: [] }, answerCheck: 'ok', cpu: null };
}

function load(concurrency: number, callsPerSec: number, errors = 0): GrpcLoadResult {
  return { concurrency, calls: callsPerSec, errors, seconds: 1, callsPerSec, avgMs: 1, p99Ms: 2 };
}

function result(over: Partial<BenchResult> = {}): BenchResult {
  return {
    version: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: '',
    durationS: 1,
    options: { quick: true, only: [], seconds: 3, pacedQps: 5000, pacedSeconds: 1, pacedRuns: 1 },
    host: { node: 'v20', cpus: 2, cpuModel: 'cpu', kernel: 'k', commit: null },
    tools: { dnsperf: '2.10.0', unbound: '1.17.1', dnsmasq: '2.90' },
    canonport: { available: true },
    scenarios: {
      canonical: {
        id: 'canonical',
        title: '(a)',
        method: 'm',
        rows: [row('canonport', 40_000, 1.5), row('unbound', 100_000), row('dnsmasq', 30_000), row('dns2 plain', 15_000)],
        notes: [],
      },
    },
    grpc: { name: 'api.bench.test', method: 'm', rows: [{ concurrency: 1, canonport: load(1, 900), noop: load(1, 1000) }, { concurrency: 16, canonport: load(16, 1500), noop: load(16, 2000) }], batch: { size: 100, concurrency: 16, canonport: load(16, 600) }, notes: [] },
    rss: { names: 100_000, completed: 100_000, lost: 0, seconds: 5, cacheEntries: 100_000, baselineMB: 80, rssMB: 160, peakMB: 170, notes: [] },
    startup: { firstAnswerMs: [300, 450], readyzMs: [310, 460] },
    targets: [],
    errors: [],
    ...over,
  };
}

describe('bench targets', () => {
  it('checks each target of issue 5 against the run', () => {
    const t = Object.fromEntries(evaluateTargets(result()).map((x) => [x.id, x]));
    expect(t['canonical-vs-unbound']).toMatchObject({ status: 'PASS', value: 0.4 });
    expect(t['canonical-vs-dnsmasq']!.status).toBe('PASS');
    expect(t['canonical-vs-dns2']).toMatchObject({ status: 'PASS', value: 40_000 / 15_000 });
    expect(t['cached-vs-unbound']).toMatchObject({ status: 'n/a', detail: 'scenario not run' });
    expect(t['p99-at-5k']).toMatchObject({ status: 'PASS', value: 1.5 });
    expect(t['grpc-vs-noop']).toMatchObject({ status: 'MISS', value: 0.75 }); // the worst concurrency counts
    expect(t['grpc-vs-noop']!.detail).toContain('concurrency 16');
    expect(t['rss-100k']).toMatchObject({ status: 'MISS', value: 160 });
    expect(t['ready-500ms']).toMatchObject({ status: 'PASS', value: 450 });
  });

  it('says n/a, naming why, when canonport serve is not available', () => {
    const r = result({ canonport: { available: false, reason: 'no serve command yet' }, grpc: null, rss: null, startup: null });
    r.scenarios.canonical!.rows.shift();
    const targets = evaluateTargets(r);
    expect(targets.every((x) => x.status === 'n/a')).toBe(true);
    expect(targets.find((x) => x.id === 'canonical-vs-unbound')!.detail).toContain('canonport serve not available (no serve command yet)');
  });

  it('counts a gRPC target with failing canonport calls as not met, with the error', () => {
    const r = result();
    r.grpc!.rows[0]!.canonport = { ...load(1, 5000, 3), firstError: 'NOT_FOUND: api.bench.test' };
    const t = evaluateTargets(r).find((x) => x.id === 'grpc-vs-noop')!;
    expect(t.status).toBe('n/a');
    expect(t.detail).toContain('NOT_FOUND');
  });

  it('renders a table per scenario with canonport/this ratios and the targets', () => {
    const r = result();
    r.targets = evaluateTargets(r);
    const text = renderReport(r);
    expect(text).toMatch(/^ {2}server\s+answers from\s+q\/s\s+avg ms\s+p99 ms\s+lost\s+cpu\s+dnsperf\s+upstream\s+other\s+answer\s+canonport\/this$/m);
    expect(text).toMatch(/^ {2}unbound\s+x\s+100,000\s.*\s0\.40$/m);
    expect(text).toMatch(/^ {2}dns2 plain\s+x\s+15,000\s.*\s2\.67$/m);
    expect(text).toMatch(/^ {2}MISS\s+RSS < 150 MB with 100k cached names\s+160\.0 MB/m);
    // 600 calls/s × 100 names against 1,500 single calls/s at the same concurrency.
    expect(text).toContain('ResolveMany, 100 names per call, 16 in flight: 600 calls/s = 60,000 names/s, p99 2.000 ms, 40.0 × single Resolve calls');
  });
});

describe('bench CPU accounting', () => {
  it('reads /proc/PID/stat fields after a command name with spaces and parentheses', () => {
    const line = '1234 (node (bench) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 12 3 20 0 11 0 100 0 0';
    expect(parseProcStat(line)).toEqual({ utime: 250, stime: 75, cutime: 12, cstime: 3 });
  });

  it('sums busy ticks from /proc/stat (user nice system irq softirq steal; not idle, iowait)', () => {
    expect(parseMachineBusy('cpu  100 5 50 9000 40 3 2 1 0 0\ncpu0 1 2 3\n')).toBe(161);
  });

  it('splits an interval between server, load generator, upstream, bench and everything else', () => {
    const a: CpuSnapshot = { at: 0, machine: 1000, server: 100, helpers: 10, self: 50, reaped: 0 };
    const b: CpuSnapshot = { at: 2000, machine: 1400, server: 280, helpers: 30, self: 60, reaped: 100 };
    // 2 s at 100 ticks/s: 180 ticks = 90 % of a core, etc.; other = 400 - 180 - 100 - 10 - 20 = 90.
    expect(cpuUse(a, b)).toEqual({ server: 90, loadGenerator: 50, upstream: 10, bench: 5, other: 45 });
  });

  it('merges gRPC half-runs into one cell: calls over total time, percentiles over all calls', () => {
    const m = mergeLoads([
      { ...load(4, 100), calls: 100, seconds: 1, latenciesMs: Array(100).fill(1) },
      { ...load(4, 300), calls: 300, seconds: 1, latenciesMs: Array(300).fill(3), firstError: 'UNAVAILABLE: x' },
    ]);
    expect(m).toMatchObject({ concurrency: 4, calls: 400, seconds: 2, callsPerSec: 200, avgMs: 2.5, p99Ms: 3, firstError: 'UNAVAILABLE: x' });
    expect(m.latenciesMs).toBeUndefined();
  });
});
