import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { stopChild } from './helpers/child.js';
import { plain, runOnPty, type PtyRun } from './helpers/pty.js';
import { REPO, startServe } from './helpers/serve-process.js';

/**
 * The daemon's logs as a person and a machine meet them: `canonport serve`
 * on a real pseudo-terminal (util-linux `script`) logs pretty lines, with
 * colours; with stderr on a pipe it logs one JSON object per line;
 * `--log-format` / `CANONPORT_LOG_FORMAT` force either. Error lines carry
 * their `CP_` code in both.
 */

const LISTEN = ['--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'];
const work = mkdtempSync(join(tmpdir(), 'canonport-logs-'));
const running: PtyRun[] = [];

afterAll(async () => {
  await Promise.all(running.map((r) => r.stop()));
  rmSync(work, { recursive: true, force: true });
});

/** The environment of a person's shell: no CANONPORT_* settings, colours not refused. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { TERM: 'xterm-256color' };
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('CANONPORT_') && k !== 'NO_COLOR' && k !== 'FORCE_COLOR') env[k] = v;
  return { ...env, ...extra };
}

function serveOnPty(args: string[], env: Record<string, string> = {}): PtyRun {
  const r = runOnPty([process.execPath, 'bin/canonport.js', 'serve', ...LISTEN, ...args], { cwd: REPO, env: userEnv(env) });
  running.push(r);
  return r;
}

/** A pretty line: `[HH:MM:ss.mmm] LEVEL (pid): message`. */
const PRETTY_READY = /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \((\d+)\): canonport ready$/m;

/** Stops the daemon a pty runs, by the PID its ready line names, and waits for `script` to end with it. */
async function stopDaemon(r: PtyRun, pid: number): Promise<number | null> {
  process.kill(pid, 'SIGTERM');
  return r.exited;
}

describe('canonport serve on a terminal', () => {
  it('logs pretty, coloured lines by default (auto), with the fields below each, and no JSON', async () => {
    const r = serveOnPty([]);
    const text = plain(await r.waitFor((t) => PRETTY_READY.test(plain(t))));
    expect(r.output()).toMatch(/\x1b\[3\dm/); // colour codes: a terminal that did not refuse them
    expect(text).toMatch(/^ {4}dns: "127\.0\.0\.1:\d+"$/m);
    expect(text.split('\n').filter((l) => l.startsWith('{'))).toEqual([]);
    expect(await stopDaemon(r, Number(PRETTY_READY.exec(text)![1]))).toBe(0);
  });

  it('logs JSON lines when told to (--log-format json), terminal or not', async () => {
    const r = serveOnPty(['--log-format', 'json']);
    const text = plain(await r.waitFor((t) => /"msg":"canonport ready"/.test(t)));
    const ready = text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; pid: number; event?: string })
      .find((l) => l.event === 'ready');
    expect(ready).toMatchObject({ msg: 'canonport ready', pid: expect.any(Number) });
    expect(PRETTY_READY.test(text)).toBe(false);
    expect(await stopDaemon(r, ready!.pid)).toBe(0);
  });

  it('shows an error line with its CP_ code in pretty form (a reload refusing a broken registry file)', async () => {
    const file = join(work, 'registry.yaml');
    writeFileSync(file, 'zones: [logs.example]\n');
    const r = serveOnPty(['--registry', file]);
    const text = plain(await r.waitFor((t) => PRETTY_READY.test(plain(t))));
    writeFileSync(file, 'zones: [logs.example]\nservices:\n  api: { colour: red }\n');
    const after = plain(await r.waitFor((t) => /code: "CP_REGISTRY_INVALID"/.test(plain(t))));
    expect(after).toMatch(/^\[[\d:.]+\] ERROR \(\d+\): .*$/m);
    expect(await stopDaemon(r, Number(PRETTY_READY.exec(text)![1]))).toBe(0);
  });
});

describe('canonport serve with stderr on a pipe', () => {
  it('logs one JSON object per line by default (auto), nothing else', async () => {
    const d = await startServe([]);
    try {
      expect(d.logs.find((l) => l.event === 'ready')).toMatchObject({ msg: 'canonport ready' });
      expect(d.text).toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('logs pretty lines, without colour codes, when told to (CANONPORT_LOG_FORMAT=pretty)', async () => {
    const proc = spawn(process.execPath, ['bin/canonport.js', 'serve', ...LISTEN], { cwd: REPO, env: userEnv({ CANONPORT_LOG_FORMAT: 'pretty' }), stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    const seen = new Promise<void>((resolve) =>
      proc.stderr!.on('data', (c: Buffer) => {
        err += c.toString('utf8');
        if (PRETTY_READY.test(err)) resolve();
      }),
    );
    try {
      await Promise.race([seen, new Promise((_, reject) => proc.on('exit', (code) => reject(new Error(`exited ${code}:\n${err}`))))]);
      expect(err).not.toContain('\x1b[');
      expect(err.split('\n').filter((l) => l.startsWith('{'))).toEqual([]);
    } finally {
      await stopChild(proc);
    }
  });

  it('refuses a format it does not know, naming the setting and the choices', async () => {
    const proc = spawn(process.execPath, ['bin/canonport.js', 'serve', ...LISTEN, '--log-format', 'colour'], { cwd: REPO, env: userEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    proc.stderr!.on('data', (c: Buffer) => void (err += c.toString('utf8')));
    const code = await new Promise<number | null>((resolve) => proc.on('exit', resolve));
    expect(code).toBe(2);
    expect(err).toContain('--log-format: log format "colour" is not one of auto, pretty, json [CP_CONFIG_INVALID]');
  });
});

describe('pino-pretty is loaded only when used', () => {
  it('a JSON logger leaves it unloaded; a pretty one loads it', async () => {
    const probe = (format: string) =>
      new Promise<string>((resolve, reject) => {
        const code = [
          "import { createRequire } from 'node:module';",
          "import { createLogger } from './dist/log.js';",
          `createLogger({ format: '${format}', destination: 1 });`,
          "console.log(Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/pino-pretty/')));",
        ].join('\n');
        const p = spawn(process.execPath, ['--input-type=module', '-e', code], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout!.on('data', (c: Buffer) => void (out += c.toString('utf8')));
        p.on('exit', (c) => (c === 0 ? resolve(out.trim()) : reject(new Error(`probe exited ${c}`))));
      });
    expect(await probe('json')).toBe('false');
    expect(await probe('pretty')).toBe('true');
  });
});
