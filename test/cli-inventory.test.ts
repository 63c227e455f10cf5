import type { Server as HttpServer } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InventorySnapshot } from '../src/inventory/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { HostInventory } from '../src/inventory/inventory.js';
import { Registry } from '../src/registry/registry.js';
import { loadRegistryFile } from '../src/registry/load.js';
import { createSocket } from 'node:dgram';
import { base32Port, decodePort, prefixOf } from '../src/scheme/index.js';
import {
  bindCanonical,
  bindUnclaimed,
  CANDIDATES,
  closedPort,
  closeServer,
  runCli,
  startInventoryDaemon,
  stopDaemon,
  bindVersioned,
  versionServer,
  type Bound,
} from './inventory-support.js';

let dir: string;
let registryFile: string;
let http: Bound<HttpServer>;
let userPort = 0;
let unclaimed: { port: number; server: Server };
const open: (Server | HttpServer)[] = [];
let daemon: { address: string; server: grpc.Server } | undefined;

beforeAll(async () => {
  http = await bindCanonical(CANDIDATES.http, () => versionServer({ '/version': { body: '1.4.2\n' } }));
  open.push(...http.servers);
  const user = await bindVersioned();
  open.push(...user.servers);
  const id = user.id;
  userPort = user.port;
  unclaimed = await bindUnclaimed();
  open.push(unclaimed.server);
  dir = await mkdtemp(join(tmpdir(), 'canonport-cli-inv-'));
  registryFile = join(dir, 'registry.yaml');
  await writeFile(registryFile, `services:\n  user: { id: ${id}, version: 2 }\n  ${http.name}: { versionPath: /version }\n`);
});

afterAll(async () => {
  if (daemon) stopDaemon(daemon.server);
  await Promise.all(open.map(closeServer));
  if (dir) await rm(dir, { recursive: true, force: true });
});

const on = (snap: InventorySnapshot, port: number) => snap.listeners.filter((l) => l.port === port);

describe('canonport inventory (real process, real /proc)', () => {
  it('--json --probe: names this host\'s listeners with versions from ports and HTTP', async () => {
    const r = await runCli(['inventory', '--json', '--probe', '--registry', registryFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const snap = JSON.parse(r.stdout) as InventorySnapshot;
    expect(typeof snap.host).toBe('string');
    // As the gRPC InventoryResponse: the digest of the registry that named the ports.
    expect(snap.registryDigest).toBe((await loadRegistryFile(registryFile)).digest);
    expect(snap.registryDigest).not.toBe(Registry.empty().digest);
    expect(on(snap, http.port)).toEqual([
      // Listed in the registry: named by it (issue 22).
      { port: http.port, address: '127.0.0.1', family: 'tcp', services: [http.name], names: [{ name: http.name, source: 'registry' }], version: '1.4.2', versionSource: 'http', scheme: 'base32' },
    ]);
    expect(on(snap, userPort)).toMatchObject([{ services: ['user'], version: '2', versionSource: 'port', scheme: 'versioned' }]);
    expect(on(snap, unclaimed.port)).toMatchObject([{ services: [], scheme: 'unknown' }]);
  });

  it('without --probe sends no HTTP; without a registry ports read as base32 prefixes; the text table has one row per port', async () => {
    const r = await runCli(['inventory', '--json']);
    expect(r.code).toBe(0);
    const snap = JSON.parse(r.stdout) as InventorySnapshot;
    expect(on(snap, http.port)).toMatchObject([{ services: [prefixOf(http.name)], version: '', versionSource: '' }]);

    const viaEnv = await runCli(['inventory'], { CANONPORT_REGISTRY: registryFile });
    expect(viaEnv.code).toBe(0);
    expect(viaEnv.stdout).toMatch(/^\S+: \d+ listening ports? at \d{4}-\d\d-\d\dT/);
    // NAME (issue 22): what people know the listener by and where that comes from; SERVICE what the port answers.
    expect(viaEnv.stdout).toMatch(/^PORT\s+SERVICE\s+NAME\s+VERSION\s+FROM\s+SCHEME\s+ADDRESSES$/m);
    expect(viaEnv.stdout).toMatch(new RegExp(`^${userPort}\\s+user\\s+user \\(registry\\)\\s+2\\s+port\\s+versioned\\s+127\\.0\\.0\\.1$`, 'm'));
    expect(viaEnv.stdout).toMatch(new RegExp(`^${unclaimed.port}\\s+-\\s+-\\s+unknown\\s+127\\.0\\.0\\.1$`, 'm'));
    // A UDP listener is its own row, its port marked /udp; nothing names it (this process is not called by a name of its port).
    const udp = createSocket('udp4');
    const udpPort = base32Port('qmu-inv');
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(udpPort, '127.0.0.1', () => resolve());
    });
    try {
      const withUdp = await runCli(['inventory'], { CANONPORT_REGISTRY: registryFile });
      expect(withUdp.stdout).toMatch(new RegExp(`^${udpPort}/udp\\s+qmu\\s+-\\s+base32\\s+127\\.0\\.0\\.1$`, 'm'));
    } finally {
      udp.close();
    }
  });

  it('--daemon asks a running daemon\'s Inventory instead', async () => {
    const provider = new HostInventory({ state: () => ({ registry: Registry.empty(), zones: [] }), metrics: new Metrics({ defaultMetrics: false }), hostname: 'daemon-host' });
    daemon = await startInventoryDaemon(provider);
    const r = await runCli(['inventory', '--json', '--daemon', daemon.address]);
    expect(r.code).toBe(0);
    const snap = JSON.parse(r.stdout) as InventorySnapshot;
    expect(snap.host).toBe('daemon-host');
    // This minimal gRPC server (not the daemon) sets no digest: proto3's default.
    expect(snap.registryDigest).toBe('');
    // The daemon's registry is empty: the versioned port reads as the base32 prefix it encodes.
    expect(on(snap, userPort)).toMatchObject([{ services: [decodePort(userPort)], scheme: 'base32', version: '' }]);

    const down = await runCli(['inventory', '--daemon', `127.0.0.1:${await closedPort()}`]);
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('CP_DAEMON_UNREACHABLE');
  });

  it('fails clearly: unreadable /proc (1), missing registry (1), bad flags (2)', async () => {
    // Nothing on stdout, in text or JSON: a script must not read a failed read as a host where nothing listens.
    for (const json of [[], ['--json']]) {
      const noProc = await runCli(['inventory', ...json, '--proc-root', join(dir, 'no-proc')]);
      expect(noProc.code).toBe(1);
      expect(noProc.stderr).toContain(`cannot read ${join(dir, 'no-proc', 'net', 'tcp')}`);
      expect(noProc.stdout).toBe('');
    }
    const noFile = await runCli(['inventory', '--registry', join(dir, 'missing.yaml')]);
    expect(noFile.code).toBe(1);
    expect(noFile.stderr).toContain('CP_REGISTRY_UNREADABLE');
    expect((await runCli(['inventory', '--probe-timeout', 'soon'])).code).toBe(2);
    expect((await runCli(['inventory', '--version-path', 'version'])).code).toBe(2);
  });
});
