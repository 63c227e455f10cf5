import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { tempDir } from './helpers/daemon.js';
import { RCODE, T, UdpClient } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { runCli } from './helpers/cli.js';
import { requireUserSwitch } from './helpers/sandbox.js';
import { metric, REPO, scrape, startServe, type LogLine, type ServeProcess } from './helpers/serve-process.js';

/**
 * Config faults on a real `canonport serve`: a registry file that turns
 * invalid (or disappears) under a running daemon must leave the running
 * configuration serving, log why with the error's code, and count the
 * failed reload; a valid edit then applies. A registry that is missing,
 * unreadable or invalid at start is a clear error naming the file.
 */

const ZONE = 'cluster-1.example.com';
const registryText = (port: number) => `zones: [${ZONE}]\nservices:\n  api: {port: ${port}}\n`;

let fake: FakeUpstream;
let client: UdpClient;

beforeAll(async () => {
  fake = await FakeUpstream.start();
  client = await UdpClient.open();
});

afterAll(async () => {
  await client?.close();
  await fake?.close();
});

/** Replaces the file the way editors and ConfigMap updates do: write a temp file, rename over. */
function replaceFile(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

async function srvPort(s: ServeProcess): Promise<number | undefined> {
  const r = await client.ask(s.dns, { name: `_api._tcp.${ZONE}`, type: T.SRV });
  expect(r.msg?.rcode).toBe(RCODE.NOERROR);
  return (r.msg?.answers[0]?.data as { port?: number } | undefined)?.port;
}

async function reloads(s: ServeProcess): Promise<{ ok: number; failed: number }> {
  const text = await scrape(s.http);
  const n = (result: string) => metric(text, 'canonport_config_reloads_total', { result }) || 0;
  return { ok: n('ok'), failed: n('failed') };
}

/** Waits for the next log line after `from` matching `pred`. */
function nextLog(s: ServeProcess, from: number, pred: (l: LogLine) => boolean, ms = 10_000): Promise<LogLine> {
  return s.waitForLog((l) => s.logs.indexOf(l) >= from && pred(l), ms);
}

describe('a registry file that goes bad under a running daemon', () => {
  test('keeps serving the old answers, logs CP_REGISTRY_INVALID and counts it; a valid edit then applies', async () => {
    const dir = tempDir();
    const file = join(dir, 'registry.yaml');
    writeFileSync(file, registryText(9000));
    const s = await startServe(['--registry', file, '--upstream', fake.address]);
    try {
      expect(await srvPort(s)).toBe(9000);
      const before = await reloads(s);

      // 1. Broken YAML, picked up by the file watcher.
      let mark = s.logs.length;
      replaceFile(file, `zones: [${ZONE}\nservices:\n  api: {port: 9001}\n`);
      const yamlError = await nextLog(s, mark, (l) => l.code === 'CP_REGISTRY_INVALID');
      expect(yamlError.level).toBeGreaterThanOrEqual(50);
      expect(String(yamlError.err)).toContain(file);
      expect(await srvPort(s)).toBe(9000);
      const afterYaml = await reloads(s);
      expect(afterYaml.failed).toBeGreaterThan(before.failed);
      expect(afterYaml.ok).toBe(before.ok);

      // 2. Valid YAML, invalid content (a port past 65535), via SIGHUP too.
      mark = s.logs.length;
      replaceFile(file, registryText(70000));
      await nextLog(s, mark, (l) => l.code === 'CP_REGISTRY_INVALID');
      mark = s.logs.length;
      s.proc.kill('SIGHUP');
      const schemaError = await nextLog(s, mark, (l) => l.code === 'CP_REGISTRY_INVALID');
      expect(String(schemaError.err)).toMatch(new RegExp(`${file}:3:\\d+ \\(services\\.api\\.port\\)`));
      expect(await srvPort(s)).toBe(9000);
      const afterSchema = await reloads(s);
      expect(afterSchema.failed).toBeGreaterThanOrEqual(afterYaml.failed + 2);
      expect(afterSchema.ok).toBe(before.ok);

      // 3. The file disappears: CP_REGISTRY_UNREADABLE, still serving.
      mark = s.logs.length;
      rmSync(file);
      s.proc.kill('SIGHUP');
      const gone = await nextLog(s, mark, (l) => l.code === 'CP_REGISTRY_UNREADABLE');
      expect(String(gone.err)).toContain(file);
      expect(await srvPort(s)).toBe(9000);

      // 4. A valid file again: applied.
      mark = s.logs.length;
      replaceFile(file, registryText(9001));
      await nextLog(s, mark, (l) => l.event === 'reload');
      expect(await srvPort(s)).toBe(9001);
      const after = await reloads(s);
      expect(after.ok).toBeGreaterThan(before.ok);
    } finally {
      await s.stop();
    }
    const { code } = await s.exited;
    expect(code).toBe(0);
  });
});

describe('a registry file that cannot be used at start', () => {
  test('missing: exit non-zero, naming the file', async () => {
    const file = join(tempDir(), 'missing.yaml');
    const r = await runCli(['serve', '--registry', file, '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', fake.address]);
    expect(r.code).not.toBe(0);
    expect(r.code).toBeGreaterThan(0);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('CP_REGISTRY_UNREADABLE');
  });

  test('unreadable (a directory; and mode 000): exit non-zero, naming the file', async () => {
    const dir = join(tempDir(), 'registry.yaml');
    mkdirSync(dir);
    const r = await runCli(['serve', '--registry', dir, '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', fake.address]);
    expect(r.code).toBeGreaterThan(0);
    expect(r.stderr).toContain(dir);
    expect(r.stderr).toContain('CP_REGISTRY_UNREADABLE');
    // Mode 000 stops every user but root, and the tests run as root (or root of the sandbox's user
    // namespace): the daemon runs as uid 65534 here, with no capabilities, as an unprivileged user would.
    requireUserSwitch(65534);
    const open = tempDir();
    chmodSync(open, 0o755);
    const file = join(open, 'locked.yaml');
    writeFileSync(file, registryText(9000));
    chmodSync(file, 0);
    const locked = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', process.execPath, join(REPO, 'bin/canonport.js'),
        'serve', '--registry', file, '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', fake.address],
      { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } },
    );
    expect(locked.status, locked.stderr).toBeGreaterThan(0);
    expect(locked.stderr).toContain(file);
    expect(locked.stderr).toContain('CP_REGISTRY_UNREADABLE');
  });

  test('invalid: exit non-zero, naming the file, line and field', async () => {
    const file = join(tempDir(), 'registry.yaml');
    writeFileSync(file, registryText(70000));
    const r = await runCli(['serve', '--registry', file, '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', fake.address]);
    expect(r.code).toBeGreaterThan(0);
    expect(r.stderr).toMatch(new RegExp(`${file}:3:\\d+ \\(services\\.api\\.port\\)`));
    expect(r.stderr).toContain('CP_REGISTRY_INVALID');
  });
});
