import type { FleetDocument } from '../../fleet/document.js';
import type { FleetFinding, FleetHost, FleetService, FleetSource, FleetUnnamed } from '../../fleet/fleet.js';

/**
 * What changed between two fleet documents, host by host and service by
 * service: what the daemon sends an open page instead of the whole
 * document (at 1,000 hosts × 20 services the document is ~4 MB of JSON;
 * one listener starting changes one host and one service: a few kB).
 * Pure, and shared: the daemon computes diffs, the page applies them.
 */
export interface FleetDiff {
  /** The id of the document this applies to; a page holding another one fetches the document again. */
  from: string;
  /** The id of the document it makes. */
  to: string;
  hosts: KeyedChange<FleetHost>;
  services: KeyedChange<FleetService>;
  /** Present when it changed. */
  source?: FleetSource | undefined;
  /** Present when they changed (every finding: they are few). */
  findings?: FleetFinding[] | undefined;
  /** Present when they changed (every unnamed port: few, and a page lists them apart). */
  unnamed?: FleetUnnamed[] | undefined;
}

/** Entries added or changed, whole; `order` (every key, in order) when keys were added, removed or moved. */
export interface KeyedChange<T> {
  put: T[];
  order?: string[] | undefined;
}

export const hostKey = (h: FleetHost): string => h.host;
/** A service row's key: its name, and `/udp` for a UDP row (a name that listens on both is two rows). */
export const serviceKey = (s: FleetService): string => (s.protocol === 'udp' ? `${s.service}/udp` : s.service);

/** A document with each part as JSON text: built once per document, so diffs compare strings and the whole text is their concatenation. */
export interface EncodedDocument {
  doc: FleetDocument;
  /** Exactly JSON.stringify(doc): joined from the parts on first use (a rebuild nobody fetches never makes it). */
  readonly json: string;
  hosts: Map<string, string>;
  hostOrder: string[];
  services: Map<string, string>;
  serviceOrder: string[];
  source: string | undefined;
  unnamed: string;
  findings: string;
}

/**
 * `doc` with its parts as JSON. With `prev`, a host or service that is the
 * very object `prev` held (a rebuild that left it alone, from-cluster.ts
 * ViewFleet) keeps its text instead of being serialised again.
 */
export function encodeDocument(doc: FleetDocument, prev?: EncodedDocument): EncodedDocument {
  const prevHosts = prev ? new Map(prev.doc.hosts.map((h) => [hostKey(h), h])) : undefined;
  const hosts = new Map<string, string>();
  const hostOrder: string[] = [];
  for (const h of doc.hosts) {
    const key = hostKey(h);
    hosts.set(key, (prevHosts?.get(key) === h ? prev!.hosts.get(key) : undefined) ?? JSON.stringify(h));
    hostOrder.push(key);
  }
  const prevServices = prev ? new Map(prev.doc.services.map((s) => [serviceKey(s), s])) : undefined;
  const services = new Map<string, string>();
  const serviceOrder: string[] = [];
  for (const s of doc.services) {
    const key = serviceKey(s);
    services.set(key, (prevServices?.get(key) === s ? prev!.services.get(key) : undefined) ?? JSON.stringify(s));
    serviceOrder.push(key);
  }
  const source = doc.source === undefined ? undefined : JSON.stringify(doc.source);
  const unnamed = JSON.stringify(doc.unnamed);
  const findings = JSON.stringify(doc.findings);
  let json: string | undefined;
  return {
    doc,
    // The keys in the document's own order, so the text is what JSON.stringify(doc) gives (a test checks).
    get json() {
      json ??= joinParts(source, hosts.values(), services.values(), unnamed, findings);
      return json;
    },
    hosts,
    hostOrder,
    services,
    serviceOrder,
    source,
    unnamed,
    findings,
  };
}

/**
 * The document a page draws its first screen from (the matrix's first page
 * of hosts): every host, but only the first `withListeners` with their
 * listeners; the others only their name, target and whether they answered.
 * Services, findings and unnamed ports are whole, so counts, mixed versions
 * and hosts that differ are all there. At 1,000 hosts × 20 services it is a
 * tenth of the document; the page draws from it, then from the whole one.
 */
