import { isDnsSdServiceName } from '../../../core/naming.js';
import { NODE_LABEL, type NameClass } from '../../../core/service-name.js';
import type { Discovery, ObservedHost } from '../../../discovery/discovery.js';
import type { Lookup, ServiceDescription } from '../../../discovery/model.js';
import { Rcode } from '../../../errors.js';
import type { Rr } from '../../message.js';
import { TYPE } from '../../wire.js';

/**
 * Cluster mode's answers in the served zones, formatted from the discovery
 * core's observed endpoints (the local plugin calls these; nothing here
 * does I/O):
 *
 *   SRV  <svc>.Z                  one record per instance: per host where the service
 *                                 listens (TCP or UDP), each aimed at `<node>.node.Z`,
 *                                 and per container or pod with its own address, aimed
 *                                 at `<ns>.<node>.node.Z` (issue 26); addresses in the
 *                                 additional section
 *   SRV  _<svc>._tcp.Z            the same, TCP listeners only; `_udp`, UDP ones only
 *   A    <node>.node.Z            that host's addresses
 *   A    <ns>.<node>.node.Z       that container's or pod's own address
 *   TXT  <svc>.Z                  adds hosts= and versions= (mixed versions show)
 *   PTR  _services._dns-sd._udp.Z the service types some host runs (RFC 6763 §9):
 *                                 `_<name>._tcp` / `_<name>._udp` for every name
 *                                 people know a listener by (core/naming.ts)
 *   PTR  _<name>._<proto>.Z       its instances on that transport, `<node>._<name>._<proto>.Z`
 *                                 (§4.1: the instance carries its type's protocol),
 *                                 with their SRV, TXT and addresses as additional records (§12.1)
 *   SRV/TXT <node>._<name>._<proto>.Z  one instance
 *
 * Browsing (the types and the instances) lists only listeners some source
 * names; unnamed ones answer their canonical names (SRV, A) all the same,
 * and are listed too with `--sd-unnamed` (`sdUnnamed`).
 */

/** What the local plugin sends: an rcode and sections; an empty answer is NODATA (the plugin adds the SOA). */
export interface Answer {
  rcode: number;
  answers: Rr[];
  additionals: Rr[];
}

/** `<node>.node.<zone>`: the SRV target that names one host. */
export function nodeHost(node: string, zone: string): string {
  return `${node}.${NODE_LABEL}.${zone}`;
}

/** `<ns>.<node>.node.<zone>`: the SRV target that names a node's instances in a container's namespace. */
export function instanceHost(node: string, namespace: string | undefined, zone: string): string {
  return namespace ? `${namespace}.${nodeHost(node, zone)}` : nodeHost(node, zone);
}

/** One instance in an answer: a node's own, or one in a container's or pod's namespace on it (`namespace`); where it is, what runs there, what it is called. */
export interface AnswerHost {
  node: string;
  namespace?: string | undefined;
  addresses: string[];
  version: string;
  local: boolean;
  /** Its names (core/naming.ts); empty: unnamed. */
  names: readonly string[];
}

/**
 * The observed instances of a lookup, one per node and namespace (two pods
 * of a service on one node are two), in the lookup's order (this host
 * first, then turned); null when its endpoints were not observed.
 */
export function observedHosts(l: Lookup | null): AnswerHost[] | null {
  if (!l?.ok || l.instances.endpoints.length === 0 || l.instances.endpoints.some((e) => e.source !== 'observed')) return null;
  const byInstance = new Map<string, AnswerHost>();
  for (const e of l.instances.endpoints) {
    const key = `${e.node!}/${e.namespace ?? ''}`;
    const h = byInstance.get(key) ?? { node: e.node!, ...(e.namespace ? { namespace: e.namespace } : {}), addresses: [], version: e.version ?? '', local: e.local === true, names: (e.names ?? []).map((n) => n.name) };
    if (!h.addresses.includes(e.address)) h.addresses.push(e.address);
    byInstance.set(key, h);
  }
  return [...byInstance.values()];
}

