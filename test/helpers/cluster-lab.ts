import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stopChild } from './child.js';
import { dig, type DigResult } from './dig.js';
import { startEtcd, type EtcdCluster, type StartEtcdOptions } from './etcd.js';
import { createHostNet, type Host, type HostNet } from './netns.js';
import { metric, REPO, startServe, type ServeProcess } from './serve-process.js';

/**
 * Cluster mode end to end: hosts are network namespaces on one bridge
 * (netns.ts), each running a real `canonport serve` bound to the host's
 * bridge address, the way a production daemon runs (DNS on 53, gRPC on
 * 13655, HTTP on 13656); etcd (etcd.ts) listens in the root namespace on
 * loopback and on the bridge. Services are real processes started in a
 * host (cluster-backend.mjs). The tests' clients (dig, Node's resolver,
 * grpc-js) run in the root namespace and reach every host over the bridge.
 */

export const ZONE = 'c.test';
export const DNS_PORT = 53;
export const GRPC_PORT = 13655;
export const HTTP_PORT = 13656;

const BACKEND = join(REPO, 'test', 'helpers', 'cluster-backend.mjs');

export interface Lab {
  net: HostNet;
  etcd: EtcdCluster;
  hosts: Host[];
  /** `etcd://` with every member at the bridge address: what the hosts use. */
  etcdUrl: string;
  /**
   * Each node's state directory (`--state-dir`), one per node name for the
   * lab's life: a daemon restarted under the same name finds its lease and
   * snapshot, as on a real host; removed by stop(). Never the machine's
   * default (/var/lib/canonport), which other engineers' runs share.
   */
  stateDir(node: string): string;
  /** Stops every daemon and service (SIGKILL), etcd, and removes the namespaces. */
  stop(): Promise<void>;
}

/** `pid: true`: every host a PID namespace of its own, with containers (netns.ts), as nodes whose daemon has hostPID. */
export async function startLab(opts: { hosts: number; etcd?: StartEtcdOptions; pid?: boolean }): Promise<Lab> {
  const net = await createHostNet({ hosts: opts.hosts, pid: opts.pid });
  let etcd: EtcdCluster;
  try {
    etcd = await startEtcd({ ...opts.etcd, extraHosts: [net.gateway] });
  } catch (err) {
    net.cleanup();
    throw err;
  }
  const etcdUrl = `etcd://${etcd.members.map((m) => `${net.gateway}:${m.clientPort}`).join(',')}`;
  const states = mkdtempSync(join(tmpdir(), 'cp-lab-state-'));
  return {
    net,
    etcd,
    hosts: net.hosts,
    etcdUrl,
    stateDir: (node) => join(states, node),
    async stop() {
      // Daemons first (net.cleanup kills every process spawned in a host), then etcd.
      net.cleanup();
      await etcd.stop();
      rmSync(states, { recursive: true, force: true });
    },
  };
}

export interface NodeDaemon extends ServeProcess {
  host: Host;
  name: string;
  /** dig against this daemon (from the root namespace, over the bridge). */
  dig(args: string[]): Promise<DigResult>;
  /** dig against this daemon from inside its own host (works while the host is cut off). */
  digInside(args: string[]): Promise<DigResult>;
  /** A series of its /metrics, summed over the samples whose labels include `labels` (NaN when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** GET a path of its HTTP server; the body parsed as JSON when it is JSON. */
  get(path: string): Promise<{ status: number; body: string }>;
}

/**
 * `canonport serve --cluster …` in `host`, as node `name`, answering zone
 * ZONE; `args` add flags; `opts.repo` runs another checkout's CLI. Resolves once its `ready` log line is out (it
 * does not wait for the cluster view).
 */
