import { readFileSync, realpathSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as ownGrpc from '@grpc/grpc-js';
import { CanonportError, ErrorCodes } from '../errors.js';

/**
 * Which copy of @grpc/grpc-js canonport works with.
 *
 * grpc-js keeps its resolvers in module state: `canon:` registered on one
 * copy is unknown to channels made with another. canonport declares grpc-js
 * as a peer dependency, so a normal install (npm, pnpm) gives the
 * application and canonport one shared copy and the default just works.
 * Two copies still happen: `npm install ../canonport` symlinks, and the
 * symlinked package resolves its own checkout's node_modules. Then the
 * application passes its module (`registerCanonResolver({ grpc })`) and
 * everything canonport does for it (the resolver, its channel to the
 * daemon) runs on that module.
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
 * The grpc-js versions canonport is tested with; package.json's peer range
 * says the same (a test checks). The floor is the peer of
 * @grpc/grpc-js-xds ~1.14.1 (`~1.14.5`), the package canonport takes
 * Envoy's .proto files from: npm refuses an application's older grpc-js at
 * install time (ERESOLVE), so nothing older is supported here either. The
 * ceiling is the next minor because `experimental`, the resolver API, is
 * outside grpc-js's semver promise (1.14 changed its listener's shape).
 */
export const SUPPORTED_GRPC_JS = { min: [1, 14, 5], below: [1, 15, 0] } as const;
export const SUPPORTED_GRPC_JS_RANGE = `>=${SUPPORTED_GRPC_JS.min.join('.')} <${SUPPORTED_GRPC_JS.below.join('.')}`;

/** canonport's own import: the application's copy whenever npm shared one. */
export const defaultGrpc: GrpcModule = ownGrpc as unknown as GrpcModule;

const requireHere = createRequire(import.meta.url);

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
  const m = mod as { experimental?: { registerResolver?: unknown; statusOrFromValue?: unknown }; credentials?: unknown; Metadata?: unknown } | null;
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
  // Version unknown (a bundle): the resolver reports a StatusOr to a listener function, which came with 1.14 (as did experimental.statusOrFromValue).
  if (!pkg && typeof m.experimental.statusOrFromValue !== 'function') {
    throw new CanonportError(ErrorCodes.GRPC_UNSUPPORTED, `this @grpc/grpc-js predates the resolver API of 1.14 (no experimental.statusOrFromValue); canonport supports ${SUPPORTED_GRPC_JS_RANGE}`, {
      supported: SUPPORTED_GRPC_JS_RANGE,
    });
  }
  checked.add(m);
}

/** Where the application's own code gets @grpc/grpc-js: resolved from the main module (the working directory in a REPL). */
function applicationGrpcPackage(): GrpcPackage | undefined {
  let from = join(process.cwd(), '[repl]');
  if (process.argv[1]) {
    try {
      from = realpathSync(process.argv[1]);
    } catch {
      from = process.argv[1];
    }
  }
  return grpcPackageResolvedFrom(from);
}

/**
 * Throws CP_GRPC_COPY_MISMATCH when the application resolves a different
 * copy of grpc-js than canonport's own import: registering on canonport's
 * copy would not reach the application's channels (a symlinked install).
 */
export function checkSharedGrpc(): void {
  const own = grpcPackageOf(ownGrpc);
  const app = applicationGrpcPackage();
  if (!own || !app || own.dir === app.dir) return;
  throw new CanonportError(
    ErrorCodes.GRPC_COPY_MISMATCH,
    `this program resolves @grpc/grpc-js ${app.version} at ${app.dir}, but canonport's own copy is ${own.version} at ${own.dir} ` +
      `(canonport installed by symlink, e.g. npm install ../canonport?): canon: registered there would be unknown to your channels; ${HOW_TO_PASS}`,
    { application: app.dir, canonport: own.dir },
  );
}
