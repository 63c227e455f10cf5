import { copyFileSync, existsSync, lstatSync, mkdtempSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { isSupportedGrpcVersion, SUPPORTED_GRPC_JS, SUPPORTED_GRPC_JS_RANGE } from '../src/grpc/grpc-module.js';
import { ErrorCodes } from '../src/errors.js';
import { healthServerOnCanonicalPort } from './grpc-fixtures.js';
import {
  REPO,
  installedVersion,
  npmInstall,
  packCanonport,
  run,
  scratchProject,
  startInstalledDaemon,
  userEnv,
  type ScratchDaemon,
} from './helpers/scratch-project.js';

/**
 * canonport as users install it: the packed tarball (and, separately, this
 * checkout as a directory, which npm symlinks) installed into scratch
 * projects that have their own @grpc/grpc-js. From each, the installed
 * `canonport serve` runs as the daemon and a small application dials
 * `canon:///<name>` with its own grpc-js, reaching a real health server on
 * the name's canonical port. An application pinned to a grpc-js below the
 * peer range is refused by npm at install time. The installs need the npm
 * registry.
 */

const FIXTURES = join(REPO, 'test/fixtures/scratch');
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  dependencies: Record<string, string>;
};
/** The grpc-js this repository develops against (same minor), and the oldest the peer range admits. */
const SAME_MINOR = pkg.devDependencies['@grpc/grpc-js']!;
const OLDEST = SUPPORTED_GRPC_JS.min.join('.');
/** A grpc-js older than the range (the application on 1.12): under an npm alias beside the supported one, and as an application's own. */
const TOO_OLD = '1.12.6';

const INSTALL_MS = 300_000;
const HEALTH_TAG = 'pkg';

let work: string;
let tarball: string;
let target: { label: string; port: number; server: grpc.Server };
let name: string;
const daemons: ScratchDaemon[] = [];

interface DialResult {
  appGrpc: string;
  canonportGrpc: string;
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
async function dial(project: string, daemon: Pick<ScratchDaemon, 'grpc'>, mode: 'default' | 'pass', opts: { grpcSpecifier?: string; target?: string } = {}): Promise<DialResult> {
  const args = [join(project, 'dial-canon.mjs'), mode, daemon.grpc, opts.target ?? name, HEALTH_TAG, ...(opts.grpcSpecifier ? [opts.grpcSpecifier] : [])];
  const r = await run(process.execPath, args, { cwd: project, timeoutMs: 60_000 });
  if (r.code !== 0 || !r.stdout.trim()) throw new Error(`the application failed (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  return JSON.parse(r.stdout) as DialResult;
}

const projects: string[] = [];

async function project(label: string, specs: string[], opts: { saveExact?: boolean } = {}): Promise<string> {
  const dir = await scratchProject(label, specs, opts);
  projects.push(dir);
  copyFileSync(join(FIXTURES, 'dial-canon.mjs'), join(dir, 'dial-canon.mjs'));
  return dir;
}

async function daemonIn(dir: string, command = [process.execPath, 'node_modules/canonport/bin/canonport.js']): Promise<ScratchDaemon> {
  const d = await startInstalledDaemon(dir, command);
  daemons.push(d);
  return d;
}

/** Health/Check answered SERVING (`08 01`) for the tag only the test's server knows: the call reached it. */
const SERVING = '0801';
/** A form the daemon answers NOT_FOUND (a `_` label that is not `_tcp`/`_udp` after a service): the resolver reports an error. */
const UNANSWERED = '_nosuch.localhost';
const UNAVAILABLE = 14;

/** The scratch projects, installed side by side (npm mostly waits on the network and the disk); each describe awaits its own. */
const installs: Partial<Record<'same' | 'oldest' | 'linked' | 'alone' | 'pinnedOld' | 'caretOld', Promise<string>>> = {};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'canonport-package-'));
  tarball = await packCanonport(work);
  installs.same = project('same', [`@grpc/grpc-js@${SAME_MINOR}`, tarball]);
  installs.oldest = project('oldest', [`@grpc/grpc-js@${OLDEST}`, `grpc-js-too-old@npm:@grpc/grpc-js@${TOO_OLD}`, tarball]);
  installs.linked = project('linked', [`@grpc/grpc-js@${SAME_MINOR}`, REPO]);
  installs.alone = project('alone', [tarball]);
  // Applications on grpc-js 1.12 before canonport is added: one pins it exactly, one has npm's default `^`.
  installs.pinnedOld = project('pinned-old', [`@grpc/grpc-js@${TOO_OLD}`], { saveExact: true });
  installs.caretOld = project('caret-old', [`@grpc/grpc-js@${TOO_OLD}`]);
  // Awaited by each describe; a failure is reported there, not as an unhandled rejection.
  for (const p of Object.values(installs)) p.catch(() => undefined);
  target = await healthServerOnCanonicalPort(HEALTH_TAG);
  name = `${target.label}.localhost`;
}, INSTALL_MS);

/** Stopping the daemons (up to 10 s grace each, in parallel) and removing six installs outlasted the default 30 s hook timeout on a loaded machine. */
const CLEANUP_MS = 120_000;

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  target?.server.forceShutdown();
  await Promise.all([work, ...projects].filter(Boolean).map((dir) => rm(dir, { recursive: true, force: true })));
}, CLEANUP_MS);

describe('the package declares grpc-js as a peer', () => {
  it('with the range the resolver enforces, and not as a dependency', () => {
    expect(pkg.peerDependencies['@grpc/grpc-js']).toBe(SUPPORTED_GRPC_JS_RANGE);
    expect(pkg.dependencies['@grpc/grpc-js']).toBeUndefined();
  });

  it('refuses a module that is not grpc-js, at registration and in the client', () => {
    const notGrpc = { experimental: {} } as never;
    expect(() => registerCanonResolver({ grpc: notGrpc })).toThrow(expect.objectContaining({ code: ErrorCodes.GRPC_UNSUPPORTED }));
    expect(() => createCanonportClient('127.0.0.1:1', { grpc: notGrpc })).toThrow(expect.objectContaining({ code: ErrorCodes.GRPC_UNSUPPORTED }));
  });

  it('judges a grpc-js whose version it cannot find (a bundle) by the resolver API of 1.14', () => {
    // Shaped like grpc-js, not found on disk to read a version from. 1.10–1.13 have endpointToString but not statusOrFromValue.
    const shape = { credentials: { createInsecure: () => ({}) }, Metadata: class {}, loadPackageDefinition: () => ({}) };
    const pre114 = { ...shape, experimental: { registerResolver: () => undefined, endpointToString: () => '' } };
    expect(() => registerCanonResolver({ grpc: pre114 })).toThrow(expect.objectContaining({ code: ErrorCodes.GRPC_UNSUPPORTED, message: expect.stringContaining(SUPPORTED_GRPC_JS_RANGE) }));
    const registered: string[] = [];
    const like114 = { ...shape, experimental: { registerResolver: (scheme: string) => void registered.push(scheme), statusOrFromValue: () => ({}) } };
    registerCanonResolver({ grpc: like114 });
    expect(registered).toEqual(['canon']);
  });
});

describe(`installed from the tarball beside the application's grpc-js ${SAME_MINOR}`, () => {
  let dir: string;
  let daemon: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.same!;
    daemon = await daemonIn(dir);
  }, INSTALL_MS);

