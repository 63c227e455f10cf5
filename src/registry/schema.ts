import leven from 'leven';
import { z } from 'zod';
import { daemonShape, topLevelShape } from '../config/settings.js';

/**
 * The registry file's shape (YAML). Everything is optional: an empty file,
 * or no file at all, means "every service on the base32 scheme".
 */

const port = z.number().int().min(1).max(65535);
const label = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]*$/, 'must be a lowercase DNS label: letters, digits, "-" or "_", starting with a letter or digit')
  .max(63);
const zoneName = z
  .string()
  .transform((s) => s.toLowerCase().replace(/\.$/, ''))
  .pipe(z.string().regex(/^([a-z0-9_-]{1,63})(\.[a-z0-9_-]{1,63})*$/, 'must be a DNS name such as cluster-1.example.com'));

export const RoleSchema = z
  .object({
    offset: z.number().int().min(0).max(9),
    internal: port.optional(),
  })
  .strict();

export const ServiceSchema = z
  .object({
    scheme: z.enum(['base32', 'versioned', 'block', 'pinned']).optional(),
    /** Pinned port (scheme `pinned`). */
    port: port.optional(),
    /** Versioned scheme: the service's numeric id and its current version. */
    id: z.number().int().min(0).optional(),
    version: z.number().int().min(0).optional(),
    /** Versions known to run; `version` defaults to the highest. */
    versions: z.array(z.number().int().min(0)).optional(),
    /** Block scheme: base of the app's ten-port block, and its roles. */
    block: port.optional(),
    roles: z.array(label).optional(),
    /** Port inside the container, for `canonport compose`. */
    internal: port.optional(),
    dependsOn: z.array(label).optional(),
    /** HTTP path answering the running version, for the inventory. */
    versionPath: z.string().startsWith('/').optional(),
    /**
     * How cluster mode decides the service is ready (src/inventory/readiness.ts):
     * `grpc` (grpc.health.v1, service ""), `http:/path` (2xx ready), `tcp`
     * (ready while listening). Unset: learned from what the port speaks.
     */
    ready: z
      .string()
      .regex(/^(grpc|tcp|http:\/[\x21-\x7e]{0,200})$/, 'want grpc, tcp or http:/path (a path of printable characters)')
      .optional(),
    /** Answer with this host's ready instance first (default: the `preferLocal` setting). */
    preferLocal: z.boolean().optional(),
    description: z.string().optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    // The scheme is explicit or inferred from the one field that sets it, so
    // fields of two schemes, or a scheme without its field, are mistakes that
    // would otherwise silently pick one reading.
    const schemeOf = { port: 'pinned', block: 'block', id: 'versioned' } as const;
    const set = (Object.keys(schemeOf) as (keyof typeof schemeOf)[]).filter((f) => s[f] !== undefined);
    if (set.length > 1) {
      ctx.addIssue({ code: 'custom', path: [set[1]!], message: `"${set[0]}" and "${set[1]}" belong to different schemes; a service has one` });
      return;
    }
    const need: Record<string, keyof typeof s> = { pinned: 'port', block: 'block', versioned: 'id' };
    const field = s.scheme ? need[s.scheme] : undefined;
    if (field && s[field] === undefined) {
      ctx.addIssue({ code: 'custom', path: ['scheme'], message: `scheme "${s.scheme}" needs "${field}"` });
      return;
    }
    const stray = set[0];
    if (s.scheme && stray && schemeOf[stray] !== s.scheme) {
      ctx.addIssue({ code: 'custom', path: [stray], message: `"${stray}" belongs to scheme "${schemeOf[stray]}", not "${s.scheme}"` });
      return;
    }
    const scheme = s.scheme ?? (stray ? schemeOf[stray] : 'base32');
    if (scheme === 'versioned' && s.version === undefined && (s.versions ?? []).length === 0) {
      ctx.addIssue({ code: 'custom', path: ['id'], message: 'a versioned service needs "version" or "versions"' });
    }
    if (scheme !== 'versioned' && (s.version !== undefined || s.versions !== undefined)) {
      const f = s.version !== undefined ? 'version' : 'versions';
      ctx.addIssue({ code: 'custom', path: [f], message: `"${f}" needs "id" (the versioned scheme)` });
    }
    if (scheme !== 'block' && s.roles !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['roles'], message: '"roles" needs "block" (the block scheme)' });
    }
  });

/**
 * The `daemon:` section: one optional key per daemon setting, each checked
 * by its kind from the settings table (src/config/settings.ts), so the file
 * gets the same rules and messages as flags and env.
 */
export const DaemonSchema = z.object(daemonShape()).strict();

export const InventorySchema = z
  .object({
    intervalMs: z.number().int().min(100).optional(),
    versionPath: z.string().startsWith('/').optional(),
    probeTimeoutMs: z.number().int().min(10).max(60000).optional(),
  })
  .strict();

/** Addresses of in-zone hosts: name → [IPv4 | IPv6]. */
export const HostsSchema = z.record(zoneName, z.array(z.union([z.ipv4(), z.ipv6()])));
export const ServicesSchema = z.record(label, ServiceSchema.nullable());

const registryShape = {
  /** The settings the file holds at its top level (`zones`, `ttl`), from the settings table. */
  ...topLevelShape(),
  roles: z.record(label, RoleSchema).optional(),
  hosts: HostsSchema.optional(),
  services: ServicesSchema.optional(),
  daemon: DaemonSchema.optional(),
  inventory: InventorySchema.optional(),
};

export const RegistrySchema = z.object(registryShape).strict();

/**
 * The registry without looking inside `hosts` and `services`, the two maps
 * a file can make large: load.ts checks those entry by entry, a slice at a
 * time, with HostsSchema and ServicesSchema, so a big file never holds the
 * event loop (the result is what RegistrySchema gives).
 */
export const ShallowRegistrySchema = z
  .object({ ...registryShape, hosts: z.record(z.string(), z.unknown()).optional(), services: z.record(z.string(), z.unknown()).optional() })
  .strict();

export type RegistryFile = z.infer<typeof RegistrySchema>;
export type ServiceFile = z.infer<typeof ServiceSchema>;
export type { DaemonFile } from '../config/settings.js';

/** The fields the file may hold at `path` (a dotted path's parts), or none where any key goes (a name). */
export function knownFields(path: readonly (string | number)[]): string[] {
  const [section, name, ...rest] = path;
  if (path.length === 0) return Object.keys(RegistrySchema.shape);
  if (rest.length > 0) return [];
  if (section === 'services' && name !== undefined) return Object.keys(ServiceSchema.shape);
  if (section === 'roles' && name !== undefined) return Object.keys(RoleSchema.shape);
  if (section === 'daemon' && name === undefined) return Object.keys(DaemonSchema.shape);
  if (section === 'inventory' && name === undefined) return Object.keys(InventorySchema.shape);
  return [];
}

/**
 * The known field nearest to a misspelt one (`versionpath` → `versionPath`,
 * `upstream` → `upstreams`, `cache-size` → `cacheSize`), by edit distance
 * (leven), under the rule commander uses for a misspelt flag: at most 3
 * edits and more than 40 % of the word kept. Undefined when none is that close.
 */
export function nearestField(unknown: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    const d = leven(unknown.toLowerCase(), k.toLowerCase());
    const kept = (Math.max(unknown.length, k.length) - d) / Math.max(unknown.length, k.length);
    if (d <= 3 && kept > 0.4 && d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return best;
}
