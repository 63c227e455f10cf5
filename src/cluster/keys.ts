import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The key layout cluster mode writes into etcd. Other tools read it (a
 * dashboard, `etcdctl get --prefix`), so it is versioned and documented
 * here; a change of meaning gets a new version segment, never an edit of v1.
 *
 *   <prefix>/v1/nodes/<node>               → NodeRecord (JSON)
 *   <prefix>/v1/listeners/<node>/<port>    → ListenerRecord (JSON)
 *
 * - `<prefix>` defaults to `/canonport`; one etcd may hold several clusters
 *   under different prefixes.
 * - `<node>` is a DNS label (lowercase letters, digits, `-`; 1–63), so it
 *   can become a target name in DNS answers.
 * - `<port>` is decimal without leading zeros, 1–65535.
 * - Every key of one node is attached to that node's single lease: a host
 *   that dies disappears when its lease expires, all at once.
 * - Values are UTF-8 JSON. Readers ignore unknown fields (so v1 may grow
 *   optional fields) and ignore, count and log keys or values that do not
 *   match (a foreign writer, a corrupted value); they never fail on them.
 * - A node writes only its own keys; an etcd role can enforce that (docs/cluster.md).
 */

export const LAYOUT_VERSION = 'v1';
export const DEFAULT_PREFIX = '/canonport';
/** Values larger than this are not ours: ignored before parsing. */
export const MAX_VALUE_BYTES = 64 * 1024;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

export function isNodeName(name: string): boolean {
  return DNS_LABEL.test(name);
}

/** A prefix as configured: absolute, no trailing slash, no empty segments. */
export function isValidPrefix(prefix: string): boolean {
  return /^(\/[A-Za-z0-9._-]+)+$/.test(prefix);
}

/** Everything cluster mode reads and writes under `prefix` (the watch range). */
export function layoutPrefix(prefix: string): string {
  return `${prefix}/${LAYOUT_VERSION}/`;
}

export function nodeKey(prefix: string, node: string): string {
  return `${prefix}/${LAYOUT_VERSION}/nodes/${node}`;
}

/** The prefix of one node's listener keys (with the trailing slash). */
export function listenersPrefix(prefix: string, node: string): string {
  return `${prefix}/${LAYOUT_VERSION}/listeners/${node}/`;
}

export function listenerKey(prefix: string, node: string, port: number): string {
  return `${listenersPrefix(prefix, node)}${port}`;
}

export type ParsedKey = { kind: 'node'; node: string } | { kind: 'listener'; node: string; port: number } | { kind: 'foreign' };

/** What a key under layoutPrefix(prefix) names; `foreign` for anything this layout does not define. */
export function parseKey(prefix: string, key: string): ParsedKey {
  const base = layoutPrefix(prefix);
  if (!key.startsWith(base)) return { kind: 'foreign' };
  const parts = key.slice(base.length).split('/');
  if (parts[0] === 'nodes' && parts.length === 2 && isNodeName(parts[1]!)) return { kind: 'node', node: parts[1]! };
  if (parts[0] === 'listeners' && parts.length === 3 && isNodeName(parts[1]!) && /^[1-9][0-9]{0,4}$/.test(parts[2]!)) {
    const port = Number(parts[2]);
    if (port <= 65535) return { kind: 'listener', node: parts[1]!, port };
  }
  return { kind: 'foreign' };
}

/**
 * What a service in a listener record may be called: the registry's names
 * (lowercase DNS labels, `_` allowed) and base32 prefixes. Answers put these
 * into DNS names, so nothing else gets into the view.
 */
const SERVICE_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const ipAddress = z.string().refine((a) => isIP(a) !== 0, 'not an IP address');
const isoTime = z.string().refine((t) => !Number.isNaN(Date.parse(t)), 'not an ISO 8601 time');

/** `<prefix>/v1/nodes/<node>`: one host in the cluster. */
export const NodeRecordSchema = z.object({
  /** The node name; equals the key's `<node>`. */
  name: z.string().refine(isNodeName, 'not a DNS label'),
  /** Where other hosts reach this host (advertised or detected), IPv4 and/or IPv6. */
  addresses: z.array(ipAddress).min(1).max(16),
  /** The canonport version the node runs. */
  canonportVersion: z.string().max(64),
  /** A digest of the node's registry (sha256 hex of its canonical form; "" without a registry). */
  registryDigest: z.string().max(128),
  /** When the publishing daemon started (ISO 8601). */
  started: isoTime,
});
export type NodeRecord = z.infer<typeof NodeRecordSchema>;

