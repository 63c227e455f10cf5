import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkRegistry, CheckCodes, failed, SEVERITY, type Finding } from '../src/registry/check.js';
import { NO_HOST_FACTS, parseEtcServices, parsePortList, parsePortRange, readHostFacts, type HostFacts } from '../src/registry/host-facts.js';
import { loadRegistryFile, parseRegistry } from '../src/registry/load.js';
import { Registry } from '../src/registry/registry.js';

const fixture = (name: string): string => new URL(`./fixtures/registry/${name}`, import.meta.url).pathname;

async function checkFixture(name: string, facts: HostFacts = NO_HOST_FACTS, extra: string[] = []): Promise<Finding[]> {
  return checkRegistry(await loadRegistryFile(fixture(name)), facts, extra);
}

const codes = (fs: Finding[]): string[] => fs.map((f) => f.code);

/** A host like the usual Linux one, with a small /etc/services. */
const HOST: HostFacts = {
  ephemeralRange: [32768, 60999],
  reservedPorts: new Set([33557]),
  services: parseEtcServices('http 80/tcp www\nredis 6379/tcp\nhttp-alt 8080/tcp webcache\nhttp-alt 8080/udp\n'),
};

describe('checkRegistry: one fixture per finding', () => {
  it('CHECK_COLLISION: cat and caterpillar (error)', async () => {
    const fs = await checkFixture('collision.yaml');
    expect(fs).toEqual([
      {
        code: CheckCodes.COLLISION,
        severity: 'error',
        message: 'cat, caterpillar share port 13661 (all start with "cat")',
        names: ['cat', 'caterpillar'],
        port: 13661,
      },
    ]);
  });

  it('CHECK_COLLISION between registry names and names given on the command line', () => {
    const r = parseRegistry('services:\n  legacy:\n    port: 12082\n');
    const fs = checkRegistry(r, NO_HOST_FACTS, ['api.cluster-1.example.com', 'dog', 'doghouse']);
    expect(fs.map((f) => [f.code, f.names])).toEqual([
      [CheckCodes.COLLISION, ['api', 'legacy']],
      [CheckCodes.COLLISION, ['dog', 'doghouse']],
    ]);
  });

  it('does not report aliases of one entry, nor a name given twice', () => {
    const r = parseRegistry('services:\n  splashpage:\n    block: 7000\n  user:\n    id: 1\n    versions: [1, 2]\n');
    expect(checkRegistry(r, NO_HOST_FACTS, ['splashpage-www', 'v2.user', 'user', 'api', 'API'])).toEqual([]);
  });

  it('CHECK_DUPLICATE_PIN (error)', async () => {
    const fs = await checkFixture('duplicate-pin.yaml');
    expect(codes(fs)).toEqual([CheckCodes.DUPLICATE_PIN]);
    expect(fs[0]).toMatchObject({ port: 9999, names: ['legacy-a', 'legacy-b'], severity: 'error' });
  });

  it('CHECK_VERSIONED_OVERFLOW and CHECK_VERSIONED_COLLISION (errors)', async () => {
    const fs = await checkFixture('versioned.yaml');
    expect(fs.map((f) => [f.code, f.names.join(',')])).toEqual([
      [CheckCodes.VERSIONED_COLLISION, 'v1.project,v101.user'],
      [CheckCodes.VERSIONED_OVERFLOW, 'v1.project'],
      [CheckCodes.VERSIONED_OVERFLOW, 'v101.acme'],
      [CheckCodes.VERSIONED_OVERFLOW, 'v101.user'],
      [CheckCodes.VERSIONED_OVERFLOW, 'v300.product'],
    ]);
    expect(fs[0]!.message).toMatch(/both give 81101/);
    expect(fs.find((f) => f.names[0] === 'v101.acme')!.message).toMatch(/8100101, over 65535/);
  });

  it('CHECK_VERSIONED_OVERFLOW for a version given on the command line', () => {
    const r = parseRegistry('services:\n  user:\n    id: 1\n    version: 1\n');
    const fs = checkRegistry(r, NO_HOST_FACTS, ['v101.user', 'v101.user.cluster-1.example.com', 'v2.user']);
    expect(fs.map((f) => [f.code, f.names[0], f.message])).toEqual([
      [CheckCodes.VERSIONED_OVERFLOW, 'v101.user', 'v101.user: versioned number 81101 is over 65535'],
    ]);
  });

  it('CHECK_DUPLICATE_ID (error)', async () => {
    const fs = await checkFixture('duplicate-id.yaml');
    expect(codes(fs)).toEqual([CheckCodes.DUPLICATE_ID]);
    expect(fs[0]!.names).toEqual(['account', 'user']);
  });

  it('CHECK_DUPLICATE_NAME (error)', async () => {
    const fs = await checkFixture('duplicate-name.yaml');
    expect(codes(fs)).toEqual([CheckCodes.DUPLICATE_NAME]);
    expect(fs[0]!.names).toEqual(['splashpage-api']);
  });

  it.each([
    ['cycle-1.yaml', ['api', 'api']],
    ['cycle-2.yaml', ['api', 'db', 'api']],
    ['cycle-3.yaml', ['alpha', 'beta', 'gamma', 'alpha']],
  ])('CHECK_DEPENDENCY_CYCLE %s names the cycle (error)', async (file, cycle) => {
    const fs = await checkFixture(file);
    expect(codes(fs)).toEqual([CheckCodes.DEPENDENCY_CYCLE]);
    expect(fs[0]!.cycle).toEqual(cycle);
    expect(fs[0]!.message).toBe(`dependency cycle: ${cycle.join(' → ')}`);
  });

  it('CHECK_UNKNOWN_DEPENDENCY (error)', async () => {
    const fs = await checkFixture('unknown-dependency.yaml');
    expect(codes(fs)).toEqual([CheckCodes.UNKNOWN_DEPENDENCY]);
    expect(fs[0]!.message).toMatch(/api depends on dbb/);
  });

  it('CHECK_UNKNOWN_ROLE (error)', async () => {
    const fs = await checkFixture('unknown-role.yaml');
    expect(codes(fs)).toEqual([CheckCodes.UNKNOWN_ROLE]);
    expect(fs[0]!.names).toEqual(['shop-cache']);
  });

  it('CHECK_BLOCK_OVERFLOW (error)', async () => {
    const fs = await checkFixture('block-overflow.yaml');
    expect(codes(fs)).toEqual([CheckCodes.BLOCK_OVERFLOW]);
    expect(fs[0]!.message).toBe('edge-psql: 65530 + 9 = 65539, over 65535');
  });

  it('CHECK_BLOCK_OVERLAP: two blocks, and a pin inside a block (warnings)', async () => {
    const fs = await checkFixture('block-overlap.yaml');
    expect(fs.map((f) => [f.code, f.severity, f.names.join(',')])).toEqual([
      [CheckCodes.BLOCK_OVERLAP, 'warning', 'cart,shop'],
      [CheckCodes.BLOCK_OVERLAP, 'warning', 'legacy,shop'],
    ]);
  });

  it('CHECK_FRAMEWORK_DEFAULT and CHECK_PRIVILEGED (warnings)', async () => {
    const fs = await checkFixture('framework-default.yaml');
    expect(fs.map((f) => [f.code, f.severity, f.port])).toEqual([
      [CheckCodes.FRAMEWORK_DEFAULT, 'warning', 3000],
      [CheckCodes.PRIVILEGED, 'warning', 80],
    ]);
    expect(fs[0]!.message).toMatch(/rails/);
  });

  it('CHECK_EPHEMERAL for every name starting v–z, except reserved ports (warning)', () => {
    const fs = checkRegistry(Registry.empty(), HOST, ['vole', 'wombat', 'xray', 'yak', 'zebra', 'api']);
    expect(fs.map((f) => [f.code, f.names[0]])).toEqual([
      // vole (33557) is in ip_local_reserved_ports; w–z all read as v.
      [CheckCodes.EPHEMERAL, 'zebra'],
      [CheckCodes.EPHEMERAL, 'wombat'],
      [CheckCodes.EPHEMERAL, 'xray'],
      [CheckCodes.EPHEMERAL, 'yak'],
    ].sort((a, b) => (a[1]! < b[1]! ? -1 : 1)));
    expect(fs.every((f) => f.severity === 'warning')).toBe(true);
    expect(checkRegistry(Registry.empty(), NO_HOST_FACTS, ['zebra'])).toEqual([]);
  });

  it('CHECK_ETC_SERVICES (warning)', async () => {
    const fs = await checkFixture('framework-default.yaml', HOST, ['redis-cache']);
    const listed = fs.filter((f) => f.code === CheckCodes.ETC_SERVICES);
    expect(listed.map((f) => [f.port, f.message])).toEqual([[80, 'web: port 80 is listed in /etc/services as http']]);
    const pinned = checkRegistry(parseRegistry('services:\n  cache:\n    port: 6379\n  proxy:\n    port: 8080\n'), HOST);
    expect(pinned.filter((f) => f.code === CheckCodes.ETC_SERVICES).map((f) => f.message)).toEqual([
      'cache: port 6379 is listed in /etc/services as redis',
      'proxy: port 8080 is listed in /etc/services as http-alt',
    ]);
  });

  it('finds nothing in the documented example', async () => {
    expect(await checkFixture('example.yaml')).toEqual([]);
  });

  it('sorts errors first and fails only on errors, or on anything with strict', async () => {
    const r = parseRegistry('services:\n  cat:\n  caterpillar:\n  web:\n    port: 3000\n');
    const fs = checkRegistry(r, NO_HOST_FACTS);
    expect(fs.map((f) => f.severity)).toEqual(['error', 'warning']);
    expect(failed(fs)).toBe(true);
    const warningsOnly = fs.filter((f) => f.severity === 'warning');
    expect(failed(warningsOnly)).toBe(false);
    expect(failed(warningsOnly, true)).toBe(true);
    expect(failed([], true)).toBe(false);
  });

  it('gives every code a severity', () => {
    for (const code of Object.values(CheckCodes)) expect(['error', 'warning']).toContain(SEVERITY[code]);
  });
});

