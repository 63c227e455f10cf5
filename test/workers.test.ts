import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { describe, expect, it, onTestFinished } from 'vitest';
import { dig } from './helpers/dig.js';
import { tempDir, writeRegistry } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { waitForDns } from './helpers/unbound.js';

describe('serve --workers: DNS workers sharing one socket', () => {
  it('answers from every worker, aggregates /metrics, propagates SIGHUP reloads and drains on SIGTERM', async () => {
    const [dnsPort, metricsPort] = [await freePort(), await freePort()];
    const dir = tempDir();
    const registry = writeRegistry('zones: [svc.example]\nservices:\n  api: { port: 4000 }\n', dir);
    const child = spawn(
      process.execPath,
      ['bin/canonport.js', 'serve', '--workers', '2', '--dns', `127.0.0.1:${dnsPort}`, '--grpc', '127.0.0.1:0', '--http', `127.0.0.1:${metricsPort}`, '--registry', registry, '--upstream', '127.0.0.1:9'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CANONPORT_LOG_LEVEL: 'info' } },
    );
    let stderr = '';
    child.stderr!.on('data', (b) => (stderr += b));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await waitForDns(dnsPort, () => (child.exitCode !== null ? stderr : null), 20_000);
      // Wait for /readyz: the primary serves HTTP once its workers are up.
      for (let i = 0; i < 100; i++) {
        const ok = await fetch(`http://127.0.0.1:${metricsPort}/readyz`).then((r) => r.ok, () => false);
        if (ok) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const server = { host: '127.0.0.1', port: dnsPort };
      const N = 40;
      for (let i = 0; i < N; i++) {
        const r = await dig(server, ['SRV', `api.svc.example`]);
        expect(r.answer[0]![6]).toBe('4000');
      }
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const answered = [...metrics.matchAll(/^canonport_dns_queries_total\{[^}]*source="canonical"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
      expect(answered).toBeGreaterThanOrEqual(N); // counted across both workers
      expect(stderr).toMatch(/"workers":2/);
      // The address as every other log line writes it (formatHostPort: brackets around IPv6).
      expect(stderr).toContain(`"event":"workers","workers":2,"dns":"127.0.0.1:${dnsPort}"`);

      writeFileSync(registry, 'zones: [svc.example]\nservices:\n  api: { port: 4001 }\n');
      // The primary reloads, then tells each worker: wait until all three processes have logged a reload. By process,
      // not by line: the primary's registry watch may see the write and reload before the SIGHUP does (two lines).
      const reloaded = () => new Set(stderr.split('\n').filter((l) => l.includes('"event":"reload"')).map((l) => (JSON.parse(l) as { pid: number }).pid)).size;
      child.kill('SIGHUP');
      for (let i = 0; i < 200 && reloaded() < 3; i++) await new Promise((r) => setTimeout(r, 50));
      expect(reloaded(), stderr).toBe(3);
      for (let i = 0; i < 20; i++) {
        const r = await dig(server, ['SRV', `api.svc.example`]);
        expect(r.answer[0]![6]).toBe('4001'); // every worker reloaded
      }
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/"event":"stopped"/);
  });

  it('writes an IPv6 DNS address in brackets in its workers line, as every other log line does', async () => {
    const dnsPort = await freePort('::1');
    const registry = writeRegistry('zones: [svc.example]\nservices:\n  api: { port: 4000 }\n', tempDir());
    const child = spawn(
      process.execPath,
      ['bin/canonport.js', 'serve', '--workers', '2', '--dns', `[::1]:${dnsPort}`, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--registry', registry, '--upstream', '127.0.0.1:9'],
      { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CANONPORT_LOG_LEVEL: 'info' } },
    );
    // Stopped even when the test fails before its own `finally` (a timeout).
    onTestFinished(() => void (child.exitCode === null && child.kill('SIGTERM')));
    let stderr = '';
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    // The workers line is written once every worker is up: wait for it, or for the daemon to give up.
    const logged = new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (b) => {
        stderr += b;
        if (stderr.includes('"event":"workers"')) resolve();
      });
      void exited.then((code) => reject(new Error(`canonport serve exited (${code}) before its workers line:\n${stderr}`)));
    });
    try {
      await logged;
      // Without the brackets the line would say "::1:PORT", which reads as an address and no port.
      expect(stderr).toContain(`"event":"workers","workers":2,"dns":"[::1]:${dnsPort}"`);
      const r = await dig({ host: '::1', port: dnsPort }, ['SRV', 'api.svc.example']);
      expect(r.answer[0]![6]).toBe('4000'); // and the worker answers on that address
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
