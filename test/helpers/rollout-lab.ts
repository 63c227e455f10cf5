import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { base32Port } from '../../src/scheme/index.js';
import { until } from './cluster.js';
import { GRPC_PORT, srvTargets, startBackend, startLab, startNode, ZONE, type Backend, type Lab, type NodeDaemon } from './cluster-lab.js';
import type { Host } from './netns.js';
import { REPO } from './serve-process.js';
import { createCanonportClient } from '../../src/grpc/canonport-client.js';

/**
 * The lab of issue 20's rolling deploy, shared by test/rollout-netns.test.ts
 * and the bench (bench/rollout.ts): four hosts with their daemons on port 53
 * (real etcd), each host's resolv.conf naming its own daemon; `api` (HTTP)
 * and `rpc` (gRPC with grpc.health.v1) on hosts 0–2, each instance warming
 * up for 1.5 s after it binds; host 3 runs neither and is the clients'.
 */

export const API = base32Port('api');
export const RPC = base32Port('rpc');
export const WARMUP_MS = 1_500;
export const CANONPORT = join(REPO, 'bin', 'canonport.js');
/**
 * Daemon flags: a short observed TTL so drains' TTL waits stay short (the
 * default is 5 s). The lease keeps its default (10 s): a restart must come
 * back within it, and a daemon starting on a loaded machine takes seconds.
 */
export const FLAGS = ['--observed-ttl', '2'];
/** The daemons' lease TTL (the default), ms. */
export const LEASE_TTL_MS = 10_000;

export interface RolloutLab {
  lab: Lab;
  /** The three hosts that run api and rpc. */
  hosts: Host[];
  /** The fourth host: no service, the clients'. */
  client: Host;
  daemons: NodeDaemon[];
  backends: Map<string, Backend>;
  /** Starts (again) host i's api and rpc; resolves once both listen (not yet ready). */
  deploy(i: number, version: number): Promise<void>;
  /** `canonport drain SVC --wait` inside host i (its Admin call comes from the host's own address). */
  drain(i: number, service: string): Promise<string>;
  /** The nodes a daemon's SRV answer for `service` names, sorted. */
  srvNodes(d: NodeDaemon, service: string): Promise<string[]>;
  /** Resolves once the client host's daemon answers api and rpc with all three hosts. */
  untilServing(): Promise<void>;
  /** Drain, stop, start, wait until ready, host by host. */
  rollingDeploy(version: number): Promise<void>;
  /** Restarts host i's daemon (same node, same state directory) after `signal`. */
  restartDaemon(i: number, signal: NodeJS.Signals): Promise<NodeDaemon>;
  stop(): Promise<void>;
}

export async function startRolloutLab(): Promise<RolloutLab> {
  const lab = await startLab({ hosts: 4 });
  const netnsDirs: string[] = [];
  const hosts = lab.hosts.slice(0, 3);
  const client = lab.hosts[3]!;
  const daemons: NodeDaemon[] = [];
  const backends = new Map<string, Backend>();
  const stop = async () => {
    await lab.stop();
    for (const d of netnsDirs) rmSync(d, { recursive: true, force: true });
  };
  try {
    for (const [i, h] of lab.hosts.entries()) daemons.push(await startNode(lab, h, `host-${i}`, FLAGS));
    // Every host's own resolv.conf names its daemon (`ip netns exec` bind-mounts /etc/netns/<ns>/resolv.conf),
    // written after the daemons started so they keep the machine's upstreams.
    for (const h of lab.hosts) {
      const dir = `/etc/netns/${h.ns}`;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'resolv.conf'), `nameserver ${h.address}\noptions timeout:1 attempts:2\n`);
      netnsDirs.push(dir);
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const r: RolloutLab = {
    lab,
    hosts,
    client,
    daemons,
    backends,
    async deploy(i, version) {
      const h = hosts[i]!;
      backends.set(`api-${i}`, await startBackend(h, 'http', API, `host-${i}`, { version: `1.${version}`, warmupMs: WARMUP_MS }));
      backends.set(`rpc-${i}`, await startBackend(h, 'grpc', RPC, `host-${i}`, { warmupMs: WARMUP_MS, health: true }));
    },
    drain(i, service) {
      return new Promise((resolve, reject) => {
        const child = hosts[i]!.spawn(process.execPath, [CANONPORT, 'drain', service, '--wait', '--timeout', '20000', '--daemon', `${hosts[i]!.address}:${GRPC_PORT}`]);
        let out = '';
        let err = '';
        child.stdout!.on('data', (d) => (out += d));
        child.stderr!.on('data', (d) => (err += d));
        child.once('exit', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`canonport drain ${service} on host-${i} exited ${code}: ${err}`))));
      });
    },
    srvNodes: async (d, service) => srvTargets(await d.dig(['SRV', `${service}.${ZONE}`])).map((t) => t.split(' ')[1]!.split('.')[0]!).sort(),
    async untilServing() {
      const want = hosts.map((_, i) => `host-${i}`).join();
      const client = createCanonportClient(`${daemons[3]!.grpc.host}:${daemons[3]!.grpc.port}`);
      try {
        for (const svc of ['api', 'rpc']) {
          await until(`${svc} on ${want} in the client host's answers`, async () => ((await r.srvNodes(daemons[3]!, svc)).join() === want ? true : undefined), 30_000, 100);
          // Listed is not enough while none is ready (then every listening instance is handed out: panic routing, as
          // when the lab first starts every instance warming up at once): each must be ready in the view as well.
          await until(`${svc} ready on ${want} in the client host's view`, async () => {
            const ready = (await client.resolve(`${svc}.${ZONE}`)).endpoints.filter((e) => e.readiness === 'ready').map((e) => e.node);
            return [...new Set(ready)].sort().join() === want ? true : undefined;
          }, 30_000, 100);
        }
      } finally {
        client.close();
      }
    },
    async rollingDeploy(version) {
      for (const i of hosts.keys()) {
        await Promise.all([r.drain(i, 'api'), r.drain(i, 'rpc')]);
        await Promise.all([backends.get(`api-${i}`)!.stop(), backends.get(`rpc-${i}`)!.stop()]);
        await r.deploy(i, version);
        // Back (by itself: new sockets end the drain) once its warm-up is over and a probe said ready.
        await r.untilServing();
      }
    },
    async restartDaemon(i, signal) {
      const d = daemons[i]!;
      d.proc.kill(signal);
      await d.exited;
      // Down for a moment, as an upgrade would be; then the same node, the same state directory.
      await new Promise((res) => setTimeout(res, 1_000));
      daemons[i] = await startNode(lab, lab.hosts[i]!, `host-${i}`, FLAGS);
      return daemons[i]!;
    },
    stop,
  };
  return r;
}
