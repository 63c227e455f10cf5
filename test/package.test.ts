import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { isSupportedGrpcVersion, SUPPORTED_GRPC_JS_RANGE } from '../src/grpc/grpc-module.js';
import { ErrorCodes } from '../src/errors.js';
import { healthServerOnCanonicalPort } from './grpc-fixtures.js';
import { REPO, installedVersion, packCanonport, run, scratchProject, startInstalledDaemon, userEnv, type ScratchDaemon } from './helpers/scratch-project.js';

/**
 * canonport as users install it: the packed tarball (and, separately, this
 * checkout as a directory, which npm symlinks) installed with a plain
 * `npm install` into scratch projects that pin their own @grpc/grpc-js:
 * 1.10 (the oldest the resolver supports), 1.12 (the application)
 * and the newest. canonport declares no peer on grpc-js, so npm keeps the
 * application's version and nests canonport's own where they differ; each
 * application registers `canon:` on its own copy and calls a real health
 * server on the name's canonical port through a real daemon run from an
 * install. One pack, five installs in parallel; they need the npm registry.
 */

const FIXTURES = join(REPO, 'test/fixtures/scratch');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  peerDependencies?: Record<string, string>;
  devDependencies: Record<string, string>;
  dependencies: Record<string, string>;
  exports: Record<string, unknown>;
};
/** What the daemon runs on: canonport's own grpc-js, pinned to a minor. */
const OWN = pkg.dependencies['@grpc/grpc-js']!;
/** Below the supported range: under an npm alias in the 1.10 project, passed in or loaded beside. */
const TOO_OLD = '1.9';

const INSTALL_MS = 300_000;
const HEALTH_TAG = 'pkg';

let work: string;
let tarball: string;
let target: { label: string; port: number; server: grpc.Server };
let name: string;
const daemons: ScratchDaemon[] = [];

interface DialResult {
  appGrpc: string | null;
  canonportGrpc: string | null;
  loadedGrpc: string[];
  grpcVersion: string;
  registered: boolean;
  response?: string;
  callCode?: number;
  callDetails?: string;
  code?: string;
  message?: string;
  errorName?: string;
}

/**
 * Runs the application in `project`: registers canon: (`default` or `pass`
 * its grpc module, `@grpc/grpc-js` unless `grpcSpecifier` names another)
 * and calls Health/Check on `canon:///<target>` (default: the test server's name).
 */
