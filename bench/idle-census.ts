import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, type Lab } from '../test/helpers/cluster-lab.js';
import type { Host } from '../test/helpers/netns.js';
import { REPO, startServe, type ServeProcess } from '../test/helpers/serve-process.js';
import { stopChild } from '../test/helpers/child.js';
import { launcherSettings } from '../test/helpers/launcher.js';
import { arg, runScript } from './run-script.js';
import { gcBetween, idleRegistry, idleServices, metricsIn, sampleProcess } from './idle.js';

/**
 * What wakes an idle cluster daemon, timer by timer (issue 24): each
 * checkout's `canonport serve --cluster` on a network namespace of its own
 * beside the idle bench's 20 HTTP listeners (probed for versions and
 * readiness), run with bench/timer-census.cjs preloaded; after a settle, the
 * census of one window: every callback the event loop ran, by kind and by
 * the line that scheduled it, per second; beside it the process's context
 * switches per second (main thread) over the same window.
 *
 *   node dist-bench/bench/idle-census.js [--seconds 60] [--settle 20] [--baseline DIR] [--top 25] [--cpu-prof DIR]
 *
 * `--cpu-prof DIR`: no census; each daemon runs with `--cpu-prof` instead
 * and writes its profile (start to stop) into DIR when the window ends.
 * `--strace`: no census; the window's system calls of each daemon
 * (`strace -f -c`), beside its garbage collections over the window (its
 * /metrics: prom-client's nodejs_gc_duration_seconds, by kind).
 * `--trace-gc DIR`: no census; each daemon runs with `--trace-gc
 * --trace-gc-nvp` (every collection with the bytes allocated since the last
 * one), its stdout in DIR/<n>.gc.txt: the idle allocation rate.
 * `--windows N`: no census; N windows of `--seconds` one after another,
 * each daemon's CPU, context switches and garbage collections in each
 * (how the idle cost moves from start to steady state: V8's memory reducer
 * collects in the first minutes).
 *
 * The census costs far more CPU than what it counts: CPU figures of these
 * daemons mean nothing; take them from `--only idle`.
 */

interface CensusRow {
  site: string;
  n: number;
  perSecond: number;
}

