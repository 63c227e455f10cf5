import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import { CanonportError, ErrorCodes } from '../errors.js';

/**
 * Which copy of @grpc/grpc-js canonport works with.
 *
 * The daemon and the CLI run on canonport's own grpc-js, a dependency pinned
 * to the minor its server side, the xDS control plane and
 * @grpc/grpc-js-xds's protos are built for. An application's grpc-js is its
 * own business: canonport declares no peer, so npm installs canonport beside
 * any grpc-js (sharing one copy when the versions agree, nesting canonport's
 * otherwise), and the client side works on the application's copy.
 *
 * grpc-js keeps its resolvers in module state: `canon:` must be registered on
 * the copy the application's channels come from. registerCanonResolver()
 * finds it (the copy the program's main module resolves, through Node's
 * module cache: the very object the application imported), or takes it from
 * `registerCanonResolver({ grpc })`. Nothing on the client side imports
 * grpc-js at module load, so `canonport/client` loads no second copy.
 */

/**
 * The parts of a grpc-js module canonport uses, written loosely (method
 * parameters are checked both ways) so that the `import * as grpc` of any
 * supported grpc-js version type-checks against it.
 */
export interface GrpcModule {
  experimental: {
    registerResolver(scheme: string, resolverClass: unknown): void;
  };
  /** createSsl is used only for a daemon that speaks TLS (every grpc-js has it; optional so a partial stand-in type-checks). */
  credentials: { createInsecure(): unknown; createSsl?(rootCerts?: Buffer | null, privateKey?: Buffer | null, certChain?: Buffer | null): unknown };
  Metadata: new () => unknown;
  loadPackageDefinition(packageDef: unknown): unknown;
}

/**
 * The grpc-js versions the client side (`canon:`, the typed client) is
 * tested with, 1.10 to the newest; package.json has no peer range, this is
 * checked at registration. The floor is the first grpc-js whose resolvers
 * report endpoints (`Endpoint`, 1.10); 1.10–1.13 take them through a
 * listener object (`onSuccessfulResolution` / `onError`), 1.14 through a
 * listener function and a StatusOr, and the resolver speaks both. The
 * ceiling is the next minor: `experimental`, the resolver API, is outside
 * grpc-js's semver promise (1.14 changed the listener's shape).
 */
export const SUPPORTED_GRPC_JS = { min: [1, 10, 0], below: [1, 15, 0] } as const;
export const SUPPORTED_GRPC_JS_RANGE = `>=${SUPPORTED_GRPC_JS.min.join('.')} <${SUPPORTED_GRPC_JS.below.join('.')}`;

const HERE = fileURLToPath(import.meta.url);
const requireHere = createRequire(HERE);

/** canonport's own grpc-js (the daemon's, the CLI's), loaded on first use. */
export function ownGrpc(): typeof grpc {
  return requireHere('@grpc/grpc-js') as typeof grpc;
}

export interface GrpcPackage {
  /** The package directory, symlinks resolved. */
  dir: string;
  version: string;
}

/** The package a loaded grpc-js module object came from, found through Node's module cache; undefined when not found (bundled, or not grpc-js). */
export function grpcPackageOf(mod: unknown): GrpcPackage | undefined {
  if (mod === null || typeof mod !== 'object') return undefined;
  // `import * as grpc` gives a namespace whose `default` is the CommonJS exports object.
  const targets = new Set<unknown>([mod, (mod as { default?: unknown }).default]);
  for (const m of Object.values(requireHere.cache)) {
    if (m && targets.has(m.exports)) return packageAbove(m.filename);
  }
  return undefined;
}

/** The grpc-js package a program would load, resolving from `fromFile`; undefined when it cannot resolve one. */
export function grpcPackageResolvedFrom(fromFile: string): GrpcPackage | undefined {
  try {
    return packageAbove(createRequire(fromFile).resolve('@grpc/grpc-js'));
  } catch {
    return undefined;
  }
}

/**
 * Every grpc-js package this process has loaded (Node's CommonJS cache holds
 * ESM imports of it too): a cached `build/src/index.js` whose package is
 * @grpc/grpc-js, under whatever directory name (an npm alias has its own).
 */
export function loadedGrpcPackages(): GrpcPackage[] {
  const byDir = new Map<string, GrpcPackage>();
  for (const file of Object.keys(requireHere.cache)) {
    if (!/[\\/]build[\\/]src[\\/]index\.js$/.test(file)) continue;
    const dir = dirname(dirname(dirname(file)));
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === '@grpc/grpc-js') byDir.set(realpathSync(dir), { dir: realpathSync(dir), version: String(pkg.version) });
    } catch {
      // not a package root
    }
  }
  return [...byDir.values()];
}

function packageAbove(file: string): GrpcPackage | undefined {
  for (let dir = dirname(realpathSync(file)); dirname(dir) !== dir; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === '@grpc/grpc-js') return { dir, version: String(pkg.version) };
    } catch {
      // no package.json here: keep climbing
    }
  }
  return undefined;
}

