import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * canonport as a user installs it: `npm pack` of this checkout, installed
 * (or the checkout itself, as `npm install ../canonport` does) into a
 * scratch project in a temp dir, next to the project's own dependencies.
 * Installs need the npm registry; a failed install fails the test, saying so.
 */

export const REPO = fileURLToPath(new URL('../..', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * The environment without npm's per-run variables (set when the tests run
 * under `npm test`) and without CANONPORT_* settings: a scratch npm then
 * behaves as in the user's shell, and the daemon sees only the test's flags.
 * The proxy settings stay: in the tests' sandbox (test/sandbox.mjs) they are
 * npm's one way to the registry.
 */
export function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((!/^npm_/i.test(k) || /^npm_config_(https_)?proxy$/.test(k)) && !k.startsWith('CANONPORT_') && k !== 'INIT_CWD') env[k] = v;
  }
  return { ...env, ...extra };
}

export function run(file: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { cwd: opts.cwd, env: opts.env ?? userEnv(), timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `npm pack` of the checkout (dist/ as test/global-setup.ts built it) into `dir`; the tarball's path. */
export async function packCanonport(dir: string): Promise<string> {
  // --ignore-scripts: `prepare` would rebuild dist/ while other test files run it.
  const r = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: REPO });
  if (r.code !== 0) throw new Error(`npm pack failed (exit ${r.code}):\n${r.stderr}`);
  const [info] = JSON.parse(r.stdout) as { filename: string }[];
  return join(dir, info!.filename);
}

/** `npm install` of `specs` in `dir` as a user runs it (see scratchProject for the flags); npm's exit code and output, failure included. */
export function npmInstall(dir: string, specs: string[], extraArgs: string[] = []): Promise<Run> {
  return run('npm', ['install', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund', ...extraArgs, ...specs], { cwd: dir, timeoutMs: 240_000 });
}

/**
 * A fresh project in a temp dir with `specs` installed by npm (a registry
 * spec like `@grpc/grpc-js@1.14.5`, a tarball path or a directory).
 * --ignore-scripts: installing a directory runs its `prepare` (a rebuild of
 * this checkout's dist/ under running tests), and no test here needs an
 * install script. --prefer-offline keeps a warm cache fast. `saveExact`
 * records the versions exactly in package.json (npm's default is `^`),
 * as an application that pins its dependencies does.
 */
export async function scratchProject(name: string, specs: string[], opts: { saveExact?: boolean } = {}): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), `canonport-${name}-`));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `scratch-${name}`, private: true, type: 'module' }, null, 2));
  const r = await npmInstall(dir, specs, opts.saveExact ? ['--save-exact'] : []);
  if (r.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `npm could not install ${specs.join(' ')} into ${dir} (exit ${r.code}); these tests install canonport as users do and need the npm registry:\n${r.stderr.slice(-4000)}`,
    );
  }
  return dir;
}

/** The version of a package as installed in a project. */
export function installedVersion(project: string, pkg: string): string {
  return (JSON.parse(readFileSync(join(project, 'node_modules', pkg, 'package.json'), 'utf8')) as { version: string }).version;
}

export interface ScratchDaemon {
  proc: ChildProcess;
  /** The gRPC address it bound, `host:port`. */
  grpc: string;
  stderr: () => string;
  stop(): Promise<void>;
}

/** True while any process of the group `pgid` lives. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * `canonport serve` from a scratch project's install, on loopback with
 * ephemeral ports; resolves at its `ready` log line (which names the bound
 * addresses). `command` is the argv that runs the CLI there. It runs in its
 * own process group: under `npx` the daemon is a grandchild that npm does not
 * stop when it is itself signalled, so stop() signals the group it started.
 */
export async function startInstalledDaemon(project: string, command: string[], readyMs = 30_000): Promise<ScratchDaemon> {
  const proc = spawn(command[0]!, [...command.slice(1), 'serve', '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'], {
    cwd: project,
    env: userEnv(),
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  const pgid = proc.pid!;
  let text = '';
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const stop = async () => {
    if (!groupAlive(pgid)) return;
    process.kill(-pgid, 'SIGTERM');
    for (let waited = 0; groupAlive(pgid) && waited < 10_000; waited += 100) await new Promise((r) => setTimeout(r, 100));
    if (groupAlive(pgid)) process.kill(-pgid, 'SIGKILL');
  };
  const ready = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready log line within ${readyMs} ms:\n${text}`)), readyMs);
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (chunk: string) => {
      text += chunk;
      for (const line of text.split('\n')) {
        try {
          const l = JSON.parse(line) as { event?: string; grpc?: string };
          if (l.event === 'ready' && l.grpc) {
            clearTimeout(timer);
            resolve(l.grpc);
          }
        } catch {
          // not a whole JSON line (yet)
        }
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`canonport serve exited with ${code} before ready:\n${text}`));
    });
  });
  try {
    return { proc, grpc: await ready, stderr: () => text, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
