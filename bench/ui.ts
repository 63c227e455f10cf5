import { spawn, type SpawnOptions } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import etcd3 from 'etcd3';
import type { Browser, Page } from 'playwright-core';
import { ClusterView } from '../src/cluster/view.js';
import { fleetDocument } from '../src/fleet/document.js';
import { fleetFromView, ViewFleet } from '../src/fleet/from-cluster.js';
import { base32Port } from '../src/scheme/index.js';
import { diffDocuments, encodeDocument } from '../src/ui/client/diff.js';
import { startBrowserForContexts } from '../test/helpers/browser.js';
import { startEtcd, type EtcdCluster } from '../test/helpers/etcd.js';
import { scaleNode, serviceNames, writeScaleFleet } from '../test/helpers/scale-fleet.js';
import { startServe, type ServeProcess } from '../test/helpers/serve-process.js';
import { readRss } from './probe.js';
import { parseProcStat } from './cpu.js';
import { CHURN_PER_S, type FloorLoad, type LoadTrace, type LiveDelay, type LivePhase, type PageLoad, type UiBenchResult } from './ui-report.js';

/**
 * `npm run bench -- --only ui` (issue 25): the fleet page, from a real
 * `canonport serve --cluster` on loopback reading a real etcd that the
 * cluster bench's scale generator filled, in Debian's Chromium.
 *
 *   document   at 1,000 hosts × 20 services, in-process: what a change
 *              costs sent as the whole document (what an open page would
 *              get without diffs) against as a diff, bytes and CPU
 *   page       weight (bytes on the wire, compressed) and first-render
 *              time (navigation start → the matrix drawn, from the
 *              first-screen document when the fleet is larger than it), and
 *              when the whole document is drawn, 10 hosts (the reference)
 *              and 1,000 hosts, each a median of fresh loads; beside them,
 *              loaded in turn with them, the browser's floor: a trivial page
 *              (one element, marked for Element Timing like the matrix) from a
 *              bare node:http server on loopback
 *   live       the daemon's CPU and RSS during view churn (a listener's
 *              version rewritten in etcd CHURN_PER_S times a second), with
 *              no page open (the reference), one, and 20 live pages
 */

export interface UiBenchOptions {
  services: number;
  bigHosts: number;
  loads: number;
  livePages: number;
  churnSeconds: number;
  workDir: string;
  /** Another built checkout (--baseline): its daemon's page loads, and its live delay, beside this one's, interleaved. */
  baseline?: { dir: string; label: string } | undefined;
  /** Single changes timed from etcd to an open page at bigHosts. */
  liveChanges?: number | undefined;
}

const PREFIX = '/canonport-ui-bench';
const HZ = 100;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runUiBench(opts: UiBenchOptions, progress: (msg: string) => void): Promise<UiBenchResult> {
  const notes = ['figures from a shared 2-core machine: compare within this run (10 hosts and no pages are the references)'];
  progress(`ui: document costs at ${opts.bigHosts} hosts × ${opts.services} services`);
  const document = documentCosts(opts.bigHosts, opts.services);
  const etcd = await startEtcd();
  const client = new etcd3.Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
  let browser: Browser | undefined;
  const daemons: ServeProcess[] = [];
  try {
    browser = await startBrowserForContexts();
    const pages: PageLoad[] = [];
    const floors: FloorLoad[] = [];
    const traces: LoadTrace[] = [];
    let big: ServeProcess | undefined;
    let bigBaseline: ServeProcess | undefined;
    for (const hosts of [10, opts.bigHosts]) {
      const prefix = `${PREFIX}-${hosts}`;
      progress(`ui: writing ${hosts} hosts × ${opts.services} services into etcd`);
      await writeScaleFleet(client, prefix, { nodes: hosts, services: opts.services, digest: (i) => (i % 97 === 5 ? 'b'.repeat(64) : 'a'.repeat(64)) });
      const daemon = await startDaemon(etcd, prefix, opts.workDir, hosts);
      daemons.push(daemon);
      const builds = [{ build: 'this', daemon }];
      if (opts.baseline) {
        bigBaseline = await startDaemon(etcd, prefix, opts.workDir, hosts, opts.baseline.dir);
        daemons.push(bigBaseline);
        builds.push({ build: `baseline ${opts.baseline.label}`, daemon: bigBaseline });
      }
      progress(`ui: ${opts.loads} fresh page loads at ${hosts} hosts${opts.baseline ? ', this build and the baseline in turn' : ''}`);
      const loaded = await pageLoads(browser, builds, hosts, opts.loads);
      pages.push(...loaded.pages);
      floors.push(loaded.floor);
      progress(`ui: one traced load at ${hosts} hosts per build`);
      for (const { build, daemon: d } of builds) traces.push({ build, hosts, ...(await tracedLoad(browser, `http://127.0.0.1:${d.http.port}/ui/`)) });
      big = daemon;
    }
    progress(`ui: ${opts.liveChanges ?? 5} single changes at ${opts.bigHosts} hosts, from etcd to an open page`);
    const delay = await liveDelay(browser, client, [{ build: 'this', daemon: big! }, ...(bigBaseline ? [{ build: `baseline ${opts.baseline!.label}`, daemon: bigBaseline }] : [])], `${PREFIX}-${opts.bigHosts}`, opts);
    progress(`ui: live pages during churn (${CHURN_PER_S} writes/s, ${opts.churnSeconds} s each)`);
    const live: LivePhase[] = [];
    // No page (the reference: the daemon rebuilds nothing), one page (what following the view costs), and livePages (what each page adds).
    for (const n of [0, 1, opts.livePages]) live.push(await livePhase(browser, client, big!, `${PREFIX}-${opts.bigHosts}`, opts, n));
    return { document, pages, floors, traces, delay, live, notes };
  } finally {
    await browser?.close().catch(() => undefined);
    await Promise.all(daemons.map((d) => d.stop()));
    client.close();
    await etcd.stop();
  }
}

