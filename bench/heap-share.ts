import { spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launcherSettings } from '../test/helpers/launcher.js';
import { startServe } from '../test/helpers/serve-process.js';
import { startEtcd, type EtcdCluster } from '../test/helpers/etcd.js';
import { arg, runScript } from './run-script.js';

/**
 * Each module's share of an idle daemon's V8 heap, from a heap snapshot
 * (issue 24): a `canonport serve` started as its launcher starts it (same
 * node flags and environment) with `--heapsnapshot-signal`, left idle, then
 * snapshotted, and the snapshot's live objects attributed to the script
 * (module file) they belong to, grouped by npm package, by canonport's
 * source folder, or as Node's own built-in modules:
 *
 * - source: the script's source text, which V8 keeps for every module
 *   (lazy compilation and Function.prototype.toString need it);
 * - code: its functions' SharedFunctionInfos and what each owns (bytecode,
 *   scope infos, constant pools, source positions, uncompiled data,
 *   optimized and baseline code);
 * - closures: its function objects and their feedback cells and vectors.
 *
 * What a module builds (its objects, maps, strings) is not attributed to it
 * by a snapshot: that is the last row, by kind. bench/module-memory.ts
 * measures the whole of each import (what it builds included) by GC deltas;
 * this says what part of it is code that a bundler, a minifier or dropping
 * the package would take away.
 *
 *   node dist-bench/bench/heap-share.js [--settle 20] [--cluster] [--keep FILE]
 *
 * Needs etcd for --cluster. Writes the snapshot to a temporary folder (about
 * 20 MB), removed unless --keep names where to copy it.
 */

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  nodes: number[];
  edges: number[];
  strings: string[];
}

/** The group a script's URL belongs to: an npm package, canonport's folder under dist/, or Node's built-ins. */
export function groupOf(url: string): string {
  if (url.startsWith('node:')) return 'node built-in modules';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(url);
  if (pkg) return pkg[1] === 'zod' && url.includes('/locales/') ? 'zod (its locales)' : pkg[1]!;
  const own = /\/dist\/([^/]+)\//.exec(url);
  if (own) return `canonport ${own[1]}/`;
  if (/\/dist\/[^/]+\.js$/.test(url) || url.endsWith('/bin/canonport.js')) return 'canonport (top level)';
  return url === '' ? '(scripts without a name: eval, wrappers)' : 'other scripts';
}

export interface Share {
  group: string;
  scripts: number;
  source: number;
  code: number;
  closures: number;
}

/** Attributes a snapshot's live objects to scripts' groups; the rest by node type. */
export function attribute(s: Snapshot): { shares: Share[]; rest: Map<string, number>; total: number } {
  const meta = s.snapshot.meta;
  const nf = meta.node_fields.length;
  const ef = meta.edge_fields.length;
  const types = meta.node_types[0];
  const etypes = meta.edge_types[0];
  const { nodes, edges, strings } = s;
  const n = nodes.length / nf;
  const first = new Uint32Array(n + 1);
  for (let i = 0; i < n; i++) first[i + 1] = first[i]! + nodes[i * nf + 4]! * ef;
  const type = (i: number) => types[nodes[i * nf]!]!;
  const name = (i: number) => strings[nodes[i * nf + 1]!]!;
  const size = (i: number) => nodes[i * nf + 3]!;
  const named = (i: number): Map<string, number> => {
    const m = new Map<string, number>();
    for (let e = first[i]!; e < first[i + 1]!; e += ef) {
      const et = etypes[edges[e]!];
      if (et === 'internal' || et === 'property') m.set(strings[edges[e + 1]!]!, edges[e + 2]! / nf);
    }
    return m;
  };
  // Owner of each node: a group index (+1), 0 when not attributed.
  const owner = new Uint32Array(n);
  const groups = new Map<string, Share>();
  const shareOf: Share[] = [];
  const scriptGroup = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    if (type(i) !== 'code') continue;
    const m = named(i);
    const src = m.get('source');
    const url = m.get('name');
    if (src === undefined || url === undefined || !type(src).endsWith('string')) continue;
    const g = groupOf(name(url));
    let sh = groups.get(g);
    if (!sh) groups.set(g, (sh = { group: g, scripts: 0, source: 0, code: 0, closures: 0 }));
    let gi = shareOf.indexOf(sh);
    if (gi < 0) gi = shareOf.push(sh) - 1;
    sh.scripts++;
    owner[i] = gi + 1;
    sh.code += size(i);
    if (!owner[src]) {
      owner[src] = gi + 1;
      sh.source += size(src);
    }
    scriptGroup.set(i, gi);
  }
  // SharedFunctionInfos (edge script_or_debug_info to a script) and what each owns, two levels down.
  const sfiGroup = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    if (owner[i]) continue;
    const sc = named(i).get('script_or_debug_info');
    const gi = sc === undefined ? undefined : scriptGroup.get(sc);
    if (gi === undefined) continue;
    sfiGroup.set(i, gi);
  }
  const take = (root: number, gi: number, field: 'code' | 'closures', depth: number) => {
    const sh = shareOf[gi]!;
    const stack: [number, number][] = [[root, 0]];
    while (stack.length) {
      const [i, d] = stack.pop()!;
      if (owner[i] && i !== root) continue;
      owner[i] = gi + 1;
      sh[field] += size(i);
      if (d >= depth) continue;
      for (let e = first[i]!; e < first[i + 1]!; e += ef) {
        const et = etypes[edges[e]!];
        if (et !== 'internal' && et !== 'hidden') continue;
        const to = edges[e + 2]! / nf;
        const t = type(to);
        // Only what a function owns (its code objects and arrays), never other SFIs, scripts, maps or objects.
        if (owner[to] || sfiGroup.has(to) || (t !== 'code' && t !== 'array') || name(to) === 'system / Map') continue;
        stack.push([to, d + 1]);
      }
    }
  };
  for (const [i, gi] of sfiGroup) take(i, gi, 'code', 3);
  for (let i = 0; i < n; i++) {
    if (owner[i] || type(i) !== 'closure') continue;
    const sfi = named(i).get('shared');
    const gi = sfi === undefined ? undefined : sfiGroup.get(sfi);
    if (gi !== undefined) take(i, gi, 'closures', 2);
  }
  const rest = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += size(i);
    if (owner[i]) continue;
    const t = type(i);
    const k = t === 'object' || t === 'code' || t === 'hidden' || t === 'native' ? `${t}: ${name(i).startsWith('system / ') || t !== 'object' ? name(i).replace(/^system \/ /, '').slice(0, 40) : 'objects'}` : t;
    rest.set(k, (rest.get(k) ?? 0) + size(i));
  }
  return { shares: shareOf, rest, total };
}

