import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * The key layout cluster mode writes into etcd. Other tools read it (a
 * dashboard, `etcdctl get --prefix`), so it is versioned and documented
 * here; a change of meaning gets a new version segment, never an edit of an
 * old one.
 *
 * Layout v2 (what this version writes and reads first): one record per
 * *instance* of a listener, with its readiness, every key of a node under
 * one per-node prefix (so one etcd role permission covers a node):
 *
 *   <prefix>/v2/nodes/<node>/node                              → NodeRecord
 *   <prefix>/v2/nodes/<node>/instances/<port>/<proto>/<ns>     → InstanceRecord
 *   <prefix>/v2/nodes/<node>/drains/<id>                       → DrainRecord
 *   <prefix>/v2/nodes/<node>/acks/<drain-node>/<id>            → AckRecord
 *
 * - `<proto>` is `tcp` or `udp`; `<ns>` names the network namespace the
 *   listener lives in: `host` for the host's own, else a label (issue 26:
 *   `ns-<inode>` or a container id's first 63 characters). So one node can
 *   publish, for one port, a TCP and a UDP listener and several instances
 *   in different namespaces.
 * - An instance is in answers only while its readiness is `ready`; a
 *   not-ready or draining one stays published so every reader (fleet, the
 *   web page) shows it, not silently missing.
 * - A drain (`canonport drain`) writes a DrainRecord beside the draining
 *   instances in one transaction; every daemon whose view has applied it
 *   writes an AckRecord under its *own* node prefix and lease, and deletes
 *   it when the drain key goes. Steady state writes nothing.
 *
 * Layout v1 (read for nodes that have no v2 node record; written as a
 * mirror of the *ready* host instances while `--cluster-write-legacy` is on,
 * so daemons not yet upgraded keep seeing this node during a rolling
 * upgrade of canonport itself):
 *
 *   <prefix>/v1/nodes/<node>               → NodeRecord
 *   <prefix>/v1/listeners/<node>/<port>    → ListenerRecord
 *
 * For both:
 * - `<prefix>` defaults to `/canonport`; one etcd may hold several clusters
 *   under different prefixes.
 * - `<node>` is a DNS label (lowercase letters, digits, `-`; 1–63), so it
 *   can become a target name in DNS answers.
 * - `<port>` is decimal without leading zeros, 1–65535.
 * - Every key of one node is attached to that node's single lease: a host
 *   that dies disappears when its lease expires, all at once. Readers
 *   ignore an instance or listener whose lease is not its node record's
 *   lease (another daemon's leftovers or an impostor's keys).
 * - Values are UTF-8 JSON. Readers ignore unknown fields (so a layout may
 *   grow optional fields) and ignore, count and log keys or values that do
 *   not match (a foreign writer, a corrupted value); they never fail on them.
 * - A node writes only its own keys; an etcd role can enforce that (docs/cluster.md).
 */

/** The layout this version writes first (v1 is mirrored and read for older nodes). */
export const LAYOUT_VERSION = 'v2';
export const LEGACY_LAYOUT_VERSION = 'v1';
export const DEFAULT_PREFIX = '/canonport';
/** A node record's `askedNames` at most (discovery/asked-names.ts keeps fewer). */
export const MAX_ASKED_NAMES_PER_NODE = 512;
/** Values larger than this are not ours: ignored before parsing. */
export const MAX_VALUE_BYTES = 64 * 1024;
/** Drains one node keeps in progress at once (its publisher refuses more; readers hold no more of one node). */
export const MAX_NODE_DRAINS = 16;
/** The namespace segment of an instance in the host's own network namespace. */
export const HOST_NAMESPACE = 'host';

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** A drain id: lowercase hex or base32-ish, 1–32 characters. */
const DRAIN_ID = /^[a-z0-9]{1,32}$/;

export function isNodeName(name: string): boolean {
  return DNS_LABEL.test(name);
}

