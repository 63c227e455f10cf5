import { defineConfig } from 'vitest/config';

/**
 * Slow files: the ones that take more than a few seconds each (soak and fuzz
 * runs, installs into scratch projects, whole processes under systemd or a
 * Dockerfile's steps, other languages' toolchains, a real browser). `npm run test:fast` leaves
 * them out for the inner loop; `npm test` (and CI) runs everything.
 */
const SLOW = [
  'test/soak.test.ts',
  'test/package.test.ts',
  'test/deploy-docker.test.ts',
  'test/deploy-systemd.test.ts',
  'test/shutdown.test.ts',
  'test/fuzz-tcp.test.ts',
  'test/fuzz-udp.test.ts',
  'test/interop-go.test.ts',
  'test/genreport.test.ts',
  'test/reload.test.ts',
  'test/cluster-*.test.ts',
  'test/fleet-cluster.test.ts',
  'test/ui-browser.test.ts',
  'test/rollout-netns.test.ts',
  'test/hostile-*.test.ts',
];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real daemons and servers on loopback; forks keep their sockets apart.
    pool: 'forks',
    reporters: ['default'],
    projects: [
      { extends: true, test: { name: 'fast', include: ['test/**/*.test.ts'], exclude: SLOW } },
      { extends: true, test: { name: 'slow', include: SLOW } },
    ],
  },
});
