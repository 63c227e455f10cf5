import { readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';

/**
 * Listening TCP sockets as Linux reports them in /proc/net/tcp and
 * /proc/net/tcp6. The parser is pure (text in, sockets out) so tests feed
 * it fixture text; readListeningSockets is the only part that touches files.
 */

export type SocketFamily = 'tcp' | 'tcp6';

/** One listening socket. */
export interface ListeningSocket {
  port: number;
  /** Printed as Node prints addresses: `0.0.0.0`, `127.0.0.1`, `::`, `::1`, `::ffff:127.0.0.1`. */
  address: string;
  family: SocketFamily;
}

/** TCP_LISTEN in the kernel's tcp_states.h, as /proc prints it. */
const STATE_LISTEN = '0A';

/**
 * Parses the text of /proc/net/tcp (family `tcp`) or /proc/net/tcp6
 * (`tcp6`) and returns the sockets in state LISTEN, sorted by port then
 * address. The same (port, address) printed twice (SO_REUSEPORT groups,
 * one line per socket) is listed once; one port on several addresses keeps
 * one entry per address.
 *
 * Addresses are printed by the kernel as 32-bit words in host byte order
 * ("%08X" of each __be32), so on little-endian hosts each word's bytes are
 * reversed; the port is already in host order. Lines that do not parse are
 * skipped: the file's format is the kernel's, not ours to reject.
 */
export function parseProcNetTcp(text: string, family: SocketFamily, littleEndian = endianness() === 'LE'): ListeningSocket[] {
  const hexLength = family === 'tcp' ? 8 : 32;
  const seen = new Map<string, ListeningSocket>();
  for (const line of text.split('\n')) {
    // "  0: 00000000:07E8 00000000:0000 0A ..." — the header line has no "NN:" slot.
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4 || !/^\d+:$/.test(fields[0]!)) continue;
    if (fields[3]!.toUpperCase() !== STATE_LISTEN) continue;
    const local = /^([0-9A-Fa-f]+):([0-9A-Fa-f]{4})$/.exec(fields[1]!);
    if (!local || local[1]!.length !== hexLength) continue;
    const port = parseInt(local[2]!, 16);
    const bytes = hexWordsToBytes(local[1]!, littleEndian);
    const address = family === 'tcp' ? formatIPv4(bytes) : formatIPv6(bytes);
    const key = `${port} ${address}`;
    if (!seen.has(key)) seen.set(key, { port, address, family });
  }
  return sortSockets([...seen.values()]);
}

/** Orders sockets by port, then IPv4 before IPv6, then address. */
export function sortSockets<T extends ListeningSocket>(sockets: T[]): T[] {
  return sockets.sort((a, b) => a.port - b.port || a.family.localeCompare(b.family) || a.address.localeCompare(b.address));
}

/** The bytes of an address printed as host-order 32-bit hex words. */
function hexWordsToBytes(hex: string, littleEndian: boolean): number[] {
  const out: number[] = [];
  for (let w = 0; w < hex.length; w += 8) {
    const word = [0, 2, 4, 6].map((i) => parseInt(hex.slice(w + i, w + i + 2), 16));
    out.push(...(littleEndian ? word.reverse() : word));
  }
  return out;
}

function formatIPv4(b: number[]): string {
  return b.join('.');
}

/** RFC 5952 text: lowercase, longest run of two or more zero groups as `::`, IPv4-mapped as `::ffff:a.b.c.d`. */
export function formatIPv6(b: number[]): string {
  const isMapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  if (isMapped) return `::ffff:${formatIPv4(b.slice(12))}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(':');
  const head = hex.slice(0, bestStart).join(':');
  const tail = hex.slice(bestStart + bestLen).join(':');
  return `${head}::${tail}`;
}

/** What reading /proc gave: the sockets, and why a file could not be read. */
export interface ProcNetResult {
  sockets: ListeningSocket[];
  /** One entry per unreadable file; a missing tcp6 (IPv6 disabled) is not an error. */
  errors: { file: string; message: string }[];
}

/**
 * Reads `<procRoot>/net/tcp` and `<procRoot>/net/tcp6`. Never rejects:
 * an unreadable file gives no sockets and an entry in `errors`.
 */
export async function readListeningSockets(procRoot = '/proc'): Promise<ProcNetResult> {
  const result: ProcNetResult = { sockets: [], errors: [] };
  for (const family of ['tcp', 'tcp6'] as const) {
    const file = join(procRoot, 'net', family);
    try {
      result.sockets.push(...parseProcNetTcp(await readFile(file, 'utf8'), family));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (family === 'tcp6' && code === 'ENOENT') continue;
      result.errors.push({ file, message: (err as Error).message });
    }
  }
  sortSockets(result.sockets);
  return result;
}

/** True for the any-address of either family. */
export function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}
