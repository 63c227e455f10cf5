import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHostPort } from '../src/config/address.js';
import { createHostNet } from './helpers/netns.js';
import { requireUserSwitch } from './helpers/sandbox.js';
import { tempDir } from './helpers/temp.js';
import { requireTool } from './helpers/tools.js';
import { buildConfig, configFromEnv, DEFAULTS, ENV_VARS } from '../src/config/config.js';
import { parseRegistry } from '../src/registry/load.js';
import { fixedDefault } from '../src/config/settings.js';
import { Registry } from '../src/registry/registry.js';
import { base32Port } from '../src/scheme/index.js';
import { xdsBootstrap } from '../src/xds/bootstrap.js';
import { PythonXdsClient, pollUntil, requirePythonGrpc, startBackend, type Backend } from './helpers/xds.js';

/**
 * deploy/systemd and deploy/systemd-resolved: the unit's keys, systemd's own
 * verifier, the environment file through the real config code, and the
 * daemon started the way the unit starts it (same command line, environment
 * file, user and capabilities), reloaded with ExecReload and stopped with
 * KillSignal. The xDS bootstrap unit and the client drop-in likewise: keys,
 * verifier, and its ExecStart run against that daemon, the file it writes
 * used by a stock gRPC client through the drop-in's GRPC_XDS_BOOTSTRAP.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const UNIT = join(DEPLOY, 'systemd/canonport.service');
const ENV_FILE = join(DEPLOY, 'systemd/canonport.env');
const RESOLVED = join(DEPLOY, 'systemd-resolved/canonport.conf');
const XDS_UNIT = join(DEPLOY, 'systemd/canonport-xds-bootstrap.service');
const XDS_DROPIN = join(DEPLOY, 'systemd/xds-client.conf');
const CONTAINERS_DROPIN = join(DEPLOY, 'systemd/canonport-containers.conf');

/** systemd's INI dialect: sections, repeated keys accumulate, `#`/`;` comments, `\` continues a line. */
function parseIni(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  const joined = text.replace(/\\\n/g, ' ');
  for (const [i, raw] of joined.split('\n').entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[([A-Za-z-]+)\]$/.exec(line);
    if (section) {
      sections.set(section[1]!, (current = sections.get(section[1]!) ?? new Map()));
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z0-9]*)=(.*)$/.exec(line);
    if (!kv || !current) throw new Error(`line ${i + 1} is neither a section nor Key=value: ${line}`);
    current.set(kv[1]!, [...(current.get(kv[1]!) ?? []), kv[2]!.trim()]);
  }
  return sections;
}

/** An EnvironmentFile= as systemd reads it: KEY=VALUE, comments, optional quotes. */
function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`not KEY=VALUE: ${line}`);
    env[m[1]!] = m[2]!.replace(/^"(.*)"$|^'(.*)'$/, '$1$2');
  }
  return env;
}

const unit = parseIni(readFileSync(UNIT, 'utf8'));
const service = unit.get('Service') ?? new Map<string, string[]>();
const one = (key: string): string | undefined => service.get(key)?.at(-1);

