import { availableParallelism } from 'node:os';
import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Slow files: the ones that take more than a few seconds each (soak and fuzz
 * runs, installs into scratch projects, whole processes under systemd or a
 * Dockerfile's steps, other languages' toolchains, a real browser). `npm run
 * test:fast` leaves them out for the inner loop; `npm test` (and CI) runs
 * everything.
 *
 * A run starts them in this order (LongestFirst below): longest first, as
 * measured (vitest's JSON reporter, per file), except that the soak, the
 * longest and the one that measures under a steady load, starts beside the
 * cluster files, which mostly wait on etcd and leases, not beside the
 * package installs, which type-check with tsc.
 */
const SLOW = [
  'test/soak.test.ts',
  'test/cluster-*.test.ts',
  'test/package.test.ts',
  'test/reload.test.ts',
  'test/shutdown.test.ts',
  'test/genreport.test.ts',
  'test/fuzz-tcp.test.ts',
  'test/deploy-docker.test.ts',
  'test/deploy-systemd.test.ts',
  'test/interop-go.test.ts',
  'test/fleet-cluster.test.ts',
  'test/fuzz-udp.test.ts',
  'test/ui-browser.test.ts',
  'test/rollout-netns.test.ts',
  // Issue 22: two hosts, etcd, a real Prometheus; about 40 s.
  'test/names-lab.test.ts',
  // Issue 21's attacks, in the namespace lab against real daemons: about two minutes together.
  'test/hostile-*.test.ts',
];

/**
 * Fast files that need a process of their own (project `fast-own-process`): every other fast file shares its
 * worker's process and module cache with the files before it (project `fast`, `isolate: false`), so a worker
 * imports and transforms the code once instead of once per file (about 40 s of a run's CPU on two cores, issue 23).
 * These cannot share: @grpc/grpc-js-xds reads its bootstrap (GRPC_XDS_BOOTSTRAP or _CONFIG, set by the file) once
 * per process and keeps it, so a second file's xDS channel would dial the first file's daemon.
 */
const OWN_PROCESS = ['test/xds-node.test.ts', 'test/xds-daemon-node.test.ts', 'test/deploy-files.test.ts'];

const globRe = (g: string) => new RegExp(`^${g.replace(/[.]/g, '\\.').replace(/\*/g, '[^/]*')}$`);
const SLOW_RES = SLOW.map(globRe);

/**
 * The order files start in. vitest's own runs one project's files before the
 * next project's (`fast` before `slow`), so the minute-long files started
 * last and set the length of the run. Here every slow file comes first, in
 * SLOW's order, then the rest, longest first by the durations vitest kept
 * from the last run (node_modules/.vite), else in vitest's order.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const key = (s: TestSpecification, i: number) => {
      const file = relative(root, s.moduleId);
      const slow = SLOW_RES.findIndex((re) => re.test(file));
      const last = this.ctx.cache.getFileTestResults(`${s.project.name}:${file}`)?.duration ?? 0;
      // A worker's shared process serves the next file only when that one shares too: the fast files that need a
      // process of their own start before the shared ones, not among them.
      return { s, slow: slow !== -1 ? slow : s.project.config.isolate ? SLOW.length : SLOW.length + 1, last, i };
    };
    return base
      .map(key)
      .sort((a, b) => a.slow - b.slow || b.last - a.last || a.i - b.i)
      .map((k) => k.s);
  }
}

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    setupFiles: ['test/file-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real daemons and servers on loopback; forks keep their sockets apart.
    pool: 'forks',
    // One file per core at a time. vitest's default, cores less one, is a single worker on a
    // 2-core machine: the files ran one after another, though many mostly wait (daemons starting,
    // etcd, leases). Under `npm test` a run has its own network namespace (test/sandbox.mjs), so
    // its files only meet each other, and they keep apart (ports: a band per worker,
    // helpers/ports.ts; namespaces and bridges named by PID). More workers than cores did not pay
    // here: the `fast` files are mostly CPU (importing the code: ~60 of their ~75 CPU seconds), and
    // four workers on two cores gave the same wall time and timing failures (abuse.test's in-flight
    // cap, inventory's HTTP probe) under load. `npm test -- --maxWorkers=N` overrides it.
    maxWorkers: availableParallelism(),
    reporters: ['default'],
    sequence: { sequencer: LongestFirst },
    projects: [
      { extends: true, test: { name: 'fast', include: ['test/**/*.test.ts'], exclude: [...SLOW, ...OWN_PROCESS], isolate: false } },
      { extends: true, test: { name: 'fast-own-process', include: OWN_PROCESS } },
      { extends: true, test: { name: 'slow', include: SLOW } },
    ],
  },
});
