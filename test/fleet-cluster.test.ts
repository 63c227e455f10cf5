/**
 * `canonport fleet --cluster`: the fleet read from a real etcd (Debian's
 * etcd-server), where real daemons (`Daemon`, in-process, each its own
 * cluster node with its own registry) published what their inventories
 * read from this host's /proc. The three nodes share one host, so they
 * observe the same sockets; their registries make them disagree.
 */
import type { Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../src/cluster/cluster.js';
import type { Daemon } from '../src/daemon/daemon.js';
import type { FleetFinding, FleetHost, FleetService, FleetSource } from '../src/fleet/fleet.js';
import type { FleetDocument } from '../src/fleet/document.js';
import { collectFleetFromCluster } from '../src/fleet/from-cluster.js';
import { Registry } from '../src/registry/registry.js';
import { parseRegistry } from '../src/registry/load.js';
import { until } from './helpers/cluster.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { addNodeUser, startEtcd, type EtcdCluster } from './helpers/etcd.js';
import { freePort } from './helpers/ports.js';
import { bindCanonical, closedPort, closeServer, runCli, versionServer, type Bound } from './inventory-support.js';

/** Base32 names (prefixes v…, ports 29–30k) no other test file binds. */
const HTTP_CANDIDATES = ['vmx-flt', 'vnb-flt', 'vpc-flt', 'vrd-flt', 'vsf-flt', 'vtg-flt'];
const PREFIX = '/fleet-test';

let etcd: EtcdCluster;
let dir: string;
let http: Bound<HttpServer>;
let pinned: Server;
let pinnedPort = 0;
const daemons: Daemon[] = [];
let registries: { r1: string; r2: string };

/** Listens on 0.0.0.0 (a daemon publishes only what other hosts can reach) on a port above the ephemeral range. */
async function wildcardListener(): Promise<{ server: Server; port: number }> {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    // It never reads: the daemons' readiness probes (once per socket life) leave connections it must drop to close.
    const server = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.resume();
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen({ port, host: '0.0.0.0', exclusive: true }, () => resolve(true));
    });
    if (ok) return { server, port };
  }
  throw new Error('no port free on 0.0.0.0 in 20 tries');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'canonport-fleet-cluster-'));
  etcd = await startEtcd();
  http = await bindCanonical(HTTP_CANDIDATES, () => versionServer({ '/version': { body: '1.4.2\n' } }), ['0.0.0.0']);
  ({ server: pinned, port: pinnedPort } = await wildcardListener());
  // web-1 and web-2 agree: the pinned port is alpha, and the HTTP service is asked for its version.
  // web-3's registry calls the pinned port beta, and does not ask the HTTP service: "?" beside 1.4.2.
  registries = {
    r1: `services:\n  alpha: { port: ${pinnedPort} }\n  ${http.name}: { versionPath: /version }\n`,
    r2: `services:\n  beta: { port: ${pinnedPort} }\n  ${http.name}: {}\n`,
  };
  const node = (name: string, n: number, registry: string) =>
    startDaemon({ registry: writeRegistry(registry), cluster: etcd.url, node: name, advertise: [`10.0.0.${n}`], clusterPrefix: PREFIX }, { inventory: true });
  daemons.push(await node('web-1', 1, registries.r1), await node('web-2', 2, registries.r1), await node('web-3', 3, registries.r2));
  // Published once each daemon's first scans (and probes) are in etcd.
  await until('all three nodes published with versions', async () => {
    const report = await collectFleetFromCluster({ endpoints: etcd.url, prefix: PREFIX, timeoutMs: 5000 });
    const svc = report.services.find((s) => s.service === http.name);
    const alpha = report.services.find((s) => s.service === 'alpha');
    const beta = report.services.find((s) => s.service === 'beta');
    return svc?.hostCount === 3 && svc.versions.some((v) => v.version === '1.4.2' && v.hosts.length === 2) && alpha?.hostCount === 2 && beta?.hostCount === 1 ? true : undefined;
  }, 20_000, 250);
}, 60_000);

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.close(0)));
  await Promise.all([...(http?.servers ?? []), ...(pinned ? [pinned] : [])].map(closeServer));
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('canonport fleet --cluster against etcd holding three real daemons\' records', () => {
  it('prints every node, the mixed version, the registry that differs and the port named twice; a view exits 0', async () => {
    const r = await runCli(['fleet', '--cluster', etcd.url, '--cluster-prefix', PREFIX]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    expect(r.stdout).toMatch(new RegExp(`^${esc(http.name)}\\s+1\\.4\\.2\\s+${http.port}\\s+2/3\\s+web-1, web-2$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^\\s+\\?\\s+${http.port}\\s+1/3\\s+web-3$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^alpha\\s+\\?\\s+${pinnedPort}\\s+2/3\\s+web-1, web-2$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^beta\\s+\\?\\s+${pinnedPort}\\s+1/3\\s+web-3$`, 'm'));
    expect(r.stdout).toContain(`  ${http.name}: 1.4.2 on 2 hosts, unknown version on 1 host`);
    const d1 = parseRegistry(registries.r1, 'r1.yaml').digest;
    const d2 = parseRegistry(registries.r2, 'r2.yaml').digest;
    expect(d1).not.toBe(d2);
    expect(r.stdout).toContain(`registries that differ from the majority (${d1.slice(0, 12)} on 2 of 3 hosts):\n  web-3  ${d2.slice(0, 12)}`);
    expect(r.stdout).toContain(`ports named as different services:\n  ${pinnedPort}: alpha on web-1, web-2; beta on web-3`);
    expect(r.stdout).toMatch(new RegExp(`^3 nodes in the cluster view \\(${esc(etcd.url)}, prefix ${PREFIX}, revision [1-9]\\d*\\)$`, 'm'));
  });

  it('--json: the source, every node with its digest and listeners, the findings', async () => {
    const r = await runCli(['fleet', '--json', '--cluster', etcd.url, '--cluster-prefix', PREFIX]);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { source: FleetSource; hosts: FleetHost[]; services: FleetService[]; findings: FleetFinding[] };
    expect(out.source).toMatchObject({ kind: 'cluster', endpoints: etcd.url, prefix: PREFIX });
    expect(out.hosts.map((h) => [h.host, h.target, h.reachable])).toEqual([
      ['web-1', `${PREFIX}/v2/nodes/web-1/node`, true],
      ['web-2', `${PREFIX}/v2/nodes/web-2/node`, true],
      ['web-3', `${PREFIX}/v2/nodes/web-3/node`, true],
    ]);
    const d1 = parseRegistry(registries.r1, 'r1.yaml').digest;
    const d2 = parseRegistry(registries.r2, 'r2.yaml').digest;
    expect(out.hosts.map((h) => h.inventory!.registryDigest)).toEqual([d1, d1, d2]);
    // The listener on 0.0.0.0 is reached at each node's advertised address.
    expect(out.hosts[0]!.inventory!.listeners.filter((l) => l.port === pinnedPort).map(({ stateSince: _since, ...l }) => l)).toEqual([
      // It speaks neither gRPC nor HTTP: ready while it listens, asked once (readiness.ts).
      // Named by the registry (issue 22: names and where they come from travel with the instance).
      { port: pinnedPort, address: '10.0.0.1', family: 'tcp', services: ['alpha'], names: [{ name: 'alpha', source: 'registry' }], version: '', versionSource: '', scheme: 'pinned', since: expect.any(String), state: 'ready' },
    ]);
    // The node record rides along, with when the node last observed a change; the view's state (a fresh list: synced) is in the source.
    expect(out.hosts[0]!.node).toEqual({ addresses: ['10.0.0.1'], canonportVersion: expect.any(String), registryDigest: d1, started: expect.any(String), observedAt: expect.any(String) });
    // Each host's time is when that host observed (its observedAt), not when fleet read etcd.
    expect(out.hosts.map((h) => h.inventory!.collectedAtMs)).toEqual(out.hosts.map((h) => Date.parse(h.node!.observedAt!)));
    expect(out.source).toMatchObject({ view: 'synced', viewSince: expect.any(String) });
    expect(out.services.find((s) => s.service === http.name)!.mixed).toBe(true);
    expect(out.findings.filter((f) => f.kind === 'registry')).toEqual([{ kind: 'registry', host: 'web-3', service: '', expected: d1, found: [d2], message: expect.stringContaining('web-3: registry') }]);
    expect(out.findings.filter((f) => f.kind === 'port-names')).toMatchObject([
      { port: pinnedPort, groups: [{ value: 'alpha', hosts: ['web-1', 'web-2'] }, { value: 'beta', hosts: ['web-3'] }] },
    ]);
  });

  it('--json is exactly what every daemon\'s fleet page serves (/ui/api/fleet): one document from one function', async () => {
    const cli = JSON.parse((await runCli(['fleet', '--json', '--cluster', etcd.url, '--cluster-prefix', PREFIX])).stdout) as FleetDocument;
    for (const d of daemons) {
      const res = await fetch(`http://${d.addresses.http.host}:${d.addresses.http.port}/ui/api/fleet`);
      const page = (await res.json()) as FleetDocument;
      // When each view entered its state is each reader's own (the CLI listed just now): everything else is the same,
      // each host's time included (when that host observed, issue 22).
      const when = (doc: FleetDocument) => {
        const source = doc.source as Extract<FleetSource, { kind: 'cluster' }>;
        return { ...doc, source: { ...source, viewSince: '' } };
      };
      expect(when(page)).toEqual(when(cli));
    }
  });

  it('--strict fails on what the view shows; --expect as with hosts (met: the TLS test below)', async () => {
    expect((await runCli(['fleet', '--strict', '--cluster', etcd.url, '--cluster-prefix', PREFIX])).code).toBe(1);
    const mismatch = await runCli(['fleet', '--cluster', etcd.url, '--cluster-prefix', PREFIX, '--expect', `${http.name}=1.4.2`]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stdout).toContain(`expectations not met (1):\n  web-3: ${http.name} runs unknown version on port ${http.port}, expected 1.4.2`);
    const missing = await runCli(['fleet', '--cluster', etcd.url, '--cluster-prefix', PREFIX, '--expect', 'alpha=1']);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('  web-3: alpha is not listening');
  });

  it('reads the etcd settings from the environment, as serve does', async () => {
    const r = await runCli(['fleet', '--json'], { CANONPORT_CLUSTER: etcd.url, CANONPORT_CLUSTER_PREFIX: PREFIX });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { hosts: FleetHost[] }).hosts.map((h) => h.host)).toEqual(['web-1', 'web-2', 'web-3']);
    // Another prefix holds no node.
    const empty = await runCli(['fleet'], { CANONPORT_CLUSTER: etcd.url, CANONPORT_CLUSTER_PREFIX: '/nobody-here' });
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain('no node in the cluster view');
    // Hosts on the command line win over $CANONPORT_CLUSTER (set for serve on the same host).
    const closed = `127.0.0.1:${await closedPort()}`;
    const hosts = await runCli(['fleet', closed], { CANONPORT_CLUSTER: etcd.url });
    expect(hosts.stdout).toContain('0/1 hosts answered; unreachable (1):');
  });
});

