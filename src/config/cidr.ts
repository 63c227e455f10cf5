import { BlockList, isIP } from 'node:net';
import { CanonportError, ErrorCodes } from '../errors.js';
import type { Parsed } from './address.js';

export interface Cidr {
  text: string;
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

/** Parses `ADDR/PREFIX` or a bare address (a /32 or /128), saying why when it is neither. */
export function tryParseCidr(text: string): Parsed<Cidr> {
  const [address = '', prefixText, extra] = text.trim().split('/');
  const fam = isIP(address);
  if (fam === 0 || extra !== undefined) return { ok: false, reason: `"${text}" is not an address or CIDR such as 10.0.0.0/8` };
  const max = fam === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (prefixText !== undefined && !/^\d+$/.test(prefixText))) {
    return { ok: false, reason: `"${text}": prefix length must be 0–${max}` };
  }
  return { ok: true, value: { text: `${address}/${prefix}`, address, prefix, family: fam === 4 ? 'ipv4' : 'ipv6' } };
}

/** tryParseCidr that throws CP_CONFIG_INVALID, the message starting with `what`. */
export function parseCidr(text: string, what: string): Cidr {
  const r = tryParseCidr(text);
  if (!r.ok) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${what}: ${r.reason}`);
  return r.value;
}

/** A set of networks, matched with node's BlockList (handles IPv4-mapped IPv6). */
export class NetworkSet {
  private readonly list = new BlockList();
  readonly size: number;
  constructor(cidrs: readonly Cidr[]) {
    for (const c of cidrs) this.list.addSubnet(c.address, c.prefix, c.family);
    this.size = cidrs.length;
  }
  /** BlockList itself matches an IPv4-mapped IPv6 address (::ffff:10.1.2.3) against IPv4 subnets. */
  has(address: string): boolean {
    const fam = isIP(address);
    return fam !== 0 && this.list.check(address, fam === 4 ? 'ipv4' : 'ipv6');
  }
}

/** Loopback addresses: always allowed. */
export function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}
