import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The layout shows the architecture, and stays that way: every module of
 * src/ belongs to a layer (a folder, or a top-level file), and imports
 * only from layers below its own, never from a peer or from above. No
 * file-level import cycle either. docs/layout.md ("How the code is laid out")
 * lists the same layers.
 */

const SRC = fileURLToPath(new URL('../src', import.meta.url));

/** Lowest first. Units in one row are peers: they may not import each other. */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors.ts', 'log.ts', 'concurrency.ts', 'version.ts'],
  ['scheme', 'metrics'],
  ['config'],
  ['net'],
  ['registry'],
  ['core'],
  ['discovery', 'inventory'],
  ['dns', 'cluster'],
  ['context.ts'],
  ['grpc', 'http'],
  ['xds'],
  ['fleet'],
  ['ui'],
  ['daemon'],
  ['cli'],
  ['client.ts'],
  ['index.ts'],
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The unit of a file: its top folder under src/, or the file itself at the top. */
function unitOf(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes('/') ? rel.split('/')[0]! : rel;
}

/** Relative imports of a file (types included: a type import still couples the layers), as absolute .ts paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    out.push(normalize(join(dirname(file), m[1]!)).replace(/\.js$/, '.ts'));
  }
  return out;
}

describe('the layout of src/', () => {
  const all = files(SRC);
  const graph = new Map(all.map((f) => [f, importsOf(f)]));
  const layerOf = new Map<string, number>();
  LAYERS.forEach((row, i) => row.forEach((u) => layerOf.set(u, i)));

  it('puts every module in a layer', () => {
    const unplaced = [...new Set(all.map(unitOf))].filter((u) => !layerOf.has(u));
    expect(unplaced).toEqual([]);
  });

  it('has every module import only from layers below its own', () => {
    const wrong: string[] = [];
    for (const [file, deps] of graph) {
      const from = unitOf(file);
      for (const dep of deps) {
        const to = unitOf(dep);
        if (to === from) continue;
        if (layerOf.get(to)! >= layerOf.get(from)!) wrong.push(`${relative(SRC, file)} imports ${relative(SRC, dep)} (${from} may not import ${to})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('has no import cycle between files', () => {
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(SRC, p)).join(' → '));
        return;
      }
      state.set(f, 'open');
      for (const d of graph.get(f) ?? []) if (graph.has(d)) visit(d, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of graph.keys()) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('keeps the browser\'s code apart: src/ui/client/ imports values only from its own folder (types are erased) and only src/ui/ imports it', () => {
    const CLIENT = join(SRC, 'ui', 'client');
    const wrong: string[] = [];
    for (const file of all) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/^import\s+(type\s+)?[^'";]*?from\s+'(\.{1,2}\/[^']+)'/gm)) {
        const dep = normalize(join(dirname(file), m[2]!)).replace(/\.js$/, '.ts');
        const inClient = (f: string) => dirname(f) === CLIENT;
        if (inClient(file) && !inClient(dep) && !m[1]) wrong.push(`${relative(SRC, file)} imports ${relative(SRC, dep)}: the page loads only src/ui/client/ (import types only)`);
        if (!inClient(file) && inClient(dep) && unitOf(file) !== 'ui') wrong.push(`${relative(SRC, file)} imports the page's ${relative(SRC, dep)}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(all.filter((f) => dirname(f) === CLIENT).length).toBeGreaterThan(3);
  });

  it('the checks see imports at all (they would pass vacuously if the pattern broke)', () => {
    const edges = [...graph.values()].reduce((n, d) => n + d.length, 0);
    expect(edges).toBeGreaterThan(100);
    expect(graph.get(join(SRC, 'daemon/daemon.ts'))).toContain(join(SRC, 'dns/chain.ts'));
  });
});