/** The document at scale and what one change costs as a whole document or as a diff (in this process, the daemon's functions). */
function documentCosts(hosts: number, services: number): UiBenchResult['document'] {
  const view = new ClusterView({ prefix: PREFIX, caps: { maxNodes: 100_000, maxEndpoints: 2_000_000 } });
  const started = new Date().toISOString();
  view.replaceAll(Array.from({ length: hosts }, (_, i) => scaleNode(PREFIX, i, { nodes: hosts, services, started }).puts.map(([key, value]) => ({ key, value }))).flat(), 10);
  const where = { endpoints: 'etcd://127.0.0.1:2379', prefix: PREFIX };
  const t0 = performance.now();
  const prev = encodeDocument(fleetDocument(fleetFromView(view, where)));
  const buildMs = performance.now() - t0;
  const gzipBytes = gzipSync(prev.json).length;
  // One listener's version changes.
  // The daemon's page keeps its build between changes (ViewFleet): the same change, rebuilt incrementally, from the same view.
  const kept = new ViewFleet(view, where);
  const keptEncoded = encodeDocument(fleetDocument(kept.read()));
  const [key, value] = scaleNode(PREFIX, Math.floor(hosts / 2), { nodes: hosts, services, started, version: () => '1.0.1' }).puts[1]!;
  view.applyChanges([{ type: 'put', key, value }], 11);
  const t4 = performance.now();
  encodeDocument(fleetDocument(kept.read()), keptEncoded);
  const incrementalMs = performance.now() - t4;
  const incremental = { ms: round(incrementalMs), hostsRebuilt: kept.lastRead.hosts, servicesRebuilt: kept.lastRead.services };
  const t5 = performance.now();
  const doc = fleetDocument(fleetFromView(view, where));
  encodeDocument(doc);
  const rebuildMs = performance.now() - t5;
  const t1 = performance.now();
  const whole = JSON.stringify(doc);
  const snapshotMs = performance.now() - t1;
  const t2 = performance.now();
  const gz = gzipSync(whole);
  const gzipMs = performance.now() - t2;
  const t3 = performance.now();
  const next = encodeDocument(doc);
  const diff = JSON.stringify(diffDocuments(prev, next, 'a-1', 'a-2'));
  const diffMs = performance.now() - t3;
  return {
    hosts,
    services,
    buildMs: round(buildMs),
    jsonBytes: prev.json.length,
    gzipBytes,
    snapshot: { ms: round(snapshotMs), bytes: whole.length, gzipMs: round(gzipMs), gzipBytes: gz.length },
    diff: { ms: round(diffMs), bytes: diff.length },
    rebuild: { wholeMs: round(rebuildMs), hosts, ...incremental },
  };
}

