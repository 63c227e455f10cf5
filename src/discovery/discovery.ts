import { CanonportError, ErrorCodes } from '../errors.js';
import type { NameSourceOrNone, ServiceName } from '../core/naming.js';
import { normaliseName } from '../config/names.js';
import { classifyIn, LOCALHOST_ZONE, type NameClass } from '../core/service-name.js';
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

/** One host where a port listens, as cluster mode observes it. */
export interface ObservedHost {
  node: string;
  /** Where to connect: the node's addresses for a wildcard bind, else the bound ones. */
  addresses: readonly string[];
  /** The names the port is canonical for on that host (its claim). */
  services: readonly string[];
  /** How the port is claimed there: base32, versioned, block, pinned. */
  scheme: string;
  version: string;
  /** When the node first saw it listening, ISO 8601. */
  since: string;
  /** tcp (answers) or udp (issue 22); absent: tcp. */
  protocol?: 'tcp' | 'udp' | undefined;
  /** Whether the instance serves; absent: ready (an older writer). */
  readiness?: { state: 'ready' | 'not-ready' | 'draining'; since: string; by: string } | undefined;
  /** `host`, or the label of the container's or pod's network namespace it listens in (issue 26); absent: host. */
  namespace?: string | undefined;
  /** The container or pod, when its node could read it. */
  container?: Readonly<{ id: string; pod?: string | undefined; podNamespace?: string | undefined }> | undefined;
  /** The names people know it by (core/naming.ts); absent: its `services`, as the registry's (a source that predates names). */
  names?: readonly ServiceName[] | undefined;
}

/** A name some hosts run a service under, as browsing (DNS-SD) and Prometheus discovery list it. */
export interface ObservedService {
  /** The name: one people know it by, or for an unnamed listener (listed only on request) its canonical name (`db0`). */
  service: string;
  port: number;
  protocol: 'tcp' | 'udp';
  /** The hosts, each with where this name comes from on it (`none`: unnamed there). */
  hosts: readonly { host: ObservedHost; source: NameSourceOrNone }[];
}

/** Which observed services to list: unnamed listeners too, one transport only. */
export interface ObservedServicesOptions {
  unnamed?: boolean | undefined;
  protocol?: 'tcp' | 'udp' | undefined;
}

/** A host's names (a source without names reads its claim as the registry's). */
export function namesOfHost(h: ObservedHost): readonly ServiceName[] {
  return h.names ?? h.services.map((name) => ({ name, source: 'registry' as const }));
}

/** Cluster mode's view of every host: memory only, never I/O. */
export interface ObservedSource {
  /** The hosts where `port` listens; null when there is no view to answer from (never synced, or dropped). */
  onPort(port: number): readonly ObservedHost[] | null;
  /** Every port some host listens on; null without a view. */
  ports(): readonly number[] | null;
  /** A node's addresses; null when the view has no such node. */
  nodeAddresses(node: string): readonly string[] | null;
  /** The address of a node's instances in a container's namespace (`<ns>.<node>.node.<zone>`); null when there is none. */
  instanceAddress(node: string, namespace: string): string | null;
  /** Changes whenever the view changes. */
  readonly generation: number;
  onChange(listener: () => void): () => void;
  /** This daemon's own node name (local first); undefined for a reader that is no node. */
  readonly localNode?: string | undefined;
}

export type Described =
  | { ok: true; description: ServiceDescription }
  | { ok: false; failure: 'no-such-name'; code: typeof ErrorCodes.NOT_FOUND; message: string };

export interface DiscoveryOptions {
  state: () => ServingState;
  hosts?: HostsSource | undefined;
  addresses?: AddressResolver | undefined;
  /** Cluster mode: where services really listen, on every host. Answers prefer it whenever it names a host. */
  observed?: ObservedSource | undefined;
  /**
   * How a name outside every served zone reads. The daemon says it holds no
   * such service (`not-found`), as its DNS side forwards such names rather
   * than answering them. A client without a daemon cannot know the
   * daemon's zones, so its fallback reads any name by the scheme (`scheme`):
   * the first label is the service, the name is the host.
   */
  outsideZones?: 'not-found' | 'scheme' | undefined;
  /** Called when an answer is computed for a service some host runs but none reports ready (the panic answer). */
  onNoReady?: ((service: string) => void) | undefined;
  /**
   * A client asked for a service name in a served zone (asked-names.ts
   * learns it): called by lookup() (gRPC, xDS) and by the DNS local stage
   * through asked(). Returns the touch to call when the same answer is
   * served again from memory, or undefined when the name is not learned.
   */
  onAsked?: ((name: string, port: number) => (() => void) | undefined) | undefined;
}

/** See Discovery.dependencyOn: `view` is the hosts on `port` (compared by identity), or the view's generation. */
interface AnswerDependency {
  local: number;
  port: number | undefined;
  view: unknown;
}

