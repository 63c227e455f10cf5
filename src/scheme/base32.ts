/**
 * The `base32` scheme (seed 003): a service's port is the first three
 * characters of its name read as a base32hex number, plus 1024.
 *
 * Pure functions, no I/O: every other part of canonport derives ports from here.
 */

/** Ports the scheme can produce: 1024 + [0, 32^3). */
export const BASE32_OFFSET = 1024;
export const BASE32_MIN_PORT = BASE32_OFFSET;
export const BASE32_MAX_PORT = BASE32_OFFSET + 32 ** 3 - 1; // 33791

const ALPHABET = '0123456789abcdefghijklmnopqrstuv'; // RFC 4648 base32hex, lowercase

/**
 * The service label of a name: its first DNS label, one leading `_` removed,
 * lowercased. `_api._tcp.x` → `api`, `API.cluster-1` → `api`.
 */
export function serviceLabel(name: string): string {
  const dot = name.indexOf('.');
  let label = dot === -1 ? name : name.slice(0, dot);
  if (label.startsWith('_')) label = label.slice(1);
  return label.toLowerCase();
}

/**
 * The value of one character as a base-32 digit: `0-9` → 0–9, `a-v` → 10–31,
 * `w-z` → 31 (so `zebra` reads `veb`), anything else (`-`, `_`) → 0, like padding.
 */
export function digitValue(ch: string): number {
  const c = ch.toLowerCase().charCodeAt(0);
  if (c >= 48 && c <= 57) return c - 48; // 0-9
  if (c >= 97 && c <= 118) return c - 97 + 10; // a-v
  if (c >= 119 && c <= 122) return 31; // w-z
  return 0;
}

/** The three-character prefix the port encodes: `db` → `db0`, `zebra` → `veb`. */
export function prefixOf(name: string): string {
  const label = serviceLabel(name).padEnd(3, '0').slice(0, 3);
  let out = '';
  for (const ch of label) out += ALPHABET[digitValue(ch)];
  return out;
}

/** Port of a service name under the base32 scheme: `api` → 12082. */
export function base32Port(name: string): number {
  const label = serviceLabel(name).padEnd(3, '0');
  return (
    BASE32_OFFSET + digitValue(label[0]!) * 1024 + digitValue(label[1]!) * 32 + digitValue(label[2]!)
  );
}

/**
 * Exact inverse of base32Port: the prefix a port encodes (12082 → `api`).
 * Returns null outside 1024–33791, where no name lands.
 */
export function decodePort(port: number): string | null {
  if (!Number.isInteger(port) || port < BASE32_MIN_PORT || port > BASE32_MAX_PORT) return null;
  return encodeBase32(port - BASE32_OFFSET);
}

/**
 * The seed's own reading of well-known ports, without the 1024 offset
 * (6379 → `67b`, 8080 → `7sg`). The seed's table of well-known ports was made
 * this way, which is why `decode 6379` (offset applied: `57b`) and
 * `decode --raw 6379` differ. Null outside 0–32767.
 */
export function decodePortRaw(port: number): string | null {
  if (!Number.isInteger(port) || port < 0 || port >= 32 ** 3) return null;
  return encodeBase32(port);
}

function encodeBase32(n: number): string {
  return ALPHABET[(n >> 10) & 31]! + ALPHABET[(n >> 5) & 31]! + ALPHABET[n & 31]!;
}