describe('canonport fleet --cluster when etcd cannot be read', () => {
  it('a refused etcd: exits 1 with CP_CLUSTER_UNREACHABLE and etcd\'s reason at once, not after its deadline (issue 22), nothing on stdout', async () => {
    const url = `etcd://127.0.0.1:${await closedPort()}`;
    const started = Date.now();
    const r = await runCli(['fleet', '--cluster', url, '--timeout', '20000']);
    const took = Date.now() - started;
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`cannot read the cluster view from ${url} (prefix /canonport)`);
    expect(r.stderr).not.toContain('within 20000 ms');
    expect(r.stderr).toContain('[CP_CLUSTER_UNREACHABLE]');
    // etcd's reason, in canonport's words: not the client's circuit breaker or grpc-js's status text.
    expect(r.stderr).toContain(`etcd at ${url.slice('etcd://'.length)} refused the connection`);
    expect(r.stderr).not.toMatch(/circuit breaker|Resolution note|UNAVAILABLE/);
    // The whole command, Node's start included, far inside the 20 s deadline (the report itself: the next test).
    expect(took).toBeLessThan(10_000);
  });

  it('a refused etcd is reported within 2 s of asking, whatever the deadline; every member must refuse', async () => {
    const refused = `127.0.0.1:${await closedPort()}`;
    let started = Date.now();
    await expect(collectFleetFromCluster({ endpoints: `etcd://${refused}`, timeoutMs: 20_000 })).rejects.toThrow(`etcd at ${refused} refused the connection`);
    expect(Date.now() - started).toBeLessThan(2_000);
    // One member that answers: the view is read from it, the refusing one notwithstanding.
    started = Date.now();
    const report = await collectFleetFromCluster({ endpoints: `etcd://${refused},${etcd.url.slice('etcd://'.length)}`, prefix: PREFIX, timeoutMs: 20_000 });
    expect(report.hosts.map((h) => h.host)).toEqual(['web-1', 'web-2', 'web-3']);
  });

  it('an unreachable etcd (no answer, no refusal) is waited for until the deadline, as before', async () => {
    // TEST-NET-1 (RFC 5737): no route in the test's network namespace, so no refusal either.
    const url = 'etcd://192.0.2.1:2379';
    const started = Date.now();
    const r = await runCli(['fleet', '--cluster', url, '--timeout', '1500']);
    const took = Date.now() - started;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`cannot read the cluster view from ${url} (prefix /canonport) within 1500 ms`);
    expect(r.stderr).toContain('[CP_CLUSTER_UNREACHABLE]');
    expect(took).toBeGreaterThanOrEqual(1500);
    expect(took).toBeLessThan(8_000);
  });

  it('usage errors and bad etcd settings exit 2, naming the flag or variable', async () => {
    const cases: [string[], Record<string, string>, RegExp][] = [
      [['fleet', '--cluster', etcd.url, '127.0.0.1:13655'], {}, /give hosts or --cluster, not both/],
      [['fleet', '--cluster', 'http://127.0.0.1:2379'], {}, /--cluster: "http:\/\/127\.0\.0\.1:2379": not an etcd:\/\/ URL/],
      [['fleet'], { CANONPORT_CLUSTER: 'etcd://nowhere' }, /CANONPORT_CLUSTER: "etcd:\/\/nowhere"/],
      [['fleet'], { CANONPORT_CLUSTER: '  ' }, /no hosts: give HOST\[:PORT\]…, --hosts-file FILE or --cluster/],
      [['fleet', '--cluster', etcd.url, '--cluster-prefix', 'no-slash'], {}, /cluster prefix "no-slash"/],
      [['fleet', '--cluster', etcd.url, '--cluster-user', 'root'], {}, /--cluster-user and --cluster-password-file go together/],
      [['fleet', '--cluster', etcd.url, '--cluster-user', 'root', '--cluster-password-file', join(dir, 'missing')], {}, /--cluster-password-file .*missing/],
      [['fleet', '--cluster', etcd.url, '--cluster-cert', join(dir, 'missing.pem')], {}, /cannot read the etcd client certificate/],
    ];
    for (const [args, env, message] of cases) {
      const r = await runCli(args, env);
      expect({ args, env, code: r.code }).toEqual({ args, env, code: 2 });
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });
});

