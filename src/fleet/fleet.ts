import { forEachLimited } from '../concurrency.js';
import { isIP } from 'node:net';
import { createCanonportClient, daemonTarget, type ClientTlsOptions } from '../grpc/canonport-client.js';
import { isCanonportError } from '../errors.js';
import type { ViewState } from '../cluster/view.js';
import { reachableListeners } from '../inventory/reachable.js';
import type { NameSource, ServiceName } from '../core/naming.js';
import { protocolOf } from '../inventory/procnet.js';
import type { InventoryListener, InventorySnapshot } from '../inventory/types.js';
import { prefixOf } from '../scheme/index.js';

/**
 * The fleet view: ask many daemons for their Inventory at once and fold
 * the answers into service × version × hosts. Collection does I/O; the
 * table, the expectations and the text are pure functions of the answers.
 */

export const DEFAULT_FLEET_TIMEOUT_MS = 3000;
export const DEFAULT_FLEET_CONCURRENCY = 32;

export interface FleetOptions {
  /** Deadline of each host's call, ms, connecting included (default 3000). */
  timeoutMs?: number | undefined;
  /** Hosts asked at once (default 32). */
  concurrency?: number | undefined;
  /** Called after each host answers or fails, in completion order. */
  onProgress?: ((done: number, total: number, host: string) => void) | undefined;
  /** TLS to every daemon (createCanonportClient's `tls`): one CA and one client certificate for the fleet. */
  tls?: ClientTlsOptions | boolean | undefined;
}

/**
 * What an instance is doing, as the fleet (and its page) shows it.
 * `listening`: the port is observed listening, and that is all canonport
 * knows of it today; `ready`, `not-ready` and `draining` are readiness,
 * which the cluster view carries (from-cluster.ts's `instanceState` is the
 * one place it is read); `unknown`: nothing is
 * known (a host asked over gRPC says only what listens).
 */
export type InstanceState = 'ready' | 'not-ready' | 'draining' | 'listening' | 'unknown';

/** Every InstanceState, in the order the page lists them. */
export const INSTANCE_STATES: readonly InstanceState[] = ['ready', 'not-ready', 'draining', 'listening', 'unknown'];

/** A listener as the fleet shows it: the inventory's, and what the cluster view adds. */
export interface FleetListener extends InventoryListener {
  /** When its host first saw it listening (ISO 8601); absent when not known (a host asked over gRPC). */
  since?: string | undefined;
  /** Absent: `unknown`. */
  state?: InstanceState | undefined;
  /** Since when it is in `state` (ISO 8601); absent: since `since`. */
  stateSince?: string | undefined;
}

/** A host's listeners as the fleet shows them. */
export interface FleetInventory extends Omit<InventorySnapshot, 'listeners'> {
  listeners: FleetListener[];
}

/**
 * What a host's fleet is, one rule for both ways of reading it: never the
 * daemon's own DNS, gRPC and HTTP sockets (it is the host, not a service);
 * for a daemon in cluster mode (`node` set) exactly what it publishes:
 * claimed listeners other hosts can reach, which is what `fleet --cluster`
 * reads from etcd. A daemon without cluster mode publishes nothing, so its
 * whole inventory is its fleet.
 */
export function fleetInventory<I extends { listeners: L[]; node?: string | undefined }, L extends InventoryListener>(inv: I): I {
  const listeners = inv.node ? reachableListeners(inv.listeners) : inv.listeners.filter((l) => !l.daemon);
  return { ...inv, listeners };
}

/** The node record a cluster member published (`<prefix>/v1/nodes/<node>`), without its name (the host's). */
export interface FleetNode {
  /** Where other hosts reach it. */
  addresses: string[];
  canonportVersion: string;
  /** sha256 hex of its registry ("" without one). */
  registryDigest: string;
  /** When its daemon started (ISO 8601). */
  started: string;
  /** When it last found a change in what it publishes (ISO 8601); absent from a daemon before issue 22. */
  observedAt?: string | undefined;
}

/** One host's outcome. */
export interface FleetHost {
  /** The host as given (`web-1`, `10.0.0.5:13655`, `[::1]:4000`); in cluster mode the node name. */
  host: string;
  /** The gRPC target dialled (`web-1:13655`); in cluster mode the node's etcd key. */
  target: string;
  reachable: boolean;
  /** Why the host could not be asked (unreachable only). */
  error?: string | undefined;
  /** canonport error code of the failure (CP_DAEMON_UNREACHABLE, CP_ACCESS_DENIED, CP_TLS_HANDSHAKE_FAILED, CP_DAEMON_FAILED). */
  code?: string | undefined;
  /** The daemon's answer (reachable only); in cluster mode what the node published. */
  inventory?: FleetInventory | undefined;
  /** Cluster mode: the node's record. */
  node?: FleetNode | undefined;
}

