import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, type ClusterOptions } from '../src/cluster/cluster.js';
import type { InventoryListener, InventorySnapshot } from '../src/inventory/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { capturingLogger, count, startProxy, until } from './helpers/cluster.js';
import { startDaemon } from './helpers/daemon.js';
import { addNodeUser, startEtcd, type EtcdCluster } from './helpers/etcd.js';
import { etcdWriter } from './helpers/etcd-writer.js';
import { freePort } from './helpers/ports.js';

/**
 * Cluster mode against a real etcd (Debian's etcd-server): the publisher,
 * the view and their faults. Several "nodes" run in this process, each a
 * Cluster with its own client; the inventory is given as snapshots here
 * (cluster-netns.test.ts reads real ones from network namespaces).
 */

const PREFIX = '/cp';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

async function etcdFor(opts: Parameters<typeof startEtcd>[0] = {}): Promise<EtcdCluster> {
  const etcd = await startEtcd(opts);
  cleanups.push(() => etcd.stop());
  return etcd;
}

interface Node {
  cluster: Cluster;
  metrics: Metrics;
  log: ReturnType<typeof capturingLogger>;
}

function node(etcd: EtcdCluster | string, name: string, extra: Partial<ClusterOptions> = {}): Node {
  const metrics = new Metrics({ defaultMetrics: false });
  const log = capturingLogger();
  const endpoints = typeof etcd === 'string' ? etcd : etcd.url;
  // The v1 mirror is off here (its own test below): these tests read the v2 layout alone.
  const cluster = new Cluster({ endpoints, node: name, prefix: PREFIX, advertise: [`10.0.0.${name.charCodeAt(0) - 96}`], leaseTtlSeconds: 10, writeV1: false, ...extra }, { metrics, logger: log.logger });
  cleanups.push(() => cluster.stop());
  return { cluster, metrics, log };
}

const listener = (port: number, address = '0.0.0.0', services = ['svc']): InventoryListener => ({ port, address, family: address.includes(':') ? 'tcp6' : 'tcp', services, version: '', versionSource: '', scheme: 'base32' });
const snap = (...listeners: InventoryListener[]): InventorySnapshot => ({ host: 'h', collectedAtMs: Date.now(), listeners });
const nodesOn = (n: Node, port: number) => n.cluster.view.endpointsOnPort(port).map((e) => e.node);

async function keysIn(etcd: EtcdCluster): Promise<string[]> {
  return (await etcd.etcdctl(['get', '--prefix', '--keys-only', `${PREFIX}/`])).split('\n').filter(Boolean);
}

