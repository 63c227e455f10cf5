import type { FleetDocument } from '../../fleet/document.js';
import type { FleetFinding, FleetHost, FleetListener, FleetService, FleetUnnamed, InstanceState } from '../../fleet/fleet.js';
import { serviceKey } from './diff.js';

/**
 * What the page computes from a fleet document: pure functions, no DOM, so
 * they are tested in Node like the rest (test/ui-model.test.ts) and run
 * unchanged in the browser.
 */

/** What the daemon tells the page about itself (embedded in the HTML). */
export interface PageInfo {
  /** cluster: the whole cluster's view; local: this host's own inventory. */
  mode: 'cluster' | 'local';
  /** This daemon's node name (cluster mode) or host name. */
  node: string;
  /** The zones it answers (configured ones; `localhost` when there are none). */
  zones: string[];
  /** Where its DNS and gRPC listen, for the `dig` and `grpcurl` lines. */
  dns: { host: string; port: number };
  grpc: { host: string; port: number; tls: boolean };
  /** canonport's version. */
  version: string;
}

export const STATES: readonly InstanceState[] = ['ready', 'not-ready', 'draining', 'listening', 'unknown'];

/** What each state says, in words (never told by colour alone). */
export const STATE_TEXT: Readonly<Record<InstanceState, string>> = {
  ready: 'ready',
  'not-ready': 'not ready',
  draining: 'draining',
  listening: 'listening (readiness not probed)',
  unknown: 'state unknown',
};

/** How bad a state is, for a cell with several listeners: it shows the worst. */
const SEVERITY: Readonly<Record<InstanceState, number>> = { 'not-ready': 4, draining: 3, unknown: 2, listening: 1, ready: 0 };

export function stateOf(l: FleetListener): InstanceState {
  return l.state ?? 'unknown';
}

export function worstState(states: readonly InstanceState[]): InstanceState {
  return states.reduce<InstanceState>((w, s) => (SEVERITY[s] > SEVERITY[w] ? s : w), states[0] ?? 'unknown');
}

// --- routes: every view has its own URL (the hash), so a link can go in a runbook ---

export type View = { kind: 'matrix' } | { kind: 'service'; name: string } | { kind: 'host'; name: string };

export interface Filters {
  /** Substrings, case-insensitive; "" matches everything. `version` "?" is the unknown version. */
  service: string;
  host: string;
  version: string;
  /** "" for any state. */
  state: InstanceState | '';
  /** Page of hosts in the matrix, from 1. */
  page: number;
}

export interface Route {
  view: View;
  filters: Filters;
}

export const NO_FILTERS: Filters = { service: '', host: '', version: '', state: '', page: 1 };

