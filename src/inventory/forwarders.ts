import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { protocolOf, type ListeningSocket } from './procnet.js';
import { DEFAULT_MAX_PROCESSES, describeProcess } from './socket-owner.js';
import type { ForwardedTo, ListenerNamespace } from './types.js';

/**
 * Host ports that only forward to a container (issue 26: "never the same
 * service twice for one published port").
 *
 * `docker run -p 12082:12082` on a container whose network other hosts
 * route to (`--container-network`: macvlan, a routed bridge, a pod CIDR)
 * gives one service two ways in: the container's own address, which the
 * namespace scan publishes, and the host's port, where Docker's userland
 * proxy listens and pipes each connection to the container. The rule: the
 * container's own address wins, and a host listener that is a
 * `docker-proxy` forwarding the same port, of the same protocol, to that
 * published address is not published again (it stays in `inventory`,
 * marked). A forward to another port (`-p 8080:80`) is another canonical
 * name and stays published.
 *
 * The forwarder is told by its process: the kernel's name for it (`comm`)
 * is `docker-proxy`, and its arguments name both ends
 * (`-proto tcp -host-ip 0.0.0.0 -host-port 12082 -container-ip 10.0.3.5
 * -container-port 12082`). `comm` and `cmdline` of another user's
 * process read without privileges (unlike `/proc/<pid>/fd`, which the
 * socket-owner walk needs), so the rule holds for a daemon with no
 * capability. The other way Docker and Kubernetes publish a port, a DNAT
 * rule (`userland-proxy: false`, CNI's portmap for `hostPort`), opens no
 * socket on the host: the scan never sees it, so it never doubles a
 * service, and reading the rules would need CAP_NET_ADMIN.
 *
 * Cost: /proc is listed and each process's `comm` read (one small read
 * each) only when the set of candidate doubles changes (a host listener
 * on the port and protocol of a published container listener); most
 * scans have none and read nothing. Hand-written: no npm package reads
 * docker-proxy's arguments.
 */

/** One docker-proxy: the host's port it listens on, and where it forwards. */
export interface Forwarder {
  pid: number;
  protocol: 'tcp' | 'udp';
  hostAddress: string;
  hostPort: number;
  containerAddress: string;
  containerPort: number;
}

/** Forwarders remembered at most (Docker starts one per published port and address family). */
export const MAX_FORWARDERS = 4096;
/** What `comm` says of Docker's userland proxy. */
const PROXY_COMM = 'docker-proxy';

/**
 * The two ends of a docker-proxy's command line (Go's flag syntax: `-name
 * value`, `--name value`, `-name=value`), or undefined when a part is
 * missing or malformed.
 */
export function parseDockerProxyArgs(args: readonly string[]): Omit<Forwarder, 'pid'> | undefined {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const m = /^--?([a-z-]+)(?:=(.*))?$/.exec(args[i]!);
    if (!m) continue;
    const value = m[2] ?? args[i + 1];
    if (value === undefined) continue;
    flags.set(m[1]!, value);
    if (m[2] === undefined) i++;
  }
  const protocol = flags.get('proto') ?? 'tcp';
  const hostPort = Number(flags.get('host-port'));
  const containerPort = Number(flags.get('container-port'));
  const containerAddress = flags.get('container-ip');
  const validPort = (p: number) => Number.isInteger(p) && p > 0 && p < 65536;
  if ((protocol !== 'tcp' && protocol !== 'udp') || !validPort(hostPort) || !validPort(containerPort) || !containerAddress) return undefined;
  return { protocol, hostAddress: flags.get('host-ip') ?? '0.0.0.0', hostPort, containerAddress, containerPort };
}

/**
 * Every docker-proxy under `procRoot`, at most MAX_FORWARDERS, looking at
 * DEFAULT_MAX_PROCESSES processes at most (as the socket-owner walk);
 * processes that vanish or cannot be read are skipped.
 */
