#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=4 --v8-pool-size=1
// Thin launcher: the CLI is compiled to dist/ by `npm install` (prepare).
// Its first line sets what the daemon's idle memory needs (issue 24;
// docs/performance.md, "Memory"), here and, kept equal by
// test/launch-flags.test.ts, in npm start, the systemd unit and the image:
// --max-semi-space-size=4 (MiB): V8's young generation otherwise grows to
//   3 x 16 MiB under a resolver's allocation rate and stays committed; 4 MiB
//   cut the daemon's RSS with 100k cached answers by ~26 MB at no measurable
//   cost in queries/s.
// --v8-pool-size=1: one V8 helper thread instead of four (concurrent GC
//   and compilation), each with its stack and malloc arena: 4 MB of idle
//   RSS single-host, 12 MB in cluster mode.
// MALLOC_ARENA_MAX=2: glibc otherwise gives each thread that allocates an
//   arena of its own (up to 8 per core), kept after the work is done.
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`canonport: internal error: ${err && err.stack ? err.stack : err}`);
    process.exitCode = 70;
  },
);
