// Compiles src/ into dist/ (tsc -p tsconfig.json), from scratch, unless
// dist/ is already the build of these sources. `npm install` runs it as
// `prepare`, and so does the first `npx canonport` in a checkout: npx
// installs the checkout into its own cache as a link, which runs `prepare`
// again. Deleting and recompiling dist/ there cost the README's first
// command about 10 s before the daemon answered; now an unchanged checkout
// costs a digest (~30 ms). `npm run build` passes --force.
//
// dist/ is current when dist/.source-digest holds the digest of what tsc
// reads: every file under src/, tsconfig.json, and the TypeScript version
// (and the bundler script, scripts/bundle-ui.mjs).
// A content digest, not mtimes: a fresh clone or checkout gives every file
// a new mtime.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleUi } from './bundle-ui.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.source-digest');

function files(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

export function sourceDigest() {
  const h = createHash('sha256');
  const tsc = JSON.parse(readFileSync(join(ROOT, 'node_modules/typescript/package.json'), 'utf8')).version;
  h.update(`typescript ${tsc}\n`);
  for (const f of [join(ROOT, 'tsconfig.json'), join(ROOT, 'scripts/bundle-ui.mjs'), ...files(join(ROOT, 'src'))]) {
    h.update(`${relative(ROOT, f)}\n`);
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}

const force = process.argv.includes('--force');
const digest = sourceDigest();
const current = existsSync(join(DIST, 'cli/main.js')) && existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === digest;
if (current && !force) {
  console.log('dist/ is the build of these sources: not compiling again (npm run build forces it)');
} else {
  rmSync(DIST, { recursive: true, force: true });
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT, stdio: 'inherit' });
  // The fleet page's scripts as the one script the daemon inlines into the page (when the sources have the page:
  // test/first-run.test.ts builds a tiny project with this script).
  if (existsSync(join(DIST, 'ui/client/app.js'))) await bundleUi(DIST);
  writeFileSync(STAMP, `${digest}\n`);
}
