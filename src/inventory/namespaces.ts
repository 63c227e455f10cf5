import { closeSync, existsSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { forEachLimited } from '../concurrency.js';
import { NetworkSet, type Cidr } from '../config/cidr.js';
import { ErrorCodes, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { containerOfCgroup, PodDirectory, type ContainerIdentity } from './container.js';
import { readNamespaceAddresses } from './netns-addresses.js';
import { readListeningSockets, type ListeningSocket } from './procnet.js';

/**
 * Every network namespace on the host, and what listens in each (issue 26):
 * containers and pods, which the daemon's own /proc/net/tcp never shows.
 *
 * Found through processes: each process's `/proc/<pid>/net/` is its
 * namespace's, so one process per namespace reads it. A namespace is told
 * apart by the inode of its /proc entries (`<pid>/net/tcp`): every process
 * of a namespace shows the same one, and stat() needs no privileges, where
 * `/proc/<pid>/ns/net` needs ptrace rights (CAP_SYS_PTRACE) over the
 * process (measured: as uid 1000 without capabilities, `net/*` and
 * `cgroup` of root's processes read fine; `ns/net` is EACCES). So the
 * daemon needs the host's PID namespace (Kubernetes `hostPID: true`) and no
 * capability. A namespace only bind-mounted (`/run/netns/X`) with no
 * process inside holds no listener anyone runs, and Node cannot setns()
 * into it to look: it is not read (its processes, once started, are).
 *
 * Cost discipline (issue 24), because reading a namespace's `net/tcp` walks
 * the kernel's TCP hash tables, which all namespaces share unless the host
 * sets `net.ipv4.tcp_child_ehash_entries` (measured here: 10–20 ms per file
 * with the shared table, ~0.1 ms with a per-namespace one):
 *
 * - Processes: the last PID in `/proc/loadavg` (one read of a kept
 *   descriptor; the last one of the reader's PID namespace, so other
 *   namespaces' processes do not move it) changes whenever a process
 *   starts; only then is `/proc` listed, and only new PIDs are looked at (a
 *   stat each). A namespace's process that ends is seen by checking each
 *   namespace's one process (kill(pid, 0), a system call) when the host's
 *   thread count (the same read of loadavg) moved, and every UNGATED_EVERY
 *   scans whatever it says; only then is `/proc` listed for another. A PID first seen in the daemon's own namespace is looked at
 *   once more at the next scan (`ip netns exec`, `unshare -n`: a process
 *   joins its namespace just after it starts). Every FULL_WALK_MS every PID
 *   is looked at again (a process that moved with setns). Writes to the
 *   runtimes' namespace directories (`/run/netns`, `/run/docker/netns`),
 *   watched with inotify, list `/proc` at the next scan whatever the PIDs say.
 * - Sockets: a namespace is read when it appears, when a new process
 *   starts in it, and when its socket counters change (`net/sockstat`,
 *   `sockstat6`: TCP and UDP sockets in use, through descriptors kept open;
 *   first sockstat's count of all its sockets, one pread, and the rest only
 *   when that moved or every UNGATED_EVERY scans; when they moved,
 *   `net/snmp`'s CurrEstab, so connections coming and going do not count). Every
 *   namespace's counters are looked at every scan, stable or not: a
 *   listener a process that has run for a while opens late (a JVM binding
 *   after its warm-up) is seen at the next scan, within the convergence
 *   bound. (They were looked at only when the host's TCP allocation count,
 *   sockstat's global `alloc`, had moved since the last scan, or every
 *   UNGATED_EVERY scans: that count is not a count of events, and a socket
 *   freed anywhere on the host in the same second, a connection leaving
 *   FIN_WAIT2 or TIME_WAIT long after its close, left it where it was, so a
 *   late listener waited for the fifth scan: the late binds' slow tail of
 *   issue 26, 1.8–2.8 s against its 1.5 s. What it saved was one pread a
 *   namespace a scan on a host where no TCP socket came or went.) (A back-off of stable namespaces,
 *   every fourth scan, saved three quarters of these looks, ~3 µs each,
 *   0.3 ms a scan with 100 namespaces, and cost such a listener up to 4
 *   scans: 4 s, against issue 26's 1.5 s.) What the counters cannot show, a
 *   listener replaced on its port by the same process count, is read when
 *   told (invalidate()).
 * - A namespace where a process just started (a container starting, a pod's
 *   app container after its sandbox) is watched closely for EAGER_MS: its
 *   counters are looked at every EAGER_STEP_MS between scans, and a move
 *   asks for a scan at once (`onHint`), so a container's listener reaches
 *   answers in a fraction of the scan interval. Only that namespace's
 *   counters are read meanwhile.
 * - Back-off: a read that finds the same listeners (the counters moved for
 *   connections in other states) doubles that namespace's wait before the
 *   next read, up to MAX_READ_GAP_MS; a read that finds a change resets it,
 *   and so does a new process in the namespace (read at the next scan: a
 *   container restarted in a busy pod), and none is taken while the
 *   namespace is watched closely. What the back-off costs: a process that
 *   has run a while in a namespace busy with connections and then binds
 *   waits up to MAX_READ_GAP_MS.
 *   A namespace that does not change costs its counter reads, nothing more.
 */

export type NamespaceMode = 'all' | 'own';

/** One namespace other than the daemon's own, as last read. */
export interface ObservedNamespace {
  /** Its identity while it lives (the inode of its /proc net entries). */
  id: string;
  /** A DNS label naming it in cluster keys and answers: the container's short id, a `/run/netns` name, else `ns-<inode>`. */
  label: string;
  /** A process inside it. */
  pid: number;
  /** The unicast addresses it owns, IPv4 first. */
  addresses: readonly string[];
  container?: ContainerIdentity | undefined;
  sockets: readonly ListeningSocket[];
}

/** What the daemon observes, said plainly (inventory, /readyz). */
export interface NamespaceScope {
  mode: NamespaceMode;
  /** `all`: every network namespace of the processes it sees; `own`: only its own (why in `reason`). */
  observing: 'all' | 'own';
  reason?: string | undefined;
  code?: ErrorCode | undefined;
  /** Namespaces besides its own observed now. */
  count: number;
}

/** Namespaces observed at most: anyone may create network namespaces (user namespaces), so the set has a bound. */
export const MAX_NAMESPACES = 1024;
/** Every PID looked at again this often (a process that changed namespace with setns()). */
export const FULL_WALK_MS = 60_000;
/** Every this many scans, the counters are looked at thoroughly (a socket opened while another closed leaves sockstat's `used` as it was) and every namespace's process is asked whether it lives. */
export const UNGATED_EVERY = 5;
/** The longest wait between two reads of a namespace whose counters keep moving for connections. */
export const MAX_READ_GAP_MS = 32_000;
/** How long a namespace where a process started is watched closely, and how often. */
export const EAGER_MS = 5_000;
export const EAGER_STEP_MS = 100;
/** Namespaces read at once (each read is a kernel table walk on one of the libuv threads). */
const READ_CONCURRENCY = 2;
/** Where runtimes bind-mount the namespaces they create: ip netns, CNI (containerd, CRI-O), Docker. */
export const DEFAULT_NETNS_DIRS = ['/run/netns', '/run/docker/netns'];

export interface NamespaceWatcherOptions {
  /** The /proc to read (the host's: the daemon needs its PID namespace). */
  procRoot: string;
  mode: () => NamespaceMode;
  /** The kubelet's pod log directory, for pod names (default /var/log/pods). */
  podDirectory?: string | undefined;
  /** Directories of bind-mounted namespaces, watched as a hint (default DEFAULT_NETNS_DIRS). */
  netnsDirs?: readonly string[] | undefined;
  logger?: Logger | undefined;
  now?: (() => number) | undefined;
  /** Counts reads by trigger (new, process, counters, invalidated), with the namespace's label (tests). */
  countRead?: ((trigger: ReadTrigger, label: string) => void) | undefined;
  /** Asks for a scan now: a namespace watched closely moved its counters. Without it, nothing is watched between scans. */
  onHint?: (() => void) | undefined;
}

export type ReadTrigger = 'new' | 'process' | 'counters' | 'invalidated';

interface Space {
  id: string;
  pid: number;
  label: string;
  container: ContainerIdentity | undefined;
  addresses: string[];
  sockets: ListeningSocket[];
  /** Kept descriptors of net/sockstat, net/sockstat6, net/snmp (−1: not there). */
  fds: number[];
  fingerprint: string;
  /** sockstat and sockstat6 as last read: unchanged, nothing else is read. */
  rawCounters: string;
  /** sockstat's `sockets: used` as last read. */
  used: string | undefined;
  /** Watched closely until then (a process started in it). */
  eagerUntilMs: number;
  trigger: ReadTrigger | undefined;
  lastReadMs: number;
  gapMs: number;
  read: boolean;
}

interface Pid {
  ns: string;
  /** Look again at the next scan (first seen in the daemon's own namespace). */
  recheck: boolean;
}

export class NamespaceWatcher {
  private readonly logger: Logger;
  private readonly now: () => number;
  /** pid → its namespace. Bounded by the processes of the host (its pid_max). */
  private readonly pids = new Map<number, Pid>();
  /** namespace id → state. Bounded by MAX_NAMESPACES. */
  private readonly spaces = new Map<string, Space>();
  private own: string | undefined;
  private loadavgFd = -1;
  private lastSignal = '';
  private lastThreads: string | undefined;
  private readonly useKill: boolean;
  private scans = 0;
  private lastFullWalkMs = Number.NEGATIVE_INFINITY;
  private hinted = true;
  private watchers: FSWatcher[] = [];
  private readonly pods: PodDirectory;
  private readonly buf = Buffer.alloc(4096);
  private scope: NamespaceScope = { mode: 'all', observing: 'all', count: 0 };
  private loggedScope = '';
  private capLogged = false;
  private nested: boolean | undefined;
  /** Why processes under procRoot cannot show other namespaces (read once); `listing` when /proc could not be listed. */
  private restriction: { reason: string; code: ErrorCode } | undefined;
  private restrictionRead = false;
  private unreadable = 0;
  /** Work done so far (tests and the bench count it): looks at a namespace's counters, and reads of its tables. */
  readonly work = { counterChecks: 0, reads: 0 };

  constructor(private readonly o: NamespaceWatcherOptions) {
    this.logger = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
    this.pods = new PodDirectory(o.podDirectory ?? '/var/log/pods', this.now);
    // kill(pid, 0) asks this process's PID namespace: right only when procRoot is its own /proc.
    this.useKill = o.procRoot === '/proc';
  }

  /** What is observed, as of the last scan. */
  status(): NamespaceScope {
    return this.scope;
  }

  /**
   * The namespace labelled `label` (every one without a label) is read at
   * the next scan whatever its counters and back-off say: for what the
   * counters cannot show, a listener replaced on its port (a container's
   * service restarted in place) when something else says it may have been
   * (a readiness probe's kept connection lost, a drain waiting for the
   * restart). ListenerScanner.invalidate() is the same for the daemon's own
   * namespace.
   */
  invalidate(label?: string): void {
    for (const s of this.spaces.values()) {
      if (label !== undefined && s.label !== label) continue;
      s.trigger ??= 'invalidated';
      s.gapMs = 0;
    }
  }

  /**
   * Brings every namespace up to date (see the class comment for what is
   * read when) and returns them, sorted by label, with whether anything
   * changed since the last scan. Never rejects: what cannot be read is left
   * out, and said in status().
   */
  async scan(): Promise<{ namespaces: ObservedNamespace[]; changed: boolean; scope: NamespaceScope }> {
    const mode = this.o.mode();
    if (mode === 'own') {
      const changed = this.spaces.size > 0;
      this.close();
      this.setScope({ mode, observing: 'own', reason: 'the namespaces setting is own', count: 0 });
      return { namespaces: [], changed, scope: this.scope };
    }
    this.start();
    const now = this.now();
    let changed = false;
    const loadavg = this.pread(this.loadavgFd);
    const signal = processSignal(loadavg);
    // Whether any thread ended (or started) on the host since the last scan: only then may a namespace's process have
    // gone, and each one's is asked (every UNGATED_EVERY scans whatever it says: a start elsewhere may hide an end).
    const threads = threadCount(loadavg);
    const maybeLost = threads === undefined || threads !== this.lastThreads || this.scans % UNGATED_EVERY === 0;
    this.lastThreads = threads;
    const full = now - this.lastFullWalkMs >= FULL_WALK_MS;
    if (full || this.hinted || signal === undefined || signal !== this.lastSignal || (maybeLost && this.lostProcess())) {
      this.hinted = false;
      this.lastSignal = signal ?? '';
      changed = this.walk(full, now) || changed;
      this.listed = undefined;
    } else {
      changed = this.recheck() || changed;
    }
    const thorough = this.scans % UNGATED_EVERY === 0;
    this.scans++;
    const due: Space[] = [];
    for (const s of this.spaces.values()) {
      if (!s.read) s.trigger ??= 'new';
      else if (s.trigger === undefined) {
        this.work.counterChecks++;
        if (this.fingerprint(s, thorough) !== s.fingerprint) s.trigger = 'counters';
      }
      if (s.trigger && now - s.lastReadMs >= s.gapMs) due.push(s);
    }
    if (due.length > 0) this.listed = undefined;
    // Traced for the bench (bench/containers.ts); built only at debug: a scan a second makes no garbage for it otherwise.
    if (this.logger.isLevelEnabled('debug')) this.logger.debug({ thorough, due: due.slice(0, 8).map((s) => s.label) }, 'namespaces scanned');
    await forEachLimited(due, READ_CONCURRENCY, async (s) => {
      if (await this.read(s, now)) changed = true;
    });
    this.updateScope();
    this.watchEager();
    // Remade only after a walk or a read: a scan that did neither (most of them) hands back the last list.
    this.listed ??= [...this.spaces.values()]
      .filter((s) => s.read)
      .sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0))
      .map((s) => ({ id: s.id, label: s.label, pid: s.pid, addresses: s.addresses, container: s.container, sockets: s.sockets }));
    return { namespaces: this.listed, changed, scope: this.scope };
  }

  /** The last scan's namespaces, as returned (undefined: to be made again). */
  private listed: ObservedNamespace[] | undefined;

  private eagerTimer: NodeJS.Timeout | undefined;

  /** Between scans, looks at the counters of the namespaces watched closely; a move asks for a scan (onHint). */
  private watchEager(): void {
    if (!this.o.onHint || this.eagerTimer) return;
    const step = () => {
      this.eagerTimer = undefined;
      const now = this.now();
      const eager = [...this.spaces.values()].filter((s) => s.read && s.eagerUntilMs > now);
      if (eager.length === 0) return;
      if (eager.some((s) => s.fingerprint !== this.fingerprint(s))) {
        for (const s of eager) s.trigger ??= 'counters';
        this.logger.debug({ labels: eager.slice(0, 8).map((s) => s.label) }, 'namespace watched closely moved: scanning now');
        this.o.onHint!();
        return;
      }
      this.eagerTimer = setTimeout(step, EAGER_STEP_MS);
      this.eagerTimer.unref();
    };
    this.eagerTimer = setTimeout(step, EAGER_STEP_MS);
    this.eagerTimer.unref();
  }

  /** Closes every kept descriptor and watch. */
  close(): void {
    clearTimeout(this.eagerTimer);
    this.eagerTimer = undefined;
    for (const s of this.spaces.values()) closeAll(s.fds);
    this.spaces.clear();
    this.pids.clear();
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.loadavgFd >= 0) closeQuietly(this.loadavgFd);
    this.loadavgFd = -1;
    this.own = undefined;
    this.listed = undefined;
    this.lastThreads = undefined;
    this.lastFullWalkMs = Number.NEGATIVE_INFINITY;
    this.hinted = true;
  }

  // --- processes ---

  private start(): void {
    if (this.own !== undefined) return;
    this.own = inodeOf(join(this.o.procRoot, 'net', 'tcp')) ?? '';
    this.loadavgFd = openQuietly(join(this.o.procRoot, 'loadavg'));
    for (const dir of this.o.netnsDirs ?? DEFAULT_NETNS_DIRS) {
      if (!existsSync(dir)) continue;
      try {
        const w = watch(dir, () => (this.hinted = true));
        w.on('error', () => undefined);
        w.unref();
        this.watchers.push(w);
      } catch {
        // Not watchable here: the PID signal still finds its processes.
      }
    }
  }


  /** True when some namespace's process has ended (then /proc is listed for another, or the namespace is gone). */
  private lostProcess(): boolean {
    for (const s of this.spaces.values()) if (!this.alive(s.pid)) return true;
    return false;
  }

  private alive(pid: number): boolean {
    if (this.useKill) {
      try {
        process.kill(pid, 0);
        return true;
      } catch (err) {
        return (err as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    return existsSync(join(this.o.procRoot, String(pid), 'net'));
  }

  /** Lists /proc; looks at new PIDs (every PID when `full`). Returns whether a namespace appeared or went. */
  private walk(full: boolean, now: number): boolean {
    let entries: string[];
    try {
      entries = readdirSync(this.o.procRoot);
    } catch (err) {
      this.restriction = { reason: `cannot list ${this.o.procRoot}: ${(err as Error).message}`, code: ErrorCodes.NAMESPACES_RESTRICTED };
      return false;
    }
    if (full) this.lastFullWalkMs = now;
    let changed = false;
    const present = new Set<number>();
    let unreadable = 0;
    for (const name of entries) {
      const c = name.charCodeAt(0);
      if (c < 48 || c > 57) continue;
      const pid = Number(name);
      present.add(pid);
      const known = this.pids.get(pid);
      if (known && !full && !known.recheck) continue;
      const r = this.look(pid, known === undefined);
      if (r === 'denied') unreadable++;
      if (r === 'new-namespace') changed = true;
    }
    this.unreadable = unreadable;
    for (const pid of this.pids.keys()) if (!present.has(pid)) this.pids.delete(pid);
    return this.settle() || changed;
  }

  /** Looks again at the PIDs first seen in the daemon's own namespace at the last scan (no listing). */
  private recheck(): boolean {
    let changed = false;
    for (const [pid, p] of this.pids) if (p.recheck && this.look(pid, false) === 'new-namespace') changed = true;
    return changed;
  }

  /** Records which namespace `pid` is in. */
  private look(pid: number, isNew: boolean): 'gone' | 'denied' | 'same' | 'new-namespace' {
    let id: string | undefined;
    try {
      id = String(statSync(join(this.o.procRoot, String(pid), 'net', 'tcp'), { bigint: true }).ino);
    } catch (err) {
      this.pids.delete(pid);
      const code = (err as NodeJS.ErrnoException).code;
      return code === 'EACCES' || code === 'EPERM' ? 'denied' : 'gone';
    }
    const before = this.pids.get(pid);
    this.pids.set(pid, { ns: id, recheck: isNew && id === this.own });
    if (id === this.own) return 'same';
    const space = this.spaces.get(id);
    if (space) {
      // A new process in a known namespace may be about to bind: read it again at this scan, whatever the back-off
      // says (a container restarted in a busy pod, whose connections had backed it off), and watch it closely for a while.
      if (isNew || before?.ns !== id) {
        space.trigger ??= 'process';
        space.gapMs = 0;
        space.eagerUntilMs = this.now() + EAGER_MS;
      }
      return 'same';
    }
    if (this.spaces.size >= MAX_NAMESPACES) {
      if (!this.capLogged) this.logger.warn({ code: ErrorCodes.NAMESPACES_CAP_REACHED, cap: MAX_NAMESPACES }, 'too many network namespaces: the ones past the cap are not observed');
      this.capLogged = true;
      return 'same';
    }
    this.spaces.set(id, { id, pid, label: '', container: undefined, addresses: [], sockets: [], fds: [], fingerprint: '', rawCounters: '', used: undefined, eagerUntilMs: this.now() + EAGER_MS, trigger: 'new', lastReadMs: Number.NEGATIVE_INFINITY, gapMs: 0, read: false });
    return 'new-namespace';
  }

  /** Gives each namespace a live process, and forgets the ones no process holds any more. */
  private settle(): boolean {
    let changed = false;
    for (const s of this.spaces.values()) {
      if (this.pids.get(s.pid)?.ns === s.id) continue;
      const other = [...this.pids].find(([, p]) => p.ns === s.id);
      if (other) {
        s.pid = other[0];
        continue;
      }
      closeAll(s.fds);
      this.spaces.delete(s.id);
      if (s.read) changed = true;
    }
    return changed;
  }

  // --- one namespace ---

  /**
   * Its socket counters: TCP and UDP sockets in use, less the established
   * connections. sockstat's `sockets: used` first (one pread: every socket
   * of the namespace, any family, so a TCP6 listener moves it too): the
   * same count, the same fingerprint. Otherwise, and when `thorough` (every
   * UNGATED_EVERY scans: a socket opened while another closed leaves that
   * count as it was), sockstat6 too; net/snmp only when those moved.
   */
  private fingerprint(s: Space, thorough = false): string {
    const sockstat = this.pread(s.fds[0] ?? -1) ?? '';
    const used = usedSockets(sockstat);
    if (!thorough && used !== undefined && used === s.used && s.fingerprint !== '') return s.fingerprint;
    s.used = used;
    const sockstat6 = this.pread(s.fds[1] ?? -1) ?? '';
    const raw = `${/^TCP: inuse (\d+)/m.exec(sockstat)?.[1]}/${/^UDP: inuse (\d+)/m.exec(sockstat)?.[1]}/${/^TCP6: inuse (\d+)/m.exec(sockstat6)?.[1]}/${/^UDP6: inuse (\d+)/m.exec(sockstat6)?.[1]}`;
    if (raw === s.rawCounters && s.fingerprint !== '') return s.fingerprint;
    s.rawCounters = raw;
    const [tcp4, udp4, tcp6, udp6] = raw.split('/').map((x) => Number(x === 'undefined' ? 0 : x));
    return `${tcp4! + tcp6! - currEstab(this.pread(s.fds[2] ?? -1) ?? '')}/${udp4}/${udp6}`;
  }

  /** Reads a namespace's listeners and addresses; returns whether they changed. */
  private async read(s: Space, now: number): Promise<boolean> {
    const root = join(this.o.procRoot, String(s.pid));
    if (s.fds.length === 0) s.fds = ['sockstat', 'sockstat6', 'snmp'].map((f) => openQuietly(join(root, 'net', f)));
    // Counted before the read: a change during it reads again at the next scan.
    s.fingerprint = '';
    s.fingerprint = this.fingerprint(s);
    const trigger = s.trigger ?? 'counters';
    s.trigger = undefined;
    this.o.countRead?.(trigger, s.label);
    this.work.reads++;
    const [{ sockets, errors }, addresses] = await Promise.all([readListeningSockets(root), readNamespaceAddresses(root)]);
    s.lastReadMs = now;
    // Its process went during the read: the next walk gives the namespace another one, or forgets it.
    if (errors.length > 0) {
      s.trigger = trigger;
      return false;
    }
    const first = !s.read;
    if (first) this.identify(s);
    const same = !first && sameSockets(s.sockets, sockets) && sameList(s.addresses, addresses);
    // Convergence's first stage, traced (bench/containers.ts reads it at --log-level debug): which read saw a listener.
    this.logger.debug({ label: s.label, trigger, same, ports: sockets.slice(0, 8).map((x) => x.port) }, 'namespace read');
    // Counters moved and nothing we publish did: wait longer before the next read (back-off); a change resets it,
    // and so does a new process (look()). Not while the namespace is watched closely: its new process may bind yet.
    s.gapMs = same && trigger === 'counters' && s.eagerUntilMs <= now ? Math.min(MAX_READ_GAP_MS, Math.max(1_000, s.gapMs * 2)) : 0;
    // What it was watched closely for has come: back to the scans' pace.
    if (!same && !first) s.eagerUntilMs = 0;
    s.sockets = sockets;
    s.addresses = addresses;
    s.read = true;
    // A pod's name found later (the kubelet writes its directory after the sandbox starts) is a change too.
    const named = !first && s.container?.podUid !== undefined && !s.container.pod && this.namePod(s.container);
    // A runtime may move its process into the container's cgroup just after the namespace appeared: ask again while unknown.
    if (!first && !s.container && this.containerOf(s)) {
      this.identify(s);
      return true;
    }
    return !same || named;
  }

  /** Its container and label, read once per namespace. */
  private identify(s: Space): void {
    s.container = this.containerOf(s);
    if (s.container?.podUid) this.namePod(s.container);
    const label = s.container ? s.container.id.slice(0, 12) : (this.netnsName(s) ?? `ns-${this.nsInode(s.pid) ?? s.id}`);
    const taken = [...this.spaces.values()].some((o) => o !== s && o.label === label);
    s.label = taken ? `ns-${s.id}` : label;
  }

  /**
   * The container of the namespace: that of its oldest process with one (in
   * a pod, the sandbox that holds the namespace; in Docker, the container's
   * first process). Read from the processes the walk knows in it.
   */
  private containerOf(s: Space): ContainerIdentity | undefined {
    const members = [...this.pids].filter(([, p]) => p.ns === s.id).map(([pid]) => pid);
    let best: { start: number; c: ContainerIdentity } | undefined;
    for (const pid of members.slice(0, 64)) {
      try {
        const c = containerOfCgroup(readFileSync(join(this.o.procRoot, String(pid), 'cgroup'), 'latin1'));
        if (!c) continue;
        const start = startTime(readFileSync(join(this.o.procRoot, String(pid), 'stat'), 'latin1'));
        if (!best || start < best.start) best = { start, c };
      } catch {
        // gone meanwhile
      }
    }
    return best?.c;
  }

  /** Names the container's pod, when the kubelet's directory says; returns whether it did. */
  private namePod(c: ContainerIdentity): boolean {
    const pod = this.pods.lookup(c.podUid!);
    if (!pod) return false;
    c.pod = pod.name;
    c.podNamespace = pod.namespace;
    return true;
  }

  /** The namespace's inode (as lsns and `ip netns identify` show it), when the daemon may read `ns/net` (ptrace rights). */
  private nsInode(pid: number): string | undefined {
    try {
      return /^net:\[(\d+)\]$/.exec(readlinkSync(join(this.o.procRoot, String(pid), 'ns', 'net')))?.[1];
    } catch {
      return undefined;
    }
  }

  /** A name under the runtimes' namespace directories bind-mounting this namespace (needs its inode: ptrace rights). */
  private netnsName(s: Space): string | undefined {
    const ino = this.nsInode(s.pid);
    if (!ino) return undefined;
    for (const dir of this.o.netnsDirs ?? DEFAULT_NETNS_DIRS) {
      let names: string[];
      try {
        names = readdirSync(dir);
      } catch {
        continue;
      }
      for (const n of names) {
        try {
          if (String(statSync(join(dir, n), { bigint: true }).ino) === ino && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(n)) return n;
        } catch {
          // gone meanwhile
        }
      }
    }
    return undefined;
  }

  // --- what the daemon can see ---

  private updateScope(): void {
    const count = [...this.spaces.values()].filter((s) => s.read).length;
    if (!this.restrictionRead) {
      this.restrictionRead = true;
      this.restriction ??= this.procRestriction();
    }
    let scope: NamespaceScope = { mode: 'all', observing: 'all', count };
    if (count === 0 && this.restriction) scope = { mode: 'all', observing: 'own', reason: this.restriction.reason, code: this.restriction.code, count };
    else if (count === 0 && this.unreadable > 0) {
      scope = { mode: 'all', observing: 'own', reason: `${this.unreadable} processes' /proc entries cannot be read (a security module, or ptrace rules)`, code: ErrorCodes.NAMESPACES_RESTRICTED, count };
    }
    this.setScope(scope);
  }

  private setScope(scope: NamespaceScope): void {
    this.scope = scope;
    const key = `${scope.observing} ${scope.reason ?? ''}`;
    if (key === this.loggedScope) return;
    this.loggedScope = key;
    if (scope.observing === 'own' && scope.code) this.logger.warn({ code: scope.code, reason: scope.reason }, 'observing only the daemon\'s own network namespace: containers and pods on this host are not seen');
    else if (scope.observing === 'all') this.logger.info({ namespaces: scope.count }, 'observing every network namespace on this host');
  }

  /**
   * Why the processes under procRoot cannot show other namespaces, read
   * once: /proc mounted with hidepid (systemd's ProtectProc=invisible) hides
   * other users' processes unless the daemon has CAP_SYS_PTRACE; a PID
   * namespace of its own (no hostPID) shows only its own processes. Null
   * when neither holds.
   */
  private procRestriction(): { reason: string; code: ErrorCode } | undefined {
    const status = readQuietly('/proc/self/status');
    const capEff = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
    const ptrace = (capEff & (1n << 19n)) !== 0n;
    // The last mount on procRoot is the one seen (one may sit on top of another).
    const mount = readQuietly('/proc/self/mountinfo').split('\n').filter((l) => l.split(' ')[4] === this.o.procRoot).pop() ?? '';
    const hidepid = /\s-\s+proc\s+\S+\s+\S*hidepid=(\w+)/.exec(mount)?.[1];
    if (hidepid && hidepid !== '0' && hidepid !== 'off' && !ptrace) {
      return { reason: `${this.o.procRoot} is mounted with hidepid=${hidepid} (systemd: ProtectProc=invisible), which hides other users' processes; give the daemon CAP_SYS_PTRACE or mount /proc without hidepid (ProtectProc=default)`, code: ErrorCodes.NAMESPACES_RESTRICTED };
    }
    // Kernel threads belong to the host's PID namespace alone: pid 2 is kthreadd there and nowhere else.
    // (NSpid cannot tell: a /proc mounted in a nested namespace shows that namespace's level only.)
    this.nested ??= readQuietly(join(this.o.procRoot, '2', 'comm')).trim() !== 'kthreadd';
    if (this.nested && this.o.procRoot === '/proc') {
      return { reason: 'the daemon runs in a PID namespace of its own and sees only its processes; run it in the host\'s (Kubernetes hostPID: true, Docker --pid host)', code: ErrorCodes.NAMESPACES_RESTRICTED };
    }
    return undefined;
  }

  // --- kept descriptors ---

  private pread(fd: number): string | undefined {
    if (fd < 0) return undefined;
    try {
      return this.buf.toString('latin1', 0, readSync(fd, this.buf, 0, this.buf.length, 0));
    } catch {
      return undefined;
    }
  }
}

/** `/proc/loadavg`'s last PID (of the reader's PID namespace): it moves whenever a process starts there. */
export function processSignal(loadavg: string | undefined): string | undefined {
  return loadavg?.trim().split(/\s+/)[4];
}

/** `/proc/loadavg`'s count of the host's threads (`running/total`'s total: every PID namespace's): it moves when one ends. */
export function threadCount(loadavg: string | undefined): string | undefined {
  return loadavg?.trim().split(/\s+/)[3]?.split('/')[1];
}

/** sockstat's first line, `sockets: used N`: every socket of the namespace (per namespace since Linux 4.16). */
export function usedSockets(sockstat: string): string | undefined {
  if (!sockstat.startsWith('sockets: used ')) return undefined;
  const end = sockstat.indexOf('\n');
  return sockstat.slice(14, end < 0 ? undefined : end);
}

/** `CurrEstab` from net/snmp's two `Tcp:` lines (names, then values); 0 when absent. */
export function currEstab(snmp: string): number {
  const tcp = snmp.split('\n').filter((l) => l.startsWith('Tcp: '));
  if (tcp.length !== 2) return 0;
  const i = tcp[0]!.split(' ').indexOf('CurrEstab');
  return i < 0 ? 0 : Number(tcp[1]!.split(' ')[i] ?? 0);
}

/** A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat; the command name may hold spaces). */
export function startTime(stat: string): number {
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? Infinity);
}

function sameSockets(a: readonly ListeningSocket[], b: readonly ListeningSocket[]): boolean {
  return a.length === b.length && a.every((s, i) => s.port === b[i]!.port && s.address === b[i]!.address && s.family === b[i]!.family && sameList(s.inodes, b[i]!.inodes));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function inodeOf(path: string): string | undefined {
  try {
    return String(statSync(path, { bigint: true }).ino);
  } catch {
    return undefined;
  }
}

function openQuietly(path: string): number {
  try {
    return openSync(path, 'r');
  } catch {
    return -1;
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

function closeAll(fds: number[]): void {
  for (const fd of fds) if (fd >= 0) closeQuietly(fd);
  fds.length = 0;
}

function readQuietly(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

/**
 * The address other hosts reach a namespace's listener at: its first own
 * address (IPv4 first) of the bind's family inside a routable container
 * network (`--container-network`), or, for a concrete bind, that address
 * when it is in one. Undefined: a bridge-private address no other host can
 * reach, so the listener is not published (a port the host publishes for
 * it is seen as the host's own listener, docker-proxy's or the host's).
 */
export function publishedAddress(ns: { addresses: readonly string[] }, bind: string, networks: readonly Cidr[] | NetworkSet): string | undefined {
  const set = networks instanceof NetworkSet ? networks : new NetworkSet(networks);
  if (set.size === 0) return undefined;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bind)?.[1];
  const concrete = mapped ?? (bind === '0.0.0.0' || bind === '::' ? undefined : bind);
  if (concrete !== undefined) return set.has(concrete) ? concrete : undefined;
  return ns.addresses.find((a) => (bind === '::' || !a.includes(':')) && set.has(a));
}
