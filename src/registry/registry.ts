import {
  base32Port,
  decodePort,
  blockPort,
  DEFAULT_ROLES,
  prefixOf,
  serviceLabel,
  versionedNumber,
  MAX_PORT,
  type RoleDef,
  type SchemeName,
} from '../scheme/index.js';
import { createHash } from 'node:crypto';
import { CanonportError, ErrorCodes } from '../errors.js';
import { fileSettings, fixedDefault, type FileSettings } from '../config/settings.js';
import type { DaemonFile, RegistryFile, ServiceFile } from './schema.js';

/** A service's port and how it was derived. */
export interface PortAssignment {
  /** The service label asked for (`splashpage-api`, `user`). */
  service: string;
  /** The port, or null when the scheme yields no valid port (versioned > 65535). */
  port: number | null;
  /** For versioned services, the raw scheme number even when it is not a port. */
  number: number;
  scheme: SchemeName;
  /** base32 prefix the port decodes to (empty for ports outside 1024–33791). */
  prefix: string;
  version?: number | undefined;
  /** Port inside the container (`compose`), when known. */
  internal?: number | undefined;
  /** Other registry names that land on the same port. */
  collidesWith: string[];
}

export interface ServiceEntry {
  name: string;
  scheme: SchemeName;
  spec: ServiceFile;
}

export interface InventorySettings {
  intervalMs?: number | undefined;
  versionPath?: string | undefined;
  probeTimeoutMs?: number | undefined;
}

/** The default TTL is the `ttl` setting's, declared in src/config/settings.ts. */
const DEFAULT_TTL = fixedDefault('ttl');

/**
 * The registry: the optional exceptions to the base32 scheme. Immutable; a
 * reload builds a new one. Every name the registry knows (services, block
 * roles, versions) is expanded once here, so lookups and collision checks
 * are map reads.
 */
export class Registry {
  declare readonly file: string | null;
  declare readonly zones: readonly string[];
  declare readonly ttl: number;
  declare readonly roles: Readonly<Record<string, RoleDef>>;
  declare readonly hosts: ReadonlyMap<string, readonly string[]>;
  declare readonly services: ReadonlyMap<string, ServiceEntry>;
  declare readonly daemon: Readonly<DaemonFile>;
  /** Every daemon setting this file sets (its `daemon:` section, top-level `zones` and `ttl`), as config.ts merges them. */
  declare readonly settings: Readonly<FileSettings>;
  declare readonly inventory: Readonly<InventorySettings>;
  /** Every concrete name the registry defines → its assignment (block roles and versions expanded). */
  declare readonly expanded: ReadonlyMap<string, PortAssignment>;
  /** Port → the names on it, in registry order. */
  private readonly byPort: Map<number, string[]>;
  /**
   * Expanded name → the registry entry that defines it (`splashpage-psql` →
   * `splashpage`, `v2.user` → `user`). Names of one entry sharing a port are
   * aliases (`splashpage`, `splashpage-www`, `splashpage-nodejs`), not collisions.
   */
  private readonly owners: Map<string, string>;
  /** Names two entries both define (a service `splashpage-api` beside block `splashpage`'s role); the first wins. */
  declare readonly duplicates: readonly { name: string; owners: string[] }[];
  /**
   * A digest of what the registry says about names and ports (zones, ttl,
   * roles, hosts, services), not of the file's bytes nor of its per-host
   * `daemon:` and `inventory:` settings: two hosts with the same digest
   * answer every name alike. Hex SHA-256.
   */
  declare readonly digest: string;

  private constructor(p: Parts) {
    Object.assign(this, p);
    this.byPort = p.byPort;
    this.owners = p.owners;
  }

  static empty(): Registry {
    return Registry.fromFile({}, null);
  }

  /** The registry of a checked file, built at once (the CLI, tests). */
  static fromFile(data: RegistryFile, file: string | null): Registry {
    const steps = assemble(data, file);
    for (let r = steps.next(); ; r = steps.next()) if (r.done) return r.value;
  }

  /**
   * The same registry, built a slice at a time: `pause` is called between
   * slices (a promise to wait on, or undefined to go on), so a registry of
   * 100,000 names never holds the event loop (issue 21, finding 12), and
   * throws to abandon the build (the daemon is stopping).
   */
  static async build(data: RegistryFile, file: string | null, pause: () => Promise<void> | undefined): Promise<Registry> {
    const steps = assemble(data, file);
    for (let r = steps.next(); ; r = steps.next()) {
      if (r.done) return r.value;
      await pause();
    }
  }

