import { readFileSync } from 'node:fs';

/**
 * Where the CPU went during a run, from /proc: the server's own time, the
 * load generator's (dnsperf, reaped by us, so it lands in our cutime/cstime),
 * the bench's, and everything else on the machine. On a shared 2-core
 * machine "everything else" is what makes a figure untrustworthy, so every
 * run reports it.
 */

/** Kernel clock ticks per second (USER_HZ); 100 on every Linux this runs on. */
const HZ = 100;

export interface CpuSnapshot {
  at: number;
  /** Busy ticks of the whole machine (all CPUs). */
  machine: number;
  /** utime + stime of the server, null when it is not readable. */
  server: number | null;
  /** utime + stime of the bench's other servers in play (the upstream a forwarder uses). */
  helpers: number;
  /** utime + stime of this process. */
  self: number;
  /** cutime + cstime of this process: children that have exited and been reaped (dnsperf). */
  reaped: number;
}

/** Fields of /proc/PID/stat after the command name (which may contain spaces). */
export function parseProcStat(text: string): { utime: number; stime: number; cutime: number; cstime: number } {
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime is field 14.
  return { utime: Number(rest[11]), stime: Number(rest[12]), cutime: Number(rest[13]), cstime: Number(rest[14]) };
}

/** Busy ticks from the first line of /proc/stat: user nice system idle iowait irq softirq steal … */
export function parseMachineBusy(text: string): number {
  const f = text.slice(0, text.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  return f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + (f[7] ?? 0);
}

/** utime + stime of a process and its live children (`serve --workers` runs its DNS in children). */
function ticksOf(pid: number): number | null {
  try {
    const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return s.utime + s.stime + childrenOf(pid).reduce((n, c) => n + (ticksOf(c) ?? 0), 0);
  } catch {
    return null; // gone
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

export function cpuSnapshot(serverPid: number | null, helperPids: number[] = []): CpuSnapshot {
  const self = parseProcStat(readFileSync('/proc/self/stat', 'utf8'));
  return {
    at: performance.now(),
    machine: parseMachineBusy(readFileSync('/proc/stat', 'utf8')),
    server: serverPid === null ? null : ticksOf(serverPid),
    helpers: helperPids.reduce((n, pid) => n + (ticksOf(pid) ?? 0), 0),
    self: self.utime + self.stime,
    reaped: self.cutime + self.cstime,
  };
}

/** Percent of one core over the interval, per consumer. */
export interface CpuUse {
  server: number | null;
  loadGenerator: number;
  /** The upstream a forwarder used during the run. */
  upstream: number;
  bench: number;
  /** Everything else on the machine: other engineers' builds and tests. */
  other: number;
}

export function cpuUse(a: CpuSnapshot, b: CpuSnapshot): CpuUse {
  const seconds = (b.at - a.at) / 1000;
  const pct = (ticks: number) => (seconds > 0 ? (ticks / HZ / seconds) * 100 : Number.NaN);
  const server = a.server !== null && b.server !== null ? b.server - a.server : null;
  const gen = b.reaped - a.reaped;
  const self = b.self - a.self;
  const helpers = Math.max(0, b.helpers - a.helpers);
  const other = b.machine - a.machine - (server ?? 0) - gen - self - helpers;
  return { server: server === null ? null : pct(server), loadGenerator: pct(gen), upstream: pct(helpers), bench: pct(self), other: Math.max(0, pct(other)) };
}