const mb = (b: number) => (b / 1e6).toFixed(2);

async function main(): Promise<void> {
  const settle = Number(arg('--settle') ?? 20);
  const cluster = process.argv.includes('--cluster');
  const keep = arg('--keep');
  const dir = mkdtempSync(join(tmpdir(), 'heap-share-'));
  const { nodeArgs, env } = launcherSettings();
  let etcd: EtcdCluster | undefined;
  try {
    if (cluster) etcd = await startEtcd();
    const d = await startServe(['--zone', 'heap.test', ...(etcd ? ['--cluster', etcd.url, '--node', 'heap-share'] : [])], {
      env,
      spawn: (node, argv, o) => spawn(node, [...nodeArgs, '--heapsnapshot-signal=SIGUSR2', ...argv], { ...o, cwd: dir }),
      readyMs: 60_000,
    });
    try {
      process.stderr.write(`ready; idle ${settle} s, then a snapshot\n`);
      await new Promise((res) => setTimeout(res, settle * 1000));
      const rss = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${d.pid}/status`, 'utf8'))![1]) * 1024;
      process.kill(d.pid, 'SIGUSR2');
      // The snapshot is written on the daemon's main thread: once it answers HTTP again, the file is complete.
      for (;;) {
        await new Promise((res) => setTimeout(res, 500));
        if (!readdirSync(dir).some((f) => f.endsWith('.heapsnapshot'))) continue;
        const ok = await fetch(`http://${d.http.host}:${d.http.port}/healthz`).then((r) => r.ok, () => false);
        if (ok) break;
      }
      const file = join(dir, readdirSync(dir).find((f) => f.endsWith('.heapsnapshot'))!);
      if (keep) copyFileSync(file, keep);
      const { shares, rest, total } = attribute(JSON.parse(readFileSync(file, 'utf8')) as Snapshot);
      console.log(`canonport serve${cluster ? ' --cluster' : ''}, idle ${settle} s: RSS ${mb(rss)} MB before the snapshot; live V8 heap ${mb(total)} MB`);
      console.log(`${'module group'.padEnd(44)} ${'scripts'.padStart(7)} ${'source'.padStart(7)} ${'code'.padStart(7)} ${'closures'.padStart(8)} ${'total MB'.padStart(8)}`);
      const sum = (x: Share) => x.source + x.code + x.closures;
      let attributed = 0;
      for (const x of [...shares].sort((a, b) => sum(b) - sum(a))) {
        attributed += sum(x);
        if (sum(x) < 20_000) continue;
        console.log(`${x.group.padEnd(44)} ${String(x.scripts).padStart(7)} ${mb(x.source).padStart(7)} ${mb(x.code).padStart(7)} ${mb(x.closures).padStart(8)} ${mb(sum(x)).padStart(8)}`);
      }
      console.log(`${'(groups under 0.02 MB)'.padEnd(44)} ${''.padStart(7)} ${''.padStart(7)} ${''.padStart(7)} ${''.padStart(8)} ${mb(shares.filter((x) => sum(x) < 20_000).reduce((a, x) => a + sum(x), 0)).padStart(8)}`);
      console.log(`${'attributed to scripts'.padEnd(44)} ${''.padStart(32)} ${mb(attributed).padStart(8)}`);
      const top = [...rest].sort((a, b) => b[1] - a[1]);
      console.log(`not attributed to a script (what modules built: objects, maps, strings), ${mb(total - attributed)} MB, largest kinds:`);
      for (const [k, v] of top.slice(0, 10)) console.log(`  ${k.padEnd(42)} ${mb(v).padStart(8)}`);
    } finally {
      await d.stop();
    }
  } finally {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('heap-share.js')) runScript(main);
