// Preloaded with `node --require` into a daemon under test: at exit, writes
// the npm packages the process loaded (every CommonJS module, including
// those an ES module imported, is in require's cache; the ES modules through
// loaded-modules-hooks.mjs, which writes the URLs it resolved beside it) to
// the file named by CP_TEST_LOADED_PACKAGES, one name a line.
'use strict';
const { existsSync, readFileSync, writeFileSync } = require('node:fs');
const { register } = require('node:module');
const { join } = require('node:path');
const { fileURLToPath, pathToFileURL } = require('node:url');

const out = process.env.CP_TEST_LOADED_PACKAGES;
if (out) {
  register(pathToFileURL(join(__dirname, 'loaded-modules-hooks.mjs')));
  process.on('exit', () => {
    const names = new Set();
    const esm = existsSync(`${out}.esm`) ? readFileSync(`${out}.esm`, 'utf8').split('\n').filter(Boolean).map((u) => fileURLToPath(u)) : [];
    for (const file of [...Object.keys(require.cache), ...esm]) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(file);
      if (m) names.add(m[1]);
    }
    writeFileSync(out, [...names].sort().join('\n') + '\n');
  });
}
