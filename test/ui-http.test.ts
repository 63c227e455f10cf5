import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import type { FleetDocument } from '../src/fleet/document.js';
import { base32Port } from '../src/scheme/index.js';
import { applyDiff, type FleetDiff } from '../src/ui/client/diff.js';
import type { PageInfo } from '../src/ui/client/model.js';
import { MAX_STREAMS, MAX_STREAMS_PER_SOURCE } from '../src/ui/events.js';
import { inlineHash } from '../src/ui/page.js';
import { until } from './helpers/cluster.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { openFromCurrent, openSse, type SseClient } from './helpers/sse.js';

/**
 * The fleet page's HTTP side (src/ui/route.ts, events.ts) on a real daemon
 * without cluster mode, whose inventory reads a fixture /proc (so a test
 * can make a listener start): the page and its scripts, the document and
 * its compression, the live stream and its diffs, the stream caps.
 */

const API = base32Port('api');
const DB = base32Port('db');

/** /proc/net/tcp with these ports listening on 0.0.0.0. */
function writeProc(root: string, ports: number[]): void {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  const lines = ports.map((p, i) => `   ${i}: 00000000:${hex(p)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${2000 + p} 1 0000000000000000 100 0 0 10 0`);
  writeFileSync(join(root, 'net', 'tcp'), ['  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode', ...lines, ''].join('\n'));
}

