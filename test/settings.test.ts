import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.js';
import type { CliIO } from '../src/cli/io.js';
import { applyReload, buildConfig, configFromEnv, ENV_VARS, restartNeeded, showSetting, type Config, type ConfigInput } from '../src/config/config.js';
import { configJson, configText, helpLine, settingsTable, TABLE_BEGIN, TABLE_END, withSettingsTable } from '../src/config/docs.js';
import { boolean } from '../src/config/kinds.js';
import { fileKeys, SETTINGS, settingEntries, type SettingKey, type SettingSource } from '../src/config/settings.js';
import { CanonportError } from '../src/errors.js';
import { parseRegistry } from '../src/registry/load.js';
import { Registry } from '../src/registry/registry.js';
import { DaemonSchema, RegistrySchema } from '../src/registry/schema.js';

/**
 * The settings table and everything derived from it: precedence for every
 * setting (lists included), the same check and wording from a flag, an env
 * var and the registry file, restart-only settings on reload, and the
 * configuration reference (docs/configuration.md) and `serve --help` kept
 * equal to the table.
 */

const CONFIG_DOC = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));
const NO_RESOLV = { resolvConf: '/nonexistent/resolv.conf' };
const KEYS = settingEntries().map(([k]) => k);

/**
 * Two valid values per setting: the first differs from the default, the
 * second from the first. A new setting fails the coverage test below until
 * it has its pair here.
 */
const SAMPLES: Record<SettingKey, [unknown, unknown]> = {
  dns: ['127.0.0.1:7001', '[::1]:7002'],
  grpc: ['127.0.0.1:7011', '127.0.0.1:7012'],
  http: ['127.0.0.1:7021', '[::1]:7022'],
  zones: [['a.example', 'B.Example.'], ['c.example']],
  upstreams: [['192.0.2.1', '192.0.2.2:5353'], ['[2001:db8::1]:53']],
  allow: [['10.0.0.0/8'], ['192.168.0.0/16', '2001:db8::/32']],
  canonicalClients: ['allowed', 'any'],
  grpcAllow: [['10.0.0.0/8'], ['192.168.0.0/16', '2001:db8::/32']],
  httpAllow: [['10.1.0.0/16'], ['fd00::/8']],
  insecureListen: [true, false],
  grpcTlsCert: ['/etc/canonport/tls/grpc.pem', '/srv/grpc.pem'],
  grpcTlsKey: ['/etc/canonport/tls/grpc.key', '/srv/grpc.key'],
  grpcTlsClientCa: ['/etc/canonport/tls/clients.pem', '/srv/clients.pem'],
  grpcTlsClientAuth: ['optional', 'require'],
  inventoryAllow: [['10.2.0.0/16'], ['192.0.2.7']],
  inventoryRequireCert: [true, false],
  httpTlsCert: ['/etc/canonport/tls/http.pem', '/srv/http.pem'],
  httpTlsKey: ['/etc/canonport/tls/http.key', '/srv/http.key'],
  httpTlsClientCa: ['/etc/canonport/tls/scrapers.pem', '/srv/scrapers.pem'],
  registry: ['/etc/canonport/a.yaml', '/srv/b.yaml'],
  logLevel: ['debug', 'warn'],
  logFormat: ['json', 'pretty'],
  queryLog: [0.25, 1],
  upstreamTimeoutMs: [500, 2000],
  cacheSize: [10, 0],
  rateLimit: [5, 100],
  maxInflight: [7, 8],
  connectionsPerSource: [4, 100],
  dnsTcpMaxConnections: [16, 512],
  grpcMaxConnections: [64, 2048],
  httpMaxConnections: [16, 256],
  watchMaxStreams: [100, 200],
  watchMaxStreamsPerClient: [10, 20],
  xdsMaxStreams: [100, 200],
  xdsMaxStreamsPerClient: [10, 20],
  xdsMaxNames: [1000, 2000],
  xdsMaxNamesPerClient: [100, 200],
  registryMaxBytes: [65_536, 1_048_576],
  httpSdMaxGroups: [100, 1],
  workers: [2, 64],
  procRoot: ['/host/proc', '/other/proc'],
  namespaces: ['own', 'all'],
  containerNetworks: [['10.244.0.0/16'], ['10.42.0.0/16', 'fd00:42::/64']],
  podDirectory: ['/host/var/log/pods', '/var/log/pods'],
  processNames: [false, true],
  learnNames: [false, true],
  learnedNameTtl: [3600, 600],
  sdUnnamed: [true, false],
  identity: ['hide', 'answer'],
  ttl: [30, 0],
  cluster: ['etcd://127.0.0.1:2379', 'etcd://10.0.0.1:2379,[fd00::1]:2379'],
  advertise: [['10.0.0.5'], ['10.0.0.6', 'fd00::6']],
  node: ['web-1', 'db-2'],
  leaseTtl: [5, 30],
  clusterPrefix: ['/sites/a', '/sites/b'],
  clusterCa: ['/etc/canonport/etcd-ca.pem', '/srv/ca.pem'],
  clusterCert: ['/etc/canonport/etcd.pem', '/srv/etcd.pem'],
  clusterKey: ['/etc/canonport/etcd-key.pem', '/srv/etcd-key.pem'],
  clusterUser: ['canonport-web-1', 'canonport-db-2'],
  clusterPasswordFile: ['/etc/canonport/etcd-password', '/srv/pw'],
  clusterMaxStaleness: [60, 3600],
  clusterMaxNodes: [100, 200],
  clusterMaxEndpoints: [1000, 2000],
  clusterMaxNodeInstances: [64, 2048],
  clusterMaxNodeAddresses: [256, 8192],
  clusterMaxNodeBytes: [65_536, 4_194_304],
  onlyListening: [true, false],
  observedTtl: [1, 30],
  stateDir: ['/tmp/cp-state-a', '/tmp/cp-state-b'],
  readyInterval: [500, 2000],
  preferLocal: [false, true],
  clusterWriteLegacy: [false, true],
  nodeTakeover: [true, false],
  leaveOnTerminate: [true, false],
};

