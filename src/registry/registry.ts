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
  readonly file: string | null;
  readonly zones: readonly string[];
  readonly ttl: number;
  readonly roles: Readonly<Record<string, RoleDef>>;
  readonly hosts: ReadonlyMap<string, readonly string[]>;
  readonly services: ReadonlyMap<string, ServiceEntry>;
  readonly daemon: Readonly<DaemonFile>;
  /** Every daemon setting this file sets (its `daemon:` section, top-level `zones` and `ttl`), as config.ts merges them. */
  readonly settings: Readonly<FileSettings>;
  readonly inventory: Readonly<InventorySettings>;
  /** Every concrete name the registry defines → its assignment (block roles and versions expanded). */
  readonly expanded: ReadonlyMap<string, PortAssignment>;
  private readonly byPort: Map<number, string[]>;
  /**
   * Expanded name → the registry entry that defines it (`splashpage-psql` →
   * `splashpage`, `v2.user` → `user`). Names of one entry sharing a port are
   * aliases (`splashpage`, `splashpage-www`, `splashpage-nodejs`), not collisions.
   */
  private readonly owners: Map<string, string>;
  /** Names two entries both define (a service `splashpage-api` beside block `splashpage`'s role); the first wins. */
  readonly duplicates: readonly { name: string; owners: string[] }[];
  /**
   * A digest of what the registry says about names and ports (zones, ttl,
   * roles, hosts, services), not of the file's bytes nor of its per-host
   * `daemon:` and `inventory:` settings: two hosts with the same digest
   * answer every name alike. Hex SHA-256.
   */
  readonly digest: string;

  private constructor(data: RegistryFile, file: string | null) {
    this.file = file;
    const { daemon: _daemon, inventory: _inventory, ...answering } = data;
    this.digest = createHash('sha256').update(canonicalJson(answering)).digest('hex');
    this.zones = Object.freeze([...(data.zones ?? [])]);
    this.ttl = data.ttl ?? DEFAULT_TTL;
    this.roles = Object.freeze({ ...DEFAULT_ROLES, ...(data.roles ?? {}) });
    this.hosts = new Map(Object.entries(data.hosts ?? {}).map(([k, v]) => [k, Object.freeze([...v])]));
    this.daemon = Object.freeze({ ...(data.daemon ?? {}) });
    this.settings = Object.freeze(fileSettings(data));
    this.inventory = Object.freeze({ ...(data.inventory ?? {}) });
    const services = new Map<string, ServiceEntry>();
    for (const [name, spec] of Object.entries(data.services ?? {})) {
      const s = spec ?? {};
      services.set(name, { name, scheme: inferScheme(s), spec: s });
    }
    this.services = services;
    const expanded = new Map<string, PortAssignment>();
    const owners = new Map<string, string>();
    const duplicates: { name: string; owners: string[] }[] = [];
    for (const entry of services.values()) {
      for (const a of this.expand(entry)) {
        if (expanded.has(a.service)) {
          const first = owners.get(a.service)!;
          if (first !== entry.name) duplicates.push({ name: a.service, owners: [first, entry.name] });
          continue;
        }
        expanded.set(a.service, a);
        owners.set(a.service, entry.name);
      }
    }
    this.owners = owners;
    this.duplicates = Object.freeze(duplicates);
    const byPort = new Map<number, string[]>();
    for (const a of expanded.values()) {
      if (a.port === null) continue;
      const list = byPort.get(a.port) ?? [];
      list.push(a.service);
      byPort.set(a.port, list);
    }
    this.byPort = byPort;
    for (const a of expanded.values()) a.collidesWith = this.othersOn(a.port, a.service);
    this.expanded = expanded;
  }

  static empty(): Registry {
    return new Registry({}, null);
  }

  static fromFile(data: RegistryFile, file: string | null): Registry {
    return new Registry(data, file);
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
        const a = this.versioned(entry, version);
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

  /** Names on `port` that belong to another owner than `self`'s. */
  private othersOn(port: number | null, self: string): string[] {
    if (port === null) return [];
    const owner = this.ownerOf(self);
    return (this.byPort.get(port) ?? []).filter((n) => this.ownerOf(n) !== owner);
  }

  /** All names a registry entry defines: the service itself, its block roles, its versions. */
  private expand(entry: ServiceEntry): PortAssignment[] {
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
        if (current !== undefined) out.push({ ...this.versioned(entry, current), service: name });
        for (const v of [...versions].sort((a, b) => a - b)) out.push({ ...this.versioned(entry, v), service: `v${v}.${name}` });
        return out;
      }
      case 'block': {
        const base = spec.block!;
        const roles = spec.roles ?? Object.keys(this.roles);
        const out: PortAssignment[] = [
          { service: name, port: base, number: base, scheme: 'block', prefix: prefixOrEmpty(base), internal: spec.internal, collidesWith: [] },
        ];
        for (const role of roles) {
          const def = this.roles[role];
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

  private versioned(entry: ServiceEntry, version: number): PortAssignment {
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

/** JSON with object keys sorted at every level, so equal data gives equal text whatever the file's order. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}