const LOOPBACK: HostAddresses = Object.freeze({ v4: Object.freeze(['127.0.0.1']), v6: Object.freeze(['::1']) });
/** How often listeners are told about a changed hosts file, at most (EtcHosts re-reads at most every 5 s). */
const HOSTS_POLL_MS = 2000;

export class Discovery implements DiscoveryReader {
  private readonly listeners = new Set<() => void>();
  private gen = 0;
  private localGen = 0;
  private seenHosts = -1;
  private seenAddresses = -1;
  private seenObserved = -1;
  private seenLocal = -1;
  private hostsTimer: NodeJS.Timeout | undefined;
  private unsubscribeObserved: (() => void) | undefined;

  constructor(private readonly o: DiscoveryOptions) {}

  /**
   * A number that changes whenever an answer without I/O (`peek`) may
   * change: a reload (`changed()`), a hosts file edit, an upstream answer
   * learned, any change of the cluster view.
   */
  get generation(): number {
    const o = this.o.observed?.generation ?? 0;
    const local = this.localGeneration;
    if (o !== this.seenObserved || local !== this.seenLocal) {
      this.seenObserved = o;
      this.seenLocal = local;
      this.gen++;
    }
    return this.gen;
  }

  /**
   * The same without the cluster view: what every answer depends on. An
   * answer about a service also depends on the view's hosts for its port
   * only (observedOn), so a cache of encoded answers keyed on both keeps
   * every other answer when one listener changes somewhere in the cluster
   * (issue 24: ten changes a second otherwise re-encode every answer).
   */
  get localGeneration(): number {
    const h = this.o.hosts?.generation ?? 0;
    const a = this.o.addresses?.generation ?? 0;
    if (h !== this.seenHosts || a !== this.seenAddresses) {
      this.seenHosts = h;
      this.seenAddresses = a;
      this.localGen++;
    }
    return this.localGen;
  }

  /** The cluster view's generation: changes with any change of it (0 without cluster mode). */
  get observedGeneration(): number {
    return this.clustered ? this.o.observed!.generation : 0;
  }

  /**
   * What answers about `port` are built from, compared by identity: the
   * same value until the hosts the view holds for that port change, or the
   * view is dropped or synced again (null without cluster mode).
   */
  observedOn(port: number): unknown {
    return this.clustered ? this.o.observed!.onPort(port) : null;
  }

  /**
   * What an answer about `port` is built from (DiscoveryReader.dependencyOn):
   * the local generation (a reload, the hosts file, an upstream address
   * learned) and the view's hosts on that port, or the whole view's
   * generation when the port is not known.
   */
  dependencyOn(port: number | undefined): unknown {
    const d: AnswerDependency = { local: this.localGeneration, port, view: port === undefined ? this.observedGeneration : this.observedOn(port) };
    return d;
  }

  /** Whether an answer built on `dependency` (dependencyOn) would be built the same now. */
  isCurrent(dependency: unknown): boolean {
    const d = dependency as AnswerDependency;
    return d.local === this.localGeneration && (d.port === undefined ? d.view === this.observedGeneration : d.view === this.observedOn(d.port));
  }

  /** Tells the core its state changed (a reload): caches drop, listeners hear of it. */
  changed(): void {
    this.gen++;
    this.localGen++;
    this.notify();
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    this.pollHosts();
    this.unsubscribeObserved ??= this.o.observed?.onChange(() => this.notify());
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) {
        clearInterval(this.hostsTimer);
        this.hostsTimer = undefined;
        this.unsubscribeObserved?.();
        this.unsubscribeObserved = undefined;
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
    this.unsubscribeObserved?.();
    this.unsubscribeObserved = undefined;
    this.listeners.clear();
  }

  /** Cluster mode is on (its settings are in the state and a view source is wired). */
  get clustered(): boolean {
    return !!this.o.observed && !!this.o.state().cluster;
  }

  /** A cluster node's addresses (`<node>.node.<zone>`); null when the view has no such node or there is no view. */
  nodeAddresses(node: string): readonly string[] | null {
    return this.clustered ? this.o.observed!.nodeAddresses(node) : null;
  }

  /** A container instance's own address (`<ns>.<node>.node.<zone>`); null when the view holds none. */
  instanceAddress(node: string, namespace: string): string | null {
    return this.clustered ? this.o.observed!.instanceAddress(node, namespace) : null;
  }

  /**
   * The services some host of the cluster runs, each with the hosts that run
   * it (DNS-SD browsing, Prometheus discovery): every observed port, named
   * by the registry and the scheme as the inventory names ports. Empty
   * without a view.
   */
  observedServices(opts: ObservedServicesOptions = {}): ObservedService[] {
    return [...this.eachObservedService(opts)];
  }

