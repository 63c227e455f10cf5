import { execFileSync, spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO, startServe } from './helpers/serve-process.js';
import { tempDir } from './helpers/temp.js';

/**
 * What a mode does not use, a daemon does not load (issue 24: idle memory).
 * A real single-host `canonport serve`, started through node as its unit
 * starts it, answers, stops, and reports (through a preload) every npm
 * package it loaded: etcd3 and what only cluster mode needs are not among
 * them. etcd3 alone parses etcd's protos at load, about 7 MB of RSS; a
 * static import of a helper from src/cluster/publisher.ts once pulled it into
 * every daemon. Reflection is served from the start but loaded on its first
 * call (test/reflection.test.ts asks it with real clients).
 */

const work = tempDir('canonport-lazy-');
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('a single-host daemon', () => {
  it('loads neither etcd3 nor what only cluster mode or xDS use, nor reflection until a client asks, nor zod but its bundle', async () => {
    const out = join(work, 'loaded.txt');
    const d = await startServe(['--zone', 'lazy.test'], {
      env: { CP_TEST_LOADED_PACKAGES: out },
      spawn: (node, argv, o) => spawnWithPreload(node, argv, o),
    });
    await d.stop();
    const loaded = readFileSync(out, 'utf8').trim().split('\n');
    // The preload sees packages at all: these every daemon uses.
    expect(loaded).toEqual(expect.arrayContaining(['dns2', '@grpc/grpc-js', 'prom-client']));
    expect(loaded.filter((p) => ['etcd3', 'cockatiel', 'bignumber.js', '@grpc/grpc-js-xds', 'pino-pretty', '@grpc/reflection'].includes(p))).toEqual([]);
    // zod is the one bundled module dist/vendor/zod.js (scripts/bundle-zod.mjs), not the package's ~260: the preload's
    // hooks saw the daemon's ES modules, the bundle among them, and not one of zod's own files.
    const urls = readFileSync(`${out}.esm`, 'utf8').trim().split('\n');
    expect(urls).toContain(pathToFileURL(join(REPO, 'dist', 'vendor', 'zod.js')).href);
    expect(urls.filter((u) => u.includes('/node_modules/zod/'))).toEqual([]);
    expect(loaded).not.toContain('zod');
  });
});

describe("a daemon's zod", () => {
  // zod 4 as published is ~260 ES modules (40 locales among them) and added 3.3 MB of heap and ~13 MB of RSS;
  // scripts/bundle-zod.mjs bundles the part dist/ calls into dist/vendor/zod.js (0.8 MB of heap). Which modules a
  // daemon loads is checked above, on the same daemon.
  it("is zod itself: a bad registry gets zod's own message (an invalid type, from its English locale)", () => {
    const registry = join(work, 'zod-registry.yaml');
    writeFileSync(registry, 'services:\n  web: {port: "eighty"}\n');
    const bad = spawnSync(process.execPath, [join(REPO, 'bin', 'canonport.js'), 'check', '--registry', registry], { cwd: work, encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/\(services\.web\.port\): Invalid input: expected number, received string \[CP_REGISTRY_INVALID\]/);
  });
});

describe("Node's bundled root certificates", () => {
  // An ES import of node:tls reads every export, rootCertificates too: ~140 PEM strings (0.22 MB) kept in the heap.
  it('are never parsed into the heap by loading the CLI, the daemon or the gRPC client (src/config/tls.ts takes it with require())', () => {
    const file = join(work, 'tls.heapsnapshot');
    const script = [
      ...['cli/main.js', 'daemon/daemon.js', 'grpc/canonport-client.js', 'http/policy.js'].map((m) => `await import(${JSON.stringify(join(REPO, 'dist', m))});`),
      `(await import('node:v8')).writeHeapSnapshot(${JSON.stringify(file)});`,
    ].join(' ');
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: work, stdio: 'ignore' });
    const strings = (JSON.parse(readFileSync(file, 'utf8')) as { strings: string[] }).strings;
    // The process did load what a daemon loads (its own PEM pattern among them)…
    expect(strings.some((x) => x.startsWith('-----BEGIN CERTIFICATE-----[\\s\\S]'))).toBe(true);
    // …and no certificate.
    expect(strings.filter((x) => x.startsWith('-----BEGIN CERTIFICATE-----\n')).length).toBe(0);
  });

  it('no module but src/config/tls.ts imports node:tls for its values', () => {
    const src = join(REPO, 'src');
    const offenders = readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts') && f !== join('config', 'tls.ts'))
      .filter((f) => /^import (?!type )[^;]*from 'node:tls'|import\('node:tls'\)/m.test(readFileSync(join(src, f), 'utf8')));
    expect(offenders).toEqual([]);
  });
});

/** node with the preload that reports loaded packages at exit, then the daemon's own arguments. */
function spawnWithPreload(node: string, argv: string[], o: SpawnOptions) {
  return spawn(node, ['--require', join(REPO, 'test', 'helpers', 'loaded-packages.cjs'), ...argv], o);
}
