import { execFile, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { dig } from './helpers/dig.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { buildQuery, rawUdp } from './helpers/dns-wire.js';
import { waitForDns } from './helpers/unbound.js';
import { requireNetAdmin } from './helpers/sandbox.js';
import { requireTool } from './helpers/tools.js';
import { runCli } from './helpers/cli.js';

const run = promisify(execFile);
const CLI = ['bin/canonport.js'];
const daemons: Daemon[] = [];

afterEach(async () => {
  while (daemons.length) await daemons.pop()!.close(100);
});

async function srvPort(d: Daemon, name: string): Promise<number> {
  const r = await dig(d.addresses.dns, ['SRV', name]);
  return Number(r.answer[0]![6]);
}

describe('configuration', () => {
  it('takes flags over env over the registry file over defaults (serve --print-config)', async () => {
    const file = writeRegistry('daemon:\n  dns: 127.0.0.1:7001\n  grpc: 127.0.0.1:7002\n  http: 127.0.0.1:7003\n  zones: [file.example]\n');
    const { stdout } = await run(process.execPath, [...CLI, 'serve', '--print-config', '--json', '--registry', file, '--dns', '127.0.0.1:9001'], {
      env: { ...process.env, CANONPORT_DNS: '127.0.0.1:8001', CANONPORT_GRPC: '127.0.0.1:8002' },
    });
    const c = JSON.parse(stdout);
    expect(c.dns).toBe('127.0.0.1:9001'); // flag
    expect(c.grpc).toBe('127.0.0.1:8002'); // env
    expect(c.http).toBe('127.0.0.1:7003'); // file
    expect(c.zones).toEqual(['localhost', 'file.example']);
    const { stdout: defaults } = await run(process.execPath, [...CLI, 'serve', '--print-config', '--json'], { env: { PATH: process.env.PATH } });
    expect(JSON.parse(defaults)).toMatchObject({ dns: '127.0.0.1:5300', grpc: '127.0.0.1:13655', http: '127.0.0.1:13656' });
  });

  it('rejects bad settings with a usage error naming the setting', async () => {
    const bad = await run(process.execPath, [...CLI, 'serve', '--print-config', '--dns', 'nowhere:53']).catch((e) => e);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--dns: "nowhere:53" is not an IP address/);
    const flag = await run(process.execPath, [...CLI, 'serve', '--no-such-flag']).catch((e) => e);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/unknown option/);
  });
});

describe('reload', () => {
  it('changes answers after a reload and loses no query in flight', async () => {
    const dir = tempDir();
    const file = writeRegistry('zones: [svc.example]\nservices:\n  api: { port: 4000 }\n', dir);
    const d = await startDaemon({ registry: file }, { watchRegistry: false });
    daemons.push(d);
    expect(await srvPort(d, 'api.svc.example')).toBe(4000);
    writeFileSync(file, 'zones: [svc.example]\nservices:\n  api: { port: 4001 }\n');
    // 300 queries race the reload: every one must be answered, with the old or the new port.
    const queries = Array.from({ length: 300 }, (_, i) => rawUdp(d.addresses.dns, buildQuery({ id: i, name: 'api.svc.example', type: 33 })));
    const reloaded = d.reload();
    const replies = await Promise.all(queries);
    expect((await reloaded).ok).toBe(true);
    for (const r of replies) expect(r.readUInt16BE(6)).toBe(1);
    expect(await srvPort(d, 'api.svc.example')).toBe(4001);
    expect((await d.metrics.reloads.get()).values.find((v) => v.labels.result === 'ok')?.value).toBe(1);
  });

  it('reloads when the registry file changes on disk', async () => {
    const dir = tempDir();
    const file = writeRegistry('zones: [svc.example]\nservices:\n  api: { port: 4000 }\n', dir);
    const d = await startDaemon({ registry: file });
    daemons.push(d);
    const reloaded = new Promise((r) => d.events.once('reload', r));
    writeFileSync(file, 'zones: [svc.example]\nservices:\n  api: { port: 4002 }\n');
    await reloaded;
    expect(await srvPort(d, 'api.svc.example')).toBe(4002);
  });
});

describe('gRPC through the whole daemon', () => {
  it('resolves, watches a reload, and decodes over a real channel', async () => {
    const dir = tempDir();
    const file = writeRegistry('zones: [c1.example]\nhosts:\n  api.c1.example: [10.0.0.5]\n', dir);
    const d = await startDaemon({ registry: file }, { watchRegistry: false });
    daemons.push(d);
    const client = createCanonportClient(d.addresses.grpc);
    try {
      const r = await client.resolve('api.c1.example');
      expect(r).toMatchObject({ service: 'api', port: 12082, scheme: 'base32', host: 'api.c1.example', addresses: ['10.0.0.5'] });
      const watch = client.watch('api.c1.example');
      const it = watch[Symbol.asyncIterator]();
      expect((await it.next()).value).toMatchObject({ addresses: ['10.0.0.5'] });
      writeFileSync(file, 'zones: [c1.example]\nhosts:\n  api.c1.example: [10.0.0.6]\n');
      await d.reload();
      expect((await it.next()).value).toMatchObject({ addresses: ['10.0.0.6'] });
      await it.return?.();
      expect(await client.decode(12082)).toMatchObject({ prefix: 'api' });
    } finally {
      client.close();
    }
  });
});