  /**
   * observedServices one at a time, in the same order, each port's hosts
   * grouped by name and transport in one pass (linear in what the view
   * holds), so a caller can page through a large view and give the event
   * loop turns between (http-sd.ts). A listener no source names is left out
   * unless `unnamed`, when it comes under its canonical names with source
   * `none`.
   */
  *eachObservedService(opts: ObservedServicesOptions = {}): Generator<ObservedService> {
    if (!this.clustered) return;
    for (const port of this.o.observed!.ports() ?? []) {
      const all = this.o.observed!.onPort(port) ?? [];
      for (const protocol of ['tcp', 'udp'] as const) {
        if (opts.protocol !== undefined && opts.protocol !== protocol) continue;
        const byName = new Map<string, Map<ObservedHost, NameSourceOrNone>>();
        const add = (name: string, host: ObservedHost, source: NameSourceOrNone) => {
          let at = byName.get(name);
          if (!at) byName.set(name, (at = new Map()));
          if (!at.has(host)) at.set(host, source);
        };
        for (const h of all) {
          if ((h.protocol ?? 'tcp') !== protocol) continue;
          const names = namesOfHost(h);
          if (names.length > 0) for (const n of names) add(n.name, h, n.source);
          else if (opts.unnamed) for (const s of h.services) add(s, h, 'none');
        }
        for (const service of [...byName.keys()].sort()) {
          yield { service, port, protocol, hosts: [...byName.get(service)!].map(([host, source]) => ({ host, source })) };
        }
      }
    }
  }

  /** A client asked for this service (see DiscoveryOptions.onAsked): the touch, or undefined. */
  asked(d: ServiceDescription): (() => void) | undefined {
    if (!this.o.onAsked || d.zone === LOCALHOST_ZONE || d.zone === '') return undefined;
    return this.o.onAsked(d.service, d.port);
  }

  /** A name as text (gRPC, CLI): normalised, then read. Throws CP_BAD_NAME for a malformed name. */
  describe(rawName: string): Described {
    const name = normaliseName(rawName);
    return this.describeClass(name, classifyIn(this.o.state(), name));
  }