/**
 * `canonport serve --cluster` on loopback, reading `prefix`, with an empty /proc of its own (it publishes no listener);
 * from checkout `repo` (--baseline) when given.
 */
async function startDaemon(etcd: EtcdCluster, prefix: string, workDir: string, hosts: number, repo?: string): Promise<ServeProcess> {
  const proc = join(workDir, `ui-proc-${hosts}`);
  mkdirSync(join(proc, 'net'), { recursive: true });
  writeFileSync(join(proc, 'net', 'tcp'), '  sl  local_address rem_address   st\n');
  writeFileSync(join(proc, 'net', 'tcp6'), '  sl  local_address rem_address   st\n');
  // Another checkout's CLI, run from there: the test helper spawns this one's.
  const spawnFrom = repo === undefined ? undefined : (cmd: string, argv: string[], o: SpawnOptions) => spawn(cmd, [join(repo, 'bin', 'canonport.js'), ...argv.slice(1)], { ...o, cwd: repo });
  const d = await startServe(['--zone', 'c.test', '--cluster', etcd.url, '--cluster-prefix', prefix, '--node', 'viewer', '--proc-root', proc], { readyMs: 40_000, ...(spawnFrom ? { spawn: spawnFrom } : {}) });
  const url = `http://127.0.0.1:${d.http.port}/ui/api/fleet`;
  for (const deadline = Date.now() + 60_000; ; ) {
    const doc = (await (await fetch(url)).json()) as { hosts: unknown[] };
    if (doc.hosts.length >= hosts + 1) break;
    if (Date.now() > deadline) throw new Error(`the daemon's view has ${doc.hosts.length} hosts, not ${hosts + 1}, after 60 s`);
    await sleep(200);
  }
  return d;
}

/**
 * The browser's floor: a trivial page (one element carrying `elementtiming` under the matrix's name) from a bare
 * node:http server on loopback, loaded exactly as the fleet page is. What no page can go below on this machine, now.
 */
const FLOOR_HTML = '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>floor</title></head><body><table class="matrix"><tr><th class="corner" elementtiming="cp-matrix">Service</th></tr></table></body></html>';

async function floorServer(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    res.end(req.url === '/' ? FLOOR_HTML : '');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { server, url: `http://127.0.0.1:${port}/` };
}

/**
 * Any build's page, and the floor, measured alike: the matrix's corner cell marked for Element Timing (its paint in
 * `cpPainted`), and when it came into the DOM (`cpInDom`), whoever put it there (the parser or the page's script).
 */
async function markMatrix(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = window as unknown as { cpPainted?: number; cpInDom?: number };
    new PerformanceObserver((list) => {
      for (const e of list.getEntries() as (PerformanceEntry & { renderTime: number; identifier: string })[]) if (e.identifier === 'cp-matrix') w.cpPainted ??= e.renderTime;
    }).observe({ type: 'element', buffered: true });
    const mark = () => {
      const corner = document.querySelector('table.matrix th.corner');
      if (!corner) return;
      w.cpInDom ??= performance.now();
      if (!corner.hasAttribute('elementtiming')) corner.setAttribute('elementtiming', 'cp-matrix');
    };
    new MutationObserver(mark).observe(document, { childList: true, subtree: true });
  });
}

/** Times one fresh load (a new browser context: no cache, new connections) of `url`; `whole` waits for the fleet page's whole document too. */
async function timedLoad(browser: Browser, url: string, whole: boolean): Promise<{ painted: number; inDom: number; wholeMs: number; sizes: { url: string; bytes: number }[] }> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await markMatrix(page);
    const sizes: Promise<{ url: string; bytes: number }>[] = [];
    page.on('requestfinished', (r) => sizes.push(r.sizes().then((s) => ({ url: r.url(), bytes: s.responseBodySize + s.responseHeadersSize }))));
    await page.goto(url);
    // The matrix painted, and (the fleet page) the whole document drawn: the first render may have been the first screen's.
    await page.waitForFunction((w) => (!w || performance.getEntriesByName('cp-whole-render').length > 0) && (window as unknown as { cpPainted?: number }).cpPainted !== undefined, whole, { timeout: 30_000 });
    const [painted, inDom, wholeMs] = await page.evaluate(() => {
      const w = window as unknown as { cpPainted: number; cpInDom?: number };
      return [w.cpPainted, w.cpInDom ?? Number.NaN, performance.getEntriesByName('cp-whole-render')[0]?.startTime ?? Number.NaN];
    });
    if (whole) await sleep(300);
    return { painted: painted!, inDom: inDom!, wholeMs: wholeMs!, sizes: await Promise.all(sizes) };
  } finally {
    await context.close();
  }
}

