import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { normaliseName } from '../core/names.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import { loadRegistry } from '../registry/load.js';
import type { Registry } from '../registry/registry.js';
import { DEFAULT_DAEMON_ADDRESS, parseHostPort, type HostPort } from './address.js';
import { parseCidr, type Cidr } from './cidr.js';

/** The one validated configuration object the daemon runs on. */
export interface Config {
  dns: HostPort;
  grpc: HostPort;
  http: HostPort;
  /** Configured zones (lowercase); `localhost` is always served on top of these. */
  zones: string[];
  /** Upstream resolvers; from /etc/resolv.conf when none are given. */
  upstreams: HostPort[];
  /** Where the upstreams came from, for --print-config and logs. */
  upstreamsFrom: 'flags' | 'env' | 'file' | 'resolv.conf';
  /** Networks allowed to use forwarding when not on loopback. Loopback is always allowed. */
  allow: Cidr[];
  /** Who gets canonical answers: `any` client, or only `allowed` ones (loopback and --allow). */
  canonicalClients: 'any' | 'allowed';
  registryFile: string | null;
  logLevel: string;
  /** Fraction of queries logged, 0–1. */
  queryLog: number;
  upstreamTimeoutMs: number;
  cache: { maxEntries: number; maxTtl: number; maxNegativeTtl: number; staleTtl: number };
  /** Per-client forwarded queries per second (0 = unlimited). */
  rateLimit: number;
  /** Upstream queries in flight at once; beyond it SERVFAIL. */
  maxInflight: number;
  tcp: { idleTimeoutMs: number; maxConnections: number };
}

export const DEFAULTS = {
  dns: '127.0.0.1:5300',
  grpc: DEFAULT_DAEMON_ADDRESS,
  http: '127.0.0.1:13656',
} as const;

/** Settings as given by one source; every field optional. */
export interface ConfigInput {
  dns?: string | undefined;
  grpc?: string | undefined;
  http?: string | undefined;
  zones?: string[] | undefined;
  upstreams?: string[] | undefined;
  allow?: string[] | undefined;
  registry?: string | undefined;
  logLevel?: string | undefined;
  queryLog?: number | undefined;
  upstreamTimeoutMs?: number | undefined;
  cacheSize?: number | undefined;
  rateLimit?: number | undefined;
  maxInflight?: number | undefined;
  canonicalClients?: string | undefined;
}

/** Reads CANONPORT_* variables. Lists are comma- or space-separated. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ConfigInput {
  const list = (v: string | undefined) => (v === undefined || v.trim() === '' ? undefined : v.split(/[,\s]+/).filter(Boolean));
  const num = (k: string) => {
    const v = env[k];
    if (v === undefined || v === '') return undefined;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${k}="${v}" is not a number`);
    return n;
  };
  return {
    dns: env.CANONPORT_DNS || undefined,
    grpc: env.CANONPORT_GRPC || undefined,
    http: env.CANONPORT_HTTP || undefined,
    zones: list(env.CANONPORT_ZONES),
    upstreams: list(env.CANONPORT_UPSTREAMS),
    allow: list(env.CANONPORT_ALLOW),
    registry: env.CANONPORT_REGISTRY || undefined,
    logLevel: env.CANONPORT_LOG_LEVEL || undefined,
    queryLog: num('CANONPORT_QUERY_LOG'),
    upstreamTimeoutMs: num('CANONPORT_UPSTREAM_TIMEOUT'),
    cacheSize: num('CANONPORT_CACHE_SIZE'),
    rateLimit: num('CANONPORT_RATE_LIMIT'),
    maxInflight: num('CANONPORT_MAX_INFLIGHT'),
    canonicalClients: env.CANONPORT_CANONICAL_CLIENTS || undefined,
  };
}

export const ENV_VARS = [
  'CANONPORT_DNS',
  'CANONPORT_GRPC',
  'CANONPORT_HTTP',
  'CANONPORT_ZONES',
  'CANONPORT_UPSTREAMS',
  'CANONPORT_ALLOW',
  'CANONPORT_REGISTRY',
  'CANONPORT_LOG_LEVEL',
  'CANONPORT_QUERY_LOG',
  'CANONPORT_UPSTREAM_TIMEOUT',
  'CANONPORT_CACHE_SIZE',
  'CANONPORT_RATE_LIMIT',
  'CANONPORT_MAX_INFLIGHT',
  'CANONPORT_CANONICAL_CLIENTS',
  'CANONPORT_WORKERS',
] as const;

/**
 * Builds the config: flags over env over the registry file's `daemon:`
 * section over defaults. Loads the registry named by flags or env.
 * Throws CP_CONFIG_INVALID / CP_REGISTRY_* with a message naming the setting.
 */