describe('publishing and viewing', () => {
  it('publishes claimed, reachable listeners under one lease; another node sees them, and a clean stop removes the node at once', async () => {
    const etcd = await etcdFor();
    const a = node(etcd, 'a');
    const b = node(etcd, 'b');
    a.cluster.start();
    b.cluster.start();
    a.cluster.publish(snap(listener(12082), listener(12082, '::'), listener(14688, '127.0.0.1'), listener(40000, '0.0.0.0', [])));
    b.cluster.publish(snap());
    await a.cluster.whenPublished();
    await b.cluster.whenPublished();

    expect(await keysIn(etcd)).toEqual(['/cp/v2/nodes/a/instances/12082/tcp/host', '/cp/v2/nodes/a/node', '/cp/v2/nodes/b/node']);
    // Lease IDs are int64: read them as strings, not as lossy JSON numbers.
    const json = (await etcd.etcdctl(['get', '--prefix', `${PREFIX}/v2/`, '-w', 'json'])).replace(/"lease":(\d+)/g, '"lease":"$1"');
    const kvs = JSON.parse(json) as { kvs: { key: string; lease?: string }[] };
    const leaseOf = (k: string) => kvs.kvs.find((kv) => Buffer.from(kv.key, 'base64').toString() === k)!.lease;
    expect(leaseOf('/cp/v2/nodes/a/node')).toMatch(/^[1-9]\d*$/);
    expect(BigInt(leaseOf('/cp/v2/nodes/a/node')!).toString(10)).toBe(a.cluster.publisherStatus().leaseId);
    expect(leaseOf('/cp/v2/nodes/a/instances/12082/tcp/host')).toBe(leaseOf('/cp/v2/nodes/a/node'));
    expect(leaseOf('/cp/v2/nodes/b/node')).not.toBe(leaseOf('/cp/v2/nodes/a/node'));

    const seen = await until('b to see a on 12082', () => (nodesOn(b, 12082).includes('a') ? b.cluster.view.endpointsOnPort(12082) : undefined));
    expect(seen).toEqual([
      // A snapshot that says nothing of names: its claim is its names, the registry's (issue 22).
      { node: 'a', addresses: ['10.0.0.1'], port: 12082, protocol: 'tcp', namespace: 'host', services: ['svc'], scheme: 'base32', version: '', versionSource: '', since: expect.any(String), readiness: { state: 'ready', since: expect.any(String), by: 'tcp' }, names: [{ name: 'svc', source: 'registry' }] },
    ]);
    expect(b.cluster.view.nodes().map((n) => n.name)).toEqual(['a', 'b']);

    // Withdrawn: the listener closed on a.
    a.cluster.publish(snap(listener(14688, '127.0.0.1')));
    await until('a\'s 12082 to leave b\'s view', () => (nodesOn(b, 12082).length === 0 ? true : undefined));
    expect(await keysIn(etcd)).toEqual(['/cp/v2/nodes/a/node', '/cp/v2/nodes/b/node']);

    // A clean stop revokes the lease: gone well before its 10 s TTL could expire.
    const t0 = Date.now();
    await a.cluster.stop();
    await until('a to leave b\'s view', () => (b.cluster.view.node('a') ? undefined : true), 5_000);
    expect(Date.now() - t0).toBeLessThan(5_000);
    expect(await keysIn(etcd)).toEqual(['/cp/v2/nodes/b/node']);
    expect(await count(a.metrics.clusterEtcdWrites, { kind: 'lease_revoke' })).toBe(1);
  });

  it('writes nothing at steady state: only keepalives reach etcd', async () => {
    const etcd = await etcdFor();
    const a = node(etcd, 'a', { leaseTtlSeconds: 3 });
    a.cluster.start();
    const listeners = [listener(12082), listener(14688, '10.0.0.1'), listener(15000, '::')];
    a.cluster.publish(snap(...listeners));
    await a.cluster.whenPublished();
    const revision = await etcd.revision();
    const puts = await etcd.metric('etcd_debugging_mvcc_put_total');
    const renewed = await etcd.metric('etcd_debugging_lease_renewed_total');
    const writes = await count(a.metrics.clusterEtcdWrites);
    // 20 scans (a 1 s scan interval squeezed into 5 s, each a new snapshot object) across more than one TTL.
    for (let i = 0; i < 20; i++) {
      a.cluster.publish(snap(...listeners.map((l) => ({ ...l }))));
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(await etcd.revision()).toBe(revision);
    expect(await etcd.metric('etcd_debugging_mvcc_put_total')).toBe(puts);
    expect(await count(a.metrics.clusterEtcdWrites)).toBe(writes);
    // Kept alive (TTL 3 s, keepalive every second), so the keys outlived their TTL.
    expect(await etcd.metric('etcd_debugging_lease_renewed_total')).toBeGreaterThanOrEqual(renewed + 3);
    expect(await keysIn(etcd)).toHaveLength(4);
  });
});

describe('malformed values, caps', () => {
  it('ignores, counts and logs foreign and malformed values; valid entries stay', async () => {
    const etcd = await etcdFor();
    const a = node(etcd, 'a');
    a.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    await etcd.etcdctl(['put', `${PREFIX}/v1/nodes/x`, '{not json']);
    await etcd.etcdctl(['put', `${PREFIX}/v1/elsewhere/x`, '{}']);
    await etcd.etcdctl(['put', `${PREFIX}/v1/listeners/x/12082`, JSON.stringify({ port: 99, services: ['svc'] })]);
    await etcd.etcdctl(['put', `${PREFIX}/v1/nodes/y`, JSON.stringify({ name: 'y', addresses: ['no'], canonportVersion: '', registryDigest: '', started: 'x' })]);
    await until('four ignored values', async () => ((await count(a.metrics.clusterIgnoredValues)) >= 4 ? true : undefined));
    expect(await count(a.metrics.clusterIgnoredValues, { reason: 'bad_json' })).toBe(1);
    expect(await count(a.metrics.clusterIgnoredValues, { reason: 'foreign_key' })).toBe(1);
    expect(await count(a.metrics.clusterIgnoredValues, { reason: 'invalid' })).toBe(2);
    expect(a.log.codes().filter((c) => c === 'CP_CLUSTER_VALUE_IGNORED')).toHaveLength(4);
    expect(a.cluster.view.nodes().map((n) => n.name)).toEqual(['a']);
    expect(nodesOn(a, 12082)).toEqual(['a']);

    // The same values met again in a full list (another node starting): ignored again, logged once per key.
    const c = node(etcd, 'c');
    c.cluster.start();
    await c.cluster.whenSynced();
    // The watch starts at the list's revision, whose own events the list already holds (the last
    // of them, node y's, is replayed by etcd): once it has delivered a later change, still four.
    a.cluster.publish(snap(listener(12082), listener(14688)));
    await until('c to see a on 14688', () => (nodesOn(c, 14688).includes('a') ? true : undefined));
    expect(await count(c.metrics.clusterIgnoredValues)).toBe(4);
    expect(c.cluster.view.nodes().map((n) => n.name)).toEqual(['a']);
  });

  it('refuses nodes beyond its cap and counts them (an instance of a refused node waits with it, not counted again)', async () => {
    const etcd = await etcdFor();
    const nodes = ['a', 'b', 'c'].map((n) => node(etcd, n));
    for (const n of nodes) {
      n.cluster.start();
      n.cluster.publish(snap(listener(12082)));
    }
    await Promise.all(nodes.map((n) => n.cluster.whenPublished()));
    const small = node(etcd, 'd', { caps: { maxNodes: 2, maxEndpoints: 1 } });
    small.cluster.start();
    await small.cluster.whenSynced();
    expect(small.cluster.view.nodes()).toHaveLength(2);
    expect(small.cluster.view.endpointTotal).toBe(1);
    expect(await count(small.metrics.clusterRefusedEntries, { kind: 'node' })).toBe(1);
    expect(await count(small.metrics.clusterRefusedEntries, { kind: 'endpoint' })).toBe(1);
    expect(small.log.codes()).toContain('CP_CLUSTER_CAP_REACHED');
  });
});

describe('faults', () => {
  it('starts while etcd is down, serves an empty view, and syncs and publishes once etcd is up', async () => {
    const etcd = await etcdFor();
    await etcd.killAll();
    const a = node(etcd, 'a', { leaseTtlSeconds: 2 });
    a.cluster.start(); // returns at once: nothing waits for etcd
    a.cluster.publish(snap(listener(12082)));
    expect(a.cluster.view.status().state).toBe('missing');
    expect(a.cluster.view.endpointsOnPort(12082)).toEqual([]);
    await until('a failed attempt', async () => ((await count(a.metrics.clusterEtcdErrors)) >= 2 ? true : undefined));
    expect(a.cluster.publisherStatus().leaseId).toBeUndefined();
    expect(a.log.codes()).toContain('CP_CLUSTER_UNREACHABLE');
    await etcd.restartAll();
    await a.cluster.whenPublished();
    await until('a to see itself', () => (nodesOn(a, 12082).includes('a') ? true : undefined));
    expect(a.cluster.view.status().state).toBe('synced');
  });

  it('keeps serving the last view while etcd is down, keeps its lease across a short outage and re-publishes under a new one after a long one', async () => {
    const etcd = await etcdFor();
    const a = node(etcd, 'a', { leaseTtlSeconds: 2 });
    a.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    await until('a to see itself', () => (nodesOn(a, 12082).length ? true : undefined));
    const firstLease = a.cluster.publisherStatus().leaseId;

    // Short: well within the TTL; etcd restores its leases with a fresh TTL on restart.
    await etcd.killAll();
    await until('the view to go stale', () => (a.cluster.view.status().state === 'stale' ? true : undefined));
    expect(nodesOn(a, 12082)).toEqual(['a']); // the last view keeps serving
    await etcd.restartAll();
    await until('the view to be synced again', () => (a.cluster.view.status().state === 'synced' ? true : undefined));
    expect(a.cluster.publisherStatus().leaseId).toBe(firstLease);

    // Long: more than twice the TTL, so the lease is given up; a listener appears meanwhile.
    await etcd.killAll();
    a.cluster.publish(snap(listener(12082), listener(15000)));
    await until('the lease to be lost', () => (a.log.codes().includes('CP_CLUSTER_LEASE_LOST') ? true : undefined), 15_000);
    expect(nodesOn(a, 12082)).toEqual(['a']);
    await etcd.restartAll();
    await until('15000 published and seen', () => (nodesOn(a, 15000).includes('a') ? true : undefined), 15_000);
    await a.cluster.whenPublished();
    const secondLease = a.cluster.publisherStatus().leaseId;
    expect(secondLease).not.toBe(firstLease);
    expect(await count(a.metrics.clusterLeaseGrants, { reason: 'lost' })).toBeGreaterThanOrEqual(1);
    // Every key now hangs on the new lease: the old one expires without taking anything along.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(await keysIn(etcd)).toEqual(['/cp/v2/nodes/a/instances/12082/tcp/host', '/cp/v2/nodes/a/instances/15000/tcp/host', '/cp/v2/nodes/a/node']);
    expect(nodesOn(a, 12082)).toEqual(['a']);
  });

  it('drops a view stale longer than the maximum staleness, and lists again when etcd is back', async () => {
    const etcd = await etcdFor();
    const a = node(etcd, 'a', { maxStalenessMs: 1_000 });
    a.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    await until('a to see itself', () => (nodesOn(a, 12082).length ? true : undefined));
    await etcd.killAll();
    await until('the view to be dropped', () => (a.cluster.view.status().state === 'missing' ? true : undefined), 10_000);
    expect(a.cluster.view.nodes()).toEqual([]);
    expect(a.log.codes()).toContain('CP_CLUSTER_VIEW_DROPPED');
    await etcd.restartAll();
    await until('the view to be listed again', () => (nodesOn(a, 12082).includes('a') ? true : undefined), 15_000);
    expect(await count(a.metrics.clusterViewLists, { reason: 'dropped' })).toBe(1);
  });

  it('rides out the loss of one member of three: the lease holds and changes keep flowing', async () => {
    const etcd = await etcdFor({ members: 3 });
    const a = node(etcd, 'a', { leaseTtlSeconds: 3 });
    const b = node(etcd, 'b', { leaseTtlSeconds: 3 });
    for (const n of [a, b]) n.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    b.cluster.publish(snap());
    await until('b to see a', () => (nodesOn(b, 12082).includes('a') ? true : undefined));
    const lease = a.cluster.publisherStatus().leaseId;
    let aMissing = 0;
    b.cluster.view.onChange(() => {
      if (!b.cluster.view.node('a')) aMissing++;
    });
    for (const victim of [0, 1]) {
      await etcd.kill(victim);
      const port = 15000 + victim;
      a.cluster.publish(snap(listener(12082), listener(port)));
      await until(`b to see a on ${port} with member ${victim} down`, () => (nodesOn(b, port).includes('a') ? true : undefined));
      await etcd.restart(victim);
    }
    expect(aMissing).toBe(0);
    expect(a.cluster.publisherStatus().leaseId).toBe(lease);
    expect(await count(b.metrics.clusterViewLists)).toBe(1); // the start: never a relist
  });

  // 'at': compacted at exactly the revision the watch resumes from, which etcd accepts but whose deletions it has dropped.
  it.each(['at', 'past'])('lists again when the watch would resume %s a compaction, and ends up exactly like etcd', async (where) => {
    const etcd = await etcdFor();
    const proxy = await startProxy(etcd.members[0]!.clientPort, await freePort());
    cleanups.push(() => proxy.close());
    const a = node(etcd, 'a');
    const b = node(`etcd://127.0.0.1:${proxy.port}`, 'b');
    a.cluster.start();
    b.cluster.start();
    a.cluster.publish(snap(listener(12082), listener(14688)));
    b.cluster.publish(snap());
    await until('b to see a', () => (nodesOn(b, 14688).includes('a') ? true : undefined));
    // b's own write must land before the cut: left in flight, it lands after the restore, moving etcd's
    // revision past the compaction this test places (and past b's relist, for the moment its watch takes).
    await b.cluster.whenPublished();

    proxy.cut();
    await until('b\'s view to go stale', () => (b.cluster.view.status().state === 'stale' ? true : undefined));
    a.cluster.publish(snap(listener(12082), listener(15000)));
    await a.cluster.whenPublished();
    if (where === 'past') await etcd.etcdctl(['put', '/elsewhere', 'x']);
    await etcd.etcdctl(['compact', String(await etcd.revision())]);
    proxy.restore();

    await until('b to list again', async () => ((await count(b.metrics.clusterViewLists, { reason: 'compacted' })) >= 1 ? true : undefined), 20_000);
    await until('b synced', () => (b.cluster.view.status().state === 'synced' ? true : undefined));
    expect(nodesOn(b, 15000)).toEqual(['a']);
    expect(nodesOn(b, 14688)).toEqual([]);
    expect(nodesOn(b, 12082)).toEqual(['a']);
    expect(b.log.codes()).toContain('CP_CLUSTER_WATCH_RESTARTED');
    expect(b.cluster.view.status().revision).toBeGreaterThanOrEqual(await etcd.revision());
  });

  it('issue 21, finding 3: values written while its link was cut make the resumed watch a batch larger than a message; the view is listed in pages instead, for good', async () => {
    const etcd = await etcdFor();
    const proxy = await startProxy(etcd.members[0]!.clientPort, await freePort());
    cleanups.push(() => proxy.close());
    const a = node(etcd, 'a');
    const b = node(`etcd://127.0.0.1:${proxy.port}`, 'b', { publish: false });
    a.cluster.start();
    b.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await until('b to see a', () => (nodesOn(b, 12082).includes('a') ? true : undefined));
    proxy.cut();
    await until('b\'s view to go stale', () => (b.cluster.view.status().state === 'stale' ? true : undefined));
    // 70 values of 1 MB under one node's own prefix (etcd's default request limit is 1.5 MiB): 70 MB, more than
    // the 64 MiB a message may carry. A watch resuming before them is sent them in one batch.
    const evil = etcdWriter(etcd.url);
    cleanups.push(async () => evil.close());
    const big = Buffer.alloc(1_000_000, 'x');
    await evil.putAll(Array.from({ length: 70 }, (_, i) => [`${PREFIX}/v2/nodes/evil/instances/${20000 + i}/tcp/host`, big] as [string, Buffer]), { concurrency: 4 });
    a.cluster.publish(snap(listener(12082), listener(15000)));
    await a.cluster.whenPublished();
    proxy.restore();

    await until('b to list again', async () => ((await count(b.metrics.clusterViewLists, { reason: 'too_large' })) >= 1 ? true : undefined), 30_000);
    await until('b synced', () => (b.cluster.view.status().state === 'synced' ? true : undefined), 30_000);
    expect(nodesOn(b, 15000)).toEqual(['a']);
    expect(await count(b.metrics.clusterIgnoredValues, { reason: 'too_large' })).toBeGreaterThanOrEqual(70);
    // It stays synced: the watch resumes from the list's revision, with no batch to catch up.
    await new Promise((r) => setTimeout(r, 2_000));
    expect(b.cluster.view.status().state).toBe('synced');
    expect(b.cluster.syncError()).toBeUndefined();
  }, 90_000);
});

describe('TLS and a role limited to the node', () => {
  it('publishes and watches over TLS with a node user; writes under another node\'s name are refused by etcd and logged', async () => {
    const etcd = await etcdFor({ tls: true, auth: true });
    await addNodeUser(etcd, { user: 'node-a', password: 'pw-a', prefix: PREFIX, node: 'a' });
    const tls = { caFile: etcd.tls!.ca, certFile: etcd.tls!.clientCert, keyFile: etcd.tls!.clientKey };
    const a = node(etcd, 'a', { tls, auth: { username: 'node-a', password: 'pw-a' } });
    a.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    await until('a to see itself', () => (nodesOn(a, 12082).includes('a') ? true : undefined));

    // Node b with a's credentials: the role lets it read the view, not write b's keys.
    const b = node(etcd, 'b', { tls, auth: { username: 'node-a', password: 'pw-a' } });
    b.cluster.start();
    b.cluster.publish(snap(listener(14688)));
    await until('b\'s refusal to be logged', () => (b.log.codes().includes('CP_CLUSTER_PUBLISH_FAILED') ? true : undefined));
    await b.cluster.whenSynced();
    expect(nodesOn(b, 12082)).toEqual(['a']);
    expect(await keysIn(etcd)).toEqual(['/cp/v2/nodes/a/instances/12082/tcp/host', '/cp/v2/nodes/a/node']);

    // Without the client certificate, etcd (--client-cert-auth) refuses the connection: retried, never a crash.
    const c = node(etcd, 'c', { tls: { caFile: etcd.tls!.ca }, auth: { username: 'node-a', password: 'pw-a' } });
    c.cluster.start();
    await until('c to fail', async () => ((await count(c.metrics.clusterEtcdErrors)) >= 1 ? true : undefined));
    expect(c.cluster.view.status().state).toBe('missing');
  });

  it('issue 21, finding 3: a daemon that cannot list the prefix (here: a role without read on it) is not ready, and /readyz says why', async () => {
    const etcd = await etcdFor({ auth: true });
    // Writes to its own keys only: every list of the prefix is refused, as a list too large for a message was before pages.
    await etcd.etcdctl(['role', 'add', 'canonport-blind']);
    await etcd.etcdctl(['role', 'grant-permission', 'canonport-blind', '--prefix=true', 'readwrite', `${PREFIX}/v2/nodes/blind/`]);
    await etcd.etcdctl(['user', 'add', 'blind:pw-blind']);
    await etcd.etcdctl(['user', 'grant-role', 'blind', 'canonport-blind']);
    const dir = mkdtempSync(join(tmpdir(), 'cp-blind-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'password'), 'pw-blind\n');
    const d = await startDaemon({ cluster: etcd.url, node: 'blind', advertise: ['10.0.0.9'], clusterPrefix: PREFIX, clusterUser: 'blind', clusterPasswordFile: join(dir, 'password') });
    cleanups.push(() => d.close(0));
    const url = `http://127.0.0.1:${d.addresses.http.port}/readyz`;
    const body = await until('/readyz to say why', async () => {
      const r = await fetch(url);
      const b = (await r.json()) as { ready: boolean; reason?: string; cluster?: { view?: string; error?: string } };
      return r.status === 503 && b.cluster?.error ? b : undefined;
    }, 20_000);
    expect(body).toMatchObject({ ready: false, cluster: { view: 'missing' } });
    expect(body.reason).toMatch(/^cluster view missing: the cluster prefix cannot be read from etcd \(etcd refused: .*no permission/);
    expect(body.cluster?.error).toMatch(/no permission/);
  }, 60_000);
});