/** One bad value per setting, and what its error must say (the value and what is accepted). */
const BAD: Record<SettingKey, [unknown, RegExp]> = {
  dns: ['nowhere:53', /"nowhere:53" is not an IP address \(want ADDR:PORT or \[V6\]:PORT\)/],
  grpc: ['127.0.0.1', /"127\.0\.0\.1" has no port \(want ADDR:PORT/],
  http: ['127.0.0.1:65536', /port "65536" is not 0–65535/],
  zones: [['ok.example', 'bad..example'], /"bad\.\.example" is not a DNS name such as cluster-1\.example\.com/],
  upstreams: [['192.0.2.1:0'], /"192\.0\.2\.1:0": port 0 is not a port to send to \(want 1–65535\)/],
  allow: [['10.0.0.0/33'], /"10\.0\.0\.0\/33": prefix length must be 0–32/],
  canonicalClients: ['everyone', /"everyone" is not one of any, allowed/],
  grpcAllow: [['10.0.0.0/33'], /"10\.0\.0\.0\/33": prefix length must be 0–32/],
  httpAllow: [['everywhere'], /"everywhere" is not an address or CIDR such as 10\.0\.0\.0\/8/],
  insecureListen: ['maybe', /"maybe" is not true or false \(or 1\/0, yes\/no, on\/off\)/],
  grpcTlsCert: ['', /"" is not a file path/],
  grpcTlsKey: ['', /"" is not a file path/],
  grpcTlsClientCa: ['', /"" is not a file path/],
  grpcTlsClientAuth: ['sometimes', /"sometimes" is not one of require, optional/],
  inventoryAllow: [['::/129'], /"::\/129": prefix length must be 0–128/],
  inventoryRequireCert: ['perhaps', /"perhaps" is not true or false/],
  httpTlsCert: ['', /"" is not a file path/],
  httpTlsKey: ['', /"" is not a file path/],
  httpTlsClientCa: ['', /"" is not a file path/],
  registry: ['', /"" is not a file path/],
  logLevel: ['loud', /log level "loud" is not one of fatal, error, warn, info, debug, trace, silent/],
  logFormat: ['colour', /log format "colour" is not one of auto, pretty, json/],
  queryLog: [1.5, /1\.5 is not a number in 0–1/],
  upstreamTimeoutMs: [5, /5 is not an integer in 10–30000/],
  cacheSize: [-1, /-1 is not an integer in 0–10000000/],
  rateLimit: [2.5, /2\.5 is not an integer in 0–1000000/],
  maxInflight: [0, /0 is not an integer in 1–1000000/],
  connectionsPerSource: [0, /0 is not an integer in 1–1000000/],
  dnsTcpMaxConnections: [1, /1 is not an integer in 2–1000000/],
  grpcMaxConnections: [1, /1 is not an integer in 2–1000000/],
  httpMaxConnections: [3, /3 is not an integer in 4–1000000/],
  watchMaxStreams: [0, /0 is not an integer in 1–10000000/],
  watchMaxStreamsPerClient: [0, /0 is not an integer in 1–10000000/],
  xdsMaxStreams: [0, /0 is not an integer in 1–1000000/],
  xdsMaxStreamsPerClient: [0, /0 is not an integer in 1–1000000/],
  xdsMaxNames: [0, /0 is not an integer in 1–10000000/],
  xdsMaxNamesPerClient: [0, /0 is not an integer in 1–10000000/],
  registryMaxBytes: [1000, /1000 is not an integer in 1024–1073741824/],
  httpSdMaxGroups: [0, /0 is not an integer in 1–10000000/],
  workers: [65, /65 is not an integer in 1–64/],
  procRoot: ['', /"" is not a file path/],
  namespaces: ['some', /namespaces "some" is not one of all, own/],
  containerNetworks: [['10.244.0.0/33'], /prefix length must be 0–32/],
  podDirectory: ['', /"" is not a file path/],
  processNames: ['maybe', /is not true or false/],
  learnNames: ['maybe', /is not true or false/],
  learnedNameTtl: [59, /59 is not an integer in 60–2592000/],
  sdUnnamed: ['maybe', /is not true or false/],
  identity: ['anonymous', /"anonymous" is not one of answer, hide/],
  ttl: [86_401, /86401 is not an integer in 0–86400/],
  cluster: ['http://127.0.0.1:2379', /"http:\/\/127\.0\.0\.1:2379": not an etcd:\/\/ URL/],
  advertise: [['10.0.0.300'], /"10\.0\.0\.300" is not an IPv4 or IPv6 address/],
  node: ['web_1', /"web_1" is not a DNS label/],
  leaseTtl: [1, /1 is not an integer in 2–3600/],
  clusterPrefix: ['a b', /"a b" is not printable text without spaces/],
  clusterCa: ['', /"" is not a file path/],
  clusterCert: ['', /"" is not a file path/],
  clusterKey: ['', /"" is not a file path/],
  clusterUser: ['', /"" is not printable text without spaces/],
  clusterPasswordFile: ['', /"" is not a file path/],
  clusterMaxStaleness: [-1, /-1 is not an integer in 0–31536000/],
  clusterMaxNodes: [0, /0 is not an integer in 1–1000000/],
  clusterMaxEndpoints: [0, /0 is not an integer in 1–10000000/],
  clusterMaxNodeInstances: [0, /0 is not an integer in 1–1000000/],
  clusterMaxNodeAddresses: [0, /0 is not an integer in 1–16000000/],
  clusterMaxNodeBytes: [1024, /1024 is not an integer in 65536–1073741824/],
  onlyListening: ['maybe', /"maybe" is not true or false/],
  observedTtl: [3601, /3601 is not an integer in 0–3600/],
  stateDir: ['', /path/],
  readyInterval: [50, /50 is not an integer in 100–60000/],
  preferLocal: ['maybe', /is not true or false/],
  clusterWriteLegacy: ['maybe', /is not true or false/],
  nodeTakeover: ['maybe', /is not true or false/],
  leaveOnTerminate: ['maybe', /is not true or false/],
};

/** As commander hands a flag over: text, a list as repeated texts. */
const asFlag = (v: unknown) => (Array.isArray(v) ? v.map(String) : String(v));
/** As the environment holds it: text, a list comma-separated. */
const asEnv = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v));

