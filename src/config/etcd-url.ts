import { isIP } from 'node:net';
import { CanonportError, ErrorCodes } from '../errors.js';

/** One etcd member's client address. */
export interface EtcdEndpoint {
  host: string;
  port: number;
}

/** `etcd://HOST:PORT[,HOST:PORT…]` (IPv6 in brackets) as endpoints, or why not. */
export function tryParseEtcdUrl(url: string): { ok: true; value: EtcdEndpoint[] } | { ok: false; reason: string } {
  const bad = (why: string) => ({ ok: false as const, reason: `${JSON.stringify(url)}: ${why} (want etcd://HOST:PORT[,HOST:PORT…])` });
  const m = /^etcd:\/\/(.+)$/.exec(url.trim());
  if (!m) return bad('not an etcd:// URL');
  const out: EtcdEndpoint[] = [];
  for (const part of m[1]!.split(',')) {
    const hp = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/\s]+)):(\d{1,5})$/.exec(part.trim());
    if (!hp) return bad(`${JSON.stringify(part)} is not HOST:PORT`);
    const host = hp[1] ?? hp[2]!;
    const port = Number(hp[3]);
    if (port < 1 || port > 65535) return bad(`port ${port} out of range`);
    if (hp[1] !== undefined && isIP(host) !== 6) return bad(`${host} is not an IPv6 address`);
    out.push({ host, port });
  }
  return { ok: true, value: out };
}

/** Parses `etcd://HOST:PORT[,HOST:PORT…]`; throws CP_CONFIG_INVALID with the reason. */
export function parseEtcdUrl(url: string): EtcdEndpoint[] {
  const r = tryParseEtcdUrl(url);
  if (!r.ok) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `--cluster ${r.reason}`);
  return r.value;
}
