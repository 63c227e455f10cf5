import { describe, expect, it } from 'vitest';
import { claimOf } from '../src/inventory/claim.js';
import { parseRegistry } from '../src/registry/load.js';
import { Registry } from '../src/registry/registry.js';

const registry = parseRegistry(
  `
services:
  user: { id: 1, version: 2, versions: [1, 2], versionPath: /build }
  splashpage: { block: 7000, versionPath: /version }
  legacy: { port: 6379 }
  api: { versionPath: /version }
  cat: {}
  caterpillar: {}
`,
  'claim.yaml',
);

describe('claimOf', () => {
  it.each([
    // port, services, scheme, portVersion, versionPath, the registry lists it (its names are the registry's: core/naming.ts)
    [8102, ['user'], 'versioned', '2', '/build', true],
    [8101, ['user'], 'versioned', '1', '/build', true],
    [7000, ['splashpage', 'splashpage-www', 'splashpage-nodejs'], 'block', '', '/version', true],
    [7001, ['splashpage-api', 'splashpage-play'], 'block', '', undefined, true], // roles do not inherit the app's path
    [7009, ['splashpage-psql', 'splashpage-postgresql'], 'block', '', undefined, true],
    [6379, ['legacy'], 'pinned', '', undefined, true],
    [12082, ['api'], 'base32', '', '/version', true],
    [13661, ['cat', 'caterpillar'], 'base32', '', undefined, true], // a collision lists both
    [14688, ['db0'], 'base32', '', undefined, false], // not in the registry: the prefix the port encodes
    [33227, ['veb'], 'base32', '', undefined, false], // zebra
    [8103, ['6t7'], 'base32', '', undefined, false], // a versioned-looking port nobody registered
    [22, [], 'unknown', '', undefined, false],
    [33792, [], 'unknown', '', undefined, false],
  ])('%i → %j (%s)', (port, services, scheme, portVersion, versionPath, listed) => {
    expect(claimOf(port, registry)).toEqual({ services, scheme, portVersion, versionPath, ...(listed ? { byRegistry: true } : {}) });
  });

  it('without a registry every port in 1024–33791 reads as its base32 prefix', () => {
    expect(claimOf(12082, Registry.empty()).services).toEqual(['api']);
    expect(claimOf(8102, Registry.empty())).toEqual({ services: ['6t6'], scheme: 'base32', portVersion: '', versionPath: undefined });
    expect(claimOf(1023, Registry.empty()).scheme).toBe('unknown');
  });
});
