import { opendirSync, readlinkSync, type Dir, type Dirent } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { basename, join } from 'node:path';

/**
 * Who holds a socket: from the inode /proc/net/{tcp,udp}{,6} print for it
 * to the process that has it open (`/proc/<pid>/fd/<n>` → `socket:[<inode>]`),
 * and what that process is: its executable and arguments, its systemd
 * unit and its container (from `/proc/<pid>/cgroup`).
 *
 * The cgroup parser (parseCgroup) is the one every caller uses: this
 * host's inventory names listeners by their process (issue 22,
 * process-names.ts), and the inventory of other network namespaces
 * (issue 26, namespaces.ts through container.ts) reads which container or
 * pod a namespace belongs to from one of its processes' cgroup. That
 * inventory does not walk `/proc/<pid>/fd` (another user's descriptors
 * need CAP_SYS_PTRACE, which the DaemonSet does not add); process names of
 * a container's listener come from this walk when the daemon may read them
 * (inodes are unique across network namespaces).
 *
 * No library does this on npm (the `ps`-style packages list processes, not
 * which one holds an inode), so it is written here, bounded:
 * - `/proc/*\/fd` is walked only for inodes never looked up before, never
 *   every scan: an inode found (or not found) is remembered while it lives;
 * - one walk reads at most `maxProcesses` processes and `maxFds` fd entries,
 *   newest process first (a new listener's process is usually recent), and
 *   stops once every wanted inode is found; what it did not reach stays
 *   unknown (`truncated`), never retried for the same inode;
 * - walks run one at a time, at most one per `minWalkIntervalMs`;
 * - a walk holds the event loop for at most WALK_SLICE_ENTRIES entries at
 *   a time (findInodes), so the queries the daemon answers wait for one
 *   slice, never for the walk;
 * - what it remembers is bounded by `maxRemembered`, and `retain` drops
 *   inodes no longer listening.
 * A process the daemon may not read (another user's, without the
 * capability to) is skipped: its sockets stay unknown.
 */

/** The container a process runs in, as its cgroup path tells it. */
export interface ContainerRef {
  /** The container id (64 hex digits for docker, containerd, CRI-O and podman; the name for LXC). */
  id: string;
  /** Who runs it, from the cgroup path's form. */
  runtime: 'docker' | 'containerd' | 'cri-o' | 'podman' | 'lxc' | 'kubernetes';
  /** Kubernetes: the pod's UID (`kubepods…pod<uid>`), dashes restored. */
  podUid?: string | undefined;
}

/** What holds a socket. */
export interface SocketOwner {
  /** The lowest pid holding it (a pre-forking server's children share their parent's socket). */
  pid: number;
  /** `/proc/<pid>/comm`: the name the kernel keeps (at most 15 characters). */
  comm: string;
  /** The file name of `/proc/<pid>/exe`'s target; undefined when it cannot be read. */
  exe: string | undefined;
  /** `/proc/<pid>/cmdline`, at most 16 arguments of 256 characters. */
  args: string[];
  /** The systemd service the process runs in, without `.service` (`api`, `worker@3`); undefined outside one. */
  unit: string | undefined;
  /** The container the process runs in; undefined outside one. */
  container: ContainerRef | undefined;
}

export interface SocketOwnersOptions {
  /** Where /proc is (default /proc); tests and `--proc-root` point elsewhere. */
  procRoot?: string | undefined;
  /** Processes read at most per walk (default 32768, the kernel's default pid_max). */
  maxProcesses?: number | undefined;
  /** fd entries read at most per walk, over every process (default 262144). */
  maxFds?: number | undefined;
  /** Inodes remembered at most (default 4096); the oldest go first. */
  maxRemembered?: number | undefined;
  /** A walk starts at most this often (default 1000 ms). */
  minWalkIntervalMs?: number | undefined;
  now?: (() => number) | undefined;
}

/** What one walk did. */
export interface WalkStats {
  processes: number;
  fds: number;
  /** Inodes asked for and found. */
  found: number;
  /** True when a bound stopped the walk before every process was read. */
  truncated: boolean;
  /** Turns of the event loop it took (a slice of at most WALK_SLICE_ENTRIES entries each). */
  slices: number;
}

