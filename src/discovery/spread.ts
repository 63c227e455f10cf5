import type { Endpoint, Lookup } from './model.js';

/**
 * Spreading observed answers: the discovery core orders a service's
 * instances with this host's first (when it prefers local) and the others
 * by node; each consumer then turns the others per answer, so clients that
 * take the first address land evenly. DNS keeps one encoded answer per turn
 * (at most MAX_TURNS) and hands them out in rotation; gRPC Resolve turns
 * per call. Rotation rather than a shuffle: every instance leads equally
 * often, and the encoded answers stay a fixed, small set.
 */

/** Distinct orders kept per answer at most; with more instances, each turn moves several places. */
export const MAX_TURNS = 16;

/** How many distinct orders an answer has (1: nothing to turn). */
export function turnsOf(endpoints: readonly Endpoint[]): number {
  return Math.min(MAX_TURNS, remoteNodes(endpoints).length);
}

/** The endpoints with the local ones first and the others turned by `turn` places (counted in nodes). */
export function spreadEndpoints(endpoints: readonly Endpoint[], turn: number): Endpoint[] {
  const nodes = remoteNodes(endpoints);
  if (nodes.length < 2 || turn % nodes.length === 0) return [...endpoints];
  const turns = Math.min(MAX_TURNS, nodes.length);
  const shift = Math.floor(((turn % turns) * nodes.length) / turns);
  const order = [...nodes.slice(shift), ...nodes.slice(0, shift)];
  const rank = new Map(order.map((n, i) => [n, i]));
  const local = endpoints.filter((e) => e.local);
  const rest = endpoints.filter((e) => !e.local);
  // Stable: a node's own addresses keep their order (IPv4 before IPv6).
  return [...local, ...rest.map((e, i) => ({ e, i })).sort((a, b) => rank.get(a.e.node ?? '')! - rank.get(b.e.node ?? '')! || a.i - b.i).map((x) => x.e)];
}

/** A lookup with its endpoints spread for one answer (anything but an observed answer is left alone). */
export function spreadLookup(l: Lookup, turn: number): Lookup {
  if (!l.ok || turn === 0) return l;
  return { ok: true, instances: { ...l.instances, endpoints: spreadEndpoints(l.instances.endpoints, turn) } };
}

function remoteNodes(endpoints: readonly Endpoint[]): string[] {
  const out: string[] = [];
  let last: string | undefined;
  for (const e of endpoints) {
    if (e.source !== 'observed' || e.local || e.node === undefined) continue;
    if (e.node !== last && !out.includes(e.node)) out.push(e.node);
    last = e.node;
  }
  return out;
}
