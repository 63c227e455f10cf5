import { isInZone } from '../config/names.js';
import { readService, type Registry } from '../registry/registry.js';
import type { ServingState } from './state.js';

/**
 * How a name under a served zone reads. Shared by the DNS pipeline and the
 * gRPC API so both agree on what a name means.
 *
 * Forms, for service `svc` under zone Z:
 *   `_svc._tcp[.labels].Z`, `_svc._udp[.labels].Z`   RFC 2782 SRV owner
 *   `svc[.labels].Z`                                  plain service name
 *   `vN.svc[.labels].Z`                               version N of a versioned service
 */
export type NameClass =
  /** Not under any served zone: forward it. */
  | { kind: 'outside' }
  /** The zone apex: exists, holds SOA only. */
  | { kind: 'apex'; zone: string }
  /** An empty non-terminal such as `_tcp.Z` or `_tcp.east.Z`: exists, holds nothing. */
  | { kind: 'empty'; zone: string }
  /** A name that cannot exist in the zone (bad `_` labels, bad characters). */
  | { kind: 'nxdomain'; zone: string; reason: string }
  /**
   * Cluster mode: `<node>.node.Z`, the host a cluster node is (its
   * addresses); `<ns>.<node>.node.Z`, its instances in a container's or
   * pod's network namespace `ns` (that namespace's own address, issue 26).
   */
  | { kind: 'node'; zone: string; node: string; namespace?: string | undefined }
  /** Cluster mode: `_services._dns-sd._udp.Z`, the service types (RFC 6763 §9). */
  | { kind: 'dnssd-types'; zone: string }
  /** Cluster mode: `<node>._svc._tcp.Z`, one instance of a service: the service on one node (RFC 6763 §4). */
  | { kind: 'instance'; zone: string; node: string; service: string; proto: 'tcp' | 'udp' }
  /** A service name. */
  | {
      kind: 'service';
      zone: string;
      /** Service label, lowercased, leading `_` removed. */
      service: string;
      version?: number | undefined;
      /** `srv` when asked as `_svc._tcp…`, `plain` otherwise. */
      form: 'srv' | 'plain';
      proto?: 'tcp' | 'udp' | undefined;
      /** SRV target / host name: `svc[.labels].Z` (lowercase, no trailing dot). */
      host: string;
    };

export const LOCALHOST_ZONE = 'localhost';

const LABEL_RE = /^[a-z0-9][a-z0-9-]*$/;
/** The longest served zone that holds `name` (lowercase, no trailing dot). */
export function zoneOf(name: string, zones: readonly string[]): string | null {
  let best: string | null = null;
  for (const z of zones) if (isInZone(name, z) && (best === null || z.length > best.length)) best = z;
  return best;
}

/**
 * The special-use zone a name outside the served zones falls in, or null.
 * The daemon answers these itself, as empty zones (NXDOMAIN below the
 * apex, with the zone's SOA), never forwarding them:
 *
 *   invalid  RFC 6761 §6.4: caching servers SHOULD answer NXDOMAIN at once.
 *   onion    RFC 7686 §2: resolvers MUST answer NXDOMAIN (unless they speak Tor).
 *   _*       a top-level label starting with `_` (`_api._tcp` asked as an
 *            absolute name): no TLD can hold one (the root's TLDs are
 *            letters, RFC 1123 §2.1), so no server anywhere could answer
 *            it, and a stub walking its search list should hear so at once.
 *
 * `test.` and `local.` are special-use too but stay forwarded: sites serve
 * them (and resolvers that route `.local` to mDNS do so before us).
 * Takes a lowercase name as read off the wire (escapes never hold a dot).
 */