  /**
   * The port of a service label, following the registry first and the
   * base32 scheme otherwise. `version` selects a version of a versioned service.
   */
  lookup(label: string, version?: number): PortAssignment {
    const name = label.toLowerCase();
    if (version !== undefined) {
      const entry = this.services.get(name);
      if (entry?.scheme === 'versioned') {
        const a = versionedAssignment(entry, version);
        return { ...a, collidesWith: this.othersOn(a.port, entry.name) };
      }
    }
    const known = this.expanded.get(name);
    if (known) return { ...known, collidesWith: [...known.collidesWith] };
    const port = base32Port(name);
    return { service: name, port, number: port, scheme: 'base32', prefix: prefixOf(name), collidesWith: this.othersOn(port, name) };
  }

  /**
   * The assignment of a validated, lowercase name as the CLI reads it: its
   * first label is the service (`api.cluster-1.example.com` → `api`,
   * `_api._tcp.x` → `api`), and `vN.svc…` is version N of a versioned `svc`
   * (readService's rules). Throws CP_NOT_FOUND saying why for a name that
   * reads as nothing (`v3.user` when user has versions 1 and 2).
   */
  lookupName(name: string, opts: { anyVersion?: boolean } = {}): PortAssignment {
    const labels = name.split('.');
    if (labels[0]?.startsWith('_')) return this.lookup(serviceLabel(name));
    const read = readService(labels, this, opts);
    if (!read.ok) throw new CanonportError(ErrorCodes.NOT_FOUND, read.reason, { name });
    return this.lookup(read.service, read.version);
  }

  /** The versions of a versioned registry service, ascending; null when `label` is not one. */
  versionsOf(label: string): number[] | null {
    const entry = this.services.get(label.toLowerCase());
    if (entry?.scheme !== 'versioned') return null;
    const all = new Set(entry.spec.versions ?? []);
    const current = currentVersion(entry.spec);
    if (current !== undefined) all.add(current);
    return [...all].sort((a, b) => a - b);
  }

  /** True when `label` is a versioned service in the registry. */
  isVersioned(label: string): boolean {
    return this.versionsOf(label) !== null;
  }

  /** Registry names (expanded) whose port is `port`. */
  ownersOf(port: number): string[] {
    return [...(this.byPort.get(port) ?? [])];
  }

  /**
   * The registry entry that defines an expanded name (`splashpage-psql` →
   * `splashpage`, `v2.user` → `user`); a name the registry does not know owns itself.
   */
  ownerOf(name: string): string {
    return this.owners.get(name) ?? name;
  }

  /** Names on `port` that belong to another owner than `self`'s: the first MAX_COLLISIONS_LISTED of them. */
  private othersOn(port: number | null, self: string): string[] {
    return port === null ? [] : othersOn(this.byPort.get(port), this.ownerOf(self), (n) => this.ownerOf(n));
  }
}

/**
 * Names a collision lists at most (TXT `collision=`, gRPC `collidesWith`):
 * a port that thousands of registry names share would otherwise give each
 * of them a list of thousands, quadratic to build and to send.
 */
export const MAX_COLLISIONS_LISTED = 16;

/** The names of `onPort` whose owner is not `owner`, the first MAX_COLLISIONS_LISTED. */
function othersOn(onPort: readonly string[] | undefined, owner: string, ownerOf: (name: string) => string): string[] {
  const out: string[] = [];
  for (const n of onPort ?? []) {
    if (ownerOf(n) === owner) continue;
    out.push(n);
    if (out.length === MAX_COLLISIONS_LISTED) break;
  }
  return out;
}

/** What a Registry is made of, assembled by `assemble`. */
interface Parts {
  file: string | null;
  zones: readonly string[];
  ttl: number;
  roles: Readonly<Record<string, RoleDef>>;
  hosts: ReadonlyMap<string, readonly string[]>;
  services: ReadonlyMap<string, ServiceEntry>;
  daemon: Readonly<DaemonFile>;
  settings: Readonly<FileSettings>;
  inventory: Readonly<InventorySettings>;
  expanded: ReadonlyMap<string, PortAssignment>;
  byPort: Map<number, string[]>;
  owners: Map<string, string>;
  duplicates: readonly { name: string; owners: string[] }[];
  digest: string;
}