/** A registry file text setting `key` to `value` at its first file place. */
function yamlFor(key: SettingKey, value: unknown, place = fileKeys(key)[0]!): string {
  const json = JSON.stringify(value);
  return place.startsWith('daemon.') ? `daemon:\n  ${key}: ${json}\n` : `${key}: ${json}\n`;
}

function layerInput(key: SettingKey, layer: SettingSource, value: unknown): { flags: ConfigInput; env: ConfigInput; registry: Registry } {
  const flags: ConfigInput = layer === 'flag' ? { [key]: asFlag(value) } : {};
  const env: ConfigInput = layer === 'env' ? { [key]: asEnv(value) } : {};
  const registry = layer === 'file' ? parseRegistry(yamlFor(key, value), 'test.yaml') : Registry.empty();
  return { flags, env, registry };
}

function build(flags: ConfigInput, env: ConfigInput, registry = Registry.empty()): Config {
  return buildConfig(flags, env, registry, NO_RESOLV);
}

/** What a sample looks like once checked (`192.0.2.1` → `192.0.2.1:53`), through the setting's own kind. */
function shownSample(key: SettingKey, v: unknown): unknown {
  const kind = SETTINGS[key].kind as { fromInput(i: unknown): unknown; check(i: unknown): { ok: boolean; value?: unknown } };
  const r = kind.check(kind.fromInput(v));
  expect(r.ok, `sample for ${key} is valid`).toBe(true);
  return showSetting(key, r.value);
}

