import { versionedNumber, MAX_PORT, BLOCK_SIZE, decodePort } from '../scheme/index.js';
import { currentVersion, type PortAssignment, type Registry } from './registry.js';
import { dependencyGraph, findCycles, formatCycle } from './order.js';
import type { HostFacts } from './host-facts.js';

/**
 * `canonport check`: the seeds' "negative side effects" as findings. A pure
 * function of the registry, the host's facts (read by readHostFacts) and any
 * extra names, so every finding has a table test.
 */

export const CheckCodes = {
  COLLISION: 'CHECK_COLLISION',
  DUPLICATE_PIN: 'CHECK_DUPLICATE_PIN',
  DUPLICATE_NAME: 'CHECK_DUPLICATE_NAME',
  DUPLICATE_ID: 'CHECK_DUPLICATE_ID',
  VERSIONED_OVERFLOW: 'CHECK_VERSIONED_OVERFLOW',
  VERSIONED_COLLISION: 'CHECK_VERSIONED_COLLISION',
  BLOCK_OVERFLOW: 'CHECK_BLOCK_OVERFLOW',
  BLOCK_OVERLAP: 'CHECK_BLOCK_OVERLAP',
  UNKNOWN_ROLE: 'CHECK_UNKNOWN_ROLE',
  UNKNOWN_DEPENDENCY: 'CHECK_UNKNOWN_DEPENDENCY',
  DEPENDENCY_CYCLE: 'CHECK_DEPENDENCY_CYCLE',
  EPHEMERAL: 'CHECK_EPHEMERAL',
  ETC_SERVICES: 'CHECK_ETC_SERVICES',
  FRAMEWORK_DEFAULT: 'CHECK_FRAMEWORK_DEFAULT',
  PRIVILEGED: 'CHECK_PRIVILEGED',
} as const;

export type CheckCode = (typeof CheckCodes)[keyof typeof CheckCodes];
export type Severity = 'error' | 'warning';

/**
 * Errors mean the registry cannot be served as written, on any host: two
 * services would bind one port, a name has no valid port or no definition,
 * or the start order does not exist. `check` exits 1 on them.
 *
 * Warnings depend on the host or on what else runs there, and each has an
 * easy way out, so they are reported with exit 0 (1 with --strict):
 * - ephemeral: the kernel may have handed the port to an outgoing
 *   connection, so a bind fails now and then (reserve it in
 *   net.ipv4.ip_local_reserved_ports, or pin another port);
 * - /etc/services: a listing, not a listener;
 * - framework defaults: clash only where that framework runs on its default;
 * - block overlap: the reserved room of a block is shared, no port clashes yet
 *   (a real clash is a collision);
 * - privileged: below 1024 needs root or CAP_NET_BIND_SERVICE.
 */
export const SEVERITY: Readonly<Record<CheckCode, Severity>> = Object.freeze({
  CHECK_COLLISION: 'error',
  CHECK_DUPLICATE_PIN: 'error',
  CHECK_DUPLICATE_NAME: 'error',
  CHECK_DUPLICATE_ID: 'error',
  CHECK_VERSIONED_OVERFLOW: 'error',
  CHECK_VERSIONED_COLLISION: 'error',
  CHECK_BLOCK_OVERFLOW: 'error',
  CHECK_UNKNOWN_ROLE: 'error',
  CHECK_UNKNOWN_DEPENDENCY: 'error',
  CHECK_DEPENDENCY_CYCLE: 'error',
  CHECK_BLOCK_OVERLAP: 'warning',
  CHECK_EPHEMERAL: 'warning',
  CHECK_ETC_SERVICES: 'warning',
  CHECK_FRAMEWORK_DEFAULT: 'warning',
  CHECK_PRIVILEGED: 'warning',
});

export interface Finding {
  code: CheckCode;
  severity: Severity;
  message: string;
  /** The names involved, sorted. */
  names: string[];
  port?: number | undefined;
  /** For dependency cycles: the cycle, closed (a, b, a). */
  cycle?: string[] | undefined;
}