/** True for a version inside SUPPORTED_GRPC_JS. */
export function isSupportedGrpcVersion(version: string): boolean {
  const v = version.split(/[.-]/, 3).map(Number);
  const cmp = (a: readonly number[]) => {
    for (let i = 0; i < 3; i++) if ((v[i] ?? 0) !== a[i]) return (v[i] ?? 0) - a[i]!;
    return 0;
  };
  return cmp(SUPPORTED_GRPC_JS.min) >= 0 && cmp(SUPPORTED_GRPC_JS.below) < 0;
}

/** Modules already found good: a check reads package.json files, a client is made per channel. */
const checked = new WeakSet<object>();

const HOW_TO_PASS = "pass the module your channels use: import * as grpc from '@grpc/grpc-js'; registerCanonResolver({ grpc })";

/**
 * Throws CP_GRPC_UNSUPPORTED unless `mod` is a grpc-js whose resolver API
 * canonport speaks: the version when it can be found, else the features.
 */
export function checkGrpcModule(mod: unknown): asserts mod is GrpcModule {
  if (typeof mod === 'object' && mod !== null && checked.has(mod)) return;
  const m = mod as { experimental?: { registerResolver?: unknown; endpointToString?: unknown }; credentials?: unknown; Metadata?: unknown } | null;
  if (m === null || typeof m !== 'object' || typeof m.experimental?.registerResolver !== 'function' || m.credentials === undefined || typeof m.Metadata !== 'function') {
    throw new CanonportError(ErrorCodes.GRPC_UNSUPPORTED, `the grpc option is not a @grpc/grpc-js module (no experimental.registerResolver); ${HOW_TO_PASS}`, {
      supported: SUPPORTED_GRPC_JS_RANGE,
    });
  }
  const pkg = grpcPackageOf(mod);
  if (pkg && !isSupportedGrpcVersion(pkg.version)) {
    throw new CanonportError(
      ErrorCodes.GRPC_UNSUPPORTED,
      `@grpc/grpc-js ${pkg.version} (${pkg.dir}) is outside the versions canonport's resolver is tested with (${SUPPORTED_GRPC_JS_RANGE}): install one of those`,
      { version: pkg.version, dir: pkg.dir, supported: SUPPORTED_GRPC_JS_RANGE },
    );
  }
  // Version unknown (a bundle): resolvers report endpoints from 1.10 on, when experimental.endpointToString came.
  if (!pkg && typeof m.experimental.endpointToString !== 'function') {
    throw new CanonportError(ErrorCodes.GRPC_UNSUPPORTED, `this @grpc/grpc-js predates endpoint resolvers (no experimental.endpointToString, 1.10); canonport supports ${SUPPORTED_GRPC_JS_RANGE}`, {
      supported: SUPPORTED_GRPC_JS_RANGE,
    });
  }
  checked.add(m);
}

/** The file the application's own code resolves packages from: its main module (the working directory in a REPL). */
function applicationMain(): string {
  if (!process.argv[1]) return join(process.cwd(), '[repl]');
  try {
    return realpathSync(process.argv[1]);
  } catch {
    return process.argv[1];
  }
}

/**
 * The grpc-js `canon:` is registered on when the application names none:
 *   1. the copy the program's main module resolves, loaded through Node's
 *      module cache (the very object the application's own import got);
 *   2. else (a main module outside any node_modules tree) the one copy the
 *      process has loaded besides canonport's own;
 *   3. else canonport's own.
 * Copies that libraries nest for themselves (google-gax has one) do not
 * matter in case 1. In case 2 with several candidates there is no telling
 * which one the application's channels come from: CP_GRPC_COPY_MISMATCH,
 * and the application says it with `registerCanonResolver({ grpc })`, as a
 * bundled application (whose grpc-js Node cannot see) must too.
 */
export function applicationGrpc(): GrpcModule {
  const from = applicationMain();
  if (grpcPackageResolvedFrom(from)) return createRequire(from)('@grpc/grpc-js') as GrpcModule;
  const own = grpcPackageResolvedFrom(HERE);
  const others = loadedGrpcPackages().filter((p) => p.dir !== own?.dir);
  if (others.length === 1) return createRequire(join(others[0]!.dir, 'package.json'))('./') as GrpcModule;
  if (others.length > 1) {
    throw new CanonportError(
      ErrorCodes.GRPC_COPY_MISMATCH,
      `this program's main module resolves no @grpc/grpc-js, and it has loaded several: ${others.map((p) => `${p.version} at ${p.dir}`).join(', ')}; ` +
        `canon: registered on one is unknown to channels made with another, so canonport cannot choose; ${HOW_TO_PASS}`,
      { loaded: others.map((p) => p.dir) },
    );
  }
  return ownGrpc() as unknown as GrpcModule;
}
