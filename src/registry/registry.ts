import {
  base32Port,
  decodePort,
  blockPort,
  DEFAULT_ROLES,
  prefixOf,
  versionedNumber,
  MAX_PORT,
  type RoleDef,
  type SchemeName,
} from '../scheme/index.js';
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

const DEFAULT_TTL = 60;

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
  readonly inventory: Readonly<InventorySettings>;
  /** Every concrete name the registry defines → its assignment (block roles and versions expanded). */
  readonly expanded: ReadonlyMap<string, PortAssignment>;
  private readonly byPort: Map<number, string[]>;

  private constructor(data: RegistryFile, file: string | null) {
    this.file = file;
    this.zones = Object.freeze([...(data.zones ?? [])]);
    this.ttl = data.ttl ?? DEFAULT_TTL;
    this.roles = Object.freeze({ ...DEFAULT_ROLES, ...(data.roles ?? {}) });
    this.hosts = new Map(Object.entries(data.hosts ?? {}).map(([k, v]) => [k, Object.freeze([...v])]));
    this.daemon = Object.freeze({ ...(data.daemon ?? {}) });
    this.inventory = Object.freeze({ ...(data.inventory ?? {}) });
    const services = new Map<string, ServiceEntry>();
    for (const [name, spec] of Object.entries(data.services ?? {})) {
      const s = spec ?? {};
      services.set(name, { name, scheme: inferScheme(s), spec: s });
    }
    this.services = services;
    const expanded = new Map<string, PortAssignment>();
    for (const entry of services.values()) {
      for (const a of this.expand(entry)) if (!expanded.has(a.service)) expanded.set(a.service, a);
    }
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
      if (entry?.scheme === 'versioned') return this.versioned(entry, version);
    }
    const known = this.expanded.get(name);
    if (known) return { ...known, collidesWith: [...known.collidesWith] };
    const port = base32Port(name);
    return { service: name, port, number: port, scheme: 'base32', prefix: prefixOf(name), collidesWith: this.othersOn(port, name) };
  }

  /** True when `label` is a versioned service in the registry. */
  isVersioned(label: string): boolean {
    return this.services.get(label.toLowerCase())?.scheme === 'versioned';
  }

  /** Registry names (expanded) whose port is `port`. */
  ownersOf(port: number): string[] {
    return [...(this.byPort.get(port) ?? [])];
  }

  private othersOn(port: number | null, self: string): string[] {
    if (port === null) return [];
    return (this.byPort.get(port) ?? []).filter((n) => n !== self);
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
          const port = blockPort(base, def);
          out.push({ service: `${name}-${role}`, port, number: port, scheme: 'block', prefix: prefixOrEmpty(port), internal: def.internal, collidesWith: [] });
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
      collidesWith: this.othersOn(port, entry.name).filter((o) => !o.endsWith(`.${entry.name}`)),
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
