// Gives dist/ a zod of its own: dist/vendor/zod.js, the part of zod that
// dist/'s JavaScript calls, bundled by rolldown into one ASCII file, and
// points dist/'s `import { z } from 'zod'` at it (issue 24: idle memory).
//
// Why: zod 4's package entry is ~260 ES modules, 40 locales among them (an
// `export * as locales` that every entry point evaluates), 2.3 M characters
// of source of which 1.8 M sit in files V8 keeps at two bytes a character.
// Imported as published it added 3.3 MB of V8 heap and ~13 MB of RSS to every
// daemon; the bundle of what canonport calls (z.string, z.object, ... and the
// English messages zod registers on its first schema) adds 0.8 MB and 1.5 MB,
// and loads in 8 ms instead of 30-70 (node --expose-gc, one import each).
// The same library and version (rolldown resolves node_modules/zod), so the
// errors and their messages are zod's own; only the module graph changes.
// Identifiers are kept (no mangling): a stack trace through zod stays
// readable. The TypeScript sources and the declarations still name 'zod':
// the tests that import src/ and every editor see the package itself.
//
// The members are read from dist/ itself (every `z.<name>` in a module that
// imports zod: types are gone from the JavaScript), so a schema that starts
// using another zod function gets it in the next build; any other way of
// importing zod in src/ fails the build here rather than at a user's start.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const IMPORT = /^import \{ z \} from 'zod';$/m;
/** The same import once pointed at the bundle (an incremental build leaves unchanged files as they were). */
const BUNDLED = /^import \{ z \} from '(?:\.\.?\/)+vendor\/zod\.js';$/m;
const ENTRY = '\0canonport-zod-entry';

/** dist/'s JavaScript files (not the vendor bundle itself). */
function jsFiles(dist) {
  return readdirSync(dist, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.js') && !f.startsWith(`vendor${sep}`))
    .map((f) => join(dist, f));
}

/** The zod members dist/ calls, sorted; throws on an import of zod in any form but `import { z } from 'zod'`. */
export function zodMembers(dist) {
  const names = new Set();
  for (const file of jsFiles(dist)) {
    const text = readFileSync(file, 'utf8');
    if (!IMPORT.test(text) && !BUNDLED.test(text)) {
      if (/\bfrom ['"]zod(\/[^'"]*)?['"]|\bimport\(\s*['"]zod/.test(text)) {
        throw new Error(`${relative(ROOT, file)} imports zod other than as \`import { z } from 'zod'\` (scripts/bundle-zod.mjs)`);
      }
      continue;
    }
    for (const m of text.matchAll(/\bz\.([A-Za-z_$][\w$]*)/g)) names.add(m[1]);
  }
  return [...names].sort();
}

/** Writes <dist>/vendor/zod.js and points dist/'s imports of zod at it. */
export async function bundleZod(dist = join(ROOT, 'dist')) {
  const members = zodMembers(dist);
  if (members.length === 0) return;
  const { build } = await import('rolldown');
  const entry = [
    `import { ${members.map((n, i) => `${n} as m${i}`).join(', ')} } from 'zod';`,
    `export const z = Object.freeze({ ${members.map((n, i) => `${JSON.stringify(n)}: m${i}`).join(', ')} });`,
  ].join('\n');
  await build({
    input: ENTRY,
    cwd: ROOT,
    logLevel: 'warn',
    plugins: [{ name: 'canonport-zod-entry', resolveId: (id) => (id === ENTRY ? id : null), load: (id) => (id === ENTRY ? entry : null) }],
    output: {
      file: join(dist, 'vendor', 'zod.js'),
      format: 'esm',
      charset: 'ascii',
      sourcemap: false,
      comments: false,
      minify: { compress: false, mangle: false, codegen: { removeWhitespace: true } },
    },
    write: true,
  });
  for (const file of jsFiles(dist)) {
    const text = readFileSync(file, 'utf8');
    if (!IMPORT.test(text)) continue;
    let to = relative(dirname(file), join(dist, 'vendor', 'zod.js')).split(sep).join('/');
    if (!to.startsWith('.')) to = `./${to}`;
    writeFileSync(file, text.replace(IMPORT, `import { z } from '${to}';`));
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await bundleZod(process.argv[2]);
