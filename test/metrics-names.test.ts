import { Counter, Gauge, Histogram, Summary } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DaemonContext } from '../src/context.js';
import { Metrics } from '../src/metrics/metrics.js';
import { startHttpServer, type HttpServer } from '../src/http/server.js';
import { testDaemon } from './grpc-fixtures.js';

/**
 * Checks every series the daemon exports against the Prometheus naming
 * conventions (https://prometheus.io/docs/practices/naming/), on the real
 * exposition text served by /metrics, after touching each series once.
 */

// --- a small parser for the text exposition format (version 0.0.4) ---

interface Family {
  name: string;
  help?: string;
  type?: string;
  samples: Sample[];
}
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) families.set(name, (f = { name, samples: [] }));
    return f;
  };
  let current: Family | undefined;
  for (const [i, line] of text.split('\n').entries()) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
    if (meta) {
      current = family(meta[2]!);
      if (meta[1] === 'HELP') current.help = meta[3] ?? '';
      else current.type = meta[3];
      continue;
    }
    if (line.startsWith('#')) continue;
    const m = /^([^\s{]+)(?:\{(.*)\})? (\S+)(?: \d+)?$/.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not a sample: ${line}`);
    const sample: Sample = { name: m[1]!, labels: parseLabels(m[2] ?? '', i + 1), value: Number(m[3]) };
    // Samples follow their family's TYPE line; _bucket/_sum/_count belong to the family above them.
    if (!current || !sample.name.startsWith(current.name)) throw new Error(`line ${i + 1}: sample ${sample.name} outside its family`);
    current.samples.push(sample);
  }
  return families;
}

function parseLabels(text: string, line: number): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([^=,\s]+)="((?:[^"\\]|\\.)*)",?/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(text))) {
    labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    end = re.lastIndex;
  }
  if (end !== text.length) throw new Error(`line ${line}: unparsable labels {${text}}`);
  return labels;
}

// --- the conventions ---

const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;
const LABEL = /^[a-z][a-z0-9]*(_[a-z0-9]+)*$/;
/** Labels Prometheus attaches itself (target labels) or reserves for one metric type. */
const RESERVED_LABELS = new Set(['job', 'instance']);
const NON_BASE_UNITS = /_(milliseconds|millis|ms|microseconds|us|nanoseconds|ns|minutes|hours|days|kilobytes|megabytes|gigabytes|kb|mb|gb|percent)(_total)?$/;
const TIME_WORDS = /(^|_)(duration|latency|time|lag|elapsed|delay|age|uptime|timeout)(_|$)/;
const SIZE_WORDS = /(^|_)(size|memory|heap)(_|$)/;

/**
 * prom-client's default process and Node.js series keep the names every
 * Node.js exporter uses (dashboards depend on them) even where those names
 * bend the conventions: these gauges end in `_total` because they count
 * what is open now, not events. Listed one by one so a new exception fails.
 */
const DEFAULT_METRIC_EXCEPTIONS = new Set([
  'canonport_nodejs_active_handles_total',
  'canonport_nodejs_active_requests_total',
  'canonport_nodejs_active_resources_total',
]);

function problemsOf(families: Map<string, Family>): string[] {
  const problems: string[] = [];
  for (const f of families.values()) {
    const p = (msg: string) => problems.push(`${f.name}: ${msg}`);
    if (!SNAKE.test(f.name)) p('not snake_case');
    if (!f.name.startsWith('canonport_')) p('lacks the canonport_ prefix');
    if (!f.help || f.help.trim().length < 10) p('no help text');
    if (!f.type) p('no TYPE line');
    if (/_(counter|gauge|histogram|summary)(_|$)/.test(f.name)) p('names its metric type');
    const excepted = DEFAULT_METRIC_EXCEPTIONS.has(f.name);
    if (f.type === 'counter' && !f.name.endsWith('_total')) p('counter does not end in _total');
    if (f.type !== 'counter' && f.name.endsWith('_total') && !excepted) p(`${f.type} ends in _total (only counters may)`);
    if (NON_BASE_UNITS.test(f.name)) p('uses a non-base unit (want _seconds or _bytes)');
    const bare = f.name.replace(/_total$/, '');
    if (TIME_WORDS.test(bare) && !/_seconds$/.test(bare)) p('measures time but does not end in _seconds');
    if (SIZE_WORDS.test(bare) && !/_bytes$/.test(bare)) p('measures size but does not end in _bytes');
    for (const s of f.samples) {
      for (const label of Object.keys(s.labels)) {
        if (label.startsWith('__')) p(`label ${label} uses the reserved __ prefix`);
        if (!LABEL.test(label)) p(`label ${label} is not snake_case`);
        if (RESERVED_LABELS.has(label)) p(`label ${label} clashes with a Prometheus target label`);
        if (label === 'le' && !(f.type === 'histogram' && s.name === `${f.name}_bucket`)) p('label le outside a histogram bucket');
        if (label === 'quantile' && f.type !== 'summary') p('label quantile outside a summary');
      }
      const suffix = s.name.slice(f.name.length);
      const allowed = f.type === 'histogram' ? ['_bucket', '_sum', '_count'] : f.type === 'summary' ? ['', '_sum', '_count'] : [''];
      if (!allowed.includes(suffix)) p(`sample ${s.name} does not belong to a ${f.type}`);
    }
    if (f.type === 'histogram' && f.samples.length > 0) {
      const buckets = f.samples.filter((s) => s.name.endsWith('_bucket'));
      if (!buckets.some((b) => b.labels.le === '+Inf')) p('histogram has no +Inf bucket');
      if (!f.samples.some((s) => s.name.endsWith('_sum')) || !f.samples.some((s) => s.name.endsWith('_count'))) p('histogram lacks _sum or _count');
    }
  }
  return problems;
}

// --- touching every series the Metrics class defines ---

type AnyMetric = Counter | Gauge | Histogram | Summary;

function ownMetrics(m: Metrics): Array<[string, AnyMetric]> {
  return Object.entries(m).filter((e): e is [string, AnyMetric] => {
    const v = e[1];
    return v instanceof Counter || v instanceof Gauge || v instanceof Histogram || v instanceof Summary;
  });
}

function labelNamesOf(metric: AnyMetric): string[] {
  const names = (metric as unknown as { labelNames?: unknown }).labelNames;
  if (!Array.isArray(names)) throw new Error('prom-client metric has no labelNames array: the test must learn the new shape');
  return names as string[];
}

/** Sets every series once, with a label value that needs escaping so the exposition's quoting is exercised. */
function touch(metric: AnyMetric): Record<string, string> {
  const labels = Object.fromEntries(labelNamesOf(metric).map((l, i) => [l, i === 0 ? `v"${l}\\x` : `v_${l}`]));
  if (metric instanceof Counter) metric.inc(labels, 1);
  else if (metric instanceof Gauge) metric.set(labels, 1);
  else metric.observe(labels, 0.003);
  return labels;
}

