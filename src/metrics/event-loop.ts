import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Gauge, type Registry } from 'prom-client';

/**
 * The event loop's delay, as the `nodejs_eventloop_lag_*` series
 * prom-client's default metrics export (same names, same help), sampled
 * only while the daemon is answering.
 *
 * prom-client's own collector keeps `perf_hooks.monitorEventLoopDelay` at
 * a 10 ms resolution for the life of the process: a timer that wakes an
 * idle daemon 100 times a second (measured: 99 context switches a second
 * and most of its idle CPU time, issue 24). Here the same histogram runs
 * from the first DNS query or gRPC call after a quiet spell until
 * `QUIET_MS` pass without one; a scrape is not activity, or Prometheus
 * would keep it awake. While it sleeps nobody waits on the loop, so a
 * scrape reports no delay (0), and `nodejs_eventloop_lag_seconds` (one
 * setImmediate measured at the scrape, as prom-client does) still says
 * how late the loop is right now.
 */

/** Histogram resolution while sampling (prom-client's default). */
const RESOLUTION_MS = 10;
/** Sampling stops after this long with no query or call. */
export const QUIET_MS = 10_000;

export const EVENT_LOOP_LAG_SERIES = ['', 'min_', 'max_', 'mean_', 'stddev_', 'p50_', 'p90_', 'p99_'].map((k) => `nodejs_eventloop_lag_${k}seconds`);

export class EventLoopDelay {
  private readonly histogram: IntervalHistogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  private sampling = false;
  /** Bumped by every query or call; compared every QUIET_MS while sampling. */
  private activity = 0;
  private seenActivity = 0;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(registry: Registry, prefix: string) {
    const registers = [registry];
    const gauge = (suffix: string, help: string, aggregator: 'min' | 'max' | 'average' = 'average', collect?: () => void) =>
      new Gauge({ name: `${prefix}nodejs_eventloop_lag_${suffix}seconds`, help, registers, aggregator, ...(collect ? { collect } : {}) });
    // The gauge whose collect reads the histogram is registered first: the registry serialises metrics in the
    // order they were registered, each right after its own collect, so the others then show this scrape's figures.
    const lag = gauge('', 'Lag of event loop in seconds.', 'average', () => {
      const start = process.hrtime.bigint();
      setImmediate(() => lag.set(Number(process.hrtime.bigint() - start) / 1e9));
      const h = this.histogram;
      const any = h.count > 0;
      const s = (ns: number) => (any && Number.isFinite(ns) ? ns / 1e9 : 0);
      min.set(s(h.min));
      max.set(s(h.max));
      mean.set(s(h.mean));
      stddev.set(s(h.stddev));
      p50.set(s(h.percentile(50)));
      p90.set(s(h.percentile(90)));
      p99.set(s(h.percentile(99)));
      h.reset();
    });
    const min = gauge('min_', 'The minimum recorded event loop delay.', 'min');
    const max = gauge('max_', 'The maximum recorded event loop delay.', 'max');
    const mean = gauge('mean_', 'The mean of the recorded event loop delays.');
    const stddev = gauge('stddev_', 'The standard deviation of the recorded event loop delays.');
    const p50 = gauge('p50_', 'The 50th percentile of the recorded event loop delays.');
    const p90 = gauge('p90_', 'The 90th percentile of the recorded event loop delays.');
    const p99 = gauge('p99_', 'The 99th percentile of the recorded event loop delays.');
  }

  /** A query or call: samples from now on, until QUIET_MS pass without one. Called per query: a counter and a branch. */
  active(): void {
    this.activity++;
    if (!this.sampling && !this.closed) this.start();
  }

  /** True while the histogram samples (tests). */
  get isSampling(): boolean {
    return this.sampling;
  }

  close(): void {
    this.closed = true;
    this.stop();
  }

  /** Stops sampling until the next query and forgets what was sampled (the warm-up's queries are not activity). */
  forget(): void {
    this.stop();
    this.histogram.reset();
  }

  private start(): void {
    this.sampling = true;
    this.histogram.enable();
    this.seenActivity = this.activity;
    this.timer = setTimeout(() => this.check(), QUIET_MS);
    this.timer.unref();
  }

  private check(): void {
    if (this.activity === this.seenActivity) {
      this.stop();
      return;
    }
    this.seenActivity = this.activity;
    this.timer = setTimeout(() => this.check(), QUIET_MS);
    this.timer.unref();
  }

  private stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.sampling) return;
    this.sampling = false;
    this.histogram.disable();
  }
}