/** A listener's names; a listener that carries none (a report built before issue 22) reads its claim as the registry's. */
export function namesOf(l: Pick<InventoryListener, 'names' | 'services'>): readonly ServiceName[] {
  return l.names ?? l.services.map((name) => ({ name, source: 'registry' as const }));
}

/** Hosts running one version of one service. */
export interface FleetVersion {
  /** "" when no version could be learned. */
  version: string;
  ports: number[];
  hosts: string[];
  /** Cluster mode: hosts among `hosts` whose instance is not ready or draining (out of answers, not missing); absent when none. */
  notServing?: { host: string; state: 'not-ready' | 'draining' }[] | undefined;
  /** Hosts among `hosts` running more than one instance of it (containers, pods: issue 26), with how many; absent when none. */
  instances?: { host: string; count: number }[] | undefined;
}

export interface FleetService {
  /** The name people know it by (core/naming.ts). */
  service: string;
  /** `tcp` or `udp`: a service that listens on both is two rows. */
  protocol: 'tcp' | 'udp';
  /** Where the name comes from: the best source on any host (registry, query, process). */
  nameSource: NameSource;
  scheme: string;
  /** Sorted: most hosts first, then by version. */
  versions: FleetVersion[];
  /** Reachable hosts running any version of it. */
  hostCount: number;
  /**
   * Two or more versions run across the fleet (or on one host), an unknown
   * one counting as a version of its own: `1.2.3` beside `?` may be two
   * releases as well as one.
   */
  mixed: boolean;
}

/**
 * Where the answers came from: each host's daemon (`hosts`), the cluster
 * view in etcd (`cluster`: `view` is its state, since `viewSince`; a daemon's
 * view may be `stale`, etcd gone, or `missing`, never read), or one daemon's
 * own inventory (`local`: a daemon without cluster mode, on its fleet page).
 */
export type FleetSource =
  | { kind: 'hosts' }
  | { kind: 'cluster'; endpoints: string; prefix: string; revision: number; view: ViewState; viewSince: string }
  | { kind: 'local'; host: string };

/**
 * A port hosts listen on that no source names (no registry entry, no name a
 * client asked for, no process name): listed apart from the services. It
 * still answers its canonical names (`services`: `db0` for 14688).
 */
export interface FleetUnnamed {
  port: number;
  protocol: 'tcp' | 'udp';
  /** Its canonical names. */
  services: string[];
  scheme: string;
  /** Reachable hosts listening on it, in report order. */
  hosts: string[];
}

export interface FleetReport {
  /** Every host, in the order given (cluster mode: every node, by name). */
  hosts: FleetHost[];
  services: FleetService[];
  /** Ports no source names (fleetUnnamed); absent: none. */
  unnamed?: FleetUnnamed[] | undefined;
  /** Absent: `hosts`. */
  source?: FleetSource | undefined;
}

/**
 * Asks each host's daemon for its Inventory, at most `concurrency` at a time,
 * each bounded by `timeoutMs`. Never rejects for a host: a host that cannot
 * be asked is marked unreachable with the reason. Duplicate hosts are asked once.
 */
export async function collectFleet(hosts: readonly string[], opts: FleetOptions = {}): Promise<FleetReport> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_FLEET_TIMEOUT_MS;
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_FLEET_CONCURRENCY);
  const unique = [...new Map(hosts.map((h) => [daemonTarget(h), h])).entries()].map(([target, host]) => ({ host, target }));
  const results: FleetHost[] = new Array(unique.length);
  let done = 0;
  await forEachLimited(unique, concurrency, async ({ host, target }, i) => {
    results[i] = await askHost(host, target, timeoutMs, opts.tls);
    opts.onProgress?.(++done, unique.length, host);
  });
  return { hosts: results, services: fleetServices(results), unnamed: fleetUnnamed(results), source: { kind: 'hosts' } };
}

/**
 * A daemon's own inventory as a fleet of one (its fleet page without
 * cluster mode): every listener it reads is listening now, since when it
 * does not know.
 */
