import { execFileSync, spawn, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
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
  it('loads neither etcd3 nor what only cluster mode or xDS use, nor reflection until a client asks', async () => {
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