  it('shares one grpc-js with the application, so registerCanonResolver() with no grpc option reaches its channels', async () => {
    expect(existsSync(join(dir, 'node_modules/canonport/node_modules/@grpc/grpc-js'))).toBe(false);
    const r = await dial(dir, daemon, 'default');
    expect(r.canonportGrpc).toBe(r.appGrpc);
    expect(r).toMatchObject({ registered: true, response: SERVING });
  });

  it('dials the same with the module passed in', async () => {
    expect(await dial(dir, daemon, 'pass')).toMatchObject({ registered: true, response: SERVING });
  });

  it("fails a call to a name the daemon has no answer for with UNAVAILABLE and the resolver's reason", async () => {
    expect(await dial(dir, daemon, 'default', { target: UNANSWERED })).toMatchObject({ registered: true, callCode: UNAVAILABLE, callDetails: expect.stringContaining(`canon:///${UNANSWERED}`) });
  });

  it("type-checks a consumer of every export docs/grpc.md promises against the package's .d.ts", async () => {
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
  });
});

describe(`installed from the tarball beside grpc-js ${OLDEST}, the oldest the peer range admits`, () => {
  let dir: string;
  let daemon: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.oldest!;
    // The daemon from this install runs on the application's grpc-js too.
    daemon = await daemonIn(dir);
  }, INSTALL_MS);

  it('runs the daemon and the resolver on that grpc-js', async () => {
    expect(installedVersion(dir, '@grpc/grpc-js')).toBe(OLDEST);
    const r = await dial(dir, daemon, 'default');
    expect(r.canonportGrpc).toBe(r.appGrpc);
    expect(r).toMatchObject({ registered: true, grpcVersion: OLDEST, response: SERVING });
  });

  it('reports a name the daemon has no answer for as an error to the listener', async () => {
    expect(await dial(dir, daemon, 'default', { target: UNANSWERED })).toMatchObject({ registered: true, callCode: UNAVAILABLE, callDetails: expect.stringContaining(`canon:///${UNANSWERED}`) });
  });

  it(`refuses grpc-js ${TOO_OLD} when it is passed in, naming the supported range`, async () => {
    const r = await dial(dir, daemon, 'pass', { grpcSpecifier: 'grpc-js-too-old' });
    expect(r.grpcVersion).toBe(TOO_OLD);
    expect(r).toMatchObject({ registered: false, errorName: 'CanonportError', code: ErrorCodes.GRPC_UNSUPPORTED });
    expect(r.message).toContain(TOO_OLD);
    expect(r.message).toContain(SUPPORTED_GRPC_JS_RANGE);
  });
});