async function dial(
  project: string,
  daemon: Pick<ScratchDaemon, 'grpc'>,
  mode: 'default' | 'pass',
  opts: { grpcSpecifier?: string; target?: string; entry?: string; extraGrpc?: string; script?: string } = {},
): Promise<DialResult> {
  const args = [opts.script ?? join(project, 'dial-canon.mjs'), mode, daemon.grpc, opts.target ?? name, HEALTH_TAG, ...(opts.grpcSpecifier ? [opts.grpcSpecifier] : [])];
  const env = userEnv({ ...(opts.entry ? { CANON_ENTRY: opts.entry } : {}), ...(opts.extraGrpc ? { EXTRA_GRPC: opts.extraGrpc } : {}) });
  const r = await run(process.execPath, args, { cwd: project, env, timeoutMs: 60_000 });
  if (r.code !== 0 || !r.stdout.trim()) throw new Error(`the application failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as DialResult;
}

const projects: string[] = [];

async function project(label: string, specs: string[]): Promise<string> {
  // --save-exact: the application pins its grpc-js, as the does; npm must not move it.
  const dir = await scratchProject(label, specs, { saveExact: true });
  projects.push(dir);
  copyFileSync(join(FIXTURES, 'dial-canon.mjs'), join(dir, 'dial-canon.mjs'));
  return dir;
}

/** Health/Check answered SERVING (`08 01`) for the tag only the test's server knows: the call reached it. */
const SERVING = '0801';
/** A form the daemon answers NOT_FOUND (a `_` label that is not `_tcp`/`_udp` after a service): the resolver reports an error. */
const UNANSWERED = '_nosuch.localhost';
const UNAVAILABLE = 14;

type Install = 'v110' | 'v112' | 'newest' | 'linked' | 'alone';
/** The scratch projects, installed side by side (npm mostly waits on the network and the disk); each describe awaits its own. */
const installs: Partial<Record<Install, Promise<string>>> = {};
/** How long each install took, for the report at the end. */
const installMs: Partial<Record<Install, number>> = {};
/** The daemon run from the 1.10 application's install (on canonport's own, nested grpc-js), dialled by every application. */
let daemon: Promise<ScratchDaemon>;

function timed(label: Install, p: Promise<string>): Promise<string> {
  const t0 = Date.now();
  const out = p.then((dir) => ((installMs[label] = Date.now() - t0), dir));
  out.catch(() => undefined); // awaited by each describe; a failure is reported there, not as an unhandled rejection
  return out;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'canonport-package-'));
  tarball = await packCanonport(work);
  installs.v110 = timed('v110', project('grpc-1-10', ['@grpc/grpc-js@1.10', `grpc-js-too-old@npm:@grpc/grpc-js@${TOO_OLD}`, tarball]));
  installs.v112 = timed('v112', project('grpc-1-12', ['@grpc/grpc-js@1.12', tarball]));
  installs.newest = timed('newest', project('grpc-newest', ['@grpc/grpc-js@latest', tarball]));
  installs.linked = timed('linked', project('linked', ['@grpc/grpc-js@latest', REPO]));
  installs.alone = timed('alone', project('alone', [tarball]));
  daemon = installs.v110.then(async (dir) => {
    const d = await startInstalledDaemon(dir, [process.execPath, 'node_modules/canonport/bin/canonport.js']);
    daemons.push(d);
    return d;
  });
  daemon.catch(() => undefined);
  target = await healthServerOnCanonicalPort(HEALTH_TAG);
  name = `${target.label}.localhost`;
}, INSTALL_MS);

/** Stopping the daemons (up to 10 s grace each, in parallel) and removing five installs outlasted the default 30 s hook timeout on a loaded machine. */
const CLEANUP_MS = 120_000;

afterAll(async () => {
  // The install times, for whoever watches this file's duration (it is one of the slowest).
  if (Object.keys(installMs).length) console.log(`package.test.ts installs (parallel, ms): ${JSON.stringify(installMs)}`);
  await Promise.all(daemons.map((d) => d.stop()));
  target?.server.forceShutdown();
  await Promise.all([work, ...projects].filter(Boolean).map((dir) => rm(dir, { recursive: true, force: true })));
}, CLEANUP_MS);

describe('the package and grpc-js', () => {
  it('declares no peer on grpc-js: the daemon has its own, pinned to a minor; the client side takes 1.10 to the newest', () => {
    expect(pkg.peerDependencies?.['@grpc/grpc-js']).toBeUndefined();
    expect(OWN).toMatch(/^~1\.14\.\d+$/);
    expect(pkg.devDependencies['@grpc/grpc-js']).toBeUndefined();
    expect(SUPPORTED_GRPC_JS_RANGE).toBe('>=1.10.0 <1.15.0');
    expect(pkg.exports['./client']).toEqual({ types: './dist/client.d.ts', default: './dist/client.js' });
  });

  it('refuses a module that is not grpc-js, at registration and in the client', () => {
    const notGrpc = { experimental: {} } as never;
    expect(() => registerCanonResolver({ grpc: notGrpc })).toThrow(expect.objectContaining({ code: ErrorCodes.GRPC_UNSUPPORTED }));
    expect(() => createCanonportClient('127.0.0.1:1', { grpc: notGrpc })).toThrow(expect.objectContaining({ code: ErrorCodes.GRPC_UNSUPPORTED }));
  });

  it('judges a grpc-js whose version it cannot find (a bundle) by its features: endpoint resolvers came with 1.10', () => {
    // Shaped like grpc-js, not found on disk to read a version from. 1.9 has no endpointToString; 1.10–1.13 have it; 1.14 adds statusOrFromValue.
    const shape = { credentials: { createInsecure: () => ({}) }, Metadata: class {}, loadPackageDefinition: () => ({}) };
    const like19 = { ...shape, experimental: { registerResolver: () => undefined } };
    expect(() => registerCanonResolver({ grpc: like19 })).toThrow(expect.objectContaining({ code: ErrorCodes.GRPC_UNSUPPORTED, message: expect.stringContaining(SUPPORTED_GRPC_JS_RANGE) }));
    for (const experimental of [{ endpointToString: () => '' }, { endpointToString: () => '', statusOrFromValue: () => ({}) }]) {
      const registered: string[] = [];
      registerCanonResolver({ grpc: { ...shape, experimental: { ...experimental, registerResolver: (scheme: string) => void registered.push(scheme) } } });
      expect(registered).toEqual(['canon']);
    }
  });
});

/** One application per grpc-js line the issue names; each dials with no grpc option, so canonport must find the application's own copy. */
const LINES: { install: Install; label: string; version: RegExp; nested: boolean }[] = [
  { install: 'v110', label: '1.10', version: /^1\.10\.\d+$/, nested: true },
  { install: 'v112', label: '1.12', version: /^1\.12\.\d+$/, nested: true },
  { install: 'newest', label: 'the newest', version: /^\d+\.\d+\.\d+$/, nested: false },
];

for (const line of LINES) {
  describe(`an application pinned to grpc-js ${line.label}`, () => {
    let dir: string;
    let d: ScratchDaemon;
    beforeAll(async () => {
      dir = await installs[line.install]!;
      d = await daemon;
    }, INSTALL_MS);

    it('installs canonport with a plain npm install, keeping its own grpc-js; canonport nests its own only where the two differ', () => {
      const appVersion = installedVersion(dir, '@grpc/grpc-js');
      expect(appVersion).toMatch(line.version);
      expect((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies['@grpc/grpc-js']).toBe(appVersion);
      const nested = join(dir, 'node_modules/canonport/node_modules/@grpc/grpc-js');
      expect(existsSync(nested)).toBe(line.nested);
      if (line.nested) expect(installedVersion(join(dir, 'node_modules/canonport'), '@grpc/grpc-js')).toMatch(/^1\.14\./);
    });

    it('dials canon: with its own grpc-js: registerCanonResolver() with no grpc option registers on the application’s copy', async () => {
      const r = await dial(dir, d, 'default');
      expect(r).toMatchObject({ registered: true, response: SERVING, grpcVersion: installedVersion(dir, '@grpc/grpc-js') });
      expect(r.appGrpc).toBe(realpathSync(join(dir, 'node_modules/@grpc/grpc-js/build/src/index.js')));
    });

    it('fails a call to a name the daemon has no answer for with UNAVAILABLE and the resolver’s reason', async () => {
      expect(await dial(dir, d, 'default', { target: UNANSWERED })).toMatchObject({ registered: true, callCode: UNAVAILABLE, callDetails: expect.stringContaining(`canon:///${UNANSWERED}`) });
    });

    it('through canonport/client, loads no grpc-js but the application’s', async () => {
      const r = await dial(dir, d, 'pass', { entry: 'canonport/client' });
      expect(r).toMatchObject({ registered: true, response: SERVING });
      expect(r.loadedGrpc).toEqual([realpathSync(join(dir, 'node_modules/@grpc/grpc-js'))]);
    });
  });
}

