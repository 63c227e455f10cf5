import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CanonportError, ErrorCodes } from '../src/errors.js';
import { loadRegistryFile, parseRegistry } from '../src/registry/load.js';
import { dependencyGraph, findCycles, startOrder, type DependencyGraph } from '../src/registry/order.js';
import type { Registry } from '../src/registry/registry.js';

const fixture = (name: string): string => new URL(`./fixtures/registry/${name}`, import.meta.url).pathname;

function orderError(r: Registry): CanonportError {
  try {
    startOrder(r);
  } catch (err) {
    if (err instanceof CanonportError) return err;
    throw err;
  }
  throw new Error('startOrder did not throw');
}

/** A registry YAML from service → dependencies, entries written in the given order. */
function registryOf(deps: Record<string, string[]>): Registry {
  const lines = ['services:'];
  for (const [name, on] of Object.entries(deps)) lines.push(`  ${name}:`, ...(on.length ? [`    dependsOn: [${on.join(', ')}]`] : []));
  return parseRegistry(`${lines.join('\n')}\n`);
}

describe('startOrder', () => {
  it('puts dependencies first and breaks ties by name', async () => {
    const steps = startOrder(await loadRegistryFile(fixture('order.yaml')));
    expect(steps.map((s) => s.name)).toEqual(['cache', 'db', 'api', 'splashpage', 'web', 'zz-worker']);
    expect(steps.find((s) => s.name === 'web')).toEqual({ name: 'web', dependsOn: ['api', 'splashpage'], level: 2 });
    // splashpage's dependency on its own role is inside the entry, not an edge.
    expect(steps.find((s) => s.name === 'splashpage')).toEqual({ name: 'splashpage', dependsOn: [], level: 0 });
  });

  it('does not depend on the order of entries in the file', () => {
    const deps: Record<string, string[]> = { a: [], b: ['a'], c: ['a'], d: ['b', 'c'], e: [], f: ['e', 'd'] };
    const expected = startOrder(registryOf(deps)).map((s) => s.name);
    expect(expected).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    fc.assert(
      fc.property(fc.shuffledSubarray(Object.keys(deps), { minLength: 6, maxLength: 6 }), (keys) => {
        const shuffled = Object.fromEntries(keys.map((k) => [k, [...deps[k]!].reverse()]));
        expect(startOrder(registryOf(shuffled)).map((s) => s.name)).toEqual(expected);
      }),
      { numRuns: 50 },
    );
  });

  it('always starts a service after everything it depends on (random acyclic graphs)', () => {
    // Edges only from later to earlier names: acyclic by construction.
    const graph = fc.array(fc.array(fc.nat(20), { maxLength: 4 }), { minLength: 1, maxLength: 20 }).map((rows) => {
      const names = rows.map((_, i) => `s${String(i).padStart(2, '0')}`);
      return Object.fromEntries(rows.map((targets, i) => [names[i]!, [...new Set(targets.filter((t) => t < i).map((t) => names[t]!))]]));
    });
    fc.assert(
      fc.property(graph, (deps) => {
        const steps = startOrder(registryOf(deps));
        expect(steps.length).toBe(Object.keys(deps).length);
        const at = new Map(steps.map((s, i) => [s.name, i]));
        for (const s of steps) for (const d of s.dependsOn) expect(at.get(d)!).toBeLessThan(at.get(s.name)!);
      }),
      { numRuns: 100 },
    );
  });

  it.each([
    ['cycle-1.yaml', 'api → api'],
    ['cycle-2.yaml', 'api → db → api'],
    ['cycle-3.yaml', 'alpha → beta → gamma → alpha'],
  ])('refuses %s, naming the cycle', async (file, text) => {
    const err = orderError(await loadRegistryFile(fixture(file)));
    expect(err.code).toBe(ErrorCodes.DEPENDENCY_CYCLE);
    expect(err.message).toBe(`dependency cycle: ${text}`);
  });

  it('refuses unknown dependencies', async () => {
    const err = orderError(await loadRegistryFile(fixture('unknown-dependency.yaml')));
    expect(err.code).toBe(ErrorCodes.UNKNOWN_DEPENDENCY);
    expect(err.details).toEqual({ unknown: [{ service: 'api', dependency: 'dbb' }] });
  });

  it('orders an empty registry as nothing', () => {
    expect(startOrder(parseRegistry(''))).toEqual([]);
  });
});

