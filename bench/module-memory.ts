import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { runScript } from './run-script.js';

/** This checkout (the script runs from dist-bench/bench/); not servers.ts's, which would import dns2 and more first. */
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * What each module the daemon loads costs in memory (issue 24): the
 * packages and the daemon's own modules imported one after another in the
 * order `canonport serve` loads them, with a full GC (--expose-gc) after
 * each, printing the V8 heap it added (live objects: its code, its
 * sources, what it builds at load), the RSS it added, and the time its
 * import took. Then what only cluster mode loads (etcd3) and what only the
 * first xDS message loads (Envoy's protos). A step pays for what it shares
 * with the steps before it only once: the first import pays for Node's ESM
 * loader itself (about 5 MB of node's own code pages), grpc-health-check
 * for the proto-loader copy it brings.
 *
 *   node --expose-gc --max-semi-space-size=4 dist-bench/bench/module-memory.js
 */

const SINGLE_HOST = ['pino', 'commander', 'dist/vendor/zod.js', 'yaml', 'dns2', 'prom-client', '@grpc/grpc-js', '@grpc/proto-loader', 'grpc-health-check', '@grpc/reflection'];
const OWN = ['cli/commands/serve.js', 'daemon/daemon.js', 'cli/main.js'];
const CLUSTER = ['etcd3', 'cockatiel', 'cluster/cluster.js'];

async function main(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  const rss = () => (Number(/VmRSS:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024) / 1e6;
  const measure = () => {
    gc();
    gc();
    return { heap: process.memoryUsage().heapUsed / 1e6, rss: rss() };
  };
  const dist = (m: string) => pathToFileURL(join(REPO_ROOT, 'dist', m)).href;
  const steps: [string, string, () => Promise<unknown>][] = [
    // zod as dist/ imports it: the part canonport calls, bundled at build (scripts/bundle-zod.mjs).
    ...SINGLE_HOST.map((p): [string, string, () => Promise<unknown>] => [p, 'every daemon', () => import(p.startsWith('dist/') ? dist(p.slice(5)) : p)]),
    ...OWN.map((m): [string, string, () => Promise<unknown>] => [`src/${m.replace(/\.js$/, '.ts')}`, 'every daemon', () => import(dist(m))]),
    ...CLUSTER.map((p): [string, string, () => Promise<unknown>] => [p.endsWith('.js') ? `src/${p.replace(/\.js$/, '.ts')}` : p, 'cluster mode only', () => import(p.endsWith('.js') ? dist(p) : p)]),
    // What the bundle saves: the package as published (no daemon loads it since the bundle; most of it shared with
    // the bundle's code, so this row is the extra the package would cost, not its whole price).
    ['zod as published (for comparison)', 'no daemon', () => import('zod')],
    [
      "Envoy's xDS protos, parsed",
      'on the first xDS message',
      async () => ((await import(dist('xds/protos.js'))) as { xdsProtos(): unknown }).xdsProtos(),
    ],
  ];
  const start = measure();
  console.log(`${'module'.padEnd(32)} ${'loaded'.padEnd(26)} ${'heap MB'.padStart(8)} ${'RSS MB'.padStart(8)} ${'ms'.padStart(6)}`);
  console.log(`${'(node, nothing imported)'.padEnd(32)} ${''.padEnd(26)} ${start.heap.toFixed(2).padStart(8)} ${start.rss.toFixed(1).padStart(8)}`);
  let prev = start;
  for (const [name, when, load] of steps) {
    const t = performance.now();
    await load();
    const ms = performance.now() - t;
    const now = measure();
    console.log(`${name.padEnd(32)} ${when.padEnd(26)} ${`+${(now.heap - prev.heap).toFixed(2)}`.padStart(8)} ${`+${(now.rss - prev.rss).toFixed(1)}`.padStart(8)} ${ms.toFixed(0).padStart(6)}`);
    prev = now;
  }
  console.log(`${'total'.padEnd(32)} ${''.padEnd(26)} ${prev.heap.toFixed(2).padStart(8)} ${prev.rss.toFixed(1).padStart(8)}`);
}

runScript(main);