function testContext(metrics: Metrics): DaemonContext {
  return testDaemon('', { metrics, inventory: { snapshot: async () => ({ host: 'test', collectedAtMs: 0, listeners: [] }) } }).ctx;
}

describe('metric names', () => {
  const metrics = new Metrics();
  const touched = new Map<string, Record<string, string>>();
  let server: HttpServer;
  let families: Map<string, Family>;

  beforeAll(async () => {
    for (const [, metric] of ownMetrics(metrics)) {
      const name = (metric as unknown as { name: string }).name;
      touched.set(name, touch(metric));
    }
    server = await startHttpServer(testContext(metrics), { host: '127.0.0.1', port: 0 });
    const res = await fetch(`http://127.0.0.1:${server.address.port}/metrics`);
    expect(res.status).toBe(200);
    families = parseExposition(await res.text());
  });
  afterAll(async () => {
    await server?.close();
  });

  it('finds the series the Metrics class defines', () => {
    // Guards against a vacuous pass: the class has a dozen series and the default process ones come on top.
    expect(touched.size).toBeGreaterThanOrEqual(12);
    expect(families.size).toBeGreaterThan(touched.size + 10);
  });

  it('exports every series the Metrics class defines, with the labels it was set with', () => {
    for (const [name, labels] of touched) {
      const f = families.get(name);
      expect(f, `${name} is defined but not exported (missing registers: [this.registry]?)`).toBeDefined();
      const own = f!.samples.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
      expect(own.length, `${name} has no sample with labels ${JSON.stringify(labels)}`).toBeGreaterThan(0);
    }
  });

  it('follows the Prometheus naming conventions', () => {
    expect(problemsOf(families)).toEqual([]);
  });

  it('catches each kind of violation (the checker is not vacuous)', () => {
    const bad = [
      '# HELP canonport_requests Requests served, by path.',
      '# TYPE canonport_requests counter',
      'canonport_requests 1',
      '# HELP canonport_lookup_milliseconds Lookup time in milliseconds.',
      '# TYPE canonport_lookup_milliseconds gauge',
      'canonport_lookup_milliseconds 1',
      '# TYPE canonport_queue_total gauge',
      'canonport_queue_total{le="1"} 1',
      '# HELP dns_answers_total Answers by kind of answer.',
      '# TYPE dns_answers_total counter',
      'dns_answers_total{Kind="x",__x="y",instance="i"} 1',
      '# HELP canonport_query_latency Query latency, by source.',
      '# TYPE canonport_query_latency histogram',
      'canonport_query_latency_bucket{le="0.1"} 1',
      'canonport_query_latency_sum 0.1',
      'canonport_query_latency_count 1',
      '# HELP canonport_cache_size Entries in the cache, counted.',
      '# TYPE canonport_cache_size gauge',
      'canonport_cache_size 5',
    ].join('\n');
    const found = problemsOf(parseExposition(bad)).join('\n');
    for (const expected of [
      'canonport_requests: counter does not end in _total',
      'canonport_lookup_milliseconds: uses a non-base unit',
      'canonport_queue_total: no help text',
      'canonport_queue_total: gauge ends in _total',
      'canonport_queue_total: label le outside a histogram bucket',
      'dns_answers_total: lacks the canonport_ prefix',
      'dns_answers_total: label Kind is not snake_case',
      'dns_answers_total: label __x uses the reserved __ prefix',
      'dns_answers_total: label instance clashes',
      'canonport_query_latency: measures time but does not end in _seconds',
      'canonport_query_latency: histogram has no +Inf bucket',
      'canonport_cache_size: measures size but does not end in _bytes',
    ]) {
      expect(found).toContain(expected);
    }
  });

  it('parses label values with escaped quotes and backslashes back to what was set', () => {
    const f = families.get('canonport_dns_queries_total')!;
    expect(f.samples.some((s) => s.labels.type === 'v"type\\x')).toBe(true);
  });
});
