import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { base32Port } from '../src/scheme/index.js';
import { startLab, type Lab } from '../test/helpers/cluster-lab.js';
import type { Host } from '../test/helpers/netns.js';
import { REPO, startServe, type ServeProcess } from '../test/helpers/serve-process.js';
import { stopChild } from '../test/helpers/child.js';
import { launcherSettings } from '../test/helpers/launcher.js';
import type { Children, Server } from './children.js';
import { parseProcStat } from './cpu.js';
import { BENCH_ZONE, canonicalSrv, serviceLabelAt } from './fixtures.js';
import { IDLE_BARE_NODE, IDLE_CLUSTER, IDLE_SINGLE, type IdleResult, type IdleRow } from './idle-report.js';
import type { Servers } from './servers.js';
import { daemonSide } from './latency.js';

/**
 * `npm run bench -- --only idle` (issue 24): what a daemon costs a host
 * when nobody asks it anything. Each canonport runs in its own network
 * namespace (a host of its own: its /proc/net/tcp holds only that host's
 * sockets, not the other engineers' on this machine) beside LISTENERS
 * HTTP services that answer a version probe, so the inventory has real
 * work: scanning, naming, probing every port for its version. One daemon
 * is single-host, one in cluster mode with the lab's etcd. Beside them, in
 * the same window: a bare Node process (the floor any Node daemon pays),
 * unbound and dnsmasq idle, and etcd itself.
 *
 * Every process's CPU time (utime + stime, /proc/PID/stat) and context
 * switches (/proc/PID/task/TID/status) are read at the start and the end
 * of the same window; RSS at the end. Needs root (namespaces) and etcd.
 */

export interface IdleBenchOptions {
  seconds: number;
  listeners: number;
  workDir: string;
  /** Wait after every daemon is ready (first scans, first probes, the cluster's first publication). */
  settleMs: number;
  /** Another checkout of canonport (dist/ built) whose daemons run beside these in the same window: the before of a before/after. */
  baseline?: { dir: string; label: string } | undefined;
}

const HZ = 100;
const ZONE = 'idle.test';

/** `LISTENERS` service names whose base32 ports differ (the first three characters make the port). */
export function idleServices(n: number): { name: string; port: number }[] {
  const alphabet = 'abcdefghijklmnopqrstuv';
  return Array.from({ length: n }, (_, i) => {
    const name = `q${alphabet[Math.floor(i / 22) % 22]}${alphabet[i % 22]}-svc`;
    return { name, port: base32Port(name) };
  });
}

/** The registry every idle daemon runs with: the zone, and a version path so each port is probed. */
export function idleRegistry(): string {
  return [`zones:`, `  - ${ZONE}`, 'inventory:', '  versionPath: /version', ''].join('\n');
}

interface Sample {
  ticks: number;
  mainSwitches: number;
  allSwitches: number;
}

function switchesOf(statusText: string): number {
  const v = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(statusText)?.[1];
  const n = /^nonvoluntary_ctxt_switches:\s+(\d+)/m.exec(statusText)?.[1];
  return Number(v ?? 0) + Number(n ?? 0);
}

/** CPU ticks (all threads) and context switches of `pid`: its main thread, and every thread. */
export function sampleProcess(pid: number): Sample {
  const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  let all = 0;
  let main = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let n = 0;
    try {
      n = switchesOf(readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8'));
    } catch {
      continue; // a thread that just ended
    }
    all += n;
    if (tid === String(pid)) main = n;
  }
  return { ticks: s.utime + s.stime, mainSwitches: main, allSwitches: all };
}

/** A daemon's /metrics, fetched inside its host (the bench's daemons serve HTTP on 127.0.0.1:13656 there). */
export async function metricsIn(host: Host, port = 13656): Promise<string> {
  const res = await host.exec('curl', ['-sf', '--max-time', '20', `http://127.0.0.1:${port}/metrics`]);
  return res.code === 0 ? res.stdout : '';
}

/** The garbage collections between two scrapes of /metrics, by kind: "minor 8 (12.8), major 1 (40.2)" (ms), or "none". */
export function gcBetween(before: string, after: string): string {
  const gc = daemonSide(before, after).gc;
  const kinds = Object.entries(gc).filter(([, g]) => g.count > 0);
  return kinds.length === 0 ? 'none' : kinds.map(([kind, g]) => `${kind} ${g.count} (${g.ms.toFixed(1)})`).join(', ');
}

function rssMB(pid: number): number {
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
  return (kb * 1024) / 1e6;
}

/**
 * A canonport serve started through its launcher (bin/canonport.js: its shebang's node flags apply) inside `host`,
 * from this checkout or from `repo` (a baseline). Two daemons share a host on different ports.
 */