/** A prefix as configured: absolute, no trailing slash, no empty segments. */
export function isValidPrefix(prefix: string): boolean {
  return /^(\/[A-Za-z0-9._-]+)+$/.test(prefix);
}

/** Everything cluster mode reads (the watch range: every layout version under `prefix`). */
export function watchPrefix(prefix: string): string {
  return `${prefix}/v`;
}

/** Everything one layout version holds under `prefix`. */
export function layoutPrefix(prefix: string, version: string = LAYOUT_VERSION): string {
  return `${prefix}/${version}/`;
}

/** The range end covering every key that starts with `prefix` (etcd's "prefix + 1"). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]);
}

// --- v2 ---

/** Every v2 key of one node (with the trailing slash): one role permission, one range. */
export function nodePrefix(prefix: string, node: string): string {
  return `${prefix}/v2/nodes/${node}/`;
}

export function nodeKey(prefix: string, node: string): string {
  return `${nodePrefix(prefix, node)}node`;
}

export type Protocol = 'tcp' | 'udp';

export function instanceKey(prefix: string, node: string, port: number, protocol: Protocol = 'tcp', namespace: string = HOST_NAMESPACE): string {
  return `${nodePrefix(prefix, node)}instances/${port}/${protocol}/${namespace}`;
}

export function drainKey(prefix: string, node: string, id: string): string {
  return `${nodePrefix(prefix, node)}drains/${id}`;
}

/** The ack `acker` writes once its view holds `drainNode`'s drain `id`. */
export function ackKey(prefix: string, acker: string, drainNode: string, id: string): string {
  return `${nodePrefix(prefix, acker)}acks/${drainNode}/${id}`;
}

// --- v1 (mirror and compatibility) ---

export function legacyNodeKey(prefix: string, node: string): string {
  return `${prefix}/v1/nodes/${node}`;
}

/** The prefix of one node's v1 listener keys (with the trailing slash). */
export function listenersPrefix(prefix: string, node: string): string {
  return `${prefix}/v1/listeners/${node}/`;
}

export function listenerKey(prefix: string, node: string, port: number): string {
  return `${listenersPrefix(prefix, node)}${port}`;
}

export type ParsedKey =
  | { kind: 'node'; layout: 'v1' | 'v2'; node: string }
  | { kind: 'listener'; node: string; port: number }
  | { kind: 'instance'; node: string; port: number; protocol: Protocol; namespace: string }
  | { kind: 'drain'; node: string; id: string }
  | { kind: 'ack'; node: string; drainNode: string; id: string }
  /** Under `<prefix>/v<N>/` for a layout this version does not know (a later canonport): ignored quietly. */
  | { kind: 'future' }
  | { kind: 'foreign' };

const PORT = /^[1-9][0-9]{0,4}$/;
const isPort = (s: string | undefined): boolean => s !== undefined && PORT.test(s) && Number(s) <= 65535;

