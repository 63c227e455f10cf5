import { readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../test/helpers/cluster-lab.js';
import type { Host } from '../test/helpers/netns.js';
import { REPO, startServe, type ServeProcess } from '../test/helpers/serve-process.js';
import { stopChild } from '../test/helpers/child.js';
import { launcherSettings } from '../test/helpers/launcher.js';
import { arg, runScript } from './run-script.js';
import { idleRegistry, idleServices } from './idle.js';

/**
 * Idle RSS of the daemon under each memory lever, measured together in one
 * window (issue 24): every variant is a `canonport serve` on a network
 * namespace of its own beside the same 20 HTTP listeners the idle bench
 * uses, started with its node flags and environment, and sampled for RSS
 * every 5 s over the window after a settle; the median and the max, and at
 * the end the split of the resident pages (/proc/PID/smaps_rollup: anonymous
 * = heap, malloc and stacks; file = node's and the libraries' code) and the
 * thread count, and the V8 heap's share as the daemon's /metrics gives it
 * (prom-client's default metrics: process.memoryUsage()'s heap used/total
 * and external, v8.getHeapSpaceStatistics() per space). Needs root
 * (namespaces) and etcd.
 *
 *   node dist-bench/bench/rss-levers.js [--seconds 60] [--settle 30] [--repo DIR] [--only a,b] [--mode single|cluster|both]
 *
 * Variants run `node FLAGS <repo>/dist/cli/main.js`-equivalent: node with
 * the variant's flags and bin/canonport.js, so the shebang's flags are not
 * applied and each variant states all of its own.
 */

interface Variant {
  name: string;
  node: string[];
  env?: Record<string, string>;
  /** Another checkout (dist/ built). */
  repo?: string;
}

const SEMI4 = '--max-semi-space-size=4';
const launch = launcherSettings();
const ALL: Variant[] = [
  { name: 'launcher (bin/canonport.js)', node: launch.nodeArgs, env: launch.env },
  { name: 'reference (semi 4)', node: [SEMI4] },
  { name: 'no flags', node: [] },
  { name: 'semi 1', node: ['--max-semi-space-size=1'] },
  { name: 'semi 2', node: ['--max-semi-space-size=2'] },
  { name: 'optimize-for-size', node: [SEMI4, '--optimize-for-size'] },
  { name: 'single-threaded-gc', node: [SEMI4, '--single-threaded-gc'] },
  { name: 'v8-pool-size=1', node: [SEMI4, '--v8-pool-size=1'] },
  { name: 'MALLOC_ARENA_MAX=2', node: [SEMI4], env: { MALLOC_ARENA_MAX: '2' } },
  { name: 'UV_THREADPOOL_SIZE=1', node: [SEMI4], env: { UV_THREADPOOL_SIZE: '1' } },
  { name: 'max-lazy', node: [SEMI4, '--max-lazy'] },
  { name: 'stgc + arena2', node: [SEMI4, '--single-threaded-gc'], env: { MALLOC_ARENA_MAX: '2' } },
  { name: 'pool1 + arena2', node: [SEMI4, '--v8-pool-size=1'], env: { MALLOC_ARENA_MAX: '2' } },
  { name: 'arena1', node: [SEMI4], env: { MALLOC_ARENA_MAX: '1' } },
  { name: 'pool1 + arena1', node: [SEMI4, '--v8-pool-size=1'], env: { MALLOC_ARENA_MAX: '1' } },
  { name: 'no-opt', node: [SEMI4, '--no-opt'] },
  { name: 'no-opt + pool1 + arena2', node: [SEMI4, '--no-opt', '--v8-pool-size=1'], env: { MALLOC_ARENA_MAX: '2' } },
  { name: 'lite + pool1 + arena2', node: [SEMI4, '--lite-mode', '--v8-pool-size=1'], env: { MALLOC_ARENA_MAX: '2' } },
  { name: 'jitless', node: [SEMI4, '--jitless'] },
  { name: 'lite-mode', node: [SEMI4, '--lite-mode'] },
  // Session 3 (issue 24): what the launcher could add at no cost in CPU per answer.
  { name: 'launcher + compact-every-full-gc', node: [...launch.nodeArgs, '--compact-on-every-full-gc'], env: launch.env },
  { name: 'launcher + flush-baseline-code', node: [...launch.nodeArgs, '--flush-baseline-code'], env: launch.env },
  { name: 'launcher + bytecode-old-age=2', node: [...launch.nodeArgs, '--bytecode-old-age=2'], env: launch.env },
  { name: 'launcher + no-sparkplug', node: [...launch.nodeArgs, '--no-sparkplug'], env: launch.env },
  { name: 'launcher + trim 128k', node: launch.nodeArgs, env: { ...launch.env, MALLOC_TRIM_THRESHOLD_: '131072', MALLOC_TOP_PAD_: '0' } },
  { name: 'launcher + no-opt', node: [...launch.nodeArgs, '--no-opt'], env: launch.env },
  { name: 'all cheap: semi1 pool1 stgc arena2 uv1', node: ['--max-semi-space-size=1', '--v8-pool-size=1', '--single-threaded-gc'], env: { MALLOC_ARENA_MAX: '2', UV_THREADPOOL_SIZE: '1' } },
];

function status(pid: number): { rss: number; threads: number } {
  const t = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rss: (Number(/^VmRSS:\s+(\d+)/m.exec(t)![1]) * 1024) / 1e6, threads: Number(/^Threads:\s+(\d+)/m.exec(t)![1]) };
}

