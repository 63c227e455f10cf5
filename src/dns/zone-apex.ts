import { createHash } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import type { HostPort } from '../config/address.js';
import { isInZone } from '../config/names.js';
import type { ServingState } from '../core/state.js';
import type { HostAddresses, HostsSource } from '../discovery/discovery.js';
import type { Rr } from './message.js';

/**
 * What sits at the apex of each zone the daemon answers itself: the SOA,
 * the NS RRset, and the name server host both name.
 *
 * One host name per zone serves as the NS target and the SOA's MNAME:
 * `ns.<zone>`. Its addresses are this daemon's DNS address (NameServerHosts
 * below), so a resolver that follows the NS record reaches the daemon that
 * gave it; the registry's `hosts` map or /etc/hosts may name others.
 */

/** The zone's name server host: the NS target and the SOA MNAME. */
export function nameServerHost(zone: string): string {
  return `ns.${zone}`;
}

const serials = new WeakMap<ServingState, Map<string, number>>();

/**
 * The zone's SOA serial: a digest of what its answers are made from (the
 * zone's name, the TTL, every registry name's port and scheme, the
 * registry's hosts in the zone, the served zones below it; in cluster mode
 * the observed TTL too, which bounds the SOA's own TTLs), so it is the
 * same on every host with the same registry and changes when a reload
 * changes the zone. Not a counter: nothing transfers these zones (AXFR is
 * refused), so no secondary compares serials in RFC 1982 order; operators
 * compare them for equality (`dig SOA` on two hosts). Computed once per
 * serving state and zone.
 */
export function zoneSerial(state: ServingState, zone: string): number {
  let byZone = serials.get(state);
  if (!byZone) serials.set(state, (byZone = new Map()));
  let serial = byZone.get(zone);
  if (serial === undefined) {
    const { registry, zones } = state;
    const content = {
      zone,
      ttl: registry.ttl,
      names: [...registry.expanded.values()].map((a) => JSON.stringify([a.service, a.port, a.number, a.scheme, a.version ?? null, a.collidesWith])).sort(),
      hosts: [...registry.hosts].filter(([host]) => isInZone(host, zone)).map((entry) => JSON.stringify(entry)).sort(),
      below: zones.filter((z) => z !== zone && isInZone(z, zone)).sort(),
      // Only in cluster mode, so a single host's serials stay what they were.
      ...(state.cluster ? { observedTtl: state.cluster.observedTtl } : {}),
    };
    serial = createHash('sha256').update(JSON.stringify(content)).digest().readUInt32BE(0);
    byZone.set(zone, serial);
  }
  return serial;
}

/**
 * How long the zone's negative answers may be cached: the SOA's TTL and
 * MINIMUM both (RFC 2308 §5: a cache keeps NXDOMAIN and NODATA for the
 * lesser of the two). min(TTL, 300 s); in cluster mode, also at most the
 * observed TTL: a name that does not exist now (a service no host runs
 * under --only-listening, an AAAA no host has, `<node>.node.<zone>`, an
 * instance) exists once a host starts listening, and a stub in front
 * (systemd-resolved, dnsmasq) must not keep the "no" longer than it would
 * keep a "yes". One value for the whole zone, so every negative answer and
 * `dig SOA` carry the same record, the same on every host (the cluster
 * settings are).
 */
function negativeTtl(state: ServingState): number {
  const negative = Math.min(state.registry.ttl, 300);
  return state.cluster ? Math.min(negative, state.cluster.observedTtl) : negative;
}

/** The served zone's SOA: MNAME its name server host, the serial from its content, negative answers cached for negativeTtl(). */
export function zoneSoa(state: ServingState, zone: string): Rr {
  const negative = negativeTtl(state);
  return {
    type: 'SOA',
    name: zone,
    ttl: negative,
    primary: nameServerHost(zone),
    admin: `hostmaster.${zone}`,
    serial: zoneSerial(state, zone),
    refresh: 3600,
    retry: 600,
    expiration: 86400,
    minimum: negative,
  };
}

/** The served zone's NS RRset (RFC 1034 §4.2.1: every zone has one): its name server host. */
export function zoneNs(state: ServingState, zone: string): Rr {
  return { type: 'NS', name: zone, ttl: state.registry.ttl, ns: nameServerHost(zone) };
}