/** One trace event (Chromium's Trace Event Format, as CDP Tracing writes it). */
interface TraceEvent {
  name: string;
  ph: string;
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: { name?: string; data?: { documentLoaderURL?: string } };
}

/** Main-thread trace events by what they are: the rest is `other`. */
const PHASE_OF: Readonly<Record<string, keyof LoadTrace['mainThreadMs']>> = {
  EvaluateScript: 'script',
  FunctionCall: 'script',
  'v8.compile': 'script',
  'v8.run': 'script',
  TimerFire: 'script',
  EventDispatch: 'script',
  RunMicrotasks: 'script',
  ParseHTML: 'parse',
  ParseAuthorStyleSheet: 'parse',
  UpdateLayoutTree: 'style',
  Layout: 'layout',
  PrePaint: 'paint',
  Paint: 'paint',
  Layerize: 'paint',
  Commit: 'paint',
};

/**
 * One fresh load traced (CDP Tracing through playwright): where the renderer's main thread spent the time between
 * navigation start and the matrix painted, by self time (an event's own, less what runs inside it), and how long
 * after its last paint the frame reached the screen. What the trace showed, printed by every run.
 */
async function tracedLoad(browser: Browser, url: string): Promise<Omit<LoadTrace, 'build' | 'hosts'>> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await markMatrix(page);
    await browser.startTracing(page, { categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'blink.user_timing', 'loading', 'toplevel', 'v8'] });
    let trace: Buffer;
    let painted: number;
    try {
      await page.goto(url);
      await page.waitForFunction(() => (window as unknown as { cpPainted?: number }).cpPainted !== undefined, undefined, { timeout: 30_000 });
      painted = await page.evaluate(() => (window as unknown as { cpPainted: number }).cpPainted);
    } finally {
      trace = await browser.stopTracing();
    }
    const parsed = JSON.parse(trace.toString('utf8')) as { traceEvents: TraceEvent[] } | TraceEvent[];
    const events = Array.isArray(parsed) ? parsed : parsed.traceEvents;
    const nav = events.filter((e) => e.name === 'navigationStart' && e.args?.data?.documentLoaderURL === url).at(-1);
    if (!nav) throw new Error(`the trace of ${url} has no navigationStart`);
    const main = events.find((e) => e.ph === 'M' && e.name === 'thread_name' && e.pid === nav.pid && e.args?.name === 'CrRendererMain');
    const end = nav.ts + painted * 1000;
    const spans = events
      .filter((e) => e.ph === 'X' && e.pid === nav.pid && e.tid === main?.tid && e.dur !== undefined && e.ts >= nav.ts && e.ts < end)
      .sort((a, b) => a.ts - b.ts || b.dur! - a.dur!);
    const ms: LoadTrace['mainThreadMs'] = { script: 0, parse: 0, style: 0, layout: 0, paint: 0, other: 0 };
    // What `other` is, by event (at most one entry per event name in one trace).
    const others = new Map<string, number>();
    // Self time: each event's span, less its children's (events on one thread nest).
    const stack: { e: TraceEvent; self: number }[] = [];
    const close = (upTo: number) => {
      while (stack.length && stack.at(-1)!.e.ts + stack.at(-1)!.e.dur! <= upTo) {
        const { e, self } = stack.pop()!;
        const phase = PHASE_OF[e.name] ?? 'other';
        ms[phase] += self;
        if (phase === 'other') others.set(e.name, (others.get(e.name) ?? 0) + self);
      }
    };
    let busy = 0;
    let lastPaintEnd = nav.ts;
    for (const e of spans) {
      close(e.ts);
      const clipped = Math.min(e.dur!, end - e.ts);
      if (stack.length) stack.at(-1)!.self -= clipped;
      else busy += clipped;
      stack.push({ e, self: clipped });
      if (e.name === 'Paint') lastPaintEnd = Math.max(lastPaintEnd, e.ts + clipped);
    }
    close(Number.POSITIVE_INFINITY);
    const r = (us: number) => round(us / 1000);
    return {
      paintedMs: round(painted),
      mainThreadMs: { script: r(ms.script), parse: r(ms.parse), style: r(ms.style), layout: r(ms.layout), paint: r(ms.paint), other: r(ms.other) },
      idleMs: r(painted * 1000 - busy),
      otherTop: [...others].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([name, us]) => `${name} ${r(us)}`),
      lastPaintEndMs: r(lastPaintEnd - nav.ts),
    };
  } finally {
    await context.close();
  }
}