function thrown(f: () => unknown): CanonportError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(CanonportError);
    return err as CanonportError;
  }
  throw new Error('expected an error, got none');
}

describe('the table', () => {
  it('has samples and bad values for every setting, so every setting is covered below', () => {
    expect(Object.keys(SAMPLES).sort()).toEqual([...KEYS].sort());
    expect(Object.keys(BAD).sort()).toEqual([...KEYS].sort());
  });

  it('names each flag and env var once, CANONPORT_-prefixed, with help, a docs text and a default text', () => {
    const flags = settingEntries().flatMap(([, s]) => (s.flag ? [s.flag.name] : []));
    const envs = settingEntries().flatMap(([, s]) => (s.env ? [s.env] : []));
    expect(new Set(flags).size).toBe(flags.length);
    expect(new Set(envs).size).toBe(envs.length);
    for (const e of envs) expect(e).toMatch(/^CANONPORT_[A-Z_]+$/);
    expect(ENV_VARS).toEqual(envs);
    for (const [key, s] of settingEntries()) {
      expect(s.help.length, key).toBeGreaterThan(5);
      expect(s.doc.length, key).toBeGreaterThan(5);
      expect(s.defaultText.length, key).toBeGreaterThan(0);
      expect(s.flag ?? s.env ?? fileKeys(key)[0], `${key} can be set somewhere`).toBeTruthy();
    }
  });

  it('marks listen addresses, workers, the registry path and size limit, procRoot, the log format and the cluster connection restart-only, and the rest reloadable', () => {
    const restart = settingEntries().filter(([, s]) => s.applies === 'restart').map(([k]) => k);
    const cluster = ['cluster', 'advertise', 'node', 'leaseTtl', 'clusterPrefix', 'clusterCa', 'clusterCert', 'clusterKey', 'clusterUser', 'clusterPasswordFile', 'clusterMaxStaleness', 'clusterMaxNodes', 'clusterMaxEndpoints', 'clusterMaxNodeInstances', 'clusterMaxNodeAddresses', 'clusterMaxNodeBytes', 'stateDir', 'clusterWriteLegacy', 'nodeTakeover'];
    // The certificate settings name files and the kind of server (TLS or not); the files' contents are re-read on reload.
    const tls = ['grpcTlsCert', 'grpcTlsKey', 'grpcTlsClientCa', 'grpcTlsClientAuth', 'httpTlsCert', 'httpTlsKey', 'httpTlsClientCa'];
    // The registry's size limit is read before the file (it cannot be in it), from flags and env, which a reload does not re-read.
    // The log format decides the process's log stream, made once at start. The pod directory is watched from start.
    expect(restart.sort()).toEqual(['dns', 'grpc', 'http', 'procRoot', 'podDirectory', 'registry', 'registryMaxBytes', 'workers', 'logFormat', ...cluster, ...tls].sort());
    const reload = settingEntries().filter(([, s]) => s.applies === 'reload').map(([k]) => k);
    for (const k of ['zones', 'upstreams', 'allow', 'canonicalClients', 'logLevel', 'queryLog', 'upstreamTimeoutMs', 'cacheSize', 'rateLimit', 'maxInflight']) {
      expect(reload).toContain(k);
    }
  });

  it('derives the registry schema: daemon: has exactly the daemon settings; zones and ttl sit at the top level', () => {
    const daemonKeys = settingEntries().filter(([, s]) => s.file === 'daemon' || s.file === 'both').map(([k]) => k);
    expect(Object.keys(DaemonSchema.shape).sort()).toEqual([...daemonKeys].sort());
    const top = settingEntries().filter(([, s]) => s.file === 'top' || s.file === 'both').map(([k]) => k);
    expect(top.sort()).toEqual(['ttl', 'zones']);
    for (const k of top) expect(Object.keys(RegistrySchema.shape)).toContain(k);
  });

  it('gives a valid config with nothing set: every default passes its own check', () => {
    const c = build({}, {});
    for (const key of KEYS) expect(c.sources[key], key).toMatch(/^(default|resolv\.conf)$/);
    expect(showSetting('dns', c.dns)).toBe('127.0.0.1:5300');
    expect(showSetting('grpc', c.grpc)).toBe('127.0.0.1:13655');
    expect(showSetting('http', c.http)).toBe('127.0.0.1:13656');
    expect(c).toMatchObject({ zones: [], allow: [], registry: null, workers: 1, procRoot: '/proc', ttl: 60, cacheSize: 100_000, maxInflight: 1024 });
    expect(c.cache.maxEntries).toBe(100_000);
    expect(Registry.empty().ttl).toBe(c.ttl); // the registry's default TTL is the table's
  });
});

