import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { until } from './helpers/cluster.js';
import { addNodeUser } from './helpers/etcd.js';
import { srvTargets, startBackend, startLab, startNode, untilDig, ZONE, type Lab, type NodeDaemon } from './helpers/cluster-lab.js';
import type { Host } from './helpers/netns.js';

/**
 * Cluster mode end to end against etcd as production runs it: TLS with
 * client certificates (--client-cert-auth), auth on, and one user per host
 * whose role reads the whole prefix and writes only that host's keys (the
 * role docs/cluster.md shows). Real daemons in network namespaces.
 */

const API = base32Port('api');
const PREFIX = '/canonport';
let lab: Lab;
let dir: string;
let hostA: Host;
let hostB: Host;
let hostC: Host;

beforeAll(async () => {
  lab = await startLab({ hosts: 3, etcd: { tls: true, auth: true } });
  [hostA, hostB, hostC] = lab.hosts as [Host, Host, Host];
  dir = mkdtempSync(join(tmpdir(), 'cp-cluster-tls-'));
  for (const node of ['host-a', 'host-b']) {
    await addNodeUser(lab.etcd, { user: node, password: `pw-${node}`, prefix: PREFIX, node });
    writeFileSync(join(dir, node), `pw-${node}\n`, { mode: 0o600 });
  }
}, 120_000);

afterAll(async () => {
  await lab?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The flags for etcd over TLS as `user`. */
function tlsFlags(user: string): string[] {
  const tls = lab.etcd.tls!;
  return ['--cluster-ca', tls.ca, '--cluster-cert', tls.clientCert, '--cluster-key', tls.clientKey, '--cluster-user', user, '--cluster-password-file', join(dir, user)];
}

describe('etcd with TLS, client certificates and a role per host', () => {
  it('each daemon publishes its own host and reads every host\'s; one posing as another node is refused and logged', async () => {
    const [a, b] = await Promise.all([startNode(lab, hostA, 'host-a', tlsFlags('host-a')), startNode(lab, hostB, 'host-b', tlsFlags('host-b'))]);
    // Host C holds host-a's credentials but calls itself host-c: its role lets it write host-a's keys only.
    const c: NodeDaemon = await startNode(lab, hostC, 'host-c', tlsFlags('host-a'));
    await startBackend(hostA, 'grpc', API, 'host-a');
    await startBackend(hostC, 'grpc', API, 'host-c');
    await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (srvTargets(r).join() === `${API} host-a.node.${ZONE}.` ? true : undefined), 30_000);
    // C reads the cluster (its role may read the prefix) but could not publish.
    await untilDig(c, ['SRV', `api.${ZONE}`], (r) => (srvTargets(r).join() === `${API} host-a.node.${ZONE}.` ? true : undefined), 30_000);
    const refused = await c.waitForLog((l) => l.code === 'CP_CLUSTER_PUBLISH_FAILED', 20_000);
    expect(String(refused.msg)).toMatch(/refused/);
    const keys = (await lab.etcd.etcdctl(['get', '--prefix', '--keys-only', `${PREFIX}/`])).split('\n').filter(Boolean).sort();
    expect(keys).toEqual([
      `${PREFIX}/v1/listeners/host-a/${API}`,
      `${PREFIX}/v1/nodes/host-a`,
      `${PREFIX}/v1/nodes/host-b`,
      `${PREFIX}/v2/nodes/host-a/instances/${API}/tcp/host`,
      `${PREFIX}/v2/nodes/host-a/node`,
      `${PREFIX}/v2/nodes/host-b/node`,
    ]);
    for (const d of [a, b, c]) {
      await until(`${d.name} synced`, async () => ((await d.metric('canonport_cluster_view_state', { state: 'synced' })) === 1 ? true : undefined), 20_000, 200);
    }
    // The daemons spoke TLS: etcd refuses plain connections (its client listener is https only).
    const plain = await fetch(`http://${lab.net.gateway}:${lab.etcd.members[0]!.clientPort}/version`).then((r) => r.status, (e: Error) => e.message);
    expect(plain).not.toBe(200);
  });
});
