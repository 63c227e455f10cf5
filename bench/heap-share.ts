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
 * Then the whole heap by kind and its largest retainers (retainers(), below):
 * what no script owns, by constructor and by who holds it.
 *
 *   node dist-bench/bench/heap-share.js [--settle 20] [--cluster] [--keep FILE]
 *
 * Needs etcd for --cluster. Writes the snapshot to a temporary folder (about
 * 20 MB), removed unless --keep names where to copy it.
 */

export interface Snapshot {
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

/** A snapshot's flat arrays as nodes and edges: node i's fields at i * nf, its edges from first[i] to first[i + 1]. */
function reader(s: Snapshot) {
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
  return { nf, ef, etypes, edges, strings, n, first, type, name, size };
}

/** Attributes a snapshot's live objects to scripts' groups; the rest by node type. */
export function attribute(s: Snapshot): { shares: Share[]; rest: Map<string, number>; total: number } {
  const { nf, ef, etypes, edges, strings, n, first, type, name, size } = reader(s);
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

/** One of the largest retainers: what it is, the bytes only it keeps alive, and the path that holds it. */
export interface Retainer {
  label: string;
  retained: number;
  path: string;
}

/**
 * The whole live heap by kind (strings: script sources apart from the rest;
 * objects by constructor), and its largest retainers by dominator tree: an
 * object's retained size is what a GC would free with it (Cooper, Harvey and
 * Kennedy's iterative algorithm over the snapshot's strong edges; the
 * snapshot is a few hundred thousand nodes, so a second or two). What the
 * script attribution above cannot place (what modules built) is named here
 * by constructor and by who holds it (issue 24: answer caches, warm-up
 * leftovers, histograms, Buffer pools would show as large retainers).
 */
export function retainers(s: Snapshot, top = 25): { kinds: [string, number, number][]; largest: Retainer[]; total: number } {
  const { nf, ef, etypes, edges, strings, n, first, type, name, size } = reader(s);
  const strong = (e: number) => etypes[edges[e]!] !== 'weak';
  const edgeName = (e: number) => (['element', 'hidden'].includes(etypes[edges[e]!]!) ? `[${edges[e + 1]}]` : strings[edges[e + 1]!]!);
  // Predecessors over strong edges, and which strings are scripts' sources.
  const pcount = new Uint32Array(n + 1);
  const isSource = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    for (let e = first[i]!; e < first[i + 1]!; e += ef) {
      if (!strong(e)) continue;
      pcount[edges[e + 2]! / nf + 1]++;
      if (type(i) === 'code' && strings[edges[e + 1]!] === 'source' && etypes[edges[e]!] !== 'element') isSource[edges[e + 2]! / nf] = 1;
    }
  }
  for (let i = 0; i < n; i++) pcount[i + 1]! += pcount[i]!;
  const preds = new Uint32Array(pcount[n]!);
  const fill = pcount.slice();
  for (let i = 0; i < n; i++) for (let e = first[i]!; e < first[i + 1]!; e += ef) if (strong(e)) preds[fill[edges[e + 2]! / nf]!++] = i;
  // Post-order of a depth-first walk from the root (node 0).
  const po = new Int32Array(n).fill(-1);
  const order: number[] = [];
  const next = new Uint32Array(n);
  const seen = new Uint8Array(n);
  const stack = [0];
  seen[0] = 1;
  next[0] = first[0]!;
  while (stack.length > 0) {
    const v = stack[stack.length - 1]!;
    let pushed = false;
    while (next[v]! < first[v + 1]!) {
      const e = next[v]!;
      next[v] = e + ef;
      const t = edges[e + 2]! / nf;
      if (!strong(e) || seen[t]) continue;
      seen[t] = 1;
      next[t] = first[t]!;
      stack.push(t);
      pushed = true;
      break;
    }
    if (!pushed) {
      stack.pop();
      po[v] = order.length;
      order.push(v);
    }
  }
  const idom = new Int32Array(n).fill(-1);
  idom[0] = 0;
  const meet = (a: number, b: number) => {
    while (a !== b) {
      while (po[a]! < po[b]!) a = idom[a]!;
      while (po[b]! < po[a]!) b = idom[b]!;
    }
    return a;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let k = order.length - 2; k >= 0; k--) {
      const v = order[k]!;
      let d = -1;
      for (let p = pcount[v]!; p < pcount[v + 1]!; p++) {
        const u = preds[p]!;
        if (po[u]! >= 0 && idom[u]! >= 0) d = d < 0 ? u : meet(u, d);
      }
      if (d >= 0 && idom[v] !== d) {
        idom[v] = d;
        changed = true;
      }
    }
  }
  const retained = new Float64Array(n);
  let total = 0;
  const kinds = new Map<string, [number, number]>();
  for (const v of order) {
    retained[v]! += size(v);
    if (v !== 0) retained[idom[v]!]! += retained[v]!;
    total += size(v);
    const t = type(v);
    const k =
      t === 'string' || t === 'concatenated string' || t === 'sliced string'
        ? isSource[v] ? 'string: scripts\' source text' : `string: other (${t})`
        : t === 'object' || t === 'native' || t === 'array' || t === 'hidden'
          ? `${t}: ${name(v).replace(/^system \/ /, '').slice(0, 40) || '(no name)'}`
          : t;
    const c = kinds.get(k) ?? [0, 0];
    c[0] += size(v);
    c[1]++;
    kinds.set(k, c);
  }
  const label = (v: number) => `${type(v)} ${name(v).slice(0, 50).replace(/\s+/g, ' ')}`;
  const via = (v: number) => {
    const d = idom[v]!;
    for (let e = first[d]!; e < first[d + 1]!; e += ef) if (edges[e + 2]! / nf === v) return edgeName(e);
    return '(shared)';
  };
  const pathOf = (v: number) => {
    const parts: string[] = [];
    for (let x = v, k = 0; x !== 0 && type(idom[x]!) !== 'synthetic' && k < 5; x = idom[x]!, k++) parts.push(`.${via(x)} of ${label(idom[x]!)}`);
    if (parts.length > 0) return parts.join(' ');
    // Held from more than one place (or by a root): name one holder.
    for (let p = pcount[v]!; p < pcount[v + 1]!; p++) {
      const u = preds[p]!;
      if (type(u) === 'synthetic') continue;
      for (let e = first[u]!; e < first[u + 1]!; e += ef) if (edges[e + 2]! / nf === v && strong(e)) return `.${edgeName(e)} of ${label(u)} (one of ${pcount[v + 1]! - pcount[v]!} holders)`;
    }
    return '(a GC root)';
  };
  // The largest retainers, each one a holder of several things: one that holds mostly (3/4) a single thing is
  // passed over for that thing (a chain of sole holders shows once, at the end that says what is held).
  const biggestChild = new Float64Array(n);
  for (const v of order) if (v !== 0) biggestChild[idom[v]!] = Math.max(biggestChild[idom[v]!]!, retained[v]!);
  const largest = order
    .filter((v) => type(v) !== 'synthetic' && biggestChild[v]! < retained[v]! * 0.75)
    .sort((a, b) => retained[b]! - retained[a]!)
    .slice(0, top)
    .map((v) => ({ label: label(v), retained: retained[v]!, path: pathOf(v) }));
  return { kinds: [...kinds].map(([k, [b, c]]) => [k, b, c] as [string, number, number]).sort((a, b) => b[1] - a[1]), largest, total };
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
      const { kinds, largest } = retainers(JSON.parse(readFileSync(file, 'utf8')) as Snapshot);
      console.log(`the whole live heap by kind (objects by constructor), MB and count:`);
      for (const [k, b, c] of kinds.slice(0, 20)) console.log(`  ${k.padEnd(42)} ${mb(b).padStart(8)} ${String(c).padStart(7)}`);
      console.log(`largest retainers (what a GC would free with each), MB, and what holds them:`);
      for (const r of largest) console.log(`  ${mb(r.retained).padStart(6)}  ${r.label}  ${r.path}`);
    } finally {
      await d.stop();
    }
  } finally {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1]?.endsWith('heap-share.js')) runScript(main);