/**
 * Ports that development frameworks and common servers take by default
 * (seed 003: "rails defaults to 3000, django to 8000, dropwizard uses 8080").
 * A service pinned there clashes with any of them running on the same host.
 */
export const FRAMEWORK_DEFAULTS: ReadonlyMap<number, string> = new Map([
  [1313, 'hugo'],
  [2181, 'zookeeper'],
  [2195, 'apple push notifications'],
  [2375, 'docker'],
  [3000, 'rails, express, grafana'],
  [3001, 'create-react-app (second app)'],
  [3306, 'mysql'],
  [4000, 'phoenix, jekyll'],
  [4200, 'angular'],
  [4567, 'sinatra'],
  [5000, 'flask'],
  [5173, 'vite'],
  [5432, 'postgresql'],
  [5601, 'kibana'],
  [5672, 'rabbitmq'],
  [6379, 'redis'],
  [6443, 'kubernetes api'],
  [8000, 'django'],
  [8008, 'http-alt'],
  [8080, 'dropwizard, tomcat, jenkins'],
  [8081, 'dropwizard admin'],
  [8443, 'https-alt'],
  [8500, 'consul'],
  [8888, 'jupyter'],
  [9000, 'play, php-fpm'],
  [9090, 'prometheus'],
  [9092, 'kafka'],
  [9100, 'node_exporter'],
  [9200, 'elasticsearch'],
  [11211, 'memcached'],
  [15672, 'rabbitmq management'],
  [27017, 'mongodb'],
]);

interface Named {
  name: string;
  owner: string;
  port: number;
  scheme: string;
}

/**
 * Runs every check. `extraNames` are validated, lowercase names as the CLI
 * reads them (`cat`, `api.cluster-1.example.com`, `v2.user`); they are
 * checked alongside the registry's own names. Findings are sorted: errors
 * first, then by code and name, so output is stable.
 */
