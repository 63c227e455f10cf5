import { isIPv4, isIPv6 } from 'node:net';
import { NetworkSet, tryParseCidr, type Cidr } from '../config/cidr.js';
import type { Bind, InstanceRecord, ListenerRecord, NodeRecord } from './keys.js';

/**
 * Which addresses a record in etcd may hand out (issue 21, finding 10):
 * only an address some host can have and another host can reach. A node
 * record or an instance that names anything else would send every client
 * of the service to its own loopback, to nowhere, to a multicast group or
 * to the cloud's metadata service.
 *
 * Refused, whoever writes them:
 * - unspecified: `0.0.0.0/8` ("this network"), `::`;
 * - multicast: `224.0.0.0/4`, `ff00::/8`;
 * - broadcast and reserved: `255.255.255.255`, `240.0.0.0/4`;
 * - link-local: `169.254.0.0/16` (the metadata service `169.254.169.254`
 *   among them), `fe80::/10` (meaningless without a zone, which records do
 *   not carry);
 * - metadata: `fd00:ec2::254` (the AWS metadata service over IPv6; it is
 *   otherwise a plain unique-local address).
 *
 * Loopback (`127.0.0.0/8`, `::1`) is refused in every node's records but
 * this daemon's own: a host that advertises loopback (a lab, a single host)
 * is reached so by clients on that same host, which is where this daemon's
 * clients of its own node are; another node's loopback is this host.
 *
 * IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4
 * address they carry (node's BlockList matches them so). Wildcard binds
 * (`0.0.0.0`, `::` in a record's `bind`) are not addresses but "every
 * address of the node": they stay.
 */

/** Why an address is refused (the `reason` label of canonport_cluster_refused_addresses_total). */
export type AddressProblem = 'unspecified' | 'multicast' | 'broadcast' | 'reserved' | 'link_local' | 'metadata' | 'loopback';

const nets = (...cidrs: string[]): NetworkSet =>
  new NetworkSet(
    cidrs.map((c) => {
      const r = tryParseCidr(c);
      if (!r.ok) throw new Error(r.reason);
      return r.value as Cidr;
    }),
  );

/** In the order they are tested: the first match names the problem. */
const PROBLEMS: readonly (readonly [AddressProblem, NetworkSet])[] = [
  ['unspecified', nets('0.0.0.0/8', '::/128')],
  ['loopback', nets('127.0.0.0/8', '::1/128')],
  ['metadata', nets('169.254.169.254/32', 'fd00:ec2::254/128')],
  ['link_local', nets('169.254.0.0/16', 'fe80::/10')],
  ['multicast', nets('224.0.0.0/4', 'ff00::/8')],
  ['broadcast', nets('255.255.255.255/32')],
  ['reserved', nets('240.0.0.0/4')],
];

/** Why no other host could use `address` as a place to connect, or null when it is a unicast address a host can have. */
export function addressProblem(address: string): AddressProblem | null {
  for (const [problem, set] of PROBLEMS) if (set.has(address)) return problem;
  return null;
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

/** An address refused from a record, and why. */
export interface RefusedAddress {
  address: string;
  problem: AddressProblem;
}

/** A record with the addresses no host can have taken out, what was taken out, and whether anything is left to answer with. */
export interface Screened<T> {
  record: T;
  refused: RefusedAddress[];
  /** False when the record names no usable address any more: it is refused whole. */
  usable: boolean;
}

export interface ScreenOptions {
  /** True for this daemon's own node: its loopback addresses stay. */
  self: boolean;
}

function problemFor(address: string, opts: ScreenOptions): AddressProblem | null {
  const p = addressProblem(address);
  return p === 'loopback' && opts.self ? null : p;
}

/** A node record's addresses, screened. A record left with none is not usable. */
export function screenNode(record: NodeRecord, opts: ScreenOptions): Screened<NodeRecord> {
  const refused: RefusedAddress[] = [];
  const addresses = record.addresses.filter((address) => {
    const problem = problemFor(address, opts);
    if (problem) refused.push({ address, problem });
    return !problem;
  });
  if (refused.length === 0) return { record, refused, usable: true };
  return { record: { ...record, addresses }, refused, usable: addresses.length > 0 };
}

/**
 * A listener's or instance's concrete binds and its own `address`,
 * screened. An instance whose own address is refused is not usable (its
 * node's addresses are not where it listens); one left without binds
 * neither.
 */
export function screenListener<T extends ListenerRecord | InstanceRecord>(record: T, opts: ScreenOptions): Screened<T> {
  const refused: RefusedAddress[] = [];
  const bind = record.bind.filter((b: Bind) => {
    if (WILDCARDS.has(b.address)) return true;
    const problem = problemFor(b.address, opts);
    if (problem) refused.push({ address: b.address, problem });
    return !problem;
  });
  const own = 'address' in record ? record.address : undefined;
  const ownProblem = own !== undefined ? problemFor(own, opts) : null;
  if (own !== undefined && ownProblem) refused.push({ address: own, problem: ownProblem });
  if (refused.length === 0) return { record, refused, usable: true };
  return { record: { ...record, bind }, refused, usable: bind.length > 0 && ownProblem === null };
}

/**
 * Where a listener is reached: a wildcard IPv4 bind means the node's IPv4
 * addresses; a wildcard IPv6 bind every node address (Linux's default
 * dual-stack sockets accept IPv4 too); a concrete bind that address.
 */
export function endpointAddresses(l: Pick<ListenerRecord, 'bind'>, n: NodeRecord): string[] {
  const out = new Set<string>();
  for (const b of l.bind) {
    if (b.address === '0.0.0.0') for (const a of n.addresses) if (isIPv4(a)) out.add(a);
    if (b.address === '::') for (const a of n.addresses) out.add(a);
    if (b.address !== '0.0.0.0' && b.address !== '::') {
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(b.address);
      out.add(mapped ? mapped[1]! : b.address);
    }
  }
  return [...out].sort((a, b) => Number(isIPv6(a)) - Number(isIPv6(b)) || (a < b ? -1 : a > b ? 1 : 0));
}