export async function resolveConfig(
  flags: ConfigInput,
  env: ConfigInput = configFromEnv(),
  opts: { resolvConf?: string } = {},
): Promise<{ config: Config; registry: Registry }> {
  const registry = await loadRegistry(flags.registry ?? env.registry);
  const config = buildConfig(flags, env, registry, opts);
  return { config, registry };
}

/** The pure part of resolveConfig: the config a given registry and the flags and env make. */
export function buildConfig(flags: ConfigInput, env: ConfigInput, registry: Registry, opts: { resolvConf?: string } = {}): Config {
  const file: ConfigInput = { ...registry.daemon, registry: registry.file ?? undefined };
  const pick = <K extends keyof ConfigInput>(k: K): ConfigInput[K] => flags[k] ?? env[k] ?? file[k];
  const dns = parseHostPort(pick('dns') ?? DEFAULTS.dns, '--dns');
  const zones = [...new Set([...(pick('zones') ?? []).map(normaliseZone), ...registry.zones])];
  let upstreamsFrom: Config['upstreamsFrom'] = flags.upstreams ? 'flags' : env.upstreams ? 'env' : file.upstreams ? 'file' : 'resolv.conf';
  const upstreamText = pick('upstreams') ?? readResolvConf(opts.resolvConf ?? '/etc/resolv.conf');
  const upstreams = upstreamText.map((u) => parseHostPort(u, '--upstream', 53));
  const logLevel = pick('logLevel') ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new CanonportError(ErrorCodes.CONFIG_INVALID, `log level "${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`);
  }
  const queryLog = pick('queryLog') ?? 0;
  if (!(queryLog >= 0 && queryLog <= 1)) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `query log rate ${queryLog} is not between 0 and 1`);
  return {
    dns,
    grpc: parseHostPort(pick('grpc') ?? DEFAULTS.grpc, '--grpc'),
    http: parseHostPort(pick('http') ?? DEFAULTS.http, '--http'),
    zones,
    // Loop protection: never forward to our own DNS address (a resolv.conf that names us).
    upstreams: upstreamsFrom === 'resolv.conf' ? upstreams.filter((u) => !isSelf(u, dns)) : upstreams,
    upstreamsFrom,
    allow: (pick('allow') ?? []).map((c) => parseCidr(c, '--allow')),
    canonicalClients: canonicalClients(pick('canonicalClients') ?? 'any'),
    registryFile: registry.file,
    logLevel,
    queryLog,
    upstreamTimeoutMs: intSetting(pick('upstreamTimeoutMs') ?? 1000, 'upstream timeout (ms)', 10, 30_000),
    cache: { maxEntries: intSetting(pick('cacheSize') ?? 100_000, 'cache size', 0, 10_000_000), maxTtl: 86_400, maxNegativeTtl: 900, staleTtl: 86_400 },
    rateLimit: intSetting(pick('rateLimit') ?? 0, 'rate limit (queries/s per client, 0 = off)', 0, 1_000_000),
    maxInflight: intSetting(pick('maxInflight') ?? 1024, 'max in-flight upstream queries', 1, 1_000_000),
    tcp: { idleTimeoutMs: 10_000, maxConnections: 256 },
  };
}

function canonicalClients(v: string): 'any' | 'allowed' {
  if (v !== 'any' && v !== 'allowed') throw new CanonportError(ErrorCodes.CONFIG_INVALID, `--canonical-clients: "${v}" is not "any" or "allowed"`);
  return v;
}

function intSetting(v: number, what: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${what}: ${v} is not an integer in ${min}–${max}`);
  return v;
}

/** A zone from flags or env, checked as every name is (normaliseName); the registry's own are checked by its schema. */
function normaliseZone(z: string): string {
  try {
    return normaliseName(z.trim());
  } catch (err) {
    throw new CanonportError(ErrorCodes.CONFIG_INVALID, `--zone: "${z}" is not a DNS name such as cluster-1.example.com (${(err as Error).message})`);
  }
}

/** Nameservers of a resolv.conf file, in order. A missing file gives none. */
export function readResolvConf(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (!m) continue;
    const addr = m[1]!.replace(/%.*$/, ''); // drop IPv6 zone index
    if (isIP(addr)) out.push(isIP(addr) === 6 ? `[${addr}]:53` : `${addr}:53`);
  }
  return out;
}

/** Whether an upstream is this daemon's own listener. */
export function isSelf(u: HostPort, dns: HostPort): boolean {
  if (u.port !== dns.port) return false;
  if (u.host === dns.host) return true;
  const wildcard = dns.host === '0.0.0.0' || dns.host === '::';
  return wildcard && (u.host.startsWith('127.') || u.host === '::1');
}
