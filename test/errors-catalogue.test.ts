import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../src/errors.js';

/**
 * Every stable code the daemon logs or sends is in the catalogue
 * (src/errors.ts), so operators can look each one up and tests assert on
 * codes that exist. The scan reads every source file for `CP_…` tokens.
 */

const SRC = fileURLToPath(new URL('../src', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** `CP_` tokens not inside a longer identifier (TCP_LISTEN is not one); `CP_REGISTRY_*` in prose names a family. */
const TOKEN = /(?<![A-Za-z0-9_])CP_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_*])/g;

describe('the error catalogue', () => {
  const catalogued = new Set<string>(Object.values(ErrorCodes));

  it('holds every CP_ code that appears in src/', () => {
    const missing: string[] = [];
    for (const file of sources(SRC)) {
      for (const [code] of readFileSync(file, 'utf8').matchAll(TOKEN)) {
        if (!catalogued.has(code)) missing.push(`${relative(SRC, file)}: ${code}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('the scan finds codes at all (it would pass vacuously if the pattern broke)', () => {
    const text = readFileSync(join(SRC, 'errors.ts'), 'utf8');
    expect([...text.matchAll(TOKEN)].length).toBeGreaterThanOrEqual(catalogued.size);
    expect('log({ code: "CP_NOT_IN_CATALOGUE" })'.match(TOKEN)).toEqual(['CP_NOT_IN_CATALOGUE']);
    expect('TCP_LISTEN CP_REGISTRY_*'.match(TOKEN)).toBeNull();
  });

  it('gives each code one name, each with a doc comment', () => {
    const values = Object.values(ErrorCodes);
    expect(new Set(values).size).toBe(values.length);
    const text = readFileSync(join(SRC, 'errors.ts'), 'utf8');
    for (const [key] of Object.entries(ErrorCodes)) {
      expect(text, key).toMatch(new RegExp(`\\*/\\s*\\n\\s*${key}:`));
    }
  });
});
