import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from './helpers/daemon.js';
import { T, UdpClient } from './helpers/dns-wire.js';
import { probeDns } from './helpers/hostile.js';
import { metric, rssOf, scrape, startServe, type ServeProcess } from './helpers/serve-process.js';

/**
 * Issue 21, findings 12 and 5, through a real `canonport serve`: a registry
 * file is local configuration, but whoever can write it (a deploy gone
 * wrong, a generator with a bug) must not be able to stop DNS or the
 * daemon's shutdown. The file is replaced as deploy tools replace it
 * (renamed over) and the daemon's file watch reloads it.
 */

const ZONE = 'registry.example';
const running: ServeProcess[] = [];
const dir = tempDir('canonport-hostile-registry-');

afterAll(async () => {
  for (const s of running) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A registry of `n` pinned services (about 27 bytes each), with the zone and `api` on port 20001. */
function registryText(n: number): string {
  const lines = [`zones: [${ZONE}]\nservices:\n  api:\n    port: 20001\n`];
  for (let i = 0; i < n; i++) lines.push(`  s${i.toString(36)}x:\n    port: ${1024 + (i % 60_000)}\n`);
  return lines.join('');
}

/**
 * Replaces the file as deploy tools do (a new file renamed over the old): the daemon's watch sees one
 * change and reloads once (a SIGHUP on top would queue a second load of the same file).
 */
function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.new`, text);
  renameSync(`${file}.new`, file);
}

async function serve(file: string): Promise<ServeProcess> {
  const s = await startServe(['--registry', file]);
  running.push(s);
  return s;
}

async function apiPort(s: ServeProcess): Promise<number | undefined> {
  const udp = await UdpClient.open();
  try {
    const r = await udp.ask(s.dns, { name: `api.${ZONE}`, type: T.SRV }, 2000);
    return (r.msg?.answers[0]?.data as { port?: number } | undefined)?.port;
  } finally {
    await udp.close();
  }
}

describe('finding 12: a registry file too large', () => {
  it('a 50 MB file is refused by its size without being read: CP_REGISTRY_INVALID, the running registry stays, memory does not grow', { timeout: 60_000 }, async () => {
    const file = join(dir, 'fifty.yaml');
    writeFileSync(file, registryText(10));
    const s = await serve(file);
    expect(await apiPort(s)).toBe(20001);
    const rssBefore = await rssOf(s.pid);
    // 50 MB of valid YAML: 1.9 million services.
    replaceFile(file, registryText(1_900_000));
    const refused = await s.waitForLog((l) => l.code === 'CP_REGISTRY_INVALID', 10_000);
    expect(String(refused.err)).toMatch(/bytes, over the limit of 4194304 \(--registry-max-bytes/);
    expect(await apiPort(s)).toBe(20001);
    expect(metric(await scrape(s.http), 'canonport_config_reloads_total', { result: 'failed' })).toBe(1);
    expect((await rssOf(s.pid)) - rssBefore).toBeLessThan(30e6);
  });
});

describe('finding 12 and 5: a large registry under the limit', () => {
  it('100,000 services (2.7 MB) load while DNS keeps answering, and SIGTERM during a load exits within the drain bound', { timeout: 120_000 }, async () => {
    const file = join(dir, 'large.yaml');
    writeFileSync(file, registryText(10));
    const s = await serve(file);
    replaceFile(file, registryText(100_000));
    const loaded = s.waitForLog((l) => l.event === 'reload', 60_000);
    const probe = await probeDns(s.dns, `api.${ZONE}`, loaded, { everyMs: 100, timeoutMs: 1000, min: 10 });
    const reload = await loaded;
    expect(reload.services).toBe(100_001);
    expect(probe.failed, `DNS while the registry loaded: ${JSON.stringify(probe)}`).toBe(0);

    // Again, and SIGTERM a moment into the load: the load is abandoned and the daemon stops.
    replaceFile(file, `${registryText(100_000)}  zz:\n    port: 20002\n`);
    await new Promise((r) => setTimeout(r, 1000));
    const t0 = performance.now();
    s.proc.kill('SIGTERM');
    const exit = await Promise.race([s.exited, new Promise<null>((r) => setTimeout(() => r(null), 20_000))]);
    expect(exit, 'no exit within 20 s of SIGTERM').not.toBeNull();
    expect(exit).toEqual({ code: 0, signal: null });
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(s.logs.filter((l) => l.msg === 'reload failed; still serving the previous configuration')).toEqual([]);
  });
});
