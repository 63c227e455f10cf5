import { CanonportError, ErrorCodes } from '../errors.js';
import { formatHostPort, type HostPort } from './address.js';
import type { Shown } from './kinds.js';
import {
  fileKeys,
  fixedDefault,
  isDynamic,
  SETTINGS,
  settingEntries,
  type ConfigInput,
  type DefaultContext,
  type FileSettings,
  type Setting,
  type SettingKey,
  type SettingSource,
  type SettingValues,
} from './settings.js';

export type { ConfigInput } from './settings.js';
export { readResolvConf } from './resolv-conf.js';

/**
 * The one validated configuration the daemon runs on: every setting of the
 * table in settings.ts (`config.dns`, `config.cacheSize`, …), where each
 * came from, and a few values derived from them.
 */
export interface Config extends SettingValues {
  /** The registry file loaded (null: none). */
  registryFile: string | null;
  /** Where the upstreams came from, for logs. */
  upstreamsFrom: 'flags' | 'env' | 'file' | 'resolv.conf';
  /** The forwarding cache: maxEntries is `cacheSize`; the TTL caps are fixed (RFC 2308, RFC 8767). */
  cache: { maxEntries: number; maxTtl: number; maxNegativeTtl: number; staleTtl: number };
  /** DNS over TCP: idle timeout (fixed) and the connection cap (`dnsTcpMaxConnections`). */
  tcp: { idleTimeoutMs: number; maxConnections: number };
  /** Where each setting's value came from (print-config, logs). */
  sources: Record<SettingKey, SettingSource>;
}

/** The default listen addresses, as text. */
export const DEFAULTS = {
  dns: fixedDefault('dns'),
  grpc: fixedDefault('grpc'),
  http: fixedDefault('http'),
} as const;

/** Every environment variable `canonport serve` reads, in table order. */
export const ENV_VARS: readonly string[] = settingEntries().flatMap(([, s]) => (s.env ? [s.env] : []));

/** Reads the CANONPORT_* variables of the table. Empty counts as unset; values are checked by buildConfig. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ConfigInput {
  const out: Record<string, string> = {};
  for (const [key, s] of settingEntries()) {
    const v = s.env ? env[s.env] : undefined;
    if (v !== undefined && v.trim() !== '') out[key] = v;
  }
  return out as ConfigInput;
}

/** What the config needs of a loaded registry file: the settings it gives, and its path. (Registry has both.) */
export interface SettingsFile {
  settings: FileSettings;
  file: string | null;
}

/**
 * The config that flags, env and a registry file's settings make: flags over
 * env over the file over defaults, for every setting (a list is taken whole
 * from the first source that gives it). Pure; daemon/load.ts reads the file.
 * Throws CP_CONFIG_INVALID naming the flag, variable or key, and
 * CP_FORWARD_LOOP when an upstream is the daemon itself.
 */
export function buildConfig(flags: ConfigInput, env: ConfigInput, registry: SettingsFile, opts: DefaultContext = {}): Config {
  const values: Record<string, unknown> = {};
  const sources = {} as Record<SettingKey, SettingSource>;
  for (const [key] of settingEntries()) {
    const s = settle(key, flags, env, registry.settings, registry.file, opts);
    values[key] = s.value;
    sources[key] = s.source;
  }
  const v = values as SettingValues;
  // resolv.conf may name this daemon (it is the host's nameserver): skip it there. Given explicitly, it is an error below.
  if (sources.upstreams === 'resolv.conf') v.upstreams = v.upstreams.filter((u) => !isSelf(u, v.dns));
  const config: Config = {
    ...v,
    registryFile: registry.file,
    upstreamsFrom: sources.upstreams === 'flag' ? 'flags' : sources.upstreams === 'default' ? 'resolv.conf' : sources.upstreams,
    cache: { maxEntries: v.cacheSize, maxTtl: 86_400, maxNegativeTtl: 900, staleTtl: 86_400 },
    tcp: { idleTimeoutMs: 10_000, maxConnections: v.dnsTcpMaxConnections },
    sources,
  };
  checkForwardLoop(config);
  return config;
}

/** The registry file that flags or env name (null: none), checked like every setting. */
export function registryFileOf(flags: ConfigInput, env: ConfigInput, opts: DefaultContext = {}): string | null {
  return settle('registry', flags, env, {}, null, opts).value as string | null;
}

/** The registry file's size limit, from flags or env (the file cannot set it: it is needed before the file is read). */
export function registryMaxBytesOf(flags: ConfigInput, env: ConfigInput, opts: DefaultContext = {}): number {
  return settle('registryMaxBytes', flags, env, {}, null, opts).value as number;
}

