/**
 * The `block` scheme (seed 002, flowcommerce/registry): an app owns ten
 * ports from its block base, and `<app>-<role>` is base + the role's offset.
 * splashpage 7000 → splashpage-www 7000, splashpage-api 7001, splashpage-psql 7009.
 */

export interface RoleDef {
  /** Offset inside the app's block, 0–9. */
  offset: number;
  /** Port the process listens on inside its container (docker-compose `external:internal`). */
  internal?: number | undefined;
}

/** The seed's role table; a registry may add roles or override these. */
export const DEFAULT_ROLES: Readonly<Record<string, RoleDef>> = Object.freeze({
  www: { offset: 0, internal: 3000 },
  nodejs: { offset: 0, internal: 3000 },
  api: { offset: 1, internal: 9000 },
  play: { offset: 1, internal: 9000 },
  psql: { offset: 9, internal: 5432 },
  postgresql: { offset: 9, internal: 5432 },
});

export const BLOCK_SIZE = 10;

export function blockPort(base: number, role: RoleDef): number {
  return base + role.offset;
}
