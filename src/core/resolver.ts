import { CanonportError, ErrorCodes } from '../errors.js';
import type { Registry } from '../registry/registry.js';
import { normaliseName } from './names.js';
import { classifyName } from './service-name.js';
import { serviceLabel } from '../scheme/base32.js';

/** What a service name resolves to; the gRPC Resolution message has the same fields. */
export interface Resolution {
  name: string;
  zone: string;
  service: string;
  port: number;
  scheme: string;
  prefix: string;
  version?: number | undefined;
  host: string;
  addresses: string[];
  ttl: number;
  collidesWith: string[];
}

/** Addresses of a host name, as the DNS side would answer A and AAAA. */
export interface AddressSource {
  /**
   * Resolves `host` (lowercase, no trailing dot) to IPv4 and IPv6 addresses.
   * Never rejects for "no such host": returns an empty list.
   */
  lookup(host: string): Promise<{ addresses: string[]; ttl: number }>;
}

/** The daemon's current view: replaced whole on reload. */
export interface ServingState {
  registry: Registry;
  /** Served zones, lowercase, `localhost` included. */
  zones: readonly string[];
}

/**
 * Resolves a service name to port and addresses. The gRPC API uses it; the
 * DNS pipeline shares its name reading (classifyName).
 */
export class ServiceResolver {
  constructor(
    private readonly state: () => ServingState,
    private readonly addresses: AddressSource,
  ) {}

  /** Port and scheme only, no I/O. Throws CP_BAD_NAME or CP_NOT_FOUND. */
  describe(rawName: string): Omit<Resolution, 'addresses'> {
    const name = normaliseName(rawName);
    const { registry, zones } = this.state();
    const cls = classifyName(name, zones, registry);
    let service: string;
    let version: number | undefined;
    let host: string;
    let zone = '';
    switch (cls.kind) {
      case 'service':
        ({ service, version, host, zone } = cls);
        break;
      case 'outside':
        // Outside every zone the scheme still applies: first label → port, the name is the host.
        service = serviceLabel(name);
        host = name.startsWith('_') ? name.split('.').filter((l) => !l.startsWith('_')).join('.') : name;
        zone = ''; // classifyName says outside exactly when no zone holds the name
        break;
      default:
        throw new CanonportError(ErrorCodes.NOT_FOUND, `${name} is not a service name (${cls.kind === 'nxdomain' ? cls.reason : cls.kind})`, {
          name,
        });
    }
    const a = registry.lookup(service, version);
    if (a.port === null) {
      throw new CanonportError(ErrorCodes.NOT_FOUND, `${name}: scheme ${a.scheme} gives ${a.number}, not a valid port`, { name });
    }
    return {
      name,
      zone,
      service: a.service,
      port: a.port,
      scheme: a.scheme,
      prefix: a.prefix,
      version: a.version,
      host,
      ttl: registry.ttl,
      collidesWith: a.collidesWith,
    };
  }

  /** Port, scheme and addresses. NOT_FOUND when the host has no address. */
  async resolve(rawName: string): Promise<Resolution> {
    const d = this.describe(rawName);
    const { addresses, ttl } = await this.addresses.lookup(d.host);
    if (addresses.length === 0) {
      throw new CanonportError(ErrorCodes.NOT_FOUND, `${d.host} has no address (service ${d.service}, port ${d.port})`, {
        name: d.name,
        port: d.port,
      });
    }
    return { ...d, addresses, ttl: Math.min(d.ttl, ttl) };
  }
}