function rollup(pid: number): { anon: number; file: number } {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? 0);
  return { anon: (kb('Anonymous') * 1024) / 1e6, file: ((kb('Rss') - kb('Anonymous')) * 1024) / 1e6 };
}

const mb = (b: number) => (b / 1e6).toFixed(1);

/** The daemon's V8 heap as its /metrics gives it: used/total, external, and each space's used/total. */
async function heapOf(host: Host): Promise<string> {
  const res = await host.exec('curl', ['-sf', '--max-time', '20', 'http://127.0.0.1:13656/metrics']);
  if (res.code !== 0) return `(metrics: curl exit ${res.code})`;
  const val = (name: string, label = '') => {
    const m = new RegExp(`^canonport_${name}${label ? `\\{[^}]*${label}[^}]*\\}` : ''}\\s+(\\S+)`, 'm').exec(res.stdout);
    return m ? Number(m[1]) : NaN;
  };
  const spaces = [...res.stdout.matchAll(/^canonport_nodejs_heap_space_size_total_bytes\{space="(\w+)"\}\s+(\S+)/gm)].map((m) => m[1]!);
  const per = spaces
    .map((sp) => [sp, val('nodejs_heap_space_size_used_bytes', `space="${sp}"`), val('nodejs_heap_space_size_total_bytes', `space="${sp}"`)] as const)
    .filter(([, , t]) => t > 0)
    .map(([sp, u, t]) => `${sp.replace(/_space$/, '')} ${mb(u)}/${mb(t)}`);
  if (Number.isNaN(val('nodejs_heap_size_used_bytes'))) return `(metrics: no heap figures in ${res.stdout.length} bytes)`;
  return `${mb(val('nodejs_heap_size_used_bytes'))}/${mb(val('nodejs_heap_size_total_bytes'))}, ext ${mb(val('nodejs_external_memory_bytes'))}; ${per.join(', ')}`;
}