describe(`the 1.10 application, with grpc-js ${TOO_OLD} beside it`, () => {
  let dir: string;
  let d: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.v110!;
    d = await daemon;
  }, INSTALL_MS);

  it(`refuses grpc-js ${TOO_OLD} passed in, naming the supported range`, async () => {
    const r = await dial(dir, d, 'pass', { grpcSpecifier: 'grpc-js-too-old' });
    expect(r.grpcVersion).toMatch(/^1\.9\./);
    expect(r).toMatchObject({ registered: false, errorName: 'CanonportError', code: ErrorCodes.GRPC_UNSUPPORTED });
    expect(r.message).toContain(r.grpcVersion);
    expect(r.message).toContain(SUPPORTED_GRPC_JS_RANGE);
  });

  it('throws CP_GRPC_COPY_MISMATCH when its main module resolves no grpc-js and it has loaded two: it cannot tell which is the application’s', async () => {
    // The same application, started from outside the project: nothing resolves from the main module's folder.
    const outside = join(work, 'outside');
    mkdirSync(outside, { recursive: true });
    const script = join(outside, 'dial-canon.mjs');
    copyFileSync(join(FIXTURES, 'dial-canon.mjs'), script);
    const url = (p: string) => pathToFileURL(join(dir, 'node_modules', p)).href;
    const r = await dial(outside, d, 'default', {
      script,
      entry: url('canonport/dist/client.js'),
      grpcSpecifier: url('@grpc/grpc-js/build/src/index.js'),
      extraGrpc: url('grpc-js-too-old/build/src/index.js'),
    });
    expect(r.appGrpc).toBeNull();
    expect(r).toMatchObject({ registered: false, errorName: 'CanonportError', code: ErrorCodes.GRPC_COPY_MISMATCH });
    expect(r.message).toContain(realpathSync(join(dir, 'node_modules/@grpc/grpc-js')));
    expect(r.message).toContain(realpathSync(join(dir, 'node_modules/grpc-js-too-old')));
    expect(r.message).toContain('registerCanonResolver({ grpc })');
  });

  it('dials from there too once it names its module', async () => {
    const outside = join(work, 'outside');
    const url = (p: string) => pathToFileURL(join(dir, 'node_modules', p)).href;
    const r = await dial(outside, d, 'pass', {
      script: join(outside, 'dial-canon.mjs'),
      entry: url('canonport/dist/client.js'),
      grpcSpecifier: url('@grpc/grpc-js/build/src/index.js'),
      extraGrpc: url('grpc-js-too-old/build/src/index.js'),
    });
    expect(r).toMatchObject({ registered: true, response: SERVING });
  });
});

