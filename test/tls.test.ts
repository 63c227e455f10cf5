import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { handleSignals } from '../src/daemon/signals.js';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import { createCanonportClient, type CanonportClientOptions } from '../src/grpc/canonport-client.js';
import { silentLogger } from '../src/log.js';
import { makeCa, type TestCa, type TestLeaf } from './helpers/certs.js';
import { runCli } from './helpers/cli.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { RawAds } from './helpers/xds.js';
import { call, eventually, Health, healthServer } from './grpc-fixtures.js';

/**
 * TLS and mutual TLS on the daemon's gRPC and HTTP listeners, with a CA and
 * certificates the test makes with openssl, and every client canonport
 * ships: the typed client, `resolve`, `inventory --daemon`, `fleet`, the
 * `canon:` resolver and `xds-bootstrap`'s channel_creds. Then rotation: a
 * certificate replaced on disk is served to new connections while an open
 * Watch stream goes on; a corrupt or mismatched one keeps the old one.
 */

const ZONE = 'cluster-1.example.com';
let dir: string;
let ca: TestCa;
let other: TestCa;
let server1: TestLeaf;
let server2: TestLeaf;
let client: TestLeaf;
let otherClient: TestLeaf;
const daemons: Daemon[] = [];
const closers: Array<() => void> = [];

beforeAll(() => {
  dir = tempDir('canonport-tls-');
  ca = makeCa(dir, 'trusted');
  other = makeCa(dir, 'other');
  server1 = ca.leaf('daemon-1');
  server2 = ca.leaf('daemon-2');
  client = ca.leaf('client', { usage: 'client' });
  otherClient = other.leaf('stranger', { usage: 'client' });
}, 60_000);

afterEach(() => {
  for (const c of closers.splice(0)) c();
});
afterAll(async () => {
  for (const d of daemons) await d.close(100);
});

interface Captured {
  level: number;
  code?: string;
  msg: string;
}
function capture(): { logger: pino.Logger; lines: Captured[] } {
  const lines: Captured[] = [];
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Captured);
        cb();
      },
    }),
  );
  return { logger, lines };
}

async function start(flags: Record<string, unknown>, logger?: pino.Logger): Promise<Daemon> {
  // Only a logger handed in follows logLevel; the default one stays silent.
  const d = await startDaemon({ logLevel: 'info', ...flags }, logger ? { logger } : {});
  daemons.push(d);
  return d;
}

const at = (d: Daemon) => `127.0.0.1:${d.addresses.grpc.port}`;

function typed(d: Daemon, tls: CanonportClientOptions['tls']) {
  const c = createCanonportClient(at(d), { tls, timeoutMs: 3000 });
  closers.push(() => c.close());
  return c;
}

async function failure(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error('expected the call to fail');
}

/** The CN of the certificate a new TLS connection to `port` is given. */
function servedCn(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, ALPNProtocols: ['h2', 'http/1.1'] }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.destroy();
      resolve(Array.isArray(cn) ? cn.join(',') : (cn ?? ''));
    });
    s.once('error', reject);
  });
}

/** A copy of `leaf` as a daemon would be given it, in a directory of its own, for a test to rotate. */
function liveCopy(name: string, leaf: TestLeaf): TestLeaf {
  const certs = join(dir, name);
  mkdirSync(certs);
  const copy = { cert: join(certs, 'tls.crt'), key: join(certs, 'tls.key') };
  copyFileSync(leaf.cert, copy.cert);
  copyFileSync(leaf.key, copy.key);
  return copy;
}

/** Replaces a file the way cert-manager and editors do: a new file renamed over the old. */
function replace(target: string, from: string | Buffer): void {
  const tmp = `${target}.new`;
  if (typeof from === 'string') copyFileSync(from, tmp);
  else writeFileSync(tmp, from);
  renameSync(tmp, target);
}