async function main(): Promise<void> {
  const seconds = Number(arg('--seconds') ?? 60);
  const settle = Number(arg('--settle') ?? 20);
  const top = Number(arg('--top') ?? 25);
  const baseline = arg('--baseline');
  const profDir = arg('--cpu-prof');
  const strace = process.argv.includes('--strace');
  const windows = Number(arg('--windows') ?? 0);
  const gcDir = arg('--trace-gc');
  const plain = profDir !== undefined || strace || windows > 0 || gcDir !== undefined;
  const census = join(REPO, 'bench', 'timer-census.cjs');
  const launch = launcherSettings();
  const work = mkdtempSync(join(tmpdir(), 'idle-census-'));
  const registry = join(work, 'registry.yaml');
  writeFileSync(registry, idleRegistry());
  const services = idleServices(20);
  const runs = [{ label: 'this checkout', repo: REPO }, ...(baseline ? [{ label: `baseline ${baseline}`, repo: baseline }] : [])];
  let lab: Lab | null = null;
  const stops: (() => Promise<void>)[] = [];
  try {
    lab = await startLab({ hosts: runs.length });
    const daemons: { label: string; d: ServeProcess; file: string; host: Host }[] = [];
    for (const [i, r] of runs.entries()) {
      const host = lab.hosts[i] as Host;
      const l = host.spawn(process.execPath, [join(REPO, 'dist-bench', 'bench', 'listeners.js'), '0.0.0.0', '1.0.0', ...services.map((s) => String(s.port))]);
      stops.push(() => stopChild(l));
      await new Promise<void>((res, rej) => {
        l.stdout!.on('data', (d) => String(d).includes('listening') && res());
        l.once('exit', (c) => rej(new Error(`listeners exited ${c}`)));
      });
      const file = join(work, `census-${i}.json`);
      const d = await startServe(['--zone', 'idle.test', '--registry', registry, '--cluster', lab.etcdUrl, '--node', `census-${i}`], {
        listen: ['--dns', `${host.address}:53`, '--grpc', '127.0.0.1:13655', '--http', '127.0.0.1:13656'],
        env: plain ? launch.env : { NODE_OPTIONS: `--require=${census}`, CANONPORT_CENSUS_FILE: file },
        // --cpu-prof is refused in NODE_OPTIONS: node itself with the launcher's flags, then the launcher.
        spawn: (node, argv, o) =>
          profDir
            ? host.spawn(node, [...launch.nodeArgs, '--cpu-prof', `--cpu-prof-dir=${join(profDir, String(i))}`, join(r.repo, 'bin', 'canonport.js'), ...argv.slice(1)], { ...o, cwd: r.repo })
            : gcDir
              ? host.spawn(node, [...launch.nodeArgs, '--trace-gc', '--trace-gc-nvp', join(r.repo, 'bin', 'canonport.js'), ...argv.slice(1)], {
                  ...o,
                  cwd: r.repo,
                  stdio: ['ignore', openSync(join(gcDir, `${i}.gc.txt`), 'w'), 'pipe'],
                })
              : host.spawn(join(r.repo, 'bin', 'canonport.js'), argv.slice(1), { ...o, cwd: r.repo }),
        readyMs: 60_000,
      });
      stops.push(() => d.stop());
      daemons.push({ label: r.label, d, file, host });
    }
    process.stderr.write(`settling ${settle} s, then a census of ${seconds} s\n`);
    await new Promise((res) => setTimeout(res, settle * 1000));
    if (windows > 0) {
      console.log(`| since start, s | ${daemons.map((x) => `${x.label}: % of a core, wake-ups/s, GCs (ms)`).join(' | ')} |`);
      console.log(`| --- | ${daemons.map(() => '---').join(' | ')} |`);
      let gcB = await Promise.all(daemons.map((x) => metricsIn(x.host)));
      let b = daemons.map((x) => sampleProcess(x.d.pid));
      let t = performance.now();
      const start = t - settle * 1000;
      for (let w = 0; w < windows; w++) {
        await new Promise((res) => setTimeout(res, seconds * 1000));
        const gcA = await Promise.all(daemons.map((x) => metricsIn(x.host)));
        const a = daemons.map((x) => sampleProcess(x.d.pid));
        const now = performance.now();
        const el = (now - t) / 1000;
        const cells = daemons.map((_, i) => {
          const gc = gcBetween(gcB[i]!, gcA[i]!);
          return `${(((a[i]!.ticks - b[i]!.ticks) / 100 / el) * 100).toFixed(3)} %, ${((a[i]!.mainSwitches - b[i]!.mainSwitches) / el).toFixed(1)}/s, ${gc}`;
        });
        console.log(`| ${((t - start) / 1000).toFixed(0)}–${((now - start) / 1000).toFixed(0)} | ${cells.join(' | ')} |`);
        [gcB, b, t] = [gcA, a, now];
      }
      return;
    }
    // The first signal starts the census's window (the counts since start are dropped), the second ends it.
    if (!plain) for (const x of daemons) process.kill(x.d.pid, 'SIGUSR2');
    const gcBefore = await Promise.all(daemons.map((x) => metricsIn(x.host)));
    const traces = strace ? daemons.map((x, i) => spawn('strace', ['-f', '-c', '-o', join(work, `strace-${i}.txt`), '-p', String(x.d.pid)], { stdio: 'ignore' })) : [];
    const before = daemons.map((x) => sampleProcess(x.d.pid));
    const t0 = performance.now();
    await new Promise((res) => setTimeout(res, seconds * 1000));
    const elapsed = (performance.now() - t0) / 1000;
    const after = daemons.map((x) => sampleProcess(x.d.pid));
    await Promise.all(traces.map((t) => new Promise((res) => (t.once('exit', res), t.kill('SIGINT')))));
    const gcAfter = await Promise.all(daemons.map((x) => metricsIn(x.host)));
    for (const [i, x] of daemons.entries()) {
      const switches = (after[i]!.mainSwitches - before[i]!.mainSwitches) / elapsed;
      const cpuPct = ((after[i]!.ticks - before[i]!.ticks) / 100 / elapsed) * 100;
      const gc = gcBetween(gcBefore[i]!, gcAfter[i]!);
      if (plain) console.log(`${x.label}: ${switches.toFixed(2)} context switches/s (main thread), ${cpuPct.toFixed(3)} % of a core${profDir ? ' with the profiler on' : strace ? ' under strace' : ''}, over ${elapsed.toFixed(0)} s; garbage collections: ${gc}`);
      if (strace) console.log(readFileSync(join(work, `strace-${i}.txt`), 'utf8'));
    }
    if (plain) return;
    for (const x of daemons) writeFileSync(x.file, '');
    for (const x of daemons) process.kill(x.d.pid, 'SIGUSR2');
    for (const [i, x] of daemons.entries()) {
      let text = '';
      for (let k = 0; k < 100 && !text; k++) {
        await new Promise((res) => setTimeout(res, 50));
        text = readFileSync(x.file, 'utf8');
      }
      const rows = (JSON.parse(text) as { rows: CensusRow[] }).rows;
      const total = rows.reduce((s, r) => s + r.perSecond, 0);
      const switches = (after[i]!.mainSwitches - before[i]!.mainSwitches) / elapsed;
      console.log(`\n## ${x.label}: ${total.toFixed(2)} callbacks/s, ${switches.toFixed(2)} context switches/s (main thread), over ${elapsed.toFixed(0)} s`);
      console.log(`| callbacks/s | kind and where it was scheduled |\n| ---: | --- |`);
      for (const r of rows.slice(0, top)) console.log(`| ${r.perSecond.toFixed(3)} | \`${r.site}\` |`);
      if (rows.length > top) console.log(`| ${rows.slice(top).reduce((s, r) => s + r.perSecond, 0).toFixed(3)} | ${rows.length - top} other sites |`);
    }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
    await lab?.stop();
  }
}

runScript(main);
