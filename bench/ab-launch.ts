import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Children } from './children.js';
import { parseProcStat } from './cpu.js';
import { runDnsperf } from './dnsperf.js';
import { BENCH_ZONE, FWD_ZONE, benchRegistry, queryFile, srvQueries, srvRecords } from './fixtures.js';
import { runScript } from './run-script.js';
import { Servers } from './servers.js';

/**
 * Two checkouts (or two copies of one build under different launchers)
 * side by side, alternating: canonical and cached SRV answers at full rate
 * (dnsperf -c 4) for ROUNDS rounds each, the order swapped every round, so
 * the machine's other load falls on both alike. Prints q/s and the daemon's
 * CPU time per answer (utime + stime of all its threads, /proc/PID/stat),
 * which the load moves less than q/s, and the medians' ratio B/A.
 *
 *   node dist-bench/bench/ab-launch.js A_DIR B_DIR [rounds] [seconds]
 */

async function main(): Promise<void> {
  const [a, b] = [process.argv[2]!, process.argv[3]!];
  const rounds = Number(process.argv[4] ?? 6);
  const seconds = Number(process.argv[5] ?? 4);
  const work = mkdtempSync(join(tmpdir(), 'ab-launch-'));
  const children = new Children(work);
  const registry = join(work, 'registry.yaml');
  writeFileSync(registry, benchRegistry());
  const servers = new Servers(children, work, registry);
  const canon = srvRecords(BENCH_ZONE);
  const fwd = srvRecords(FWD_ZONE);
  const files = { canonical: join(work, 'canonical.txt'), cached: join(work, 'cached.txt') };
  writeFileSync(files.canonical, queryFile(srvQueries(canon)));
  writeFileSync(files.cached, queryFile(srvQueries(fwd)));
  try {
    const up = await servers.startUnbound([{ zone: BENCH_ZONE, srv: canon }, { zone: FWD_ZONE, srv: fwd }]);
    const d = { A: await servers.startCanonport(up.port, { repo: a }), B: await servers.startCanonport(up.port, { repo: b }) };
    for (const c of Object.values(d)) await runDnsperf({ port: c.server.port, file: files.cached, seconds: 30, maxRuns: 1, maxQps: 20_000 }, children);
    const ticks = (pid: number) => {
      const s = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
      return s.utime + s.stime;
    };
    const res: Record<string, { qps: number[]; usPerAnswer: number[] }> = {};
    for (let r = 0; r < rounds; r++) {
      for (const which of r % 2 === 0 ? (['A', 'B'] as const) : (['B', 'A'] as const)) {
        for (const kind of ['canonical', 'cached'] as const) {
          const c = d[which];
          const t0 = ticks(c.server.pid);
          const run = await runDnsperf({ port: c.server.port, file: files[kind], seconds }, children);
          const cpuS = (ticks(c.server.pid) - t0) / 100;
          const k = `${kind} ${which}`;
          res[k] ??= { qps: [], usPerAnswer: [] };
          res[k].qps.push(run.stats.qps);
          res[k].usPerAnswer.push((cpuS * 1e6) / run.stats.completed);
        }
      }
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    console.log(`A = ${a}\nB = ${b}\n${rounds} rounds of ${seconds} s, dnsperf -c 4, alternating`);
    for (const kind of ['canonical', 'cached']) {
      const A = res[`${kind} A`]!;
      const B = res[`${kind} B`]!;
      console.log(
        `${kind}: q/s median A ${med(A.qps).toFixed(0)} B ${med(B.qps).toFixed(0)} (B/A ${(med(B.qps) / med(A.qps)).toFixed(2)}); ` +
          `CPU µs/answer median A ${med(A.usPerAnswer).toFixed(1)} B ${med(B.usPerAnswer).toFixed(1)} (B/A ${(med(B.usPerAnswer) / med(A.usPerAnswer)).toFixed(2)})`,
      );
      console.log(`  A q/s ${A.qps.map((x) => x.toFixed(0)).join(' ')}; µs ${A.usPerAnswer.map((x) => x.toFixed(1)).join(' ')}`);
      console.log(`  B q/s ${B.qps.map((x) => x.toFixed(0)).join(' ')}; µs ${B.usPerAnswer.map((x) => x.toFixed(1)).join(' ')}`);
    }
  } finally {
    await children.stopAll();
    rmSync(work, { recursive: true, force: true });
  }
}

runScript(main);