export function specialUseZone(name: string): string | null {
  // Asked for every name outside the zones (every forwarded query): nothing is allocated unless it is special.
  const start = name.lastIndexOf('.') + 1;
  const length = name.length - start;
  if (length === 7 && name.endsWith('invalid')) return 'invalid';
  if (length === 5 && name.endsWith('onion')) return 'onion';
  if (name.charCodeAt(start) !== 95) return null;
  const tld = name.slice(start);
  // An escaped `_` TLD cannot be spelled as the SOA's owner; it goes upstream, which will deny it.
  return tld.includes('\\') ? null : tld;
}

/** Most names a resolver sees are outside its zones: one shared answer, no allocation per query. */
const OUTSIDE: NameClass = Object.freeze({ kind: 'outside' });

/** The label under a zone that holds cluster nodes' names in cluster mode: `<node>.node.<zone>`. */
export const NODE_LABEL = 'node';

/**
 * Classifies a lowercase name (no trailing dot) against the served zones.
 * In cluster mode three more forms exist: `<node>.node.Z` (a node's
 * addresses), `_services._dns-sd._udp.Z` and `<node>._svc._tcp.Z` (DNS-SD);
 * outside cluster mode they read as they always did.
 */
export function classifyName(name: string, zones: readonly string[], registry: Registry, opts: { cluster?: boolean } = {}): NameClass {
  const zone = zoneOf(name, zones);
  if (zone === null) return OUTSIDE;
  if (name === zone) return { kind: 'apex', zone };
  const labels = name.slice(0, name.length - zone.length - 1).split('.');
  const first = labels[0]!;
  if (opts.cluster && zone !== LOCALHOST_ZONE) {
    if (labels.length === 2 && labels[1] === NODE_LABEL) {
      return LABEL_RE.test(first) ? { kind: 'node', zone, node: first } : { kind: 'nxdomain', zone, reason: 'bad node label' };
    }
    if (labels.length === 3 && labels[2] === NODE_LABEL) {
      return LABEL_RE.test(first) && LABEL_RE.test(labels[1]!) ? { kind: 'node', zone, node: labels[1]!, namespace: first } : { kind: 'nxdomain', zone, reason: 'bad node label' };
    }
    if (labels.length === 3 && first === '_services' && labels[1] === '_dns-sd' && labels[2] === '_udp') return { kind: 'dnssd-types', zone };
    if (labels.length === 3 && LABEL_RE.test(first) && labels[1]!.startsWith('_') && (labels[2] === '_tcp' || labels[2] === '_udp')) {
      const service = labels[1]!.slice(1);
      if (LABEL_RE.test(service)) return { kind: 'instance', zone, node: first, service, proto: labels[2] === '_tcp' ? 'tcp' : 'udp' };
    }
  }
  if (first === '_tcp' || first === '_udp') {
    return labels.slice(1).every((l) => LABEL_RE.test(l)) ? { kind: 'empty', zone } : { kind: 'nxdomain', zone, reason: 'bad host label' };
  }
  if (first.startsWith('_')) {
    const proto = labels[1];
    if (proto !== '_tcp' && proto !== '_udp') return { kind: 'nxdomain', zone, reason: 'underscore label outside _svc._proto' };
    const service = first.slice(1);
    const rest = labels.slice(2);
    if (!LABEL_RE.test(service) || !rest.every((l) => LABEL_RE.test(l))) return { kind: 'nxdomain', zone, reason: 'bad label' };
    return { kind: 'service', zone, service, form: 'srv', proto: proto === '_tcp' ? 'tcp' : 'udp', host: [service, ...rest, zone].join('.') };
  }
  if (!labels.every((l) => LABEL_RE.test(l))) return { kind: 'nxdomain', zone, reason: 'bad label' };
  const read = readService(labels, registry);
  if (!read.ok) return { kind: 'nxdomain', zone, reason: read.reason };
  return { kind: 'service', zone, service: read.service, version: read.version, form: 'plain', host: name };
}

/** How a name reads in a serving state: its zones, its registry, and cluster mode's names when it is on. */
export function classifyIn(state: ServingState, name: string): NameClass {
  return classifyName(name, state.zones, state.registry, { cluster: !!state.cluster });
}
