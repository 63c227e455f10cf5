import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import type { FleetDocument } from '../src/fleet/document.js';
import { base32Port } from '../src/scheme/index.js';
import { applyDiff, type FleetDiff } from '../src/ui/client/diff.js';
import { makeCa } from './helpers/certs.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { createHostNet, type Host, type HostNet } from './helpers/netns.js';
import { openFromCurrent, openSse } from './helpers/sse.js';
import { requireTool } from './helpers/tools.js';

/**
 * The fleet page over HTTPS: the same listener and TLS as /metrics
 * (`--http-tls-cert`), the same allow-list (`--http-allow`). The daemon
 * listens on every address. On loopback (always served), Node's https
 * client, checking the daemon's certificate against the CA the test made:
 * the page, its scripts, the document, and the live stream with the diff of
 * a real change (a fixture /proc the inventory reads). From two other
 * hosts (network namespaces, test/helpers/netns.ts), curl with --cacert:
 * the one in --http-allow gets the page, the other 403 for the page, its
 * data and its live stream.
 */

const API = base32Port('api');
const DB = base32Port('db');
let daemon: Daemon;
let base: string;
let ca: Buffer;
let caFile: string;
let root: string;
let net: HostNet;
let inside: Host;
let outside: Host;

function writeProc(ports: number[]): void {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  const lines = ports.map((p, i) => `   ${i}: 00000000:${hex(p)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${2000 + p} 1 0000000000000000 100 0 0 10 0`);
  writeFileSync(join(root, 'net', 'tcp'), ['  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode', ...lines, ''].join('\n'));
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** The TLS session was verified against the test's CA. */
  authorized: boolean;
}

/** One GET over HTTPS on a connection of its own. */
function get(path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { ca, agent: false, headers: { connection: 'close' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, authorized: (res.socket as unknown as { authorized: boolean }).authorized }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** curl --cacert from a host: the status code and body (000 when no HTTP answer came). */
async function curl(host: Host, path: string): Promise<{ status: string; body: string; stderr: string }> {
  const r = await host.exec('curl', ['-s', '-S', '-N', '--cacert', caFile, '-o', '-', '-w', '\n%{http_code}', '--max-time', '5', `https://${net.gateway}:${daemon.addresses.http.port}${path}`], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
  const at = r.stdout.lastIndexOf('\n');
  return { status: r.stdout.slice(at + 1).trim(), body: r.stdout.slice(0, at), stderr: r.stderr };
}

beforeAll(async () => {
  requireTool('curl', 'curl');
  net = await createHostNet({ hosts: 2 });
  [inside, outside] = net.hosts as [Host, Host];
  const dir = tempDir('canonport-ui-https-');
  const testCa = makeCa(dir, 'ui-https');
  const server = testCa.leaf('ui-https-daemon', { ips: ['127.0.0.1', net.gateway] });
  caFile = testCa.cert;
  ca = readFileSync(testCa.cert);
  root = join(dir, 'proc');
  mkdirSync(join(root, 'net'), { recursive: true });
  writeFileSync(join(root, 'net', 'tcp6'), '  sl  local_address                         remote_address                        st\n');
  writeProc([API]);
  const registry = writeRegistry('inventory: { intervalMs: 200 }\n');
  daemon = await startDaemon({ zones: ['c.test'], registry, procRoot: root, http: '0.0.0.0:0', httpTlsCert: server.cert, httpTlsKey: server.key, httpAllow: [`${inside.address}/32`] }, { inventory: true });
  base = `https://127.0.0.1:${daemon.addresses.http.port}`;
}, 60_000);

afterAll(async () => {
  await daemon?.close(0);
  net?.cleanup();
});

describe('the fleet page over HTTPS', () => {
  it('serves the page, its script and the fleet document over TLS, the certificate checked', async () => {
    const page = await get('/ui/');
    expect(page.authorized).toBe(true);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8');
    // The script is inline (page.ts): the page needs nothing else before it draws.
    expect(page.body).toMatch(/<script>\(function\(\)\{.*<\/script>\n<\/body>/s);
    const doc = await get('/ui/api/fleet');
    expect(doc.status).toBe(200);
    expect((JSON.parse(doc.body) as FleetDocument).hosts[0]!.inventory!.listeners.map((l) => l.port)).toEqual([API]);
    // The same listener answers /metrics: one listener, one TLS.
    expect((await get('/metrics')).status).toBe(200);
  });

  it('keeps a page live over TLS: hello, then the diff of a listener that starts', async () => {
    const fetchDoc = async () => {
      const r = await get('/ui/api/fleet');
      return { id: String(r.headers['x-canonport-fleet-id']), body: r.body };
    };
    const { doc: fleet, sse } = await openFromCurrent(fetchDoc, (since) => openSse(`${base}/ui/api/events?since=${since}`, { ca }));
    const id = fleet.id;
    try {
      expect(sse.status).toBe(200);
      writeProc([API, DB]);
      // In order, each diff from the document before it (a quiet scan's own document, its new scan time, may come first).
      let after = JSON.parse(fleet.body) as FleetDocument;
      let from = id;
      do {
        const diff = JSON.parse((await sse.next((e) => e.event === 'diff' && (JSON.parse(e.data) as FleetDiff).from === from)).data) as FleetDiff;
        after = applyDiff(after, diff);
        from = diff.to;
      } while (after.hosts[0]!.inventory!.listeners.length < 2);
      expect(after.hosts[0]!.inventory!.listeners.map((l) => l.port).sort()).toEqual([API, DB].sort());
    } finally {
      sse.close();
      writeProc([API]);
    }
  });

  it('serves a host in --http-allow over TLS and refuses one outside it with 403: the page, its data and its live stream', async () => {
    const page = await curl(inside, '/ui/');
    expect(page.stderr).toBe('');
    expect(page.status).toBe('200');
    expect(page.body).toContain('<title>Fleet · canonport</title>');
    expect((await curl(inside, '/ui/api/fleet')).status).toBe('200');
    for (const path of ['/ui/', '/ui/api/fleet', '/ui/api/events']) {
      const res = await curl(outside, path);
      expect(res.status, `${path}: ${res.stderr}`).toBe('403');
      expect(res.body, path).not.toContain('"hosts"');
      expect(res.body, path).not.toContain('event:');
    }
  });
});