export async function startNode(lab: Lab, host: Host, name: string, args: string[] = [], etcdUrl = lab.etcdUrl, opts: { repo?: string } = {}): Promise<NodeDaemon> {
  // The hosts' network is the lab's bridge: the node-local pattern docs/operations.md recommends, each daemon's gRPC and
  // HTTP open to that /24 only (bound beyond loopback, a daemon with neither an allow-list nor client certificates refuses to start).
  const lan = `${lab.net.subnet}.0/24`;
  const listen = [
    '--dns', `${host.address}:${DNS_PORT}`, '--grpc', `${host.address}:${GRPC_PORT}`, '--http', `${host.address}:${HTTP_PORT}`,
    '--grpc-allow', lan, '--http-allow', lan,
    // The lab's hosts (and this namespace, the bridge's first address) are the cluster's own: they may recurse, and
    // get UDP answers as large as their buffer (outside --allow an answer is at most 3 times its query: TC, then TCP).
    '--allow', lan,
  ];
  const state = args.includes('--state-dir') ? [] : ['--state-dir', lab.stateDir(name)];
  const serve = await startServe(['--zone', ZONE, '--cluster', etcdUrl, '--node', name, ...state, ...args], {
    listen,
    // `repo`: another checkout's CLI (a bench comparing main and a branch; its dist/ built).
    spawn: (cmd, argv, o) => host.spawn(cmd, opts.repo ? [`${opts.repo}bin/canonport.js`, ...argv.slice(1)] : argv, o),
    readyMs: 40_000,
  });
  return {
    ...serve,
    host,
    name,
    dig: (a) => dig(serve.dns, a),
    digInside: (a) => dig(serve.dns, a, ['ip', 'netns', 'exec', host.ns]),
    metric: async (name, labels = {}) => {
      const res = await fetch(`http://${serve.http.host}:${serve.http.port}/metrics`);
      return metric(await res.text(), name, labels);
    },
    get: async (path) => {
      const res = await fetch(`http://${serve.http.host}:${serve.http.port}${path}`);
      return { status: res.status, body: await res.text() };
    },
  };
}

export interface Backend {
  pid: number;
  /** Sends a signal (SIGUSR2 flips a grpc backend's health). */
  signal(sig: NodeJS.Signals): void;
  port: number;
  /** SIGTERM; resolves when the process has exited (its socket closed). */
  stop(): Promise<void>;
}

/**
 * A service listening on `bind`:`port` (default 0.0.0.0) inside `host`
 * (cluster-backend.mjs): `grpc` answers /canonport.test.Who/Name with
 * `name`; `http` answers GET /version with `version`.
 */
export async function startBackend(
  host: Host,
  mode: 'grpc' | 'http',
  port: number,
  name: string,
  opts: { version?: string; bind?: string; warmupMs?: number; neverReady?: boolean; health?: boolean } = {},
): Promise<Backend> {
  const env = { ...process.env, CP_WARMUP_MS: String(opts.warmupMs ?? 0), CP_NEVER_READY: opts.neverReady ? '1' : '0', CP_HEALTH: opts.health ? '1' : '0' };
  const child = host.spawn(process.execPath, [BACKEND, mode, String(port), name, opts.version ?? '', opts.bind ?? '0.0.0.0'], { env });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`${mode} backend on ${port} in ${host.ns} exited (${code}): ${err}`)));
  });
  return {
    pid: child.pid!,
    signal: (sig: NodeJS.Signals) => void child.kill(sig),
    port,
    stop: () => stopChild(child),
  };
}

/** SRV answer lines as `port target` (sorted), from a dig answer section. */
export function srvTargets(r: DigResult): string[] {
  return r.answer.filter((l) => l[3] === 'SRV').map((l) => `${l[6]} ${l[7]}`).sort();
}

/** Address records of the additional (or another) section as `name address`, sorted. */
export function addressLines(lines: string[][]): string[] {
  return lines.filter((l) => l[3] === 'A' || l[3] === 'AAAA').map((l) => `${l[0]} ${l[4]}`).sort();
}

/**
 * Asks `node` with dig until `check` returns a value (not undefined), every
 * 200 ms; rejects after `timeoutMs` (a wide correctness bound) with the last
 * answer in the message.
 */
export async function untilDig<T>(node: NodeDaemon, args: string[], check: (r: DigResult) => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: DigResult | undefined;
  for (;;) {
    last = await node.dig(args);
    const v = check(last);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: dig ${args.join(' ')} at ${node.name}; last answer:\n${last.raw}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Gives `host` an IPv6 address too (no duplicate address detection: usable at once). */
export function addIPv6(host: Host, address: string): void {
  host.run('ip', ['-6', 'addr', 'add', `${address}/64`, 'dev', 'eth0', 'nodad']);
}