export const DEFAULT_MAX_PROCESSES = 32_768;
export const DEFAULT_MAX_FDS = 262_144;
export const DEFAULT_MAX_REMEMBERED = 4_096;
/**
 * Entries of `/proc/<pid>/fd` a walk reads in one turn of the event loop
 * before it yields (setImmediate, after the turn's I/O: DNS queries that
 * came meanwhile are answered first). Each is one readlink of procfs, about
 * 10 µs here, so a slice holds the loop ~0.2–0.3 ms. (issue 24: the walk
 * as promises, 8 readlinks in flight, cost ~3× the main thread's time of
 * these synchronous calls, in long runs of callbacks: the first second
 * after ready, beside ~400 processes, it was the largest share of the
 * queries that waited, per a CPU profile.) procfs answers these from
 * memory: readlink of an fd entry takes no lock a stuck process holds.
 */
export const WALK_SLICE_ENTRIES = 24;
const MAX_ARGS = 16;
const MAX_ARG_CHARS = 256;

export class SocketOwners {
  private readonly procRoot: string;
  /** inode → its owner, or null when a walk did not find it (gone, unreadable, past a bound). Bounded by maxRemembered. */
  private readonly known = new Map<string, SocketOwner | null>();
  /** Inodes asked for and not looked up yet: the next walk's. Bounded by maxRemembered. */
  private readonly wanted = new Set<string>();
  private walking: Promise<void> | undefined;
  private lastWalkMs = -Infinity;
  private readonly now: () => number;
  /** The last walk's figures (diagnostics and tests). */
  lastWalk: WalkStats | undefined;
  /** Walks done. */
  walks = 0;
  /** Called after a walk that placed at least one inode (the inventory re-emits its snapshot with the names). */
  onLearned: (() => void) | undefined;

  constructor(private readonly opts: SocketOwnersOptions = {}) {
    this.procRoot = opts.procRoot ?? '/proc';
    this.now = opts.now ?? Date.now;
  }

  /**
   * What is known now of these inodes, without waiting: an owner, null
   * (looked up, not found), or undefined (not looked up yet). Inodes never
   * looked up are walked for in the background, at most one walk per
   * minWalkIntervalMs; `onLearned` says when it placed some.
   */
  peek(inodes: readonly string[]): Map<string, SocketOwner | null | undefined> {
    const out = new Map<string, SocketOwner | null | undefined>();
    for (const inode of inodes) out.set(inode, this.known.get(inode));
    if (this.want(inodes)) this.schedule();
    return out;
  }

  /**
   * The owners of these inodes, walking /proc for those never looked up
   * (bounded, see the module's comment) and waiting for it. Never rejects:
   * an inode it cannot place is null.
   */
  async lookup(inodes: readonly string[]): Promise<Map<string, SocketOwner | null>> {
    if (this.want(inodes)) {
      // One running walk may have read its set before these were asked: wait for it, then walk for what is left.
      await this.walking;
      if (this.wanted.size > 0) {
        this.walking = this.walk().finally(() => (this.walking = undefined));
        await this.walking;
      }
    }
    return new Map(inodes.map((n) => [n, this.known.get(n) ?? null]));
  }

  /** Resolves when no walk is running or scheduled. */
  async settled(): Promise<void> {
    while (this.walking) await this.walking;
  }

  /** Forgets every inode not in `live` (sockets that closed): memory follows what listens. */
  retain(live: ReadonlySet<string>): void {
    for (const inode of this.known.keys()) if (!live.has(inode)) this.known.delete(inode);
    for (const inode of this.wanted) if (!live.has(inode)) this.wanted.delete(inode);
  }

  /** Notes the inodes never looked up; true when there is any. */
  private want(inodes: readonly string[]): boolean {
    const max = this.opts.maxRemembered ?? DEFAULT_MAX_REMEMBERED;
    for (const n of inodes) if (!this.known.has(n) && this.wanted.size < max) this.wanted.add(n);
    return this.wanted.size > 0;
  }

  /** A walk now, or when the interval since the last one ends; one at a time, and another after it if more was asked meanwhile. */
  private schedule(): void {
    if (this.walking) return;
    const wait = this.lastWalkMs + (this.opts.minWalkIntervalMs ?? 1000) - this.now();
    const start = wait > 0 ? new Promise<void>((resolve) => setTimeout(resolve, wait).unref()) : Promise.resolve();
    this.walking = start
      .then(() => this.walk())
      .finally(() => {
        this.walking = undefined;
        if (this.wanted.size > 0) this.schedule();
      });
  }

