import { readFileSync } from 'node:fs';

/**
 * canonport's version, from its package.json: one directory above src/ and
 * dist/ alike, two above the bench's compiled copy of the sources
 * (dist-bench/src/, which readiness probes and inventories import too).
 */
function readVersion(): string {
  for (const path of ['../package.json', '../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(path, import.meta.url), 'utf8')) as { version: string }).version;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  throw new Error('canonport: no package.json one or two directories above src/version');
}

export const CANONPORT_VERSION: string = readVersion();