/** The DNS-SD instance label of an instance: its node, or `<node>-<ns>` for a container's (cut to a label's 63 characters). */
export function instanceLabel(h: Pick<AnswerHost, 'node' | 'namespace'>): string {
  return h.namespace ? `${h.node}-${h.namespace}`.slice(0, 63).replace(/-+$/, '') : h.node;
}

/** Whether browsing lists a host under `name`: it is one of its names, or it has none and unnamed listeners are shown. */
function browsable(h: AnswerHost, name: string, unnamed: boolean): boolean {
  return h.names.includes(name) || (unnamed && h.names.length === 0);
}

function addressRrs(name: string, addresses: readonly string[], ttl: number, only?: number): Rr[] {
  const out: Rr[] = [];
  for (const address of addresses) {
    const v6 = address.includes(':');
    if (only === TYPE.A && v6) continue;
    if (only === TYPE.AAAA && !v6) continue;
    out.push(v6 ? { type: 'AAAA', name, ttl, address } : { type: 'A', name, ttl, address });
  }
  return out;
}

/** Every instance's SRV weight: equal and non-zero, so clients that weigh (RFC 2782) spread evenly. */
export const SRV_WEIGHT = 10;

/**
 * SRV for a service that hosts observe: one record per host, targets in the
 * additional section. This host's own instance (when the service prefers
 * local) gets priority 0 and the others 1, so a client that honours
 * priorities stays local while it can; equal non-zero weights otherwise.
 */
export function observedSrv(owner: string, d: ServiceDescription, hosts: NonNullable<ReturnType<typeof observedHosts>>, ttl: number): Answer {
  const answers: Rr[] = [];
  const additionals: Rr[] = [];
  const anyLocal = hosts.some((h) => h.local);
  for (const h of hosts) {
    const target = instanceHost(h.node, h.namespace, d.zone);
    answers.push({ type: 'SRV', name: owner, ttl, priority: anyLocal && !h.local ? 1 : 0, weight: SRV_WEIGHT, port: d.port, target });
    additionals.push(...addressRrs(target, h.addresses, ttl));
  }
  return { rcode: Rcode.NOERROR, answers, additionals };
}

/** TXT strings a service's hosts add: how many run it, and which versions (so a mixed fleet shows). */
export function observedTxt(hosts: NonNullable<ReturnType<typeof observedHosts>>): string[] {
  const versions = [...new Set(hosts.map((h) => h.version).filter((v) => v !== ''))].sort();
  return [`hosts=${hosts.length}`, ...(versions.length > 0 ? [`versions=${versions.join(',')}`] : [])];
}

/** Answers for the names only cluster mode has (node names, DNS-SD); null for any other name. */
export function clusterName(cls: NameClass, qtype: number, discovery: Discovery, ttl: number, registryTxt: (d: ServiceDescription) => string[], unnamed = false): Answer | null {
  const nodata: Answer = { rcode: Rcode.NOERROR, answers: [], additionals: [] };
  const nxdomain: Answer = { rcode: Rcode.NXDOMAIN, answers: [], additionals: [] };
  switch (cls.kind) {
    case 'node': {
      const one = cls.namespace !== undefined ? discovery.instanceAddress(cls.node, cls.namespace) : null;
      const addresses = cls.namespace !== undefined ? (one ? [one] : null) : discovery.nodeAddresses(cls.node);
      if (!addresses) return nxdomain;
      const name = instanceHost(cls.node, cls.namespace, cls.zone);
      if (qtype === TYPE.A || qtype === TYPE.AAAA) return { ...nodata, answers: addressRrs(name, addresses, ttl, qtype) };
      return nodata;
    }
    case 'dnssd-types': {
      if (qtype !== TYPE.PTR && qtype !== TYPE.ANY) return nodata;
      const owner = `_services._dns-sd._udp.${cls.zone}`;
      // A name that cannot be a DNS-SD service type (RFC 6335 §5.1: 15 characters at most, a letter…) is not offered to browse.
      const types = [...new Set(discovery.observedServices({ unnamed }).filter((s) => isDnsSdServiceName(s.service)).map((s) => `_${s.service}._${s.protocol}.${cls.zone}`))];
      return { ...nodata, answers: types.map((target) => ({ type: 'PTR' as const, name: owner, ttl, target })) };
    }
    case 'instance': {
      const found = instanceOf(discovery, cls.node, cls.service, cls.zone, cls.proto, unnamed);
      if (!found) return nxdomain;
      return instanceAnswer(found, qtype, ttl, registryTxt);
    }
    default:
      return null;
  }
}