describe('host facts', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'canonport-facts-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('parses the kernel port range and reserved list', () => {
    expect(parsePortRange('32768\t60999\n')).toEqual([32768, 60999]);
    expect(parsePortRange('1024 65535')).toEqual([1024, 65535]);
    expect(parsePortRange('60999 32768')).toBeNull();
    expect(parsePortRange('garbage')).toBeNull();
    expect([...parsePortList('8080,9000-9002\n')]).toEqual([8080, 9000, 9001, 9002]);
    expect(parsePortList('\n').size).toBe(0);
  });

  it('parses /etc/services: names per port, comments and protocols folded', () => {
    const m = parseEtcServices('# comment\nssh\t\t22/tcp\t\t\t\t# SSH\nhttp 80/tcp www\nhttp 80/udp\nkerberos 88/tcp kerberos5 krb5\nbroken line\n\n');
    expect([...m]).toEqual([
      [22, ['ssh']],
      [80, ['http']],
      [88, ['kerberos']],
    ]);
  });

  it('reads files, and treats missing ones as unknown', async () => {
    await writeFile(join(dir, 'range'), '40000\t50000\n');
    await writeFile(join(dir, 'reserved'), '45000\n');
    await writeFile(join(dir, 'services'), 'thing 12082/tcp\n');
    const facts = await readHostFacts({ portRange: join(dir, 'range'), reservedPorts: join(dir, 'reserved'), etcServices: join(dir, 'services') });
    expect(facts.ephemeralRange).toEqual([40000, 50000]);
    expect([...facts.reservedPorts]).toEqual([45000]);
    expect(facts.services.get(12082)).toEqual(['thing']);
    const none = await readHostFacts({ portRange: join(dir, 'nope'), reservedPorts: join(dir, 'nope'), etcServices: join(dir, 'nope') });
    expect(none).toMatchObject({ ephemeralRange: null });
    expect(none.services.size).toBe(0);
    expect(checkRegistry(Registry.empty(), facts, ['api']).map((f) => f.code)).toEqual([CheckCodes.ETC_SERVICES]);
  });

  it("reads this host's real files", async () => {
    const facts = await readHostFacts();
    // Linux always has the range; its bounds are ordered ports.
    expect(facts.ephemeralRange).not.toBeNull();
    const [lo, hi] = facts.ephemeralRange!;
    expect(lo).toBeLessThanOrEqual(hi);
    expect(hi).toBeLessThanOrEqual(65535);
  });
});