describe('canonport fleet --cluster with TLS and an etcd user', () => {
  let secure: EtcdCluster | undefined;
  afterAll(async () => {
    await secure?.stop();
  });

  it('reads the view over TLS with a client certificate and a user whose role reads the prefix', async () => {
    secure = await startEtcd({ tls: true, auth: true });
    await addNodeUser(secure, { user: 'web-9', password: 'pw-9', prefix: PREFIX, node: 'web-9' });
    const tls = { caFile: secure.tls!.ca, certFile: secure.tls!.clientCert, keyFile: secure.tls!.clientKey };
    const digest = Registry.empty().digest;
    // Published with src/cluster directly: a node and one listener.
    const publisher = new Cluster({ endpoints: secure.url, node: 'web-9', prefix: PREFIX, advertise: ['10.0.0.9'], tls, auth: { username: 'web-9', password: 'pw-9' }, registryDigest: digest });
    try {
      publisher.start();
      publisher.publish({ host: 'web-9', collectedAtMs: Date.now(), listeners: [{ port: 12082, address: '0.0.0.0', family: 'tcp', services: ['api'], version: '1.4.2', versionSource: 'http', scheme: 'base32' }] });
      await publisher.whenPublished();
      const passwordFile = join(dir, 'password');
      await writeFile(passwordFile, 'pw-9\n');
      const env = {
        CANONPORT_CLUSTER: secure.url,
        CANONPORT_CLUSTER_PREFIX: PREFIX,
        CANONPORT_CLUSTER_CA: secure.tls!.ca,
        CANONPORT_CLUSTER_CERT: secure.tls!.clientCert,
        CANONPORT_CLUSTER_KEY: secure.tls!.clientKey,
        CANONPORT_CLUSTER_USER: 'web-9',
        CANONPORT_CLUSTER_PASSWORD_FILE: passwordFile,
      };
      const r = await runCli(['fleet', '--expect', 'api=1.4.2'], env);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^api\s+1\.4\.2\s+12082\s+1\/1\s+web-9$/m);
      // The same through flags.
      const flags = await runCli(['fleet', '--json', '--cluster', secure.url, '--cluster-prefix', PREFIX, '--cluster-ca', tls.caFile, '--cluster-cert', tls.certFile, '--cluster-key', tls.keyFile, '--cluster-user', 'web-9', '--cluster-password-file', passwordFile]);
      expect(flags.code).toBe(0);
      expect((JSON.parse(flags.stdout) as { hosts: FleetHost[] }).hosts).toMatchObject([{ host: 'web-9', inventory: { registryDigest: digest, listeners: [{ address: '10.0.0.9' }] } }]);
      // A wrong password: etcd's reason, not a hang.
      await writeFile(passwordFile, 'wrong\n');
      const denied = await runCli(['fleet', '--timeout', '2000'], env);
      expect(denied.code).toBe(1);
      expect(denied.stdout).toBe('');
      expect(denied.stderr).toContain('[CP_CLUSTER_UNREACHABLE]');
      expect(denied.stderr).toContain('etcd refused the user name or password (--cluster-user, --cluster-password-file)');
    } finally {
      await publisher.stop();
    }
  }, 60_000);
});
