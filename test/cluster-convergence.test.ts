import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../src/cluster/cluster.js';
import { parseKey } from '../src/cluster/keys.js';
import type { InventorySnapshot } from '../src/inventory/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { count, startProxy, until } from './helpers/cluster.js';
import { startEtcd } from './helpers/etcd.js';
import { prng } from './helpers/fuzz.js';
import { freePort } from './helpers/ports.js';

/**
 * A view whose link to etcd breaks again and again, while other nodes keep
 * changing what they publish and etcd compacts its history, must end up
 * exactly like etcd: no lost endpoint, no stale one. The oracle is etcd's
 * own content read with etcdctl, not the view's code.
 *
 * Random: the seed is printed; CANONPORT_FUZZ_SEED=<seed> replays the same
 * sequence of publications, cuts and compactions.
 */

const PREFIX = '/cpc';
const PORTS = [12082, 14688, 15000, 16046, 17176];
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()!().catch(() => undefined);
});

const snapOf = (ports: number[]): InventorySnapshot => ({
  host: 'h',
  collectedAtMs: Date.now(),
  listeners: ports.map((port) => ({ port, address: '0.0.0.0', family: 'tcp' as const, services: ['svc'], version: '', versionSource: '' as const, scheme: 'base32' })),
});

describe('a view with a flaky link', () => {
  it('converges to exactly what etcd holds after random cuts, changes and compactions', async () => {
    const seed = Number(process.env.CANONPORT_FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`cluster convergence seed ${seed} (CANONPORT_FUZZ_SEED=${seed} to replay)`);
    const rnd = prng(seed);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;

    const etcd = await startEtcd();
    cleanups.push(() => etcd.stop());
    const proxy = await startProxy(etcd.members[0]!.clientPort, await freePort());
    cleanups.push(() => proxy.close());
    const start = (name: string, endpoints: string, metrics = new Metrics({ defaultMetrics: false })) => {
      const c = new Cluster({ endpoints, node: name, prefix: PREFIX, advertise: ['10.0.0.1'], writeV1: false }, { metrics });
      cleanups.push(() => c.stop());
      c.start();
      return c;
    };
    const publishers = ['a', 'c', 'd'].map((n) => start(n, etcd.url));
    const viewerMetrics = new Metrics({ defaultMetrics: false });
    const viewer = start('b', `etcd://127.0.0.1:${proxy.port}`, viewerMetrics);
    for (const p of publishers) p.publish(snapOf([]));
    await until('the viewer to sync', () => (viewer.view.nodes().length === 3 ? true : undefined));

    // The oracle: etcd's keys, read directly.
    const etcdHolds = async () => {
      const keys = (await etcd.etcdctl(['get', '--prefix', '--keys-only', `${PREFIX}/`])).split('\n').filter(Boolean);
      const parsed = keys.map((k) => parseKey(PREFIX, k));
      return {
        nodes: parsed.flatMap((k) => (k.kind === 'node' ? [k.node] : [])).sort(),
        endpoints: parsed.flatMap((k) => (k.kind === 'instance' ? [`${k.node}:${k.port}`] : [])).sort(),
      };
    };
    const seen = () => ({
      nodes: viewer.view.nodes().map((n) => n.name),
      endpoints: PORTS.flatMap((port) => viewer.view.endpointsOnPort(port).map((e) => `${e.node}:${port}`)).sort(),
    });

    let cuts = 0;
    let compactions = 0;
    let compactedTo = 0;
    let want = await etcdHolds();
    for (let round = 0; round < 20; round++) {
      const cut = rnd() < 0.5;
      if (cut) {
        proxy.cut();
        cuts++;
        // Let the viewer notice before anything changes, so it has something to miss.
        await until('the viewer to notice the cut', () => (viewer.view.status().state === 'stale' ? true : undefined), 10_000);
      }
      for (let k = 1 + Math.floor(rnd() * 3); k > 0; k--) {
        const p = pick(publishers);
        p.publish(snapOf(PORTS.filter(() => rnd() < 0.5)));
        await p.whenPublished();
      }
      if (rnd() < 0.25) {
        // A round whose publishes changed nothing leaves the revision where the last compaction left it, and
        // etcd refuses to compact a revision twice ("required revision has been compacted"): seed 499341414.
        const revision = await etcd.revision();
        if (revision > compactedTo) {
          await etcd.etcdctl(['compact', String(revision)]);
          compactedTo = revision;
          compactions++;
        }
      }
      if (cut) {
        await new Promise((r) => setTimeout(r, rnd() * 300));
        proxy.restore();
      }
      // Checked after every round: a later change must not be what hides a lost one.
      want = await etcdHolds();
      await until(`the viewer to match etcd after round ${round}`, () => (JSON.stringify(seen()) === JSON.stringify(want) ? true : undefined), 20_000).catch((err) => {
        throw new Error(`${(err as Error).message} (seed ${seed}): want ${JSON.stringify(want)}, view ${JSON.stringify(seen())}`);
      });
    }
    // The content can match before the state does: after a last cut that hid no change, the view is right
    // but still marked stale until the watch is back (backoff), so wait for that, bounded.
    await until('the viewer to be synced again', () => (viewer.view.status().state === 'synced' ? true : undefined), 20_000);
    expect(viewer.view.endpointTotal).toBe(want.endpoints.length);
    console.log(`seed ${seed}: ${cuts} cuts, ${compactions} compactions, ${await count(viewerMetrics.clusterViewLists)} lists, ${await count(viewerMetrics.clusterEtcdErrors, { op: 'watch' })} watch breaks, ${want.endpoints.length} endpoints`);
  });
});
