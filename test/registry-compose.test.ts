import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { composeMappings, composeYaml } from '../src/registry/compose.js';
import { loadRegistryFile, parseRegistry } from '../src/registry/load.js';

const fixture = (name: string): string => new URL(`./fixtures/registry/${name}`, import.meta.url).pathname;

describe('composeMappings', () => {
  it('maps block roles to their internal ports (splashpage-psql "7009:5432")', () => {
    const r = parseRegistry('services:\n  splashpage:\n    block: 7000\n    roles: [www, api, psql]\n');
    const { mappings, skipped } = composeMappings(r);
    expect(mappings.map((m) => [m.name, m.mapping, m.internalKnown])).toEqual([
      ['splashpage-www', '7000:3000', true],
      ['splashpage-api', '7001:9000', true],
      ['splashpage-psql', '7009:5432', true],
    ]);
    expect(skipped).toEqual([]);
  });

  it('gives one mapping per port when the block takes every role (aliases)', () => {
    const r = parseRegistry('services:\n  user:\n    block: 7010\n');
    expect(composeMappings(r).mappings.map((m) => `${m.name} ${m.mapping}`)).toEqual([
      'user-www 7010:3000',
      'user-api 7011:9000',
      'user-psql 7019:5432',
    ]);
  });

  it('uses `internal` for pinned and base32 services, and the canonical port when none is set', async () => {
    const r = await loadRegistryFile(fixture('example.yaml'));
    const byName = new Map(composeMappings(r).mappings.map((m) => [m.name, m]));
    expect(byName.get('db')).toMatchObject({ mapping: '14688:5432', internalKnown: true, app: 'db' });
    expect(byName.get('api')).toMatchObject({ mapping: '12082:12082', internalKnown: false });
    expect(byName.get('caterpillar')!.mapping).toBe('13700:13700');
    expect(byName.get('splashpage-redis')!.mapping).toBe('7008:6379');
    expect(byName.get('v1.user')!.mapping).toBe('8101:8101');
    expect(byName.get('v2.user')!.mapping).toBe('8102:8102');
    expect(byName.has('user')).toBe(false); // the bare name is an alias of the current version
  });

  it('leaves out names with no port, and says why', () => {
    const r = parseRegistry('services:\n  acme:\n    id: 5\n    versions: [1, 101]\n  edge:\n    block: 65530\n    roles: [www, psql, nope]\n');
    const { mappings, skipped } = composeMappings(r);
    expect(mappings.map((m) => m.name)).toEqual(['v1.acme', 'edge-www']);
    expect(skipped).toEqual([
      { name: 'v101.acme', app: 'acme', reason: '85101 is over 65535' },
      { name: 'edge-psql', app: 'edge', reason: '65539 is over 65535' },
      { name: 'edge-nope', app: 'edge', reason: 'role "nope" is not defined' },
    ]);
  });

  it('keeps only the apps or names asked for', async () => {
    const r = await loadRegistryFile(fixture('example.yaml'));
    expect(composeMappings(r, ['splashpage-psql', 'db']).mappings.map((m) => m.name)).toEqual(['db', 'splashpage-psql']);
    expect(composeMappings(r, ['splashpage']).mappings).toHaveLength(4);
  });
});

describe('composeYaml', () => {
  it('prints a compose fragment that parses back to the mappings', async () => {
    const r = await loadRegistryFile(fixture('example.yaml'));
    const result = composeMappings(r);
    const text = composeYaml(result, r.file);
    const doc = parse(text) as { services: Record<string, { ports: string[] }> };
    expect(Object.keys(doc.services)).toEqual(result.mappings.map((m) => m.name));
    for (const m of result.mappings) expect(doc.services[m.name]!.ports).toEqual([m.mapping]);
    expect(text).toContain('      - "7009:5432"\n');
  });

  it('prints an empty services map for an empty registry', () => {
    expect(parse(composeYaml(composeMappings(parseRegistry('')), null))).toEqual({ services: {} });
  });
});