export function firstScreenJson(encoded: EncodedDocument, withListeners: number): string {
  const { doc } = encoded;
  // The others are their names and whether they answered: a column each, and the counts.
  const hosts = doc.hosts.map((h, i) => (i < withListeners ? encoded.hosts.get(hostKey(h))! : JSON.stringify({ host: h.host, target: h.target, reachable: h.reachable, error: h.error, code: h.code })));
  return joinParts(encoded.source, hosts, encoded.services.values(), encoded.unnamed, encoded.findings);
}

/** A document's JSON from its parts' JSON, keys in the document's own order (what JSON.stringify(doc) gives). */
function joinParts(source: string | undefined, hosts: Iterable<string>, services: Iterable<string>, unnamed: string, findings: string): string {
  return `{${source === undefined ? '' : `"source":${source},`}"hosts":[${[...hosts].join(',')}],"services":[${[...services].join(',')}],"unnamed":${unnamed},"findings":${findings}}`;
}

/** The diff from `prev` to `next`; null when they are equal. */
export function diffDocuments(prev: EncodedDocument, next: EncodedDocument, from: string, to: string): FleetDiff | null {
  const hosts = keyedChange(prev.hosts, prev.hostOrder, next.hosts, next.hostOrder, next.doc.hosts, hostKey);
  const services = keyedChange(prev.services, prev.serviceOrder, next.services, next.serviceOrder, next.doc.services, serviceKey);
  const sourceChanged = prev.source !== next.source;
  const findingsChanged = prev.findings !== next.findings;
  const unnamedChanged = prev.unnamed !== next.unnamed;
  if (!hosts && !services && !sourceChanged && !findingsChanged && !unnamedChanged) return null;
  return {
    from,
    to,
    hosts: hosts ?? { put: [] },
    services: services ?? { put: [] },
    ...(sourceChanged ? { source: next.doc.source } : {}),
    ...(findingsChanged ? { findings: next.doc.findings } : {}),
    ...(unnamedChanged ? { unnamed: next.doc.unnamed } : {}),
  };
}

function keyedChange<T>(
  prevJson: Map<string, string>,
  prevOrder: readonly string[],
  nextJson: Map<string, string>,
  nextOrder: readonly string[],
  nextValues: readonly T[],
  keyOf: (v: T) => string,
): KeyedChange<T> | null {
  const put = nextValues.filter((v) => prevJson.get(keyOf(v)) !== nextJson.get(keyOf(v)));
  const moved = prevOrder.length !== nextOrder.length || prevOrder.some((k, i) => nextOrder[i] !== k);
  if (put.length === 0 && !moved) return null;
  return moved ? { put, order: [...nextOrder] } : { put };
}

/** The document `diff` makes of `doc` (a new object; `doc` is left as it was). */
export function applyDiff(doc: FleetDocument, diff: FleetDiff): FleetDocument {
  return {
    ...('source' in diff ? { source: diff.source } : doc.source === undefined ? {} : { source: doc.source }),
    hosts: applyKeyed(doc.hosts, diff.hosts, hostKey),
    services: applyKeyed(doc.services, diff.services, serviceKey),
    unnamed: diff.unnamed ?? doc.unnamed ?? [],
    findings: diff.findings ?? doc.findings,
  };
}

function applyKeyed<T>(list: readonly T[], change: KeyedChange<T>, keyOf: (v: T) => string): T[] {
  const put = new Map(change.put.map((v) => [keyOf(v), v]));
  if (!change.order) return list.map((v) => put.get(keyOf(v)) ?? v);
  const had = new Map(list.map((v) => [keyOf(v), v]));
  const out: T[] = [];
  for (const key of change.order) {
    const v = put.get(key) ?? had.get(key);
    // A key neither put nor held: the diff is not for this document.
    if (v === undefined) throw new Error(`fleet diff names ${key}, which this document does not hold`);
    out.push(v);
  }
  return out;
}
