import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { outputOf, stopChild } from './child.js';
import { requireNetAdmin } from './sandbox.js';
import { requireTool } from './tools.js';

/**
 * Test "hosts": Linux network namespaces joined by a bridge in the root
 * namespace. Each host has its own loopback, its own address on the
 * bridge's /24, and its own /proc/net/tcp, so an inventory (or a daemon)
 * inside one sees only that host's listeners. The root namespace holds the
 * bridge's first address, where the tests' etcd listens.
 *
 * Everything is named after this process's PID (`cx<pid>-<k>…`): cleanup()
 * removes it, an exit hook removes it if a test crashed first, and
 * createHostNet() first sweeps what a dead test process left behind.
 * Nothing else on the machine is touched.
 *
 * "The root namespace" is the one vitest runs in: under `npm test` that is
 * test/sandbox.mjs's own network namespace (a user namespace's, for a user
 * who is not root), so the bridge, the hosts and their names under
 * /run/netns (a tmpfs there) are the run's alone and go with it.
 */

export interface Listener {
  pid: number;
  port: number;
  address: string;
  /** SIGTERM, then SIGKILL; resolves once the process has exited (its socket is closed). */
  stop(): Promise<void>;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
}

export interface Host {
  /** The namespace name (for `ip netns exec`). */
  ns: string;
  index: number;
  /** The host's address on the bridge. */
  address: string;
  /** A process that lives as long as the host: /proc/<pid> is this host's /proc (net/tcp, net/tcp6). */
  procRoot: string;
  /** Spawns `cmd args` inside the namespace. The child is killed at cleanup if still running. */
  spawn(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** Runs a command inside the namespace, returning its stdout. */
  run(cmd: string, args: string[]): string;
  /** Runs a command inside the namespace without blocking this process (a daemon it talks to may run here). */
  exec(cmd: string, args: string[], opts?: SpawnOptions): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** Starts a TCP listener inside the namespace on `address:port` (default every address); resolves once it listens. */
  listen(port: number, address?: string): Promise<Listener>;
  /**
   * Cuts (false) or restores (true) the host's cable: the bridge side of its
   * veth goes down or up. Inside, addresses and routes stay (the host's own
   * sockets keep answering it), but nothing reaches the bridge: a partition.
   */
  setLink(up: boolean): void;
}

export interface HostNet {
  /** The bridge's address in the root namespace: what the hosts reach etcd at. */
  gateway: string;
  subnet: string;
  hosts: Host[];
  addHost(): Promise<Host>;
  cleanup(): void;
}

const ip = (...args: string[]): string => execFileSync('ip', args, { stdio: 'pipe', encoding: 'utf8' });
let instance = 0;
const created = new Set<HostNet>();

process.once('exit', () => {
  for (const n of created) n.cleanup();
});

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes namespaces and bridges named by this helper for a PID that no longer runs. */
function sweepLeftovers(): void {
  for (const line of ip('netns', 'list').split('\n')) {
    const m = /^(cx(\d+)-\w+)/.exec(line.trim());
    if (m && !pidAlive(Number(m[2]))) {
      try {
        ip('netns', 'del', m[1]!);
      } catch {
        // already gone
      }
    }
  }
  for (const line of ip('-o', 'link', 'show').split('\n')) {
    const m = /^\d+:\s+(cx(\d+)-\w+?)(@\S+)?:/.exec(line);
    if (m && !pidAlive(Number(m[2]))) {
      try {
        ip('link', 'del', m[1]!);
      } catch {
        // already gone
      }
    }
  }
}

/** A 10.x.y.0/24 no interface or route on this machine uses. */
function freeSubnet(): string {
  const used = ip('-4', '-o', 'addr', 'show') + ip('-4', 'route', 'show');
  for (let tries = 0; tries < 200; tries++) {
    const subnet = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${subnet}.`)) return subnet;
  }
  throw new Error('no free 10.x.y.0/24 for the test hosts');
}

/** A tiny TCP server: listens, says so on stdout, accepts and closes connections. */
const LISTENER_SCRIPT = `
const net = require('node:net');
const [port, host] = process.argv.slice(1);
const s = net.createServer((c) => c.end());
s.on('error', (e) => { console.error(e.message); process.exit(3); });
s.listen({ port: Number(port), host }, () => console.log('listening'));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;

/**
 * Creates a bridge in the root namespace and `hosts` namespaces joined to
 * it. Needs iproute2 and root in this network namespace (the sandbox's user
 * namespace gives that to any user); fails saying so otherwise.
 */
export async function createHostNet(opts: { hosts: number }): Promise<HostNet> {
  requireNetAdmin('a network-namespace test');
  requireTool('ip', 'iproute2');
  sweepLeftovers();
  const tag = `cx${process.pid}-${(instance++).toString(36)}`;
  const bridge = `${tag}b`;
  const subnet = freeSubnet();
  const gateway = `${subnet}.1`;
  const children = new Set<ChildProcess>();
  const hosts: Host[] = [];
  let cleaned = false;

  const net: HostNet = {
    gateway,
    subnet,
    hosts,
    addHost: async () => {
      const index = hosts.length;
      const ns = `${tag}h${index}`;
      const hostIf = `${tag}v${index}`;
      const address = `${subnet}.${index + 2}`;
      ip('netns', 'add', ns);
      ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `${hostIf}p`);
      ip('link', 'set', hostIf, 'master', bridge);
      ip('link', 'set', hostIf, 'up');
      ip('link', 'set', `${hostIf}p`, 'netns', ns);
      const inNs = (...args: string[]) => ip('netns', 'exec', ns, 'ip', ...args);
      inNs('link', 'set', `${hostIf}p`, 'name', 'eth0');
      inNs('addr', 'add', `${address}/24`, 'dev', 'eth0');
      inNs('link', 'set', 'eth0', 'up');
      inNs('link', 'set', 'lo', 'up');
      inNs('route', 'add', 'default', 'via', gateway);

      const spawnIn = (cmd: string, args: string[], o: SpawnOptions = {}): ChildProcess => {
        // `ip netns exec` execs the command after joining: the child's PID is the command's.
        const child = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...o });
        children.add(child);
        child.once('exit', () => children.delete(child));
        return child;
      };
      const holder = spawnIn('sleep', ['infinity'], { stdio: 'ignore' });
      const procRoot = `/proc/${holder.pid}`;
      // Wait until the holder has joined the namespace (its net/ differs from ours).
      for (let i = 0; i < 100 && !(existsSync(`${procRoot}/net/tcp`) && ip('netns', 'identify', String(holder.pid)).trim() === ns); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const host: Host = {
        ns,
        index,
        address,
        procRoot,
        spawn: spawnIn,
        run: (cmd, args) => execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', encoding: 'utf8' }),
        exec: (cmd, args, o = {}) => outputOf(spawnIn(cmd, args, { ...o, stdio: ['ignore', 'pipe', 'pipe'] })),
        setLink: (up) => void ip('link', 'set', hostIf, up ? 'up' : 'down'),
        listen: async (port, addr = '0.0.0.0') => {
          const child = spawnIn(process.execPath, ['-e', LISTENER_SCRIPT, String(port), addr]);
          let err = '';
          child.stderr!.on('data', (d) => (err += d));
          await new Promise<void>((resolve, reject) => {
            child.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
            child.once('exit', (code) => reject(new Error(`listener on ${addr}:${port} in ${ns} exited (${code}): ${err}`)));
          });
          return { pid: child.pid!, port, address: addr, stop: () => stopChild(child), kill: () => stopChild(child, { signal: 'SIGKILL' }) };
        },
      };
      hosts.push(host);
      return host;
    },
    cleanup: () => {
      if (cleaned) return;
      cleaned = true;
      created.delete(net);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const h of hosts) {
        try {
          ip('netns', 'del', h.ns); // takes its veth pair along
        } catch {
          // already gone
        }
      }
      try {
        ip('link', 'del', bridge);
      } catch {
        // already gone
      }
    },
  };
  created.add(net);
  try {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('addr', 'add', `${gateway}/24`, 'dev', bridge);
    ip('link', 'set', bridge, 'up');
    for (let i = 0; i < opts.hosts; i++) await net.addHost();
  } catch (err) {
    net.cleanup();
    throw err;
  }
  return net;
}
