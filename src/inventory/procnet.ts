import { readFileSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { endianness } from 'node:os';
import { join } from 'node:path';

/**
 * Listening sockets as Linux reports them in /proc/net/tcp, tcp6, udp and
 * udp6. The parsers are pure (text in, sockets out) so tests feed them
 * fixture text; the read functions are the only part that touches files.
 */

/** The /proc/net file a socket was read from: the protocol and the address family (`6`: IPv6). */
export type SocketFamily = 'tcp' | 'tcp6' | 'udp' | 'udp6';

/** The transport protocol of a family. */
export function protocolOf(family: SocketFamily): 'tcp' | 'udp' {
  return family === 'udp' || family === 'udp6' ? 'udp' : 'tcp';
}

/** One listening socket. */
export interface ListeningSocket {
  port: number;
  /** Printed as Node prints addresses: `0.0.0.0`, `127.0.0.1`, `::`, `::1`, `::ffff:127.0.0.1`. */
  address: string;
  family: SocketFamily;
  /**
   * The socket inodes behind it (one per socket of a SO_REUSEPORT group),
   * sorted: a restarted process binds new sockets, so a changed list means
   * "another process now", even between two scans with the same address.
   */
  inodes: string[];
}

/** TCP_LISTEN in the kernel's tcp_states.h, as /proc prints it. */
const STATE_LISTEN = '0A';

/**
 * The states a line of the listening part may show. The kernel prints the
 * listening hash first, then the established hash (tcp_seq_next:
 * TCP_SEQ_STATE_LISTENING, then TCP_SEQ_STATE_ESTABLISHED; since 4.4 the
 * listening part holds listeners only, in `lhash2`), so the listeners come
 * before any connection. Besides LISTEN: SYN_RECV (03), which kernels
 * before 4.4 printed under each listener for its pending handshakes
 * (TCP_SEQ_STATE_OPENREQ), and CLOSE (07), a listener caught while it closes
 * (its state changes before it leaves the hash). The first line in any
 * other state is a connection: every listener has been printed.
 */
const LISTENING_PART = new Set([STATE_LISTEN, '03', '07']);

/** One data line of /proc/net/tcp{,6}; null for the header and lines that do not parse. */
function parseLine(line: string, family: SocketFamily, littleEndian: boolean): { state: string; remote: string; socket: Omit<ListeningSocket, 'inodes'> & { inode: string } } | null {
  // "  0: 00000000:07E8 00000000:0000 0A ... uid timeout inode" — the header line has no "NN:" slot.
  const fields = line.trim().split(/\s+/);
  if (fields.length < 4 || !/^\d+:$/.test(fields[0]!)) return null;
  const local = /^([0-9A-Fa-f]+):([0-9A-Fa-f]{4})$/.exec(fields[1]!);
  const v4 = family === 'tcp' || family === 'udp';
  if (!local || local[1]!.length !== (v4 ? 8 : 32)) return null;
  const port = parseInt(local[2]!, 16);
  const bytes = hexWordsToBytes(local[1]!, littleEndian);
  const address = v4 ? formatIPv4(bytes) : formatIPv6(bytes);
  return { state: fields[3]!.toUpperCase(), remote: fields[2]!, socket: { port, address, family, inode: fields[9] ?? '' } };
}

/** Folds LISTEN sockets by (port, address), keeping every inode. */
class Listeners {
  private readonly byKey = new Map<string, ListeningSocket>();
  add(s: Omit<ListeningSocket, 'inodes'> & { inode: string }): void {
    const key = `${s.port} ${s.address}`;
    const known = this.byKey.get(key);
    if (!known) this.byKey.set(key, { port: s.port, address: s.address, family: s.family, inodes: s.inode ? [s.inode] : [] });
    else if (s.inode && !known.inodes.includes(s.inode)) known.inodes.push(s.inode);
  }
  list(): ListeningSocket[] {
    for (const s of this.byKey.values()) s.inodes.sort();
    return sortSockets([...this.byKey.values()]);
  }
}

/**
 * Parses the whole text of /proc/net/tcp (family `tcp`) or /proc/net/tcp6
 * (`tcp6`) and returns the sockets in state LISTEN, sorted by port then
 * address. The same (port, address) printed twice (SO_REUSEPORT groups,
 * one line per socket) is listed once, with both inodes; one port on
 * several addresses keeps one entry per address. (readProcNetTcp reads the
 * file itself, stopping after the listeners.)
 *
 * Addresses are printed by the kernel as 32-bit words in host byte order
 * ("%08X" of each __be32), so on little-endian hosts each word's bytes are
 * reversed; the port is already in host order. Lines that do not parse are
 * skipped: the file's format is the kernel's, not ours to reject.
 */
export function parseProcNetTcp(text: string, family: SocketFamily, littleEndian = endianness() === 'LE'): ListeningSocket[] {
  const out = new Listeners();
  for (const line of text.split('\n')) {
    const parsed = parseLine(line, family, littleEndian);
    if (parsed?.state === STATE_LISTEN) out.add(parsed.socket);
  }
  return out.list();
}

/** What one /proc/net/tcp{,6} read gave. */
export interface ProcNetRead {
  sockets: ListeningSocket[];
  /** Bytes the kernel generated for this read (the cost: it formats a line per socket it prints). */
  bytesRead: number;
  /** True when the reader stopped at the first connection, before the end of the file. */
  stoppedEarly: boolean;
}

/** Bytes asked of the kernel per read(): about a hundred lines; a host's listeners usually fit in one or two. */
const CHUNK_BYTES = 16 * 1024;

/**
 * Reads the LISTEN sockets of `<file>` and stops at the first connection
 * (see LISTENING_PART): /proc/net/tcp is generated as it is read, so the
 * established sockets after the listeners, thousands on a busy host, are
 * never formatted. Measured on an 11,500-socket table: 0.35 ms instead of
 * 50–90 ms for the whole file.
 */
export async function readProcNetTcp(file: string, family: SocketFamily, littleEndian = endianness() === 'LE'): Promise<ProcNetRead> {
  const handle = await open(file, 'r');
  const out = new Listeners();
  let bytesRead = 0;
  let partial = '';
  try {
    const buf = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      const { bytesRead: n } = await handle.read(buf, 0, CHUNK_BYTES, null);
      bytesRead += n;
      const text = partial + buf.toString('latin1', 0, n);
      const lines = text.split('\n');
      // The last piece is a line's beginning, unless the file ended.
      partial = n === 0 ? '' : lines.pop()!;
      for (const line of lines) {
        const parsed = parseLine(line, family, littleEndian);
        if (!parsed) continue;
        if (!LISTENING_PART.has(parsed.state)) return { sockets: out.list(), bytesRead, stoppedEarly: true };
        if (parsed.state === STATE_LISTEN) out.add(parsed.socket);
      }
      if (n === 0) return { sockets: out.list(), bytesRead, stoppedEarly: false };
    }
  } finally {
    await handle.close();
  }
}

