import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';

/** Nameservers of a resolv.conf file, in order, as `ADDR:53`. A missing file gives none. */
export function readResolvConf(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const addr = m[1]!.replace(/%.*$/, ''); // drop IPv6 zone index
    if (isIP(addr)) out.push(isIP(addr) === 6 ? `[${addr}]:53` : `${addr}:53`);
  }
  return out;
}
