import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, type ClusterOptions } from '../src/cluster/cluster.js';
import { chooseStateDir, StateDir } from '../src/cluster/state-dir.js';
import { startDaemon } from './helpers/daemon.js';
import type { InventoryListener, InventorySnapshot, ListenerReadiness } from '../src/inventory/types.js';
import { isCanonportError } from '../src/errors.js';
import { Metrics } from '../src/metrics/metrics.js';
import { capturingLogger, count, until } from './helpers/cluster.js';
import { startEtcd, type EtcdCluster } from './helpers/etcd.js';
import { freePort } from './helpers/ports.js';

/**
 * Issue 20 and issue 21 finding 5 against a real etcd: a restart that keeps
 * the host's records, a node name another live daemon holds, the v1 mirror,
 * drains acknowledged by every daemon, and the snapshot a start without
 * etcd serves. Several "nodes" run in this process, each a Cluster with its
 * own client and state directory; one etcd serves the whole file.
 */

const PREFIX = '/cp';
let etcd: EtcdCluster;
const dirs: string[] = [];
const cleanups: (() => Promise<unknown>)[] = [];
beforeAll(async () => {
  etcd = await startEtcd({});
}, 60_000);
afterAll(async () => {
  await etcd?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
  await etcd.etcdctl(['del', '--prefix', `${PREFIX}/`]);
});

function stateDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cp-state-'));
  dirs.push(d);
  return d;
}

interface Node {
  cluster: Cluster;
  metrics: Metrics;
  log: ReturnType<typeof capturingLogger>;
}

function node(name: string, extra: Partial<ClusterOptions> = {}, endpoints = etcd.url): Node {
  const metrics = new Metrics({ defaultMetrics: false });
  const log = capturingLogger();
  const cluster = new Cluster({ endpoints, node: name, prefix: PREFIX, advertise: [`10.0.0.${name.charCodeAt(0) - 96}`], leaseTtlSeconds: 6, ...extra }, { metrics, logger: log.logger });
  cleanups.push(() => cluster.stop());
  return { cluster, metrics, log };
}

const ready: ListenerReadiness = { state: 'ready', by: 'http', sinceMs: Date.parse('2026-01-01T00:00:00Z') };
const listener = (port: number, readiness?: ListenerReadiness): InventoryListener => ({ port, address: '0.0.0.0', family: 'tcp', services: ['svc'], version: '', versionSource: '', scheme: 'base32', readiness });
const snap = (...listeners: InventoryListener[]): InventorySnapshot => ({ host: 'h', collectedAtMs: Date.now(), listeners });
const states = (n: Node, port: number) => n.cluster.view.endpointsOnPort(port).map((e) => `${e.node}:${e.readiness.state}`);

async function keys(): Promise<string[]> {
  return (await etcd.etcdctl(['get', '--prefix', '--keys-only', `${PREFIX}/`])).split('\n').filter(Boolean);
}