export function fleetOfHost(snapshot: InventorySnapshot): FleetReport {
  // A daemon in cluster mode says each listener's readiness; otherwise listening is all that is known.
  const listeners: FleetListener[] = fleetInventory(snapshot).listeners.map(({ readiness, ...l }) => ({ ...l, state: readiness?.state ?? 'listening' }));
  const hosts: FleetHost[] = [{ host: snapshot.host, target: 'local', reachable: true, inventory: { ...snapshot, listeners } }];
  return { hosts, services: fleetServices(hosts), unnamed: fleetUnnamed(hosts), source: { kind: 'local', host: snapshot.host } };
}

async function askHost(host: string, target: string, timeoutMs: number, tls: ClientTlsOptions | boolean | undefined): Promise<FleetHost> {
  let client;
  try {
    client = createCanonportClient(target, { timeoutMs, tls });
  } catch (err) {
    return { host, target, reachable: false, error: (err as Error).message, code: isCanonportError(err) ? err.code : undefined };
  }
  try {
    return { host, target, reachable: true, inventory: fleetInventory(await client.inventory()) };
  } catch (err) {
    const code = isCanonportError(err) ? err.code : undefined;
    return { host, target, reachable: false, error: (err as Error).message, code };
  } finally {
    client.close();
  }
}

/**
 * Folds reachable hosts' listeners into name × protocol × version × hosts:
 * one row per name people know a listener by (core/naming.ts) and
 * transport. A host counts once per (service, version) however many
 * addresses or ports it listens on; ports nobody claims are left out (they
 * are in each host's inventory), and so are claimed ports no source names
 * (fleetUnnamed lists those). With `only`, just those rows (serviceRowKey):
 * a row depends on nothing but its own listeners, so a caller that knows
 * which rows changed (from-cluster.ts ViewFleet) rebuilds only those.
 */
export function fleetServices(hosts: readonly FleetHost[], only?: ReadonlySet<string>): FleetService[] {
  type Row = { service: string; protocol: 'tcp' | 'udp'; scheme: string; source: NameSource; versions: Map<string, { ports: Set<number>; hosts: Set<string>; states: Map<string, 'not-ready' | 'draining'>; instances: Map<string, Set<string>> }> };
  const rank = (s: NameSource) => ['registry', 'query', 'process'].indexOf(s);
  const rows = new Map<string, Row>();
  for (const h of hosts) {
    if (!h.reachable || !h.inventory) continue;
    for (const l of h.inventory.listeners) {
      if (l.services.length === 0) continue;
      const protocol = protocolOf(l.family);
      for (const { name, source } of namesOf(l)) {
        const key = `${name}/${protocol}`;
        if (only && !only.has(key)) continue;
        const s = rows.get(key) ?? { service: name, protocol, scheme: l.scheme, source, versions: new Map() };
        if (rank(source) < rank(s.source)) s.source = source;
        rows.set(key, s);
        const v = s.versions.get(l.version) ?? { ports: new Set<number>(), hosts: new Set<string>(), states: new Map(), instances: new Map() };
        s.versions.set(l.version, v);
        v.ports.add(l.port);
        v.hosts.add(h.host);
        const mine = v.instances.get(h.host) ?? new Set<string>();
        mine.add(`${l.port}/${l.namespace?.label ?? ''}`);
        v.instances.set(h.host, mine);
        const state = (l as FleetListener).state ?? l.readiness?.state;
        if (state === 'not-ready' || state === 'draining') v.states.set(h.host, state);
      }
    }
  }
  const out: FleetService[] = [];
  for (const s of rows.values()) {
    const versions = [...s.versions.entries()]
      .map(([version, v]) => {
        const hostsHere = order(hosts, v.hosts);
        const notServing = hostsHere.filter((x) => v.states.has(x)).map((x) => ({ host: x, state: v.states.get(x)! }));
        const instances = hostsHere.filter((x) => (v.instances.get(x)?.size ?? 0) > 1).map((x) => ({ host: x, count: v.instances.get(x)!.size }));
        return { version, ports: [...v.ports].sort((a, b) => a - b), hosts: hostsHere, ...(notServing.length > 0 ? { notServing } : {}), ...(instances.length > 0 ? { instances } : {}) };
      })
      .sort((a, b) => b.hosts.length - a.hosts.length || a.version.localeCompare(b.version, 'en', { numeric: true }));
    const all = new Set(versions.flatMap((v) => v.hosts));
    out.push({ service: s.service, protocol: s.protocol, nameSource: s.source, scheme: s.scheme, versions, hostCount: all.size, mixed: versions.length > 1 });
  }
  return out.sort(compareServices);
}

