import { describe, expect, it } from 'vitest';
import { CanonportError, ErrorCodes } from '../src/errors.js';
import { loadRegistryFile, parseRegistry } from '../src/registry/load.js';
import { claimOf } from '../src/inventory/claim.js';
import { base32Port } from '../src/scheme/index.js';
import { MAX_COLLISIONS_LISTED, Registry } from '../src/registry/registry.js';
import { readFileSync } from 'node:fs';
import { writeRegistry } from './helpers/daemon.js';

const fixture = (name: string): string => new URL(`./fixtures/registry/${name}`, import.meta.url).pathname;

async function loadError(name: string): Promise<CanonportError> {
  try {
    await loadRegistryFile(fixture(name));
  } catch (err) {
    if (err instanceof CanonportError) return err;
    throw err;
  }
  throw new Error(`${name} loaded without an error`);
}

describe('registry file errors', () => {
  it.each([
    // file, line, column, field, what the message says
    ['bad-yaml.yaml', 4, 1, undefined, /Flow sequence/],
    ['unknown-field.yaml', 4, 5, 'services.api.colour', /unknown field "colour"/],
    ['wrong-type.yaml', 4, 5, 'services.api.port', /expected number/],
    ['scheme-without-field.yaml', 5, 5, 'services.web.scheme', /scheme "pinned" needs "port"/],
    ['two-schemes.yaml', 4, 5, 'services.web.block', /belong to different schemes/],
    ['versioned-without-version.yaml', 3, 5, 'services.user.id', /needs "version" or "versions"/],
    ['duplicate-key.yaml', 4, 3, undefined, /unique/],
    ['bad-label.yaml', 2, 3, 'services.API', /name "API" must be a lowercase DNS label/],
  ] as const)('%s → line %i column %i, field %s', async (file, line, column, field, message) => {
    const err = await loadError(file);
    expect(err.code).toBe(ErrorCodes.REGISTRY_INVALID);
    expect(err.details).toMatchObject({ file: fixture(file), line, column });
    expect(err.details?.field).toBe(field);
    expect(err.message).toMatch(message);
    expect(err.message.startsWith(`${fixture(file)}:${line}:${column}`)).toBe(true);
    if (field) expect(err.message).toContain(`(${field})`);
  });

  it('says when the file cannot be read', async () => {
    const err = await loadError('no-such-file.yaml');
    expect(err.code).toBe(ErrorCodes.REGISTRY_UNREADABLE);
    expect(err.message).toMatch(/no such file/);
  });

  it('refuses fields of another scheme', () => {
    expect(() => parseRegistry('services:\n  web:\n    scheme: base32\n    port: 8080\n')).toThrow(/"port" belongs to scheme "pinned", not "base32"/);
    expect(() => parseRegistry('services:\n  web:\n    roles: [www]\n')).toThrow(/"roles" needs "block"/);
    expect(() => parseRegistry('services:\n  web:\n    version: 2\n')).toThrow(/"version" needs "id"/);
    // Cluster mode's readiness rule: grpc, tcp or http:/path, nothing else.
    expect(() => parseRegistry('services:\n  web:\n    ready: https://x\n')).toThrow(/want grpc, tcp or http:\/path/);
    expect(() => parseRegistry('services:\n  web:\n    ready: http:status\n')).toThrow(/want grpc, tcp or http:\/path/);
    const ready = parseRegistry('services:\n  api:\n    ready: http:/status\n    preferLocal: false\n  rpc:\n    ready: grpc\n');
    expect(claimOf(base32Port('api'), ready).ready).toBe('http:/status');
    expect(claimOf(base32Port('rpc'), ready).ready).toBe('grpc');
    expect(ready.services.get('api')?.spec.preferLocal).toBe(false);
  });

  it('reads an empty file as the empty registry', () => {
    const r = parseRegistry('');
    expect(r.services.size).toBe(0);
    expect(r.lookup('api').port).toBe(12082);
  });
});

