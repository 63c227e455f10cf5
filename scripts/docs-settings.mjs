// Rewrites the settings table of docs/configuration.md from src/config/settings.ts
// (run through `npm run docs:settings`, which compiles dist/ first).
// test/settings.test.ts fails while the page and the table differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { withSettingsTable } from '../dist/config/docs.js';

const file = new URL('../docs/configuration.md', import.meta.url);
const before = readFileSync(file, 'utf8');
const after = withSettingsTable(before);
if (after === before) console.log('docs/configuration.md: settings table already up to date');
else {
  writeFileSync(file, after);
  console.log('docs/configuration.md: settings table rewritten');
}
