import { decodePort } from '../scheme/index.js';
import type { Registry } from '../registry/registry.js';

/** Who a port is canonical for, read from the registry and the base32 scheme. No I/O. */
export interface PortClaim {
  /**
   * Registry services on the port (versions folded: `v2.user` → `user`); for
   * a port no registry entry claims, the base32 prefix it decodes to (`api`,
   * `db0`) — every name starting with those three characters lands there;
   * empty when nothing claims it.
   */
  services: string[];
  /** "base32", "versioned", "block", "pinned" or "unknown". */
  scheme: string;
  /** The version a versioned port encodes (8102 → "2"), else "". */
  portVersion: string;
  /** A per-service `versionPath` from the registry, when one of the services has one. */
  versionPath: string | undefined;
  /** A per-service readiness rule from the registry (`grpc`, `tcp`, `http:/path`), when one of the services has one. */
  ready?: string | undefined;
  /** True when the registry lists the port: `services` are its names (core/naming.ts's `registry` source). */
  byRegistry?: boolean | undefined;
}

/**
 * The services a listening port is canonical for. The registry wins (pins,
 * block roles, versioned ports, listed base32 services); otherwise the
 * base32 prefix for ports 1024–33791; otherwise unknown.
 *
 * A block role (`splashpage-api`) does not inherit its app's versionPath:
 * the app's path says nothing about which of its ten ports answers it.
 */
export function claimOf(port: number, registry: Registry): PortClaim {
  const owners = registry.ownersOf(port);
  if (owners.length > 0) {
    const services: string[] = [];
    let scheme = '';
    let portVersion = '';
    let versionPath: string | undefined;
    let ready: string | undefined;
    for (const owner of owners) {
      const a = registry.expanded.get(owner);
      if (!a) continue;
      let service = owner;
      if (a.scheme === 'versioned') {
        service = registry.ownerOf(owner); // v2.user → user
        if (a.version !== undefined && portVersion === '') portVersion = String(a.version);
      }
      if (!services.includes(service)) services.push(service);
      scheme ||= a.scheme;
      versionPath ??= registry.services.get(service)?.spec.versionPath;
      ready ??= registry.services.get(service)?.spec.ready;
    }
    return { services, scheme: scheme || 'unknown', portVersion, versionPath, ready, byRegistry: true };
  }
  const prefix = decodePort(port);
  if (prefix !== null) return { services: [prefix], scheme: 'base32', portVersion: '', versionPath: undefined, ready: registry.services.get(prefix)?.spec.ready };
  return { services: [], scheme: 'unknown', portVersion: '', versionPath: undefined };
}