/** What a key under `prefix` names; `foreign` for anything no layout defines. */
export function parseKey(prefix: string, key: string): ParsedKey {
  if (!key.startsWith(`${prefix}/`)) return { kind: 'foreign' };
  const parts = key.slice(prefix.length + 1).split('/');
  const version = parts[0]!;
  if (version === 'v1') {
    if (parts[1] === 'nodes' && parts.length === 3 && isNodeName(parts[2]!)) return { kind: 'node', layout: 'v1', node: parts[2]! };
    if (parts[1] === 'listeners' && parts.length === 4 && isNodeName(parts[2]!) && isPort(parts[3])) return { kind: 'listener', node: parts[2]!, port: Number(parts[3]) };
    return { kind: 'foreign' };
  }
  if (version === 'v2') {
    if (parts[1] !== 'nodes' || !isNodeName(parts[2] ?? '')) return { kind: 'foreign' };
    const node = parts[2]!;
    const rest = parts.slice(3);
    if (rest.length === 1 && rest[0] === 'node') return { kind: 'node', layout: 'v2', node };
    if (rest[0] === 'instances' && rest.length === 4 && isPort(rest[1]) && (rest[2] === 'tcp' || rest[2] === 'udp') && isNodeName(rest[3]!)) {
      return { kind: 'instance', node, port: Number(rest[1]), protocol: rest[2], namespace: rest[3]! };
    }
    if (rest[0] === 'drains' && rest.length === 2 && DRAIN_ID.test(rest[1]!)) return { kind: 'drain', node, id: rest[1]! };
    if (rest[0] === 'acks' && rest.length === 3 && isNodeName(rest[1]!) && DRAIN_ID.test(rest[2]!)) return { kind: 'ack', node, drainNode: rest[1]!, id: rest[2]! };
    return { kind: 'foreign' };
  }
  if (/^v[0-9]+$/.test(version)) return { kind: 'future' };
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

/** `<prefix>/v2/nodes/<node>/node` (and v1's `<prefix>/v1/nodes/<node>`): one host in the cluster. */
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
  /**
   * Issue 22, optional: when the node last found a change in what it
   * publishes (the time of that scan, ISO 8601). Written with the change,
   * never on a steady host; its live lease says it still finds the same.
   */
  observedAt: isoTime.optional(),
  /**
   * Issue 22, optional: the names clients asked this node for, each with
   * its canonical port, while some host listened there (discovery/asked-names.ts:
   * bounded, expiring when unused). Every reader names those ports so.
   */
  askedNames: z
    .array(z.object({ port: z.number().int().min(1).max(65535), name: z.string().regex(SERVICE_NAME, 'not a service name') }))
    .max(MAX_ASKED_NAMES_PER_NODE)
    .optional(),
});
export type NodeRecord = z.infer<typeof NodeRecordSchema>;

/** One socket a listener is bound to. */
export const BindSchema = z.object({
  /** The /proc/net file it was read from: `tcp`, `tcp6`; `udp`, `udp6` for a UDP instance (issue 22). */
  family: z.enum(['tcp', 'tcp6', 'udp', 'udp6']),
  /** As the inventory prints it: `0.0.0.0`, `::`, or a concrete non-loopback address. */
  address: ipAddress,
});
export type Bind = z.infer<typeof BindSchema>;

/** `<prefix>/v1/listeners/<node>/<port>`: a claimed port other hosts can reach on that node (v1: no readiness; read as ready). */
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

/** ready: in answers; not-ready: its probe says so; draining: taken out on purpose (`canonport drain`). */
export const READINESS_STATES = ['ready', 'not-ready', 'draining'] as const;
export type ReadinessState = (typeof READINESS_STATES)[number];
/**
 * How the state was decided: a gRPC health check, an HTTP `/readyz` or
 * `/healthz`, listening alone (tcp; udp: a bound UDP socket, which no
 * probe can ask without speaking its protocol), the registry (`ready: tcp` and the
 * like name the probe, so this is for a registry that pins a state), or an
 * operator (`canonport drain`).
 */
export const READINESS_SOURCES = ['grpc', 'http', 'tcp', 'udp', 'registry', 'admin'] as const;
export type ReadinessSource = (typeof READINESS_SOURCES)[number];

export const ReadinessSchema = z.object({
  state: z.enum(READINESS_STATES),
  /** When the instance entered this state (ISO 8601). */
  since: isoTime,
  by: z.enum(READINESS_SOURCES),
  /** Why, for people (`HTTP 503 from /readyz`, `NOT_SERVING`); printable ASCII. */
  detail: z.string().regex(/^[\x20-\x7e]{0,200}$/).optional(),
});
export type Readiness = z.infer<typeof ReadinessSchema>;

