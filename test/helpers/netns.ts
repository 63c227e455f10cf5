import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { outputOf, stopChild } from './child.js';
import { inSandbox, requireNetAdmin } from './sandbox.js';
import { tempDir } from './temp.js';
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
 * With `pid: true` each host is a node as a DaemonSet with `hostPID` sees
 * it (issue 26): a PID namespace of its own (`unshare --pid --fork
 * --mount-proc`, with its own /proc), so a daemon in it sees exactly the
 * host's processes, and `addContainer()` starts "containers" in it:
 * network namespaces of their own whose processes are the host's, with
 * either a routed address (a pod network: `<host pod subnet>.N/32` on a
 * veth, the host routing it, every other host and the root namespace
 * routing the host's pod subnet through its address) or a bridge-private
 * one (Docker's default bridge: reachable from the host only).
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
  /** `pid: true` hosts: the pod subnet (`a.b.c`, a /24) routed containers get addresses from. */
  podSubnet?: string | undefined;
  /** `pid: true` hosts: starts a container in this host (see ContainerOptions). */
  addContainer?(opts?: ContainerOptions): Promise<Container>;
}

export interface ContainerOptions {
  /** `routed` (default): an address of the host's pod subnet, reachable from every host; `bridge`: a bridge-private one, reachable from its host only. */
  network?: 'routed' | 'bridge';
  /**
   * Puts its processes in a real cgroup named as a runtime names it
   * (cgroup v2, or the unified hierarchy of a hybrid host): `docker-<id>.scope`,
   * or the kubelet's systemd layout with `podUid` (`kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`).
   */
  cgroup?: { id: string; podUid?: string | undefined } | undefined;
}

export interface Container {
  /** Its network namespace's name. */
  ns: string;
  /** Its own address. */
  address: string;
  host: Host;
  /** Spawns `cmd args` in it: the host's PID namespace, the container's network namespace (and cgroup). */
  spawn(cmd: string, args: string[], opts?: SpawnOptions): ChildProcess;
  /** A TCP listener in it, as Host.listen. */
  listen(port: number, address?: string): Promise<Listener>;
  /**
   * `docker run -p PORT:PORT`'s userland proxy: a process on its host that
   * the kernel names `docker-proxy` (a script of that name, its `comm`),
   * with docker-proxy's arguments (`-proto tcp -host-ip 0.0.0.0 -host-port
   * PORT -container-ip ADDRESS -container-port PORT`), listening on the
   * host's every address and piping each connection to the container.
   * Resolves once it listens; stopped with the container.
   */
  publish(port: number): Promise<Listener>;
  /** Stops every process in it and removes its namespace: the container is gone. */
  stop(): Promise<void>;
}

/**
 * The cgroup v2 hierarchy containers' cgroups are made in: in test/sandbox.mjs, the run's own subtree
 * (mounted where the hierarchy was; CANONPORT_TEST_CGROUP), or none (CANONPORT_TEST_CGROUP_MISSING says
 * why); outside it (root), v2 itself or a hybrid host's unified one.
 */
function cgroupRoot(): string | undefined {
  if (inSandbox()) return process.env.CANONPORT_TEST_CGROUP || undefined;
  for (const dir of ['/sys/fs/cgroup/unified', '/sys/fs/cgroup']) {
    if (existsSync(join(dir, 'cgroup.procs')) && existsSync(join(dir, 'cgroup.controllers'))) return dir;
  }
  return undefined;
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
  const cg = cgroupRoot();
  for (const name of cg ? readdirSync(cg) : []) {
    const m = /^cx(\d+)-\w+$/.exec(name);
    if (m && !pidAlive(Number(m[1]))) removeCgroups(join(cg!, name));
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

/** A 10.x.y.0/24 no interface or route on this machine uses (nor one handed out by this process already). */
const handedOut = new Set<string>();
function freeSubnet(): string {
  const used = ip('-4', '-o', 'addr', 'show') + ip('-4', 'route', 'show');
  for (let tries = 0; tries < 200; tries++) {
    const subnet = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`${subnet}.`) && !handedOut.has(subnet)) {
      handedOut.add(subnet);
      return subnet;
    }
  }
  throw new Error('no free 10.x.y.0/24 for the test hosts');
}

/** Removes a cgroup tree bottom-up (each directory once its processes are gone). */
function removeCgroups(dir: string): void {
  try {
    for (const e of readdirSync(dir)) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) removeCgroups(p);
    }
    rmdirSync(dir);
  } catch {
    // still busy or gone: the next sweep takes it
  }
}