describe('precedence: flag over env over file over default, for every setting', () => {
  for (const [key, s] of settingEntries()) {
    const layers: SettingSource[] = [...(s.flag ? ['flag' as const] : []), ...(s.env ? ['env' as const] : []), ...(s.file ? ['file' as const] : [])];
    it(`${key}: ${[...layers, 'default'].join(' > ')}`, () => {
      const [a, b] = SAMPLES[key];
      const want = shownSample(key, a);
      expect(want, 'the sample differs from the default').not.toEqual(showSetting(key, build({}, {})[key]));
      expect(want, 'the two samples differ').not.toEqual(shownSample(key, b));
      for (const [i, upper] of layers.entries()) {
        const lower = layers[i + 1];
        const hi = layerInput(key, upper, a);
        const lo = lower ? layerInput(key, lower, b) : { flags: {}, env: {}, registry: Registry.empty() };
        const registry = hi.registry.file ? hi.registry : lo.registry;
        const c = build({ ...lo.flags, ...hi.flags }, { ...lo.env, ...hi.env }, registry);
        expect(showSetting(key, c[key]), `${upper} over ${lower ?? 'default'}`).toEqual(want);
        expect(c.sources[key]).toBe(upper);
      }
    });
  }

  it('a list is taken whole from the first source: zones, upstreams and allow are never merged across sources', () => {
    const file = parseRegistry('zones: [file.example]\ndaemon:\n  zones: [daemon.example]\n  upstreams: [192.0.2.9]\n  allow: [10.9.0.0/16]\n', 'z.yaml');
    const fromFile = build({}, {}, file);
    expect(fromFile.zones).toEqual(['file.example', 'daemon.example']); // top-level and daemon: are one source
    expect(fromFile.sources.zones).toBe('file');
    const fromEnv = build({}, { zones: 'env.example', upstreams: '192.0.2.1 192.0.2.2', allow: '10.1.0.0/16' }, file);
    expect(fromEnv.zones).toEqual(['env.example']);
    expect(fromEnv.upstreams.map((u) => showSetting('dns', u))).toEqual(['192.0.2.1:53', '192.0.2.2:53']);
    expect(fromEnv.allow.map((a) => a.text)).toEqual(['10.1.0.0/16']);
    const fromFlags = build({ zones: ['flag.example'], upstreams: ['192.0.2.3,192.0.2.4', '192.0.2.5'] }, { zones: 'env.example' }, file);
    expect(fromFlags.zones).toEqual(['flag.example']);
    expect(fromFlags.upstreams).toHaveLength(3); // commas inside a flag value split too
    expect(fromFlags.allow.map((a) => a.text)).toEqual(['10.9.0.0/16']); // not given by flag or env: the file's
    expect(fromFlags.upstreamsFrom).toBe('flags');
  });

  it('zones are lowercased, lose the trailing dot and repeat once', () => {
    expect(build({ zones: ['A.Example.', 'a.example', 'b.example'] }, {}).zones).toEqual(['a.example', 'b.example']);
  });

  it('refuses a value for a setting that has no flag, instead of ignoring it', () => {
    const err = thrown(() => build({ ttl: '5' }, {}));
    expect(err.code).toBe('CP_CONFIG_INVALID');
    expect(err.message).toMatch(/setting "ttl" has no flag; set ttl in the registry file/);
  });

  it('reads every variable of the table from the environment; empty counts as unset', () => {
    const env: NodeJS.ProcessEnv = {};
    for (const [key, s] of settingEntries()) if (s.env) env[s.env] = asEnv(SAMPLES[key][0]);
    const c = build({}, configFromEnv(env));
    for (const [key, s] of settingEntries()) {
      if (!s.env) continue;
      expect(c.sources[key], key).toBe('env');
      expect(showSetting(key, c[key]), key).toEqual(shownSample(key, SAMPLES[key][0]));
    }
    expect(configFromEnv({ CANONPORT_DNS: '', CANONPORT_WORKERS: '  ' })).toEqual({});
  });
});