  /** A name already lowercased and classified (the DNS path, which classifies once per query). */
  describeClass(name: string, cls: NameClass): Described {
    const { registry } = this.o.state();
    let service: string;
    let version: number | undefined;
    let host: string;
    let zone: string;
    let protocol: 'tcp' | 'udp' | undefined;
    switch (cls.kind) {
      case 'service':
        ({ service, version, host, zone } = cls);
        if (cls.form === 'srv') protocol = cls.proto;
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
      case 'node':
        return notFound(`${name} is not a service name: it names cluster node ${cls.node}`);
      case 'dnssd-types':
        return notFound(`${name} is not a service name: it lists the service types (DNS-SD)`);
      case 'instance':
        return notFound(`${name} is not a service name: it names one instance of ${cls.service} (DNS-SD)`);
    }
    const a = registry.lookup(service, version);
    if (a.port === null) return notFound(`${name}: scheme ${a.scheme} gives ${a.number}, which is not a port (over 65535)`);
    // --only-listening: a service no host reports does not exist. Without a view (etcd never reached), it is answered as one host would.
    const cluster = this.o.state().cluster;
    const onPort = this.o.observed?.onPort(a.port);
    if (cluster?.onlyListening && zone !== LOCALHOST_ZONE && onPort && !onPort.some((h) => protocol === undefined || (h.protocol ?? 'tcp') === protocol)) {
      return notFound(`${name}: no host of the cluster reports ${a.service} listening on port ${a.port}${protocol ? ` over ${protocol.toUpperCase()}` : ''} (--only-listening)`);
    }
    // A name the cluster view decides (a view is there, the zone is not localhost) carries the observed TTL,
    // the fallback for a service no host runs included: a service started a moment later shows through caches that soon.
    const decided = cluster && zone !== LOCALHOST_ZONE && zone !== '' && this.o.observed?.onPort(a.port) != null;
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
        ttl: decided ? Math.min(registry.ttl, cluster.observedTtl) : registry.ttl,
        collidesWith: a.collidesWith,
        ...(protocol ? { protocol } : {}),
      },
    };
  }

  /** Where the service runs, if that is known without I/O; null when only the network can say. */
  peek(d: ServiceDescription): Lookup | null {
    const observed = this.observedEndpoints(d);
    if (observed) {
      const cluster = this.o.state().cluster!;
      const ttl = Math.min(d.ttl, cluster.observedTtl);
      if (observed.length === 0) return noAddress({ ...d, ttl }, 'every instance of it is draining');
      return { ok: true, instances: { ...d, ttl, endpoints: observed } };
    }
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

  /**
   * `opts.protocol` narrows a plain name to one transport (xDS and `canon:`
   * dial gRPC, which is TCP); a `_svc._udp` or `_svc._tcp` name says its own.
   */
  async lookup(rawName: string, opts: { protocol?: 'tcp' | 'udp' | undefined } = {}): Promise<Lookup> {
    const described = this.describe(rawName);
    if (!described.ok) return described;
    const d = opts.protocol && !described.description.protocol ? { ...described.description, protocol: opts.protocol } : described.description;
    this.asked(d);
    return this.resolve(d);
  }

  /**
   * Cluster mode: one endpoint per address of every ready instance of the
   * service's port, or null when no host reports it (or there is no view):
   * then the configured sources answer, so nothing breaks while a fleet
   * adopts cluster mode. `*.localhost` is always this host.
   *
   * Readiness: only ready instances are answered. When instances listen but
   * none is ready, every one that is not draining is (Envoy's panic
   * routing: a fleet whose probes all fail, or a service still warming
   * everywhere, is better served by trying than by a negative answer that
   * stub caches keep), counted through onNoReady. When every instance is
   * draining: none (an empty list: the name exists, no address).
   *
   * Order: this host's instances first when the service prefers local
   * (the `preferLocal` setting, a registry service's `preferLocal:`), then
   * the others by node; `localCount` says how many lead. Consumers spread
   * the rest per answer (spreadEndpoints).
   */
  private observedEndpoints(d: ServiceDescription): Endpoint[] | null {
    if (!this.clustered || d.zone === LOCALHOST_ZONE || d.zone === '') return null;
    const all = this.o.observed!.onPort(d.port);
    if (!all || all.length === 0) return null;
    const hosts = onePerNode(d.protocol === undefined ? all : all.filter((h) => (h.protocol ?? 'tcp') === d.protocol));
    if (hosts.length === 0) return null;
    let chosen = hosts.filter((h) => (h.readiness?.state ?? 'ready') === 'ready');
    if (chosen.length === 0) {
      chosen = hosts.filter((h) => h.readiness?.state !== 'draining');
      if (chosen.length > 0) this.o.onNoReady?.(d.service);
    }
    const local = this.o.observed!.localNode;
    const preferLocal = this.o.state().registry.services.get(d.service)?.spec.preferLocal ?? this.o.state().cluster?.preferLocal ?? true;
    const out: Endpoint[] = [];
    const push = (h: ObservedHost, isLocal: boolean) => {
      const names = namesOfHost(h);
      for (const address of h.addresses) {
        out.push({
          address,
          port: d.port,
          source: 'observed',
          node: h.node,
          version: h.version || undefined,
          since: h.since,
          readiness: h.readiness?.state ?? 'ready',
          ...(isLocal ? { local: true } : {}),
          // Two pods of one service on one node are two endpoints: their namespace tells them apart.
          ...(h.namespace && h.namespace !== 'host' ? { namespace: h.namespace } : {}),
          ...(h.container ? { container: h.container } : {}),
          protocol: h.protocol ?? 'tcp',
          names,
        });
      }
    };
    if (preferLocal && local !== undefined) {
      for (const h of chosen) if (h.node === local) push(h, true);
      for (const h of chosen) if (h.node !== local) push(h, false);
    } else {
      for (const h of chosen) push(h, false);
    }
    return out;
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
      // A throw from a timer would end the process: whatever a source does, the poll goes on next time.
      try {
        const now = this.o.hosts!.generation;
        if (now !== last) {
          last = now;
          this.notify();
        }
      } catch {
        // The sources keep their last answers (EtcHosts, NameServerHosts); nothing to tell anyone.
      }
    }, HOSTS_POLL_MS);
    this.hostsTimer.unref();
  }
}

/**
 * One instance per node and namespace for a plain name that covers both
 * transports: a host with a TCP and a UDP listener on the port is one
 * endpoint per address, the TCP one (which most clients dial), so no
 * address is answered twice. The UDP one stands in only where no TCP one
 * is ready and it is.
 */
function onePerNode(hosts: readonly ObservedHost[]): readonly ObservedHost[] {
  if (!hosts.some((h) => h.protocol === 'udp') || !hosts.some((h) => (h.protocol ?? 'tcp') === 'tcp')) return hosts;
  const rank = (h: ObservedHost) => ((h.readiness?.state ?? 'ready') === 'ready' ? 0 : 2) + ((h.protocol ?? 'tcp') === 'tcp' ? 0 : 1);
  const best = new Map<string, ObservedHost>();
  const keyOf = (h: ObservedHost) => `${h.node}/${h.namespace ?? 'host'}/${h.addresses.join(',')}`;
  for (const h of hosts) {
    const key = keyOf(h);
    const known = best.get(key);
    if (!known || rank(h) < rank(known)) best.set(key, h);
  }
  return hosts.filter((h) => best.get(keyOf(h)) === h);
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