/**
 * `<prefix>/v2/nodes/<node>/instances/<port>/<proto>/<ns>`: one instance
 * of a claimed listener. The v1 listener's fields, plus where it lives
 * (protocol, namespace) and whether it serves (readiness).
 *
 * Optional fields reserved for the issues that build on this record; a
 * reader that does not know them ignores them:
 * - `names` (issue 22): the names this node's own sources give the
 *   listener, lowercase labels: the registry's, or the listening process's
 *   (its unit or executable, where that name's canonical port is this
 *   port); `nameSource` says which (`none`: neither). Names clients ask for are not here:
 *   the node that was asked publishes them in its node record
 *   (`askedNames`), and readers join the two (core/naming.ts).
 * - `address` (issue 26): the instance's own address when it is not the
 *   node's (a container's address in its own namespace); answers use it
 *   instead of the node's addresses.
 * - `container` (issue 26): the container or pod that owns the namespace.
 */
export const InstanceRecordSchema = ListenerRecordSchema.extend({
  protocol: z.enum(['tcp', 'udp']),
  /** Equals the key's `<ns>`: `host`, or the namespace's label. */
  namespace: z.string().refine(isNodeName, 'not a DNS label'),
  readiness: ReadinessSchema,
  names: z.array(z.string().regex(SERVICE_NAME, 'not a service name')).max(32).optional(),
  /**
   * Issue 22: where `names` come from, `none` for a listener this node's
   * sources do not name. Absent: a writer before issue 22, whose claim
   * (`services`) readers take as its names, as they always did.
   */
  nameSource: z.enum(['registry', 'process', 'none']).optional(),
  address: ipAddress.optional(),
  container: z
    .object({
      id: z.string().regex(/^[a-zA-Z0-9_.:-]{1,128}$/),
      pod: z.string().regex(/^[a-z0-9.-]{1,253}$/).optional(),
      podNamespace: z.string().regex(/^[a-z0-9-]{1,63}$/).optional(),
    })
    .optional(),
});
export type InstanceRecord = z.infer<typeof InstanceRecordSchema>;

/** `<prefix>/v2/nodes/<node>/drains/<id>`: a drain in progress on that node. */
export const DrainRecordSchema = z.object({
  id: z.string().regex(DRAIN_ID),
  /** The services drained (the instances claimed for them go out of answers). */
  services: z.array(z.string().regex(SERVICE_NAME, 'not a service name')).min(1).max(64),
  requested: isoTime,
});
export type DrainRecord = z.infer<typeof DrainRecordSchema>;

/** `<prefix>/v2/nodes/<acker>/acks/<drain-node>/<id>`: `acker`'s view holds that drain. */
export const AckRecordSchema = z.object({
  /** The etcd revision the acker's view had reached when it acknowledged. */
  revision: z.number().int().min(0),
});
export type AckRecord = z.infer<typeof AckRecordSchema>;

/** Why a key or value under the prefix was ignored (a metric label). */
export type IgnoreReason = 'foreign_key' | 'too_large' | 'bad_json' | 'invalid' | 'key_mismatch';

export type DecodedEntry =
  | { kind: 'node'; layout: 'v1' | 'v2'; node: string; record: NodeRecord }
  | { kind: 'listener'; node: string; port: number; record: ListenerRecord }
  | { kind: 'instance'; node: string; port: number; protocol: Protocol; namespace: string; record: InstanceRecord }
  | { kind: 'drain'; node: string; id: string; record: DrainRecord }
  | { kind: 'ack'; node: string; drainNode: string; id: string; record: AckRecord }
  | { kind: 'future' }
  | { kind: 'ignored'; reason: IgnoreReason; detail: string };

/**
 * A key and its value as read from etcd, checked against the layout. Never
 * throws: anything that does not fit is `ignored` with a reason.
 */