async function serveIn(host: Host, args: string[], slot = 0, repo = REPO): Promise<ServeProcess> {
  return startServe(['--zone', ZONE, ...args], {
    listen: ['--dns', `${host.address}:${53 + slot}`, '--grpc', `127.0.0.1:${13655 + 2 * slot}`, '--http', `127.0.0.1:${13656 + 2 * slot}`],
    // startServe runs `node bin/canonport.js`; run the launcher itself, as an operator's unit does.
    spawn: (_node, argv, o) => host.spawn(join(repo, 'bin', 'canonport.js'), argv.slice(1), { ...o, cwd: repo }),
    readyMs: 60_000,
  });
}

async function startListeners(host: Host, ports: number[]): Promise<{ stop(): Promise<void>; pid: number }> {
  const child = host.spawn(process.execPath, [join(REPO, 'dist-bench', 'bench', 'listeners.js'), '0.0.0.0', '1.0.0', ...ports.map(String)]);
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
    child.once('exit', (code) => reject(new Error(`listeners in ${host.ns} exited (${code}): ${err}`)));
  });
  return { pid: child.pid!, stop: () => stopChild(child) };
}

export async function runIdleBench(o: IdleBenchOptions, progress: (m: string) => void, children: Children, servers: Servers): Promise<IdleResult> {
  const r: IdleResult = {
    seconds: o.seconds,
    listeners: o.listeners,
    method:
      `every process at once, over the same ${o.seconds} s after ${o.settleMs / 1000} s to settle; canonport in a network namespace of its own beside ` +
      `${o.listeners} HTTP services answering GET /version and /readyz (probed by its inventory: versions, and in cluster mode readiness), through bin/canonport.js; cpu = utime+stime (/proc/PID/stat), ` +
      `wakeups = context switches (/proc/PID/task/*/status), RSS = VmRSS every 5 s, median and max (MB = 10^6 bytes)`,
    rows: [],
    notes: [],
    errors: [],
  };
  if (process.getuid?.() !== 0) {
    r.errors.push('the idle bench needs root (network namespaces)');
    return r;
  }
  const services = idleServices(o.listeners);
  const registry = join(o.workDir, 'idle-registry.yaml');
  writeFileSync(registry, idleRegistry());
  let lab: Lab | null = null;
  /** The processes measured; a canonport's host, to read its GCs from its /metrics. */
  const procs: { row: IdleRow; pid: number; host?: Host | undefined; metrics?: string }[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    // One more host: cluster mode with readiness asked every 10 s instead of every second (what the probe schedule costs).
    const hosts = (o.baseline ? 4 : 2) + 1;
    progress(`idle: starting etcd and ${hosts} hosts, each with ${o.listeners} listeners`);
    lab = await startLab({ hosts });
    const [h0, h1, h2, h3] = lab.hosts as [Host, Host, Host | undefined, Host | undefined];
    const hSlow = lab.hosts.at(-1)!;
    for (const h of lab.hosts) {
      const l = await startListeners(h, services.map((s) => s.port));
      stops.push(l.stop);
    }
    const add = (server: string, role: string, pid: number, host?: Host) =>
      procs.push({ row: { server, role, cpuPct: null, wakeupsPerSec: null, allThreadWakeupsPerSec: null, rssMB: null, rssMaxMB: null }, pid, host });
    const single = await serveIn(h0, ['--registry', registry]);
    stops.push(() => single.stop());
    add(IDLE_SINGLE, `single-host, ${o.listeners} listeners`, single.pid, h0);
    const cluster = await serveIn(h1, ['--registry', registry, '--cluster', lab.etcdUrl, '--node', 'idle-1']);
    stops.push(() => cluster.stop());
    add(IDLE_CLUSTER, `cluster mode, ${o.listeners} listeners`, cluster.pid, h1);
    const slow = await serveIn(hSlow, ['--registry', registry, '--cluster', lab.etcdUrl, '--node', 'idle-slow', '--ready-interval', '10000']);
    stops.push(() => slow.stop());
    add(`${IDLE_CLUSTER} --ready-interval 10000`, `cluster mode, readiness every 10 s`, slow.pid, hSlow);
    if (o.baseline && h2 && h3) {
      // The same two daemons from the baseline checkout, each on a host of its own with the same listeners, in the same window.
      const b1 = await serveIn(h2, ['--registry', registry], 0, o.baseline.dir);
      stops.push(() => b1.stop());
      add(`${IDLE_SINGLE} ${o.baseline.label}`, `single-host, baseline`, b1.pid, h2);
      const b2 = await serveIn(h3, ['--registry', registry, '--cluster', lab.etcdUrl, '--node', 'idle-base'], 0, o.baseline.dir);
      stops.push(() => b2.stop());
      add(`${IDLE_CLUSTER} ${o.baseline.label}`, `cluster mode, baseline`, b2.pid, h3);
      r.notes.push(`baseline rows: ${o.baseline.dir} (${o.baseline.label}), each on a host of its own with the same ${o.listeners} listeners`);
    }
    // The floor: Node itself, with the launcher's flags and environment and one timer that never fires.
    const launch = launcherSettings();
    const bare = h0.spawn(process.execPath, [...launch.nodeArgs, '-e', 'setInterval(() => {}, 2 ** 30)'], { stdio: 'ignore', env: { ...process.env, ...launch.env } });
    stops.push(() => stopChild(bare));
    add(IDLE_BARE_NODE, 'node -e "setInterval(…)"', bare.pid!);
    const one = canonicalSrv(serviceLabelAt(0), BENCH_ZONE);
    let unbound: Server | null = null;
    try {
      unbound = await servers.startUnbound([{ zone: BENCH_ZONE, srv: [one] }]);
      add('unbound', 'one thread, one local-data record', unbound.pid);
    } catch (err) {
      r.errors.push(`unbound: ${(err as Error).message.split('\n')[0]}`);
    }
    let dnsmasq: Server | null = null;
    try {
      dnsmasq = await servers.startDnsmasq('auth', { srv: [one] });
      add('dnsmasq', 'one srv-host record, cache 10,000', dnsmasq.pid);
    } catch (err) {
      r.notes.push(`dnsmasq not measured: ${(err as Error).message.split('\n')[0]}`);
    }
    for (const m of lab.etcd.members) if (m.proc?.pid) add('etcd', 'the cluster daemon\'s store (1 member)', m.proc.pid);

    progress(`idle: every process up; settling ${o.settleMs / 1000} s, then ${o.seconds} s with nothing asked`);
    await new Promise((res) => setTimeout(res, o.settleMs));
    for (const p of procs) if (p.host) p.metrics = await metricsIn(p.host);
    const t0 = performance.now();
    const before = procs.map((p) => {
      try {
        return sampleProcess(p.pid);
      } catch (err) {
        p.row.error = `not running: ${(err as Error).message}`;
        return null;
      }
    });
    // RSS every 5 s through the window: when V8 collects (its memory reducer, minutes after start) moves it by
    // megabytes, so the median of the samples is reported, not one reading.
    const rssSamples = procs.map(() => [] as number[]);
    const sampleRss = () => procs.forEach((p, i) => {
      try {
        rssSamples[i]!.push(rssMB(p.pid));
      } catch {
        // gone: reported below
      }
    });
    sampleRss();
    for (let left = o.seconds * 1000; left > 0; left -= 5000) {
      await new Promise((res) => setTimeout(res, Math.min(5000, left)));
      sampleRss();
    }
    const seconds = (performance.now() - t0) / 1000;
    procs.forEach((p, i) => {
      r.rows.push(p.row);
      const a = before[i];
      if (!a) return;
      try {
        const b = sampleProcess(p.pid);
        p.row.cpuPct = ((b.ticks - a.ticks) / HZ / seconds) * 100;
        p.row.wakeupsPerSec = (b.mainSwitches - a.mainSwitches) / seconds;
        p.row.allThreadWakeupsPerSec = (b.allSwitches - a.allSwitches) / seconds;
        const sorted = [...rssSamples[i]!].sort((x, y) => x - y);
        p.row.rssMB = sorted[Math.floor(sorted.length / 2)] ?? null;
        p.row.rssMaxMB = sorted.at(-1) ?? null;
      } catch (err) {
        p.row.error = `gone during the window: ${(err as Error).message}`;
      }
      progress(`idle: ${p.row.server} (${p.row.role}): cpu ${p.row.cpuPct?.toFixed(3) ?? '–'} %, ${p.row.wakeupsPerSec?.toFixed(1) ?? '–'} wakeups/s, RSS ${p.row.rssMB?.toFixed(1) ?? '–'} MB`);
    });
    // After the CPU figures were read: a scrape's own work is not in them (nor in the first, taken before the window).
    for (const p of procs) if (p.host && p.metrics) p.row.gc = gcBetween(p.metrics, await metricsIn(p.host));
    r.notes.push(`CPU time is read in ticks of 10 ms: over ${o.seconds} s one tick is ${(100 / HZ / o.seconds).toFixed(3)} % of a core`);
    if (unbound) await children.stop(unbound);
    if (dnsmasq) await children.stop(dnsmasq);
  } catch (err) {
    r.errors.push((err as Error).message.split('\n')[0]!);
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await lab?.stop();
  }
  return r;
}