/** Items between two yields of `assemble`: a few milliseconds of work. */
const SLICE = 2000;

/**
 * Builds a registry's parts from a checked file in linear time, yielding
 * every SLICE items so Registry.build can give the event loop its turns.
 * Every name the registry knows (services, block roles, versions) is
 * expanded once here, so lookups and collision checks are map reads.
 */
function* assemble(data: RegistryFile, file: string | null): Generator<void, Registry> {
  const { daemon: _daemon, inventory: _inventory, ...answering } = data;
  const hash = createHash('sha256');
  let n = 0;
  for (const piece of canonicalJson(answering)) {
    hash.update(piece);
    if (++n % SLICE === 0) yield;
  }
  const digest = hash.digest('hex');
  const roles = Object.freeze({ ...DEFAULT_ROLES, ...(data.roles ?? {}) });
  const hosts = new Map<string, readonly string[]>();
  for (const [k, v] of Object.entries(data.hosts ?? {})) {
    hosts.set(k, Object.freeze([...v]));
    if (++n % SLICE === 0) yield;
  }
  const services = new Map<string, ServiceEntry>();
  for (const [name, spec] of Object.entries(data.services ?? {})) {
    const s = spec ?? {};
    services.set(name, { name, scheme: inferScheme(s), spec: s });
    if (++n % SLICE === 0) yield;
  }
  const expanded = new Map<string, PortAssignment>();
  const owners = new Map<string, string>();
  const duplicates: { name: string; owners: string[] }[] = [];
  for (const entry of services.values()) {
    for (const a of expand(entry, roles)) {
      if (expanded.has(a.service)) {
        const first = owners.get(a.service)!;
        if (first !== entry.name) duplicates.push({ name: a.service, owners: [first, entry.name] });
        continue;
      }
      expanded.set(a.service, a);
      owners.set(a.service, entry.name);
    }
    if (++n % SLICE === 0) yield;
  }
  const byPort = new Map<number, string[]>();
  for (const a of expanded.values()) {
    if (a.port === null) continue;
    const list = byPort.get(a.port);
    if (list) list.push(a.service);
    else byPort.set(a.port, [a.service]);
  }
  const ownerOf = (name: string) => owners.get(name) ?? name;
  for (const a of expanded.values()) {
    if (a.port !== null) a.collidesWith = othersOn(byPort.get(a.port), ownerOf(a.service), ownerOf);
    if (++n % SLICE === 0) yield;
  }
  return new (Registry as unknown as new (p: Parts) => Registry)({
    file,
    zones: Object.freeze([...(data.zones ?? [])]),
    ttl: data.ttl ?? DEFAULT_TTL,
    roles,
    hosts,
    services,
    daemon: Object.freeze({ ...(data.daemon ?? {}) }),
    settings: Object.freeze(fileSettings(data)),
    inventory: Object.freeze({ ...(data.inventory ?? {}) }),
    expanded,
    byPort,
    owners,
    duplicates: Object.freeze(duplicates),
    digest,
  });
}

/** All names a registry entry defines: the service itself, its block roles, its versions. */
function expand(entry: ServiceEntry, knownRoles: Readonly<Record<string, RoleDef>>): PortAssignment[] {
  const { name, spec } = entry;
  switch (entry.scheme) {
    case 'pinned': {
      const port = spec.port!;
      return [{ service: name, port, number: port, scheme: 'pinned', prefix: prefixOrEmpty(port), internal: spec.internal, collidesWith: [] }];
    }
    case 'versioned': {
      const versions = new Set(spec.versions ?? []);
      const current = currentVersion(spec);
      if (current !== undefined) versions.add(current);
      const out: PortAssignment[] = [];
      if (current !== undefined) out.push({ ...versionedAssignment(entry, current), service: name });
      for (const v of [...versions].sort((a, b) => a - b)) out.push({ ...versionedAssignment(entry, v), service: `v${v}.${name}` });
      return out;
    }
    case 'block': {
      const base = spec.block!;
      const roles = spec.roles ?? Object.keys(knownRoles);
      const out: PortAssignment[] = [
        { service: name, port: base, number: base, scheme: 'block', prefix: prefixOrEmpty(base), internal: spec.internal, collidesWith: [] },
      ];
      for (const role of roles) {
        const def = knownRoles[role];
        if (!def) continue; // reported by `check`
        const n = blockPort(base, def);
        const port = n <= MAX_PORT ? n : null; // a base near 65535 leaves no room: reported by `check`
        out.push({ service: `${name}-${role}`, port, number: n, scheme: 'block', prefix: port === null ? '' : prefixOrEmpty(port), internal: def.internal, collidesWith: [] });
      }
      return out;
    }
    case 'base32': {
      const port = base32Port(name);
      return [{ service: name, port, number: port, scheme: 'base32', prefix: prefixOf(name), internal: spec.internal, collidesWith: [] }];
    }
  }
}

