// Bundles the fleet page's scripts (dist/ui/client/*.js, compiled by tsc)
// into one classic script, dist/ui/client/page.js, that the daemon inlines
// into the page (src/ui/page.ts): a first visit then needs no request
// beyond the page itself before it draws (issue 25: five ES modules were a
// waterfall of requests, each revalidated on every load). rolldown, a
// maintained bundler (the one vite uses), rather than a hand-made
// concatenation of modules. Run by scripts/build.mjs (the build and the test
// run's global setup) after tsc; ASCII, like the rest of dist/.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Writes `<dist>/ui/client/page.js` from `<dist>/ui/client/app.js` and what it imports. */
export async function bundleUi(dist = join(ROOT, 'dist')) {
  const { build } = await import('rolldown');
  const dir = join(dist, 'ui', 'client');
  await build({
    input: join(dir, 'app.js'),
    // Nothing from outside the page's own modules (they import only each other, and types).
    external: () => false,
    logLevel: 'warn',
    output: { file: join(dir, 'page.js'), format: 'iife', minify: true, charset: 'ascii', sourcemap: false, comments: { legal: false, annotation: false, jsdoc: false } },
    write: true,
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await bundleUi(process.argv[2]);
