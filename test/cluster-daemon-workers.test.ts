import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { until } from './helpers/cluster.js';
import { srvTargets, startBackend, startLab, startNode, untilDig, ZONE, type Lab } from './helpers/cluster-lab.js';
import type { Host } from './helpers/netns.js';

/**
 * `--workers 2` in cluster mode, end to end: the primary publishes the
 * host (one lease), every DNS worker answers from its own read-only view.
 */

const API = base32Port('api');
let lab: Lab;
let hostA: Host;
let hostB: Host;

beforeAll(async () => {
  lab = await startLab({ hosts: 2 });
  [hostA, hostB] = lab.hosts as [Host, Host];
}, 120_000);

afterAll(async () => {
  await lab?.stop();
});

describe('cluster mode with --workers 2', () => {
  it('every DNS worker answers from the view; the primary alone publishes; /metrics counts the view once', async () => {
    const [a, b] = await Promise.all([startNode(lab, hostA, 'host-a'), startNode(lab, hostB, 'host-b', ['--workers', '2'])]);
    const onA = await startBackend(hostA, 'grpc', API, 'host-a');
    await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (srvTargets(r).join() === `${API} host-a.node.${ZONE}.` ? true : undefined), 30_000);
    // The kernel spreads datagrams over the workers: ask often enough that both answer, and every answer lists host A.
    for (let i = 0; i < 20; i++) expect(srvTargets(await b.dig(['SRV', `api.${ZONE}`]))).toEqual([`${API} host-a.node.${ZONE}.`]);

    // Host B's primary publishes what listens on B.
    await startBackend(hostB, 'grpc', API, 'host-b');
    await untilDig(a, ['SRV', `api.${ZONE}`], (r) => (srvTargets(r).length === 2 ? true : undefined), 20_000);
    // One lease per host: the workers publish nothing.
    const leases = (await lab.etcd.etcdctl(['lease', 'list'])).split('\n').filter((l) => /^[0-9a-f]+$/.test(l.trim()));
    expect(leases).toHaveLength(2);
    // The names clients asked B's workers for reach its primary, which publishes them (issue 22): api, asked on B,
    // names both hosts' listeners in A's /sd/prometheus (cluster-backend.mjs gives them no name of its own).
    await until('api named by the queries B\'s workers answered', async () => {
      const groups = JSON.parse((await a.get('/sd/prometheus')).body) as { labels: Record<string, string> }[];
      const named = groups.filter((g) => g.labels.__meta_canonport_service === 'api' && g.labels.__meta_canonport_name_source === 'query');
      return named.length === 2 ? true : undefined;
    }, 20_000, 250);

    // A change reaches every worker's view: after host A's service stops, no answer lists it.
    await onA.stop();
    await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (srvTargets(r).join() === `${API} host-b.node.${ZONE}.` ? true : undefined), 20_000);
    for (let i = 0; i < 20; i++) expect(srvTargets(await b.dig(['SRV', `api.${ZONE}`]))).toEqual([`${API} host-b.node.${ZONE}.`]);

    // /readyz and /metrics (aggregated over the primary and its workers) say one view, synced, of two nodes.
    expect(JSON.parse((await b.get('/readyz')).body)).toMatchObject({ ready: true, cluster: { view: 'synced' } });
    await until('the aggregated view metrics', async () => ((await b.metric('canonport_cluster_view_nodes')) === 2 ? true : undefined), 10_000, 200).catch(async (err: Error) => {
      throw new Error(`${err.message}: canonport_cluster_view_nodes = ${await b.metric('canonport_cluster_view_nodes')}`);
    });
    expect(await b.metric('canonport_cluster_view_state', { state: 'synced' })).toBe(1);
    expect(await b.metric('canonport_cluster_view_state', { state: 'stale' })).toBe(0);
    // Above vitest's default 30 s: this test also waits for the asked names' write (one per 5 s at most, issue 22).
  }, 60_000);
});
