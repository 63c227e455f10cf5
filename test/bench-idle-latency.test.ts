import { describe, expect, it } from 'vitest';
import { idleTable, idleTargets, type IdleResult, type IdleRow } from '../bench/idle-report.js';
import { gcBetween, idleRegistry, idleServices } from '../bench/idle.js';
import { daemonSide } from '../bench/latency.js';
import { latencyTable, latencyTargets, type LatencyCell, type LatencyResult, type WarmRun } from '../bench/latency-report.js';
import { nodeName, scaleNode, serviceNames, servicesOf } from './helpers/scale-fleet.js';
import { base32Port } from '../src/scheme/index.js';

/** The pieces of issue 24's bench sections (idle, latency) that are pure: targets, tables, parsing. */

const row = (server: string, cpuPct: number, rssMB: number): IdleRow => ({ server, role: 'r', cpuPct, wakeupsPerSec: 1, allThreadWakeupsPerSec: 2, rssMB, rssMaxMB: rssMB + 1 });

describe('idle targets', () => {
  const result = (rows: IdleRow[]): IdleResult => ({ seconds: 60, listeners: 20, method: 'm', rows, notes: [], errors: [] });

  it('PASS and MISS at the thresholds: 0.3 % of a core, 60 MB single-host, 70 MB in cluster mode', () => {
    const t = idleTargets(result([row('canonport', 0.3, 60), row('canonport --cluster', 0.31, 70.1), row('bare node', 0, 41.5)]));
    expect(Object.fromEntries(t.map((x) => [x.id, x.status]))).toEqual({
      'idle-cpu-cluster': 'MISS',
      'idle-cpu-single': 'PASS',
      'idle-rss-single': 'PASS',
      'idle-rss-cluster': 'MISS',
    });
    expect(t.find((x) => x.id === 'idle-rss-single')!.detail).toContain('bare node 41.5 MB (+18.5)');
  });

  it('the RSS targets name the baseline daemons of the same window beside bare node, when --baseline ran them', () => {
    const rows = [row('canonport', 0.2, 75), row('canonport --cluster', 0.3, 81), row('canonport @9d13f42', 0.2, 77.9), row('canonport --cluster @9d13f42', 0.5, 86.3), row('bare node', 0, 41.5)];
    const t = Object.fromEntries(idleTargets(result(rows)).map((x) => [x.id, x.detail]));
    expect(t['idle-rss-single']).toBe('75.0 MB, bare node 41.5 MB (+33.5); baseline @9d13f42 77.9 MB (−2.9)');
    expect(t['idle-rss-cluster']).toBe('81.0 MB, bare node 41.5 MB (+39.5); baseline @9d13f42 86.3 MB (−5.3)');
    // Without a baseline, no reference is made up.
    expect(idleTargets(result(rows.filter((x) => !x.server.includes('@'))))[2]!.detail).toBe('75.0 MB, bare node 41.5 MB (+33.5)');
  });

  it('n/a for what was not measured, and a row with an error counts as not measured', () => {
    const t = idleTargets(result([{ ...row('canonport', 0.1, 50), error: 'gone' }]));
    expect(t.every((x) => x.status === 'n/a')).toBe(true);
    expect(idleTable(result([{ ...row('canonport', 0.1, 50), error: 'gone' }]))).toContain('canonport: gone');
  });

  it('a canonport row carries the garbage collections of its window, from two scrapes of its /metrics', () => {
    const scrape = (minor: number, minorS: number, major: number, majorS: number) =>
      [
        `canonport_nodejs_gc_duration_seconds_count{kind="minor"} ${minor}`,
        `canonport_nodejs_gc_duration_seconds_sum{kind="minor"} ${minorS}`,
        `canonport_nodejs_gc_duration_seconds_count{kind="major"} ${major}`,
        `canonport_nodejs_gc_duration_seconds_sum{kind="major"} ${majorS}`,
      ].join('\n');
    expect(gcBetween(scrape(40, 0.05, 3, 0.2), scrape(48, 0.0628, 3, 0.2))).toBe('minor 8 (12.8)');
    expect(gcBetween(scrape(40, 0.05, 3, 0.2), scrape(40, 0.05, 5, 0.29))).toBe('major 2 (90.0)');
    expect(gcBetween(scrape(1, 0.001, 0, 0), scrape(1, 0.001, 0, 0))).toBe('none');
    expect(idleTable(result([{ ...row('canonport --cluster', 0.2, 80), gc: 'minor 8 (12.8)' }]))).toContain('minor 8 (12.8)');
  });

  it('twenty services whose ports all differ, and a registry that probes each for its version', () => {
    const s = idleServices(20);
    expect(new Set(s.map((x) => x.port)).size).toBe(20);
    expect(idleRegistry()).toContain('versionPath: /version');
  });
});