  /** One walk for every inode wanted when it starts. */
  private async walk(): Promise<void> {
    const wanted = new Set(this.wanted);
    this.wanted.clear();
    if (wanted.size === 0) return;
    this.lastWalkMs = this.now();
    this.walks++;
    const found = await findInodes(this.procRoot, wanted, {
      maxProcesses: this.opts.maxProcesses ?? DEFAULT_MAX_PROCESSES,
      maxFds: this.opts.maxFds ?? DEFAULT_MAX_FDS,
    });
    const owners = new Map<number, SocketOwner | null>();
    for (const inode of wanted) {
      const pids = found.holders.get(inode);
      let owner: SocketOwner | null = null;
      if (pids && pids.length > 0) {
        const pid = Math.min(...pids);
        if (!owners.has(pid)) owners.set(pid, await describeProcess(this.procRoot, pid));
        owner = owners.get(pid) ?? null;
      }
      this.remember(inode, owner);
    }
    this.lastWalk = { processes: found.processes, fds: found.fds, found: found.holders.size, truncated: found.truncated, slices: found.slices };
    if (found.holders.size > 0) this.onLearned?.();
  }

  private remember(inode: string, owner: SocketOwner | null): void {
    this.known.delete(inode);
    this.known.set(inode, owner);
    const max = this.opts.maxRemembered ?? DEFAULT_MAX_REMEMBERED;
    while (this.known.size > max) this.known.delete(this.known.keys().next().value!);
  }
}

/** The pids holding each wanted inode, and what the walk cost. */
interface Found {
  holders: Map<string, number[]>;
  processes: number;
  fds: number;
  truncated: boolean;
  /** Turns of the event loop the walk took (it yields after every WALK_SLICE_ENTRIES entries). */
  slices: number;
}

/**
 * Walks `<procRoot>/<pid>/fd` for sockets with the wanted inodes, newest
 * pid first, within the bounds, in slices of WALK_SLICE_ENTRIES entries
 * with the event loop's turn between them. Processes that vanish or cannot
 * be read are skipped. Every holder of an inode is found when the walk reads every
 * process; it stops early once each inode has one holder.
 */
export async function findInodes(procRoot: string, wanted: ReadonlySet<string>, bounds: { maxProcesses: number; maxFds: number }): Promise<Found> {
  const holders = new Map<string, number[]>();
  let pids: number[];
  try {
    pids = (await readdir(procRoot)).filter((n) => /^[0-9]+$/.test(n)).map(Number).sort((a, b) => b - a);
  } catch {
    return { holders, processes: 0, fds: 0, truncated: false, slices: 0 };
  }
  const targets = new Set([...wanted].map((n) => `socket:[${n}]`));
  let processes = 0;
  let fds = 0;
  let truncated = false;
  let slices = 1;
  let budget = WALK_SLICE_ENTRIES;
  /** One entry's worth of the slice; past the slice, the loop's turn first. */
  const spend = async () => {
    if (--budget >= 0) return;
    await new Promise<void>((resolve) => setImmediate(resolve));
    slices++;
    budget = WALK_SLICE_ENTRIES - 1;
  };
  const done = () => holders.size >= wanted.size;
  walk: for (const pid of pids) {
    if (done()) break;
    if (processes >= bounds.maxProcesses || fds >= bounds.maxFds) {
      truncated = true;
      break;
    }
    processes++;
    await spend();
    const dirPath = join(procRoot, String(pid), 'fd');
    let dir: Dir;
    try {
      dir = opendirSync(dirPath);
    } catch {
      continue; // gone, or not ours to read
    }
    try {
      for (;;) {
        let entry: Dirent | null;
        try {
          entry = dir.readSync();
        } catch {
          break; // the process ended meanwhile
        }
        if (entry === null) break;
        if (fds >= bounds.maxFds) {
          truncated = true;
          break walk;
        }
        fds++;
        await spend();
        let target: string;
        try {
          target = readlinkSync(join(dirPath, entry.name));
        } catch {
          continue;
        }
        if (!targets.has(target)) continue;
        const inode = target.slice(8, -1);
        const list = holders.get(inode) ?? [];
        if (!list.includes(pid)) list.push(pid);
        holders.set(inode, list);
      }
    } finally {
      dir.closeSync();
    }
  }
  return { holders, processes, fds, truncated, slices };
}

/** What /proc says of one process; null when it is gone or unreadable. */
export async function describeProcess(procRoot: string, pid: number): Promise<SocketOwner | null> {
  const dir = join(procRoot, String(pid));
  const read = async (f: string) => {
    try {
      return await readFile(join(dir, f), 'latin1');
    } catch {
      return undefined;
    }
  };
  const comm = await read('comm');
  if (comm === undefined) return null;
  let exe: string | undefined;
  try {
    exe = basename((await readlink(join(dir, 'exe'))).replace(/ \(deleted\)$/, ''));
  } catch {
    exe = undefined;
  }
  const cmdline = (await read('cmdline')) ?? '';
  const args = cmdline
    .split('\0')
    .filter((a, i, all) => a !== '' || i < all.length - 1)
    .slice(0, MAX_ARGS)
    .map((a) => a.slice(0, MAX_ARG_CHARS));
  const cgroup = parseCgroup((await read('cgroup')) ?? '');
  return { pid, comm: comm.trim(), exe, args, unit: cgroup.unit, container: cgroup.container };
}