describe('Registry', () => {
  it('loads the documented example', async () => {
    const r = await loadRegistryFile(fixture('example.yaml'));
    expect(r.zones).toEqual(['cluster-1.example.com']);
    expect(r.ttl).toBe(30);
    expect(r.hosts.get('api.cluster-1.example.com')).toEqual(['10.0.0.11', 'fd00::11']);
    expect(r.lookup('caterpillar')).toMatchObject({ port: 13700, scheme: 'pinned' });
    expect(r.lookup('cat')).toMatchObject({ port: 13661, scheme: 'base32', collidesWith: [] });
    expect(r.lookup('db')).toMatchObject({ port: 14688, internal: 5432 });
    expect(r.lookup('user')).toMatchObject({ port: 8102, version: 2, scheme: 'versioned' });
    expect(r.lookup('user', 1)).toMatchObject({ port: 8101, version: 1 });
    expect(r.lookup('v1.user')).toMatchObject({ port: 8101 });
    expect(r.lookup('splashpage-www').port).toBe(7000);
    expect(r.lookup('splashpage-api').port).toBe(7001);
    expect(r.lookup('splashpage-redis')).toMatchObject({ port: 7008, internal: 6379 });
    expect(r.lookup('splashpage-psql')).toMatchObject({ port: 7009, internal: 5432 });
    expect(r.daemon.dns).toBe('127.0.0.1:5300');
    expect(r.inventory.versionPath).toBe('/version');
  });

  it('expands a block with every role of the table when it lists none (user 7010 → 7011, 7019)', () => {
    const r = parseRegistry('services:\n  user:\n    block: 7010\n');
    expect(r.lookup('user-www').port).toBe(7010);
    expect(r.lookup('user-nodejs').port).toBe(7010);
    expect(r.lookup('user-api').port).toBe(7011);
    expect(r.lookup('user-play').port).toBe(7011);
    expect(r.lookup('user-psql').port).toBe(7019);
    expect(r.lookup('user-postgresql').port).toBe(7019);
  });

  it('treats names of one entry on one port as aliases, not collisions', () => {
    const r = parseRegistry('services:\n  splashpage:\n    block: 7000\n  user:\n    id: 1\n    versions: [1, 2]\n');
    expect(r.lookup('splashpage').collidesWith).toEqual([]);
    expect(r.lookup('splashpage-www').collidesWith).toEqual([]);
    expect(r.lookup('user').collidesWith).toEqual([]);
    expect(r.lookup('user', 2).collidesWith).toEqual([]);
    expect(r.ownerOf('splashpage-psql')).toBe('splashpage');
    expect(r.ownerOf('v2.user')).toBe('user');
    expect(r.ownerOf('api')).toBe('api');
  });

  it('names real collisions, both ways, and for names outside the registry', () => {
    const r = parseRegistry('services:\n  cat:\n  legacy:\n    port: 8102\n  user:\n    id: 1\n    version: 2\n');
    expect(r.lookup('cat').collidesWith).toEqual([]);
    expect(r.lookup('caterpillar').collidesWith).toEqual(['cat']);
    expect(r.lookup('legacy').collidesWith.sort()).toEqual(['user', 'v2.user']);
    expect(r.lookup('user').collidesWith).toEqual(['legacy']);
    expect(r.lookup('user', 2).collidesWith).toEqual(['legacy']);
    expect(r.ownersOf(8102).sort()).toEqual(['legacy', 'user', 'v2.user']);
  });

  it('gives no port where the scheme leaves the port range', () => {
    const r = parseRegistry('services:\n  acme:\n    id: 100\n    version: 101\n  edge:\n    block: 65530\n    roles: [www, psql]\n');
    expect(r.lookup('acme')).toMatchObject({ port: null, number: 8100101, prefix: '' });
    expect(r.lookup('edge-www').port).toBe(65530);
    expect(r.lookup('edge-psql')).toMatchObject({ port: null, number: 65539 });
    expect(r.ownersOf(65539)).toEqual([]);
  });

  it('reads names as the CLI gives them', () => {
    const r = parseRegistry('services:\n  user:\n    id: 1\n    versions: [1, 2]\n  vole:\n');
    expect(r.lookupName('api.cluster-1.example.com').port).toBe(12082);
    expect(r.lookupName('_api._tcp.cluster-1.example.com').port).toBe(12082);
    expect(r.lookupName('v1.user.cluster-1.example.com')).toMatchObject({ port: 8101, version: 1 });
    expect(r.lookupName('user').port).toBe(8102);
    expect(r.lookupName('vole').port).toBe(33557);
    // A version the registry does not list names nothing; `check` may ask about one before it is listed.
    expect(() => r.lookupName('v7.user')).toThrow(/user has no version 7 \(versions: 1, 2\)/);
    expect(r.lookupName('v7.user', { anyVersion: true })).toMatchObject({ port: 8107, version: 7 });
    expect(() => r.lookupName('v01.user', { anyVersion: true })).toThrow(/no version 01/);
    // `vN` before a service without versions is not a service named vN.
    expect(() => r.lookupName('v1.api')).toThrow(/api is not a versioned service/);
    expect(r.lookupName('v1').port).toBe(base32('v1'));
  });

  it('records names two entries define', () => {
    const r = parseRegistry('services:\n  splashpage:\n    block: 7000\n    roles: [api]\n  splashpage-api:\n    port: 7500\n');
    expect(r.duplicates).toEqual([{ name: 'splashpage-api', owners: ['splashpage', 'splashpage-api'] }]);
    expect(r.lookup('splashpage-api').port).toBe(7001);
  });

  it('is empty without a file', () => {
    const r = Registry.empty();
    expect(r.file).toBeNull();
    expect(r.lookup('zebra')).toMatchObject({ port: 33227, prefix: 'veb', scheme: 'base32', collidesWith: [] });
  });
});

