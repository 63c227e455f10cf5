import { CanonportError, ErrorCodes } from '../errors.js';

/** RFC 1035 §2.3.4: 255 octets on the wire, which is 253 characters in text form. */
export const MAX_NAME_TEXT = 253;
export const MAX_LABEL = 63;

/**
 * Validates and normalises a DNS name given as text (gRPC, CLI). Returns the
 * lowercased name without a trailing dot; throws CP_BAD_NAME saying what is wrong.
 */
export function normaliseName(input: string): string {
  if (typeof input !== 'string' || input.length === 0) {
    throw new CanonportError(ErrorCodes.BAD_NAME, 'name is empty');
  }
  const name = input.endsWith('.') ? input.slice(0, -1) : input;
  if (name.length === 0) throw new CanonportError(ErrorCodes.BAD_NAME, 'name is only the root');
  if (name.length > MAX_NAME_TEXT) {
    throw new CanonportError(ErrorCodes.BAD_NAME, `name is ${name.length} characters, over the limit of ${MAX_NAME_TEXT}`, {
      length: name.length,
    });
  }
  const labels = name.split('.');
  for (const [i, label] of labels.entries()) {
    if (label.length === 0) throw new CanonportError(ErrorCodes.BAD_NAME, `label ${i + 1} of "${input}" is empty`);
    if (label.length > MAX_LABEL) {
      throw new CanonportError(ErrorCodes.BAD_NAME, `label "${label.slice(0, 20)}…" is ${label.length} characters, over ${MAX_LABEL}`);
    }
    if (!/^[A-Za-z0-9_-]+$/.test(label)) {
      throw new CanonportError(
        ErrorCodes.BAD_NAME,
        `label "${label}" has characters outside letters, digits, "-" and "_"`,
      );
    }
  }
  return name.toLowerCase();
}

/**
 * The first label of `name` (after one leading `_`, which marks a service in
 * an SRV name) that starts with "-": no host or service name can (RFC 952,
 * RFC 1123 §2.1), and the daemon reads such a name as no service (DNS
 * NXDOMAIN, gRPC NOT_FOUND). Undefined when there is none.
 */
export function hyphenLabel(name: string): string | undefined {
  return name.split('.').map((label) => label.replace(/^_/, '')).find((label) => label.startsWith('-'));
}

/** True when `name` equals `zone` or lies under it (both lowercase, no trailing dot). */
export function isInZone(name: string, zone: string): boolean {
  return name === zone || (name.length > zone.length && name.endsWith(zone) && name.charCodeAt(name.length - zone.length - 1) === 46);
}