describe('deploy/systemd/canonport.service', () => {
  it('has the required keys: non-root, port-53 capability only, hardening, restart, reload', () => {
    expect([...unit.keys()]).toEqual(['Unit', 'Service', 'Install']);
    expect(one('DynamicUser') === 'yes' || (one('User') !== undefined && one('User') !== 'root')).toBe(true);
    expect(one('AmbientCapabilities')).toBe('CAP_NET_BIND_SERVICE');
    expect(one('CapabilityBoundingSet')).toBe('CAP_NET_BIND_SERVICE');
    const yes = ['NoNewPrivileges', 'ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'ProtectControlGroups'];
    for (const k of yes) expect(one(k), k).toBe('yes');
    expect(one('ProtectSystem')).toBe('strict');
    expect(one('RestrictAddressFamilies')?.split(/\s+/).sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    expect(service.get('SystemCallFilter')).toContain('@system-service');
    // V8's JIT writes then executes code: MemoryDenyWriteExecute=yes makes node abort.
    expect(one('MemoryDenyWriteExecute')).toBeUndefined();
    expect(readFileSync(UNIT, 'utf8')).toMatch(/MemoryDenyWriteExecute= is left off: V8's JIT/);
    expect(one('Restart')).toBe('on-failure');
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(one('EnvironmentFile')).toBe('-/etc/default/canonport');
    expect(one('ExecStart')).toMatch(/^\/usr\/bin\/env MALLOC_ARENA_MAX=2 node --max-semi-space-size=4 --v8-pool-size=1 \/opt\/canonport\/bin\/canonport\.js serve --registry \/etc\/canonport\/registry\.yaml$/);
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('passes systemd-analyze verify and scores well on systemd-analyze security', () => {
    requireTool('systemd-analyze', 'systemd');
    const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    console.info(`running ${probe.stdout.split('\n')[0]}: systemd-analyze verify and security --offline on canonport.service`);
    const verify = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8', timeout: 30_000 });
    // verify exits 0 even for unknown keys; any line about our file is a finding.
    const findings = `${verify.stdout}\n${verify.stderr}`.split('\n').filter((l) => l.includes('canonport.service'));
    expect(verify.status, verify.stderr).toBe(0);
    expect(findings).toEqual([]);
    const security = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', UNIT], { encoding: 'utf8', timeout: 30_000 });
    // --offline needs systemd ≥ 250 (Debian 12 has 252): an older one fails here, saying so.
    expect(security.stderr, 'systemd-analyze security --offline needs systemd ≥ 250').not.toMatch(/unrecognized option|Unknown option/i);
    const m = /Overall exposure level for canonport\.service: ([\d.]+)/.exec(security.stdout);
    expect(m, security.stdout + security.stderr).not.toBeNull();
    console.info(`systemd-analyze security exposure: ${m![1]} (0 = locked down, 10 = exposed)`);
    expect(Number(m![1])).toBeLessThanOrEqual(2.5);
  });

  it('does not let verify pass a broken unit (the check can fail)', () => {
    requireTool('systemd-analyze', 'systemd');
    const dir = mkdtempSync(join(tmpdir(), 'canonport-unit-'));
    try {
      const broken = join(dir, 'canonport.service');
      writeFileSync(broken, readFileSync(UNIT, 'utf8').replace('ProtectSystem=strict', 'ProtectSystem=maybe').replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'));
      const r = spawnSync('systemd-analyze', ['verify', broken], { encoding: 'utf8', timeout: 30_000 });
      expect(r.stderr).toMatch(/protect system value.*maybe/);
      expect(r.stderr).toMatch(/Unknown key.*NoNewPrivilege/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** A unit's [Service] with a drop-in's over it, as systemd merges them: a drop-in's lines come after the unit's. */
function withDropIn(section: Map<string, string[]>, dropInText: string): Map<string, string[]> {
  const merged = new Map([...section].map(([k, v]) => [k, [...v]]));
  for (const [k, v] of parseIni(dropInText).get('Service') ?? []) merged.set(k, [...(merged.get(k) ?? []), ...v]);
  return merged;
}

/** The value a unit's Environment= lines give `name` (the last one wins). */
const envOf = (section: Map<string, string[]>, name: string) =>
  (section.get('Environment') ?? []).map((e) => (e.startsWith(`${name}=`) ? e.slice(name.length + 1) : undefined)).filter((v) => v !== undefined).at(-1);

describe('deploy/systemd/canonport-containers.conf (issue 26)', () => {
  const text = readFileSync(CONTAINERS_DROPIN, 'utf8');

  it('shows other processes and reads every namespace, adding no capability; the unit alone reads its own and hides them', () => {
    // The unit alone: processes hidden, and the namespaces setting saying what that means (no warning at every start).
    expect(one('ProtectProc')).toBe('invisible');
    expect(envOf(service, 'CANONPORT_NAMESPACES')).toBe('own');
    const dropIn = parseIni(text);
    expect([...dropIn.keys()]).toEqual(['Service']);
    expect([...dropIn.get('Service')!.keys()].sort()).toEqual(['Environment', 'ProtectProc']);
    const merged = withDropIn(service, text);
    expect(merged.get('ProtectProc')!.at(-1)).toBe('default');
    expect(envOf(merged, 'CANONPORT_NAMESPACES')).toBe('all');
    // No capability beyond the unit's port-53 one: the files it reads are world-readable.
    expect(merged.get('AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(merged.get('CapabilityBoundingSet')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(text).toMatch(/No capability is added/);
  });

  it('passes systemd-analyze verify installed as canonport.service.d/containers.conf; a broken copy does not', () => {
    requireTool('systemd-analyze', 'systemd');
    for (const [dropInText, ok] of [[text, true], [text.replace('ProtectProc=default', 'ProtectProc=sometimes'), false]] as const) {
      const dir = tempDir('canonport-containers-dropin-');
      cpSync(UNIT, join(dir, 'canonport.service'));
      mkdirSync(join(dir, 'canonport.service.d'));
      writeFileSync(join(dir, 'canonport.service.d/containers.conf'), dropInText);
      const r = verifyIn(dir, 'canonport.service');
      if (ok) {
        expect(r.status, r.stderr).toBe(0);
        expect(r.findings).toEqual([]);
      } else {
        expect(r.findings.join('\n')).toMatch(/containers\.conf:\d+: Failed to parse \/proc\/ protection mode, ignoring: sometimes/);
      }
    }
  });
});

describe('deploy/systemd/canonport.env', () => {
  const env = parseEnvFile(readFileSync(ENV_FILE, 'utf8'));

  it('sets only variables canonport reads', () => {
    expect(Object.keys(env).length).toBeGreaterThan(3);
    for (const k of Object.keys(env)) expect(ENV_VARS as readonly string[], k).toContain(k);
  });

  it('gives a valid config listening on 127.0.0.1:53 with explicit upstreams', () => {
    const cfg = buildConfig({}, configFromEnv(env), Registry.empty(), { resolvConf: '/nonexistent' });
    expect(cfg.dns).toEqual({ host: '127.0.0.1', port: 53 });
    expect(cfg.zones).toContain('cluster-1.example.com');
    expect(cfg.upstreamsFrom).toBe('env');
    expect(cfg.upstreams.length).toBeGreaterThan(0);
    expect(cfg.upstreams.every((u) => !u.host.startsWith('127.'))).toBe(true);
  });
});

const xdsUnit = parseIni(readFileSync(XDS_UNIT, 'utf8'));
const xdsService = xdsUnit.get('Service') ?? new Map<string, string[]>();
const xone = (key: string): string | undefined => xdsService.get(key)?.at(-1);
const dropIn = parseIni(readFileSync(XDS_DROPIN, 'utf8'));
/** GRPC_XDS_BOOTSTRAP as the drop-in sets it for a client service. */
const clientBootstrapPath = (): string | undefined =>
  (dropIn.get('Service')?.get('Environment') ?? []).map((e) => /^GRPC_XDS_BOOTSTRAP=(.+)$/.exec(e)?.[1]).find((v) => v !== undefined);
/** The shell script of the bootstrap unit's `ExecStart=/bin/sh -c '…'`. */
const bootstrapScript = (): string => {
  const m = /^\/bin\/sh -c '([^']+)'$/.exec(xone('ExecStart') ?? '');
  expect(m, 'ExecStart=/bin/sh -c \'…\'').not.toBeNull();
  return m![1]!;
};

/** systemd-analyze verify on `unit` with `dir` as the unit search path: the lines about files in `dir`. */
function verifyIn(dir: string, unit: string): { status: number | null; findings: string[]; stderr: string } {
  const r = spawnSync('systemd-analyze', ['verify', join(dir, unit)], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
  return { status: r.status, findings: `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes(dir) || /not found/.test(l)), stderr: r.stderr };
}

/** An example client service with the drop-in installed, beside canonport's units, in a fresh directory. */
function clientServiceTree(dropInText: string): string {
  const dir = tempDir('canonport-dropin-');
  for (const f of [UNIT, XDS_UNIT]) cpSync(f, join(dir, f.split('/').at(-1)!));
  writeFileSync(join(dir, 'example-grpc.service'), '[Unit]\nDescription=a gRPC service dialling xds:///NAME\n\n[Service]\nDynamicUser=yes\nExecStart=/bin/true\n');
  mkdirSync(join(dir, 'example-grpc.service.d'));
  writeFileSync(join(dir, 'example-grpc.service.d/canonport-xds.conf'), dropInText);
  return dir;
}

describe('deploy/systemd/canonport-xds-bootstrap.service and xds-client.conf', () => {
  it('writes the bootstrap once, world-readable, under /run/canonport, from the daemon\'s settings file, with no network or capability', () => {
    expect([...xdsUnit.keys()]).toEqual(['Unit', 'Service', 'Install']);
    expect(xone('Type')).toBe('oneshot');
    // Active (exited) after the write: the runtime directory lives until the unit stops.
    expect(xone('RemainAfterExit')).toBe('yes');
    expect(xone('DynamicUser')).toBe('yes');
    expect(xone('EnvironmentFile')).toBe(one('EnvironmentFile'));
    expect(xone('RuntimeDirectory')).toBe('canonport');
    expect(xone('RuntimeDirectoryMode')).toBe('0755');
    expect(xone('RuntimeDirectoryPreserve')).toBe('restart');
    expect(xone('CapabilityBoundingSet')).toBe('');
    expect(xone('AmbientCapabilities')).toBeUndefined();
    expect(xone('PrivateNetwork')).toBe('yes');
    expect(xone('MemoryDenyWriteExecute')).toBeUndefined();
    const path = clientBootstrapPath();
    expect(path).toBe('/run/canonport/xds-bootstrap.json');
    const script = bootstrapScript();
    // The same install as canonport.service, written aside and renamed over, readable by every service.
    expect(script).toContain(`${one('ExecStart')!.split(/\s+/).find((a) => a.endsWith('/bin/canonport.js'))} xds-bootstrap > ${path}.new && mv -f ${path}.new ${path}`);
    expect(script).toMatch(/^umask 022 && /);
    expect(xdsUnit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('has a drop-in that sets GRPC_XDS_BOOTSTRAP and orders the client after units that exist', () => {
    expect([...dropIn.keys()]).toEqual(['Unit', 'Service']);
    const units = (k: string) => (dropIn.get('Unit')?.get(k) ?? []).flatMap((v) => v.split(/\s+/)).sort();
    expect(units('Wants')).toEqual(['canonport-xds-bootstrap.service', 'canonport.service']);
    expect(units('After')).toEqual(units('Wants'));
    for (const u of units('Wants')) expect(existsSync(join(DEPLOY, 'systemd', u)), u).toBe(true);
    expect([...(dropIn.get('Service')?.keys() ?? [])]).toEqual(['Environment']);
  });

  it('passes systemd-analyze verify (the unit; the drop-in on a client service) and scores well on security', () => {
    requireTool('systemd-analyze', 'systemd');
    const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    console.info(`running ${probe.stdout.split('\n')[0]}: systemd-analyze verify and security --offline on canonport-xds-bootstrap.service`);
    const verify = spawnSync('systemd-analyze', ['verify', XDS_UNIT], { encoding: 'utf8', timeout: 30_000 });
    expect(verify.status, verify.stderr).toBe(0);
    expect(`${verify.stdout}\n${verify.stderr}`.split('\n').filter((l) => l.includes('canonport-xds-bootstrap.service'))).toEqual([]);
    const tree = clientServiceTree(readFileSync(XDS_DROPIN, 'utf8'));
    try {
      const client = verifyIn(tree, 'example-grpc.service');
      expect(client.status, client.stderr).toBe(0);
      expect(client.findings).toEqual([]);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
    const security = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', XDS_UNIT], { encoding: 'utf8', timeout: 30_000 });
    // As for canonport.service: an older systemd fails here, saying so, rather than leaving the exposure unscored.
    expect(security.stderr, 'systemd-analyze security --offline needs systemd ≥ 250').not.toMatch(/unrecognized option|Unknown option/i);
    const m = /Overall exposure level for canonport-xds-bootstrap\.service: ([\d.]+)/.exec(security.stdout);
    expect(m, security.stdout + security.stderr).not.toBeNull();
    console.info(`systemd-analyze security exposure of canonport-xds-bootstrap.service: ${m![1]}`);
    expect(Number(m![1])).toBeLessThanOrEqual(1.0);
  });

  it('does not let verify pass a broken drop-in (the drop-in is really loaded)', () => {
    requireTool('systemd-analyze', 'systemd');
    const broken = readFileSync(XDS_DROPIN, 'utf8').replace('[Service]\n', '[Service]\nEnviroment=X=1\n').replace(/^After=.*$/m, 'Requires=canonport-missing.service');
    const tree = clientServiceTree(broken);
    try {
      const r = verifyIn(tree, 'example-grpc.service');
      expect(r.findings.join('\n')).toMatch(/canonport-xds\.conf.*Unknown key.*Enviroment/);
      expect(r.findings.join('\n')).toMatch(/canonport-missing\.service not found/);
    } finally {
      rmSync(tree, { recursive: true, force: true });
    }
  });
});

describe('deploy/systemd-resolved/canonport.conf', () => {
  const conf = parseIni(readFileSync(RESOLVED, 'utf8'));
  const resolve = conf.get('Resolve');

  it('has a [Resolve] section routing the zone to the daemon on 127.0.0.1:5300', () => {
    expect([...conf.keys()]).toEqual(['Resolve']);
    const dns = resolve?.get('DNS') ?? [];
    expect(dns).toHaveLength(1);
    expect(parseHostPort(dns[0]!, 'DNS=')).toEqual(parseHostPort(DEFAULTS.dns, 'default'));
  });

  it('uses routing-only domains (~) matching the registry example zones', () => {
    const domains = (resolve?.get('Domains') ?? []).flatMap((d) => d.split(/\s+/));
    expect(domains.length).toBeGreaterThan(0);
    for (const d of domains) expect(d, 'routing-only, not a search domain').toMatch(/^~/);
    const zones = parseRegistry(readFileSync(join(DEPLOY, 'registry.example.yaml'), 'utf8')).zones;
    expect(domains.map((d) => d.slice(1)).sort()).toEqual([...zones].sort());
  });
});

// --- the daemon run the way the unit runs it ---

function run(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stdout}${r.stderr}`);
}

/** A port below 1024 free on 127.0.0.1 for both UDP and TCP (only root can probe these). */
async function freePrivilegedPort(): Promise<number> {
  for (let i = 0; i < 60; i++) {
    const port = 600 + Math.floor(Math.random() * 400);
    const tcp = createServer();
    const tcpOk = await new Promise<boolean>((res) => {
      tcp.once('error', () => res(false));
      tcp.listen({ host: '127.0.0.1', port, exclusive: true }, () => res(true));
    });
    const udp = createSocket('udp4');
    const udpOk = await new Promise<boolean>((res) => {
      udp.once('error', () => res(false));
      udp.bind({ address: '127.0.0.1', port, exclusive: true }, () => res(true));
    });
    await new Promise<void>((res) => (tcpOk ? tcp.close(() => res()) : res()));
    await new Promise<void>((res) => (udpOk ? udp.close(() => res()) : res()));
    if (tcpOk && udpOk) return port;
  }
  throw new Error('no free port below 1024 on 127.0.0.1 after 60 tries');
}

interface Ready {
  dns: string;
  grpc: string;
  http: string;
}

/** Waits (bounded) for the daemon's "ready" log line and returns its addresses. */
function waitReady(child: ChildProcess, logs: string[]): Promise<Ready> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon not ready in 20 s:\n${logs.join('')}`)), 20_000);
    let buf = '';
    child.stderr!.on('data', (c: Buffer) => {
      logs.push(c.toString());
      buf += c.toString();
      for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const rec = JSON.parse(line) as { event?: string; dns?: string; grpc?: string; http?: string };
          if (rec.event === 'ready') {
            clearTimeout(timer);
            resolve({ dns: rec.dns!, grpc: rec.grpc!, http: rec.http! });
          }
        } catch {
          // not JSON: keep reading
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code} before ready:\n${logs.join('')}`));
    });
  });
}

async function until<T>(what: string, fn: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < 100; i++) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what} after 100 tries`);
}

/**
 * DynamicUser= is played by uid 65534 under setpriv, holding only the unit's
 * capabilities: as root (CI), or as root of the tests' user namespace with
 * the user's subordinate ids mapped (test/sandbox.mjs), where 65534 is
 * another, unprivileged user of the host and the capability is checked
 * against the sandbox's network namespace, as it would be against the host's.
 */
describe('the daemon as canonport.service runs it', () => {
  let dir: string;
  let child: ChildProcess | undefined;
  let xdsChild: ChildProcess | undefined;
  const logs: string[] = [];

  beforeAll(() => {
    // /opt/canonport: the package as installed (dist/ as test/global-setup.ts compiled it from these sources, dependencies linked).
    dir = mkdtempSync(join(tmpdir(), 'canonport-systemd-'));
    const opt = join(dir, 'opt/canonport');
    for (const p of ['package.json', 'package-lock.json', 'dist', 'proto', 'bin']) cpSync(join(ROOT, p), join(opt, p), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(opt, 'node_modules'));
    cpSync(join(DEPLOY, 'registry.example.yaml'), join(dir, 'etc/canonport/registry.yaml'));
    // The unit's user must be able to read both (mkdtemp makes the top directory 0700).
    chmodSync(dir, 0o755);
  });

  afterAll(() => {
    for (const c of [child, xdsChild]) if (c && c.exitCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** A path of the unit, moved into the test's tree (the package under /opt, the config under /etc, the runtime directory under /run). */
  const installed = (p: string) => p.replace(/\/(opt|etc|run)\/canonport(\/|$)/g, (_m, top: string, end: string) => `${dir}/${top}/canonport${end}`);
  /** canonport.service's ExecStart with its paths moved into the test's tree. */
  const installedArgv = () => one('ExecStart')!.split(/\s+/).map(installed);
  /** A unit's environment: systemd's minimal one, Environment=, then EnvironmentFile=. */
  const unitEnv = (section: Map<string, string[]>): Record<string, string> => {
    const env: Record<string, string> = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
    for (const e of section.get('Environment') ?? []) {
      const [k, ...v] = e.split('=');
      env[k!] = v.join('=');
    }
    expect(section.get('EnvironmentFile')?.at(-1)).toBe('-/etc/default/canonport');
    return Object.assign(env, parseEnvFile(readFileSync(ENV_FILE, 'utf8')));
  };

  it('starts, answers DNS and HTTP, reloads on ExecReload and stops cleanly on KillSignal', async () => {
    const argv = installedArgv();
    expect(argv.filter((a) => a.startsWith(dir))).toHaveLength(2);
    const env = unitEnv(service);
    expect(env.CANONPORT_DNS).toBe('127.0.0.1:53');
    // Tests never take fixed ports: a free port below 1024 stands in for 53 (it needs the same capability).
    requireUserSwitch(65534);
    env.CANONPORT_DNS = `127.0.0.1:${await freePrivilegedPort()}`;
    // DynamicUser=, AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges= as setpriv flags (util-linux).
    const caps = (k: string) => one(k)!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
    const cmd = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', `--inh-caps=-all,${caps('AmbientCapabilities')}`, `--ambient-caps=-all,${caps('AmbientCapabilities')}`, `--bounding-set=-all,${caps('CapabilityBoundingSet')}`, ...(one('NoNewPrivileges') === 'yes' ? ['--no-new-privs'] : []), ...argv];
    const mode = `as uid 65534 with only ${one('AmbientCapabilities')}, DNS on privileged ${env.CANONPORT_DNS}`;
    env.CANONPORT_GRPC = '127.0.0.1:0';
    env.CANONPORT_HTTP = '127.0.0.1:0';
    console.info(`running ExecStart ${mode}`);
    child = spawn(cmd[0]!, cmd.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const ready = await waitReady(child, logs);
    expect(ready.dns).toBe(env.CANONPORT_DNS);

    const resolver = new Resolver({ timeout: 2000, tries: 2 });
    resolver.setServers([ready.dns]);
    const srv = await resolver.resolveSrv('api.cluster-1.example.com');
    expect(srv).toEqual([{ name: 'api.cluster-1.example.com', port: 12082, priority: 0, weight: 0 }]);
    expect(await resolver.resolve4('api.cluster-1.example.com')).toEqual(['10.0.1.11', '10.0.1.12']);
    const readyz = await fetch(`http://${ready.http}/readyz`);
    expect(readyz.status).toBe(200);

    // ExecReload: what the unit sends makes the daemon reload (the file is untouched, so no watcher fires)...
    const reloadsOk = async () => {
      const text = await (await fetch(`http://${ready.http}/metrics`)).text();
      return Number(/^canonport_config_reloads_total\{result="ok"\} (\d+)$/m.exec(text)?.[1] ?? 0);
    };
    const execReload = () => {
      const reload = one('ExecReload')!.replace('$MAINPID', String(child!.pid)).split(/\s+/);
      run(reload[0]!, reload.slice(1), dir);
    };
    const before = await reloadsOk();
    execReload();
    await until('a reload after ExecReload', async () => ((await reloadsOk()) > before ? true : undefined));
    // ...and an edited registry is served after it.
    const regFile = join(dir, 'etc/canonport/registry.yaml');
    writeFileSync(regFile, readFileSync(regFile, 'utf8').replace('  api:\n', '  api:\n    port: 12999\n'));
    execReload();
    await until('the edited registry served', async () => ((await resolver.resolveSrv('api.cluster-1.example.com'))[0]?.port === 12999 ? true : undefined));

    // KillSignal= drains and exits 0, so Restart=on-failure leaves it stopped.
    const signal = (one('KillSignal') ?? 'SIGTERM') as NodeJS.Signals;
    const exited = new Promise<number | null>((res) => child!.once('exit', (code) => res(code)));
    child.kill(signal);
    expect(await exited).toBe(0);
    expect(logs.join('')).toMatch(/"event":"stopped"/);
  });

  it('with canonport-containers.conf it sees a container\'s listener, as uid 65534 with no added capability; the unit alone observes its own namespace', async () => {
    requireUserSwitch(65534);
    const net = await createHostNet({ hosts: 1, pid: true });
    try {
      const host = net.hosts[0]!;
      const c = await host.addContainer!();
      const port = base32Port('ctr');
      await c.listen(port);
      /** The daemon as `section` starts it inside the host (its PID namespace, as on a real host): user, capabilities, ProtectProc as a /proc mount. */
      const start = async (section: Map<string, string[]>) => {
        const last = (k: string) => section.get(k)!.at(-1)!;
        const caps = (k: string) => last(k).split(/\s+/).map((cap) => `+${cap.replace(/^CAP_/, '').toLowerCase()}`).join(',');
        const protect = last('ProtectProc');
        // ProtectProc=invisible|noaccess|ptraceable is /proc mounted with that hidepid=; default leaves /proc as it is.
        const mount = protect === 'default' ? '' : `mount -t proc -o hidepid=${protect} proc /proc && `;
        const setpriv = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', `--inh-caps=-all,${caps('AmbientCapabilities')}`, `--ambient-caps=-all,${caps('AmbientCapabilities')}`, `--bounding-set=-all,${caps('CapabilityBoundingSet')}`, '--no-new-privs'];
        const env = { ...unitEnv(section), CANONPORT_DNS: '127.0.0.1:0', CANONPORT_GRPC: '127.0.0.1:0', CANONPORT_HTTP: '127.0.0.1:0' };
        const daemon = host.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${mount}exec "$@"`, 'sh', ...setpriv, ...installedArgv()], { env });
        const ready = await waitReady(daemon, []);
        type Inv = { listeners: { port: number; namespace?: { label: string; addresses: string[] } }[]; namespaces?: { mode?: string; observing: string; code?: string } };
        return () => JSON.parse(host.run(process.execPath, [join(ROOT, 'bin/canonport.js'), 'inventory', '--daemon', ready.grpc, '--json'])) as Inv;
      };
      const withContainers = await start(withDropIn(service, readFileSync(CONTAINERS_DROPIN, 'utf8')));
      const seen = await until('the daemon with the drop-in to list the container\'s listener', async () => withContainers().listeners.find((l) => l.port === port && l.namespace));
      expect(seen.namespace!.addresses).toEqual([c.address]);
      expect(withContainers().namespaces).toMatchObject({ observing: 'all' });

      const alone = await start(service);
      const inv = await until('the unit alone to scan', async () => (alone().namespaces ? alone() : undefined));
      expect(inv.namespaces).toMatchObject({ observing: 'own' });
      expect(inv.namespaces!.code).toBeUndefined();
      expect(inv.listeners.filter((l) => l.namespace)).toEqual([]);
    } finally {
      // The host's PID namespace goes with it, and both daemons in it.
      net.cleanup();
    }
  }, 120_000);

  it('cannot bind a privileged port without the unit\'s capability (the capability is what makes port 53 work)', async () => {
    requireUserSwitch(65534);
    const argv = installedArgv();
    const port = await freePrivilegedPort();
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', ...argv], {
      env: { PATH: '/usr/bin:/bin', CANONPORT_DNS: `127.0.0.1:${port}`, CANONPORT_GRPC: '127.0.0.1:0', CANONPORT_HTTP: '127.0.0.1:0', CANONPORT_UPSTREAMS: '192.0.2.53' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/CP_LISTEN_FAILED/);
    expect(existsSync(join(dir, 'opt/canonport/dist/cli/main.js'))).toBe(true);
  });

  it('writes the xDS bootstrap with canonport-xds-bootstrap.service\'s ExecStart; a stock client finds the daemon through the drop-in', async () => {
    requirePythonGrpc();
    // The daemon as canonport.service starts it (ephemeral ports: this checks the bootstrap, not port 53).
    const env = { ...unitEnv(service), CANONPORT_DNS: '127.0.0.1:0', CANONPORT_GRPC: '127.0.0.1:0', CANONPORT_HTTP: '127.0.0.1:0' };
    const argv = installedArgv();
    const daemonLogs: string[] = [];
    xdsChild = spawn(argv[0]!, argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const ready = await waitReady(xdsChild, daemonLogs);

    // The bootstrap unit as systemd runs it: Environment= and EnvironmentFile= (whose CANONPORT_GRPC
    // names 127.0.0.1:13655; here the test daemon's port), RuntimeDirectory= made with its mode, UMask=,
    // and as DynamicUser= an unprivileged user.
    const runDir = installed('/run/canonport');
    mkdirSync(runDir, { recursive: true });
    chmodSync(runDir, Number.parseInt(xone('RuntimeDirectoryMode')!, 8));
    requireUserSwitch(65534);
    const asUser = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--no-new-privs'];
    chownSync(runDir, 65534, 65534);
    const xenv = { ...unitEnv(xdsService), CANONPORT_GRPC: ready.grpc };
    const umask = xone('UMask')!;
    const r = spawnSync(asUser[0]!, [...asUser.slice(1), '/bin/sh', '-c', `umask ${umask} && exec /bin/sh -c "$0"`, installed(bootstrapScript())], {
      env: xenv,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('');

    const file = installed(clientBootstrapPath()!);
    expect(statSync(file).mode & 0o777, 'readable by every service on the host').toBe(0o644);
    expect(existsSync(`${file}.new`)).toBe(false);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(xdsBootstrap({ server: ready.grpc }));

    // A service with the drop-in: GRPC_XDS_BOOTSTRAP=/run/canonport/xds-bootstrap.json, and xds:///NAME.localhost
    // reaches the backend at NAME's canonical port on loopback. NAME: the first whose port is free here.
    let backend: (Backend & { port: number }) | undefined;
    let label = '';
    for (const a of 'rst') {
      for (const b of 'abcdefghij') {
        label = `${a}${b}xdsunit`;
        backend = await startBackend('127.0.0.1', base32Port(label)).catch(() => undefined);
        if (backend) break;
      }
      if (backend) break;
    }
    expect(backend, 'a free canonical port among 30 candidate names').toBeDefined();
    const python = new PythonXdsClient(`xds:///${label}.localhost`, file);
    try {
      const reached = await pollUntil((n) => python.calls(n), (t) => t[backend!.id] === 5, 20_000, 5);
      expect(reached.ok, `${JSON.stringify(reached.tally)} ${python.stderr.slice(-5).join('\n')}`).toBe(true);
    } finally {
      python.close();
      backend!.stop();
    }
    const exited = new Promise<number | null>((res) => xdsChild!.once('exit', (code) => res(code)));
    xdsChild.kill('SIGTERM');
    expect(await exited).toBe(0);
  });
});

describe('restarts, leaving and draining (issue 20)', () => {
  const DRAIN_DROPIN = join(DEPLOY, 'systemd/canonport-drain.conf');

  it('keeps cluster state in StateDirectory=canonport, and leaves the cluster only when the machine shuts down', () => {
    expect(one('StateDirectory')).toBe('canonport');
    expect(one('StateDirectoryMode')).toBe('0700');
    const stop = one('ExecStop')!;
    // `-`: outside cluster mode `leave` fails, and the stop goes on.
    expect(stop.startsWith('-/bin/sh -c ')).toBe(true);
    const script = /^-\/bin\/sh -c '(.*)'$/.exec(stop)![1]!.replace(/\$\$/g, '$');
    // A restart (systemctl restart, an upgrade) keeps the lease; a shutdown withdraws the host at once.
    expect(script).toBe(`if [ "$(systemctl is-system-running)" = stopping ]; then exec ${one('ExecStart')!.split(' serve ')[0]!.replace('MALLOC_ARENA_MAX=2 node --max-semi-space-size=4 --v8-pool-size=1 ', 'node ')} leave; fi`);
    // The shell really branches on it: a running system does nothing, a stopping one runs `leave`.
    for (const [state, runs] of [['running', false], ['stopping', true]] as const) {
      const dir = mkdtempSync(join(tmpdir(), 'canonport-execstop-'));
      try {
        writeFileSync(join(dir, 'systemctl'), `#!/bin/sh\necho ${state}\n`, { mode: 0o755 });
        writeFileSync(join(dir, 'env'), `#!/bin/sh\necho "ran: $*"\n`, { mode: 0o755 });
        const r = spawnSync('/bin/sh', ['-c', script.replace('/usr/bin/env', join(dir, 'env'))], { encoding: 'utf8', env: { PATH: `${dir}:/usr/bin:/bin` } });
        expect(r.stdout.includes('ran: node /opt/canonport/bin/canonport.js leave'), `${state}: ${r.stdout}${r.stderr}`).toBe(runs);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  });

  it('ships a drain-before-stop drop-in for services whose canonport command line is one the CLI takes', async () => {
    const dropIn = parseIni(readFileSync(DRAIN_DROPIN, 'utf8'));
    expect([...dropIn.keys()]).toEqual(['Service']);
    const exec = dropIn.get('Service')!.get('ExecStop')![0]!;
    expect(exec).toMatch(/^-\/usr\/bin\/env node \/opt\/canonport\/bin\/canonport\.js drain %N --wait --timeout \d+$/);
    const timeoutMs = Number(/--timeout (\d+)/.exec(exec)![1]);
    // Room for the drain's bound, the TTL wait (the observed TTL's default) and the service's own stop.
    const stopSec = Number(/^(\d+)s$/.exec(dropIn.get('Service')!.get('TimeoutStopSec')![0]!)![1]);
    expect(stopSec * 1000).toBeGreaterThanOrEqual(timeoutMs + (fixedDefault('observedTtl') as number) * 1000 + 10_000);
    // The arguments, as systemd passes them for api.service, against a daemon that is not there: no usage error.
    const { runCli } = await import('./helpers/cli.js');
    const args = exec.split(' ').slice(3).map((a) => (a === '%N' ? 'api' : a));
    const port = await new Promise<number>((r) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => r(p));
      });
    });
    const run = await runCli([...args, '--daemon', `127.0.0.1:${port}`]);
    expect(run.code, run.stderr).toBe(1);
    expect(run.stderr).toMatch(/CP_DAEMON_UNREACHABLE|cannot reach the canonport daemon/);
  });

  it('passes systemd-analyze verify installed on a service', () => {
    requireTool('systemd-analyze', 'systemd');
    const dir = mkdtempSync(join(tmpdir(), 'canonport-drain-dropin-'));
    try {
      cpSync(UNIT, join(dir, 'canonport.service'));
      writeFileSync(join(dir, 'api.service'), '[Unit]\nDescription=a service canonport observes\n\n[Service]\nDynamicUser=yes\nExecStart=/bin/true\n');
      mkdirSync(join(dir, 'api.service.d'));
      cpSync(DRAIN_DROPIN, join(dir, 'api.service.d/canonport-drain.conf'));
      const r = verifyIn(dir, 'api.service');
      expect(r.status, r.stderr).toBe(0);
      expect(r.findings).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