function base32(name: string): number {
  return Registry.empty().lookup(name).port!;
}

describe('docs/scheme.md', () => {
  it("shows the example registry exactly as the fixture the tests load", async () => {
    const { readFile } = await import('node:fs/promises');
    const page = await readFile(new URL('../docs/scheme.md', import.meta.url), 'utf8');
    const block = /```yaml\n([\s\S]*?)```/.exec(page)?.[1];
    expect(block).toBe(await readFile(fixture('example.yaml'), 'utf8'));
  });
});

// Issue 21, finding 12: a registry's cost grows with its size, not with its size squared, and there is a size limit.
describe('a large registry', () => {
  it('20,000 names on one port (all "svc…"): each lists at most 16 of the others, and it loads', { timeout: 60_000 }, () => {
    // Every name collides with every other: listing them all gave each name 19,999 others (400 million in all).
    const text = `services:\n${Array.from({ length: 20_000 }, (_, i) => `  svc${i}:\n`).join('')}`;
    const r = parseRegistry(text);
    expect(r.expanded.size).toBe(20_000);
    expect(r.lookup('svc7').collidesWith).toHaveLength(MAX_COLLISIONS_LISTED);
    expect(r.lookup('svc7').collidesWith).not.toContain('svc7');
    expect(r.lookup('svcnew').collidesWith).toHaveLength(MAX_COLLISIONS_LISTED);
    expect(r.ownersOf(r.lookup('svc7').port!)).toHaveLength(20_000);
  });

  it('100,000 keys: a key repeated at the end is still found, at its line (the check is linear, not yaml\'s pairwise one)', { timeout: 60_000 }, () => {
    const lines = Array.from({ length: 100_000 }, (_, i) => `  s${i.toString(36)}x:\n    port: ${1024 + (i % 60_000)}\n`);
    const text = `services:\n${lines.join('')}  s0x:\n    port: 1024\n`;
    let err: unknown;
    try {
      parseRegistry(text, 'big.yaml');
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: ErrorCodes.REGISTRY_INVALID, details: { line: 200_002, column: 3 } });
    expect((err as Error).message).toMatch(/^big\.yaml:200002:3: Map keys must be unique/);
  });

  it('a file over --registry-max-bytes is refused with CP_REGISTRY_INVALID before it is read', async () => {
    const file = writeRegistry(`services:\n${'  api:\n    port: 8080\n'.repeat(1)}${'# padding\n'.repeat(200)}`);
    await expect(loadRegistryFile(file, { maxBytes: 1024 })).rejects.toMatchObject({
      code: ErrorCodes.REGISTRY_INVALID,
      message: expect.stringMatching(/: \d+ bytes, over the limit of 1024 \(--registry-max-bytes, CANONPORT_REGISTRY_MAX_BYTES\); not read$/),
    });
    expect((await loadRegistryFile(file, { maxBytes: 1 << 20 })).lookup('api').port).toBe(8080);
  });

  it('the same checks, and the same registry, in the worker thread as in parseRegistry', async () => {
    for (const name of ['example.yaml', 'unknown-field.yaml', 'duplicate-key.yaml', 'bad-label.yaml', 'wrong-type.yaml']) {
      const text = readFileSync(fixture(name), 'utf8');
      const viaFile = await loadRegistryFile(fixture(name)).then((r) => r.digest, (e: CanonportError) => `${e.code} ${e.message}`);
      let inline: string;
      try {
        inline = parseRegistry(text, fixture(name)).digest;
      } catch (e) {
        inline = `${(e as CanonportError).code} ${(e as CanonportError).message}`;
      }
      expect(viaFile, name).toBe(inline);
    }
  });
});
