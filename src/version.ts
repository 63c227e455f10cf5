import { readFileSync } from 'node:fs';

/** canonport's version, from its package.json (one directory above src/ and dist/ alike). */
export const CANONPORT_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
