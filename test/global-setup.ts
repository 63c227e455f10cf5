import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GENREPORT_ENV, genreportBinary } from './helpers/genreport.js';
import { defaultStateDirs } from '../src/cluster/state-dir.js';
import { runTemp } from './helpers/run-temp.js';

/**
 * Once per vitest run, before any test file:
 *
 * - builds dist/ once: the CLI tests spawn `node bin/canonport.js`, which
 *   runs the compiled code. A type error fails the whole run here, with
 *   tsc's own output. The way `npm run build` does (scripts/build.mjs: the
 *   lean JavaScript a daemon's memory is measured with). Incrementally: tsc re-emits only what changed since
 *   the last run (its notes in node_modules/.cache); it never notices
 *   outputs deleted behind its back, so without dist/ the notes go first.
 * - gives the run temporary directories of its own, empty: TMPDIR (every
 *   test file, and every process a test starts, inherits it) and one on
 *   /dev/shm for etcd's data (CANONPORT_TEST_SHM, test/helpers/etcd.ts).
 *   At the end, whatever is left in them fails the run (exit code 1, after
 *   vitest's summary), each entry named
 *   (tests remove what they make: helpers/temp.ts), and then they are
 *   removed, so a run leaves nothing in the temporary directory either way.
 *   Runs of other checkouts on the machine have their own, so the check
 *   sees this run's leftovers only. The same for a cluster daemon's default
 *   state directory (/var/lib/canonport, ~/.local/state/canonport): a test
 *   gives its daemons their own; one the run made fails it, and goes.
 *
 * vitest calls a global setup once per project (the root and each of
 * vitest.config.ts's projects): only the first call does the work.
 */
export default function setup(): (() => void) | undefined {
  const g = globalThis as { canonportGlobalSetupDone?: true };
  if (g.canonportGlobalSetupDone) return undefined;
  g.canonportGlobalSetupDone = true;
  const root = fileURLToPath(new URL('..', import.meta.url));
  // Named for the lean emit: notes left by a plain tsc build (dist.tsbuildinfo) would take its commented files as current.
  const buildInfo = join(root, 'node_modules/.cache/canonport/dist-lean.tsbuildinfo');
  if (!existsSync(join(root, 'dist'))) rmSync(buildInfo, { force: true });
  try {
    // tsc's lean emit, then the fleet page's one script (scripts/bundle-ui.mjs).
    execFileSync(process.execPath, ['scripts/build.mjs', '--incremental', buildInfo], { cwd: root, stdio: 'pipe' });
  } catch (err) {
    const out = (err as { stdout?: Buffer }).stdout?.toString() ?? String(err);
    throw new Error(`tsc failed, so the CLI cannot be tested:\n${out}`);
  }
  return runTempDirs();
}

function runTempDirs(): () => void {
  // test/preflight.sh builds genreport under the temporary directory the run starts with: find it before TMPDIR moves.
  if (!process.env[GENREPORT_ENV]) {
    const built = genreportBinary();
    if (built) process.env[GENREPORT_ENV] = built;
  }
  // Under test/sandbox.mjs, both bases are the sandbox's own (it removes them even after a killed run).
  const shmBase = process.env.CANONPORT_TEST_SHM_BASE ?? (existsSync('/dev/shm') ? '/dev/shm' : undefined);
  const run = runTemp(shmBase ? [tmpdir(), shmBase] : [tmpdir()]);
  process.env.TMPDIR = run.dirs[0];
  if (shmBase) process.env.CANONPORT_TEST_SHM = run.dirs[1];
  const stateDirs = defaultStateDirs().filter((d) => !existsSync(d));
  return () => {
    try {
      const made = stateDirs.filter((d) => existsSync(d));
      for (const d of made) rmSync(d, { recursive: true, force: true });
      run.finish();
      if (made.length > 0) throw new Error(`a cluster daemon of this run used the machine's default state directory (${made.join(', ')}): give it one of the test's own (--state-dir)`);
    } catch (err) {
      // vitest prints a teardown's error ("error during close") but keeps the exit code: the run fails here.
      process.exitCode = 1;
      throw err;
    }
  };
}
