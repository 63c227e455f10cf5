import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../src/cluster/cluster.js';
import { HostInventory } from '../src/inventory/inventory.js';
import { Metrics } from '../src/metrics/metrics.js';
import { Registry } from '../src/registry/registry.js';
import { capturingLogger, until } from './helpers/cluster.js';
import { startEtcd, type EtcdCluster } from './helpers/etcd.js';
import { createHostNet, type Host, type HostNet } from './helpers/netns.js';

/**
 * Cluster mode across "hosts": network namespaces joined by a bridge, each
 * with its own /proc/net/tcp, and a real etcd in the root namespace on the
 * bridge. Listeners are real sockets started inside a host; inventories
 * read that host's /proc.
 */

const PREFIX = '/cpn';
const AGENT = fileURLToPath(new URL('./helpers/cluster-agent.mjs', import.meta.url));
let net: HostNet;
let etcd: EtcdCluster;
let hostA: Host;
let hostB: Host;

beforeAll(async () => {
  net = await createHostNet({ hosts: 2 });
  [hostA, hostB] = net.hosts as [Host, Host];
  etcd = await startEtcd({ extraHosts: [net.gateway] });
}, 60_000);

afterAll(async () => {
  await etcd?.stop();
  net?.cleanup();
});

const etcdFromHosts = () => `etcd://${net.gateway}:${etcd.members[0]!.clientPort}`;
const keys = async () => (await etcd.etcdctl(['get', '--prefix', '--keys-only', `${PREFIX}/`])).split('\n').filter(Boolean);

describe('one host\'s real inventory', () => {
  it('publishes a listener started on the host, withdraws it when it stops, and keeps loopback-only listeners local', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const log = capturingLogger();
    const cluster = new Cluster({ endpoints: etcd.url, node: 'host-a', prefix: PREFIX, advertise: [hostA.address] }, { metrics, logger: log.logger });
    const state = { registry: Registry.empty(), zones: ['localhost'] };
    const inventory = new HostInventory({ state: () => state, metrics, intervalMs: 500, probe: false, procRoot: hostA.procRoot, onSnapshot: (s) => cluster.publish(s) });
    cluster.start();
    inventory.start();
    try {
      const local = await hostA.listen(14688, '127.0.0.1');
      const api = await hostA.listen(12082, '0.0.0.0');
      const t0 = Date.now();
      // Within a scan (500 ms) and a write: 5 s is a wide bound for that, far below any "eventually".
      await until('the listener key', async () => ((await keys()).includes(`${PREFIX}/v1/listeners/host-a/12082`) ? true : undefined), 5_000);
      const appearedMs = Date.now() - t0;
      // The inventory saw the loopback listener too (it is this host's), and did not publish it.
      const snap = await inventory.snapshot();
      expect(snap.listeners.map((l) => `${l.address}:${l.port}`)).toEqual(expect.arrayContaining(['127.0.0.1:14688', '0.0.0.0:12082']));
      // The test process's own sockets (root namespace) are not this host's.
      expect(snap.listeners.every((l) => [12082, 14688].includes(l.port))).toBe(true);
      await cluster.whenPublished();
      // The v2 instance and node records, and their v1 mirror (the instance reads as ready: no probing here).
      expect(await keys()).toEqual([`${PREFIX}/v1/listeners/host-a/12082`, `${PREFIX}/v1/nodes/host-a`, `${PREFIX}/v2/nodes/host-a/instances/12082/tcp/host`, `${PREFIX}/v2/nodes/host-a/node`]);
      const value = JSON.parse(await etcd.etcdctl(['get', '--print-value-only', `${PREFIX}/v1/listeners/host-a/12082`]));
      expect(value).toMatchObject({ port: 12082, services: ['api'], scheme: 'base32', bind: [{ family: 'tcp', address: '0.0.0.0' }] });

      await api.stop();
      const t1 = Date.now();
      await until('the listener key to go', async () => ((await keys()).includes(`${PREFIX}/v1/listeners/host-a/12082`) ? undefined : true), 5_000);
      console.log(`host-a: listener key appeared ${appearedMs} ms after the listener, withdrawn ${Date.now() - t1} ms after it closed (scan interval 500 ms)`);
      await local.stop();
    } finally {
      await inventory.stop();
      await cluster.stop();
    }
    expect(await keys()).toEqual([]);
  });
});

interface Agent {
  child: ChildProcess;
  events: Record<string, unknown>[];
  stderr: string[];
}

function startAgent(host: Host, node: string, extra: Record<string, unknown> = {}): Agent {
  const options = { endpoints: etcdFromHosts(), node, prefix: PREFIX, leaseTtlSeconds: 3, intervalMs: 500, watchPorts: [12082], ...extra };
  const child = host.spawn(process.execPath, [AGENT, JSON.stringify(options)]);
  const agent: Agent = { child, events: [], stderr: [] };
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) if (line) agent.events.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr!.on('data', (d) => agent.stderr.push(String(d)));
  return agent;
}

type ViewEvent = { event: 'view'; state: string; nodes: string[]; ports: Record<string, { node: string; addresses: string[] }[]> };
const lastView = (a: Agent) => a.events.filter((e): e is ViewEvent => e.event === 'view').at(-1);

describe('hosts as separate processes in their own namespaces', () => {
  it('shows host A\'s listener in host B\'s view at A\'s address; a SIGKILLed host disappears when its lease expires', async () => {
    const a = startAgent(hostA, 'host-a');
    const b = startAgent(hostB, 'host-b');
    const api = await hostA.listen(12082);
    try {
      const seen = await until('B to see A on 12082', () => lastView(b)?.ports['12082']?.find((e) => e.node === 'host-a'), 20_000).catch((err) => {
        throw new Error(`${(err as Error).message}; A: ${a.stderr.join('')} B: ${b.stderr.join('')}`);
      });
      // The advertise address was detected: the source address host A uses toward etcd, its bridge address.
      expect(seen.addresses).toEqual([hostA.address]);
      await until('both hosts in both views', () => ([a, b].every((x) => lastView(x)?.nodes.join() === 'host-a,host-b') ? true : undefined));
      expect(lastView(a)!.ports['12082']).toEqual([{ node: 'host-a', addresses: [hostA.address] }]);

      a.child.kill('SIGKILL');
      await new Promise((r) => a.child.once('exit', r));
      // Nothing revoked the lease: A's keys are still there, until the TTL (3 s) runs out.
      expect(await keys()).toContain(`${PREFIX}/v1/nodes/host-a`);
      await until('A to leave B\'s view', () => (lastView(b)!.nodes.includes('host-a') ? undefined : true), 3_000 + 5_000);
      expect(lastView(b)!.ports['12082']).toEqual([]);
      expect(await keys()).toEqual([`${PREFIX}/v1/nodes/host-b`, `${PREFIX}/v2/nodes/host-b/node`]);

      // A clean stop revokes B's lease.
      b.child.kill('SIGTERM');
      await until('B to stop', () => (b.events.some((e) => e.event === 'stopped') ? true : undefined));
      expect(await keys()).toEqual([]);
    } finally {
      await api.stop();
      for (const x of [a, b]) if (x.child.exitCode === null && x.child.signalCode === null) x.child.kill('SIGKILL');
    }
  });
});