/** One socket a listener is bound to. */
export const BindSchema = z.object({
  family: z.enum(['tcp', 'tcp6']),
  /** As the inventory prints it: `0.0.0.0`, `::`, or a concrete non-loopback address. */
  address: ipAddress,
});
export type Bind = z.infer<typeof BindSchema>;

/** `<prefix>/v1/listeners/<node>/<port>`: a claimed port other hosts can reach on that node. */
export const ListenerRecordSchema = z.object({
  /** Equals the key's `<port>`. */
  port: z.number().int().min(1).max(65535),
  /** The services the port is canonical for on that node (registry names: lowercase labels). */
  services: z.array(z.string().regex(SERVICE_NAME, 'not a service name')).min(1).max(64),
  /** base32, versioned, block, pinned (a later writer may add schemes). */
  scheme: z.string().regex(/^[a-z0-9-]{0,32}$/, 'not a scheme name'),
  /** From a probe or the port; "" when unknown. Printable ASCII: it ends up in TXT records. */
  version: z.string().regex(/^[\x20-\x7e]{0,128}$/, 'not printable ASCII of at most 128 characters'),
  versionSource: z.enum(['port', 'http', '']),
  /** When the node first saw this port listening (ISO 8601). */
  since: isoTime,
  /** The sockets: wildcard binds mean every node address of that family. */
  bind: z.array(BindSchema).min(1).max(16),
});
export type ListenerRecord = z.infer<typeof ListenerRecordSchema>;

/** Why a key or value under the prefix was ignored (a metric label). */
export type IgnoreReason = 'foreign_key' | 'too_large' | 'bad_json' | 'invalid' | 'key_mismatch';

export type DecodedEntry =
  | { kind: 'node'; node: string; record: NodeRecord }
  | { kind: 'listener'; node: string; port: number; record: ListenerRecord }
  | { kind: 'ignored'; reason: IgnoreReason; detail: string };

/**
 * A key and its value as read from etcd, checked against the layout. Never
 * throws: anything that does not fit is `ignored` with a reason.
 */
export function decodeEntry(prefix: string, key: string, value: Buffer | string): DecodedEntry {
  const parsed = parseKey(prefix, key);
  if (parsed.kind === 'foreign') return { kind: 'ignored', reason: 'foreign_key', detail: 'key outside the v1 layout' };
  const size = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
  if (size > MAX_VALUE_BYTES) return { kind: 'ignored', reason: 'too_large', detail: `${size} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(value.toString());
  } catch (err) {
    return { kind: 'ignored', reason: 'bad_json', detail: (err as Error).message };
  }
  if (parsed.kind === 'node') {
    const r = NodeRecordSchema.safeParse(json);
    if (!r.success) return { kind: 'ignored', reason: 'invalid', detail: summarise(r.error) };
    if (r.data.name !== parsed.node) return { kind: 'ignored', reason: 'key_mismatch', detail: `name ${r.data.name} under key of ${parsed.node}` };
    return { kind: 'node', node: parsed.node, record: r.data };
  }
  const r = ListenerRecordSchema.safeParse(json);
  if (!r.success) return { kind: 'ignored', reason: 'invalid', detail: summarise(r.error) };
  if (r.data.port !== parsed.port) return { kind: 'ignored', reason: 'key_mismatch', detail: `port ${r.data.port} under key of ${parsed.port}` };
  return { kind: 'listener', node: parsed.node, port: parsed.port, record: r.data };
}

function summarise(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
    .join('; ');
}

/**
 * The value bytes a writer puts: JSON with fields in a fixed order, so equal
 * records give equal bytes and "unchanged" is a string comparison.
 */
export function encodeNode(r: NodeRecord): string {
  return JSON.stringify({ name: r.name, addresses: r.addresses, canonportVersion: r.canonportVersion, registryDigest: r.registryDigest, started: r.started });
}

export function encodeListener(r: ListenerRecord): string {
  return JSON.stringify({
    port: r.port,
    services: r.services,
    scheme: r.scheme,
    version: r.version,
    versionSource: r.versionSource,
    since: r.since,
    bind: r.bind.map((b) => ({ family: b.family, address: b.address })),
  });
}
