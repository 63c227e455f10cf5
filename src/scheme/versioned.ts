/**
 * The `versioned` scheme (seed 000): port = decimal `8` ‖ id ‖ version padded
 * to two digits. UserService id 1: v1 → 8101, v2 → 8102; id 2 v11 → 8211;
 * id 4 v300 → 84300; ACMEService id 100 v101 → 8100101 (not a valid port).
 */

export const MAX_PORT = 65535;

/** The raw number the scheme yields; may exceed 65535 (see versionedPort). */
export function versionedNumber(id: number, version: number): number {
  if (!Number.isInteger(id) || id < 0) throw new RangeError(`service id must be a non-negative integer, got ${id}`);
  if (!Number.isInteger(version) || version < 0) {
    throw new RangeError(`version must be a non-negative integer, got ${version}`);
  }
  return Number(`8${id}${String(version).padStart(2, '0')}`);
}

/** The port, or null when the scheme's number is not a TCP/UDP port (> 65535). */
export function versionedPort(id: number, version: number): number | null {
  const n = versionedNumber(id, version);
  return n <= MAX_PORT ? n : null;
}