describe('restarts keep the host\'s records', () => {
  it('a daemon stopped without revoking (SIGTERM, or SIGKILL) takes its lease back: another host never sees it go', async () => {
    const dir = stateDir();
    const a = node('a', { stateDir: dir, requireVerdict: true });
    const b = node('b');
    a.cluster.start();
    b.cluster.start();
    a.cluster.publish(snap(listener(12082, ready)));
    b.cluster.publish(snap());
    await a.cluster.whenPublished();
    await until('b to see a', () => (states(b, 12082).includes('a:ready') ? true : undefined));
    const lease = a.cluster.publisherStatus().leaseId!;
    expect(JSON.parse(readFileSync(join(dir, 'node.json'), 'utf8'))).toMatchObject({ node: 'a', prefix: PREFIX, leaseId: lease });

    // Watch b's view from here on: a's instance must never leave it.
    let absent = 0;
    const off = b.cluster.view.onChange(() => {
      if (!states(b, 12082).includes('a:ready')) absent++;
    });
    await a.cluster.stop({ revoke: false });
    await new Promise((r) => setTimeout(r, 1_500));

    // The restarted daemon: its first snapshot has no verdict yet; what the previous run published stands.
    const a2 = node('a', { stateDir: dir, requireVerdict: true });
    a2.cluster.start();
    a2.cluster.publish(snap(listener(12082)));
    await until('a2 to hold the lease', () => a2.cluster.publisherStatus().leaseId);
    expect(a2.cluster.publisherStatus()).toMatchObject({ leaseId: lease, leaseOrigin: 'adopted' });
    await a2.cluster.whenPublished();
    expect(await keys()).toContain(`${PREFIX}/v2/nodes/a/instances/12082/tcp/host`);
    // Its first verdict comes: written under the same lease.
    a2.cluster.publish(snap(listener(12082, { ...ready, sinceMs: Date.parse('2026-01-01T00:01:00Z') })));
    await a2.cluster.whenPublished();
    // Past the old process's lease TTL: still there, because the lease was taken back and kept alive.
    await new Promise((r) => setTimeout(r, 7_000));
    expect(states(b, 12082)).toEqual(['a:ready']);
    off();
    expect(absent).toBe(0);
    expect(await count(a2.metrics.clusterLeaseGrants, { reason: 'adopted' })).toBe(1);
  }, 40_000);

  it('a clean leave revokes at once and forgets the lease, so the next start grants a new one', async () => {
    const dir = stateDir();
    const a = node('a', { stateDir: dir });
    const b = node('b');
    a.cluster.start();
    b.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    await until('b to see a', () => (states(b, 12082).length ? true : undefined));
    const t0 = Date.now();
    await a.cluster.leave();
    await until('a to leave b\'s view', () => (b.cluster.view.node('a') ? undefined : true), 3_000);
    expect(Date.now() - t0).toBeLessThan(3_000);
    expect(existsSync(join(dir, 'node.json'))).toBe(false);
  });
});

describe('a node\'s identity is its own (issue 21 finding 5)', () => {
  /** a publishes 12082 and b sees it; then a second daemon named a takes the name with --node-takeover and publishes 15000. */
  async function takeOver(): Promise<{ a: Node; b: Node; taker: Node }> {
    const a = node('a', { stateDir: stateDir() });
    const b = node('b');
    a.cluster.start();
    b.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    await until('b to see a on 12082', () => (states(b, 12082).length ? true : undefined));

    const taker = node('a', { stateDir: stateDir(), advertise: ['10.6.6.6'], nodeTakeover: true });
    taker.cluster.start();
    taker.cluster.publish(snap(listener(15000)));
    await taker.cluster.whenPublished();
    return { a, b, taker };
  }

  it('refuses a name another live daemon holds, logs it, deletes nothing; takes it when the other\'s lease ends', async () => {
    const a = node('a', { stateDir: stateDir() });
    a.cluster.start();
    a.cluster.publish(snap(listener(12082)));
    await a.cluster.whenPublished();
    const before = await keys();

    const impostor = node('a', { stateDir: stateDir(), advertise: ['10.6.6.6'] });
    impostor.cluster.start();
    impostor.cluster.publish(snap(listener(15000)));
    await until('the refusal', () => (impostor.log.codes().includes('CP_CLUSTER_NODE_TAKEN') ? true : undefined));
    expect(impostor.cluster.publisherStatus()).toMatchObject({ leaseId: undefined, conflict: { holderLease: a.cluster.publisherStatus().leaseId } });
    expect(await count(impostor.metrics.clusterNodeConflicts, { side: 'refused' })).toBe(1);
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await keys()).toEqual(before);
    expect(impostor.cluster.view.node('a')?.addresses).toEqual(['10.0.0.1']);

    // The real one stops for good: the name is free, and the waiting daemon takes it.
    await a.cluster.leave();
    await impostor.cluster.whenPublished();
    expect(impostor.cluster.view.node('a')?.addresses ?? (await until('the new record', () => impostor.cluster.view.node('a')))).toBeTruthy();
    await until('the new owner\'s record', () => (impostor.cluster.view.node('a')?.addresses[0] === '10.6.6.6' ? true : undefined));
  }, 30_000);

  it('with --node-takeover, takes the name, never deletes the other\'s keys, and both sides log it; readers follow the new record only', async () => {
    const { a, b } = await takeOver();
    await until('b to follow the new record', () => (b.cluster.view.node('a')?.addresses[0] === '10.6.6.6' ? true : undefined));
    // a's instance on 12082 is under a's lease, not the record's: readers ignore it. Its key is still there.
    await until('a\'s old instance to leave b\'s answers', () => (states(b, 12082).length === 0 ? true : undefined));
    expect(await keys()).toContain(`${PREFIX}/v2/nodes/a/instances/12082/tcp/host`);
    expect(states(b, 15000)).toEqual(['a:ready']);
    await until('the original to notice', () => (a.log.codes().includes('CP_CLUSTER_NODE_TAKEN') ? true : undefined));
    expect(await count(a.metrics.clusterNodeConflicts, { side: 'taken' })).toBe(1);
  }, 30_000);

  it('after a takeover, the daemon that was taken over publishes its record again once the taker stops: readers get the real host back, not nothing', async () => {
    const { a, b, taker } = await takeOver();
    await until('the original to notice', () => (a.log.codes().includes('CP_CLUSTER_NODE_TAKEN') ? true : undefined));
    // The taker leaves (its lease revoked, its record with it): without the rewrite, node a stays missing for good.
    await taker.cluster.leave();
    await until('b to see the real a again', () => (b.cluster.view.node('a')?.addresses[0] === '10.0.0.1' && states(b, 12082).length === 1 ? true : undefined), 15_000);
    expect(states(b, 15000)).toEqual([]);
    expect(await keys()).toContain(`${PREFIX}/v2/nodes/a/node`);
  }, 30_000);
});

