import { describe, expect, it } from 'vitest';
import { latencyStats, metricSum, xdsReport, type XdsBenchResult } from '../bench/xds-report.js';

/** The xDS bench's own arithmetic and report (figures come from `npm run bench -- --only xds`, never from here). */

describe('bench xDS report', () => {
  it('sums every label set of one metric and nothing else from a /metrics body', () => {
    const body = [
      '# HELP canonport_xds_pushes_total responses sent',
      '# TYPE canonport_xds_pushes_total counter',
      'canonport_xds_pushes_total{type="listener",reason="initial"} 3',
      'canonport_xds_pushes_total{type="endpoint",reason="change"} 1000',
      'canonport_xds_pushes_totally 7',
      'canonport_xds_clients 2',
    ].join('\n');
    expect(metricSum(body, 'canonport_xds_pushes_total')).toBe(1003);
    expect(metricSum(body, 'canonport_xds_clients')).toBe(2);
    expect(metricSum(body, 'canonport_xds_nacks_total')).toBe(0);
  });

  it('takes p50 and p99 by rank over the trials, keeping the samples in trial order', () => {
    const ms = Array.from({ length: 100 }, (_, i) => 100 - i);
    const s = latencyStats(ms, 2);
    expect(s).toMatchObject({ n: 100, failed: 2, min: 1, p50: 50, p99: 99, max: 100 });
    expect(s.samplesMs.slice(0, 2)).toEqual([100, 99]);
  });

  it('prints what was measured and why something was not', () => {
    const r: XdsBenchResult = {
      method: 'm',
      options: { quick: true, trials: 50, clients: 1000, rounds: 1, idleSeconds: 5 },
      daemon: { pid: 1, grpc: '127.0.0.1:1', rssMiBIdle: 90 },
      pushLatency: { node: latencyStats([200, 210], 0), python: { error: '/usr/bin/python3 cannot import grpc' } },
      pushLatencySighup: { node: latencyStats([10, 12], 0), python: { error: 'not run' } },
      fanout: null,
      steady: null,
      notes: [],
    };
    const text = xdsReport(r);
    expect(text).toMatch(/Node .* n=2 p50 200\.0 ms, p99 210\.0 ms/);
    expect(text).toContain('not measured (/usr/bin/python3 cannot import grpc)');
    expect(text).not.toMatch(/PASS|MISS/);
  });
});
