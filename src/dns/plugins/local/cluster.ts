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
 *   SRV  <svc>.Z, _<svc>._tcp.Z   one record per host where the service listens,
 *                                 each aimed at `<node>.node.Z`, whose addresses
 *                                 go in the additional section
 *   A    <node>.node.Z            that host's addresses
 *   TXT  <svc>.Z                  adds hosts= and versions= (mixed versions show)
 *   PTR  _services._dns-sd._udp.Z the service types some host runs (RFC 6763 §9)
 *   PTR  _<svc>._tcp.Z            its instances, `<node>._<svc>._tcp.Z`, with their
 *                                 SRV, TXT and addresses as additional records (§12.1)
 *   SRV/TXT <node>._<svc>._tcp.Z  one instance
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

/** The observed hosts of a lookup, one per node, in the lookup's order (this host first, then turned); null when its endpoints were not observed. */
export function observedHosts(l: Lookup | null): { node: string; addresses: string[]; version: string; local: boolean }[] | null {
  if (!l?.ok || l.instances.endpoints.length === 0 || l.instances.endpoints.some((e) => e.source !== 'observed')) return null;
  const byNode = new Map<string, { node: string; addresses: string[]; version: string; local: boolean }>();
  for (const e of l.instances.endpoints) {
    const h = byNode.get(e.node!) ?? { node: e.node!, addresses: [], version: e.version ?? '', local: e.local === true };
    h.addresses.push(e.address);
    byNode.set(e.node!, h);
  }
  return [...byNode.values()];
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
    const target = nodeHost(h.node, d.zone);
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
export function clusterName(cls: NameClass, qtype: number, discovery: Discovery, ttl: number, registryTxt: (d: ServiceDescription) => string[]): Answer | null {
  const nodata: Answer = { rcode: Rcode.NOERROR, answers: [], additionals: [] };
  const nxdomain: Answer = { rcode: Rcode.NXDOMAIN, answers: [], additionals: [] };
  switch (cls.kind) {
    case 'node': {
      const addresses = discovery.nodeAddresses(cls.node);
      if (!addresses) return nxdomain;
      const name = nodeHost(cls.node, cls.zone);
      if (qtype === TYPE.A || qtype === TYPE.AAAA) return { ...nodata, answers: addressRrs(name, addresses, ttl, qtype) };
      return nodata;
    }
    case 'dnssd-types': {
      if (qtype !== TYPE.PTR && qtype !== TYPE.ANY) return nodata;
      const owner = `_services._dns-sd._udp.${cls.zone}`;
      const types = [...new Set(discovery.observedServices().map((s) => s.service))];
      return { ...nodata, answers: types.map((s) => ({ type: 'PTR' as const, name: owner, ttl, target: `_${s}._tcp.${cls.zone}` })) };
    }
    case 'instance': {
      const found = instanceOf(discovery, cls.node, cls.service, cls.zone);
      if (!found) return nxdomain;
      return instanceAnswer(found, qtype, ttl, registryTxt);
    }
    default:
      return null;
  }
}

/** PTR `_<svc>._tcp.Z`: the service's instances, each with its SRV, TXT and addresses in the additional section (RFC 6763 §12.1). */
export function instancesPtr(owner: string, d: ServiceDescription, discovery: Discovery, ttl: number, registryTxt: (d: ServiceDescription) => string[]): Answer {
  const hosts = observedHosts(discovery.peek(d)) ?? [];
  const answers: Rr[] = [];
  const additionals: Rr[] = [];
  for (const h of hosts) {
    const instance = `${h.node}._${d.service}._tcp.${d.zone}`;
    answers.push({ type: 'PTR', name: owner, ttl, target: instance });
    const a = instanceAnswer({ d, host: h, instance }, TYPE.ANY, ttl, registryTxt);
    additionals.push(...a.answers, ...a.additionals);
  }
  return { rcode: Rcode.NOERROR, answers, additionals };
}

interface Instance {
  d: ServiceDescription;
  host: { node: string; addresses: string[]; version: string; local: boolean };
  instance: string;
}

function instanceOf(discovery: Discovery, node: string, service: string, zone: string): Instance | null {
  const described = discovery.describe(`${service}.${zone}`);
  if (!described.ok) return null;
  const host = observedHosts(discovery.peek(described.description))?.find((h) => h.node === node);
  return host ? { d: described.description, host, instance: `${node}._${service}._tcp.${zone}` } : null;
}

/** One instance's records: SRV to its host, TXT with its version, and the host's addresses. */
function instanceAnswer(i: Instance, qtype: number, ttl: number, registryTxt: (d: ServiceDescription) => string[]): Answer {
  const target = nodeHost(i.host.node, i.d.zone);
  const srv: Rr = { type: 'SRV', name: i.instance, ttl, priority: 0, weight: SRV_WEIGHT, port: i.d.port, target };
  const txt: Rr = { type: 'TXT', name: i.instance, ttl, data: [...registryTxt(i.d), ...(i.host.version ? [`version=${i.host.version}`] : []), `node=${i.host.node}`] };
  const addresses = addressRrs(target, i.host.addresses, ttl);
  if (qtype === TYPE.SRV) return { rcode: Rcode.NOERROR, answers: [srv], additionals: addresses };
  if (qtype === TYPE.TXT) return { rcode: Rcode.NOERROR, answers: [txt], additionals: [] };
  if (qtype === TYPE.ANY) return { rcode: Rcode.NOERROR, answers: [srv, txt], additionals: addresses };
  return { rcode: Rcode.NOERROR, answers: [], additionals: [] };
}

export type { ObservedHost };