let daemon: Daemon;
let base: string;
let root: string;

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function get(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const fleet = async (): Promise<{ id: string; doc: FleetDocument }> => {
  const r = await get('/ui/api/fleet');
  return { id: String(r.headers['x-canonport-fleet-id']), doc: JSON.parse(r.body.toString()) as FleetDocument };
};

beforeAll(async () => {
  root = tempDir('canonport-ui-proc-');
  mkdirSync(join(root, 'net'));
  writeFileSync(join(root, 'net', 'tcp6'), '  sl  local_address                         remote_address                        st\n');
  writeProc(root, [API]);
  const registry = writeRegistry('inventory: { intervalMs: 200 }\n');
  daemon = await startDaemon({ zones: ['c.test'], registry, procRoot: root }, { inventory: true });
  base = `http://127.0.0.1:${daemon.addresses.http.port}`;
});

afterAll(async () => {
  await daemon?.close(0);
});

describe('the fleet page on a daemon without cluster mode', () => {
  it('/ui redirects to /ui/, the page, which says what the daemon is, behind a strict content policy', async () => {
    const redirect = await get('/ui');
    expect(redirect.status).toBe(308);
    expect(redirect.headers.location).toBe('/ui/');
    const page = await get('/ui/');
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    const html = page.body.toString();
    const info = JSON.parse(/<script id="cp-info" type="application\/json">(.*?)<\/script>/s.exec(html)![1]!) as PageInfo;
    expect(info).toMatchObject({ mode: 'local', zones: ['c.test'], dns: daemon.addresses.dns, grpc: { ...daemon.addresses.grpc, tls: false } });
  });

  it('carries its style, its script and the fleet document inline, and its content policy allows exactly those', async () => {
    const page = await get('/ui/');
    const html = page.body.toString();
    const csp = String(page.headers['content-security-policy']);
    // The one script (the build's bundle) and the one style, each allowed by its digest and nothing else.
    const scripts = [...html.matchAll(/<script>(.*?)<\/script>/gs)].map((m) => m[1]!);
    const styles = [...html.matchAll(/<style>(.*?)<\/style>/gs)].map((m) => m[1]!);
    expect(scripts).toHaveLength(1);
    expect(styles).toHaveLength(1);
    expect(scripts[0]).toBe(readFileSync(new URL('../dist/ui/client/page.js', import.meta.url), 'utf8'));
    const directive = (name: string) => csp.split(';').map((d) => d.trim()).find((d) => d.startsWith(`${name} `));
    expect(directive('script-src')).toBe(`script-src ${inlineHash(scripts[0]!)}`);
    expect(directive('style-src')).toBe(`style-src ${inlineHash(styles[0]!)}`);
    // The document, whole (one host fits in the first screen), under the id the page follows changes from.
    const inline = /<script id="cp-doc" type="application\/json" data-id="([^"]+)">(.*?)<\/script>/s.exec(html)!;
    const { id, doc } = await fleet();
    expect(inline[1]).toBe(id);
    expect(page.headers['x-canonport-fleet-id']).toBe(id);
    expect(JSON.parse(inline[2]!)).toEqual(doc);
  });

  it('serves nothing else under /ui: the page needs no other file', async () => {
    for (const m of ['app.js', 'page.js', 'style.css', 'app.js.map', 'fleet.js']) expect((await get(`/ui/${m}`)).status, m).toBe(404);
    expect((await get('/ui/api/other')).status).toBe(404);
    // Read-only: nothing but GET and HEAD.
    const post = await get('/ui/api/fleet', {}, 'POST');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD');
  });

  it('/ui/api/fleet is the fleet document of this host: its own inventory, each listener listening', async () => {
    const { id, doc } = await fleet();
    expect(id).toMatch(/^[0-9a-f]+-\d+$/);
    expect(doc.source).toEqual({ kind: 'local', host: doc.hosts[0]!.host });
    expect(doc.hosts).toHaveLength(1);
    // Nothing names api's port here (no registry entry, nobody asked, a fixture /proc with no process): unnamed, listed apart (issue 22).
    expect(doc.hosts[0]!.inventory!.listeners).toEqual([{ port: API, address: '0.0.0.0', family: 'tcp', services: ['api'], names: [], version: '', versionSource: '', scheme: 'base32', state: 'listening' }]);
    expect(doc.services).toEqual([]);
    expect(doc.unnamed).toEqual([{ port: API, protocol: 'tcp', services: ['api'], scheme: 'base32', hosts: [doc.hosts[0]!.host] }]);
    expect(doc.findings).toEqual([]);
  });

  it('has no /ui/api/fleet/first: the page carries its first screen inline and never asks for it', async () => {
    const whole = await get('/ui/api/fleet');
    expect(whole.headers.etag).toBe(`"${String(whole.headers['x-canonport-fleet-id'])}"`);
    const gone = await get('/ui/api/fleet/first');
    expect(gone.status).toBe(404);
    expect(gone.body.toString()).not.toContain('"hosts"');
  });

  it('compresses for clients that accept it (brotli first, then gzip), and answers a known document with 304', async () => {
    // Under 1 kB a body goes as it is: the one-listener document is that small.
    expect((await get('/ui/api/fleet', { 'Accept-Encoding': 'br' })).headers['content-encoding']).toBeUndefined();
    const ports = Array.from({ length: 30 }, (_, i) => 20_000 + i);
    writeProc(root, ports);
    await until('thirty listeners in the document', async () => ((await fleet()).doc.hosts[0]!.inventory!.listeners.length === 30 ? true : undefined), 10_000, 100);
    const plain = await get('/ui/api/fleet');
    expect(plain.headers['content-encoding']).toBeUndefined();
    const br = await get('/ui/api/fleet', { 'Accept-Encoding': 'gzip, deflate, br' });
    expect(br.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(br.body).toString()).toBe(plain.body.toString());
    const gz = await get('/ui/api/fleet', { 'Accept-Encoding': 'gzip, br;q=0' });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(gz.body).toString()).toBe(plain.body.toString());
    expect(br.headers.vary).toBe('Accept-Encoding');
    // The page too (its script alone is some 25 kB), the same text either way.
    const html = await get('/ui/', { 'Accept-Encoding': 'br' });
    expect(html.headers['content-encoding']).toBe('br');
    expect(brotliDecompressSync(html.body).toString()).toBe((await get('/ui/')).body.toString());
    const again = await get('/ui/api/fleet', { 'If-None-Match': String(plain.headers.etag) });
    expect(again.status).toBe(304);
    const head = await get('/ui/api/fleet', {}, 'HEAD');
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    writeProc(root, [API]);
    await until('back to one listener', async () => ((await fleet()).doc.hosts[0]!.inventory!.listeners.length === 1 ? true : undefined), 10_000, 100);
  });
});