/** `#/`, `#/service/api`, `#/host/web-1`, each with `?service=…&host=…&version=…&state=…&page=…`. Anything else reads as the matrix. */
export function parseRoute(hash: string): Route {
  const text = hash.replace(/^#/, '');
  const q = text.indexOf('?');
  const path = q < 0 ? text : text.slice(0, q);
  const params = new URLSearchParams(q < 0 ? '' : text.slice(q + 1));
  const parts = path.split('/').filter(Boolean).map(safeDecode);
  let view: View = { kind: 'matrix' };
  if (parts.length === 2 && parts[0] === 'service' && parts[1]) view = { kind: 'service', name: parts[1] };
  if (parts.length === 2 && parts[0] === 'host' && parts[1]) view = { kind: 'host', name: parts[1] };
  const state = params.get('state') ?? '';
  const page = Number(params.get('page') ?? '1');
  return {
    view,
    filters: {
      service: params.get('service') ?? '',
      host: params.get('host') ?? '',
      version: params.get('version') ?? '',
      state: (STATES as readonly string[]).includes(state) ? (state as InstanceState) : '',
      page: Number.isInteger(page) && page >= 1 ? page : 1,
    },
  };
}

export function formatRoute(route: Route): string {
  const v = route.view;
  const path = v.kind === 'matrix' ? '/' : `/${v.kind}/${encodeURIComponent(v.name)}`;
  const params = new URLSearchParams();
  const f = route.filters;
  if (f.service) params.set('service', f.service);
  if (f.host) params.set('host', f.host);
  if (f.version) params.set('version', f.version);
  if (f.state) params.set('state', f.state);
  if (f.page > 1) params.set('page', String(f.page));
  const query = params.toString();
  return `#${path}${query ? `?${query}` : ''}`;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// --- the document, indexed for the three views ---

/** One cell of the matrix: what one host runs of one service. */
export interface Cell {
  listeners: FleetListener[];
  /** Its versions ("" unknown), sorted. */
  versions: string[];
  state: InstanceState;
  /** Its version is not the service's majority version (and the service is mixed). */
  outlier: boolean;
}

export interface ServiceSummary {
  service: FleetService;
  /** Its row's key and route name: the name, `name/udp` for a UDP row (diff.ts's serviceKey). */
  key: string;
  ports: number[];
  /** The version on the most hosts, when one has strictly more than every other; null otherwise. */
  majority: string | null;
}

export interface RegistryOutlier {
  host: string;
  digest: string;
  /** The majority's digest; "" when no digest is on a majority. */
  majority: string;
  message: string;
}

export interface FleetIndex {
  doc: FleetDocument;
  hosts: FleetHost[];
  services: ServiceSummary[];
  /** Hosts that answered (in cluster mode: every node). */
  reachable: number;
  cell(service: string, host: string): Cell | undefined;
  host(name: string): FleetHost | undefined;
  service(name: string): ServiceSummary | undefined;
  /** Hosts whose registry differs from the majority's, by host. */
  registryOutliers: Map<string, RegistryOutlier>;
  /** Ports hosts name as different services. */
  portNames: FleetFinding[];
  /** Names learned at run time that share a port. */
  collisions: FleetFinding[];
  /** Ports no source names, listed apart. */
  unnamed: FleetUnnamed[];
}

/** The transport of a listener, from the /proc file it was read from. */
export function protocolOfListener(l: Pick<FleetListener, 'family'>): 'tcp' | 'udp' {
  return l.family === 'udp' || l.family === 'udp6' ? 'udp' : 'tcp';
}

/** The row keys a listener shows under: one per name people know it by (its claim's names when a document predates names). */
export function rowKeysOf(l: FleetListener): string[] {
  const udp = protocolOfListener(l) === 'udp';
  const names = l.names ? l.names.map((n) => n.name) : l.services;
  return names.map((n) => (udp ? `${n}/udp` : n));
}

export function indexFleet(doc: FleetDocument): FleetIndex {
  const hosts = doc.hosts;
  const byHost = new Map(hosts.map((h) => [h.host, h]));
  const services: ServiceSummary[] = doc.services.map((s) => {
    const v = s.versions;
    const majority = v.length === 0 ? null : v.length === 1 || v[0]!.hosts.length > v[1]!.hosts.length ? v[0]!.version : null;
    return { service: s, key: serviceKey(s), ports: [...new Set(v.flatMap((x) => x.ports))].sort((a, b) => a - b), majority };
  });
  const byService = new Map(services.map((s) => [s.key, s]));
  // row key → host → listeners
  const cells = new Map<string, Map<string, FleetListener[]>>();
  for (const h of hosts) {
    if (!h.reachable || !h.inventory) continue;
    for (const l of h.inventory.listeners) {
      for (const name of rowKeysOf(l)) {
        let row = cells.get(name);
        if (!row) cells.set(name, (row = new Map()));
        let list = row.get(h.host);
        if (!list) row.set(h.host, (list = []));
        list.push(l);
      }
    }
  }
  const cellCache = new Map<string, Cell>();
  const registryOutliers = new Map<string, RegistryOutlier>();
  for (const f of doc.findings) {
    if (f.kind === 'registry') registryOutliers.set(f.host, { host: f.host, digest: f.found[0] ?? '', majority: f.expected, message: f.message });
  }
  return {
    doc,
    hosts,
    services,
    reachable: hosts.filter((h) => h.reachable).length,
    host: (name) => byHost.get(name),
    service: (name) => byService.get(name),
    registryOutliers,
    portNames: doc.findings.filter((f) => f.kind === 'port-names'),
    collisions: doc.findings.filter((f) => f.kind === 'collision'),
    unnamed: doc.unnamed ?? [],
    cell(service, host) {
      const key = `${service}\u0000${host}`;
      const cached = cellCache.get(key);
      if (cached) return cached;
      const listeners = cells.get(service)?.get(host);
      if (!listeners) return undefined;
      const versions = [...new Set(listeners.map((l) => l.version))].sort();
      const s = byService.get(service);
      const mixed = s?.service.mixed ?? false;
      const outlier = mixed && s?.majority !== null && s?.majority !== undefined && versions.some((v) => v !== s.majority);
      const cell: Cell = { listeners, versions, state: worstState(listeners.map(stateOf)), outlier };
      cellCache.set(key, cell);
      return cell;
    },
  };
}

// --- filters ---

const has = (text: string, part: string) => part === '' || text.toLowerCase().includes(part.toLowerCase());

export function versionMatches(version: string, filter: string): boolean {
  if (filter === '') return true;
  if (filter === '?') return version === '';
  return has(version, filter);
}

export function listenerMatches(l: FleetListener, f: Filters): boolean {
  return versionMatches(l.version, f.version) && (f.state === '' || stateOf(l) === f.state);
}

/** Filters on what runs (version, state) rather than on names. */
export function filtersListeners(f: Filters): boolean {
  return f.version !== '' || f.state !== '';
}

/** How many host columns one page of the matrix shows: a table of 20 × 1,000 cells is neither fast nor readable; the findings above it name outliers on every page. */
export const HOSTS_PER_PAGE = 100;

/**
 * Hosts the first-screen document carries with their listeners (diff.ts
 * firstScreenJson): what a wide screen shows of the matrix's first page
 * before scrolling. The page draws those columns first, then the whole page.
 * A host column is about 107 px beside the service column's 275 (Chromium,
 * 14 px text): 10 columns show at 1,280 px, 21 at 2,560. Every column more
 * is 20 cells the browser styles, lays out and paints before its first
 * frame (issue 25: that, not the script, is most of the first render).
 */
export const FIRST_SCREEN_HOSTS = 20;

export interface Matrix {
  rows: ServiceSummary[];
  /** Every host the filters keep, before paging. */
  allColumns: FleetHost[];
  /** This page's hosts. */
  columns: FleetHost[];
  page: number;
  pages: number;
}

/** The services × hosts matrix the filters keep: services and hosts by name, and, with a version or state filter, only those with a matching instance. */
export function matrixOf(index: FleetIndex, f: Filters): Matrix {
  let rows = index.services.filter((s) => has(s.key, f.service));
  let cols = index.hosts.filter((h) => has(h.host, f.host));
  if (filtersListeners(f)) {
    const matching = (s: ServiceSummary, h: FleetHost) => index.cell(s.key, h.host)?.listeners.some((l) => listenerMatches(l, f)) ?? false;
    rows = rows.filter((s) => cols.some((h) => matching(s, h)));
    cols = cols.filter((h) => rows.some((s) => matching(s, h)));
  }
  const pages = Math.max(1, Math.ceil(cols.length / HOSTS_PER_PAGE));
  const page = Math.min(f.page, pages);
  return { rows, allColumns: cols, columns: cols.slice((page - 1) * HOSTS_PER_PAGE, page * HOSTS_PER_PAGE), page, pages };
}

// --- words and names ---

/** `3/5 hosts, 2 versions`. */
export function countsText(s: FleetService, hosts: number): string {
  const n = s.versions.length;
  return `${s.hostCount}/${hosts} host${hosts === 1 ? '' : 's'}, ${n} version${n === 1 ? '' : 's'}`;
}

export function versionText(v: string): string {
  return v === '' ? '?' : v;
}

/** A row key's name and transport: `dns/udp` → dns over UDP, `api` → api over TCP. */
export function splitKey(key: string): { name: string; protocol: 'tcp' | 'udp' } {
  return key.endsWith('/udp') ? { name: key.slice(0, -'/udp'.length), protocol: 'udp' } : { name: key, protocol: 'tcp' };
}

/** The names that reach a service, in each zone the daemon answers (gRPC's `canon:` and `xds:` dial TCP only). */
export function namesOf(key: string, info: PageInfo): { zone: string; names: string[] }[] {
  const { name: service, protocol } = splitKey(key);
  return info.zones.map((zone) => ({
    zone,
    names: protocol === 'udp' ? [`${service}.${zone}`, `_${service}._udp.${zone}`] : [`${service}.${zone}`, `_${service}._tcp.${zone}`, `canon:///${service}.${zone}`, `xds:///${service}.${zone}`],
  }));
}

/** Where to reach the daemon from this browser: a wildcard listen address means the address the page came from. */
export function reachable(host: string, pageHost: string): string {
  const h = host === '0.0.0.0' || host === '::' ? pageHost.replace(/^\[|\]$/g, '') : host;
  return h;
}

/** The exact lines to try a service by name: dig against the daemon's DNS, grpcurl against its gRPC. */
export function commandsFor(key: string, info: PageInfo, pageHost: string): string[] {
  const { name: service, protocol } = splitKey(key);
  const zone = info.zones[0] ?? 'localhost';
  const dns = reachable(info.dns.host, pageHost);
  const grpcHost = reachable(info.grpc.host, pageHost);
  const grpc = grpcHost.includes(':') ? `[${grpcHost}]:${info.grpc.port}` : `${grpcHost}:${info.grpc.port}`;
  const port = info.dns.port === 53 ? '' : ` -p ${info.dns.port}`;
  const body = JSON.stringify({ name: `${service}.${zone}` });
  return [
    `dig @${dns}${port} +short SRV _${service}._${protocol}.${zone}`,
    `dig @${dns}${port} +short A ${service}.${zone}`,
    `grpcurl ${info.grpc.tls ? '-cacert ca.pem' : '-plaintext'} -d '${body}' ${grpc} canonport.v1.Canonport/Resolve`,
  ];
}

/** Where a row's name comes from, in words. */
export const NAME_SOURCE_TEXT: Readonly<Record<string, string>> = {
  registry: 'named by the registry',
  query: 'named by the names clients ask for',
  process: 'named after its process',
};

/** `2026-12-07 15:03:01Z` from an ISO time ("" stays ""). */
export function timeText(iso: string | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}