/** The order of the services' rows: by name, then TCP before UDP. */
export function compareServices(a: FleetService, b: FleetService): number {
  return a.service.localeCompare(b.service) || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0);
}

/** A service row's key in fleetServices: `name/protocol`. */
export function serviceRowKey(s: Pick<FleetService, 'service' | 'protocol'>): string {
  return `${s.service}/${s.protocol}`;
}

/** A host's listeners by the service row fleetServices counts each in (all a row takes from the host). */
export function serviceRows(h: FleetHost): Map<string, FleetListener[]> {
  const rows = new Map<string, FleetListener[]>();
  if (!h.reachable || !h.inventory) return rows;
  for (const l of h.inventory.listeners) {
    if (l.services.length === 0) continue;
    const protocol = protocolOf(l.family);
    for (const { name } of namesOf(l)) {
      const key = serviceRowKey({ service: name, protocol });
      const list = rows.get(key);
      if (list) list.push(l as FleetListener);
      else rows.set(key, [l as FleetListener]);
    }
  }
  return rows;
}

/** Claimed ports that reachable hosts listen on and no source names, by port and protocol. */
export function fleetUnnamed(hosts: readonly FleetHost[]): FleetUnnamed[] {
  const byPort = new Map<string, { port: number; protocol: 'tcp' | 'udp'; services: Set<string>; scheme: string; hosts: Set<string> }>();
  for (const h of hosts) {
    if (!h.reachable || !h.inventory) continue;
    for (const l of h.inventory.listeners) {
      if (l.services.length === 0 || namesOf(l).length > 0) continue;
      const protocol = protocolOf(l.family);
      const key = `${l.port}/${protocol}`;
      const u = byPort.get(key) ?? { port: l.port, protocol, services: new Set<string>(), scheme: l.scheme, hosts: new Set<string>() };
      for (const s of l.services) u.services.add(s);
      u.hosts.add(h.host);
      byPort.set(key, u);
    }
  }
  return [...byPort.values()]
    .map((u) => ({ port: u.port, protocol: u.protocol, services: [...u.services].sort(), scheme: u.scheme, hosts: order(hosts, u.hosts) }))
    .sort((a, b) => a.port - b.port || (a.protocol < b.protocol ? -1 : a.protocol > b.protocol ? 1 : 0));
}

/** Hosts in the order they were given. */
function order(hosts: readonly FleetHost[], set: ReadonlySet<string>): string[] {
  return hosts.map((h) => h.host).filter((h) => set.has(h));
}

/** `--expect svc=version`. */
export interface Expectation {
  service: string;
  version: string;
}

/** Parses `svc=version`; null when the text is not of that form. */
export function parseExpectation(text: string): Expectation | null {
  const m = /^([A-Za-z0-9][A-Za-z0-9_.-]*)=([\x21-\x7e][\x20-\x7e]*)$/.exec(text.trim());
  if (!m) return null;
  return { service: m[1]!.toLowerCase(), version: m[2]!.trim() };
}

/**
 * Something the fleet should not show. From `--expect` (checkExpectations):
 * - `mismatch`, `missing`: an expectation not met on one host;
 * - `unreachable`: a host that cannot confirm anything (with an expectation).
 * From what the hosts disagree on (consistency.ts):
 * - `registry`: a host whose registry digest differs from the majority's
 *   (`expected`; "" when no digest is on a majority), `found` its own;
 * - `port-names`: one port that hosts name as different services (`port`,
 *   `groups`: each naming with its hosts; `host` is "").
 * - `collision`: names learned at run time (asked for, or a process's) that
 *   share one port, as `check` reports two registry names on one port
 *   (`port`, `found`: the names; `host` is "").
 */
export interface FleetFinding {
  kind: 'mismatch' | 'missing' | 'unreachable' | 'registry' | 'port-names' | 'collision';
  host: string;
  /** The expectation's service (empty for the other kinds). */
  service: string;
  expected: string;
  /** Versions found there ("" for unknown); empty for missing and unreachable; the digest (registry) or the namings (port-names). */
  found: string[];
  /** port-names: the port. */
  port?: number | undefined;
  /** port-names: each naming of the port (services joined by ","), with the hosts that use it. */
  groups?: { value: string; hosts: string[] }[] | undefined;
  message: string;
}