async function main(): Promise<void> {
  const seconds = Number(arg('--seconds') ?? 60);
  const settle = Number(arg('--settle') ?? 30);
  const mode = arg('--mode') ?? 'both';
  const only = arg('--only')?.split(',');
  const extra = arg('--variants'); // JSON: Variant[] added to the list
  const baseRepo = arg('--repo');
  // A frozen copy of a build to run every variant from (a rebuild of this checkout mid-run would break starts).
  const code = arg('--code');
  const repeat = Number(arg('--repeat') ?? 1);
  // --only picks among the built-in variants; those --variants names are run whatever --only says (as --repo's baseline is).
  let variants = only ? ALL.filter((v) => only.includes(v.name)) : [...ALL];
  variants.push(...(extra ? (JSON.parse(extra) as Variant[]) : []));
  if (code) variants = variants.map((v) => ({ ...v, repo: v.repo ?? code }));
  if (baseRepo) variants.unshift({ name: `baseline (semi 4)`, node: [SEMI4], repo: baseRepo });
  const modes = mode === 'both' ? ['single', 'cluster'] : [mode];
  const work = mkdtempSync(join(tmpdir(), 'rss-levers-'));
  const registry = join(work, 'registry.yaml');
  writeFileSync(registry, idleRegistry());
  const services = idleServices(20);
  const runs: { v: Variant; mode: string; d: ServeProcess | null; host?: Host; rss: number[]; err?: string }[] = [];
  for (const m of modes) for (const v of variants) for (let k = 0; k < repeat; k++) runs.push({ v, mode: m, d: null, rss: [] });
  let lab: Lab | null = null;
  const stops: (() => Promise<void>)[] = [];
  try {
    lab = await startLab({ hosts: runs.length });
    for (const [i, r] of runs.entries()) {
      const host = lab.hosts[i] as Host;
      r.host = host;
      const l = host.spawn(process.execPath, [join(REPO, 'dist-bench', 'bench', 'listeners.js'), '0.0.0.0', '1.0.0', ...services.map((s) => String(s.port))]);
      stops.push(() => stopChild(l));
      await new Promise<void>((res, rej) => {
        l.stdout!.on('data', (d) => String(d).includes('listening') && res());
        l.once('exit', (c) => rej(new Error(`listeners exited ${c}`)));
      });
      const repo = r.v.repo ?? REPO;
      const args = ['--zone', 'idle.test', '--registry', registry, ...(r.mode === 'cluster' ? ['--cluster', lab.etcdUrl, '--node', `lever-${i}`] : [])];
      try {
        r.d = await startServe(args, {
          listen: ['--dns', `${host.address}:53`, '--grpc', '127.0.0.1:13655', '--http', '127.0.0.1:13656'],
          env: r.v.env ?? {},
          spawn: (node, argv, o) => host.spawn(node, [...r.v.node, join(repo, 'bin', 'canonport.js'), ...argv.slice(1)], { ...o, cwd: repo }),
          readyMs: 60_000,
        });
        const d = r.d;
        stops.push(() => d.stop());
      } catch (err) {
        r.err = (err as Error).message.split('\n')[0];
      }
      process.stderr.write(`started ${r.mode} ${r.v.name}${r.err ? `: ${r.err}` : ''}\n`);
    }
    process.stderr.write(`settling ${settle} s, then ${seconds} s\n`);
    await new Promise((res) => setTimeout(res, settle * 1000));
    for (let left = seconds * 1000; ; left -= 5000) {
      for (const r of runs) if (r.d) try { r.rss.push(status(r.d.pid).rss); } catch { /* gone */ }
      if (left <= 0) break;
      await new Promise((res) => setTimeout(res, Math.min(5000, left)));
    }
    // The V8 heap's share, after the window (one scrape of /metrics each: prom-client's default metrics are
    // process.memoryUsage() and v8.getHeapSpaceStatistics()).
    const heaps = await Promise.all(runs.map((r) => (r.d && r.host ? heapOf(r.host) : Promise.resolve(null))));
    console.log(`${'mode'.padEnd(8)} ${'variant'.padEnd(34)} ${'RSS med'.padStart(8)} ${'max'.padStart(6)} ${'min'.padStart(6)} ${'anon'.padStart(6)} ${'file'.padStart(6)} ${'thr'.padStart(4)}  heap used/total, external; per space used/total (MB)`);
    for (const r of runs) {
      if (!r.d || r.rss.length === 0) {
        console.log(`${r.mode.padEnd(8)} ${r.v.name.padEnd(34)} ${r.err ?? 'no samples'}`);
        continue;
      }
      const s = [...r.rss].sort((a, b) => a - b);
      let ru = { anon: NaN, file: NaN };
      let th = NaN;
      try {
        ru = rollup(r.d.pid);
        th = status(r.d.pid).threads;
      } catch { /* gone */ }
      console.log(
        `${r.mode.padEnd(8)} ${r.v.name.padEnd(34)} ${s[Math.floor(s.length / 2)]!.toFixed(1).padStart(8)} ${s.at(-1)!.toFixed(1).padStart(6)} ${s[0]!.toFixed(1).padStart(6)} ${ru.anon.toFixed(1).padStart(6)} ${ru.file.toFixed(1).padStart(6)} ${String(th).padStart(4)}  ${heaps[runs.indexOf(r)] ?? ''}`,
      );
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await lab?.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

runScript(main);
