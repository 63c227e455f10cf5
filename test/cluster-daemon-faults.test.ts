import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { until } from './helpers/cluster.js';
import { srvTargets, startBackend, startLab, startNode, untilDig, ZONE, type Backend, type Lab, type NodeDaemon } from './helpers/cluster-lab.js';
import type { Host } from './helpers/netns.js';

/**
 * Cluster mode end to end, the faults: real `canonport serve --cluster`
 * daemons in network namespaces against a three-member etcd on the bridge.
 * None of these may stop a DNS answer: the hot path reads memory only.
 *
 * Lease TTLs are short here (4 s) so the tests wait less; every time bound
 * is the lease TTL plus a wide margin (or the gRPC keepalive that notices a
 * silent partition), a correctness bound, never a speed target.
 */

const API = base32Port('api');
const PAY = base32Port('pay');
const TTL = 4;
let lab: Lab;
let hostA: Host;
let hostB: Host;
let hostC: Host;
let a: NodeDaemon;
let b: NodeDaemon;
let apiOnA: Backend;
const extra = new Set<{ stop(): Promise<void> }>();

beforeAll(async () => {
  lab = await startLab({ hosts: 3, etcd: { members: 3 } });
  [hostA, hostB, hostC] = lab.hosts as [Host, Host, Host];
  [a, b] = await Promise.all([startNode(lab, hostA, 'host-a', ['--lease-ttl', String(TTL)]), startNode(lab, hostB, 'host-b', ['--lease-ttl', String(TTL)])]);
  apiOnA = await startBackend(hostA, 'grpc', API, 'host-a');
  await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-a') ? true : undefined), 30_000);
}, 120_000);

afterAll(async () => {
  await lab?.stop();
});

const listsHost = (r: Awaited<ReturnType<NodeDaemon['dig']>>, node: string) => srvTargets(r).some((t) => t.endsWith(` ${node}.node.${ZONE}.`));

async function cleanup(): Promise<void> {
  await Promise.all([...extra].map((x) => x.stop()));
  extra.clear();
}