/** Findings an `--expect` raises (a failure whenever they occur). */
export function isExpectationFinding(f: FleetFinding): boolean {
  return f.kind === 'mismatch' || f.kind === 'missing';
}

/**
 * Whether a listener serves `service`: named so by the registry, or, where
 * the daemon knows only the base32 prefix, on the prefix the name encodes
 * (`db` is listed as `db0`, `caterpillar` as `cat`).
 */
export function listenerServes(l: InventoryListener, service: string): boolean {
  if (l.services.includes(service) || l.names?.some((n) => n.name === service)) return true;
  return l.scheme === 'base32' && l.services.length === 1 && l.services[0] === prefixOf(service);
}

/**
 * Checks expectations against every reachable host: each must run the
 * service, and only the expected version (an unknown version does not
 * confirm it, so it is a mismatch). With any expectation, an unreachable
 * host is a finding too: it cannot confirm anything.
 */
export function checkExpectations(report: FleetReport, expectations: readonly Expectation[]): FleetFinding[] {
  const findings: FleetFinding[] = [];
  if (expectations.length === 0) return findings;
  for (const h of report.hosts) {
    if (!h.reachable || !h.inventory) {
      findings.push({ kind: 'unreachable', host: h.host, service: '', expected: '', found: [], message: `${h.host}: unreachable (${h.error ?? 'no answer'})` });
      continue;
    }
    for (const e of expectations) {
      const running = h.inventory.listeners.filter((l) => listenerServes(l, e.service));
      if (running.length === 0) {
        findings.push({ kind: 'missing', host: h.host, service: e.service, expected: e.version, found: [], message: `${h.host}: ${e.service} is not listening` });
        continue;
      }
      const other = [...new Set(running.map((l) => l.version))].filter((v) => v !== e.version).sort();
      if (other.length > 0) {
        const ports = [...new Set(running.filter((l) => l.version !== e.version).map((l) => l.port))].join(', ');
        const shown = other.map((v) => v || 'unknown version').join(', ');
        findings.push({
          kind: 'mismatch',
          host: h.host,
          service: e.service,
          expected: e.version,
          found: other,
          message: `${h.host}: ${e.service} runs ${shown} on port ${ports}, expected ${e.version}`,
        });
      }
    }
  }
  return findings;
}

/** Most hosts listed by name in one table cell. */
const HOSTS_SHOWN = 6;

/** Hex digits of a registry digest shown in text (JSON has all 64). */
export const DIGEST_SHOWN = 12;

/**
 * The fleet as a text table, then mixed versions, registries and ports the
 * hosts disagree on, unreachable hosts and unmet expectations.
 */
