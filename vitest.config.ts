import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start real daemons and servers on loopback; forks keep their sockets apart.
    pool: 'forks',
    reporters: ['default'],
  },
});