/** Orders sockets by port, then IPv4 before IPv6, then address. */
export function sortSockets<T extends ListeningSocket>(sockets: T[]): T[] {
  return sockets.sort((a, b) => a.port - b.port || byFamilyThenAddress(a, b));
}

/**
 * IPv4 before IPv6, then by address, comparing code units: the order only
 * needs to be stable. Not localeCompare: a collation loads ICU's tables,
 * about 4 MB of resident memory in a daemon that needs no locale (issue 24).
 */
export function byFamilyThenAddress(a: Pick<ListeningSocket, 'family' | 'address'>, b: Pick<ListeningSocket, 'family' | 'address'>): number {
  if (a.family !== b.family) return a.family < b.family ? -1 : 1;
  return a.address < b.address ? -1 : a.address > b.address ? 1 : 0;
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

/**
 * UDP has no LISTEN state: a socket that receives from anyone is one bound
 * to a local port and connected to no peer, which /proc/net/udp prints as
 * state 07 (TCP_CLOSE, the kernel reusing TCP's names) with a remote
 * address and port of zero. A connected UDP socket (a client that called
 * connect(), state 01) talks to one peer only: not a listener.
 */
const UDP_UNCONNECTED = '07';
const ZERO_REMOTE = /^0+:0000$/;

/**
 * Parses the whole text of /proc/net/udp (family `udp`) or /proc/net/udp6
 * (`udp6`) and returns the unconnected bound sockets (see UDP_UNCONNECTED),
 * folded and sorted as parseProcNetTcp does. Unlike TCP's, the file has no
 * listening part to stop after: it is read whole (UDP sockets are few next
 * to a busy host's TCP connections).
 *
 * Such a socket may also be a client's that sends with sendto() from a
 * port the kernel picked in the ephemeral range: the inventory tells those
 * apart (inventory.ts), not this parser.
 */
export function parseProcNetUdp(text: string, family: 'udp' | 'udp6', littleEndian = endianness() === 'LE'): ListeningSocket[] {
  const out = new Listeners();
  for (const line of text.split('\n')) {
    const parsed = parseLine(line, family, littleEndian);
    if (parsed?.state === UDP_UNCONNECTED && ZERO_REMOTE.test(parsed.remote) && parsed.socket.port !== 0) out.add(parsed.socket);
  }
  return out.list();
}

/** What reading /proc gave: the sockets, and why a file could not be read. */
export interface ProcNetResult {
  sockets: ListeningSocket[];
  /** One entry per unreadable file; a missing tcp6 (IPv6 disabled) is not an error. */
  errors: { file: string; message: string }[];
}

/**
 * Reads the listeners of `<procRoot>/net/tcp` and `<procRoot>/net/tcp6`
 * (readProcNetTcp: the connections after them are not read), and the
 * unconnected bound sockets of `net/udp` and `net/udp6` (parseProcNetUdp).
 * Never rejects: an unreadable file gives no sockets and an entry in
 * `errors`. A missing tcp6 or udp6 (IPv6 disabled) is not an error, nor a
 * missing udp in a fixture directory that holds only tcp files.
 */
export async function readListeningSockets(procRoot = '/proc'): Promise<ProcNetResult> {
  const result: ProcNetResult = { sockets: [], errors: [] };
  for (const family of ['tcp', 'tcp6', 'udp', 'udp6'] as const) {
    const file = join(procRoot, 'net', family);
    try {
      if (family === 'tcp' || family === 'tcp6') result.sockets.push(...(await readProcNetTcp(file, family)).sockets);
      else result.sockets.push(...parseProcNetUdp(await readFile(file, 'latin1'), family));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (family !== 'tcp' && code === 'ENOENT') continue;
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

/**
 * A fingerprint of this network namespace's TCP and UDP sockets that
 * changes when a listener opens or closes, read from counters the kernel keeps (no
 * table walk): the sockets in use, IPv4 and IPv6 (`inuse` in
 * `<procRoot>/net/sockstat` and `sockstat6`: every listener and every
 * connection), and the connections ever opened (`ActiveOpens` and
 * `PassiveOpens` in `net/snmp`, which only grow), and the UDP sockets in
 * use (`UDP`, `UDP6`: a UDP listener is one of them). A listener that comes
 * while a connection goes leaves the first unchanged, but a connection
 * that came since moves the second. Null when the counters cannot be read.
 *
 * Microseconds, where generating /proc/net/tcp walks the kernel's socket
 * hash tables, which are the whole host's whatever namespace asks: 3–5 ms
 * per file on the bench machine, even with a handful of sockets.
 */
export function socketFingerprint(procRoot = '/proc'): string | null {
  const read = (file: string): string | null => {
    try {
      return readFileSync(join(procRoot, 'net', file), 'latin1');
    } catch {
      return null;
    }
  };
  const sockstat = read('sockstat');
  const snmp = read('snmp');
  const v4 = sockstat && /^TCP: inuse (\d+)/m.exec(sockstat)?.[1];
  // "Tcp: <names>" then "Tcp: <values>".
  const tcp = snmp?.split('\n').filter((l) => l.startsWith('Tcp: '));
  if (!v4 || tcp?.length !== 2) return null;
  const names = tcp[0]!.split(' ');
  const values = tcp[1]!.split(' ');
  const field = (n: string) => values[names.indexOf(n)];
  const active = field('ActiveOpens');
  const passive = field('PassiveOpens');
  if (active === undefined || passive === undefined) return null;
  // No sockstat6: IPv6 is off, nothing to count there.
  const sockstat6 = read('sockstat6') ?? '';
  const v6 = /^TCP6: inuse (\d+)/m.exec(sockstat6)?.[1] ?? '-';
  // UDP sockets in use (issue 22: UDP listeners are read too): a bound socket opening or closing moves them.
  const udp4 = /^UDP: inuse (\d+)/m.exec(sockstat)?.[1] ?? '-';
  const udp6 = /^UDP6: inuse (\d+)/m.exec(sockstat6)?.[1] ?? '-';
  return `${v4}/${v6}/${active}/${passive}/${udp4}/${udp6}`;
}

/**
 * How long a list of listeners is reused while the socket counts stay the
 * same (see ListenerScanner): the inventory's reprobe interval, which
 * already bounds how stale a port's version may be behind a socket that
 * stayed (inventory.ts DEFAULT_REPROBE_MS).
 */
export const FULL_SCAN_EVERY_MS = 60_000;

/**
 * readListeningSockets, skipped while nothing can have changed: when the
 * namespace's TCP counters (socketFingerprint) are what they were at the last
 * read, the last list is returned as it is, for at most `fullEveryMs`.
 * A listener that opens or closes moves the counters, so it is seen at the
 * next scan, as before. What they can miss, a listener closed and another
 * opened between two scans with no connection opened meanwhile (a service
 * restarted on its port), is caught by the full read at least every
 * `fullEveryMs`. An idle host's scan is then three counter reads instead
 * of two table walks (issue 24: most of cluster mode's idle CPU). Without
 * readable counters (fixture directories), every scan reads the files.
 */
export class ListenerScanner {
  private last: { result: ProcNetResult; inUse: string; atMs: number } | undefined;
  /** Full reads done (tests, diagnostics). */
  fullReads = 0;

  constructor(
    private readonly procRoot = '/proc',
    private readonly opts: { fullEveryMs?: number | undefined; now?: (() => number) | undefined } = {},
  ) {}

  async read(): Promise<ProcNetResult> {
    const now = (this.opts.now ?? Date.now)();
    const inUse = socketFingerprint(this.procRoot);
    const last = this.last;
    if (last && inUse !== null && inUse === last.inUse && now - last.atMs < (this.opts.fullEveryMs ?? FULL_SCAN_EVERY_MS)) return last.result;
    // Counted before the read: a change during it makes the next scan read again.
    const result = await readListeningSockets(this.procRoot);
    this.fullReads++;
    this.last = inUse === null || result.errors.length > 0 ? undefined : { result, inUse, atMs: now };
    return result;
  }
}
