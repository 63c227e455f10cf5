import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startEtcd } from '../test/helpers/etcd.js';
import { createHostNet, type Host } from '../test/helpers/netns.js';
import { runScript } from './run-script.js';

/**
 * Convergence of cluster mode across two hosts (network namespaces, each
 * running test/helpers/cluster-agent.mjs: a real inventory scanning its own
 * /proc and a Cluster): a listener starts on host A; how long until host
 * B's view lists it, and after it closes, until B's view drops it.
 * p50/p99 over --trials. Needs root (namespaces) and etcd-server.
 *
 *   node scripts/build.mjs && npx tsc -p tsconfig.bench.json
 *   node dist-bench/bench/cluster-convergence.js --trials 50 --interval-ms 1000
 */

const { values: args } = parseArgs({
  options: {
    trials: { type: 'string', default: '50' },
    'interval-ms': { type: 'string', default: '1000' },
  },
});
const TRIALS = Number(args.trials);
const INTERVAL_MS = Number(args['interval-ms']);
if (!(TRIALS >= 1 && TRIALS <= 500 && INTERVAL_MS >= 100 && INTERVAL_MS <= 60_000)) {
  console.error('want 1 ≤ --trials ≤ 500 and 100 ≤ --interval-ms ≤ 60000');
  process.exit(2);
}
// Resolved from the repository root: dist-bench/bench/ → ../../test/helpers/.
const AGENT = fileURLToPath(new URL('../../test/helpers/cluster-agent.mjs', import.meta.url));
const PORT = 12082;

type View = { event: string; nodes?: string[]; ports?: Record<string, { node: string }[]> };

function agent(host: Host, node: string, endpoints: string): { views: View[]; waitFor: (pred: (v: View) => boolean, timeoutMs: number) => Promise<number>; kill: () => void } {
  const child = host.spawn(process.execPath, [AGENT, JSON.stringify({ endpoints, node, prefix: '/canonport-conv', intervalMs: INTERVAL_MS, watchPorts: [PORT] })]);
  const views: View[] = [];
  const waiters = new Set<{ pred: (v: View) => boolean; resolve: (t: number) => void }>();
  let buf = '';
  child.stdout!.on('data', (d) => {
    const now = performance.now();
    buf += d;
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const line of lines) {
      if (!line) continue;
      const v = JSON.parse(line) as View;
      views.push(v);
      for (const w of waiters) if (w.pred(v)) (waiters.delete(w), w.resolve(now));
    }
  });
  child.stderr!.pipe(process.stderr);
  return {
    views,
    waitFor: (pred, timeoutMs) =>
      new Promise((resolve, reject) => {
        const last = views.at(-1);
        if (last && pred(last)) return resolve(performance.now());
        const w = { pred, resolve: (t: number) => (clearTimeout(timer), resolve(t)) };
        const timer = setTimeout(() => (waiters.delete(w), reject(new Error('timed out'))), timeoutMs);
        waiters.add(w);
      }),
    kill: () => child.kill('SIGTERM'),
  };
}

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

async function main(): Promise<void> {
  const net = await createHostNet({ hosts: 2 });
  const etcd = await startEtcd({ extraHosts: [net.gateway] });
  const endpoints = `etcd://${net.gateway}:${etcd.members[0]!.clientPort}`;
  const [hostA, hostB] = net.hosts as [Host, Host];
  const a = agent(hostA, 'host-a', endpoints);
  const b = agent(hostB, 'host-b', endpoints);
  const has = (v: View) => (v.ports?.[String(PORT)] ?? []).some((e) => e.node === 'host-a');
  try {
    await b.waitFor((v) => v.nodes?.includes('host-a') === true, 20_000);
    const appear: number[] = [];
    const vanish: number[] = [];
    for (let i = 0; i < TRIALS; i++) {
      const listener = await hostA.listen(PORT);
      const t0 = performance.now();
      appear.push((await b.waitFor(has, 30_000)) - t0);
      await listener.stop();
      const t1 = performance.now();
      vanish.push((await b.waitFor((v) => !has(v), 30_000)) - t1);
      // Start the next trial at a random phase of the scan.
      await new Promise((r) => setTimeout(r, Math.random() * INTERVAL_MS));
    }
    const stats = (xs: number[]) => ({ p50: Math.round(percentile(xs, 50)), p99: Math.round(percentile(xs, 99)), max: Math.round(Math.max(...xs)) });
    console.log(JSON.stringify({ trials: TRIALS, scanIntervalMs: INTERVAL_MS, listenerAppearsMs: stats(appear), listenerClosesMs: stats(vanish) }, null, 2));
  } finally {
    a.kill();
    b.kill();
    await new Promise((r) => setTimeout(r, 500));
    await etcd.stop();
    net.cleanup();
  }
}

runScript(main);
