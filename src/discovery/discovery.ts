import { CanonportError, ErrorCodes } from '../errors.js';
import { normaliseName } from '../config/names.js';
import { classifyName, LOCALHOST_ZONE, type NameClass } from '../core/service-name.js';
import type { ServingState } from '../core/state.js';
import { serviceLabel } from '../scheme/base32.js';
import type { Endpoint, EndpointSource, Lookup, ServiceDescription, DiscoveryReader } from './model.js';

/**
 * The discovery core: how a name reads (port, scheme, version) and where
 * the service runs (endpoints), from every source in one order. The DNS
 * local plugin, the gRPC service, Watch, xDS and the `canon:` resolver's
 * fallback all format their answers from here.
 *
 * Sources of addresses, first match wins:
 *   1. `*.localhost`: the loopback host (RFC 6761 §6.3);
 *   2. the registry's `hosts` map;
 *   3. /etc/hosts;
 *   4. the upstream resolvers (the real DNS knows which hosts carry
 *      `api.cluster-1`), through an AddressResolver with its own cache.
 * Sources 1–3 and a fresh cached upstream answer need no I/O (`peek`);
 * only an upstream question waits (`resolve`).
 */

/** A host's addresses from a source that needs no I/O. */
export interface HostAddresses {
  v4: readonly string[];
  v6: readonly string[];
}

/** /etc/hosts or any file-backed name → address map. */
export interface HostsSource {
  lookup(host: string): HostAddresses | null;
  /** Changes whenever the content changes (reading it may re-check the file). */
  readonly generation: number;
}

/** What an address resolver answers for one host name. */
export type AddressAnswer =
  | { kind: 'found'; v4: readonly string[]; v6: readonly string[]; ttl: number }
  /** The name exists nowhere or has no A/AAAA (NXDOMAIN, NODATA). */
  | { kind: 'none'; ttl: number }
  /** The resolver failed (timeouts, SERVFAIL): nothing can be said. */
  | { kind: 'failed'; reason: string };

/** Addresses of host names from a resolver that may need the network. */
export interface AddressResolver {
  /** The answer if it is known without I/O (fresh in a cache), else null. */
  peek(host: string): AddressAnswer | null;
  resolve(host: string): Promise<AddressAnswer>;
  /** Changes whenever a cached answer appears or changes. */
  readonly generation: number;
  /** Which EndpointSource its answers are. */
  readonly source: EndpointSource;
}

export type Described =
  | { ok: true; description: ServiceDescription }
  | { ok: false; failure: 'no-such-name'; code: typeof ErrorCodes.NOT_FOUND; message: string };

export interface DiscoveryOptions {
  state: () => ServingState;
  hosts?: HostsSource | undefined;
  addresses?: AddressResolver | undefined;
  /**
   * How a name outside every served zone reads. The daemon says it holds no
   * such service (`not-found`), as its DNS side forwards such names rather
   * than answering them. A client without a daemon cannot know the
   * daemon's zones, so its fallback reads any name by the scheme (`scheme`):
   * the first label is the service, the name is the host.
   */
  outsideZones?: 'not-found' | 'scheme' | undefined;
}

const LOOPBACK: HostAddresses = Object.freeze({ v4: Object.freeze(['127.0.0.1']), v6: Object.freeze(['::1']) });
/** How often listeners are told about a changed hosts file, at most (EtcHosts re-reads at most every 5 s). */
const HOSTS_POLL_MS = 2000;

export class Discovery implements DiscoveryReader {
  private readonly listeners = new Set<() => void>();
  private gen = 0;
  private seenHosts = -1;
  private seenAddresses = -1;
  private hostsTimer: NodeJS.Timeout | undefined;

  constructor(private readonly o: DiscoveryOptions) {}

  /**
   * A number that changes whenever an answer without I/O (`peek`) may
   * change: a reload (`changed()`), a hosts file edit, an upstream answer
   * learned. Caches of encoded answers compare it per query.
   */
  get generation(): number {
    const h = this.o.hosts?.generation ?? 0;
    const a = this.o.addresses?.generation ?? 0;
    if (h !== this.seenHosts || a !== this.seenAddresses) {
      this.seenHosts = h;
      this.seenAddresses = a;
      this.gen++;
    }
    return this.gen;
  }