describe('the live stream', () => {
  it('says hello to a page holding the current document, then sends the diff of a change, which makes the next document', async () => {
    const { doc: before, sse } = await openFromCurrent(fleet, (id) => openSse(`${base}/ui/api/events?since=${id}`));
    try {
      expect(sse.status).toBe(200);
      expect(sse.headers['content-type']).toBe('text/event-stream; charset=utf-8');
      writeProc(root, [API, DB]);
      // Diffs come in order, each from the document before it. The inventory's quiet scans make documents of their own
      // (the host's scan time changes), so the one that brings DB may come after one of those: each is applied in turn.
      let doc = before.doc;
      let id = before.id;
      const applyNext = async () => {
        const e = await sse.next((x) => x.event === 'diff' && (JSON.parse(x.data) as FleetDiff).from === id);
        const diff = JSON.parse(e.data) as FleetDiff;
        expect(e.id).toBe(diff.to);
        doc = applyDiff(doc, diff);
        id = diff.to;
      };
      do await applyNext();
      while (!doc.hosts[0]!.inventory!.listeners.some((l) => l.port === DB));
      // The document fetched now is the one the diffs make, once they reach it (it was published to the stream first).
      const after = await fleet();
      while (id !== after.id) await applyNext();
      expect(doc).toEqual(after.doc);
      // Both unnamed here (issue 22): the new port shows apart, under its canonical name.
      expect(after.doc.unnamed.map((u) => u.services.join())).toEqual(['api', 'db0']);
    } finally {
      sse.close();
      writeProc(root, [API]);
    }
  });

  it('catches a page up from a recent document (EventSource\'s Last-Event-ID wins over the query), and tells one it does not know to fetch again', async () => {
    const old = await fleet();
    writeProc(root, [API, DB]);
    await until('the change is published', async () => ((await fleet()).id !== old.id ? true : undefined), 10_000, 100);
    const caught = await openSse(`${base}/ui/api/events?since=ffff-1`, { headers: { 'Last-Event-ID': old.id } });
    try {
      const e = await caught.next((x) => x.event === 'diff');
      expect(JSON.parse(e.data)).toMatchObject({ from: old.id });
    } finally {
      caught.close();
    }
    const lost = await openSse(`${base}/ui/api/events?since=deadbeef-7`);
    expect(JSON.parse((await lost.next((x) => x.event === 'resync')).data)).toEqual({ id: (await fleet()).id });
    await lost.ended;
    // Not an id at all: the same.
    const junk = await openSse(`${base}/ui/api/events?since=%3Cscript%3E`);
    await junk.next((x) => x.event === 'resync');
    writeProc(root, [API]);
  });

  it(`refuses a stream past ${MAX_STREAMS_PER_SOURCE} from one address and ${MAX_STREAMS} in all, with 429 and CP_UI_STREAM_LIMIT, and counts both`, async () => {
    const { id } = await fleet();
    const open: SseClient[] = [];
    const metric = async (name: string, labels = '') => {
      const text = (await get('/metrics')).body.toString();
      const m = new RegExp(`^${name}${labels.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : NaN;
    };
    try {
      for (let i = 0; i < MAX_STREAMS_PER_SOURCE; i++) open.push(await openSse(`${base}/ui/api/events?since=${id}`, { localAddress: '127.0.0.2' }));
      expect(open.every((s) => s.status === 200)).toBe(true);
      const refused = await openSse(`${base}/ui/api/events?since=${id}`, { localAddress: '127.0.0.2' });
      await refused.ended;
      expect(refused.status).toBe(429);
      expect(refused.headers['retry-after']).toBe('10');
      expect(refused.body).toContain('CP_UI_STREAM_LIMIT');
      expect(refused.body).toContain('from 127.0.0.2');
      // Another address still gets one, up to the total.
      for (let i = 2; open.length < MAX_STREAMS; i++) {
        for (let j = 0; j < MAX_STREAMS_PER_SOURCE && open.length < MAX_STREAMS; j++) open.push(await openSse(`${base}/ui/api/events?since=${id}`, { localAddress: `127.0.0.${i + 1}` }));
      }
      expect(open.every((s) => s.status === 200)).toBe(true);
      const full = await openSse(`${base}/ui/api/events?since=${id}`, { localAddress: '127.0.0.99' });
      await full.ended;
      expect(full.status).toBe(429);
      expect(full.body).toContain(`${MAX_STREAMS} live fleet pages are open on this daemon`);
      expect(await metric('canonport_ui_streams')).toBe(MAX_STREAMS);
      expect(await metric('canonport_ui_streams_refused_total', '{reason="source"}')).toBe(1);
      expect(await metric('canonport_ui_streams_refused_total', '{reason="total"}')).toBe(1);
    } finally {
      for (const s of open) s.close();
    }
    // Each closed page gives its stream back.
    await until('every stream released', async () => ((await metric('canonport_ui_streams')) === 0 ? true : undefined), 5000, 50);
    const again = await openSse(`${base}/ui/api/events?since=${id}`, { localAddress: '127.0.0.2' });
    expect(again.status).toBe(200);
    again.close();
  });

  it('ends open streams when the daemon stops, without holding its stop', async () => {
    const d = await startDaemon({}, { inventory: false });
    const url = `http://127.0.0.1:${d.addresses.http.port}/ui/api/events?since=x`;
    const r = await new Promise<string>((resolve) => {
      request(`http://127.0.0.1:${d.addresses.http.port}/ui/api/fleet`, (res) => resolve(String(res.headers['x-canonport-fleet-id']))).end();
    });
    const sse = await openSse(url.replace('since=x', `since=${r}`));
    await sse.next((e) => e.event === 'hello');
    const t0 = performance.now();
    await d.close(0);
    await sse.ended;
    // The HTTP server's grace for busy connections is 2 s: a stream left open would hold the stop that long.
    expect(performance.now() - t0).toBeLessThan(1500);
  });
});

describe('heartbeats', () => {
  it('go only to streams that have caught up: one before a page\'s catch-up would name a document it has not reached', async () => {
    const { createServer } = await import('node:http');
    const { LiveStreams } = await import('../src/ui/events.js');
    const { Metrics } = await import('../src/metrics/metrics.js');
    const { silentLogger } = await import('../src/log.js');
    // A feed whose document takes 300 ms to build each time it is asked (a large fleet under churn), heartbeats every 20 ms.
    const current = { id: 'abcd-2' };
    let pending: Promise<unknown> | undefined;
    const feed = {
      latest: () => (pending ??= new Promise((r) => setTimeout(() => ((pending = undefined), r(current)), 300))),
      since: (id: string) => (id === 'abcd-2' ? [] : null),
      subscribe: () => () => undefined,
    } as unknown as ConstructorParameters<typeof LiveStreams>[0];
    const streams = new LiveStreams(feed, { metrics: new Metrics({ defaultMetrics: false }), logger: silentLogger, heartbeatMs: 20 });
    const server = createServer((req, res) => void streams.open(req, res, 'abcd-2'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const first = await openSse(`http://127.0.0.1:${port}/`);
    await first.next((e) => e.event === 'heartbeat');
    // Opens while a heartbeat waits on the same build: the heartbeat goes out first, to those following.
    await new Promise((r) => setTimeout(r, 100));
    const sse = await openSse(`http://127.0.0.1:${port}/`);
    try {
      await sse.next((e) => e.event === 'heartbeat');
      expect(sse.events[0]!.event).toBe('hello');
    } finally {
      first.close();
      sse.close();
      streams.closeAll();
      await new Promise((r) => server.close(r));
    }
  });
});
