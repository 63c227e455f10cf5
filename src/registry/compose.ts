import type { Registry } from './registry.js';

/**
 * `canonport compose`: docker-compose `external:internal` port mappings
 * (seed 002: "map the internal port numbers to a globally unique external
 * port number"). The external port is the canonical one; the internal one
 * is what the process binds inside its container: the role's (psql 5432),
 * the service's `internal`, or, when neither is set, the canonical port
 * itself (the process was started with PORT=$(canonport port NAME)).
 */
export interface ComposeMapping {
  /** The concrete name: a compose service (`splashpage-psql`, `v2.user`, `api`). */
  name: string;
  /** The registry entry it comes from (`splashpage`, `user`, `api`). */
  app: string;
  external: number;
  internal: number;
  /** False when no internal port was configured and the canonical port is reused. */
  internalKnown: boolean;
  /** `external:internal`, as compose wants it. */
  mapping: string;
}

export interface ComposeResult {
  mappings: ComposeMapping[];
  /** Names left out because the scheme gives them no port (versioned > 65535, block past 65535, unknown role). */
  skipped: { name: string; app: string; reason: string }[];
}

/**
 * Mappings for every registry app, sorted by app then port. `only` keeps
 * apps or concrete names matching one of its entries. Aliases on one port
 * (`splashpage`, `splashpage-www`, `splashpage-nodejs`) give one mapping,
 * named after the first role on it.
 */
export function composeMappings(registry: Registry, only: readonly string[] = []): ComposeResult {
  const mappings: ComposeMapping[] = [];
  const skipped: ComposeResult['skipped'] = [];
  const push = (name: string, app: string, external: number, internal: number | undefined): void => {
    const i = internal ?? external;
    mappings.push({ name, app, external, internal: i, internalKnown: internal !== undefined, mapping: `${external}:${i}` });
  };
  for (const name of [...registry.services.keys()].sort()) {
    const entry = registry.services.get(name)!;
    switch (entry.scheme) {
      case 'block': {
        const seen = new Set<number>();
        for (const role of entry.spec.roles ?? Object.keys(registry.roles)) {
          const a = registry.expanded.get(`${name}-${role}`);
          if (!a || a.port === null) {
            skipped.push({ name: `${name}-${role}`, app: name, reason: a ? `${a.number} is over 65535` : `role "${role}" is not defined` });
            continue;
          }
          if (seen.has(a.port)) continue;
          seen.add(a.port);
          push(a.service, name, a.port, a.internal);
        }
        const base = entry.spec.block!;
        if (!seen.has(base)) push(name, name, base, entry.spec.internal);
        break;
      }
      case 'versioned': {
        for (const a of registry.expanded.values()) {
          if (registry.ownerOf(a.service) !== name || a.service === name) continue;
          if (a.port === null) skipped.push({ name: a.service, app: name, reason: `${a.number} is over 65535` });
          else push(a.service, name, a.port, a.internal);
        }
        break;
      }
      default: {
        const a = registry.expanded.get(name)!;
        push(name, name, a.port!, a.internal);
      }
    }
  }
  const keep = (m: { name: string; app: string }): boolean => only.length === 0 || only.includes(m.app) || only.includes(m.name);
  return { mappings: sortMappings(mappings.filter(keep)), skipped: skipped.filter(keep) };
}

function sortMappings(list: ComposeMapping[]): ComposeMapping[] {
  return list.sort((a, b) => (a.app !== b.app ? (a.app < b.app ? -1 : 1) : a.external - b.external));
}

/**
 * A compose file fragment: one service per concrete name with its `ports:`
 * list. Paste the lines into docker-compose.yml, or keep the file as an
 * override (`docker compose -f docker-compose.yml -f ports.yml up`).
 */
export function composeYaml(result: ComposeResult, source: string | null): string {
  const lines = [
    `# canonport compose${source ? ` (${source})` : ''}: "external:internal", external = the canonical port`,
    'services:',
  ];
  if (result.mappings.length === 0) lines[1] = 'services: {}';
  for (const m of result.mappings) {
    lines.push(`  ${m.name}:`, '    ports:', `      - "${m.mapping}"${m.internalKnown ? '' : '  # no internal port set: binds its canonical port'}`);
  }
  return `${lines.join('\n')}\n`;
}