/**
 * One setting from the first source that gives it, checked by its kind. A
 * setting without a flag (or variable) refuses one given that way, rather
 * than ignore it.
 */
function settle(
  key: SettingKey,
  flags: ConfigInput,
  env: ConfigInput,
  file: FileSettings,
  registryFile: string | null,
  ctx: DefaultContext,
): { value: unknown; source: SettingSource } {
  const s: Setting = SETTINGS[key];
  const given: [SettingSource, unknown, string][] = [];
  if (flags[key] !== undefined) given.push(['flag', s.kind.fromInput(flags[key]!), s.flag?.name ?? '']);
  if (env[key] !== undefined) given.push(['env', s.kind.fromInput(env[key]!), s.env ?? '']);
  if (file[key] !== undefined) given.push(['file', file[key], `${registryFile ?? 'registry file'} (${fileKeys(key).join(' + ')})`]);
  const first = given[0];
  if (first) {
    const [source, raw, where] = first;
    if (where === '') {
      const how = fileKeys(key).length > 0 ? `; set ${fileKeys(key).join(' or ')} in the registry file` : '';
      throw new CanonportError(ErrorCodes.CONFIG_INVALID, `setting "${key}" has no ${source === 'flag' ? 'flag' : 'environment variable'}${how}`, { setting: key });
    }
    return { value: check(key, s, raw, where, source), source };
  }
  if (s.default === null) return { value: null, source: 'default' };
  if (isDynamic(s.default)) return { value: check(key, s, s.default.read(ctx), s.default.source, s.default.source), source: s.default.source };
  return { value: check(key, s, s.default, `default of ${key}`, 'default'), source: 'default' };
}

function check(key: SettingKey, s: Setting, raw: unknown, where: string, source: SettingSource): unknown {
  const r = s.kind.check(raw);
  if (r.ok) return r.value;
  throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${where}: ${r.reason}`, { setting: key, source });
}

/** Whether an upstream is this daemon's own listener. */
export function isSelf(u: HostPort, dns: HostPort): boolean {
  if (u.port !== dns.port) return false;
  if (u.host === dns.host) return true;
  const wildcard = dns.host === '0.0.0.0' || dns.host === '::';
  return wildcard && (u.host.startsWith('127.') || u.host === '::1');
}

/**
 * The daemon as its own upstream is a loop: refused by `serve` and
 * `serve --print-config` alike (resolv.conf entries were already skipped).
 * Throws CP_FORWARD_LOOP.
 */
export function checkForwardLoop(config: Pick<Config, 'upstreams' | 'dns'>): void {
  const self = config.upstreams.find((u) => isSelf(u, config.dns));
  if (self) {
    throw new CanonportError(
      ErrorCodes.FORWARD_LOOP,
      `upstream ${formatHostPort(self)} is this daemon's own DNS address (${formatHostPort(config.dns)}): it would forward to itself`,
      { upstream: formatHostPort(self) },
    );
  }
}

/** A setting's value as print-config shows it (and as changes are compared). */
export function showSetting(key: SettingKey, value: unknown): Shown {
  return value === null ? null : (SETTINGS[key] as Setting).kind.show(value);
}

/** A setting a reload would change but that applies only after a restart. */
export interface RestartChange {
  key: SettingKey;
  /** The flag, else the variable, else the file key, for the log line. */
  name: string;
  running: Shown;
  configured: Shown;
}

/** The restart-only settings whose value differs between the running config and a newly built one. */
export function restartNeeded(running: Config, next: Config): RestartChange[] {
  const out: RestartChange[] = [];
  for (const [key, s] of settingEntries()) {
    if (s.applies !== 'restart') continue;
    const a = showSetting(key, running[key]);
    const b = showSetting(key, next[key]);
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ key, name: s.flag?.name ?? s.env ?? fileKeys(key)[0] ?? key, running: a, configured: b });
  }
  return out;
}

/**
 * What a reload puts in force: the new config, except that restart-only
 * settings keep their running values (and sources); `restart` lists those
 * so the daemon can log CP_RESTART_NEEDED for each.
 */
export function applyReload(running: Config, next: Config): { config: Config; restart: RestartChange[] } {
  const restart = restartNeeded(running, next);
  const config: Config = { ...next, sources: { ...next.sources } };
  const target = config as unknown as Record<string, unknown>;
  for (const { key } of restart) {
    target[key] = running[key];
    config.sources[key] = running.sources[key];
  }
  return { config, restart };
}
