import { Histogram, Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { QUIET_MS } from '../src/metrics/event-loop.js';
import { Metrics, SourceHistogram } from '../src/metrics/metrics.js';

/**
 * Metrics that cost nothing while the daemon is idle and little per query
 * (issue 24): the event-loop delay is sampled only while queries or calls
 * come in, and the per-query duration histogram exports what prom-client's
 * own would, from plain arrays.
 */

afterEach(() => {
  vi.useRealTimers();
});

describe('the event-loop delay (nodejs_eventloop_lag_*)', () => {
  it('samples only from the first query until QUIET_MS pass without one; a scrape does not wake it', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const m = new Metrics();
    try {
      expect(m.eventLoop!.isSampling).toBe(false);
      await m.registry.metrics();
      expect(m.eventLoop!.isSampling).toBe(false);
      m.countQuery(33, 0, 'canonical', 'udp');
      expect(m.eventLoop!.isSampling).toBe(true);
      // Queries keep it on across checks.
      vi.advanceTimersByTime(QUIET_MS - 1);
      m.countQuery(33, 0, 'canonical', 'udp');
      vi.advanceTimersByTime(QUIET_MS);
      expect(m.eventLoop!.isSampling).toBe(true);
      // A quiet spell stops it; a gRPC call starts it again.
      vi.advanceTimersByTime(QUIET_MS);
      expect(m.eventLoop!.isSampling).toBe(false);
      m.countActivity();
      expect(m.eventLoop!.isSampling).toBe(true);
    } finally {
      m.close();
    }
    expect(m.eventLoop!.isSampling).toBe(false);
  });

  it('exports every series prom-client names, once each, with a delay of 0 while nothing was sampled', async () => {
    const m = new Metrics();
    try {
      const text = await m.registry.metrics();
      for (const k of ['', 'min_', 'max_', 'mean_', 'stddev_', 'p50_', 'p90_', 'p99_']) {
        const name = `canonport_nodejs_eventloop_lag_${k}seconds`;
        expect(text.match(new RegExp(`^# TYPE ${name} gauge$`, 'gm')), name).toHaveLength(1);
        if (k !== '') expect(text).toMatch(new RegExp(`^${name} 0$`, 'm'));
      }
    } finally {
      m.close();
    }
  });

  it('reports the delay it sampled while busy: a blocked loop shows in max and p99', async () => {
    const m = new Metrics();
    try {
      m.countQuery(33, 0, 'canonical', 'udp');
      for (let i = 0; i < 3; i++) {
        await new Promise((r) => setTimeout(r, 20));
        const until = performance.now() + 60;
        while (performance.now() < until) {
          // block the loop
        }
      }
      await new Promise((r) => setTimeout(r, 30));
      const max = Number(/^canonport_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(await m.registry.metrics())![1]);
      // Blocked 60 ms three times: a wide correctness bound, not a speed figure.
      expect(max).toBeGreaterThan(0.04);
    } finally {
      m.close();
    }
  });
});

describe('SourceHistogram (canonport_dns_query_duration_seconds)', () => {
  it('exports exactly what a prom-client Histogram with the same observations exports', async () => {
    const buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
    const ours = new Registry();
    const theirs = new Registry();
    const h = new SourceHistogram('x_seconds', 'help', buckets, ours);
    const p = new Histogram({ name: 'x_seconds', help: 'help', labelNames: ['source'], buckets, registers: [theirs] });
    const samples: [string, number][] = [
      ['canonical', 0.00005],
      ['canonical', 0.0003],
      ['cache', 0.001],
      ['cache', 0.0011],
      ['forward', 3],
      ['canonical', 2.5],
    ];
    for (const [source, v] of samples) {
      h.observe(source, v);
      p.observe({ source }, v);
    }
    const lines = async (r: Registry) => (await r.metrics()).split('\n').filter((l) => l && !l.startsWith('#')).sort();
    expect(await lines(ours)).toEqual(await lines(theirs));
    // And as JSON, which AggregatorRegistry sums across --workers.
    const byName = (j: Awaited<ReturnType<Registry['getMetricsAsJSON']>>) => j[0]!.values.map((v) => `${(v as { metricName?: string }).metricName} ${JSON.stringify(v.labels)} ${v.value}`).sort();
    expect(byName(await ours.getMetricsAsJSON())).toEqual(byName(await theirs.getMetricsAsJSON()));
  });

  it('takes an observation back with weight −1 (the warm-up is counted, then uncounted)', async () => {
    const r = new Registry();
    const h = new SourceHistogram('y_seconds', 'help', [0.001, 0.01], r);
    h.observe('canonical', 0.0005);
    h.observe('canonical', 0.005);
    h.observe('canonical', 0.005, -1);
    const text = await r.metrics();
    expect(text).toMatch(/^y_seconds_bucket\{le="0.001",source="canonical"\} 1$/m);
    expect(text).toMatch(/^y_seconds_bucket\{le="0.01",source="canonical"\} 1$/m);
    expect(text).toMatch(/^y_seconds_count\{source="canonical"\} 1$/m);
  });
});
