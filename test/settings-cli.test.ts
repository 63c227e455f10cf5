import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SETTINGS, settingEntries } from '../src/config/settings.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { base32Port } from '../src/scheme/index.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { RCODE, T, UdpClient } from './helpers/dns-wire.js';
import { freePort } from './helpers/ports.js';
import { runCli } from './helpers/cli.js';
import { startServe } from './helpers/serve-process.js';
import { makeCa, type TestCa, type TestLeaf } from './helpers/certs.js';

/**
 * The settings as an operator meets them: `canonport serve --print-config`
 * and `serve` from the real CLI, with real environment variables and
 * registry files; --proc-root and the zones rule in a running daemon.
 */

const KEYS = settingEntries().map(([k]) => k);
/** Listen addresses that never collide when a serve is (wrongly) started by a refusal test. */
const EPHEMERAL = ['--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'];

/** The `canonport: … [CODE]` line main() prints for an error. */
const errorLine = (stderr: string) => stderr.split('\n').find((l) => l.startsWith('canonport: ')) ?? `(no error line) ${stderr}`;

describe('serve --print-config', () => {
  it('shows every setting, workers and ttl included, with flags over env over file over defaults and each source', async () => {
    const file = writeRegistry(
      ['zones: [top.example]', 'ttl: 45', 'daemon:', '  http: 127.0.0.1:7003', '  grpc: 127.0.0.1:7002', '  zones: [daemon.example]', '  workers: 3', '  cacheSize: 77', ''].join('\n'),
    );
    const r = await runCli(['serve', '--print-config', '--json', '--registry', file, '--dns', '127.0.0.1:7001', '--upstream', '192.0.2.1', '--upstream', '192.0.2.2:5353'], {
      CANONPORT_GRPC: '127.0.0.1:8002',
      CANONPORT_PROC_ROOT: '/host/proc',
      CANONPORT_WORKERS: '2',
    });
    expect(r.code, r.stderr).toBe(0);
    const c = JSON.parse(r.stdout) as Record<string, unknown> & { sources: Record<string, string> };
    expect(Object.keys(c)).toEqual([...KEYS, 'sources']);
    expect(Object.keys(c.sources)).toEqual(KEYS);
    expect(c).toMatchObject({
      dns: '127.0.0.1:7001',
      grpc: '127.0.0.1:8002',
      http: '127.0.0.1:7003',
      zones: ['localhost', 'top.example', 'daemon.example'],
      upstreams: ['192.0.2.1:53', '192.0.2.2:5353'],
      registry: file,
      workers: 2,
      procRoot: '/host/proc',
      cacheSize: 77,
      ttl: 45,
      logLevel: SETTINGS.logLevel.default,
    });
    expect(c.sources).toMatchObject({
      dns: 'flag',
      upstreams: 'flag',
      registry: 'flag',
      grpc: 'env',
      workers: 'env',
      procRoot: 'env',
      http: 'file',
      zones: 'file',
      cacheSize: 'file',
      ttl: 'file',
      logLevel: 'default',
    });
  });

  it('as text: one line per setting naming the flag, variable or file key it came from', async () => {
    const file = writeRegistry('daemon:\n  rateLimit: 9\n');
    const r = await runCli(['serve', '--print-config', '--registry', file, '--zone', 'a.example', '--upstream', '192.0.2.1'], { CANONPORT_LOG_LEVEL: 'warn' });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(KEYS.length + 1);
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(KEYS);
    const row = (k: string) => lines.find((l) => l.startsWith(`${k} `)) ?? '';
    expect(row('zones')).toMatch(/localhost, a\.example\s+flag --zone\s+reload$/);
    expect(row('logLevel')).toMatch(/warn\s+env CANONPORT_LOG_LEVEL\s+reload$/);
    expect(row('rateLimit')).toMatch(/9\s+file daemon\.rateLimit\s+reload$/);
    expect(row('workers')).toMatch(/1\s+default\s+restart$/);
  });

  it('follows one rule for zones: a flag replaces CANONPORT_ZONES, which replaces the registry file zones', async () => {
    const file = writeRegistry('zones: [file.example]\ndaemon:\n  zones: [daemon.example]\n');
    const zones = async (args: string[], env: Record<string, string> = {}) => {
      const r = await runCli(['serve', '--print-config', '--json', '--registry', file, '--upstream', '192.0.2.1', ...args], env);
      expect(r.code, r.stderr).toBe(0);
      const c = JSON.parse(r.stdout) as { zones: string[]; sources: { zones: string } };
      return [c.sources.zones, ...c.zones];
    };
    expect(await zones([])).toEqual(['file', 'localhost', 'file.example', 'daemon.example']);
    expect(await zones([], { CANONPORT_ZONES: 'env.example,env2.example' })).toEqual(['env', 'localhost', 'env.example', 'env2.example']);
    expect(await zones(['--zone', 'flag.example'], { CANONPORT_ZONES: 'env.example' })).toEqual(['flag', 'localhost', 'flag.example']);
  });
});

