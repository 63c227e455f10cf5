import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { formatIPv6 } from './procnet.js';

/**
 * The unicast addresses a network namespace owns, read from /proc without
 * entering it: IPv4 from `net/fib_trie` (the kernel's local routing table,
 * where every address of the namespace is a `/32 host LOCAL` leaf; /proc
 * has no other per-namespace list of IPv4 addresses), IPv6 from
 * `net/if_inet6`. Both are small (tens of lines for a container) and cost
 * tens of microseconds, read only when the namespace is read again.
 * Loopback and link-local addresses are left out: no other host reaches them.
 */

/** The addresses of `/32 host LOCAL` leaves in a fib_trie text, once each, loopback left out. */
export function parseFibTrie(text: string): string[] {
  const out = new Set<string>();
  let leaf: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const m = /^\|-- (\d+\.\d+\.\d+\.\d+)$/.exec(line);
    if (m) {
      leaf = m[1]!;
      continue;
    }
    if (leaf && /^\/32 host LOCAL$/.test(line) && !leaf.startsWith('127.') && !leaf.startsWith('169.254.')) out.add(leaf);
    // Another structure line ends the leaf's list of prefixes.
    if (line.startsWith('+--') || line.endsWith(':')) leaf = undefined;
  }
  return [...out].sort();
}

/** IFA_F_TENTATIVE, IFA_F_DADFAILED: an address the kernel does not use yet (or will not). */
const UNUSABLE_FLAGS = 0x40 | 0x08;

/** Global-scope addresses of an if_inet6 text (`<32 hex> <ifindex> <prefix> <scope> <flags> <name>`), loopback and link-local left out. */
export function parseIfInet6(text: string): string[] {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || !/^[0-9a-f]{32}$/i.test(f[0]!)) continue;
    const scope = parseInt(f[3]!, 16);
    const flags = parseInt(f[4]!, 16);
    if (scope !== 0 || (flags & UNUSABLE_FLAGS) !== 0) continue;
    const bytes: number[] = [];
    for (let i = 0; i < 32; i += 2) bytes.push(parseInt(f[0]!.slice(i, i + 2), 16));
    out.add(formatIPv6(bytes));
  }
  return [...out].sort();
}

/** The namespace's addresses through a process inside it (`<procRoot>/<pid>`), IPv4 first; a file that cannot be read gives none of its family. */
export async function readNamespaceAddresses(pidRoot: string): Promise<string[]> {
  const read = (file: string) => readFile(join(pidRoot, 'net', file), 'latin1').catch(() => '');
  const [fib, inet6] = await Promise.all([read('fib_trie'), read('if_inet6')]);
  return [...parseFibTrie(fib), ...parseIfInet6(inet6)];
}