/**
 * PTR `_<name>._<proto>.Z`: the instances people know as `name` on that
 * transport, each with its SRV, TXT and addresses in the additional
 * section (RFC 6763 §12.1), each named `<node>._<name>._<proto>.Z` (§4.1).
 */
export function instancesPtr(owner: string, d: ServiceDescription, discovery: Discovery, ttl: number, registryTxt: (d: ServiceDescription) => string[], unnamed = false): Answer {
  const proto = d.protocol ?? 'tcp';
  const hosts = (observedHosts(discovery.peek({ ...d, protocol: proto })) ?? []).filter((h) => browsable(h, d.service, unnamed));
  const answers: Rr[] = [];
  const additionals: Rr[] = [];
  for (const h of hosts) {
    const instance = `${instanceLabel(h)}._${d.service}._${proto}.${d.zone}`;
    answers.push({ type: 'PTR', name: owner, ttl, target: instance });
    const a = instanceAnswer({ d, host: h, instance }, TYPE.ANY, ttl, registryTxt);
    additionals.push(...a.answers, ...a.additionals);
  }
  return { rcode: Rcode.NOERROR, answers, additionals };
}

interface Instance {
  d: ServiceDescription;
  host: AnswerHost;
  instance: string;
}

function instanceOf(discovery: Discovery, label: string, service: string, zone: string, proto: 'tcp' | 'udp', unnamed: boolean): Instance | null {
  const described = discovery.describe(`_${service}._${proto}.${zone}`);
  if (!described.ok) return null;
  const host = observedHosts(discovery.peek(described.description))?.find((h) => instanceLabel(h) === label && browsable(h, service, unnamed));
  return host ? { d: described.description, host, instance: `${label}._${service}._${proto}.${zone}` } : null;
}

/** One instance's records: SRV to its host (or its container's name), TXT with its version, and the addresses. */
function instanceAnswer(i: Instance, qtype: number, ttl: number, registryTxt: (d: ServiceDescription) => string[]): Answer {
  const target = instanceHost(i.host.node, i.host.namespace, i.d.zone);
  const srv: Rr = { type: 'SRV', name: i.instance, ttl, priority: 0, weight: SRV_WEIGHT, port: i.d.port, target };
  const txt: Rr = { type: 'TXT', name: i.instance, ttl, data: [...registryTxt(i.d), ...(i.host.version ? [`version=${i.host.version}`] : []), `node=${i.host.node}`, ...(i.host.namespace ? [`namespace=${i.host.namespace}`] : [])] };
  const addresses = addressRrs(target, i.host.addresses, ttl);
  if (qtype === TYPE.SRV) return { rcode: Rcode.NOERROR, answers: [srv], additionals: addresses };
  if (qtype === TYPE.TXT) return { rcode: Rcode.NOERROR, answers: [txt], additionals: [] };
  if (qtype === TYPE.ANY) return { rcode: Rcode.NOERROR, answers: [srv, txt], additionals: addresses };
  return { rcode: Rcode.NOERROR, answers: [], additionals: [] };
}

export type { ObservedHost };
