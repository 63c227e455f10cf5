import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import etcd3 from 'etcd3';
import { encodeInstance, encodeNode, instanceKey, nodeKey, type ReadinessState } from '../src/cluster/keys.js';
import { parseRegistry } from '../src/registry/load.js';
import { base32Port } from '../src/scheme/index.js';
import { startBrowser } from '../test/helpers/browser.js';
import { startEtcd } from '../test/helpers/etcd.js';
import { REPO, startServe } from '../test/helpers/serve-process.js';
import { runScript } from './run-script.js';

/**
 * `npm run docs:screenshot`: the fleet page screenshot in docs/, made the
 * way a user sees it, never by hand: a real etcd holding a small fleet's
 * records (layout v2: five hosts, a mixed version, a host whose registry
 * differs, an instance still warming up and one draining), a
 * real `canonport serve --cluster` reading it (on a sixth host, web-6,
 * which runs none of them), Debian's Chromium drawing its /ui/. Writes
 * docs/fleet-page.png.
 */

const PREFIX = '/canonport';
const ZONE = 'cluster-1.example.com';
const OUT = join(REPO, 'docs', 'fleet-page.png');

/** host → service → version ("" unknown: nothing answered the version probe). */
const FLEET: Record<string, Record<string, string>> = {
  'web-1': { api: '1.4.2', blog: '2.1.0', cache: '' },
  'web-2': { api: '1.4.2', blog: '2.1.0', cache: '' },
  'web-3': { api: '1.4.2', blog: '2.1.0' },
  'web-4': { api: '1.4.1', cache: '' },
  'web-5': { api: '1.4.2', blog: '2.1.0', queue: '0.9.3' },
};
/** Instances not ready: host → service → state (every other one is ready). */
const NOT_READY: Record<string, Record<string, ReadinessState>> = {
  'web-2': { cache: 'not-ready' },
  'web-5': { blog: 'draining' },
};
/** The digest every host but web-4 has: the daemon's own (it runs without a registry file, as they would). */
const DIGEST = parseRegistry('', 'none').digest;
const OTHER = '9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2b1a0f9e8d7c6b5';

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const client = new etcd3.Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
  const started = '2026-12-07T08:00:00.000Z';
  let i = 10;
  for (const [node, runs] of Object.entries(FLEET)) {
    await client.put(nodeKey(PREFIX, node)).value(encodeNode({ name: node, addresses: [`10.0.1.${++i}`], canonportVersion: '0.1.0', registryDigest: node === 'web-4' ? OTHER : DIGEST, started }));
    for (const [service, version] of Object.entries(runs)) {
      const port = base32Port(service);
      const since = `2026-12-07T0${service === 'api' && version === '1.4.1' ? 8 : 9}:${String(i * 3).padStart(2, '0')}:00.000Z`;
      const state = NOT_READY[node]?.[service] ?? 'ready';
      const readiness = { state, since: state === 'ready' ? since : '2026-12-07T09:58:00.000Z', by: state === 'draining' ? ('admin' as const) : ('http' as const) };
      await client.put(instanceKey(PREFIX, node, port)).value(
        encodeInstance({ port, services: [service], scheme: 'base32', version, versionSource: version ? 'http' : '', since, bind: [{ family: 'tcp', address: '0.0.0.0' }], protocol: 'tcp', namespace: 'host', readiness }),
      );
    }
  }
  // The daemon publishes no listener of this machine: an empty /proc of its own.
  const proc = join(REPO, 'bench-results', 'work', 'screenshot-proc');
  mkdirSync(join(proc, 'net'), { recursive: true });
  writeFileSync(join(proc, 'net', 'tcp'), '  sl  local_address rem_address   st\n');
  writeFileSync(join(proc, 'net', 'tcp6'), '  sl  local_address rem_address   st\n');
  const daemon = await startServe(['--zone', ZONE, '--cluster', etcd.url, '--node', 'web-6', '--proc-root', proc]);
  const browser = await startBrowser({ viewport: { width: 1100, height: 560 } });
  try {
    const page = await browser.context.newPage();
    await page.emulateMedia({ colorScheme: 'light' });
    const url = `http://127.0.0.1:${daemon.http.port}/ui/`;
    for (const deadline = Date.now() + 20_000; ; ) {
      const doc = (await (await fetch(`${url}api/fleet`)).json()) as { hosts: unknown[] };
      if (doc.hosts.length === Object.keys(FLEET).length + 1) break;
      if (Date.now() > deadline) throw new Error(`the daemon's view has ${doc.hosts.length} hosts after 20 s`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await page.goto(url);
    await page.waitForFunction(() => document.getElementById('live')?.dataset.state === 'live');
    mkdirSync(join(REPO, 'docs'), { recursive: true });
    await page.screenshot({ path: OUT, fullPage: true });
    process.stdout.write(`wrote ${OUT}\n`);
  } finally {
    await browser.close();
    await daemon.stop();
    client.close();
    await etcd.stop();
  }
}

runScript(main);
