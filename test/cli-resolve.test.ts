import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGrpcServer, type GrpcHandle } from '../src/grpc/server.js';
import { bindServer, testDaemon } from './grpc-fixtures.js';
import { runCli } from './helpers/cli.js';

/**
 * `canonport resolve` (in-process through main(), helpers/cli.ts) against a
 * real gRPC server built on a real DaemonContext.
 */

const REGISTRY = `
zones: [cluster-1.example.com]
hosts:
  api.cluster-1.example.com: [10.0.0.5, "fd00::5"]
  v2.user.cluster-1.example.com: [10.0.0.7]
services:
  user: {id: 1, version: 2}
`;

let daemon: GrpcHandle;
let daemon6: GrpcHandle;

beforeAll(async () => {
  const d = testDaemon(REGISTRY);
  daemon = await startGrpcServer(d.ctx, { host: '127.0.0.1', port: 0 });
  daemon6 = await startGrpcServer(d.ctx, { host: '::1', port: 0 });
}, 120_000);

afterAll(async () => {
  await daemon?.close(0);
  await daemon6?.close(0);
});

const canonport = (args: string[], env: Record<string, string> = {}) => runCli(args, env);

const at = () => `127.0.0.1:${daemon.address.port}`;

describe('canonport resolve', () => {
  it('takes the daemon from CANONPORT_GRPC, and no other variable can break it', async () => {
    // Regression: it parsed every CANONPORT_* variable to read one, so a bad cache size failed resolve.
    const r = await canonport(['resolve', 'api.cluster-1.example.com'], { CANONPORT_GRPC: at(), CANONPORT_CACHE_SIZE: 'lots' });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('port 12082');
  });

  it('prints port, scheme and addresses, one line per name in order', async () => {
    const r = await canonport(['resolve', '--daemon', at(), 'api.cluster-1.example.com', 'v2.user.cluster-1.example.com']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(
      'api.cluster-1.example.com  port 12082  base32  10.0.0.5,fd00::5\n' + 'v2.user.cluster-1.example.com  port 8102  versioned v2  10.0.0.7\n',
    );
    expect(r.stderr).toBe('');
  });

  it('prints JSON with --json', async () => {
    const r = await canonport(['resolve', '--json', '--daemon', at(), '_api._tcp.cluster-1.example.com']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      {
        name: '_api._tcp.cluster-1.example.com',
        resolution: {
          name: '_api._tcp.cluster-1.example.com',
          zone: 'cluster-1.example.com',
          service: 'api',
          port: 12082,
          scheme: 'base32',
          prefix: 'api',
          host: 'api.cluster-1.example.com',
          addresses: ['10.0.0.5', 'fd00::5'],
          ttl: 60,
          collidesWith: [],
          endpoints: [
            { address: '10.0.0.5', port: 12082, source: 'registry', node: '', version: '', since: '', readiness: '', local: false, protocol: '', names: [], namespace: '', containerId: '', pod: '', podNamespace: '' },
            { address: 'fd00::5', port: 12082, source: 'registry', node: '', version: '', since: '', readiness: '', local: false, protocol: '', names: [], namespace: '', containerId: '', pod: '', podNamespace: '' },
          ],
        },
      },
    ]);
  });

  it('finds the daemon through CANONPORT_GRPC, and over IPv6', async () => {
    const r = await canonport(['resolve', 'api.cluster-1.example.com'], { CANONPORT_GRPC: `[::1]:${daemon6.address.port}` });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('port 12082');
  });

  it('prints a name whose port is known and address is not (as dig SRV answers it), saying why, and exits 3 (CP_NO_ADDRESS)', async () => {
    const r = await canonport(['resolve', '--daemon', at(), 'db.cluster-1.example.com', 'api.cluster-1.example.com']);
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('db.cluster-1.example.com  port 14688  base32  (no address)\napi.cluster-1.example.com  port 12082  base32  10.0.0.5,fd00::5\n');
    expect(r.stderr).toMatch(/db\.cluster-1\.example\.com: .*has no address .*\[CP_NO_ADDRESS\]/);
  });

  it('exits 1 for a name that is not a service here, still printing the others', async () => {
    const r = await canonport(['resolve', '--daemon', at(), '_x.cluster-1.example.com', 'api.cluster-1.example.com']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('api.cluster-1.example.com  port 12082  base32  10.0.0.5,fd00::5\n');
    expect(r.stderr).toMatch(/_x\.cluster-1\.example\.com: .*not a service name.*\[CP_NOT_FOUND\]/);
  });

  it('exits 1, not 3, when another name has no answer at all: the worse outcome wins', async () => {
    const r = await canonport(['resolve', '--daemon', at(), 'db.cluster-1.example.com', '_x.cluster-1.example.com']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('db.cluster-1.example.com  port 14688  base32  (no address)\n');
  });

  it('refuses a label no host name can have ("-api"), before asking the daemon: exit 2', async () => {
    const r = await canonport(['resolve', '--daemon', at(), '--', '-api.cluster-1.example.com']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/bad name "-api\.cluster-1\.example\.com": label "-api" starts with "-"/);
  });

  it('carries the error, and the port known without an address, in --json, with the same exit code 3', async () => {
    const r = await canonport(['resolve', '--json', '--daemon', at(), 'db.cluster-1.example.com']);
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toEqual([
      {
        name: 'db.cluster-1.example.com',
        error: {
          status: grpc.status.NOT_FOUND,
          code: 'CP_NO_ADDRESS',
          message: expect.stringMatching(/no address/),
          resolution: expect.objectContaining({ port: 14688, scheme: 'base32', host: 'db.cluster-1.example.com', addresses: [], endpoints: [] }),
        },
      },
    ]);
  });

  it('exits 2 for a malformed name, saying what is wrong', async () => {
    const r = await canonport(['resolve', '--daemon', at(), 'bad!name.cluster-1.example.com']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/"bad!name" has characters outside/);
  });

  it('exits 1 with a clear message when no daemon listens there', async () => {
    const probe = new grpc.Server();
    const port = await bindServer(probe, 0);
    probe.forceShutdown();
    const r = await canonport(['resolve', '--daemon', `127.0.0.1:${port}`, 'api.cluster-1.example.com']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(new RegExp(`cannot reach the canonport daemon at 127\\.0\\.0\\.1:${port}.*canonport serve.*\\[CP_DAEMON_UNREACHABLE\\]`));
  });

  it('exits 2 for a bad --timeout', async () => {
    const r = await canonport(['resolve', '--timeout', 'soon', 'api.cluster-1.example.com']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--timeout "soon"/);
  });
});