export function formatFleet(report: FleetReport, findings: readonly FleetFinding[] = []): string {
  const reachable = report.hosts.filter((h) => h.reachable).length;
  const rows: string[][] = [['SERVICE', 'VERSION', 'PORTS', 'HOSTS', 'ON']];
  for (const s of report.services) {
    s.versions.forEach((v, i) => {
      const state = new Map((v.notServing ?? []).map((n) => [n.host, n.state]));
      const count = new Map((v.instances ?? []).map((n) => [n.host, n.count]));
      const notes = (h: string) => [...(count.has(h) ? [`${count.get(h)} instances`] : []), ...(state.has(h) ? [state.get(h)!] : [])];
      const name = (h: string) => (notes(h).length > 0 ? `${h} (${notes(h).join(', ')})` : h);
      const shown = v.hosts.slice(0, HOSTS_SHOWN).map(name).join(', ') + (v.hosts.length > HOSTS_SHOWN ? ` +${v.hosts.length - HOSTS_SHOWN} more` : '');
      rows.push([i === 0 ? serviceLabel(s) : '', v.version || '?', v.ports.map((p) => (s.protocol === 'udp' ? `${p}/udp` : String(p))).join(','), `${v.hosts.length}/${reachable}`, shown]);
    });
  }
  const cluster = report.source?.kind === 'cluster' ? report.source : undefined;
  const lines: string[] = [];
  if (report.services.length > 0) lines.push(...table(rows));
  else if (cluster) lines.push(reachable > 0 ? 'no services listening on the nodes in the cluster view' : 'no node in the cluster view');
  else lines.push(reachable > 0 ? 'no services listening on the reachable hosts' : 'no host answered');
  const unnamed = report.unnamed ?? [];
  if (unnamed.length > 0) {
    lines.push('', 'unnamed ports (no registry entry, no name asked for, no process name; they answer their canonical names):');
    const shown = (hs: readonly string[]) => hs.slice(0, HOSTS_SHOWN).join(', ') + (hs.length > HOSTS_SHOWN ? ` +${hs.length - HOSTS_SHOWN} more` : '');
    lines.push(...table([['PORT', 'ANSWERS', 'HOSTS', 'ON'], ...unnamed.map((u) => [u.protocol === 'udp' ? `${u.port}/udp` : String(u.port), u.services.join(','), `${u.hosts.length}/${reachable}`, shown(u.hosts)])]).map((l) => `  ${l}`));
  }
  const mixed = report.services.filter((s) => s.mixed);
  if (mixed.length > 0) {
    lines.push('', 'mixed versions:');
    for (const s of mixed) {
      const parts = s.versions.map((v) => `${v.version || 'unknown version'} on ${plural(v.hosts.length, 'host')}`);
      lines.push(`  ${serviceLabel(s)}: ${parts.join(', ')}`);
    }
  }
  const registries = findings.filter((f) => f.kind === 'registry');
  if (registries.length > 0) {
    const majority = registries[0]!.expected;
    const digested = report.hosts.filter((h) => h.reachable && h.inventory?.registryDigest).length;
    const on = report.hosts.filter((h) => h.inventory?.registryDigest === majority && majority !== '').length;
    lines.push(
      '',
      majority
        ? `registries that differ from the majority (${majority.slice(0, DIGEST_SHOWN)} on ${on} of ${digested} hosts):`
        : `registries differ, none on a majority of the ${digested} hosts:`,
    );
    const width = Math.max(...registries.map((f) => f.host.length));
    for (const f of registries) lines.push(`  ${f.host.padEnd(width)}  ${(f.found[0] ?? '').slice(0, DIGEST_SHOWN)}`);
  }
  const ports = findings.filter((f) => f.kind === 'port-names');
  if (ports.length > 0) {
    lines.push('', 'ports named as different services:');
    for (const f of ports) lines.push(`  ${f.message}`);
  }
  const collisions = findings.filter((f) => f.kind === 'collision');
  if (collisions.length > 0) {
    lines.push('', 'names that share a port (as `check` reports collisions):');
    for (const f of collisions) lines.push(`  ${f.message}`);
  }
  if (cluster) {
    lines.push('', `${plural(report.hosts.length, 'node')} in the cluster view (${cluster.endpoints}, prefix ${cluster.prefix}, revision ${cluster.revision})`);
  } else {
    const down = report.hosts.filter((h) => !h.reachable);
    lines.push('', `${reachable}/${report.hosts.length} hosts answered${down.length > 0 ? `; unreachable (${down.length}):` : ''}`);
    for (const h of down) lines.push(`  ${h.host}  ${h.error ?? ''}`);
  }
  const expectationFindings = findings.filter(isExpectationFinding);
  if (expectationFindings.length > 0) {
    lines.push('', `expectations not met (${expectationFindings.length}):`);
    for (const f of expectationFindings) lines.push(`  ${f.message}`);
  }
  return lines.join('\n');
}

/** A row's name: `api`, or `dns/udp` for a UDP row. */
function serviceLabel(s: Pick<FleetService, 'service' | 'protocol'>): string {
  return s.protocol === 'udp' ? `${s.service}/udp` : s.service;
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Rows as aligned columns, two spaces apart; the last column is not padded. */
export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

/**
 * Whether `text` names a daemon: `HOST`, `HOST:PORT`, `IPV6`, `[IPV6]` or
 * `[IPV6]:PORT`, with HOST a DNS name or IPv4 address and PORT 1–65535.
 */
export function isFleetHost(text: string): boolean {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+))(?::(\d{1,5}))?$/.exec(text);
  if (!m) return isIP(text) === 6;
  if (m[1] !== undefined && isIP(m[1]) !== 6) return false;
  if (m[2] !== undefined && (m[2].startsWith('.') || m[2].startsWith('-'))) return false;
  return m[3] === undefined || (Number(m[3]) >= 1 && Number(m[3]) <= 65535);
}

/** Host names in a hosts file: whitespace-separated, `#` starts a comment. */
export function parseHostsFile(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.replace(/#.*$/, ''))
    .flatMap((line) => line.split(/\s+/))
    .filter((h) => h.length > 0);
}
