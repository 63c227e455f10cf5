import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runScript } from './run-script.js';

/**
 * What one answer allocates (issue 24: the minor GCs that make the slow
 * 1 % come from allocation on the hot path). A daemon from REPO's dist/
 * runs in this process; dnsperf asks it canonical SRV names at a fixed
 * rate for a few seconds while V8's sampling heap profiler records every
 * allocation, collected ones included; the bytes are divided by the
 * answers and split by the function that allocated them. Bytes allocated
 * do not depend on how loaded the machine is.
 *
 *   node dist-bench/bench/alloc.js [REPO] [--seconds 5] [--qps 3000]
 *
 * ALLOC_TOP=N lists N sites (default 12); ALLOC_CALLERS=1 names each
 * site's caller too (a built-in such as `Map` or `(V8 API)` says nothing
 * alone); `node --no-turbo-inlining` charges each function its own bytes
 * rather than the one it was inlined into.
 */

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args.splice(i, 2)[1]) : dflt;
  };
  const seconds = opt('--seconds', 5);
  const qps = opt('--qps', 3000);
  const repo = resolve(args[0] ?? '.');
  const dir = mkdtempSync(join(tmpdir(), 'canonport-alloc-'));
  try {
    const registry = join(dir, 'registry.yaml');
    writeFileSync(registry, 'ttl: 300\nzones:\n  - bench.test\n');
    const queries = join(dir, 'queries.txt');
    writeFileSync(queries, Array.from({ length: 2000 }, (_, i) => `_svc${String(i).padStart(4, '0')}._tcp.bench.test SRV`).join('\n') + '\n');
    const { Daemon } = (await import(pathToFileURL(join(repo, 'dist', 'daemon', 'daemon.js')).href)) as {
      Daemon: { start(o: object): Promise<{ addresses: { dns: { port: number } }; close(ms: number): Promise<void> }> };
    };
    const d = await Daemon.start({ flags: { dns: '127.0.0.1:0', grpc: '127.0.0.1:0', http: '127.0.0.1:0', upstreams: ['127.0.0.1:9'], registry }, inventory: false, watchRegistry: false });
    const ask = (s: number, rate: number) =>
      new Promise<number>((res, rej) => {
        const p = spawn('dnsperf', ['-s', '127.0.0.1', '-p', String(d.addresses.dns.port), '-d', queries, '-c', '1', '-Q', String(rate), '-l', String(s)], { stdio: ['ignore', 'pipe', 'ignore'] });
        let out = '';
        p.stdout.on('data', (x) => (out += x));
        p.on('error', rej);
        p.on('close', () => res(Number(/Queries completed:\s+(\d+)/.exec(out)?.[1] ?? 0)));
      });
    // Every name answered once and the path compiled before measuring.
    await ask(3, 5000);
    const session = new inspector.Session();
    session.connect();
    const post = <T>(method: string, params?: object) => new Promise<T>((res, rej) => session.post(method, params, (e, r) => (e ? rej(e) : res(r as T))));
    await post('HeapProfiler.enable');
    await post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    const answers = await ask(seconds, qps);
    const { profile } = await post<{ profile: { head: ProfileNode } }>('HeapProfiler.stopSampling');
    session.disconnect();
    await d.close(0);
    const bySite = new Map<string, number>();
    // A site is its function, or with ALLOC_CALLERS=1 also its caller (for built-ins such as `Map` or `(V8 API)`).
    const callers = process.env.ALLOC_CALLERS === '1';
    const name = (f: ProfileNode['callFrame']) => `${f.functionName || '(anonymous)'} ${f.url.replace(/.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`;
    const walk = (n: ProfileNode, parent: string) => {
      const own = name(n.callFrame);
      const site = callers ? `${own} < ${parent}` : own;
      if (n.selfSize) bySite.set(site, (bySite.get(site) ?? 0) + n.selfSize);
      for (const c of n.children) walk(c, own);
    };
    walk(profile.head, '');
    const total = [...bySite.values()].reduce((a, b) => a + b, 0);
    const ours = [...bySite].filter(([k]) => k.includes(' dist/')).reduce((a, [, v]) => a + v, 0);
    console.log(
      JSON.stringify(
        {
          repo,
          answers,
          qps,
          bytesPerAnswer: Math.round(total / answers),
          canonportCodeBytesPerAnswer: Math.round(ours / answers),
          top: [...bySite].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.ALLOC_TOP ?? 12)).map(([site, bytes]) => ({ site, bytesPerAnswer: Math.round(bytes / answers) })),
        },
        null,
        2,
      ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runScript(main);
