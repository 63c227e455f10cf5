import type { Server as HttpServer } from 'node:http';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InventorySnapshot } from '../src/inventory/types.js';
import type { ServingState } from '../src/core/state.js';
import { Metrics } from '../src/metrics/metrics.js';
import { DEFAULT_REPROBE_MS, HostInventory, probeAddress, QUIET_MAX_MS } from '../src/inventory/inventory.js';
import { parseRegistry } from '../src/registry/load.js';
import { Registry } from '../src/registry/registry.js';
import { prefixOf } from '../src/scheme/index.js';
import { createHostNet } from './helpers/netns.js';
import {
  bindCanonical,
  bindUnclaimed,
  CANDIDATES,
  closeServer,
  silentTcpServer,
  bindVersioned,
  versionServer,
  type Bound,
} from './inventory-support.js';

/** Real listeners on canonical ports, shared by the tests below. */
let dual: Bound<Server>;
let http: Bound<HttpServer>;
let json: Bound<HttpServer>;
let silent: Bound<Server>;
let versioned: { id: number; port: number; servers: Server[] };
let unclaimed: { port: number; server: Server };
let registry: Registry;
const open: (Server | HttpServer)[] = [];
const dirs: string[] = [];

const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';

/**
 * A fixture /proc (removed after the file): `write` puts a net/tcp listing
 * LISTEN sockets on `address` (kernel hex, little-endian words), one per
 * port, inodes 1000, 1001… as the kernel prints them.
 */
async function fixtureProc(address: string): Promise<{ root: string; write(ports: number[]): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'canonport-inv-'));
  dirs.push(root);
  await mkdir(join(root, 'net'));
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  const line = (i: number, port: number) =>
    `   ${i}: ${address}:${hex(port)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${1000 + i} 1 0000000000000000 100 0 0 10 0`;
  return { root, write: (ports) => writeFile(join(root, 'net', 'tcp'), [TCP_HEADER, ...ports.map((p, i) => line(i, p)), ''].join('\n')) };
}

beforeAll(async () => {
  dual = await bindCanonical(CANDIDATES.dual, () => createServer(), ['127.0.0.1', '::1']);
  http = await bindCanonical(CANDIDATES.http, () => versionServer({ '/version': { body: '1.4.2\n' } }));
  json = await bindCanonical(CANDIDATES.json, () =>
    versionServer({ '/meta': { body: '{"version":"7.1.0","commit":"1a2b3c"}', type: 'application/json' } }),
  );
  silent = await bindCanonical(CANDIDATES.silent, silentTcpServer);
  versioned = await bindVersioned();
  unclaimed = await bindUnclaimed();
  open.push(...dual.servers, ...http.servers, ...json.servers, ...silent.servers, ...versioned.servers, unclaimed.server);
  registry = parseRegistry(
    `
inventory:
  probeTimeoutMs: 300
services:
  user: { id: ${versioned.id}, version: 2, versions: [1, 2] }
  ${http.name}: { versionPath: /version }
  ${json.name}: { versionPath: /meta }
  ${silent.name}: { versionPath: /version }
`,
    'inventory-test.yaml',
  );
});