  /** Tells the core its state changed (a reload): caches drop, listeners hear of it. */
  changed(): void {
    this.gen++;
    this.notify();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    this.pollHosts();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearInterval(this.hostsTimer);
        this.hostsTimer = undefined;
      }
    };
  }

  /** Listeners subscribed with onChange (tests check that streams release theirs). */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Tells listeners an answer may have changed (an address source learned something). */
  notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Stops the hosts-file poll. */
  close(): void {
    clearInterval(this.hostsTimer);
    this.hostsTimer = undefined;
    this.listeners.clear();
  }

  /** A name as text (gRPC, CLI): normalised, then read. Throws CP_BAD_NAME for a malformed name. */
  describe(rawName: string): Described {
    const name = normaliseName(rawName);
    const { zones, registry } = this.o.state();
    return this.describeClass(name, classifyName(name, zones, registry));
  }

  /** A name already lowercased and classified (the DNS path, which classifies once per query). */
  describeClass(name: string, cls: NameClass): Described {
    const { registry } = this.o.state();
    let service: string;
    let version: number | undefined;
    let host: string;
    let zone: string;
    switch (cls.kind) {
      case 'service':
        ({ service, version, host, zone } = cls);
        break;
      case 'outside':
        if (this.o.outsideZones !== 'scheme') return notFound(`${name} is outside every served zone (${this.o.state().zones.join(', ')})`);
        try {
          const a = registry.lookupName(name);
          service = a.service;
          version = a.version;
        } catch (err) {
          return notFound((err as Error).message);
        }
        host = name.startsWith('_') ? name.split('.').filter((l) => !l.startsWith('_')).join('.') : name;
        if (host === '') host = serviceLabel(name);
        zone = '';
        break;
      case 'apex':
        return notFound(`${name} is not a service name: it is the apex of zone ${cls.zone}`);
      case 'empty':
        return notFound(`${name} is not a service name: an empty name in zone ${cls.zone}`);
      case 'nxdomain':
        return notFound(`${name} is not a service name: ${cls.reason}`);
    }
    const a = registry.lookup(service, version);
    if (a.port === null) return notFound(`${name}: scheme ${a.scheme} gives ${a.number}, which is not a port (over 65535)`);
    return {
      ok: true,
      description: {
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
      },
    };
  }

  /** Where the service runs, if that is known without I/O; null when only the network can say. */
  peek(d: ServiceDescription): Lookup | null {
    const local = this.localAddresses(d);
    if (local) return found(d, local.addresses, local.source, d.ttl);
    const resolver = this.o.addresses;
    if (!resolver) return noAddress(d, 'no address source');
    const answer = resolver.peek(d.host);
    return answer ? this.fromAnswer(d, answer, resolver.source) : null;
  }

  /** Where the service runs, asking the network when needed. Rejects only on a bug. */
  async resolve(d: ServiceDescription): Promise<Lookup> {
    const known = this.peek(d);
    if (known) return known;
    // A resolver never rejects for the network (it answers `failed`): a rejection is a bug, and propagates as one.
    const resolver = this.o.addresses!;
    return this.fromAnswer(d, await resolver.resolve(d.host), resolver.source);
  }

  async lookup(rawName: string): Promise<Lookup> {
    const described = this.describe(rawName);
    if (!described.ok) return described;
    return this.resolve(described.description);
  }

  /** Addresses known without any resolver: loopback, the registry's hosts, /etc/hosts. */
  private localAddresses(d: ServiceDescription): { addresses: HostAddresses; source: EndpointSource } | null {
    if (d.zone === LOCALHOST_ZONE || (d.zone === '' && (d.host === LOCALHOST_ZONE || d.host.endsWith('.localhost')))) {
      return { addresses: LOOPBACK, source: 'loopback' };
    }
    const pinned = this.o.state().registry.hosts.get(d.host);
    if (pinned) {
      return { addresses: { v4: pinned.filter((x) => !x.includes(':')), v6: pinned.filter((x) => x.includes(':')) }, source: 'registry' };
    }
    const fromFile = this.o.hosts?.lookup(d.host);
    return fromFile ? { addresses: fromFile, source: 'etc-hosts' } : null;
  }

  private fromAnswer(d: ServiceDescription, answer: AddressAnswer, source: EndpointSource): Lookup {
    switch (answer.kind) {
      case 'found':
        return found(d, answer, source, Math.min(d.ttl, answer.ttl));
      case 'none':
        return noAddress(d, 'the upstream resolvers know no address for it');
      case 'failed':
        return {
          ok: false,
          failure: 'unavailable',
          code: ErrorCodes.UPSTREAM_FAILED,
          message: `${d.host}: the upstream resolvers failed (${answer.reason}); service ${d.service}, port ${d.port}`,
          description: d,
        };
    }
  }

  /** While anyone listens, notice an edited hosts file (EtcHosts re-reads lazily, on lookups). */
  private pollHosts(): void {
    if (this.hostsTimer || !this.o.hosts) return;
    let last = this.o.hosts.generation;
    this.hostsTimer = setInterval(() => {
      const now = this.o.hosts!.generation;
      if (now !== last) {
        last = now;
        this.notify();
      }
    }, HOSTS_POLL_MS);
    this.hostsTimer.unref();
  }
}

function notFound(message: string): Described & { ok: false } {
  return { ok: false, failure: 'no-such-name', code: ErrorCodes.NOT_FOUND, message };
}

function found(d: ServiceDescription, a: HostAddresses, source: EndpointSource, ttl: number): Lookup {
  const endpoints: Endpoint[] = [...a.v4, ...a.v6].map((address) => ({ address, port: d.port, source }));
  if (endpoints.length === 0) return noAddress(d, `the ${source} entry has no addresses`);
  return { ok: true, instances: { ...d, ttl, endpoints } };
}

function noAddress(d: ServiceDescription, why: string): Lookup {
  return {
    ok: false,
    failure: 'no-address',
    code: ErrorCodes.NO_ADDRESS,
    message: `${d.host} has no address (service ${d.service}, port ${d.port}): ${why}`,
    description: d,
  };
}

/** A Lookup that failed, as the error the gRPC side and the CLI raise. */
export function lookupError(l: Lookup & { ok: false }): CanonportError {
  return new CanonportError(l.code, l.message, l.description ? { name: l.description.name, port: l.description.port } : undefined);
}