describe('gRPC over TLS (--grpc-tls-cert, --grpc-tls-key)', () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await start({ grpcTlsCert: server1.cert, grpcTlsKey: server1.key });
  });

  it('serves a TLS client that trusts its CA', async () => {
    expect((await typed(d, { ca: ca.cert }).resolve('api.localhost')).port).toBe(12082);
    // PEM bytes work as well as paths.
    expect((await typed(d, { ca: readFileSync(ca.cert) }).resolve('api.localhost')).port).toBe(12082);
  });

  it('fails a plaintext client, saying the daemon speaks TLS and which option to give', async () => {
    const e = await failure(typed(d, false).resolve('api.localhost'));
    expect(e.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(e.message).toContain('speaks TLS (its --grpc-tls-cert is set) and this client dialled in plaintext');
    expect(e.message).toContain('--tls-ca FILE (CANONPORT_TLS_CA)');
  });

  it('fails a client that trusts another CA, naming --tls-ca', async () => {
    const e = await failure(typed(d, { ca: other.cert }).resolve('api.localhost'));
    expect(e.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(e.message).toMatch(/certificate .* is not trusted \(.*\): give the CA that signed it with --tls-ca/);
  });

  it('checks the name the daemon was dialled by, or the one --tls-server-name gives', async () => {
    // The certificate names localhost, 127.0.0.1 and ::1: dialled at 127.0.0.1, another name does not match.
    const wrong = await failure(typed(d, { ca: ca.cert, serverName: 'daemon.example.org' }).resolve('api.localhost'));
    expect(wrong.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(wrong.message).toContain('or the name it carries with --tls-server-name (CANONPORT_TLS_SERVER_NAME)');
    expect((await typed(d, { ca: ca.cert, serverName: 'localhost' }).resolve('api.localhost')).port).toBe(12082);
    const cli = await runCli(['resolve', '--daemon', at(d), 'api.localhost'], { CANONPORT_TLS_CA: ca.cert, CANONPORT_TLS_SERVER_NAME: 'localhost' });
    expect(cli.code, cli.stderr).toBe(0);
  });

  it('canonport resolve: --tls-ca, or CANONPORT_TLS_CA; without either, exit 1 with the reason', async () => {
    const flag = await runCli(['resolve', '--daemon', at(d), '--tls-ca', ca.cert, 'api.localhost']);
    expect(flag.stderr).toBe('');
    expect(flag.stdout).toContain('port 12082');
    const env = await runCli(['resolve', 'api.localhost'], { CANONPORT_GRPC: at(d), CANONPORT_TLS_CA: ca.cert });
    expect(env.code, env.stderr).toBe(0);
    const none = await runCli(['resolve', '--daemon', at(d), 'api.localhost']);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/speaks TLS .* \[CP_TLS_HANDSHAKE_FAILED\]\n$/);
    const missing = await runCli(['resolve', '--daemon', at(d), '--tls-ca', join(dir, 'nope.pem'), 'api.localhost']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`cannot read --tls-ca (CANONPORT_TLS_CA) ${join(dir, 'nope.pem')}: no such file [CP_TLS_INVALID]`);
  });

  it('says so when a TLS client dials a plaintext daemon', async () => {
    const plain = await start({});
    const e = await failure(typed(plain, { ca: ca.cert }).resolve('api.localhost'));
    expect(e.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(e.message).toContain('does not speak TLS (no --grpc-tls-cert there)');
  });
});

describe('mutual TLS (--grpc-tls-client-ca)', () => {
  let d: Daemon;
  let hostsFile: string;
  beforeAll(async () => {
    d = await start({ grpcTlsCert: server1.cert, grpcTlsKey: server1.key, grpcTlsClientCa: ca.cert });
    hostsFile = join(dir, 'fleet-hosts');
    writeFileSync(hostsFile, `${at(d)}\n`);
  });

  it('rejects a TLS client without a certificate at the handshake, naming --tls-cert and --tls-key', async () => {
    const e = await failure(typed(d, { ca: ca.cert }).resolve('api.localhost'));
    expect(e.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(e.message).toContain('requires a client certificate (its --grpc-tls-client-ca is set)');
    expect(e.message).toContain('--tls-cert FILE --tls-key FILE (CANONPORT_TLS_CERT, CANONPORT_TLS_KEY)');
  });

  it('rejects a client whose certificate another CA signed', async () => {
    const e = await failure(typed(d, { ca: ca.cert, cert: otherClient.cert, key: otherClient.key }).resolve('api.localhost'));
    expect(e.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(e.message).toContain("rejected this client certificate");
    expect(e.message).toContain("must be signed by a CA in the daemon's --grpc-tls-client-ca");
  });

  it('rejects a plaintext client, and says both what it lacks', async () => {
    const e = await failure(typed(d, false).resolve('api.localhost'));
    expect(e.code).toBe('CP_TLS_HANDSHAKE_FAILED');
    expect(e.message).toContain('speaks TLS');
    expect(e.message).toContain('and show a client certificate signed by its --grpc-tls-client-ca');
  });

  it('serves a client with a certificate from its CA: the typed client, Watch included', async () => {
    const c = typed(d, { ca: ca.cert, cert: client.cert, key: client.key });
    expect((await c.resolve('api.localhost')).port).toBe(12082);
    const w = c.watch('api.localhost');
    for await (const r of w) {
      expect(r.port).toBe(12082);
      break;
    }
  });

  it('resolve, inventory --daemon and fleet with the TLS flags, and with CANONPORT_TLS_*', async () => {
    const flags = ['--tls-ca', ca.cert, '--tls-cert', client.cert, '--tls-key', client.key];
    const env = { CANONPORT_TLS_CA: ca.cert, CANONPORT_TLS_CERT: client.cert, CANONPORT_TLS_KEY: client.key };
    for (const [args, vars] of [
      [flags, {}],
      [[], env],
    ] as const) {
      const r = await runCli(['resolve', '--daemon', at(d), ...args, 'api.localhost'], vars);
      expect(r.stderr).toBe('');
      expect(r.stdout).toContain('port 12082');
      const inv = await runCli(['inventory', '--daemon', at(d), '--json', ...args], vars);
      expect(inv.stderr).toBe('');
      expect(JSON.parse(inv.stdout)).toHaveProperty('listeners');
      const fleet = await runCli(['fleet', '--json', '--hosts-file', hostsFile, ...args], vars);
      expect(fleet.code, fleet.stderr).toBe(0);
      expect((JSON.parse(fleet.stdout) as { hosts: Array<{ reachable: boolean }> }).hosts).toEqual([expect.objectContaining({ reachable: true })]);
    }
    // Without the certificate each says what the daemon demands.
    const inv = await runCli(['inventory', '--daemon', at(d), '--tls-ca', ca.cert]);
    expect(inv.code).toBe(1);
    expect(inv.stderr).toMatch(/requires a client certificate .*\[CP_TLS_HANDSHAKE_FAILED\]/);
    const fleet = await runCli(['fleet', '--json', '--tls-ca', ca.cert, at(d)]);
    const host = (JSON.parse(fleet.stdout) as { hosts: Array<{ reachable: boolean; code: string; error: string }> }).hosts[0]!;
    expect(host).toMatchObject({ reachable: false, code: 'CP_TLS_HANDSHAKE_FAILED' });
    expect(host.error).toContain('--tls-cert FILE --tls-key FILE');
  });

  it('the canon: resolver reaches the daemon with CANONPORT_TLS_* (and { tls }), and says why when it cannot', async () => {
    const backend = await healthServer('through-tls');
    closers.push(() => backend.server.forceShutdown());
    const registry = writeRegistry(`zones: [${ZONE}]\nhosts: {kab.${ZONE}: [127.0.0.1]}\nservices: {kab: {port: ${backend.port}}}\n`);
    const m = await start({ grpcTlsCert: server1.cert, grpcTlsKey: server1.key, grpcTlsClientCa: ca.cert, registry });
    const dial = () => {
      const c = new Health(`canon:///kab.${ZONE}`, grpc.credentials.createInsecure());
      closers.push(() => c.close());
      return c;
    };
    // Only the daemon knows kab's port: without it (no registry file here) the resolver would compute another one.
    const saved = { ...process.env };
    try {
      Object.assign(process.env, { CANONPORT_TLS_CA: ca.cert, CANONPORT_TLS_CERT: client.cert, CANONPORT_TLS_KEY: client.key });
      registerCanonResolver({ daemon: at(m), registryFile: undefined });
    } finally {
      for (const k of ['CANONPORT_TLS_CA', 'CANONPORT_TLS_CERT', 'CANONPORT_TLS_KEY']) if (saved[k] === undefined) delete process.env[k];
    }
    expect((await call<{ status: string }>(dial(), 'Check', { service: 'through-tls' })).status).toBe('SERVING');
    registerCanonResolver({ daemon: at(m), registryFile: undefined, tls: { ca: ca.cert, cert: client.cert, key: client.key } });
    expect((await call<{ status: string }>(dial(), 'Check', { service: 'through-tls' })).status).toBe('SERVING');
    // Without a certificate the daemon refuses; the fallback's answer is the scheme's port, where nothing listens,
    // and the call's error carries why the daemon was not used.
    registerCanonResolver({ daemon: at(m), registryFile: undefined, tls: { ca: ca.cert }, daemonTimeoutMs: 3000 });
    const err = (await failure(call(dial(), 'Check', { service: 'through-tls' }, 4000))) as unknown as grpc.ServiceError;
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.details).toContain('requires a client certificate');
    expect(err.details).toContain('CP_TLS_HANDSHAKE_FAILED');
    // Unreadable files fail at registration, loudly.
    expect(() => registerCanonResolver({ tls: { ca: join(dir, 'nope.pem') } })).toThrow(expect.objectContaining({ code: 'CP_TLS_INVALID' }));
  });

  it('xds-bootstrap writes gRFC A65 tls channel_creds whose files open an ADS stream to the daemon', async () => {
    const r = await runCli(['xds-bootstrap', '--server', at(d), '--tls-ca', ca.cert, '--tls-cert', client.cert, '--tls-key', client.key]);
    expect(r.code, r.stderr).toBe(0);
    const boot = JSON.parse(r.stdout) as { xds_servers: Array<{ server_uri: string; channel_creds: Array<{ type: string; config: Record<string, string> }> }> };
    const [creds] = boot.xds_servers[0]!.channel_creds;
    expect(creds).toEqual({
      type: 'tls',
      config: { ca_certificate_file: ca.cert, certificate_file: client.cert, private_key_file: client.key, refresh_interval: '600s' },
    });
    // The same from the environment; and plaintext without any.
    const env = await runCli(['xds-bootstrap', '--server', at(d)], { CANONPORT_TLS_CA: ca.cert, CANONPORT_TLS_CERT: client.cert, CANONPORT_TLS_KEY: client.key });
    expect(JSON.parse(env.stdout)).toEqual(boot);
    const plain = await runCli(['xds-bootstrap', '--server', at(d)]);
    expect(JSON.parse(plain.stdout).xds_servers[0].channel_creds).toEqual([{ type: 'insecure' }]);
    // A client reading the bootstrap as A65 says: TLS with those files, to server_uri.
    const c = creds!.config;
    const ads = new RawAds(
      boot.xds_servers[0]!.server_uri,
      grpc.credentials.createSsl(readFileSync(c.ca_certificate_file!), readFileSync(c.private_key_file!), readFileSync(c.certificate_file!)),
    );
    closers.push(() => ads.cancel());
    ads.send('listener', ['api.localhost']);
    const res = await ads.next();
    expect(res.names).toEqual(['api.localhost']);
    // A half-given client certificate is a usage error.
    expect((await runCli(['xds-bootstrap', '--tls-cert', client.cert])).code).toBe(2);
  });
});

describe('--grpc-tls-client-auth optional with --inventory-require-cert', () => {
  it('serves Resolve to clients without a certificate, Inventory only to clients with one', async () => {
    const d = await start({ grpcTlsCert: server1.cert, grpcTlsKey: server1.key, grpcTlsClientCa: ca.cert, grpcTlsClientAuth: 'optional', inventoryRequireCert: true });
    const anonymous = typed(d, { ca: ca.cert });
    expect((await anonymous.resolve('api.localhost')).port).toBe(12082);
    const e = await failure(anonymous.inventory());
    expect(e.code).toBe('CP_ACCESS_DENIED');
    expect(e.message).toContain('Inventory needs a client certificate signed by the daemon\'s --grpc-tls-client-ca (--inventory-require-cert)');
    expect((await typed(d, { ca: ca.cert, cert: client.cert, key: client.key }).inventory()).listeners).toBeInstanceOf(Array);
    // A certificate from another CA is offered, checked, and not an authenticated peer: Inventory refused, Resolve served.
    const stranger = typed(d, { ca: ca.cert, cert: otherClient.cert, key: otherClient.key });
    expect((await stranger.resolve('api.localhost')).port).toBe(12082);
    expect((await failure(stranger.inventory())).code).toBe('CP_ACCESS_DENIED');
    const denied = (await d.metrics.accessDenied.get()).values.find((v) => v.labels.reason === 'no_certificate');
    expect(denied?.value).toBe(2);
  });
});

describe('certificate rotation', () => {
  it('serves a certificate replaced on disk to new connections while an open Watch stream goes on', async () => {
    const { cert, key } = liveCopy('rotate', server1);
    const registry = (port: number) => `zones: [${ZONE}]\nhosts: {kab.${ZONE}: [127.0.0.1]}\nservices: {kab: {port: ${port}}}\n`;
    const regFile = writeRegistry(registry(20001));
    const { logger, lines } = capture();
    const d = await start({ grpcTlsCert: cert, grpcTlsKey: key, grpcTlsClientCa: ca.cert, registry: regFile }, logger);
    expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-1');

    const c = typed(d, { ca: ca.cert, cert: client.cert, key: client.key });
    const stream = c.watch(`kab.${ZONE}`);
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value.port).toBe(20001);

    // Rotate: key first, then the certificate (a reader in between sees a mismatch, refused and retried on the next event).
    replace(key, server2.key);
    replace(cert, server2.cert);
    await eventually(async () => expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-2'), 100, 50);
    const reloads = await d.metrics.tlsReloads.get();
    expect(reloads.values.find((v) => v.labels.listener === 'grpc' && v.labels.result === 'ok')?.value).toBeGreaterThanOrEqual(1);
    expect(lines.some((l) => l.msg === 'TLS certificate reloaded for new connections')).toBe(true);

    // The stream opened under the old certificate is still there: it gets the next change.
    writeFileSync(regFile, registry(20002));
    await d.reload();
    expect((await it.next()).value.port).toBe(20002);
    // And a new client connects under the new certificate.
    expect((await typed(d, { ca: ca.cert, cert: client.cert, key: client.key }).resolve(`kab.${ZONE}`)).port).toBe(20002);
    stream.cancel();

    // A corrupt certificate keeps the running one, logs why and counts it.
    const failed = async () => (await d.metrics.tlsReloads.get()).values.find((v) => v.labels.result === 'failed')?.value ?? 0;
    const before = await failed();
    replace(cert, Buffer.from('-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n'));
    await eventually(async () => expect(await failed()).toBeGreaterThan(before), 100, 50);
    expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-2');
    expect((await typed(d, { ca: ca.cert, cert: client.cert, key: client.key }).resolve(`kab.${ZONE}`)).port).toBe(20002);
    const refused = lines.filter((l) => l.code === 'CP_TLS_INVALID');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.at(-1)!.msg).toBe('new TLS certificate refused; the running one keeps serving');

    // A certificate that does not match the key is refused the same way.
    const mid = await failed();
    replace(cert, server1.cert);
    await eventually(async () => expect(await failed()).toBeGreaterThan(mid), 100, 50);
    expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-2');
    expect(JSON.stringify(lines.filter((l) => l.code === 'CP_TLS_INVALID').at(-1))).toContain('the key does not match the certificate');
  });

  it('re-reads on SIGHUP what no file event announced', async () => {
    // The daemon watches the directory of the paths it is given; here they are symlinks into another one,
    // whose files change without an event in the watched directory. Only the reload sees them.
    const store = join(dir, 'store');
    const live = join(dir, 'live');
    mkdirSync(store);
    mkdirSync(live);
    copyFileSync(server1.cert, join(store, 'tls.crt'));
    copyFileSync(server1.key, join(store, 'tls.key'));
    symlinkSync(join(store, 'tls.crt'), join(live, 'tls.crt'));
    symlinkSync(join(store, 'tls.key'), join(live, 'tls.key'));
    const d = await start({ grpcTlsCert: join(live, 'tls.crt'), grpcTlsKey: join(live, 'tls.key') });
    const signals = handleSignals(d, silentLogger, 1000);
    closers.push(() => signals.dispose());
    replace(join(store, 'tls.key'), server2.key);
    replace(join(store, 'tls.crt'), server2.cert);
    await new Promise((r) => setTimeout(r, 800));
    expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-1');
    process.kill(process.pid, 'SIGHUP');
    await eventually(async () => expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-2'), 100, 50);
  });
});

describe('HTTPS (--http-tls-cert, --http-tls-key, --http-tls-client-ca)', () => {
  let d: Daemon;
  let base: string;
  beforeAll(async () => {
    d = await start({ httpTlsCert: server1.cert, httpTlsKey: server1.key, httpTlsClientCa: ca.cert });
    base = `https://127.0.0.1:${d.addresses.http.port}`;
  });

  const curl = (args: string[]) =>
    new Promise<{ status: string; body: string }>((resolve, reject) => {
      const child = spawn('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '5', ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      child.stdout.on('data', (x) => (out += x));
      child.once('error', reject);
      child.once('exit', () => {
        const i = out.lastIndexOf('\n');
        resolve({ status: out.slice(i + 1).trim(), body: out.slice(0, i) });
      });
    });

  it('answers the probes to any TLS client, /metrics only to one with a certificate from its CA', async () => {
    expect((await curl(['--cacert', ca.cert, `${base}/healthz`])).status).toBe('200');
    expect((await curl(['--cacert', ca.cert, `${base}/readyz`])).status).toBe('200');
    const anonymous = await curl(['--cacert', ca.cert, `${base}/metrics`]);
    expect(anonymous.status).toBe('403');
    expect(anonymous.body).toContain("needs a client certificate signed by the daemon's --http-tls-client-ca");
    expect((await curl(['--cacert', ca.cert, '--cert', otherClient.cert, '--key', otherClient.key, `${base}/metrics`])).status).toBe('403');
    const scraper = await curl(['--cacert', ca.cert, '--cert', client.cert, '--key', client.key, `${base}/metrics`]);
    expect(scraper.status).toBe('200');
    expect(scraper.body).toContain('canonport_tls_certificate_expiry_timestamp_seconds{listener="http"}');
    // Plaintext HTTP gets no answer from an HTTPS port.
    expect((await curl([`http://127.0.0.1:${d.addresses.http.port}/healthz`])).status).toBe('000');
  });
});

describe('a certificate not valid yet (issue 21, finding 12)', () => {
  const later = () => ca.leaf(`later-${Date.now()}`, { notBefore: new Date(Date.now() + 30 * 86_400_000), days: 60 });

  it('stops the daemon at start with CP_TLS_INVALID, as an expired one does', async () => {
    const future = later();
    await expect(startDaemon({ grpcTlsCert: future.cert, grpcTlsKey: future.key })).rejects.toMatchObject({ code: 'CP_TLS_INVALID', message: expect.stringMatching(/is not valid before \d{4}-/) });
    await expect(startDaemon({ httpTlsCert: future.cert, httpTlsKey: future.key })).rejects.toMatchObject({ code: 'CP_TLS_INVALID', message: expect.stringContaining(`${future.cert} is not valid before`) });
  });

  it('is refused on rotation: the running certificate keeps serving, CP_TLS_INVALID is logged and counted', async () => {
    const { cert, key } = liveCopy('rotate-later', server1);
    const { logger, lines } = capture();
    const d = await start({ grpcTlsCert: cert, grpcTlsKey: key }, logger);
    expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-1');
    const future = later();
    replace(key, future.key);
    replace(cert, future.cert);
    await eventually(async () => expect(lines.some((l) => l.code === 'CP_TLS_INVALID' && JSON.stringify(l).includes('is not valid before'))).toBe(true), 100, 50);
    expect(await servedCn(d.addresses.grpc.port)).toBe('daemon-1');
    const failed = (await d.metrics.tlsReloads.get()).values.find((v) => v.labels.listener === 'grpc' && v.labels.result === 'failed')?.value ?? 0;
    expect(failed).toBeGreaterThan(0);
  });
});

describe('a certificate set that does not check out at start', () => {
  it('stops the daemon with CP_TLS_INVALID naming the file', async () => {
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    await expect(startDaemon({ grpcTlsCert: garbage, grpcTlsKey: server1.key })).rejects.toMatchObject({ code: 'CP_TLS_INVALID', message: `${garbage} holds no PEM certificate` });
    await expect(startDaemon({ httpTlsCert: server1.cert, httpTlsKey: server2.key })).rejects.toMatchObject({ code: 'CP_TLS_INVALID', message: expect.stringContaining('the key does not match the certificate') });
    await expect(startDaemon({ grpcTlsCert: server1.cert })).rejects.toMatchObject({ code: 'CP_CONFIG_INVALID', message: expect.stringContaining('--grpc-tls-cert and --grpc-tls-key go together') });
    await expect(startDaemon({ inventoryRequireCert: true })).rejects.toMatchObject({ code: 'CP_CONFIG_INVALID', message: expect.stringContaining('--inventory-require-cert needs --grpc-tls-client-ca') });
  });
});