afterAll(async () => {
  await Promise.all(open.map(closeServer));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

const stateOf = (r: Registry): (() => ServingState) => () => ({ registry: r, zones: ['localhost'] });
const on = (snap: InventorySnapshot, port: number) => snap.listeners.filter((l) => l.port === port);
const series = async (m: Metrics) => (await m.serviceListening.get()).values.map((v) => v.labels);
const probes = async (m: Metrics, result: string) =>
  (await m.inventoryProbes.get()).values.find((v) => v.labels.result === result)?.value ?? 0;

describe('HostInventory on real sockets', () => {
  it('names every listener by canonical port, with versions from ports and HTTP probes', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const inv = new HostInventory({ state: stateOf(registry), metrics, hostname: 'test-host' });
    const snap = await inv.snapshot();
    expect(snap.host).toBe('test-host');
    expect(inv.errors).toEqual([]);

    // One port on two addresses: both listed, same claim.
    // A port the registry does not list and no name or process names (no `names` source here) is unnamed: `names` is empty.
    expect(on(snap, dual.port)).toEqual([
      { port: dual.port, address: '127.0.0.1', family: 'tcp', services: [prefixOf(dual.name)], names: [], version: '', versionSource: '', scheme: 'base32' },
      { port: dual.port, address: '::1', family: 'tcp6', services: [prefixOf(dual.name)], names: [], version: '', versionSource: '', scheme: 'base32' },
    ]);
    expect(on(snap, versioned.port)).toEqual([
      { port: versioned.port, address: '127.0.0.1', family: 'tcp', services: ['user'], names: [{ name: 'user', source: 'registry' }], version: '2', versionSource: 'port', scheme: 'versioned' },
    ]);
    expect(on(snap, http.port)).toEqual([
      { port: http.port, address: '127.0.0.1', family: 'tcp', services: [http.name], names: [{ name: http.name, source: 'registry' }], version: '1.4.2', versionSource: 'http', scheme: 'base32' },
    ]);
    expect(on(snap, json.port)).toMatchObject([{ services: [json.name], version: '7.1.0', versionSource: 'http' }]);
    // Accepts and never answers: the probe times out, the listener stays, version unknown.
    expect(on(snap, silent.port)).toMatchObject([{ services: [silent.name], version: '', versionSource: '' }]);
    expect(on(snap, unclaimed.port)).toEqual([
      { port: unclaimed.port, address: '127.0.0.1', family: 'tcp', services: [], version: '', versionSource: '', scheme: 'unknown' },
    ]);

    // Only the registry's versionPaths were asked: two answers, one timeout.
    expect(await probes(metrics, 'ok')).toBe(2);
    expect(await probes(metrics, 'timeout')).toBe(1);

    const labels = await series(metrics);
    expect(labels).toContainEqual({ service: 'user', port: String(versioned.port), version: '2' });
    expect(labels).toContainEqual({ service: http.name, port: String(http.port), version: '1.4.2' });
    expect(labels).toContainEqual({ service: json.name, port: String(json.port), version: '7.1.0' });
    // Two addresses, one series; unclaimed ports have none.
    expect(labels.filter((l) => l.port === String(dual.port))).toEqual([{ service: prefixOf(dual.name), port: String(dual.port), version: '' }]);
    expect(labels.filter((l) => l.port === String(unclaimed.port))).toEqual([]);
    const text = await metrics.registry.metrics();
    expect(text).toContain(`canonport_service_listening{service="user",port="${versioned.port}",version="2"} 1`);
  });

  it('drops the series of a listener that went away, and follows a registry reload', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    let current = registry;
    const inv = new HostInventory({ state: () => ({ registry: current, zones: [] }), metrics, probeTimeoutMs: 300 });
    const gone = await bindCanonical(['pmx-inv', 'pnb-inv', 'ppc-inv', 'prd-inv'], () => createServer());
    let snap = await inv.refresh();
    expect(on(snap, gone.port)).toHaveLength(1);
    expect((await series(metrics)).some((l) => l.port === String(gone.port))).toBe(true);

    await Promise.all(gone.servers.map(closeServer));
    snap = await inv.refresh();
    expect(on(snap, gone.port)).toEqual([]);
    expect((await series(metrics)).some((l) => l.port === String(gone.port))).toBe(false);

    // The new registry no longer lists the HTTP service: its port reads as a base32 prefix and is not probed.
    current = parseRegistry(`services:\n  user: { id: ${versioned.id}, version: 2 }\n`, 'reloaded.yaml');
    const okBefore = await probes(metrics, 'ok');
    snap = await inv.refresh();
    expect(on(snap, http.port)).toMatchObject([{ services: [prefixOf(http.name)], version: '', versionSource: '', scheme: 'base32' }]);
    expect(await probes(metrics, 'ok')).toBe(okBefore);
  });

  it('with probing off, learns versions from ports only and sends no HTTP', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const inv = new HostInventory({ state: stateOf(registry), metrics, probe: false });
    const snap = await inv.snapshot();
    expect(on(snap, http.port)).toMatchObject([{ services: [http.name], version: '', versionSource: '' }]);
    expect(on(snap, versioned.port)).toMatchObject([{ version: '2', versionSource: 'port' }]);
    expect((await metrics.inventoryProbes.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0);
  });
});