export function checkRegistry(registry: Registry, facts: HostFacts, extraNames: readonly string[] = []): Finding[] {
  const findings: Finding[] = [];
  const add = (code: CheckCode, message: string, names: string[], extra: Partial<Finding> = {}): void => {
    findings.push({ code, severity: SEVERITY[code], message, names: [...names].sort(), ...extra });
  };

  // Every concrete name with a port: the registry's, then the extra names.
  const named: Named[] = [];
  for (const a of registry.expanded.values()) {
    if (a.port !== null) named.push({ name: a.service, owner: registry.ownerOf(a.service), port: a.port, scheme: a.scheme });
  }
  const namedSet = new Set(named.map((n) => n.name));
  const overflowed: string[] = [];
  for (const raw of extraNames) {
    const a: PortAssignment = registry.lookupName(raw, { anyVersion: true });
    const m = /^v\d+\.([^.]+)/.exec(raw);
    const name = m && registry.isVersioned(m[1]!) ? `v${a.version}.${a.service}` : a.service;
    if (a.port === null) {
      // A version the registry does not list (`check v101.user`); listed ones are reported by checkVersioned.
      if (!registry.expanded.has(name) && !overflowed.includes(name)) {
        overflowed.push(name);
        add(CheckCodes.VERSIONED_OVERFLOW, `${name}: versioned number ${a.number} is over ${MAX_PORT}`, [name]);
      }
      continue;
    }
    if (!namedSet.has(name)) {
      namedSet.add(name);
      named.push({ name, owner: registry.ownerOf(a.service), port: a.port, scheme: a.scheme });
    }
  }
  // In linear time: a registry of many thousands of names is checked as quickly as it loads (issue 21, finding 12).
  const byPort = new Map<number, Named[]>();
  for (const n of named) {
    const list = byPort.get(n.port);
    if (list) list.push(n);
    else byPort.set(n.port, [n]);
  }

  // Collisions: two owners on one port. Names of one owner are aliases.
  for (const [port, list] of byPort) {
    const owners = new Set(list.map((n) => n.owner));
    if (owners.size < 2) continue;
    const names = list.map((n) => n.name).sort();
    const pinnedOwners = new Set(list.filter((n) => n.scheme === 'pinned').map((n) => n.owner));
    const prefix = decodePort(port);
    if (pinnedOwners.size >= 2) {
      add(CheckCodes.DUPLICATE_PIN, `${[...pinnedOwners].sort().join(', ')} are all pinned to port ${port}`, names, { port });
    } else {
      const why = prefix !== null && list.every((n) => n.scheme === 'base32') ? ` (all start with "${prefix}")` : '';
      add(CheckCodes.COLLISION, `${names.join(', ')} share port ${port}${why}`, names, { port });
    }
  }

  for (const d of registry.duplicates) {
    add(CheckCodes.DUPLICATE_NAME, `${d.name} is defined by both ${d.owners.join(' and ')}; only ${d.owners[0]}'s is served`, [d.name]);
  }

  checkVersioned(registry, add);
  checkBlocks(registry, named, add);

  const graph = dependencyGraph(registry);
  for (const u of graph.unknown) {
    add(
      CheckCodes.UNKNOWN_DEPENDENCY,
      `${u.service} depends on ${u.dependency}, which the registry does not define (add "${u.dependency}:" under services)`,
      [u.service, u.dependency],
    );
  }
  for (const cycle of findCycles(graph)) {
    add(CheckCodes.DEPENDENCY_CYCLE, `dependency cycle: ${formatCycle(cycle)}`, [...new Set(cycle)], { cycle });
  }

  // Host facts, once per port.
  for (const [port, list] of [...byPort].sort((a, b) => a[0] - b[0])) {
    const names = list.map((n) => n.name);
    const label = names.sort().join(', ');
    const range = facts.ephemeralRange;
    if (range && port >= range[0] && port <= range[1] && !facts.reservedPorts.has(port)) {
      add(
        CheckCodes.EPHEMERAL,
        `${label}: port ${port} is inside this host's ephemeral range ${range[0]}–${range[1]}; outgoing connections may hold it (reserve it in net.ipv4.ip_local_reserved_ports or pin another port)`,
        names,
        { port },
      );
    }
    const listed = facts.services.get(port);
    if (listed && listed.length > 0) {
      add(CheckCodes.ETC_SERVICES, `${label}: port ${port} is listed in /etc/services as ${listed.join(', ')}`, names, { port });
    }
    const framework = FRAMEWORK_DEFAULTS.get(port);
    if (framework) add(CheckCodes.FRAMEWORK_DEFAULT, `${label}: port ${port} is the default of ${framework}`, names, { port });
    if (port < 1024) add(CheckCodes.PRIVILEGED, `${label}: port ${port} is privileged (needs root or CAP_NET_BIND_SERVICE)`, names, { port });
  }

  return findings.sort(compareFindings);
}

type Add = (code: CheckCode, message: string, names: string[], extra?: Partial<Finding>) => void;

/**
 * Versioned ports: `8 ‖ id ‖ vv` over 65535, and two (id, version) pairs
 * with one number (id 1 v101 and id 11 v1 both give 81101). Below 65536 the
 * scheme is one-to-one (four digits: 8, a one-digit id, two version digits),
 * so a collision always comes with an overflow; it is still named because
 * it says the scheme, not just the port range, breaks for those pairs.
 */