const HEX64 = /[0-9a-f]{64}/;

/**
 * The systemd unit and the container a `/proc/<pid>/cgroup` text names.
 * cgroup v2 has one line (`0::/system.slice/api.service`); v1 one per
 * hierarchy, of which the `name=systemd` one (else the first with a path)
 * is read. The unit is the innermost `*.service` of the path (a service a
 * user's manager runs, `user@1000.service/app.slice/api.service`, is
 * `api`). Containers are told by the path forms their runtimes write:
 *   docker        /docker/<id>, /system.slice/docker-<id>.scope
 *   containerd    /system.slice/containerd-<id>.scope (nerdctl), cri-containerd-<id>.scope
 *   cri-o         crio-<id>.scope
 *   podman        /machine.slice/libpod-<id>.scope
 *   kubernetes    kubepods…/pod<uid>…/<id> (with the pod's UID)
 *   lxc           /lxc/<name>, /lxc.payload.<name>
 */
export function parseCgroup(text: string): { unit: string | undefined; container: ContainerRef | undefined } {
  const lines = text.split('\n').filter((l) => l.includes(':'));
  const pathOf = (l: string) => l.split(':').slice(2).join(':');
  // Inside a cgroup namespace the path starts from its root upwards (`/../..`): the segments below still say it.
  const partsOf = (l: string | undefined) => (l === undefined ? '' : pathOf(l)).split('/').filter((p) => p !== '' && p !== '..');
  const pick =
    lines.find((l) => l.startsWith('0::') && pathOf(l) !== '/') ?? lines.find((l) => l.split(':')[1] === 'name=systemd') ?? lines.find((l) => pathOf(l) !== '/' && pathOf(l) !== '');
  const parts = partsOf(pick);
  // cgroup v1: the hierarchy that says the unit may not say the container; any other line that does is read for it.
  const found = containerOf(parts) ?? lines.map((l) => containerOf(partsOf(l))).find((c) => c !== undefined);
  // A unit above the container is the runtime's (containerd.service holding a pod): the process's own is inside it (LXC).
  let unit: string | undefined;
  for (const p of parts.slice(found && found.parts === parts ? found.at + 1 : 0)) if (p.endsWith('.service') && !/^user@\d+\.service$/.test(p)) unit = p.slice(0, -'.service'.length);
  return { unit, container: found?.container };
}

function containerOf(parts: readonly string[]): { container: ContainerRef; at: number; parts: readonly string[] } | undefined {
  const pod = parts.map((p) => /pod([0-9a-f]{8}[_-][0-9a-f]{4}[_-][0-9a-f]{4}[_-][0-9a-f]{4}[_-][0-9a-f]{12})/.exec(p)?.[1]).find((x) => x !== undefined);
  const podUid = pod?.replace(/_/g, '-');
  for (let i = parts.length - 1; i >= 0; i--) {
    const p = parts[i]!;
    // CRI-O's monitor (conmon) has a scope of its own named after the container: it is not the container.
    if (p.startsWith('crio-conmon-')) continue;
    const id = HEX64.exec(p)?.[0];
    if (!id) continue;
    const runtime: ContainerRef['runtime'] = p.includes('cri-containerd') || p.startsWith('containerd-')
      ? 'containerd'
      : p.startsWith('crio-') || p.includes(':crio:')
        ? 'cri-o'
        : p.startsWith('libpod-') || parts[i - 1] === 'libpod_parent'
          ? 'podman'
          : p.startsWith('docker-') || parts[i - 1] === 'docker'
            ? 'docker'
            : podUid !== undefined
              ? 'kubernetes'
              : 'docker';
    return { container: podUid !== undefined ? { id, runtime, podUid } : { id, runtime }, at: i, parts };
  }
  const lxc = parts.findIndex((p) => p === 'lxc' || p.startsWith('lxc.payload.'));
  if (lxc >= 0) {
    const at = parts[lxc] === 'lxc' ? lxc + 1 : lxc;
    const name = parts[lxc] === 'lxc' ? parts[lxc + 1] : parts[lxc]!.slice('lxc.payload.'.length);
    if (name) return { container: { id: name, runtime: 'lxc' }, at, parts };
  }
  return undefined;
}
