#!/usr/bin/env -S node --max-semi-space-size=4
// Thin launcher: the CLI is compiled to dist/ by `npm install` (prepare).
// --max-semi-space-size=4 (MiB): V8's young generation otherwise grows to
// 3 x 16 MiB under a resolver's allocation rate and stays committed; 4 MiB
// cut the daemon's RSS with 100k cached answers by ~26 MB at no measurable
// cost in queries/s. The systemd unit, the Dockerfile and the bench pass it too.
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
