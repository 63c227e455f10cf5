import { availableParallelism } from 'node:os';
import { relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { cliMaxWorkers } from './test/helpers/max-workers.js';

const globRe = (g: string) => new RegExp(`^${g.replace(/[.]/g, '\\.').replace(/\*/g, '[^/]*')}$`);

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
 * package installs, which type-check with tsc. (With
 * CANONPORT_TEST_WAITING_WORKERS, WAITING's files run first, in a group of
 * their own.)
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

/**
 * Slow files that mostly wait (issue 23), and an experiment with them, off unless CANONPORT_TEST_WAITING_WORKERS
 * is set: lease TTLs, etcd killed and restarted, connection floods held for seconds. Each used a quarter or less of
 * a core while it ran (CPU seconds of a file run alone, `/usr/bin/time` over `npm test -- FILE`, against its wall
 * time, of which about 7 s is vitest's own start: cluster-daemon-faults 21 s of 55, cluster-etcd 16 of 82,
 * hostile-connections 11 of 64, cluster-convergence 8 of 53; the soak 14 of 65 and hostile-streams 15 of 67 too;
 * hostile-cluster's 27, deploy-docker's 28, package's 54 and rollout-netns' 83 compute), yet each holds one of the
 * two worker slots while a core idles. With CANONPORT_TEST_WAITING_WORKERS=N they form their own project,
 * `slow-waiting`, which runs first, N at a time, before the other projects share the two slots. vitest 4 runs
 * projects with different `maxWorkers` one group after another (`sequence.groupOrder`), never side by side, hence a
 * group of its own rather than more workers for everyone: the fast files are CPU-bound, and four of them at once on
 * two cores only failed timing bounds under load.
 *
 * Why it is off: on this machine shared at a load of 14–30 (runs of the group against main's two slots, back to
 * back) the group took 0.55–0.73 of the time (these four alone: 81.9 s against 116.3 s, both green), but did not
 * stay green where two at a time did: cluster-daemon-faults' "all of etcd SIGKILLed" timed out in 2 of 6 group runs
 * (0 of 5 at two slots); the soak failed its 2,000 queries/s in each of 5 runs beside three or more others (2 of 4
 * beside one); hostile-streams' bystander missed its bounds during the
 * floods; six at a time with shutdown, names-lab, cluster-containers and genreport (they wait as much) failed a dozen
 * tests. Whether four at once holds on a quiet machine (CI) is for a quiet measurement to say:
 * `CANONPORT_TEST_WAITING_WORKERS=4 npm test`.
 */
const WAITING = ['test/cluster-daemon-faults.test.ts', 'test/cluster-etcd.test.ts', 'test/hostile-connections.test.ts', 'test/cluster-convergence.test.ts'];
/** 0 (unset): no `slow-waiting` project, WAITING's files are in `slow` like the others. */
const WAITING_WORKERS = Number(process.env.CANONPORT_TEST_WAITING_WORKERS ?? 0) || 0;
const WAITING_RES = WAITING.map(globRe);

const SLOW_RES = SLOW.map(globRe);


/**
 * The order files start in. vitest's own runs one project's files before the
 * next project's (`fast` before `slow`), so the minute-long files started
 * last and set the length of the run. Here every slow file comes first, in
 * SLOW's order (WAITING's before them when they form their own project,
 * which vitest runs as a group before the others), then the rest, longest
 * first by the durations vitest kept from the last run (node_modules/.vite),
 * else in vitest's order.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const key = (s: TestSpecification, i: number) => {
      const file = relative(root, s.moduleId);
      const waiting = WAITING_WORKERS > 0 ? WAITING_RES.findIndex((re) => re.test(file)) : -1;
      const slow = waiting !== -1 ? waiting - WAITING.length : SLOW_RES.findIndex((re) => re.test(file));
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
    // cap, inventory's HTTP probe) under load. `npm test -- --maxWorkers=N` overrides it (cliMaxWorkers).
    maxWorkers: cliMaxWorkers() ?? availableParallelism(),
    reporters: ['default'],
    sequence: { sequencer: LongestFirst },
    projects: [
      { extends: true, test: { name: 'fast', include: ['test/**/*.test.ts'], exclude: [...SLOW, ...OWN_PROCESS], isolate: false, sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: 'fast-own-process', include: OWN_PROCESS, sequence: { groupOrder: 1 } } },
      ...(WAITING_WORKERS > 0 ? [{ extends: true as const, test: { name: 'slow-waiting', include: WAITING, maxWorkers: WAITING_WORKERS, sequence: { groupOrder: 0 } } }] : []),
      { extends: true, test: { name: 'slow', include: SLOW, exclude: WAITING_WORKERS > 0 ? WAITING : [], sequence: { groupOrder: 1 } } },
    ],
  },
});