describe('layouts during an upgrade', () => {
  it('mirrors only ready instances into v1, so an older daemon hands out no warming or draining instance', async () => {
    const a = node('a', { writeV1: true });
    a.cluster.start();
    a.cluster.publish(snap(listener(12082, ready), listener(15000, { state: 'not-ready', by: 'http', sinceMs: Date.now(), detail: 'HTTP 503 from /readyz' }), listener(16000, { state: 'draining', by: 'admin', sinceMs: Date.now() })));
    await a.cluster.whenPublished();
    const all = await keys();
    expect(all.filter((k) => k.startsWith(`${PREFIX}/v1/`))).toEqual([`${PREFIX}/v1/listeners/a/12082`, `${PREFIX}/v1/nodes/a`]);
    expect(all.filter((k) => k.includes('/instances/'))).toHaveLength(3);
    // A v2 reader reads v2 for this node (the mirror does not double it).
    await until('a to see itself', () => (states(a, 12082).length ? true : undefined));
    expect([...states(a, 12082), ...states(a, 15000), ...states(a, 16000)]).toEqual(['a:ready', 'a:not-ready', 'a:draining']);
  });
});

describe('drain, acknowledged by every daemon', () => {
  it('returns once every live daemon holds the drain; the drain record and the acks go afterwards; steady state writes nothing', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => node(n));
    for (const n of [a!, b!, c!]) {
      n.cluster.start();
      n.cluster.publish(snap(listener(12082, ready)));
    }
    await Promise.all([a!, b!, c!].map((n) => n.cluster.whenPublished()));
    await until('c to see all three', () => (states(c!, 12082).length === 3 ? true : undefined));
    // The inventory marks the instance draining first (synchronously), then the drain record joins it.
    a!.cluster.publish(snap(listener(12082, { state: 'draining', by: 'admin', sinceMs: Date.now() })));
    const r = await a!.cluster.drain('f00d', ['svc'], 10_000);
    expect(r.acked.sort()).toEqual(['a', 'b', 'c']);
    // Whoever acknowledged has the change: a is out of their answers' candidates.
    expect(states(c!, 12082)).toContain('a:draining');
    expect(states(b!, 12082)).toContain('a:draining');
    await until('the drain and its acks to be gone', async () => ((await keys()).some((k) => k.includes('/drains/') || k.includes('/acks/')) ? undefined : true));
    const rev = await etcd.revision();
    await new Promise((r2) => setTimeout(r2, 1_500));
    expect(await etcd.revision()).toBe(rev);
    expect(await count(a!.metrics.clusterDrains, { result: 'acked' })).toBe(1);
  }, 30_000);

  it('says which daemon did not acknowledge, bounded in time, with CP_DRAIN_TIMEOUT', async () => {
    const a = node('a');
    a.cluster.start();
    a.cluster.publish(snap(listener(12082, ready)));
    await a.cluster.whenPublished();
    // A v2 node record of a daemon that never acknowledges (frozen, or partitioned from etcd's watch).
    const lease = (await etcd.etcdctl(['lease', 'grant', '30'])).match(/lease ([0-9a-f]+) granted/)![1]!;
    await etcd.etcdctl(['put', `${PREFIX}/v2/nodes/z/node`, JSON.stringify({ name: 'z', addresses: ['10.0.0.26'], canonportVersion: 'x', registryDigest: '', started: new Date().toISOString() }), `--lease=${lease}`]);
    await until('a to see z', () => a.cluster.view.node('z'));
    const t0 = Date.now();
    const err = await a.cluster.drain('beef', ['svc'], 1_000).catch((e: unknown) => e);
    expect(isCanonportError(err, 'CP_DRAIN_TIMEOUT')).toBe(true);
    expect((err as Error).message).toMatch(/by z\b/);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });
});