describe('installed as a directory (npm install ../canonport: a symlink to this checkout)', () => {
  let dir: string;
  let daemon: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.linked!;
    daemon = await daemonIn(dir);
  }, INSTALL_MS);

  it('is a symlink, so canonport loads its own checkout’s grpc-js, not the application’s', async () => {
    expect(lstatSync(join(dir, 'node_modules/canonport')).isSymbolicLink()).toBe(true);
    const r = await dial(dir, daemon, 'pass');
    expect(r.canonportGrpc).not.toBe(r.appGrpc);
    expect(r.appGrpc.startsWith(realpathSync(dir))).toBe(true);
  });

  it('throws CP_GRPC_COPY_MISMATCH from registerCanonResolver() without the grpc option, naming both copies and the fix', async () => {
    const r = await dial(dir, daemon, 'default');
    expect(r).toMatchObject({ registered: false, errorName: 'CanonportError', code: ErrorCodes.GRPC_COPY_MISMATCH });
    expect(r.message).toContain(realpathSync(join(dir, 'node_modules/@grpc/grpc-js')));
    expect(r.message).toContain(realpathSync(join(REPO, 'node_modules/@grpc/grpc-js')));
    expect(r.message).toContain('registerCanonResolver({ grpc })');
  });

  it('dials canon: once the application passes its grpc module', async () => {
    expect(await dial(dir, daemon, 'pass')).toMatchObject({ registered: true, response: SERVING });
  });
});

describe('installed alone: npm install canonport, then npx canonport', () => {
  let dir: string;
  let daemon: ScratchDaemon;
  beforeAll(async () => {
    dir = await installs.alone!;
    daemon = await daemonIn(dir, ['npx', '--no-install', 'canonport']);
  }, INSTALL_MS);

  it('gets grpc-js from npm as the peer, and `npx canonport serve` answers `npx canonport resolve`', async () => {
    expect(isSupportedGrpcVersion(installedVersion(dir, '@grpc/grpc-js'))).toBe(true);
    const r = await run('npx', ['--no-install', 'canonport', 'resolve', name, '--daemon', daemon.grpc, '--json'], { cwd: dir, env: userEnv(), timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([{ name, resolution: expect.objectContaining({ port: target.port, addresses: expect.arrayContaining(['127.0.0.1']) }) }]);
  });
});

describe(`added to an application on grpc-js ${TOO_OLD}`, () => {
  it('is refused by npm when the application pins that version: ERESOLVE on the @grpc/grpc-js peer, nothing installed', async () => {
    const dir = await installs.pinnedOld!;
    const declared = () => (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies;
    expect(declared()).toEqual({ '@grpc/grpc-js': TOO_OLD });
    const r = await npmInstall(dir, [tarball]);
    expect(r.code).not.toBe(0);
    const out = r.stdout + r.stderr;
    expect(out).toContain('ERESOLVE');
    expect(out).toContain(`Found: @grpc/grpc-js@${TOO_OLD}`);
    expect(out).toContain(`peer @grpc/grpc-js@"${SUPPORTED_GRPC_JS_RANGE}" from canonport@`);
    expect(existsSync(join(dir, 'node_modules/canonport'))).toBe(false);
    expect(installedVersion(dir, '@grpc/grpc-js')).toBe(TOO_OLD);
    expect(declared()).toEqual({ '@grpc/grpc-js': TOO_OLD });
  }, INSTALL_MS);

  it('forced past the conflict (--legacy-peer-deps), throws CP_GRPC_UNSUPPORTED from registerCanonResolver(), naming the range', async () => {
    const dir = await installs.pinnedOld!;
    const r = await npmInstall(dir, [tarball], ['--legacy-peer-deps']);
    expect(r.code, r.stderr).toBe(0);
    expect(installedVersion(dir, '@grpc/grpc-js')).toBe(TOO_OLD);
    // Registration fails before any channel is made: the daemon address is never dialled.
    const d = await dial(dir, { grpc: '127.0.0.1:1' }, 'default');
    expect(d.canonportGrpc).toBe(d.appGrpc);
    expect(d).toMatchObject({ registered: false, errorName: 'CanonportError', code: ErrorCodes.GRPC_UNSUPPORTED, grpcVersion: TOO_OLD });
    expect(d.message).toContain(SUPPORTED_GRPC_JS_RANGE);
  }, INSTALL_MS);

  it("moves an application that declares ^ to a supported grpc-js inside its own range, sharing one copy", async () => {
    const dir = await installs.caretOld!;
    const r = await npmInstall(dir, [tarball]);
    expect(r.code, r.stderr).toBe(0);
    expect(isSupportedGrpcVersion(installedVersion(dir, '@grpc/grpc-js'))).toBe(true);
    expect(existsSync(join(dir, 'node_modules/canonport/node_modules/@grpc/grpc-js'))).toBe(false);
    expect((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies['@grpc/grpc-js']).toBe(`^${TOO_OLD}`);
  }, INSTALL_MS);
});