function checkVersioned(registry: Registry, add: Add): void {
  const byNumber = new Map<number, { name: string; id: number; version: number }[]>();
  const byId = new Map<number, string[]>();
  for (const entry of [...registry.services.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.scheme !== 'versioned') continue;
    const id = entry.spec.id ?? 0;
    byId.set(id, [...(byId.get(id) ?? []), entry.name]);
    const versions = new Set(entry.spec.versions ?? []);
    const current = currentVersion(entry.spec);
    if (current !== undefined) versions.add(current);
    for (const version of [...versions].sort((a, b) => a - b)) {
      const n = versionedNumber(id, version);
      const name = `v${version}.${entry.name}`;
      if (n > MAX_PORT) {
        add(CheckCodes.VERSIONED_OVERFLOW, `${name}: 8 ‖ ${id} ‖ ${String(version).padStart(2, '0')} = ${n}, over ${MAX_PORT}`, [name]);
      }
      byNumber.set(n, [...(byNumber.get(n) ?? []), { name, id, version }]);
    }
  }
  for (const [id, names] of byId) {
    if (names.length > 1) add(CheckCodes.DUPLICATE_ID, `${names.join(', ')} share versioned id ${id}`, names);
  }
  for (const [n, list] of byNumber) {
    const pairs = new Set(list.map((p) => `${p.id}/${p.version}`));
    if (pairs.size < 2) continue;
    const what = list.map((p) => `${p.name} (id ${p.id}, v${p.version})`).join(' and ');
    add(CheckCodes.VERSIONED_COLLISION, `${what} both give ${n}`, list.map((p) => p.name), n <= MAX_PORT ? { port: n } : {});
  }
}

/** Block scheme: undefined roles, roles past 65535, and blocks whose ten ports overlap. */
function checkBlocks(registry: Registry, named: readonly Named[], add: Add): void {
  const blocks: { name: string; lo: number; hi: number; used: Set<number> }[] = [];
  for (const entry of [...registry.services.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (entry.scheme !== 'block') continue;
    const base = entry.spec.block!;
    const used = new Set<number>([base]);
    for (const role of entry.spec.roles ?? Object.keys(registry.roles)) {
      const def = registry.roles[role];
      if (!def) {
        const known = Object.keys(registry.roles).sort().join(', ');
        add(CheckCodes.UNKNOWN_ROLE, `${entry.name}: role "${role}" is not defined (known: ${known}; add it under roles)`, [`${entry.name}-${role}`]);
        continue;
      }
      const port = base + def.offset;
      if (port > MAX_PORT) add(CheckCodes.BLOCK_OVERFLOW, `${entry.name}-${role}: ${base} + ${def.offset} = ${port}, over ${MAX_PORT}`, [`${entry.name}-${role}`]);
      else used.add(port);
    }
    blocks.push({ name: entry.name, lo: base, hi: base + BLOCK_SIZE - 1, used });
  }
  for (const [i, a] of blocks.entries()) {
    for (const b of blocks.slice(i + 1)) {
      if (a.lo <= b.hi && b.lo <= a.hi) {
        add(CheckCodes.BLOCK_OVERLAP, `blocks ${a.name} (${a.lo}–${a.hi}) and ${b.name} (${b.lo}–${b.hi}) overlap`, [a.name, b.name]);
      }
    }
    // Another service inside the block's room, on a port the block does not use (yet).
    for (const n of named) {
      if (n.owner === a.name || n.port < a.lo || n.port > a.hi || a.used.has(n.port)) continue;
      if (blocks.some((b) => b.name === n.owner)) continue; // block against block: reported above
      add(CheckCodes.BLOCK_OVERLAP, `${n.name}: port ${n.port} is inside block ${a.name} (${a.lo}–${a.hi})`, [n.name, a.name], { port: n.port });
    }
  }
}

function compareFindings(a: Finding, b: Finding): number {
  if (a.severity !== b.severity) return a.severity === 'error' ? -1 : 1;
  if (a.code !== b.code) return a.code < b.code ? -1 : 1;
  const an = a.names.join(',');
  const bn = b.names.join(',');
  if (an !== bn) return an < bn ? -1 : 1;
  return (a.port ?? 0) - (b.port ?? 0);
}

/** True when the findings should fail the check: any error, or any warning under --strict. */
export function failed(findings: readonly Finding[], strict = false): boolean {
  return findings.some((f) => f.severity === 'error' || strict);
}