/**
 * The SOA of a special-use zone (`invalid`, `onion`, a `_` TLD): the one
 * unbound gives its own empty local zones, so a stub or a cache sees the
 * same negative answer from either, cacheable for 3 hours (RFC 2308 §5).
 */
export function specialZoneSoa(zone: string): Rr {
  return {
    type: 'SOA',
    name: zone,
    ttl: 10800,
    primary: 'localhost',
    admin: 'nobody.invalid',
    serial: 1,
    refresh: 3600,
    retry: 1200,
    expiration: 604800,
    minimum: 10800,
  };
}

/** How often a wildcard daemon re-reads its interfaces' addresses, at most (EtcHosts re-reads its file as often). */
const INTERFACES_TTL_MS = 5000;

export interface NameServerHostsOptions {
  /** The served zones (they change on reload). */
  zones: () => readonly string[];
  /** Where the daemon listens for DNS. */
  listen: HostPort;
  /** Clock, ms. */
  now?: () => number;
  /** The host's interface addresses (tests hand their own). */
  interfaces?: () => ReturnType<typeof networkInterfaces>;
  /** Reading the interfaces failed (out of descriptors: it opens a netlink socket); the last addresses stay. */
  onError?: ((err: NodeJS.ErrnoException) => void) | undefined;
}

/**
 * The discovery core's hosts source, extended with the zones' name server
 * hosts: `ns.<zone>` has this daemon's DNS address, or, bound to a wildcard
 * (0.0.0.0, ::), the host's addresses other than loopback and link-local
 * (loopback when there are none). Through the core, DNS and gRPC give the
 * same addresses for it. The registry's `hosts` map comes first (the core
 * reads it before any hosts source), then the inner source (/etc/hosts):
 * either may name the name server's address instead.
 */
export class NameServerHosts implements HostsSource {
  private cached: HostAddresses | null = null;
  private cachedAt = -Infinity;
  private own = 0;

  constructor(
    private readonly inner: HostsSource,
    private readonly o: NameServerHostsOptions,
  ) {}

  get generation(): number {
    if (isWildcard(this.o.listen.host)) this.selfAddresses();
    return this.inner.generation * 1024 + this.own;
  }

  lookup(host: string): HostAddresses | null {
    const fromInner = this.inner.lookup(host);
    if (fromInner) return fromInner;
    if (!host.startsWith('ns.') || !this.o.zones().includes(host.slice(3))) return null;
    return this.selfAddresses();
  }

  private selfAddresses(): HostAddresses {
    const { host } = this.o.listen;
    if (!isWildcard(host)) return (this.cached ??= host.includes(':') ? { v4: [], v6: [host] } : { v4: [host], v6: [] });
    const now = (this.o.now ?? Date.now)();
    if (this.cached && now - this.cachedAt < INTERFACES_TTL_MS) return this.cached;
    let ifaces: ReturnType<typeof networkInterfaces>;
    try {
      ifaces = (this.o.interfaces ?? networkInterfaces)();
    } catch (err) {
      // os.networkInterfaces() throws when the process is out of descriptors (EMFILE): read from a query
      // and from timers (Discovery.generation), it must never throw there. Keep what we had, try again later.
      this.cachedAt = now;
      this.o.onError?.(err as NodeJS.ErrnoException);
      return (this.cached ??= interfaceAddresses({}, host === '::'));
    }
    const fresh = interfaceAddresses(ifaces, host === '::');
    this.cachedAt = now;
    if (!this.cached || !sameAddresses(this.cached, fresh)) {
      this.cached = fresh;
      this.own = (this.own + 1) % 1024;
    }
    return this.cached;
  }
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** The host's addresses a client elsewhere could reach: no loopback, no link-local; IPv6 too when bound to `::`. */
function interfaceAddresses(ifaces: ReturnType<typeof networkInterfaces>, withV6: boolean): HostAddresses {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4.push(a.address);
      else if (withV6 && !/^fe[89ab]/i.test(a.address)) v6.push(a.address);
    }
  }
  if (v4.length + v6.length === 0) return withV6 ? { v4: ['127.0.0.1'], v6: ['::1'] } : { v4: ['127.0.0.1'], v6: [] };
  return { v4, v6 };
}

function sameAddresses(a: HostAddresses, b: HostAddresses): boolean {
  return [...a.v4, ...a.v6].join(',') === [...b.v4, ...b.v6].join(',');
}
