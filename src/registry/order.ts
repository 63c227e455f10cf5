import { CanonportError, ErrorCodes } from '../errors.js';
import type { Registry } from './registry.js';

/**
 * The registry's `dependsOn` graph and the start order it implies (seed 002:
 * "generate the appropriate sequence in which to start the applications").
 * Nodes are registry services; a dependency on a role or version name
 * (`splashpage-psql`, `v2.user`) means the entry that defines it.
 */
export interface DependencyGraph {
  /** Registry services, sorted by name. */
  nodes: string[];
  /** Service → the services it depends on, sorted, without duplicates. */
  edges: Map<string, string[]>;
  /** dependsOn entries that name nothing in the registry. */
  unknown: { service: string; dependency: string }[];
}

export function dependencyGraph(registry: Registry): DependencyGraph {
  const nodes = [...registry.services.keys()].sort();
  const edges = new Map<string, string[]>();
  const unknown: { service: string; dependency: string }[] = [];
  for (const name of nodes) {
    const deps = new Set<string>();
    for (const dep of registry.services.get(name)!.spec.dependsOn ?? []) {
      const target = registry.services.has(dep) ? dep : registry.expanded.has(dep) ? registry.ownerOf(dep) : null;
      if (target === null) unknown.push({ service: name, dependency: dep });
      // An app's dependency on its own role (splashpage -> splashpage-psql) is
      // inside one entry, which starts as a whole; a literal self-dependency is a cycle.
      else if (target !== name || dep === name) deps.add(target);
    }
    edges.set(name, [...deps].sort());
  }
  return { nodes, edges, unknown };
}

/**
 * Every dependency cycle, of any length: one per strongly connected
 * component (Tarjan), each written as the shortest cycle through the
 * component's smallest name, closed: [a, b, c, a] means a needs b needs c needs a.
 * Deterministic: cycles sorted by their first name.
 */
export function findCycles(graph: DependencyGraph): string[][] {
  const cycles: string[][] = [];
  for (const comp of stronglyConnected(graph)) {
    const start = [...comp].sort()[0]!;
    if (comp.length === 1 && !(graph.edges.get(start) ?? []).includes(start)) continue;
    cycles.push(shortestCycle(graph, new Set(comp), start));
  }
  return cycles.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
}

/**
 * Tarjan's strongly connected components with an explicit stack of
 * (node, next edge) frames instead of recursion: a registry is user input,
 * and a dependency chain tens of thousands deep must not overflow the call
 * stack.
 */
function stronglyConnected(graph: DependencyGraph): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  const open = (v: string) => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    return { v, edges: graph.edges.get(v) ?? [], i: 0 };
  };
  for (const root of graph.nodes) {
    if (index.has(root)) continue;
    const frames = [open(root)];
    while (frames.length > 0) {
      const f = frames[frames.length - 1]!;
      if (f.i < f.edges.length) {
        const w = f.edges[f.i++]!;
        if (!index.has(w)) frames.push(open(w));
        else if (onStack.has(w)) low.set(f.v, Math.min(low.get(f.v)!, index.get(w)!));
        continue;
      }
      // Every edge of f.v done: close its component if it is a root, then report low to the caller.
      frames.pop();
      if (low.get(f.v) === index.get(f.v)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
        } while (w !== f.v);
        components.push(comp);
      }
      const caller = frames[frames.length - 1];
      if (caller) low.set(caller.v, Math.min(low.get(caller.v)!, low.get(f.v)!));
    }
  }
  return components;
}

/** Breadth-first from `start` back to itself inside one component; neighbours in name order. */
function shortestCycle(graph: DependencyGraph, comp: Set<string>, start: string): string[] {
  const parent = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const v = queue[i]!;
    for (const w of graph.edges.get(v) ?? []) {
      if (!comp.has(w)) continue;
      if (w === start) {
        const back = [start, v];
        while (back[back.length - 1] !== start) back.push(parent.get(back[back.length - 1]!)!);
        return back.reverse();
      }
      if (!parent.has(w) && w !== start) {
        parent.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start, start]; // unreachable for a real component; keeps the type total
}

/** `a → b → a` */
export function formatCycle(cycle: readonly string[]): string {
  return cycle.join(' → ');
}

export interface StartStep {
  name: string;
  /** Its direct dependencies (registry services). */
  dependsOn: string[];
  /** 0 for services with no dependencies; otherwise 1 + the highest level among them. Equal levels may start together. */
  level: number;
}

/**
 * The start order: dependencies first, ties broken by name, so the same
 * registry always gives the same order (Kahn's algorithm taking the
 * smallest ready name each step). Throws CP_UNKNOWN_DEPENDENCY or
 * CP_DEPENDENCY_CYCLE, naming every culprit.
 */
export function startOrder(registry: Registry): StartStep[] {
  const graph = dependencyGraph(registry);
  if (graph.unknown.length > 0) {
    const list = graph.unknown.map((u) => `${u.service} depends on ${u.dependency}`).join('; ');
    throw new CanonportError(ErrorCodes.UNKNOWN_DEPENDENCY, `unknown dependency: ${list}, which the registry does not define`, {
      unknown: graph.unknown,
    });
  }
  const cycles = findCycles(graph);
  if (cycles.length > 0) {
    throw new CanonportError(ErrorCodes.DEPENDENCY_CYCLE, `dependency cycle: ${cycles.map(formatCycle).join('; ')}`, { cycles });
  }
  const waiting = new Map<string, number>();
  const dependants = new Map<string, string[]>();
  for (const v of graph.nodes) {
    const deps = graph.edges.get(v)!;
    waiting.set(v, deps.length);
    for (const d of deps) {
      const list = dependants.get(d);
      if (list) list.push(v);
      else dependants.set(d, [v]);
    }
  }
  const ready = graph.nodes.filter((v) => waiting.get(v) === 0); // already sorted
  const level = new Map<string, number>();
  const out: StartStep[] = [];
  while (ready.length > 0) {
    const v = ready.shift()!;
    const deps = graph.edges.get(v)!;
    const lv = deps.reduce((m, d) => Math.max(m, level.get(d)! + 1), 0);
    level.set(v, lv);
    out.push({ name: v, dependsOn: deps, level: lv });
    for (const w of dependants.get(v) ?? []) {
      const left = waiting.get(w)! - 1;
      waiting.set(w, left);
      if (left === 0) insertSorted(ready, w);
    }
  }
  return out;
}

function insertSorted(list: string[], item: string): void {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (list[mid]! < item) lo = mid + 1;
    else hi = mid;
  }
  list.splice(lo, 0, item);
}