/** Asks `node` every 100 ms until `stop()`, recording every answer that does not list host A's api. */
function keepAsking(node: NodeDaemon) {
  let running = true;
  const bad: string[] = [];
  let asked = 0;
  const loop = (async () => {
    while (running) {
      const r = await node.dig(['SRV', `api.${ZONE}`]).catch((err: Error) => ({ status: `dig failed: ${err.message}`, raw: '' }) as Awaited<ReturnType<NodeDaemon['dig']>>);
      asked++;
      if (r.status !== 'NOERROR' || !('answer' in r) || !listsHost(r, 'host-a')) bad.push(`${r.status} ${r.raw}`);
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { asked, bad };
    },
  };
}

/** /readyz of a daemon asked from inside its host (works while the host is cut off). */
function readyzInside(d: NodeDaemon): string {
  return d.host.run(process.execPath, ['-e', `fetch('http://${d.http.host}:${d.http.port}/readyz').then((r) => r.text()).then((t) => process.stdout.write(t))`]);
}

/** Leases granted because the previous one was lost (the series is absent until the first). */
/**
 * Leases had again after one was lost: granted anew, or taken back when etcd
 * still (or again: a restarted etcd restores its leases) holds the old one.
 */
async function lostGrants(d: NodeDaemon): Promise<number> {
  const lost = (await d.metric('canonport_cluster_lease_grants_total', { reason: 'lost' })) || 0;
  return lost + ((await d.metric('canonport_cluster_lease_grants_total', { reason: 'adopted' })) || 0);
}

/** The member every live member names as leader. */
async function leaderIndex(): Promise<number> {
  await lab.etcd.waitForLeader();
  const out = await lab.etcd.etcdctl(['endpoint', 'status', '--write-out=json']);
  const status = JSON.parse(out.replace(/(_id|leader)":(\d+)/g, '$1":"$2"')) as { Endpoint: string; Status: { header: { member_id: string }; leader: string } }[];
  const leader = status.find((s) => s.Status.header.member_id === s.Status.leader)!;
  return lab.etcd.members.findIndex((m) => leader.Endpoint.endsWith(`:${m.clientPort}`));
}

describe('etcd faults', () => {
  it('one member of three SIGKILLed (the leader): answers never stop, and changes still reach every host', async () => {
    const asking = keepAsking(b);
    try {
      const leader = await leaderIndex();
      await lab.etcd.kill(leader, 'SIGKILL');
      // A change on host A after the kill still reaches host B through the two members left.
      const pay = await startBackend(hostA, 'grpc', PAY, 'host-a');
      extra.add(pay);
      await untilDig(b, ['SRV', `pay.${ZONE}`], (r) => (listsHost(r, 'host-a') ? true : undefined), 20_000);
      await pay.stop();
      await untilDig(b, ['SRV', `pay.${ZONE}`], (r) => (listsHost(r, 'host-a') ? undefined : true), 20_000);
      const { asked, bad } = await asking.stop();
      expect(asked).toBeGreaterThan(5);
      expect(bad).toEqual([]);
      expect(JSON.parse((await b.get('/readyz')).body)).toMatchObject({ ready: true, cluster: { view: 'synced' } });
      await lab.etcd.restart(leader);
    } finally {
      await asking.stop();
      await cleanup();
    }
  });

  it('all of etcd SIGKILLed: the last view keeps answering, marked stale; a daemon started meanwhile answers as one host, then joins; the views re-sync and a daemon whose lease lapsed publishes again', async () => {
    const grants = await lostGrants(a);
    await lab.etcd.killAll();
    const asking = keepAsking(b);
    let c: NodeDaemon | undefined;
    try {
      await until('B to mark its view stale', async () => ((await b.metric('canonport_cluster_view_state', { state: 'stale' })) === 1 ? true : undefined), 20_000, 200);
      expect(JSON.parse((await b.get('/readyz')).body)).toMatchObject({ ready: true, cluster: { view: 'stale' } });
      expect(await b.metric('canonport_cluster_view_staleness_seconds')).toBeGreaterThan(0);

      // A daemon that starts while etcd is unreachable, with no snapshot: it starts and answers as one host (no view yet),
      // but says it is not ready, and why, so an orchestrator does not route to a daemon that knows nothing of the cluster.
      c = await startNode(lab, hostC, 'host-c', ['--lease-ttl', String(TTL)]);
      extra.add(c);
      const readyz = await c.get('/readyz');
      expect(readyz.status).toBe(503);
      expect(JSON.parse(readyz.body)).toMatchObject({ ready: false, reason: expect.stringMatching(/cluster view missing.*no snapshot/), cluster: { view: 'missing' } });
      expect(await c.metric('canonport_cluster_view_state', { state: 'missing' })).toBe(1);
      expect(srvTargets(await c.dig(['SRV', `api.${ZONE}`]))).toEqual([`${API} api.${ZONE}.`]);
      // What changes on a host meanwhile is published once etcd is back.
      const onC = await startBackend(hostC, 'grpc', API, 'host-c');
      extra.add(onC);
      // Down long enough for host A to give its lease up (no keepalive answered for twice the TTL).
      await until('A to give its lease up', async () => (a.logs.some((l) => l.code === 'CP_CLUSTER_LEASE_LOST') ? true : undefined), 30_000, 200);

      await lab.etcd.restartAll();
      await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-c') ? true : undefined), 30_000);
      await untilDig(c, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-a') && listsHost(r, 'host-c') ? true : undefined), 30_000);
      for (const d of [b, c]) {
        await until(`${d.name}'s view synced`, async () => ((await d.metric('canonport_cluster_view_state', { state: 'synced' })) === 1 ? true : undefined), 20_000, 200);
        expect(JSON.parse((await d.get('/readyz')).body)).toMatchObject({ ready: true, cluster: { view: 'synced' } });
      }
      // Through the whole outage, B answered from its last view: host A's api every time.
      const { asked, bad } = await asking.stop();
      expect(asked).toBeGreaterThan(5);
      expect(bad).toEqual([]);
      expect(c.logs.some((l) => l.code === 'CP_CLUSTER_UNREACHABLE')).toBe(true);
      // Host A published again under a new lease, and its keys are etcd's (B lists its api after the old lease's TTL too).
      await until('A to publish under a new lease', async () => ((await lostGrants(a)) === grants + 1 ? true : undefined), 20_000, 200);
      await new Promise((r) => setTimeout(r, (TTL + 1) * 1000));
      expect(listsHost(await b.dig(['SRV', `api.${ZONE}`]), 'host-a')).toBe(true);
    } finally {
      await asking.stop();
      await cleanup();
    }
  });
});

describe('host faults', () => {
  it('a daemon SIGKILLed: its endpoints stay until its lease expires, then leave every answer', async () => {
    const d = await startNode(lab, hostC, 'host-c', ['--lease-ttl', String(TTL)]);
    extra.add(d);
    const onC = await startBackend(hostC, 'grpc', API, 'host-c');
    extra.add(onC);
    try {
      await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-c') ? true : undefined), 20_000);
      d.proc.kill('SIGKILL');
      await d.exited;
      const killedAt = Date.now();
      // Nothing revoked its lease: the service (still running on C) stays listed for now.
      expect(listsHost(await b.dig(['SRV', `api.${ZONE}`]), 'host-c')).toBe(true);
      await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-c') ? undefined : true), (TTL + 6) * 1000);
      const goneMs = Date.now() - killedAt;
      expect(goneMs).toBeLessThanOrEqual((TTL + 6) * 1000);
      expect(srvTargets(await b.dig(['SRV', `api.${ZONE}`]))).toEqual([`${API} host-a.node.${ZONE}.`]);
      expect((await b.dig(['A', `host-c.node.${ZONE}`])).status).toBe('NXDOMAIN');
      console.log(`host-c's daemon SIGKILLed: gone from host-b's answers after ${goneMs} ms (lease TTL ${TTL} s)`);
    } finally {
      await cleanup();
    }
  });

  it('a host cut off longer than its lease: others drop it; it answers from its last view, stale; reconnected, it publishes again under a new lease', async () => {
    const grants = await lostGrants(a);
    hostA.setLink(false);
    try {
      // Its lease expires at etcd: B drops host A.
      await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-a') ? undefined : true), (TTL + 6) * 1000);
      // Host A still answers from its last view (asked from inside, the only way to reach it now), which it marks stale
      // once its gRPC keepalive to etcd fails (10 s + 5 s).
      expect(listsHost(await a.digInside(['SRV', `api.${ZONE}`]), 'host-a')).toBe(true);
      await until('A to know its lease is lost', async () => (a.logs.some((l) => l.code === 'CP_CLUSTER_LEASE_LOST') ? true : undefined), 40_000, 200);
      await until('A to mark its view stale', () => (readyzInside(a).includes('"view":"stale"') ? true : undefined), 40_000, 500);
      expect(listsHost(await a.digInside(['SRV', `api.${ZONE}`]), 'host-a')).toBe(true);
    } finally {
      hostA.setLink(true);
    }
    await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-a') ? true : undefined), 30_000);
    expect(await lostGrants(a)).toBe(grants + 1);
    await until('A synced again', async () => ((await a.metric('canonport_cluster_view_state', { state: 'synced' })) === 1 ? true : undefined), 30_000, 200);
    await apiOnA.stop();
    await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (listsHost(r, 'host-a') ? undefined : true), 20_000);
  });
});