describe('installed as a directory (npm install ../canonport: a symlink to this checkout)', () => {
  let dir: string;
  let d: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.linked!;
    d = await daemon;
  }, INSTALL_MS);

  it('is a symlink, so canonport’s own grpc-js is this checkout’s and the application’s is another copy', async () => {
    expect(lstatSync(join(dir, 'node_modules/canonport')).isSymbolicLink()).toBe(true);
    const r = await dial(dir, d, 'pass');
    expect(r.canonportGrpc).not.toBe(r.appGrpc);
    expect(r.appGrpc!.startsWith(realpathSync(dir))).toBe(true);
  });

  it('dials canon: with registerCanonResolver() and no grpc option: registered on the application’s copy, not canonport’s', async () => {
    expect(await dial(dir, d, 'default')).toMatchObject({ registered: true, response: SERVING });
  });
});

describe('installed alone: npm install canonport, then npx canonport', () => {
  let dir: string;
  let alone: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.alone!;
    alone = await startInstalledDaemon(dir, ['npx', '--no-install', 'canonport']);
    daemons.push(alone);
  }, INSTALL_MS);

  it('gets grpc-js as canonport’s dependency, and `npx canonport serve` answers `npx canonport resolve`', async () => {
    expect(isSupportedGrpcVersion(installedVersion(dir, '@grpc/grpc-js'))).toBe(true);
    const r = await run('npx', ['--no-install', 'canonport', 'resolve', name, '--daemon', alone.grpc, '--json'], { cwd: dir, env: userEnv(), timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ name, resolution: expect.objectContaining({ port: target.port, addresses: expect.arrayContaining(['127.0.0.1']) }) }]);
  });
});

// The two type-checks run side by side: each is one tsc, mostly waiting on its own CPU.
describe.concurrent('the types an application compiles against', () => {
  for (const install of ['v110', 'newest'] as const) {
    it(`type-check a consumer of every export docs/grpc.md promises, with grpc-js ${install === 'v110' ? '1.10' : 'the newest'}'s types passed in`, async () => {
      const dir = await installs[install]!;
      copyFileSync(join(FIXTURES, 'consumer.mts'), join(dir, 'consumer.mts'));
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'ES2022', strict: true, noEmit: true, types: ['node'], skipLibCheck: false },
          files: ['consumer.mts'],
        }),
      );
      // The repository's tsc, compiling in the scratch project: `canonport` resolves to the installed package there.
      const r = await run(process.execPath, [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: dir, timeoutMs: 120_000 });
      expect(r.stdout + r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(realpathSync(join(dir, 'node_modules/canonport/dist/index.d.ts'))).toContain(dir);
    }, 180_000);
  }
});