describe('HostInventory caching, timer and failures', () => {
  it('not started: reuses a snapshot younger than the interval, refreshes an older one', async () => {
    let t = 1_000_000;
    const metrics = new Metrics({ defaultMetrics: false });
    const inv = new HostInventory({ state: stateOf(registry), metrics, intervalMs: 5000, now: () => t });
    const first = await inv.snapshot();
    expect(first.collectedAtMs).toBe(1_000_000);
    t += 4999;
    expect(await inv.snapshot()).toBe(first);
    expect(await probes(metrics, 'ok')).toBe(2);
    t += 1;
    const second = await inv.snapshot();
    expect(second).not.toBe(first);
    expect(second.collectedAtMs).toBe(1_005_000);
    // The same sockets, asked less than a minute ago: their versions stand, no probe is sent.
    expect(await probes(metrics, 'ok')).toBe(2);
    expect(second.listeners.filter((l) => l.versionSource === 'http')).toEqual(first.listeners.filter((l) => l.versionSource === 'http'));
    t += DEFAULT_REPROBE_MS;
    await inv.snapshot();
    expect(await probes(metrics, 'ok')).toBe(4);
  });

  it('concurrent refreshes share one read', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const inv = new HostInventory({ state: stateOf(registry), metrics });
    const [a, b, c] = await Promise.all([inv.refresh(), inv.refresh(), inv.snapshot()]);
    expect(a).toBe(b);
    expect(b).toBe(c);
    expect(await probes(metrics, 'ok')).toBe(2);
  });

  it('started: answers with the latest snapshot at once; stop() ends the timer', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const inv = new HostInventory({ state: stateOf(registry), metrics, intervalMs: 60_000 });
    inv.start();
    const a = await inv.snapshot();
    const b = await inv.snapshot();
    expect(b).toBe(a);
    expect(on(a, versioned.port)).toHaveLength(1);
    await inv.stop();
    expect(await probes(metrics, 'ok')).toBe(2);
  });

  it('a scan that finds what the last one found says so to its hook and leaves the metrics alone (issue 24)', async () => {
    const { root, write } = await fixtureProc('00000000');
    await write([12082]);
    const metrics = new Metrics({ defaultMetrics: false });
    const seen: [InventorySnapshot, boolean][] = [];
    const inv = new HostInventory({ state: stateOf(registry), metrics, probe: false, procRoot: root, onSnapshot: (s, changed) => seen.push([s, changed]) });
    const snapshots = () => seen.filter(([, changed]) => changed).map(([s]) => s);
    await inv.refresh();
    await inv.refresh();
    await inv.refresh();
    expect(seen.map(([, changed]) => changed)).toEqual([true, false, false]);
    expect(snapshots()).toHaveLength(1);
    // The metrics are not redone either: a series removed behind its back stays removed until something changes.
    metrics.serviceListening.reset();
    await inv.refresh();
    expect((await metrics.serviceListening.get()).values).toEqual([]);
    // A listener more: handed on, and the series are rebuilt.
    await write([12082, 15000]);
    const snap = await inv.refresh();
    expect(snapshots()).toHaveLength(2);
    expect(snapshots()[1]).toBe(snap);
    expect(snap.listeners.map((l) => l.port)).toEqual([12082, 15000]);
    expect((await metrics.serviceListening.get()).values.map((v) => v.labels.port).sort()).toEqual(['12082', '15000']);
    // The latest snapshot is always the newest scan's, changed or not.
    const again = await inv.refresh();
    expect(snapshots()).toHaveLength(2);
    expect(seen.at(-1)).toEqual([again, false]);
    expect(await inv.snapshot()).toBe(again);
  });

  it('a scan that finds nothing changed remakes nothing (the last snapshot, with its time); a listener, a name asked, a reload or QUIET_MAX_MS make a full one (issue 24)', async () => {
    // A network namespace of its own: its socket counters move only for what the test does there.
    const net = await createHostNet({ hosts: 1 });
    try {
      const host = net.hosts[0]!;
      let t = 1_000_000;
      let asked: string[] = [];
      let current = registry;
      const inv = new HostInventory({ state: () => ({ registry: current, zones: ['localhost'] }), metrics: new Metrics({ defaultMetrics: false }), probe: false, procRoot: host.procRoot, now: () => t, names: { asked: () => asked, processNames: () => false } });
      const a = await host.listen(12082);
      try {
        const first = await inv.refresh();
        expect(first.listeners.map((l) => l.port)).toEqual([12082]);
        const full = inv.fullScans;
        for (let i = 0; i < 5; i++) {
          t += 1000;
          const s = await inv.refresh();
          expect(s.collectedAtMs).toBe(t);
          expect(s.listeners).toEqual(first.listeners);
        }
        expect(inv.fullScans).toBe(full);
        // A name asked for a listening port: a full scan (the names are part of the snapshot).
        asked = ['shop'];
        t += 1000;
        await inv.refresh();
        expect(inv.fullScans).toBe(full + 1);
        t += 1000;
        await inv.refresh();
        expect(inv.fullScans).toBe(full + 1);
        // A reload (another registry, the same text): a full scan.
        current = parseRegistry('services: {}\n', 'reload.yaml');
        t += 1000;
        await inv.refresh();
        expect(inv.fullScans).toBe(full + 2);
        // At least every QUIET_MAX_MS whatever the inputs say.
        t += QUIET_MAX_MS;
        await inv.refresh();
        expect(inv.fullScans).toBe(full + 3);
        // A listener more: its counters moved, a full scan, and seen.
        const b = await host.listen(15000);
        try {
          t += 1000;
          const s = await inv.refresh();
          expect(inv.fullScans).toBe(full + 4);
          expect(s.listeners.map((l) => l.port)).toEqual([12082, 15000]);
        } finally {
          await b.stop();
        }
      } finally {
        await a.stop();
        await inv.stop();
      }
    } finally {
      net.cleanup();
    }
  });

  it('an unreadable /proc gives an empty snapshot and the reason, never a rejection', async () => {
    const inv = new HostInventory({ state: stateOf(registry), metrics: new Metrics({ defaultMetrics: false }), procRoot: '/nonexistent-proc' });
    const snap = await inv.snapshot();
    expect(snap.listeners).toEqual([]);
    expect(inv.errors.map((e) => e.file)).toEqual(['/nonexistent-proc/net/tcp']);
  });

  it('the global versionPath is asked on claimed ports without a port version (fixture /proc, real HTTP)', async () => {
    const { root, write } = await fixtureProc('0100007F');
    await write([json.port, versioned.port]);
    const metrics = new Metrics({ defaultMetrics: false });
    const reg = parseRegistry(`inventory: { versionPath: /meta }\nservices:\n  user: { id: ${versioned.id}, version: 2 }\n`, 'global.yaml');
    const inv = new HostInventory({ state: stateOf(reg), metrics, procRoot: root });
    const snap = await inv.snapshot();
    expect(snap.listeners).toEqual([
      { port: versioned.port, address: '127.0.0.1', family: 'tcp', services: ['user'], names: [{ name: 'user', source: 'registry' }], version: '2', versionSource: 'port', scheme: 'versioned' },
      { port: json.port, address: '127.0.0.1', family: 'tcp', services: [prefixOf(json.name)], names: [], version: '7.1.0', versionSource: 'http', scheme: 'base32' },
    ]);
    expect(await probes(metrics, 'ok')).toBe(1); // the versioned port was not asked

    // The daemon's own listeners are listed but never probed.
    const own = new HostInventory({ state: stateOf(reg), metrics: new Metrics({ defaultMetrics: false }), procRoot: root, skipPorts: () => [json.port] });
    const ownSnap = await own.snapshot();
    expect(ownSnap.listeners.find((l) => l.port === json.port)).toMatchObject({ version: '', versionSource: '' });
  });
});

