import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attribute, groupOf, retainers } from '../bench/heap-share.js';
import { REPO } from './helpers/serve-process.js';
import { tempDir } from './helpers/temp.js';

/**
 * bench/heap-share.ts attributes a real heap snapshot's objects to the
 * modules whose scripts they belong to (issue 24: each module's share of the
 * idle daemon's heap). A real node process imports yaml (an npm package of
 * ~70 files) and writes its snapshot with v8.writeHeapSnapshot; the
 * attribution must give yaml its scripts and at least their source text,
 * and leave a package the process never loaded out.
 */

const work = tempDir('canonport-heap-share-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('heap-share', () => {
  it('groups a script by npm package, canonport folder or Node built-in', () => {
    expect(groupOf('file:///x/node_modules/@grpc/grpc-js/build/src/server.js')).toBe('@grpc/grpc-js');
    expect(groupOf('file:///x/node_modules/a/node_modules/zod/v4/locales/ar.js')).toBe('zod (its locales)');
    expect(groupOf('file:///x/node_modules/zod/v4/core/schemas.js')).toBe('zod');
    expect(groupOf('file:///opt/canonport/dist/dns/server.js')).toBe('canonport dns/');
    expect(groupOf('file:///opt/canonport/dist/errors.js')).toBe('canonport (top level)');
    expect(groupOf('node:internal/modules/esm/loader')).toBe('node built-in modules');
  });

  it("gives a loaded package its scripts and their source from a real process's heap snapshot", () => {
    const file = join(work, 'p.heapsnapshot');
    const script = `const y = await import('yaml'); globalThis.keep = y; (await import('node:v8')).writeHeapSnapshot(${JSON.stringify(file)});`;
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, stdio: 'ignore' });
    const yamlDir = join(REPO, 'node_modules', 'yaml', 'dist');
    const { shares, total } = attribute(JSON.parse(readFileSync(file, 'utf8')));
    const yaml = shares.find((s) => s.group === 'yaml');
    expect(yaml, 'yaml attributed').toBeDefined();
    // yaml's ESM entry imports dozens of its files; each is a script whose source V8 keeps.
    expect(yaml!.scripts).toBeGreaterThan(20);
    // Its entry requires nearly all of dist/: at least half of dist's JavaScript is source the heap holds.
    expect(yaml!.source).toBeGreaterThan(jsBytes(yamlDir) / 2);
    expect(yaml!.code).toBeGreaterThan(0);
    expect(shares.find((s) => s.group === 'etcd3')).toBeUndefined();
    expect(shares.find((s) => s.group === 'node built-in modules')!.scripts).toBeGreaterThan(10);
    // Attribution never counts an object twice.
    expect(shares.reduce((a, s) => a + s.source + s.code + s.closures, 0)).toBeLessThanOrEqual(total);
  });

  it('names what no script owns by constructor and by holder: a 1.6 MB array only a global holds is the largest retainer, with its path', () => {
    const file = join(work, 'r.heapsnapshot');
    // 100,000 objects of one class, kept in an array that one object on globalThis holds.
    const script = `class Kept { constructor(i) { this.i = i; } } globalThis.holder = { kept: Array.from({ length: 100000 }, (_, i) => new Kept(i)) }; (await import('node:v8')).writeHeapSnapshot(${JSON.stringify(file)});`;
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: REPO, stdio: 'ignore' });
    const { kinds, largest, total } = retainers(JSON.parse(readFileSync(file, 'utf8')), 5);
    const kept = kinds.find(([k]) => k === 'object: Kept');
    expect(kept?.[2]).toBe(100000);
    // Each Kept object is at least a map word, properties, elements and one field.
    expect(kept![1]).toBeGreaterThanOrEqual(100000 * 16);
    // The array retains every Kept object (only it holds them): the largest retainer, held by `.kept` of the holder.
    expect(largest[0]!.retained).toBeGreaterThan(kept![1]);
    expect(largest[0]!.path).toMatch(/^\.(kept|elements) of /);
    expect(kinds.reduce((a, [, b]) => a + b, 0)).toBe(total);
  });
});

/** Bytes of the .js files under `dir`. */
function jsBytes(dir: string): number {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.js'))
    .reduce((a, e) => a + statSync(join(e.parentPath, e.name)).size, 0);
}