describe('logs', () => {
  it('writes one JSON line per event, with a sampled query log when switched on', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, [...CLI, 'serve', '--dns', `127.0.0.1:${port}`, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--query-log', '1', '--upstream', '127.0.0.1:9'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (b) => (stderr += b));
    try {
      await waitForDns(port, () => (child.exitCode !== null ? stderr : null));
      await dig({ host: '127.0.0.1', port }, ['SRV', 'api.localhost']);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    const lines = stderr.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.some((l) => l.event === 'ready')).toBe(true);
    const q = lines.find((l) => l.event === 'query' && l.name === 'api.localhost');
    expect(q).toMatchObject({ qtype: 33, rcode: 0, source: 'canonical', transport: 'udp' });
    expect(lines.some((l) => l.event === 'stopped')).toBe(true);
  });
});

describe('log level', () => {
  it('follows flags over env over the registry file, at start and on reload', async () => {
    const logger = pino({ level: 'info' }, new Writable({ write: (_c, _e, cb) => cb() }));
    const file = writeRegistry('daemon: {logLevel: warn}\n');
    const d = await startDaemon({ registry: file }, { logger });
    try {
      expect(logger.level).toBe('warn');
      writeFileSync(file, 'daemon: {logLevel: debug}\n');
      await d.reload();
      expect(logger.level).toBe('debug');
    } finally {
      await d.close(0);
    }
    const flagged = pino({ level: 'info' }, new Writable({ write: (_c, _e, cb) => cb() }));
    const d2 = await startDaemon({ registry: file, logLevel: 'error' }, { logger: flagged, env: { logLevel: 'trace' } });
    try {
      expect(flagged.level).toBe('error');
    } finally {
      await d2.close(0);
    }
  });

  it('rejects an unknown level with CP_CONFIG_INVALID and exit 2, not a pino stack trace', async () => {
    const r = await runCli(['serve', '--log-level', 'bogus', '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('log level "bogus" is not one of');
    expect(r.stderr).toContain('CP_CONFIG_INVALID');
  });
});

describe('logs on a terminal', () => {
  it('are pretty-printed for a person when stderr is a TTY (script(1) gives the daemon a real terminal)', async () => {
    requireTool('script', 'bsdutils');
    const port = await freePort();
    const cmd = `exec ${process.execPath} bin/canonport.js serve --dns 127.0.0.1:${port} --grpc 127.0.0.1:0 --http 127.0.0.1:0 --upstream 127.0.0.1:9`;
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (b) => (out += b));
    try {
      await waitForDns(port, () => (child.exitCode !== null ? `script exited: ${out}` : null));
      for (let i = 0; i < 50 && !out.includes('canonport ready'); i++) await new Promise((r) => setTimeout(r, 50));
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
    expect(plain).toMatch(/INFO \(\d+\): canonport ready/); // pino-pretty's line, not JSON
    expect(plain).not.toMatch(/^\{"level"/m);
  });
});

describe('production: port 53 as root, the way the systemd unit runs it', () => {
  it('serves dig @127.0.0.1 on port 53', async () => {
    requireNetAdmin('binding port 53');
    const child = spawn(process.execPath, [...CLI, 'serve', '--dns', '127.0.0.1:53', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--zone', 'cluster-1.example.com'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, CANONPORT_LOG_LEVEL: 'warn' },
    });
    let stderr = '';
    child.stderr!.on('data', (b) => (stderr += b));
    try {
      await waitForDns(53, () => (child.exitCode !== null ? `canonport exited: ${stderr}` : null));
      const r = await dig({ host: '127.0.0.1', port: 53 }, ['SRV', 'api.cluster-1.example.com']);
      expect(r.answer[0]!.slice(3)).toEqual(['SRV', '0', '0', '12082', 'api.cluster-1.example.com.']);
    } finally {
      child.kill('SIGTERM');
      const code = await new Promise((r) => child.once('exit', r));
      expect(code).toBe(0);
    }
  });
});

describe('default upstreams: /etc/resolv.conf minus this daemon', () => {
  it('on port 53, skips its own nameserver line and forwards to the next one (real dnsmasq on 127.0.0.2:53)', async () => {
    requireNetAdmin('binding port 53');
    const bin = requireTool('dnsmasq', 'dnsmasq');
    const dnsmasq = spawn(
      bin,
      ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', '--port=53', '--listen-address=127.0.0.2', '--bind-interfaces', '--address=/www.example.org/192.0.2.80', '--user=root'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    dnsmasq.stderr!.on('data', (b) => (stderr += b));
    const dir = tempDir();
    const resolvConf = join(dir, 'resolv.conf');
    // As on a host where canonport is the nameserver: itself first, the real resolver after it.
    writeFileSync(resolvConf, 'nameserver 127.0.0.1\nnameserver 127.0.0.2\noptions timeout:1\n');
    let d: Daemon | undefined;
    try {
      d = await startDaemon({ dns: '127.0.0.1:53' }, { resolvConf });
      expect(d.config.upstreamsFrom).toBe('resolv.conf');
      expect(d.config.upstreams).toEqual([{ host: '127.0.0.2', port: 53 }]);
      const r = await dig({ host: '127.0.0.1', port: 53 }, ['A', 'www.example.org']);
      expect(stderr).toBe('');
      expect(r.answer[0]![4]).toBe('192.0.2.80');
    } finally {
      await d?.close(100);
      dnsmasq.kill('SIGTERM');
    }
  });
});