export async function findForwarders(procRoot: string): Promise<Forwarder[]> {
  let pids: string[];
  try {
    pids = (await readdir(procRoot)).filter((n) => /^[0-9]+$/.test(n)).slice(0, DEFAULT_MAX_PROCESSES);
  } catch {
    return [];
  }
  const out: Forwarder[] = [];
  for (const pid of pids) {
    if (out.length >= MAX_FORWARDERS) break;
    const comm = await readFile(join(procRoot, pid, 'comm'), 'latin1').catch(() => '');
    if (comm.trim() !== PROXY_COMM) continue;
    // Its arguments as the socket-owner walk reads any process's.
    const parsed = parseDockerProxyArgs((await describeProcess(procRoot, Number(pid)))?.args ?? []);
    if (parsed) out.push({ pid: Number(pid), ...parsed });
  }
  return out;
}

/** A host socket and a container listener it may double: same port and protocol. */
export interface ForwardCandidate {
  port: number;
  protocol: 'tcp' | 'udp';
  /** The host socket's inodes (its life: a new process on the port is looked at again). */
  inodes: readonly string[];
}

/**
 * The forwarders behind the candidate doubles, looked up again only when
 * the candidates change (see the module comment for the cost).
 */
export class ForwarderIndex {
  private key = '';
  private found: Forwarder[] = [];

  constructor(
    private readonly procRoot: string,
    private readonly find: (procRoot: string) => Promise<Forwarder[]> = findForwarders,
  ) {}

  /** The forwarders for these candidates; none looked for when there is no candidate. */
  async lookup(candidates: readonly ForwardCandidate[]): Promise<readonly Forwarder[]> {
    const key = candidates
      .map((c) => `${c.port}/${c.protocol}:${[...c.inodes].sort().join(',')}`)
      .sort()
      .join(' ');
    if (key === this.key) return this.found;
    this.key = key;
    this.found = key === '' ? [] : await this.find(this.procRoot);
    return this.found;
  }
}

/** A socket as the inventory holds it: the host's (no namespace) or a container's. */
type Socket = Pick<ListeningSocket, 'port' | 'family' | 'inodes'> & { namespace?: Pick<ListenerNamespace, 'label' | 'addresses' | 'published'> | undefined };

const keyOf = (s: Socket) => `${s.port}/${protocolOf(s.family)}`;

/** The host's sockets on the port and protocol of a published container listener: the doubles worth a look at the processes. */
export function forwardCandidates(sockets: readonly Socket[]): ForwardCandidate[] {
  const published = new Set(sockets.filter((s) => s.namespace?.published).map(keyOf));
  return sockets.filter((s) => !s.namespace && published.has(keyOf(s))).map((s) => ({ port: s.port, protocol: protocolOf(s.family), inodes: s.inodes }));
}

/**
 * The sockets, each host socket that a forwarder sends to a published
 * container listener of the same port and protocol marked `forwardedTo`
 * it. The forward may aim at any address of the container's namespace (a
 * container on Docker's bridge, where `-p` forwards, and on a routed
 * network, where it is published).
 */
export function markForwarded<S extends Socket>(sockets: readonly S[], forwarders: readonly Forwarder[]): (S & { forwardedTo?: ForwardedTo | undefined })[] {
  const published = new Map<string, NonNullable<Socket['namespace']>[]>();
  for (const s of sockets) if (s.namespace?.published) published.set(keyOf(s), [...(published.get(keyOf(s)) ?? []), s.namespace]);
  return sockets.map((s) => {
    if (s.namespace) return s;
    const protocol = protocolOf(s.family);
    for (const f of forwarders) {
      if (f.protocol !== protocol || f.hostPort !== s.port || f.containerPort !== s.port) continue;
      const target = f.containerAddress.replace(/^::ffff:/i, '');
      const to = published.get(keyOf(s))?.find((n) => n.published === target || n.addresses.includes(target));
      if (to) return { ...s, forwardedTo: { address: to.published!, port: s.port, namespace: to.label } };
    }
    return s;
  });
}