/**
 * Fresh loads of each build's page in turn, and of the floor page between them. First render: navigation start to
 * the matrix painted, as the browser reports it (Element Timing of the matrix's corner cell, marked by an init
 * script, so any build's page is measured alike); `drawnMs`: when the corner came into the DOM (set by the page's
 * script, or by the parser).
 */
async function pageLoads(browser: Browser, builds: { build: string; daemon: ServeProcess }[], hosts: number, loads: number): Promise<{ pages: PageLoad[]; floor: FloorLoad }> {
  const acc = builds.map(() => ({ times: [] as number[], drawn: [] as number[], whole: [] as number[], transferred: 0, docWire: 0, firstWire: 0 }));
  const floorTimes: number[] = [];
  const floor = await floorServer();
  try {
    // One load first to start the renderer processes and compile the scripts' V8 caches: not counted.
    for (let i = 0; i <= loads; i++) {
      const f = await timedLoad(browser, floor.url, false);
      if (i > 0) floorTimes.push(f.painted);
      for (const [b, { daemon }] of builds.entries()) {
        const url = `http://127.0.0.1:${daemon.http.port}/ui/`;
        const load = await timedLoad(browser, url, true);
        if (i === 0) continue;
        const a = acc[b]!;
        a.times.push(load.painted);
        a.drawn.push(load.inDom);
        a.whole.push(load.wholeMs);
        a.transferred = load.sizes.reduce((n, s) => n + s.bytes, 0);
        const page0 = load.sizes.filter((s) => s.url === url).reduce((n, s) => n + s.bytes, 0);
        const wholeDoc = load.sizes.filter((s) => s.url.endsWith('/api/fleet')).reduce((n, s) => n + s.bytes, 0);
        // The first screen comes in the page; a fleet that fits in it comes whole there.
        [a.docWire, a.firstWire] = wholeDoc === 0 ? [page0, 0] : [wholeDoc, page0];
      }
    }
  } finally {
    floor.server.close();
  }
  const out: PageLoad[] = [];
  for (const [b, { build, daemon }] of builds.entries()) {
    const a = acc[b]!;
    const docJson = (await (await fetch(`http://127.0.0.1:${daemon.http.port}/ui/api/fleet`)).text()).length;
    out.push({
      build,
      hosts,
      firstRenderMs: round(median(a.times)),
      firstRenderMsAll: a.times.map(round),
      drawnMs: round(median(a.drawn)),
      wholeRenderMs: round(median(a.whole)),
      transferredBytes: a.transferred,
      documentWireBytes: a.docWire,
      documentJsonBytes: docJson,
      firstScreenWireBytes: a.firstWire,
    });
  }
  return { pages: out, floor: { hosts, medianMs: round(median(floorTimes)), allMs: floorTimes.map(round) } };
}

/**
 * A change in etcd (one listener's version, on a random host) to an open page showing it, at bigHosts: one page per
 * build, each change waited for on every page, then 3 s of quiet (so each change is a rebuild of its own, not
 * coalesced with the one before, and the rebuilds' CPU bound has let the next one through).
 */