describe('findCycles', () => {
  it('finds every cycle, each once, through its smallest name', () => {
    const r = registryOf({ a: ['b'], b: ['a'], c: ['d'], d: ['e'], e: ['c', 'a'], f: ['f'], g: ['a'] });
    expect(findCycles(dependencyGraph(r))).toEqual([['a', 'b', 'a'], ['c', 'd', 'e', 'c'], ['f', 'f']]);
  });

  it('gives the shortest cycle through a component with several', () => {
    const r = registryOf({ a: ['b', 'd'], b: ['c'], c: ['a'], d: ['a'] });
    expect(findCycles(dependencyGraph(r))).toEqual([['a', 'd', 'a']]);
  });

  it('finds a cycle of length n for every n up to 40', () => {
    for (let n = 1; n <= 40; n++) {
      const names = Array.from({ length: n }, (_, i) => `n${String(i).padStart(2, '0')}`);
      const deps = Object.fromEntries(names.map((name, i) => [name, [names[(i + 1) % n]!]]));
      const cycles = findCycles(dependencyGraph(registryOf(deps)));
      expect(cycles).toEqual([[...names, names[0]!]]);
    }
  });

  it('walks a chain 200,000 deep, and a cycle through all of it, without overflowing the call stack', () => {
    const n = 200_000;
    const names = Array.from({ length: n }, (_, i) => `s${String(i).padStart(6, '0')}`);
    const chain = (closed: boolean): DependencyGraph => ({
      nodes: names,
      edges: new Map(names.map((v, i) => [v, i + 1 < n ? [names[i + 1]!] : closed ? [names[0]!] : []])),
      unknown: [],
    });
    expect(findCycles(chain(false))).toEqual([]);
    const [cycle, ...more] = findCycles(chain(true));
    expect(more).toEqual([]);
    expect(cycle).toHaveLength(n + 1);
    expect(cycle!.slice(0, 3)).toEqual(['s000000', 's000001', 's000002']);
    expect(cycle!.at(-1)).toBe('s000000');
  });

  it('on random graphs: reports real cycles, and none exactly when the graph has a topological order', () => {
    const graphs = fc
      .integer({ min: 1, max: 9 })
      .chain((n) => fc.array(fc.array(fc.integer({ min: 0, max: n - 1 }), { maxLength: 3 }), { minLength: n, maxLength: n }));
    fc.assert(
      fc.property(graphs, (adj) => {
        const name = (i: number) => `n${i}`;
        const graph: DependencyGraph = {
          nodes: adj.map((_, i) => name(i)),
          edges: new Map(adj.map((to, i) => [name(i), [...new Set(to)].sort((a, b) => a - b).map(name)])),
          unknown: [],
        };
        const cycles = findCycles(graph);
        for (const c of cycles) {
          expect(c[0]).toBe(c.at(-1));
          for (let k = 0; k + 1 < c.length; k++) expect(graph.edges.get(c[k]!)).toContain(c[k + 1]);
        }
        // Kahn: the graph is acyclic exactly when every node can be removed in dependency order.
        const waiting = new Map(graph.nodes.map((v) => [v, graph.edges.get(v)!.length]));
        const ready = graph.nodes.filter((v) => waiting.get(v) === 0);
        let removed = 0;
        while (ready.length) {
          const v = ready.pop()!;
          removed++;
          for (const u of graph.nodes) {
            if (!graph.edges.get(u)!.includes(v)) continue;
            waiting.set(u, waiting.get(u)! - 1);
            if (waiting.get(u) === 0) ready.push(u);
          }
        }
        expect(cycles.length === 0).toBe(removed === graph.nodes.length);
      }),
      { numRuns: 1000 },
    );
  });

  it('finds no cycle in a diamond', () => {
    expect(findCycles(dependencyGraph(registryOf({ a: [], b: ['a'], c: ['a'], d: ['b', 'c'] })))).toEqual([]);
  });
});
