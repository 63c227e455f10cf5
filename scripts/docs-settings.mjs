// Rewrites the README's settings table from src/config/settings.ts (run through
// `npm run docs:settings`, which compiles dist/ first). test/settings-docs.test.ts
// fails while the README and the table differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { withSettingsTable } from '../dist/config/docs.js';

const file = new URL('../README.md', import.meta.url);
const before = readFileSync(file, 'utf8');
const after = withSettingsTable(before);
if (after === before) console.log('README.md: settings table already up to date');
else {
  writeFileSync(file, after);
  console.log('README.md: settings table rewritten');
}