export function decodeEntry(prefix: string, key: string, value: Buffer | string): DecodedEntry {
  const parsed = parseKey(prefix, key);
  if (parsed.kind === 'foreign') return { kind: 'ignored', reason: 'foreign_key', detail: 'key outside the v1 and v2 layouts' };
  if (parsed.kind === 'future') return { kind: 'future' };
  const size = typeof value === 'string' ? Buffer.byteLength(value) : value.length;
  if (size > MAX_VALUE_BYTES) return { kind: 'ignored', reason: 'too_large', detail: `${size} bytes` };
  let json: unknown;
  try {
    json = JSON.parse(value.toString());
  } catch (err) {
    return { kind: 'ignored', reason: 'bad_json', detail: (err as Error).message };
  }
  switch (parsed.kind) {
    case 'node':
      return checked(NodeRecordSchema, json, (d) => (d.name !== parsed.node ? `name ${d.name} under key of ${parsed.node}` : null), (record) => ({ kind: 'node', layout: parsed.layout, node: parsed.node, record }));
    case 'listener':
      return checked(ListenerRecordSchema, json, (d) => (d.port !== parsed.port ? `port ${d.port} under key of ${parsed.port}` : null), (record) => ({ kind: 'listener', node: parsed.node, port: parsed.port, record }));
    case 'instance':
      return checked(
        InstanceRecordSchema,
        json,
        (d) => (d.port !== parsed.port || d.protocol !== parsed.protocol || d.namespace !== parsed.namespace ? `${d.port}/${d.protocol}/${d.namespace} under key of ${parsed.port}/${parsed.protocol}/${parsed.namespace}` : null),
        (record) => ({ kind: 'instance', node: parsed.node, port: parsed.port, protocol: parsed.protocol, namespace: parsed.namespace, record }),
      );
    case 'drain':
      return checked(DrainRecordSchema, json, (d) => (d.id !== parsed.id ? `drain ${d.id} under key of ${parsed.id}` : null), (record) => ({ kind: 'drain', node: parsed.node, id: parsed.id, record }));
    case 'ack':
      return checked(AckRecordSchema, json, () => null, (record) => ({ kind: 'ack', node: parsed.node, drainNode: parsed.drainNode, id: parsed.id, record }));
  }
}

/** A value checked against its schema and its key: the entry, or why it is ignored (`invalid`, `key_mismatch`). */
function checked<T>(schema: z.ZodType<T>, json: unknown, mismatch: (d: T) => string | null, entry: (d: T) => DecodedEntry): DecodedEntry {
  const r = schema.safeParse(json);
  if (!r.success) return { kind: 'ignored', reason: 'invalid', detail: summarise(r.error) };
  const why = mismatch(r.data);
  return why === null ? entry(r.data) : { kind: 'ignored', reason: 'key_mismatch', detail: why };
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
  return JSON.stringify({
    name: r.name,
    addresses: r.addresses,
    canonportVersion: r.canonportVersion,
    registryDigest: r.registryDigest,
    started: r.started,
    ...(r.observedAt !== undefined ? { observedAt: r.observedAt } : {}),
    ...(r.askedNames !== undefined && r.askedNames.length > 0 ? { askedNames: r.askedNames.map((a) => ({ port: a.port, name: a.name })) } : {}),
  });
}

export function encodeListener(r: ListenerRecord): string {
  return JSON.stringify(listenerFields(r));
}

export function encodeInstance(r: InstanceRecord): string {
  return JSON.stringify({
    ...listenerFields(r),
    protocol: r.protocol,
    namespace: r.namespace,
    readiness: { state: r.readiness.state, since: r.readiness.since, by: r.readiness.by, ...(r.readiness.detail !== undefined ? { detail: r.readiness.detail } : {}) },
    ...(r.names ? { names: r.names } : {}),
    ...(r.nameSource ? { nameSource: r.nameSource } : {}),
    ...(r.address ? { address: r.address } : {}),
    ...(r.container ? { container: r.container } : {}),
  });
}

/** The fields a v1 listener and a v2 instance share, in their fixed order. */
function listenerFields(r: ListenerRecord): ListenerRecord {
  return {
    port: r.port,
    services: r.services,
    scheme: r.scheme,
    version: r.version,
    versionSource: r.versionSource,
    since: r.since,
    bind: r.bind.map((b) => ({ family: b.family, address: b.address })),
  };
}

export function encodeDrain(r: DrainRecord): string {
  return JSON.stringify({ id: r.id, services: r.services, requested: r.requested });
}

export function encodeAck(r: AckRecord): string {
  return JSON.stringify({ revision: r.revision });
}