async function liveDelay(browser: Browser, client: etcd3.Etcd3, builds: { build: string; daemon: ServeProcess }[], prefix: string, opts: UiBenchOptions): Promise<LiveDelay[]> {
  const contexts = await Promise.all(builds.map(() => browser.newContext()));
  const pages: Page[] = [];
  for (const [b, c] of contexts.entries()) {
    const p = await c.newPage();
    await p.goto(`http://127.0.0.1:${builds[b]!.daemon.http.port}/ui/`);
    await p.waitForFunction(() => document.getElementById('live')?.dataset.state === 'live', undefined, { timeout: 30_000 });
    pages.push(p);
  }
  const services = serviceNames(opts.services);
  const delays = builds.map(() => [] as number[]);
  for (let k = 0; k < (opts.liveChanges ?? 5); k++) {
    await sleep(3000);
    const ids = await Promise.all(pages.map((p) => p.evaluate(() => document.documentElement.dataset.fleetId)));
    const i = Math.floor(Math.random() * opts.bigHosts);
    const s = services[Math.floor(Math.random() * services.length)]!;
    const [key, value] = scaleNode(prefix, i, { nodes: opts.bigHosts, services: opts.services, version: (_, name) => (name === s ? `2.0.${k}` : '1.0.0') }).puts.find(([kk]) => kk.endsWith(`/${base32Port(s)}`))!;
    const t0 = performance.now();
    await client.put(key).value(value);
    await Promise.all(
      pages.map(async (p, b) => {
        await p.waitForFunction((before) => document.documentElement.dataset.fleetId !== before, ids[b], { timeout: 60_000, polling: 'raf' });
        delays[b]!.push(performance.now() - t0);
      }),
    );
    // Put back, so the churn below starts from the fleet as written.
    await client.put(key).value(scaleNode(prefix, i, { nodes: opts.bigHosts, services: opts.services }).puts.find(([kk]) => kk.endsWith(`/${base32Port(s)}`))![1]);
  }
  await Promise.all(contexts.map((c) => c.close()));
  return builds.map(({ build }, b) => ({ build, hosts: opts.bigHosts, medianMs: round(median(delays[b]!)), allMs: delays[b]!.map(round) }));
}

async function livePhase(browser: Browser, client: etcd3.Etcd3, daemon: ServeProcess, prefix: string, opts: UiBenchOptions, n: number): Promise<LivePhase> {
  const url = `http://127.0.0.1:${daemon.http.port}/ui/`;
  const contexts = await Promise.all(Array.from({ length: n }, () => browser.newContext()));
  const pages: Page[] = [];
  for (const c of contexts) {
    const p = await c.newPage();
    await p.goto(url);
    await p.waitForFunction(() => document.getElementById('live')?.dataset.state === 'live', undefined, { timeout: 30_000 });
    pages.push(p);
  }
  const services = serviceNames(opts.services);
  const cpu0 = cpuTicks(daemon.pid);
  const t0 = performance.now();
  let writes = 0;
  // A listener's version rewritten CHURN_PER_S times a second, on a random host: what a slow rolling deploy looks like to the view.
  while (performance.now() - t0 < opts.churnSeconds * 1000) {
    const i = Math.floor(Math.random() * opts.bigHosts);
    const s = services[Math.floor(Math.random() * services.length)]!;
    const [key, value] = scaleNode(prefix, i, { nodes: opts.bigHosts, services: opts.services, version: (_, name) => (name === s ? `1.0.${writes % 50}` : '1.0.0') }).puts.find(([k]) => k.endsWith(`/${base32Port(s)}`))!;
    await client.put(key).value(value);
    writes++;
    await sleep(1000 / CHURN_PER_S);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = ((cpuTicks(daemon.pid) - cpu0) / HZ / seconds) * 100;
  const rss = readRss(daemon.pid);
  // Every page should end on the daemon's current document: the last rebuild comes at most a second after the churn, or,
  // on a fleet whose rebuilds are slow, 9 rebuilds' time (feed.ts REBUILD_CPU_SHARE). Waited for, up to 30 s.
  let pagesCurrent = 0;
  for (const deadline = performance.now() + 30_000; ; ) {
    const current = (await fetch(`${url}api/fleet`, { method: 'HEAD' })).headers.get('x-canonport-fleet-id');
    pagesCurrent = 0;
    for (const p of pages) if ((await p.evaluate(() => document.documentElement.dataset.fleetId)) === current) pagesCurrent++;
    if (pagesCurrent === pages.length || performance.now() > deadline) break;
    await sleep(250);
  }
  await Promise.all(contexts.map((c) => c.close()));
  return { pages: n, seconds: round(seconds), writes, cpuPercent: round(cpu), rssMiB: round(rss.rssMiB), hwmMiB: round(rss.hwmMiB), pagesCurrent };
}

function cpuTicks(pid: number): number {
  const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  return s.utime + s.stime;
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

