import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseHostPort } from '../../src/config/address.js';
import { stopChild } from './child.js';
import { tempDir } from './temp.js';
import type { Server } from './dns-wire.js';

/**
 * `canonport serve` as a real child process, so a test sees what an
 * operator sees: exit codes, signals, stderr logs, and the daemon's own
 * RSS in /proc/<pid>/status.
 *
 * The CLI runs from the repository: test/global-setup.ts builds dist/ once
 * before any test file, and no test rebuilds it.
 */

/** The repository root: the first folder up from here with bin/canonport.js (this file also runs compiled, from dist-bench/). */
export const REPO = ((): string => {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'bin', 'canonport.js'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the repository root (bin/canonport.js) above test/helpers');
    dir = up;
  }
  return `${dir}/`;
})();

/** The environment without CANONPORT_* settings, so only the test's flags apply. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CANONPORT_')) env[k] = v;
  return { ...env, ...extra };
}


export interface ServeOptions {
  env?: Record<string, string>;
  readyMs?: number;
  /** The listen flags (default: ephemeral ports on 127.0.0.1). */
  listen?: string[];
  /** Spawns the process another way (inside a network namespace: Host.spawn). */
  spawn?: (cmd: string, args: string[], opts: SpawnOptions) => ChildProcess;
}

export type LogLine = Record<string, unknown> & { msg?: string; level?: number; code?: string; event?: string };

export interface ServeProcess {
  proc: ChildProcess;
  pid: number;
  dns: Server;
  http: Server;
  grpc: Server;
  /** Every JSON log line so far (pino on stderr). */
  logs: LogLine[];
  /** stderr lines that were not JSON. */
  text: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves with the first log line (already seen or to come) matching `pred`; rejects after `ms`. */
  waitForLog(pred: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  /** SIGTERM, then SIGKILL after `ms`. */
  stop(ms?: number): Promise<void>;
}

/**
 * Starts `canonport serve` on loopback with ephemeral DNS, gRPC and HTTP
 * ports (unless `args` name others) and waits for its `ready` log line,
 * which carries the bound addresses.
 */
export async function startServe(args: string[], opts: ServeOptions = {}): Promise<ServeProcess> {
  const listen = opts.listen ?? ['--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'];
  // A cluster daemon remembers its lease and last view in a state directory (default /var/lib/canonport as root):
  // each test daemon gets its own, so no test reads another's snapshot and nothing is left on the machine.
  const stateDir = args.includes('--cluster') && !args.includes('--state-dir') ? tempDir('canonport-state-') : undefined;
  // Other network namespaces (issue 26): a test daemon in the run's namespace (or a host without a PID namespace of its
  // own) would see every process of this shared machine (the sandbox has a network namespace of its own, not a PID
  // one), other runs' containers included. Only tests whose hosts have their own PID namespace (netns.ts `pid: true`)
  // ask for `--namespaces all`.
  const namespaces = args.includes('--namespaces') ? [] : ['--namespaces', 'own'];
  const argv = [`${REPO}bin/canonport.js`, 'serve', ...listen, '--log-level', 'info', ...namespaces, ...args, ...(stateDir ? ['--state-dir', stateDir] : [])];
  const spawnOpts: SpawnOptions = { cwd: REPO, env: cleanEnv(opts.env), stdio: ['ignore', 'ignore', 'pipe'] };
  const proc = opts.spawn ? opts.spawn(process.execPath, argv, spawnOpts) : spawn(process.execPath, argv, spawnOpts);
  const logs: LogLine[] = [];
  const text: string[] = [];
  const watchers: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let partial = '';
  proc.stderr!.setEncoding('utf8');
  proc.stderr!.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.trim()) continue;
      let l: LogLine;
      try {
        l = JSON.parse(line) as LogLine;
      } catch {
        text.push(line);
        continue;
      }
      logs.push(l);
      for (const w of [...watchers]) {
        if (w.pred(l)) {
          watchers.splice(watchers.indexOf(w), 1);
          w.resolve(l);
        }
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  // However the process ends (stopped, crashed, failed at start), its state directory goes with it.
  const stateRemoved = exited.then(() => (stateDir ? rm(stateDir, { recursive: true, force: true }) : undefined));
  const waitForLog = (pred: (l: LogLine) => boolean, ms = 10_000) => {
    const seen = logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const w = {
        pred,
        resolve: (l: LogLine) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      const t = setTimeout(() => {
        watchers.splice(watchers.indexOf(w), 1);
        reject(new Error(`no matching log line within ${ms} ms; stderr so far:\n${[...text, ...logs.map((x) => JSON.stringify(x))].join('\n')}`));
      }, ms);
      watchers.push(w);
    });
  };
  const ready = await Promise.race([
    waitForLog((l) => l.event === 'ready', opts.readyMs ?? 20_000),
    exited.then(({ code }) => {
      throw new Error(`canonport serve exited with ${code} before ready:\n${[...text, ...logs.map((x) => JSON.stringify(x))].join('\n')}`);
    }),
  ]);
  const addr = (k: string) => {
    const hp = parseHostPort(String(ready[k]), k);
    return { host: hp.host, port: hp.port };
  };
  return {
    proc,
    pid: proc.pid!,
    dns: addr('dns'),
    http: addr('http'),
    grpc: addr('grpc'),
    logs,
    text,
    exited,
    waitForLog,
    stop: async (ms = 10_000) => {
      await stopChild(proc, { killAfterMs: ms });
      await stateRemoved;
    },
  };
}

/** Resident set size of a process, in bytes (VmRSS of /proc/<pid>/status). */
export async function rssOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1];
  if (!kb) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kb) * 1024;
}

/** GET /metrics and return the exposition text. */
export async function scrape(http: Server): Promise<string> {
  const res = await fetch(`http://${http.host}:${http.port}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

/** Sum of a series in Prometheus text, over samples whose labels include `labels`. */
/** A prom-client metric's value summed over the series whose labels include `labels` (0 when none do). */
export async function metricSum(
  m: { get(): Promise<{ values: { labels: Record<string, string | number | undefined>; value: number }[] }> },
  labels: Record<string, string> = {},
): Promise<number> {
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0);
}

export function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) have[pair[1]!] = pair[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) {
      sum += Number(m[4]);
      found = true;
    }
  }
  return found ? sum : NaN;
}
