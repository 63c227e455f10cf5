import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { makeCa } from './helpers/certs.js';
import { runCli } from './helpers/cli.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { startServe } from './helpers/serve-process.js';

/**
 * Secure by default: gRPC or HTTP on a non-loopback address with neither an
 * allow-list nor required client certificates is refused before anything
 * binds, by `serve`, `serve --print-config` and a reload, with an error
 * naming the flags that fix it; `--insecure-listen` says it is on purpose.
 */

const REPO = fileURLToPath(new URL('..', import.meta.url));
const daemons: Daemon[] = [];
let dir: string;

beforeAll(() => {
  dir = tempDir('canonport-insecure-');
});
afterAll(async () => {
  for (const d of daemons) await d.close(100);
});

async function started(flags: Record<string, unknown>, opts: { watchRegistry?: boolean } = {}): Promise<Daemon> {
  const d = await startDaemon(flags, opts);
  daemons.push(d);
  return d;
}

/** Whether `port` on every address can be bound now: nothing of the refused daemon holds it. */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '0.0.0.0', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

describe('a non-loopback listener with nothing protecting it', () => {
  it('refuses gRPC on a wildcard or node address, naming --grpc-allow, --grpc-tls-client-ca and --insecure-listen, binding nothing', async () => {
    const port = await freePort('0.0.0.0');
    for (const grpc of [`0.0.0.0:${port}`, `[::]:${port}`]) {
      const err = await startDaemon({ grpc }).then(
        () => null,
        (e: unknown) => e as { code: string; message: string },
      );
      expect(err?.code).toBe('CP_INSECURE_LISTEN');
      expect(err?.message).toContain(`gRPC would listen on ${grpc}, beyond loopback, open to every client that reaches it (Resolve, Watch, Inventory and xDS)`);
      expect(err?.message).toContain('set --grpc-allow CIDR (CANONPORT_GRPC_ALLOW) for the networks that may use it, or --grpc-tls-client-ca FILE to require client certificates, or --insecure-listen');
    }
    expect(await bindable(port)).toBe(true);
  });

  it('refuses HTTP the same way, naming --http-allow', async () => {
    await expect(startDaemon({ http: '0.0.0.0:0' })).rejects.toMatchObject({
      code: 'CP_INSECURE_LISTEN',
      message: expect.stringContaining('set --http-allow CIDR (CANONPORT_HTTP_ALLOW)'),
    });
  });

  it('starts with --insecure-listen, an allow-list, or required client certificates; optional ones do not count', async () => {
    expect((await started({ grpc: '0.0.0.0:0', http: '0.0.0.0:0', insecureListen: true })).addresses.grpc.host).toBe('0.0.0.0');
    expect((await started({ grpc: '0.0.0.0:0', grpcAllow: ['10.0.0.0/8'] })).addresses.grpc.host).toBe('0.0.0.0');
    const ca = makeCa(dir);
    const server = ca.leaf('daemon');
    const tls = { grpcTlsCert: server.cert, grpcTlsKey: server.key, grpcTlsClientCa: ca.cert };
    expect((await started({ grpc: '0.0.0.0:0', ...tls })).addresses.grpc.host).toBe('0.0.0.0');
    await expect(startDaemon({ grpc: '0.0.0.0:0', ...tls, grpcTlsClientAuth: 'optional' })).rejects.toMatchObject({ code: 'CP_INSECURE_LISTEN' });
    // TLS without client certificates encrypts, but lets everyone in: it is no protection either.
    await expect(startDaemon({ grpc: '0.0.0.0:0', grpcTlsCert: server.cert, grpcTlsKey: server.key })).rejects.toMatchObject({ code: 'CP_INSECURE_LISTEN' });
  });

  it('canonport serve exits 1 with the reason on stderr; with CANONPORT_INSECURE_LISTEN=1 it serves', async () => {
    const refused = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ['bin/canonport.js', 'serve', '--dns', '127.0.0.1:0', '--http', '127.0.0.1:0', '--grpc', '0.0.0.0:0'], {
        cwd: REPO,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^canonport: gRPC would listen on 0\.0\.0\.0:0, beyond loopback.* or --insecure-listen to serve everyone on purpose \[CP_INSECURE_LISTEN\]\n$/);
    const serve = await startServe(['--grpc', '0.0.0.0:0'], { env: { CANONPORT_INSECURE_LISTEN: '1' } });
    try {
      expect(serve.grpc.host).toBe('0.0.0.0');
    } finally {
      await serve.stop();
    }
  });

  it('serve --print-config refuses it too, with the same error', async () => {
    const r = await runCli(['serve', '--print-config', '--grpc', '0.0.0.0:7000', '--upstream', '192.0.2.1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/gRPC would listen on 0\.0\.0\.0:7000, beyond loopback.*\[CP_INSECURE_LISTEN\]/);
    const ok = await runCli(['serve', '--print-config', '--json', '--grpc', '0.0.0.0:7000', '--grpc-allow', '10.0.0.0/8', '--upstream', '192.0.2.1']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ grpc: '0.0.0.0:7000', grpcAllow: ['10.0.0.0/8'], insecureListen: false, sources: { grpcAllow: 'flag' } });
  });

  it('refuses a reload that would leave a running non-loopback listener open, and keeps the running allow-list', async () => {
    const file = writeRegistry('daemon:\n  grpc: 0.0.0.0:0\n  grpcAllow: [10.9.0.0/16]\n', tempDir());
    // Reloads by call only: the file watcher would add reloads of its own.
    const d = await started({ grpc: undefined, registry: file }, { watchRegistry: false });
    expect(d.config.grpcAllow.map((c) => c.text)).toEqual(['10.9.0.0/16']);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, 'daemon:\n  grpc: 0.0.0.0:0\n');
    const r = await d.reload();
    expect(r.ok).toBe(false);
    expect(!r.ok && r.error.code).toBe('CP_INSECURE_LISTEN');
    expect(d.config.grpcAllow.map((c) => c.text)).toEqual(['10.9.0.0/16']);
    const failed = (await d.metrics.reloads.get()).values.find((v) => v.labels.result === 'failed')?.value;
    expect(failed).toBe(1);
    // A reload that changes the allow-list applies it.
    writeFileSync(file, 'daemon:\n  grpc: 0.0.0.0:0\n  grpcAllow: [10.8.0.0/16, 192.0.2.0/24]\n');
    expect((await d.reload()).ok).toBe(true);
    expect(d.config.grpcAllow.map((c) => c.text)).toEqual(['10.8.0.0/16', '192.0.2.0/24']);
  });
});