describe('--print-config refuses what serve refuses, with the same error and exit code', () => {
  let port: number;
  let dir: string;
  let ca: TestCa;
  let leaf: TestLeaf;
  let other: TestLeaf;
  beforeAll(async () => {
    port = await freePort();
    dir = tempDir();
    ca = makeCa(tempDir('canonport-settings-tls-'));
    leaf = ca.leaf('daemon');
    other = ca.leaf('other');
  });
  /** Nothing listens on port 1: a start that got as far as dialling etcd would not be refused by these checks. */
  const ETCD = 'etcd://127.0.0.1:1';

  const cases: { name: string; code: number; says: RegExp; args: () => string[]; env?: () => Record<string, string> }[] = [
    {
      name: 'an upstream that is the DNS address, by flags',
      code: 1,
      says: /is this daemon's own DNS address .*\[CP_FORWARD_LOOP\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--upstream', `127.0.0.1:${port}`],
    },
    {
      name: 'an upstream that is the DNS address, by env',
      code: 1,
      says: /is this daemon's own DNS address .*\[CP_FORWARD_LOOP\]$/,
      args: () => [],
      env: () => ({ CANONPORT_DNS: `0.0.0.0:${port}`, CANONPORT_UPSTREAMS: `192.0.2.1 127.0.0.1:${port}` }),
    },
    {
      name: 'an upstream that is the DNS address, by the registry file',
      code: 1,
      says: /is this daemon's own DNS address .*\[CP_FORWARD_LOOP\]$/,
      args: () => ['--registry', writeRegistry(`daemon:\n  dns: 127.0.0.1:${port}\n  upstreams: [127.0.0.1:${port}]\n`, dir)],
    },
    {
      name: 'a bad flag value',
      code: 2,
      says: /^canonport: --workers: 0 is not an integer in 1–64 \[CP_CONFIG_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--workers', '0'],
    },
    {
      name: 'a bad env value',
      code: 2,
      says: /^canonport: CANONPORT_QUERY_LOG: 2 is not a number in 0–1 \[CP_CONFIG_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`],
      env: () => ({ CANONPORT_QUERY_LOG: '2' }),
    },
    {
      name: 'a bad registry value, located',
      code: 1,
      says: /registry\.yaml:3:3 \(daemon\.cacheSize\): -1 is not an integer in 0–10000000 \[CP_REGISTRY_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--registry', writeRegistry('zones: [a.example]\ndaemon:\n  cacheSize: -1\n', tempDir())],
    },
    // The files serve reads before it serves: certificates, and etcd's in cluster mode.
    {
      name: 'a gRPC certificate and key that do not exist',
      code: 1,
      says: /^canonport: cannot read the certificate \/nonexistent\/grpc\.crt: no such file \[CP_TLS_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--grpc-tls-cert', '/nonexistent/grpc.crt', '--grpc-tls-key', '/nonexistent/grpc.key'],
    },
    {
      name: 'a gRPC client CA that does not exist, by env',
      code: 1,
      says: /^canonport: cannot read the client CA file \/nonexistent\/ca\.crt: no such file \[CP_TLS_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`],
      env: () => ({ CANONPORT_GRPC_TLS_CERT: leaf.cert, CANONPORT_GRPC_TLS_KEY: leaf.key, CANONPORT_GRPC_TLS_CLIENT_CA: '/nonexistent/ca.crt' }),
    },
    {
      name: 'an HTTP key that is not the certificate\'s, by the registry file',
      code: 1,
      says: /is not the key of .*: the key does not match the certificate \[CP_TLS_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--registry', writeRegistry(`daemon:\n  httpTlsCert: ${leaf.cert}\n  httpTlsKey: ${other.key}\n`, tempDir())],
    },
    {
      name: 'an HTTP certificate that does not exist',
      code: 1,
      says: /^canonport: cannot read the certificate \/nonexistent\/http\.crt: no such file \[CP_TLS_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--http-tls-cert', '/nonexistent/http.crt', '--http-tls-key', leaf.key],
    },
    {
      name: 'an etcd CA that does not exist',
      code: 2,
      says: /^canonport: cannot read the etcd CA \/nonexistent\/etcd-ca\.crt: .*\[CP_CONFIG_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--cluster', ETCD, '--cluster-ca', '/nonexistent/etcd-ca.crt'],
    },
    {
      name: 'an etcd client key that does not exist, by the registry file',
      code: 2,
      says: /^canonport: cannot read the etcd client key \/nonexistent\/etcd\.key: .*\[CP_CONFIG_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--registry', writeRegistry(`daemon:\n  cluster: ${ETCD}\n  clusterCert: ${leaf.cert}\n  clusterKey: /nonexistent/etcd.key\n`, tempDir())],
    },
    {
      name: 'an etcd password file that does not exist',
      code: 2,
      says: /^canonport: --cluster-password-file \/nonexistent\/password: .*\[CP_CONFIG_INVALID\]$/,
      args: () => ['--dns', `127.0.0.1:${port}`, '--cluster', ETCD, '--cluster-user', 'canonport', '--cluster-password-file', '/nonexistent/password'],
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const args = c.args();
      const env = c.env?.() ?? {};
      const printed = await runCli(['serve', '--print-config', ...args], env);
      const served = await runCli(['serve', ...EPHEMERAL, ...args], env);
      expect(printed.code, printed.stderr).toBe(c.code);
      expect(served.code, served.stderr).toBe(c.code);
      expect(errorLine(printed.stderr)).toMatch(c.says);
      expect(errorLine(served.stderr)).toBe(errorLine(printed.stderr));
      expect(printed.stdout).toBe('');
    });
  }
});

describe('settings in a running daemon', () => {
  let client: UdpClient;
  beforeAll(async () => {
    client = await UdpClient.open();
  });
  afterAll(async () => {
    await client?.close();
  });

  it('--proc-root feeds the daemon inventory: Inventory lists the fixture /proc, not the host', async () => {
    const root = tempDir();
    mkdirSync(join(root, 'net'));
    const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
    const line = (i: number, addr: string, port: number) =>
      `   ${i}: ${addr}:${hex(port)} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${1000 + i} 1 0000000000000000 100 0 0 10 0`;
    const api = base32Port('api');
    const db = base32Port('db');
    writeFileSync(
      join(root, 'net', 'tcp'),
      ['  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode', line(0, '0100007F', api), line(1, '00000000', db), ''].join('\n'),
    );
    writeFileSync(join(root, 'net', 'tcp6'), '  sl  local_address                         remote_address                        st\n');
    const s = await startServe(['--proc-root', root, '--upstream', '127.0.0.1:9']);
    const grpc = createCanonportClient(`${s.grpc.host}:${s.grpc.port}`);
    try {
      const snap = await grpc.inventory();
      // The daemon's own listeners are in the host's /proc, not in the fixture.
      expect(snap.listeners.map((l) => [l.port, l.address, l.services])).toEqual([
        [api, '127.0.0.1', ['api']],
        [db, '0.0.0.0', ['db0']],
      ]);
    } finally {
      grpc.close();
      await s.stop();
    }
    expect((await s.exited).code).toBe(0);
  });

  it('a --zone flag replaces the registry zones: the flag zone is canonical, the file zone is not', async () => {
    const registry = writeRegistry('zones: [file.example]\n');
    const d = await startDaemon({ zones: ['flag.example'], registry });
    try {
      expect(d.config.zones).toEqual(['flag.example']);
      const inFlagZone = await client.ask(d.addresses.dns, { name: '_api._tcp.flag.example', type: T.SRV });
      expect(inFlagZone.msg?.rcode).toBe(RCODE.NOERROR);
      expect((inFlagZone.msg?.answers[0]?.data as { port?: number } | undefined)?.port).toBe(base32Port('api'));
      // Not served: it goes to forwarding, and this daemon has no upstream.
      const inFileZone = await client.ask(d.addresses.dns, { name: '_api._tcp.file.example', type: T.SRV });
      expect(inFileZone.msg?.answers ?? []).toEqual([]);
      expect(inFileZone.msg?.rcode).toBe(RCODE.SERVFAIL);
    } finally {
      await d.close(0);
    }
  });

  it('workers from the registry file: the primary starts that many DNS workers', async () => {
    const dns = await freePort();
    const registry = writeRegistry('daemon:\n  workers: 2\n');
    const s = await startServe(['--dns', `127.0.0.1:${dns}`, '--registry', registry, '--upstream', '127.0.0.1:9']);
    try {
      const started = await s.waitForLog((l) => l.event === 'workers');
      expect(started.workers).toBe(2);
    } finally {
      await s.stop();
    }
    expect((await s.exited).code).toBe(0);
  });
});