describe('latency targets', () => {
  const cell = (scenario: LatencyCell['scenario'], server: string, p99Ms: number, p999Ms = 1, rate = 3000): LatencyCell => ({
    scenario,
    server,
    rate,
    answers: 24_000,
    lost: 0,
    p50Ms: 0.1,
    p99Ms,
    p999Ms,
    roundP99Ms: [p99Ms],
    qps: rate,
    otherCpu: 0,
  });
  const warm = (p99Ms: number, p999Ms = 1): WarmRun => ({
    server: 'canonport',
    readyMs: 400,
    rate: 3000,
    firstSecond: { answers: 3000, p50Ms: 0.1, p99Ms, p999Ms },
    all: { answers: 9000, p50Ms: 0.1, p99Ms, p999Ms, lost: 0 },
  });
  const result = (cells: LatencyCell[], w: WarmRun[] = []): LatencyResult => ({ method: 'm', cells, warm: w, cluster: null, notes: [], errors: [] });

  it('p99 within 1.5 × unbound and 0.5 ms, p99.9 within 2 ms, at 3,000 q/s only', () => {
    const t = latencyTargets(
      result([
        cell('canonical', 'unbound', 0.3),
        cell('canonical', 'canonport', 0.45),
        cell('cached', 'unbound', 0.2),
        cell('cached', 'canonport', 0.31, 2.5),
        // 10k rows are reported, not judged.
        cell('canonical', 'canonport', 9, 9, 10_000),
        cell('cluster', 'canonport', 0.6),
      ]),
    );
    const s = Object.fromEntries(t.map((x) => [x.id, x.status]));
    expect(s['latency-canonical-p99']).toBe('PASS');
    expect(s['latency-canonical-p999']).toBe('PASS');
    // 0.31 is under 0.5 ms but above 1.5 × 0.2.
    expect(s['latency-cached-p99']).toBe('MISS');
    expect(s['latency-cached-p999']).toBe('MISS');
    // Cluster answers are judged against unbound's canonical row.
    expect(s['latency-cluster-p99']).toBe('MISS');
    expect(t.find((x) => x.id === 'latency-cluster-p99')!.detail).toContain("2.00 × unbound's 0.300 ms");
    expect(s['latency-warm-p99']).toBe('n/a');
  });

  it('judges the worst of the warm starts', () => {
    const t = latencyTargets(result([cell('canonical', 'unbound', 0.3)], [warm(0.2), warm(0.9, 3)]));
    expect(t.find((x) => x.id === 'latency-warm-p99')!.status).toBe('MISS');
    expect(t.find((x) => x.id === 'latency-warm-p999')!.status).toBe('MISS');
    const ok = latencyTargets(result([cell('canonical', 'unbound', 0.3)], [warm(0.2), warm(0.4)]));
    expect(ok.find((x) => x.id === 'latency-warm-p99')!.status).toBe('PASS');
  });

  it('reads the event-loop delay and the GCs of a run from two scrapes', () => {
    const before = [
      'canonport_nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 10',
      'canonport_nodejs_gc_duration_seconds_count{kind="minor"} 12',
      'canonport_nodejs_gc_duration_seconds_sum{kind="minor"} 0.010',
      'canonport_nodejs_gc_duration_seconds_count{kind="major"} 1',
      'canonport_nodejs_gc_duration_seconds_sum{kind="major"} 0.020',
      'canonport_nodejs_gc_duration_seconds_bucket{le="0.001",kind="major"} 0',
    ].join('\n');
    const after = [
      'canonport_nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 25',
      'canonport_nodejs_gc_duration_seconds_count{kind="minor"} 30',
      'canonport_nodejs_gc_duration_seconds_sum{kind="minor"} 0.025',
      'canonport_nodejs_gc_duration_seconds_count{kind="major"} 1',
      'canonport_nodejs_gc_duration_seconds_sum{kind="major"} 0.020',
      'canonport_nodejs_gc_duration_seconds_bucket{le="0.001",kind="major"} 0',
      'canonport_nodejs_eventloop_lag_p50_seconds 0.0101',
      'canonport_nodejs_eventloop_lag_p99_seconds 0.012',
      'canonport_nodejs_eventloop_lag_max_seconds 0.031',
    ].join('\n');
    const d = daemonSide(before, after);
    expect(d.gc.minor).toEqual({ count: 18, ms: expect.closeTo(15, 6) });
    expect(d.gc.major!.count).toBe(0);
    // 18 minor GCs, 15 of them under 1 ms.
    expect(d.gcOver1ms).toBe(3);
    expect(d.loopP99Ms).toBeCloseTo(12, 6);
    expect(d.loopMaxMs).toBeCloseTo(31, 6);
  });

  it('prints every cell and the warm runs', () => {
    const text = latencyTable(result([cell('canonical', 'unbound', 0.3), cell('canonical', 'canonport', 0.45)], [warm(0.2)]));
    expect(text).toContain('canonical  unbound');
    expect(text).toContain('0.450');
    expect(text).toContain('from the moment /readyz turned ready');
  });
});

describe('the scale generator with a pool of services (the latency bench\'s cluster)', () => {
  it('gives each node its services from the pool, every pool service the same number of instances', () => {
    const names = serviceNames(4000);
    expect(new Set(names.map((n) => base32Port(n))).size).toBe(4000);
    // The first names are the ones the other benches and tests know.
    expect(names.slice(0, 2)).toEqual(serviceNames(2));
    const instances = new Map<string, number>();
    for (let i = 0; i < 1000; i++) for (const s of servicesOf(i, { services: 20, pool: 4000 })) instances.set(s, (instances.get(s) ?? 0) + 1);
    expect(instances.size).toBe(4000);
    expect(new Set(instances.values())).toEqual(new Set([5]));
    expect(nodeName(7)).toBe('node-00007');
    // Without a pool every node runs the same services.
    expect(servicesOf(3, { services: 20 })).toEqual(serviceNames(20));
    expect(scaleNode('/cp', 3, { nodes: 10, services: 20, pool: 4000 }).puts).toHaveLength(21);
  });
});