/** Node a with the state directory `dir`, once its view holds node b's ready listener on 12082. */
async function seesB(dir: string): Promise<Node> {
  const a = node('a', { stateDir: dir });
  const b = node('b');
  a.cluster.start();
  b.cluster.start();
  b.cluster.publish(snap(listener(12082, ready)));
  a.cluster.publish(snap());
  await b.cluster.whenPublished();
  await until('a to see b', () => (states(a, 12082).length ? true : undefined));
  return a;
}

describe('cold start without etcd', () => {
  it('serves the last view from the state directory, marked stale, until etcd answers', async () => {
    const dir = stateDir();
    const a = await seesB(dir);
    await a.cluster.stop({ revoke: false }); // writes the snapshot
    expect(existsSync(join(dir, 'view.json'))).toBe(true);

    // etcd unreachable: a port nothing listens on.
    const nowhere = `etcd://127.0.0.1:${await freePort()}`;
    const cold = node('a', { stateDir: dir }, nowhere);
    cold.cluster.start();
    expect(cold.cluster.view.status()).toMatchObject({ state: 'stale', fromSnapshot: true });
    expect(states(cold, 12082)).toEqual(['b:ready']);
    // Without a snapshot: nothing.
    const blank = node('c', { stateDir: stateDir() }, nowhere);
    blank.cluster.start();
    expect(blank.cluster.view.status().state).toBe('missing');
  });
});

describe('the view snapshot while the daemon runs (issue 24)', () => {
  it('is rewritten after the view changes, in slices beside the answers, and is the view as it was listed and watched', async () => {
    const dir = stateDir();
    const a = await seesB(dir);
    // Not at stop: within SNAPSHOT_EVERY_MS of the change (and the slices' turns), at the revision a's view holds.
    const snapshot = await until(
      'the periodic snapshot at the view\'s revision',
      () => {
        const s = existsSync(join(dir, 'view.json')) ? new StateDir(dir).readSnapshot(PREFIX) : undefined;
        return s && s.revision === a.cluster.view.status().revision ? s : undefined;
      },
      30_000,
    );
    expect(snapshot.entries.map((e) => e.key)).toEqual(a.cluster.view.entries().map((e) => e.key));
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('the state directory', () => {
  it('is the first writable of the setting, $STATE_DIRECTORY, /var/lib/canonport, ~/.local/state/canonport; a daemon without one says so', async () => {
    const mine = stateDir();
    expect(chooseStateDir(join(mine, 'a'))).toEqual({ dir: join(mine, 'a'), tried: [] });
    expect(chooseStateDir(null, { STATE_DIRECTORY: `${join(mine, 'sd')}:/elsewhere` }).dir).toBe(join(mine, 'sd'));
    // Under a regular file nothing can be made: no directory, and why.
    const bad = chooseStateDir('/etc/hostname/canonport');
    expect(bad.dir).toBeNull();
    expect(bad.tried[0]).toMatch(/^\/etc\/hostname\/canonport: (ENOTDIR|EEXIST)/);
    const log = capturingLogger();
    const d = await startDaemon({ cluster: etcd.url, node: 'nostate', advertise: ['10.0.0.9'], clusterPrefix: PREFIX, stateDir: '/etc/hostname/canonport' }, { logger: log.logger });
    try {
      expect(log.codes()).toContain('CP_STATE_DIR_UNAVAILABLE');
      expect(d.cluster!.state).toBeUndefined();
    } finally {
      // At once, though its view was still being listed (a stop then used to wait for the watch's deadline).
      const t0 = Date.now();
      await d.close(0);
      expect(Date.now() - t0).toBeLessThan(10_000);
    }
  });
});