describe('probeAddress', () => {
  const s = (address: string) => ({ port: 1, address, family: (address.includes(':') ? 'tcp6' : 'tcp') as 'tcp' | 'tcp6' });
  it.each([
    [['0.0.0.0'], '127.0.0.1'],
    [['0.0.0.0', '::'], '127.0.0.1'],
    [['127.0.0.53'], '127.0.0.53'],
    [['::'], '::1'],
    [['::1'], '::1'],
    [['::ffff:127.0.0.1'], '127.0.0.1'],
    [['10.1.2.3'], '10.1.2.3'],
    [['fd00::5'], 'fd00::5'],
  ])('%j → %s', (addrs, want) => {
    expect(probeAddress(addrs.map(s))).toBe(want);
  });
});

describe('version probes in a fast scan loop', () => {
  it('asks a port again only when its sockets change (a new process) or the reprobe interval passed; retries failures with backoff', async () => {
    const root = await mkdtemp(join(tmpdir(), 'canonport-inv-probe-'));
    dirs.push(root);
    await mkdir(join(root, 'net'));
    const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
    const [web, grpcish] = [12082, 14688];
    const write = (webInode: number) =>
      writeFile(
        join(root, 'net', 'tcp'),
        [
          '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
          `   0: 00000000:${hex(web)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${webInode} 1 0000000000000000 100 0 0 10 0`,
          `   1: 00000000:${hex(grpcish)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0`,
          '',
        ].join('\n'),
      );
    let t = 1_000_000;
    let webVersion = '1.0.0';
    const asked: number[] = [];
    const inv = new HostInventory({
      state: stateOf(parseRegistry('inventory: { versionPath: /version }\n', 'probe.yaml')),
      metrics: new Metrics({ defaultMetrics: false }),
      procRoot: root,
      now: () => t,
      probeVersion: async (target) => {
        asked.push(target.port);
        return target.port === web ? { outcome: 'ok', version: webVersion } : { outcome: 'refused', version: '' };
      },
    });
    const scan = async (atMs: number) => {
      t = 1_000_000 + atMs;
      asked.length = 0;
      const snap = await inv.refresh();
      return { asked: [...asked].sort(), web: snap.listeners.find((l) => l.port === web)!.version };
    };
    await write(100);
    expect(await scan(0)).toEqual({ asked: [web, grpcish], web: '1.0.0' });
    // Every second, as cluster mode scans: nothing changed, nothing asked; the version stands.
    webVersion = '2.0.0';
    expect(await scan(1000)).toEqual({ asked: [], web: '1.0.0' });
    // The failed one is asked again after 2 s, then 4 s.
    expect(await scan(2000)).toEqual({ asked: [grpcish], web: '1.0.0' });
    expect(await scan(5000)).toEqual({ asked: [], web: '1.0.0' });
    expect(await scan(6000)).toEqual({ asked: [grpcish], web: '1.0.0' });
    // The web service restarted (a new socket, new inode) between two scans: asked at once.
    await write(101);
    expect(await scan(7000)).toEqual({ asked: [web], web: '2.0.0' });
    // A version that changed behind the same socket is learned within the reprobe interval.
    webVersion = '2.0.1';
    expect((await scan(7000 + DEFAULT_REPROBE_MS - 1000)).web).toBe('2.0.0');
    const late = await scan(7000 + DEFAULT_REPROBE_MS);
    expect(late.web).toBe('2.0.1');
    expect(late.asked).toContain(web);
  });
});