function versionedAssignment(entry: ServiceEntry, version: number): PortAssignment {
  const n = versionedNumber(entry.spec.id ?? 0, version);
  const port = n <= MAX_PORT ? n : null;
  return {
    service: entry.name,
    port,
    number: n,
    scheme: 'versioned',
    prefix: port === null ? '' : prefixOrEmpty(port),
    version,
    internal: entry.spec.internal,
    collidesWith: [], // filled in by the caller: the port index may not exist yet
  };
}

/** The scheme of an entry: explicit, or inferred from the fields it sets. */
export function inferScheme(s: ServiceFile): SchemeName {
  if (s.scheme) return s.scheme;
  if (s.port !== undefined) return 'pinned';
  if (s.block !== undefined) return 'block';
  if (s.id !== undefined) return 'versioned';
  return 'base32';
}

export function currentVersion(s: ServiceFile): number | undefined {
  if (s.version !== undefined) return s.version;
  if (s.versions && s.versions.length > 0) return Math.max(...s.versions);
  return undefined;
}

function prefixOrEmpty(port: number): string {
  return decodePort(port) ?? '';
}

/** A version label: `v` and digits. Whether it names a version the registry knows is readService's question. */
const VERSION_LABEL_RE = /^v\d+$/;

/** What the labels before the zone name: a service (and version), or why they name nothing. */
export type ServiceRead = { ok: true; service: string; version?: number | undefined } | { ok: false; reason: string };

/**
 * Reads the service part of a name: its first label is the service
 * (`api.east` → api), except `vN.svc…`, which is always version N of `svc`:
 *
 *   - `svc` must be a versioned registry service (`v2.api` when api has no
 *     versions is nothing, not a service named `v2`);
 *   - N must be one of its versions (`versions`, or `version`), written
 *     without leading zeros (`v01.user` is nothing).
 *
 * A service whose own name looks like a version (`v8`) is asked as `v8.<zone>`
 * or `_v8._tcp.…`. DNS, gRPC and the CLI all read names through here;
 * `anyVersion` (for `check`, which vets versions before they are listed)
 * accepts any N.
 */
export function readService(labels: readonly string[], registry: Registry, opts: { anyVersion?: boolean } = {}): ServiceRead {
  const first = labels[0] ?? '';
  if (labels.length >= 2 && VERSION_LABEL_RE.test(first)) {
    const service = labels[1]!;
    const versions = registry.versionsOf(service);
    if (versions === null) return { ok: false, reason: `${first}.${service}: ${service} is not a versioned service` };
    const digits = first.slice(1);
    const version = Number(digits);
    if (String(version) !== digits || (!opts.anyVersion && !versions.includes(version))) {
      return { ok: false, reason: `${first}.${service}: ${service} has no version ${digits} (versions: ${versions.join(', ')})` };
    }
    return { ok: true, service, version };
  }
  return { ok: true, service: first };
}

/**
 * JSON with object keys sorted at every level, so equal data gives equal
 * text whatever the file's order; in pieces (their concatenation is the
 * text), so a large registry is hashed a slice at a time.
 */
function* canonicalJson(v: unknown): Generator<string> {
  if (Array.isArray(v)) {
    yield '[';
    for (const [i, x] of v.entries()) {
      if (i > 0) yield ',';
      yield* canonicalJson(x);
    }
    yield ']';
  } else if (v !== null && typeof v === 'object') {
    yield '{';
    let first = true;
    for (const k of Object.keys(v as object)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()) {
      yield `${first ? '' : ','}${JSON.stringify(k)}:`;
      first = false;
      yield* canonicalJson((v as Record<string, unknown>)[k]);
    }
    yield '}';
  } else {
    yield JSON.stringify(v ?? null);
  }
}
