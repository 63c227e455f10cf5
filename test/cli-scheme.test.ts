import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { runCli, type CliRun } from './helpers/cli.js';

/**
 * The scheme commands (port, decode, check, order, compose), run in-process
 * through main() as every CLI test is (helpers/cli.ts); one test runs
 * bin/canonport.js as a real process, as a user would after `npm install`.
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string): string => `test/fixtures/registry/${name}`;

type Run = CliRun;
const run = (args: string[], env: Record<string, string> = {}): Promise<Run> => runCli(args, env);

/** No command may print a stack trace, whatever the input. */
function expectNoStack(r: Run): void {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stdout).not.toMatch(/^\s+at /m);
}

const SEED_TABLE: [string, number][] = [
  ['api', 12082],
  ['db', 14688],
  ['foo-bar', 17176],
  ['aardvark', 11611],
  ['alligator', 11957],
  ['bee', 12750],
  ['cat', 13661],
  ['caterpillar', 13661],
  ['dog', 15120],
  ['elephant', 16046],
  ['vole', 33557],
  ['zebra', 33227],
];

describe('canonport port', () => {
  it('reads version names as DNS and gRPC do: vN.svc only for a listed version of a versioned service', async () => {
    const listed = await run(['port', '--registry', fixture('example.yaml'), 'v1.user', 'v2.user']);
    expect(listed).toMatchObject({ code: 0, stdout: '8101\n8102\n' });
    for (const [name, why] of [
      ['v3.user', /user has no version 3 \(versions: 1, 2\)/],
      ['v0.user', /user has no version 0/],
      ['v01.user', /user has no version 01/],
      ['v2.api', /api is not a versioned service/],
    ] as const) {
      const r = await run(['port', '--registry', fixture('example.yaml'), name]);
      expect(r.code, name).toBe(1);
      expect(r.stdout, name).toBe('');
      expect(r.stderr, name).toMatch(why);
    }
  });

  it("prints the seed's table, one port per line, in input order", async () => {
    const r = await run(['port', ...SEED_TABLE.map(([n]) => n)]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(SEED_TABLE.map(([, p]) => `${p}\n`).join(''));
    expect(r.stderr).toBe('');
  });

  it('prints exactly the port for one name, so PORT=$(canonport port api) works', async () => {
    const r = await run(['port', 'api']);
    expect(r.stdout.trim()).toBe('12082');
    expect(r.stdout).toBe('12082\n');
  });

  it('reads full names, SRV names and case-insensitively', async () => {
    const r = await run(['port', 'API.cluster-1.example.com', '_api._tcp.cluster-1.example.com.', 'Zebra']);
    expect(r.stdout).toBe('12082\n12082\n33227\n');
  });

  it('follows the registry: pins, versions, block roles', async () => {
    const r = await run(['port', '--registry', fixture('example.yaml'), 'caterpillar', 'user', 'v1.user', 'splashpage-psql', 'cat']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('13700\n8102\n8101\n7009\n13661\n');
  });

  it('takes the registry from CANONPORT_REGISTRY', async () => {
    const r = await run(['port', 'caterpillar'], { CANONPORT_REGISTRY: fixture('example.yaml') });
    expect(r.stdout).toBe('13700\n');
  });

  it('prints JSON with --json', async () => {
    const r = await run(['port', '--json', 'cat', 'caterpillar']);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.stdout) as { name: string; port: number; prefix: string; scheme: string }[];
    expect(rows).toEqual([
      expect.objectContaining({ name: 'cat', port: 13661, prefix: 'cat', scheme: 'base32' }),
      expect.objectContaining({ name: 'caterpillar', port: 13661, prefix: 'cat', scheme: 'base32' }),
    ]);
  });

  it('exits 1 with nothing on stdout when a name has no port', async () => {
    const r = await run(['port', '--registry', fixture('versioned.yaml'), 'api', 'acme']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/acme: scheme versioned gives 8100101, which is not a port/);
  });

  it.each([
    [[], /missing required argument/],
    [[''], /bad name "": name is empty/],
    [['a..b'], /label 2 of "a\.\.b" is empty/],
    [['bad!name'], /characters outside letters, digits/],
    [[`${'a'.repeat(63)}.`.repeat(4) + 'x'], /over the limit of 253/],
    [['x'.repeat(64)], /over 63/],
    [['--bogus', 'api'], /unknown option/],
  ])('exits 2 with the reason for %j', async (args, reason) => {
    const r = await run(['port', ...args]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(reason);
    expect(r.stderr).toMatch(/usage: canonport port|run with --help for usage/);
    expectNoStack(r);
  });

  it('exits 1 with a located message for a malformed registry, no stack trace', async () => {
    const r = await run(['port', '--registry', fixture('unknown-field.yaml'), 'api']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown-field.yaml:4:5 (services.api.colour): unknown field "colour" [CP_REGISTRY_INVALID]');
    expectNoStack(r);
    const missing = await run(['port', '--registry', 'test/fixtures/registry/none.yaml', 'api']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read registry file .*none\.yaml: no such file \[CP_REGISTRY_UNREADABLE\]/);
  });
});

describe('canonport decode', () => {
  it('decodes ports to prefixes, one per line', async () => {
    const r = await run(['decode', '12082', '14688', '33227', '1024', '33791']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('api\ndb0\nveb\n000\nvvv\n');
  });

  it("reads well-known ports the seed's way with --raw", async () => {
    const r = await run(['decode', '--raw', '6379', '27017', '3000', '8000', '8080', '2195']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('67b\nqc9\n2to\n7q0\n7sg\n24j\n');
    const offset = await run(['decode', '6379']);
    expect(offset.stdout).toBe('57b\n');
  });

  it('names registry owners after a tab with --registry', async () => {
    const r = await run(['decode', '--registry', fixture('example.yaml'), '7009', '13661', '13700', '12082']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('5r1\tsplashpage-psql\ncat\ncc4\tcaterpillar\napi\tapi\n');
  });

  it('exits 1 for a port no name lands on, with a hint, and prints nothing on stdout', async () => {
    const r = await run(['decode', '12082', '80']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/80 is outside 1024–33791, where names land \(--raw reads it as the seed did: 02g\)/);
    const raw = await run(['decode', '--raw', '40000']);
    expect(raw.code).toBe(1);
    expect(raw.stderr).toMatch(/40000 is outside 0–32767 \(--raw\)/);
  });

  it('decodes an out-of-range port a registry name owns', async () => {
    const r = await run(['decode', '--registry', fixture('framework-default.yaml'), '80']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('-\tweb\n');
  });

  it('prints JSON with --json, including ports without a prefix', async () => {
    const r = await run(['decode', '--json', '12082', '40000']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toEqual([
      { port: 12082, prefix: 'api', raw: false, owners: [] },
      { port: 40000, prefix: null, raw: false, owners: [] },
    ]);
  });

  it.each([[['abc']], [['70000']], [['-5']], [['12.5']], [[]]])('exits 2 for %j', async (args) => {
    const r = await run(['decode', ...args]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/usage: canonport decode|run with --help for usage/);
    expectNoStack(r);
  });
});

describe('canonport check', () => {
  it('exits 0 and says so when there is nothing to report', async () => {
    const r = await run(['check', '--no-host', 'api', 'db', 'dog']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ok: no findings\n');
  });

  it('exits 1 on a collision, one line per finding with its code', async () => {
    const r = await run(['check', '--no-host', 'cat', 'caterpillar']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe(
      'error    CHECK_COLLISION            cat, caterpillar share port 13661 (all start with "cat")\n1 error, 0 warnings\n',
    );
  });

  it("warns about this host's ephemeral range, and fails on it only with --strict", async () => {
    const [lo, hi] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/).map(Number) as [number, number];
    const reserved = await readFile('/proc/sys/net/ipv4/ip_local_reserved_ports', 'utf8').catch(() => '');
    const inRange = 33227 >= lo && 33227 <= hi && !reserved.split(',').includes('33227');
    const r = await run(['check', 'zebra']);
    expect(r.code).toBe(0);
    expect(r.stdout.includes('CHECK_EPHEMERAL')).toBe(inRange);
    if (inRange) expect(r.stdout).toContain(`zebra: port 33227 is inside this host's ephemeral range ${lo}–${hi}`);
    const strict = await run(['check', '--strict', 'zebra']);
    expect(strict.code).toBe(inRange ? 1 : 0);
  });

  it.each([
    ['collision.yaml', 'CHECK_COLLISION', 1],
    ['duplicate-pin.yaml', 'CHECK_DUPLICATE_PIN', 1],
    ['versioned.yaml', 'CHECK_VERSIONED_OVERFLOW', 1],
    ['versioned.yaml', 'CHECK_VERSIONED_COLLISION', 1],
    ['cycle-3.yaml', 'CHECK_DEPENDENCY_CYCLE', 1],
    ['unknown-dependency.yaml', 'CHECK_UNKNOWN_DEPENDENCY', 1],
    ['unknown-role.yaml', 'CHECK_UNKNOWN_ROLE', 1],
    ['block-overlap.yaml', 'CHECK_BLOCK_OVERLAP', 0],
    ['framework-default.yaml', 'CHECK_FRAMEWORK_DEFAULT', 0],
  ])('%s → %s, exit %i', async (file, code, exit) => {
    const r = await run(['check', '--no-host', '--registry', fixture(file)]);
    expect(r.code).toBe(exit);
    expect(r.stdout).toMatch(new RegExp(`^(error|warning) +${code} `, 'm'));
  });

  it('names the cycle', async () => {
    const r = await run(['check', '--no-host', '--registry', fixture('cycle-3.yaml')]);
    expect(r.stdout).toContain('dependency cycle: alpha → beta → gamma → alpha');
  });

  it('prints JSON with --json', async () => {
    const r = await run(['check', '--no-host', '--json', '--registry', fixture('framework-default.yaml'), 'cat', 'caterpillar']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { ok: boolean; errors: number; warnings: number; findings: { code: string; severity: string }[] };
    expect(out).toMatchObject({ ok: false, errors: 1, warnings: 2 });
    expect(out.findings.map((f) => f.code)).toEqual(['CHECK_COLLISION', 'CHECK_FRAMEWORK_DEFAULT', 'CHECK_PRIVILEGED']);
  });

  it('exits 0 on the documented example without host facts', async () => {
    const r = await run(['check', '--no-host', '--registry', fixture('example.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('ok: no findings\n');
  });

  it('exits 2 on a bad name, 1 on a malformed registry', async () => {
    const bad = await run(['check', 'no/slash']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/bad name "no\/slash"/);
    const yaml = await run(['check', '--registry', fixture('bad-yaml.yaml')]);
    expect(yaml.code).toBe(1);
    expect(yaml.stderr).toMatch(/bad-yaml\.yaml:4:1: .*\[CP_REGISTRY_INVALID\]/);
    expectNoStack(yaml);
  });
});

describe('canonport order', () => {
  it('prints the start order, dependencies first, one per line', async () => {
    const r = await run(['order', '--registry', fixture('order.yaml')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('cache\ndb\napi\nsplashpage\nweb\nzz-worker\n');
  });

  it('prints JSON with levels', async () => {
    const r = await run(['order', '--json', '--registry', fixture('order.yaml')]);
    const steps = JSON.parse(r.stdout) as { name: string; level: number; dependsOn: string[] }[];
    expect(steps.map((s) => `${s.name}@${s.level}`)).toEqual(['cache@0', 'db@0', 'api@1', 'splashpage@0', 'web@2', 'zz-worker@1']);
  });

  it('exits 1 naming a cycle', async () => {
    const r = await run(['order', '--registry', fixture('cycle-2.yaml')]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('dependency cycle: api → db → api [CP_DEPENDENCY_CYCLE]');
  });

  it('exits 2 without a registry', async () => {
    const r = await run(['order']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/order needs a registry file/);
  });
});

describe('canonport compose', () => {
  it('prints a compose fragment with external:internal mappings', async () => {
    const r = await run(['compose', '--registry', fixture('example.yaml')]);
    expect(r.code).toBe(0);
    const doc = parse(r.stdout) as { services: Record<string, { ports: string[] }> };
    expect(doc.services['splashpage-psql']).toEqual({ ports: ['7009:5432'] });
    expect(doc.services.db).toEqual({ ports: ['14688:5432'] });
    expect(doc.services['v2.user']).toEqual({ ports: ['8102:8102'] });
    expect(r.stdout).toContain('      - "7009:5432"\n');
  });

  it('keeps only the names asked for, and prints JSON', async () => {
    const r = await run(['compose', '--json', '--registry', fixture('example.yaml'), 'splashpage']);
    const out = JSON.parse(r.stdout) as { mappings: { name: string; mapping: string }[]; skipped: unknown[] };
    expect(out.mappings.map((m) => `${m.name}=${m.mapping}`)).toEqual([
      'splashpage-www=7000:3000',
      'splashpage-api=7001:9000',
      'splashpage-redis=7008:6379',
      'splashpage-psql=7009:5432',
    ]);
    expect(out.skipped).toEqual([]);
  });

  it('exits 1 naming what it left out', async () => {
    const r = await run(['compose', '--registry', fixture('block-overflow.yaml')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/skipped edge-psql: 65539 is over 65535/);
    expect(parse(r.stdout)).toEqual({ services: { 'edge-www': { ports: ['65530:3000'] } } });
  });

  it('exits 2 for a name the registry does not have, or no registry', async () => {
    expect((await run(['compose', '--registry', fixture('example.yaml'), 'nope'])).code).toBe(2);
    expect((await run(['compose'])).code).toBe(2);
  });
});

describe('canonport --help', () => {
  it('lists the scheme commands and exits 0', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['port', 'decode', 'check', 'order', 'compose']) expect(r.stdout).toMatch(new RegExp(`^  ${c} `, 'm'));
  });
});

describe('bin/canonport.js', () => {
  it('runs as a process: exit code, stdout and stderr as a shell sees them', async () => {
    const proc = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        execFile(process.execPath, ['bin/canonport.js', ...args], { cwd: REPO, timeout: 30_000 }, (err, stdout, stderr) => {
          const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
          resolve({ code, stdout, stderr });
        });
      });
    expect(await proc(['port', 'api', 'db'])).toEqual({ code: 0, stdout: '12082\n14688\n', stderr: '' });
    const bad = await proc(['port', 'bad!name']);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/bad name "bad!name"/);
    const version = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    expect((await proc(['--version'])).stdout.trim()).toBe(version.version);
  });
});