describe('a bad value names where it came from and what is accepted', () => {
  for (const [key, s] of settingEntries()) {
    it(key, () => {
      const [bad, says] = BAD[key];
      if (s.flag) {
        const err = thrown(() => build({ [key]: asFlag(bad) }, {}));
        expect(err.code).toBe('CP_CONFIG_INVALID');
        expect(err.message.startsWith(`${s.flag.name}: `), err.message).toBe(true);
        expect(err.message).toMatch(says);
      }
      if (s.env) {
        const err = thrown(() => build({}, { [key]: asEnv(bad) }));
        expect(err.code).toBe('CP_CONFIG_INVALID');
        expect(err.message.startsWith(`${s.env}: `), err.message).toBe(true);
        expect(err.message).toMatch(says);
      }
      for (const place of fileKeys(key)) {
        // A line before, so the reported line is not just "1".
        const err = thrown(() => parseRegistry(`# settings\n${yamlFor(key, bad, place)}`, 'bad.yaml'));
        expect(err.code).toBe('CP_REGISTRY_INVALID');
        const line = place.startsWith('daemon.') ? 3 : 2;
        expect(err.message).toMatch(new RegExp(`^bad\\.yaml:${line}:\\d+ \\(${place.replace('.', '\\.')}(\\.\\d+)?\\): `));
        expect(err.message).toMatch(says);
      }
    });
  }

  it('locates a bad list element at its own line, and an unknown daemon: key with file:line:col', () => {
    const list = thrown(() => parseRegistry('daemon:\n  upstreams:\n    - 192.0.2.1\n    - nowhere\n', 'list.yaml'));
    expect(list.message).toMatch(/^list\.yaml:4:7 \(daemon\.upstreams\.1\): "nowhere" is not an IP address/);
    const unknown = thrown(() => parseRegistry('zones: [a.example]\ndaemon:\n  cachesize: 5\n', 'unknown.yaml'));
    expect(unknown.code).toBe('CP_REGISTRY_INVALID');
    expect(unknown.message).toBe('unknown.yaml:3:3 (daemon.cachesize): unknown field "cachesize" (did you mean "cacheSize"?)');
  });

  it('an upstream equal to the DNS listen address is CP_FORWARD_LOOP, from flags, env or file; resolv.conf entries are skipped', () => {
    for (const [flags, env, registry] of [
      [{ dns: '127.0.0.1:5353', upstreams: ['127.0.0.1:5353'] }, {}, Registry.empty()],
      [{}, { dns: '127.0.0.1:5353', upstreams: '192.0.2.1,127.0.0.1:5353' }, Registry.empty()],
      [{}, {}, parseRegistry('daemon:\n  dns: 0.0.0.0:5353\n  upstreams: [127.0.0.1:5353]\n', 'loop.yaml')],
    ] as [ConfigInput, ConfigInput, Registry][]) {
      const err = thrown(() => build(flags, env, registry));
      expect(err.code).toBe('CP_FORWARD_LOOP');
      expect(err.message).toMatch(/upstream 127\.0\.0\.1:5353 is this daemon's own DNS address/);
    }
  });
});

describe('reload: restart-only settings keep their running value', () => {
  const base = build({}, {});
  for (const [key, s] of settingEntries()) {
    it(`${key} (${s.applies})`, () => {
      const [a] = SAMPLES[key];
      const layer: SettingSource = s.flag ? 'flag' : 'file';
      const { flags, env, registry } = layerInput(key, layer, a);
      const next = build(flags, env, registry);
      const changes = restartNeeded(base, next);
      const { config, restart } = applyReload(base, next);
      expect(restart).toEqual(changes);
      if (s.applies === 'restart') {
        expect(changes.map((c) => c.key)).toEqual([key]);
        expect(changes[0]).toMatchObject({ running: showSetting(key, base[key]), configured: shownSample(key, a) });
        expect(changes[0]!.name).toBe(s.flag?.name ?? s.env ?? fileKeys(key)[0]);
        expect(showSetting(key, config[key])).toEqual(showSetting(key, base[key]));
        expect(config.sources[key]).toBe(base.sources[key]);
      } else {
        expect(changes).toEqual([]);
        expect(showSetting(key, config[key])).toEqual(shownSample(key, a));
      }
    });
  }

  it('applies the reloadable part of a reload that also changes restart-only settings', () => {
    const next = build({ dns: '127.0.0.1:7001', workers: '4', zones: ['z.example'], cacheSize: '50' }, {});
    const { config, restart } = applyReload(base, next);
    expect(restart.map((c) => c.key)).toEqual(['dns', 'workers']);
    expect(showSetting('dns', config.dns)).toBe('127.0.0.1:5300');
    expect(config.workers).toBe(1);
    expect(config.zones).toEqual(['z.example']);
    expect(config.cacheSize).toBe(50);
    expect(config.cache.maxEntries).toBe(50);
  });
});

describe('what people read is derived from the table', () => {
  it('the configuration reference table (docs/configuration.md) is the generated one (regenerate: npm run docs:settings)', () => {
    const page = readFileSync(CONFIG_DOC, 'utf8');
    expect(withSettingsTable(page), 'docs/configuration.md table differs from src/config/settings.ts: run npm run docs:settings').toBe(page);
    const section = page.slice(page.indexOf('# Configuration reference'), page.indexOf(TABLE_END));
    expect(section).toContain(TABLE_BEGIN);
    const rows = section.split('\n').filter((l) => l.startsWith('| `'));
    expect(rows.map((r) => /^\| `(\w+)`/.exec(r)?.[1])).toEqual(KEYS);
    expect(settingsTable().split('\n')).toHaveLength(KEYS.length + 2);
  });

  it('a page whose table has drifted is caught', () => {
    const readme = readFileSync(CONFIG_DOC, 'utf8');
    const drifted = readme.replace('| `cacheSize` | `--cache-size N`', '| `cacheSize` | `--cache N`');
    expect(drifted).not.toBe(readme);
    expect(withSettingsTable(drifted)).not.toBe(drifted);
    expect(() => withSettingsTable('# no table here\n')).toThrow(/markers/);
  });

  it('serve --help shows every setting flag with its value name, env var and default', async () => {
    let out = '';
    const io: CliIO = { out: (t) => void (out += t), err: (t) => void (out += t), errIsTTY: false, exitCode: 0 };
    expect(await main(['serve', '--help'], io)).toBe(0);
    const flat = out.replace(/\s+/g, ' ');
    for (const [key, s] of settingEntries()) {
      if (!s.flag) continue;
      // A switch (a boolean) takes no value.
      expect(flat, key).toContain(s.flag.value === undefined ? `${s.flag.name} ${helpLine(s).split(/\s+/)[0]}` : `${s.flag.name} <${s.flag.value}>`);
      expect(flat, key).toContain(helpLine(s).replace(/\s+/g, ' '));
      if (s.env) expect(helpLine(s)).toContain(s.env);
      expect(helpLine(s)).toContain(`default: ${s.defaultText}`);
    }
  });

  it('print-config shows every setting, its value and its source', () => {
    const file = parseRegistry('ttl: 30\ndaemon:\n  http: 127.0.0.1:7003\n', 'p.yaml');
    const c = build({ dns: '127.0.0.1:7001' }, { grpc: '127.0.0.1:7002', workers: '3' }, file);
    const json = configJson(c);
    expect(Object.keys(json)).toEqual([...KEYS, 'sources']);
    expect(json).toMatchObject({ dns: '127.0.0.1:7001', grpc: '127.0.0.1:7002', http: '127.0.0.1:7003', workers: 3, ttl: 30, zones: ['localhost'] });
    expect(json.sources).toMatchObject({ dns: 'flag', grpc: 'env', http: 'file', workers: 'env', ttl: 'file', cacheSize: 'default' });
    const text = configText(c);
    expect(text).toHaveLength(KEYS.length + 1);
    expect(text.find((l) => l.startsWith('dns '))).toMatch(/127\.0\.0\.1:7001\s+flag --dns\s+restart$/);
    expect(text.find((l) => l.startsWith('grpc '))).toMatch(/env CANONPORT_GRPC/);
    expect(text.find((l) => l.startsWith('http '))).toMatch(/file daemon\.http/);
    expect(text.find((l) => l.startsWith('ttl '))).toMatch(/30\s+file ttl\s+reload$/);
  });
});

describe('kinds not used by a setting yet', () => {
  it('boolean: true/false, and as text 1/0, yes/no, on/off', () => {
    const b = boolean();
    for (const t of ['true', 'YES', '1', 'on']) expect(b.check(b.fromInput(t))).toMatchObject({ ok: true, value: true });
    for (const t of ['false', 'no', '0', 'Off']) expect(b.check(b.fromInput(t))).toMatchObject({ ok: true, value: false });
    expect(b.check(b.fromInput('maybe'))).toEqual({ ok: false, reason: '"maybe" is not true or false (or 1/0, yes/no, on/off)' });
    expect(b.check(1)).toMatchObject({ ok: false });
  });
});
