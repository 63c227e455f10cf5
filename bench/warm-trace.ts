import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Children } from './children.js';
import { runDnsperf } from './dnsperf.js';

/**
 * How much compiling a daemon still does once it says it is ready (issue
 * 24, "warm from the first query"): `canonport serve` run with V8's
 * --trace-opt --trace-deopt (node's flags, so the launcher's shebang is
 * replaced by the same --max-semi-space-size=4 it passes), the
 * optimizations marked and deoptimizations counted at ready, then after
 * each 2,000 queries paced at 3,000 q/s. Counts of compiler events do not
 * depend on how loaded the machine is; latencies would.
 */

export interface WarmTrace {
  repo: string;
  /** [queries answered since ready, optimizations marked since ready, deoptimizations since ready]. */
  steps: { queries: number; optimized: number; deoptimized: number }[];
}

export async function warmTrace(repo: string, o: { workDir: string; file: string; children: Children; batches?: number }): Promise<WarmTrace> {
  const registry = join(o.workDir, 'warm-trace-registry.yaml');
  writeFileSync(registry, 'ttl: 300\nzones:\n  - bench.test\n');
  const proc = spawn(
    process.execPath,
    ['--max-semi-space-size=4', '--trace-opt', '--trace-deopt', join(repo, 'bin', 'canonport.js'), 'serve', '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--registry', registry],
    { stdio: ['ignore', 'pipe', 'pipe'], cwd: repo },
  );
  const untrack = o.children.track('canonport --trace-opt', proc);
  let optimized = 0;
  let deoptimized = 0;
  let partial = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const lines = (partial + d).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (l.includes('marking') && l.includes('for optimization')) optimized++;
      if (l.includes('bailout') && l.includes('deoptimizing')) deoptimized++;
    }
  });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      let err = '';
      proc.stderr!.setEncoding('utf8').on('data', (d: string) => {
        err += d;
        const m = /"event":"ready","dns":"127\.0\.0\.1:(\d+)"/.exec(err);
        if (m) resolve(Number(m[1]));
      });
      proc.once('exit', (code) => reject(new Error(`canonport --trace-opt exited ${code}: ${err.slice(-500)}`)));
    });
    await new Promise((r) => setTimeout(r, 100));
    const base = { optimized, deoptimized };
    const steps: WarmTrace['steps'] = [{ queries: 0, optimized: 0, deoptimized: 0 }];
    for (let i = 1; i <= (o.batches ?? 3); i++) {
      await runDnsperf({ port, file: o.file, seconds: 30, maxRuns: 1, clients: 1, maxQps: 3000 }, o.children);
      await new Promise((r) => setTimeout(r, 300));
      steps.push({ queries: i * 2000, optimized: optimized - base.optimized, deoptimized: deoptimized - base.deoptimized });
    }
    return { repo, steps };
  } finally {
    proc.kill('SIGKILL');
    untrack();
  }
}