/** The PID (in this namespace) of `parent`'s first child, waiting for it to exist. */
async function firstChild(parent: number): Promise<number> {
  for (let i = 0; i < 200; i++) {
    try {
      const kids = readFileSync(`/proc/${parent}/task/${parent}/children`, 'utf8').trim();
      if (kids) return Number(kids.split(/\s+/)[0]);
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`process ${parent} has no child`);
}

/** Waits until nsenter `pid`'s child (in the target PID namespace) has exec'd into `sleep`. */
async function holderRunning(pid: number): Promise<void> {
  const child = await firstChild(pid);
  for (let i = 0; i < 200; i++) {
    try {
      if (readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'sleep') return;
    } catch {
      // not there yet, or gone (then the next look fails the same way)
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`the container's holder (nsenter ${pid}) never ran sleep`);
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
export async function createHostNet(opts: { hosts: number; pid?: boolean }): Promise<HostNet> {
  requireNetAdmin('a network-namespace test');
  requireTool('ip', 'iproute2');
  sweepLeftovers();
  const tag = `cx${process.pid}-${(instance++).toString(36)}`;
  const bridge = `${tag}b`;
  const subnet = freeSubnet();
  const gateway = `${subnet}.1`;
  const children = new Set<ChildProcess>();
  const hosts: Host[] = [];
  const containerNs: string[] = [];
  const cgroups: string[] = [];
  let cleaned = false;
  if (opts.pid) requireTool('nsenter', 'util-linux');
  const track = (child: ChildProcess): ChildProcess => {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  };

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

      let init = 0;
      const spawnIn = (cmd: string, args: string[], o: SpawnOptions = {}): ChildProcess => {
        // `ip netns exec` execs the command after joining: the child's PID is the command's.
        if (!init) return track(spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...o }));
        // In the host's PID namespace: nsenter forks into it and does not pass signals on, so the command dies with it (pdeathsig).
        return track(spawn('nsenter', ['-t', String(init), '-p', '-m', '-n', '--', 'setpriv', '--pdeathsig', 'TERM', '--', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...o }));
      };
      // A pid host's first process is its PID namespace's init (its own /proc mounted; it and everything in it die with the holder).
      const holder = opts.pid
        ? track(spawn('ip', ['netns', 'exec', ns, 'unshare', '--pid', '--fork', '--kill-child', '--mount', '--propagation', 'slave', '--mount-proc', 'sleep', 'infinity'], { stdio: 'ignore' }))
        : spawnIn('sleep', ['infinity'], { stdio: 'ignore' });
      if (opts.pid) init = await firstChild(holder.pid!);
      const procRoot = `/proc/${holder.pid}`;
      // Wait until the holder has joined the namespace (its net/ differs from ours).
      for (let i = 0; i < 100 && !(existsSync(`${procRoot}/net/tcp`) && ip('netns', 'identify', String(holder.pid)).trim() === ns); i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      const run = (cmd: string, args: string[]) => execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: 'pipe', encoding: 'utf8' });
      const host: Host = {
        ns,
        index,
        address,
        procRoot,
        spawn: spawnIn,
        run,
        exec: (cmd, args, o = {}) => outputOf(spawnIn(cmd, args, { ...o, stdio: ['ignore', 'pipe', 'pipe'] })),
        setLink: (up) => void ip('link', 'set', hostIf, up ? 'up' : 'down'),
        listen: (port, addr = '0.0.0.0') => listenWith(spawnIn, ns, port, addr),
      };
      if (opts.pid) {
        const podSubnet = freeSubnet();
        host.podSubnet = podSubnet;
        run('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
        // Every host and the root namespace reach this host's pods through it, and it theirs through them (a routed pod network).
        ip('route', 'add', `${podSubnet}.0/24`, 'via', address, 'dev', bridge);
        for (const other of hosts) {
          if (!other.podSubnet) continue;
          run('ip', ['route', 'add', `${other.podSubnet}.0/24`, 'via', other.address]);
          other.run('ip', ['route', 'add', `${podSubnet}.0/24`, 'via', address]);
        }
        let bridgeSubnet: string | undefined;
        let count = 0;
        // The last octets of addresses in use, per network (a /24 each): a stopped container's is given again, so a
        // host may start any number of containers over its life, at most 253 at once on each network.
        const octets = { routed: new Set<number>(), bridge: new Set<number>() };
        const octet = (kind: 'routed' | 'bridge'): number => {
          for (let o = 2; o < 255; o++) {
            if (octets[kind].has(o)) continue;
            octets[kind].add(o);
            return o;
          }
          throw new Error(`no ${kind} container address left on ${ns} (253 at once)`);
        };
        host.addContainer = async (c: ContainerOptions = {}) => {
          const j = count++;
          const cns = `${ns}c${j}`;
          const veth = `${tag}${index}c${j}`;
          ip('netns', 'add', cns);
          containerNs.push(cns);
          const inC = (...args: string[]) => ip('netns', 'exec', cns, 'ip', ...args);
          ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
          ip('link', 'set', veth, 'netns', ns);
          ip('link', 'set', `${veth}p`, 'netns', cns);
          inC('link', 'set', `${veth}p`, 'name', 'eth0');
          inC('link', 'set', 'lo', 'up');
          inC('link', 'set', 'eth0', 'up');
          run('ip', ['link', 'set', veth, 'up']);
          let caddr: string;
          const kind = c.network ?? 'routed';
          const last = octet(kind);
          if (kind === 'routed') {
            // Calico's way: a /32 on the container's side, a route to it on the host's, the host answering ARP for the gateway.
            caddr = `${podSubnet}.${last}`;
            inC('addr', 'add', `${caddr}/32`, 'dev', 'eth0');
            inC('route', 'add', '169.254.1.1', 'dev', 'eth0', 'scope', 'link');
            inC('route', 'add', 'default', 'via', '169.254.1.1', 'dev', 'eth0');
            // As Calico's CNI plugin does: without proxy_delay=0 the kernel answers the container's ARP for its gateway
            // after a random wait of up to neigh.default.proxy_delay (0.8 s), so every first packet out of a new pod
            // (a readiness probe's SYN-ACK, the daemon's first answer) waits that long.
            run('sysctl', ['-qw', `net.ipv4.conf.${veth}.proxy_arp=1`, `net.ipv4.neigh.${veth}.proxy_delay=0`]);
            run('ip', ['route', 'add', `${caddr}/32`, 'dev', veth]);
          } else {
            // Docker's default bridge: a bridge in the host with the first address, the container on it; no other host routes to it.
            if (!bridgeSubnet) {
              bridgeSubnet = freeSubnet();
              run('ip', ['link', 'add', 'docker0', 'type', 'bridge']);
              run('ip', ['addr', 'add', `${bridgeSubnet}.1/24`, 'dev', 'docker0']);
              run('ip', ['link', 'set', 'docker0', 'up']);
            }
            caddr = `${bridgeSubnet}.${last}`;
            run('ip', ['link', 'set', veth, 'master', 'docker0']);
            inC('addr', 'add', `${caddr}/24`, 'dev', 'eth0');
            inC('route', 'add', 'default', 'via', `${bridgeSubnet}.1`);
          }
          let cgroup: string | undefined;
          if (c.cgroup) {
            const root = cgroupRoot();
            if (!root) {
              throw new Error(
                `a container with a cgroup needs a cgroup v2 subtree this run may write, and there is none: ${process.env.CANONPORT_TEST_CGROUP_MISSING ?? 'no cgroup v2 hierarchy is mounted (/sys/fs/cgroup or /sys/fs/cgroup/unified)'}`,
              );
            }
            const top = join(root, `${tag}c${index}${j}`);
            cgroups.push(top);
            const uid = c.cgroup.podUid;
            cgroup = uid
              ? join(top, 'kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${uid.replace(/-/g, '_')}.slice`, `cri-containerd-${c.cgroup.id}.scope`)
              : join(top, 'system.slice', `docker-${c.cgroup.id}.scope`);
            mkdirSync(cgroup, { recursive: true });
          }
          const mine = new Set<ChildProcess>();
          const spawnC = (cmd: string, args: string[], o: SpawnOptions = {}): ChildProcess => {
            // Into the cgroup first, from this mount namespace (`0` moves the writer; `ip netns exec` gave the host a /sys
            // without the cgroup mounts), then the host's PID and mount namespaces and the container's network one.
            const nsenter = ['nsenter', `--net=/run/netns/${cns}`, '-t', String(init), '-p', '-m', '--', 'setpriv', '--pdeathsig', 'TERM', '--', cmd, ...args];
            const argv = cgroup ? ['sh', '-c', `echo 0 > ${cgroup}/cgroup.procs && exec "$@"`, 'sh', ...nsenter] : nsenter;
            const child = track(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], ...o }));
            mine.add(child);
            child.once('exit', () => mine.delete(child));
            return child;
          };
          // A process holds the namespace, as a pod's sandbox (pause) does. Returned once it runs in the host's PID
          // namespace (nsenter's child, exec'd into sleep): a daemon scanning right after sees the container.
          const holder = spawnC('sleep', ['infinity'], { stdio: 'ignore' });
          await holderRunning(holder.pid!);
          let stopped = false;
          const proxies: Listener[] = [];
          return {
            ns: cns,
            address: caddr,
            host,
            spawn: spawnC,
            listen: (port, addr = '0.0.0.0') => listenWith(spawnC, cns, port, addr),
            publish: async (port) => {
              const proxy = await listenWith(
                (_cmd, args) => spawnIn(dockerProxy(), args),
                ns,
                port,
                '0.0.0.0',
                ['-proto', 'tcp', '-host-ip', '0.0.0.0', '-host-port', String(port), '-container-ip', caddr, '-container-port', String(port)],
              );
              proxies.push(proxy);
              return proxy;
            },
            stop: async () => {
              if (stopped) return;
              stopped = true;
              await Promise.all([...proxies.map((p) => p.stop()), ...[...mine].map((p) => stopChild(p))]);
              // The veth first: a namespace goes only once nothing holds it (a daemon's kept /proc descriptors do), and its
              // address may be given again at once, route and all.
              try {
                run('ip', ['link', 'del', veth]);
              } catch {
                // already gone
              }
              try {
                ip('netns', 'del', cns);
              } catch {
                // already gone
              }
              octets[kind].delete(last);
            },
          };
        };
      }
      hosts.push(host);
      return host;
    },
    cleanup: () => {
      if (cleaned) return;
      cleaned = true;
      created.delete(net);
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      for (const c of containerNs) {
        try {
          ip('netns', 'del', c);
        } catch {
          // already gone
        }
      }
      // A cgroup goes once its processes have (they got SIGTERM through pdeathsig); what is still busy goes at the next sweep.
      for (const g of cgroups) removeCgroups(g);
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

/** docker-proxy's part of `-p PORT:PORT`, as Container.publish runs it: its arguments are docker-proxy's. */
const DOCKER_PROXY_SCRIPT = `#!${process.execPath}
const net = require('node:net');
const flag = (n) => process.argv[process.argv.indexOf(n) + 1];
const [port, host, to, toPort] = [Number(flag('-host-port')), flag('-host-ip'), flag('-container-ip'), Number(flag('-container-port'))];
const s = net.createServer((c) => { const u = net.connect(toPort, to); c.pipe(u).pipe(c); u.on('error', () => c.destroy()); c.on('error', () => u.destroy()); });
s.on('error', (e) => { console.error(e.message); process.exit(3); });
s.listen({ port, host }, () => console.log('listening'));
process.on('SIGTERM', () => process.exit(0));
`;

let dockerProxyPath: string | undefined;
/** An executable named docker-proxy (a script: the kernel names the process after the file it ran, so its comm is `docker-proxy`). */
function dockerProxy(): string {
  if (dockerProxyPath) return dockerProxyPath;
  const dir = tempDir('cp-docker-proxy-');
  chmodSync(dir, 0o755);
  const path = join(dir, 'docker-proxy');
  writeFileSync(path, DOCKER_PROXY_SCRIPT);
  chmodSync(path, 0o755);
  return (dockerProxyPath = path);
}

/** A TCP listener started with `spawnIn` (a host's or a container's), resolved once it listens; `args` replaces the listener script's arguments (docker-proxy's). */
async function listenWith(spawnIn: (cmd: string, args: string[]) => ChildProcess, where: string, port: number, addr: string, args?: string[]): Promise<Listener> {
  const child = spawnIn(process.execPath, args ?? ['-e', LISTENER_SCRIPT, String(port), addr]);
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`listener on ${addr}:${port} in ${where} exited (${code}): ${err}`)));
  });
  return { pid: child.pid!, port, address: addr, stop: () => stopChild(child), kill: () => stopChild(child, { signal: 'SIGKILL' }) };
}
