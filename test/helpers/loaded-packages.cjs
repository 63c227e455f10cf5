// Preloaded with `node --require` into a daemon under test: at exit, writes
// the npm packages the process loaded (every CommonJS module, including
// those an ES module imported, is in require's cache) to the file named by
// CP_TEST_LOADED_PACKAGES, one name a line.
'use strict';
const { writeFileSync } = require('node:fs');

const out = process.env.CP_TEST_LOADED_PACKAGES;
if (out) {
  process.on('exit', () => {
    const names = new Set();
    for (const file of Object.keys(require.cache)) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\/(?!.*node_modules\/)/.exec(file);
      if (m) names.add(m[1]);
    }
    writeFileSync(out, [...names].sort().join('\n') + '\n');
  });
}
