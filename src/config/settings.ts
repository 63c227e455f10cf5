import { z } from 'zod';
import { DEFAULT_GRPC_PORT } from './address.js';
import { readResolvConf } from './resolv-conf.js';
import { LOG_FORMATS } from '../log.js';
import { boolean, cidr, decimal, etcdUrl, hostPort, int, ipAddress, label, listOf, oneOf, path, word, zone, type Kind, type SettingInput } from './kinds.js';

/**
 * Every setting of `canonport serve`, declared once. The commander options
 * (src/cli/commands/serve.ts), the environment reading, the registry file's
 * `daemon:` schema (src/registry/schema.ts), the merged Config
 * (config.ts), `serve --print-config` and the configuration reference's table (docs/configuration.md)
 * (docs.ts) are all derived from this table.
 *
 * Adding a setting is one entry here plus the code that uses
 * `config.<key>`; that table is regenerated with `npm run docs:settings`
 * (a test fails until it is).
 */

/** Where a setting's value came from. `resolv.conf` is the upstreams' default. */
export type SettingSource = 'flag' | 'env' | 'file' | 'default' | 'resolv.conf';

/**
 * Where the registry file holds a setting: under `daemon:` (the key is the
 * setting's key), at the top level, or both (a list: the two are joined).
 */
export type FilePlace = 'daemon' | 'top' | 'both';

/** Whether a new value takes effect on reload (SIGHUP, a registry file change) or only after a restart. */
export type Applies = 'reload' | 'restart';

/** What a default computed at start needs (tests point resolv.conf elsewhere). */
export interface DefaultContext {
  resolvConf?: string | undefined;
}

/** A default read from the host when the daemon starts, named as its own source. */
export interface DynamicDefault<Raw> {
  source: Extract<SettingSource, 'resolv.conf'>;
  read(ctx: DefaultContext): Raw;
}

export interface Setting<Raw = unknown, T = unknown, F extends FilePlace | null = FilePlace | null, O extends boolean = boolean> {
  /** The flag, and the name of its value in help (`ADDR:PORT`); no value: a boolean switch. */
  readonly flag: { readonly name: `--${string}`; readonly value?: string | undefined } | null;
  readonly env: `CANONPORT_${string}` | null;
  readonly file: F;
  readonly kind: Kind<Raw, T>;
  /** The raw default (checked like any input); null: unset (the value is null); or read at start. */
  readonly default: Raw | null | DynamicDefault<Raw>;
  /** The default as help and the docs say it. */
  readonly defaultText: string;
  /** True: the Config value is `T | null` (null when nothing sets it). */
  readonly optional: O;
  readonly applies: Applies;
  /** One line for `serve --help`. */
  readonly help: string;
  /** The description in docs/configuration.md's table (markdown; links relative to docs/); the help line when not given. */
  readonly doc: string;
}

interface Decl<Raw, T, F extends FilePlace | null> {
  flag?: { name: `--${string}`; value?: string } | undefined;
  env?: `CANONPORT_${string}` | undefined;
  file: F;
  kind: Kind<Raw, T>;
  applies: Applies;
  help: string;
  doc?: string | undefined;
}

function setting<Raw, T, const F extends FilePlace | null>(
  d: Decl<Raw, T, F> & { default: Raw | DynamicDefault<Raw>; defaultText?: string },
): Setting<Raw, T, F, false> {
  const defaultText = d.defaultText ?? (isDynamic(d.default) ? d.default.source : String(d.kind.show(checkDefault(d.kind, d.default))));
  return { flag: d.flag ?? null, env: d.env ?? null, file: d.file, kind: d.kind, default: d.default, defaultText, optional: false, applies: d.applies, help: d.help, doc: d.doc ?? d.help };
}

/** A setting that may stay unset: its value is null then, and `defaultText` says what that means. */
function optionalSetting<Raw, T, const F extends FilePlace | null>(d: Decl<Raw, T, F> & { defaultText: string }): Setting<Raw, T, F, true> {
  return { flag: d.flag ?? null, env: d.env ?? null, file: d.file, kind: d.kind, default: null, defaultText: d.defaultText, optional: true, applies: d.applies, help: d.help, doc: d.doc ?? d.help };
}

export function isDynamic<Raw>(d: Raw | null | DynamicDefault<Raw>): d is DynamicDefault<Raw> {
  return typeof d === 'object' && d !== null && 'read' in d;
}

function checkDefault<Raw, T>(kind: Kind<Raw, T>, raw: Raw): T {
  const r = kind.check(raw);
  if (!r.ok) throw new Error(`a setting's default does not pass its own check: ${r.reason}`);
  return r.value;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const SETTINGS = {
  dns: setting({
    flag: { name: '--dns', value: 'ADDR:PORT' },
    env: 'CANONPORT_DNS',
    file: 'daemon',
    kind: hostPort({ allowZero: true }),
    default: '127.0.0.1:5300',
    applies: 'restart',
    help: 'DNS listen address (UDP and TCP)',
    doc: 'DNS listen address, UDP and TCP; `[::1]:5300` for IPv6, port 53 to be a host\'s nameserver',
  }),
  grpc: setting({
    flag: { name: '--grpc', value: 'ADDR:PORT' },
    env: 'CANONPORT_GRPC',
    file: 'daemon',
    kind: hostPort({ allowZero: true }),
    default: `127.0.0.1:${DEFAULT_GRPC_PORT}`,
    applies: 'restart',
    help: 'gRPC listen address',
    doc: 'gRPC listen address (`Resolve`, `Watch`, `Decode`, `Inventory`, health, reflection)',
  }),
  http: setting({
    flag: { name: '--http', value: 'ADDR:PORT' },
    env: 'CANONPORT_HTTP',
    file: 'daemon',
    kind: hostPort({ allowZero: true }),
    default: '127.0.0.1:13656',
    applies: 'restart',
    help: 'HTTP listen address for /metrics, /healthz, /readyz',
    doc: 'HTTP listen address: `/metrics`, `/healthz`, `/readyz`',
  }),
  zones: setting({
    flag: { name: '--zone', value: 'ZONE' },
    env: 'CANONPORT_ZONES',
    file: 'both',
    kind: listOf(zone(), { unique: true }),
    default: [],
    defaultText: 'none (localhost always)',
    applies: 'reload',
    help: 'serve canonical names under ZONE; localhost is always served',
    doc: 'zones answered canonically, besides `localhost` (always served); in the file, top-level `zones:` and `daemon.zones` together',
  }),
  upstreams: setting({
    flag: { name: '--upstream', value: 'ADDR[:PORT]' },
    env: 'CANONPORT_UPSTREAMS',
    file: 'daemon',
    kind: listOf(hostPort({ defaultPort: 53 })),
    default: { source: 'resolv.conf', read: (ctx) => readResolvConf(ctx.resolvConf ?? '/etc/resolv.conf') },
    defaultText: '/etc/resolv.conf minus self',
    applies: 'reload',
    help: 'forward other queries here, in order (port 53 if none given)',
    doc: 'resolvers for every other query, tried in order (port 53 when none is given); one equal to the daemon\'s own DNS address is refused with `CP_FORWARD_LOOP`',
  }),
  allow: setting({
    flag: { name: '--allow', value: 'CIDR' },
    env: 'CANONPORT_ALLOW',
    file: 'daemon',
    kind: listOf(cidr()),
    default: [],
    defaultText: 'none (loopback only)',
    applies: 'reload',
    help: 'networks besides loopback that may use forwarding',
    doc: 'networks besides loopback that may use forwarding; others get REFUSED',
  }),
  canonicalClients: setting({
    flag: { name: '--canonical-clients', value: 'WHO' },
    env: 'CANONPORT_CANONICAL_CLIENTS',
    file: 'daemon',
    kind: oneOf(['any', 'allowed']),
    default: 'any',
    applies: 'reload',
    help: 'who gets canonical answers: any client, or only allowed ones (loopback and --allow)',
    doc: 'who gets canonical answers: `any` client, or only `allowed` ones (loopback and `allow`)',
  }),
  // Who may reach gRPC and HTTP (src/config/listen-policy.ts checks them together at start and reload).
  grpcAllow: setting({
    flag: { name: '--grpc-allow', value: 'CIDR' },
    env: 'CANONPORT_GRPC_ALLOW',
    file: 'daemon',
    kind: listOf(cidr()),
    default: [],
    defaultText: 'none (loopback only)',
    applies: 'reload',
    help: 'networks besides loopback that may call gRPC (every service, xDS included)',
    doc: 'networks besides loopback that may call gRPC, every service and xDS included; others get `PERMISSION_DENIED` (`CP_ACCESS_DENIED`). Empty: loopback only, unless client certificates are required (`grpcTlsClientCa`) or `insecureListen`',
  }),
  httpAllow: setting({
    flag: { name: '--http-allow', value: 'CIDR' },
    env: 'CANONPORT_HTTP_ALLOW',
    file: 'daemon',
    kind: listOf(cidr()),
    default: [],
    defaultText: 'none (loopback only)',
    applies: 'reload',
    help: 'networks besides loopback that may read /metrics (and every HTTP path but /healthz and /readyz)',
    doc: 'networks besides loopback that may read `/metrics` and every other HTTP path except `/healthz` and `/readyz`, which answer everyone (probes); others get 403. Empty: loopback only, unless `httpTlsClientCa` or `insecureListen`',
  }),
  insecureListen: setting({
    flag: { name: '--insecure-listen' },
    env: 'CANONPORT_INSECURE_LISTEN',
    file: 'daemon',
    kind: boolean(),
    default: false,
    applies: 'reload',
    help: 'serve gRPC and HTTP beyond loopback to every client, with no allow-list and no client certificates',
    doc: 'let gRPC or HTTP listen on a non-loopback address with no allow-list and no required client certificates, serving every client that reaches them; without it `serve` refuses to start so (`CP_INSECURE_LISTEN`)',
  }),
  grpcTlsCert: optionalSetting({
    flag: { name: '--grpc-tls-cert', value: 'FILE' },
    env: 'CANONPORT_GRPC_TLS_CERT',
    file: 'daemon',
    kind: path(),
    defaultText: 'none (plaintext)',
    applies: 'restart',
    help: 'gRPC serves TLS with this certificate (PEM, chain allowed); re-read when it changes and on SIGHUP',
    doc: 'gRPC serves TLS with this certificate (PEM; intermediates after the leaf), with `grpcTlsKey`. The file (not its path) is re-read when it changes and on SIGHUP; a bad new one keeps the running one (`CP_TLS_INVALID`)',
  }),
  grpcTlsKey: optionalSetting({
    flag: { name: '--grpc-tls-key', value: 'FILE' },
    env: 'CANONPORT_GRPC_TLS_KEY',
    file: 'daemon',
    kind: path(),
    defaultText: 'none',
    applies: 'restart',
    help: "the private key of --grpc-tls-cert (PEM)",
    doc: 'the private key of `grpcTlsCert` (PEM), re-read with it',
  }),
  grpcTlsClientCa: optionalSetting({
    flag: { name: '--grpc-tls-client-ca', value: 'FILE' },
    env: 'CANONPORT_GRPC_TLS_CLIENT_CA',
    file: 'daemon',
    kind: path(),
    defaultText: 'none (no client certificates)',
    applies: 'restart',
    help: 'gRPC clients need a certificate signed by this CA (PEM): mutual TLS',
    doc: 'mutual TLS: gRPC clients need a certificate signed by a CA in this file (PEM, re-read like the certificate); with `grpcTlsClientAuth` `require` a client without one fails at the handshake',
  }),
  grpcTlsClientAuth: setting({
    flag: { name: '--grpc-tls-client-auth', value: 'MODE' },
    env: 'CANONPORT_GRPC_TLS_CLIENT_AUTH',
    file: 'daemon',
    kind: oneOf(['require', 'optional']),
    default: 'require',
    applies: 'restart',
    help: 'with --grpc-tls-client-ca: require a client certificate at the handshake, or make it optional (then --inventory-require-cert decides)',
    doc: 'with `grpcTlsClientCa`: `require` a valid client certificate at the handshake, or make it `optional` (a certificate that is offered is still checked), so workloads without one reach `Resolve`, `Watch` and xDS while `inventoryRequireCert` guards `Inventory`',
  }),
  inventoryAllow: setting({
    flag: { name: '--inventory-allow', value: 'CIDR' },
    env: 'CANONPORT_INVENTORY_ALLOW',
    file: 'daemon',
    kind: listOf(cidr()),
    default: [],
    defaultText: 'none (as grpcAllow)',
    applies: 'reload',
    help: 'a narrower allow-list for Inventory (what the fleet view reads); loopback always',
    doc: 'a narrower allow-list for gRPC `Inventory` (what `canonport fleet` reads), inside `grpcAllow`; loopback always. Empty: whoever may call gRPC',
  }),
  inventoryRequireCert: setting({
    flag: { name: '--inventory-require-cert' },
    env: 'CANONPORT_INVENTORY_REQUIRE_CERT',
    file: 'daemon',
    kind: boolean(),
    default: false,
    applies: 'reload',
    help: 'Inventory only for clients with a certificate from --grpc-tls-client-ca',
    doc: 'gRPC `Inventory` only for clients that presented a certificate signed by `grpcTlsClientCa` (loopback too)',
  }),
  httpTlsCert: optionalSetting({
    flag: { name: '--http-tls-cert', value: 'FILE' },
    env: 'CANONPORT_HTTP_TLS_CERT',
    file: 'daemon',
    kind: path(),
    defaultText: 'none (plaintext)',
    applies: 'restart',
    help: 'HTTP serves HTTPS with this certificate (PEM); re-read when it changes and on SIGHUP',
    doc: 'HTTP serves HTTPS with this certificate (PEM), with `httpTlsKey`; re-read like `grpcTlsCert`',
  }),
  httpTlsKey: optionalSetting({
    flag: { name: '--http-tls-key', value: 'FILE' },
    env: 'CANONPORT_HTTP_TLS_KEY',
    file: 'daemon',
    kind: path(),
    defaultText: 'none',
    applies: 'restart',
    help: 'the private key of --http-tls-cert (PEM)',
    doc: 'the private key of `httpTlsCert` (PEM)',
  }),
  httpTlsClientCa: optionalSetting({
    flag: { name: '--http-tls-client-ca', value: 'FILE' },
    env: 'CANONPORT_HTTP_TLS_CLIENT_CA',
    file: 'daemon',
    kind: path(),
    defaultText: 'none (no client certificates)',
    applies: 'restart',
    help: 'HTTP paths but /healthz and /readyz need a client certificate signed by this CA (PEM)',
    doc: 'every HTTP path but `/healthz` and `/readyz` needs a client certificate signed by a CA in this file (a Prometheus with `tls_config`); the probes, which carry none, still answer',
  }),
  registry: optionalSetting({
    flag: { name: '--registry', value: 'FILE' },
    env: 'CANONPORT_REGISTRY',
    file: null,
    kind: path(),
    defaultText: 'none',
    applies: 'restart',
    help: 'registry file (YAML); re-read on SIGHUP and when it changes',
    doc: 'the registry file (YAML), re-read on SIGHUP and whenever it changes',
  }),
  logLevel: setting({
    flag: { name: '--log-level', value: 'LEVEL' },
    env: 'CANONPORT_LOG_LEVEL',
    file: 'daemon',
    kind: oneOf(LOG_LEVELS, 'log level'),
    default: 'info',
    applies: 'reload',
    help: 'log level',
    doc: 'pino log level',
  }),
  logFormat: setting({
    flag: { name: '--log-format', value: 'FORMAT' },
    env: 'CANONPORT_LOG_FORMAT',
    file: 'daemon',
    kind: oneOf(LOG_FORMATS, 'log format'),
    default: 'auto',
    applies: 'restart',
    help: 'log lines on stderr: pretty (for a person), json (one object per line), or auto: pretty when stderr is a terminal',
    doc: 'how log lines on stderr look: `pretty` (a person\'s: time, level, message, fields), `json` (one pino object per line, for journald, Docker and log shippers), or `auto`: pretty when stderr is a terminal, JSON otherwise',
  }),
  queryLog: setting({
    flag: { name: '--query-log', value: 'RATE' },
    env: 'CANONPORT_QUERY_LOG',
    file: 'daemon',
    kind: decimal(0, 1),
    default: 0,
    applies: 'reload',
    help: 'fraction of queries logged',
    doc: 'fraction of queries logged: 0 none, 1 all',
  }),
  upstreamTimeoutMs: setting({
    flag: { name: '--upstream-timeout', value: 'MS' },
    env: 'CANONPORT_UPSTREAM_TIMEOUT',
    file: 'daemon',
    kind: int(10, 30_000),
    default: 1000,
    applies: 'reload',
    help: 'how long one upstream gets to answer, in ms',
  }),
  cacheSize: setting({
    flag: { name: '--cache-size', value: 'N' },
    env: 'CANONPORT_CACHE_SIZE',
    file: 'daemon',
    kind: int(0, 10_000_000),
    default: 100_000,
    applies: 'reload',
    help: 'answers kept in the forwarding cache',
    doc: 'answers kept in the forwarding cache; the oldest 1 % go when it is full',
  }),
  rateLimit: setting({
    flag: { name: '--rate-limit', value: 'QPS' },
    env: 'CANONPORT_RATE_LIMIT',
    file: 'daemon',
    kind: int(0, 1_000_000),
    default: 0,
    defaultText: '0 (off)',
    applies: 'reload',
    help: 'forwarded queries per second per client, 0 = off',
    doc: 'forwarded queries per second per client (REFUSED beyond it); 0 = no limit',
  }),
  maxInflight: setting({
    flag: { name: '--max-inflight', value: 'N' },
    env: 'CANONPORT_MAX_INFLIGHT',
    file: 'daemon',
    kind: int(1, 1_000_000),
    default: 1024,
    applies: 'reload',
    help: 'distinct upstream queries in flight at once; past it SERVFAIL',
    doc: 'distinct upstream queries in flight at once; past it SERVFAIL at once, so memory stays bounded',
  }),
  // Bounds on what a client of the daemon's sockets can hold (issue 21): the threat model's table lists them all.
  connectionsPerSource: setting({
    flag: { name: '--connections-per-source', value: 'N' },
    env: 'CANONPORT_CONNECTIONS_PER_SOURCE',
    file: 'daemon',
    kind: int(1, 1_000_000),
    default: 32,
    applies: 'reload',
    help: 'TCP connections one source address may hold on each of DNS, gRPC and HTTP (loopback exempt); more are closed at accept',
    doc: 'TCP connections one source address may hold open on each listener (DNS over TCP, gRPC, HTTP); more are closed at accept and counted (`canonport_connections_refused_total{reason="per_source"}`). Loopback is exempt (every process of the host shares it); the listener totals still apply',
  }),
  dnsTcpMaxConnections: setting({
    flag: { name: '--dns-tcp-max-connections', value: 'N' },
    env: 'CANONPORT_DNS_TCP_MAX_CONNECTIONS',
    file: 'daemon',
    kind: int(2, 1_000_000),
    default: 256,
    applies: 'reload',
    help: 'DNS-over-TCP connections open at once; clients outside --allow may hold half of them together',
    doc: 'DNS-over-TCP connections open at once, all clients together; clients outside `--allow` (and loopback) may hold at most half of them together, so they cannot starve allowed ones',
  }),
  grpcMaxConnections: setting({
    flag: { name: '--grpc-max-connections', value: 'N' },
    env: 'CANONPORT_GRPC_MAX_CONNECTIONS',
    file: 'daemon',
    kind: int(2, 1_000_000),
    default: 1024,
    applies: 'reload',
    help: 'gRPC connections open at once; addresses no allow-list admits are closed at accept beyond one short-lived connection each (16 together)',
    doc: 'gRPC connections open at once, all clients together. A connection from an address the allow-list refuses lives at most 3 s (long enough to be told `PERMISSION_DENIED` and why), one per address and 16 together; beyond that such connections are closed at accept',
  }),
  httpMaxConnections: setting({
    flag: { name: '--http-max-connections', value: 'N' },
    env: 'CANONPORT_HTTP_MAX_CONNECTIONS',
    file: 'daemon',
    kind: int(4, 1_000_000),
    default: 128,
    applies: 'reload',
    help: 'HTTP connections open at once; addresses outside --http-allow (probes) hold at most a quarter, 2 each',
    doc: 'HTTP connections open at once, all clients together. Addresses outside `--http-allow` reach only `/healthz` and `/readyz`: 2 connections each, a quarter of the total together, 10 s each at most, so probes from anywhere never starve `/metrics` for allowed clients',
  }),
  watchMaxStreams: setting({
    flag: { name: '--watch-max-streams', value: 'N' },
    env: 'CANONPORT_WATCH_MAX_STREAMS',
    file: 'daemon',
    kind: int(1, 10_000_000),
    default: 8192,
    applies: 'reload',
    help: 'gRPC Watch streams open at once, every client together; more get RESOURCE_EXHAUSTED (CP_WATCH_LIMIT)',
  }),
  watchMaxStreamsPerClient: setting({
    flag: { name: '--watch-max-streams-per-client', value: 'N' },
    env: 'CANONPORT_WATCH_MAX_STREAMS_PER_CLIENT',
    file: 'daemon',
    kind: int(1, 10_000_000),
    default: 1024,
    applies: 'reload',
    help: 'gRPC Watch streams one client may hold (a source address; on loopback, a connection)',
    doc: 'gRPC Watch streams one client may hold open (a client is a source address; on loopback, where every process of the host shares one address, a connection); more get `RESOURCE_EXHAUSTED` (`CP_WATCH_LIMIT`)',
  }),
  xdsMaxStreams: setting({
    flag: { name: '--xds-max-streams', value: 'N' },
    env: 'CANONPORT_XDS_MAX_STREAMS',
    file: 'daemon',
    kind: int(1, 1_000_000),
    default: 4096,
    applies: 'reload',
    help: 'xDS (ADS) streams open at once, every client together; more get RESOURCE_EXHAUSTED (CP_XDS_LIMIT)',
  }),
  xdsMaxStreamsPerClient: setting({
    flag: { name: '--xds-max-streams-per-client', value: 'N' },
    env: 'CANONPORT_XDS_MAX_STREAMS_PER_CLIENT',
    file: 'daemon',
    kind: int(1, 1_000_000),
    default: 256,
    applies: 'reload',
    help: 'xDS streams one client may hold (a source address; on loopback, a connection)',
  }),
  xdsMaxNames: setting({
    flag: { name: '--xds-max-names', value: 'N' },
    env: 'CANONPORT_XDS_MAX_NAMES',
    file: 'daemon',
    kind: int(1, 10_000_000),
    default: 65_536,
    applies: 'reload',
    help: 'xDS resource names subscribed over all streams together; past it the stream asking for more ends RESOURCE_EXHAUSTED',
    doc: 'xDS resource names subscribed over all streams together (each stream at most 4096). Past it the stream asking for more ends with `RESOURCE_EXHAUSTED` (`CP_XDS_LIMIT`), unless it holds less than an equal share: then the largest holder\'s largest stream ends instead',
  }),
  xdsMaxNamesPerClient: setting({
    flag: { name: '--xds-max-names-per-client', value: 'N' },
    env: 'CANONPORT_XDS_MAX_NAMES_PER_CLIENT',
    file: 'daemon',
    kind: int(1, 10_000_000),
    default: 16_384,
    applies: 'reload',
    help: 'xDS resource names one client may subscribe to over all its streams',
  }),
  registryMaxBytes: setting({
    flag: { name: '--registry-max-bytes', value: 'N' },
    env: 'CANONPORT_REGISTRY_MAX_BYTES',
    file: null,
    kind: int(1024, 1_073_741_824),
    default: 4_194_304,
    defaultText: '4194304 (4 MiB)',
    applies: 'restart',
    help: 'a registry file larger than this is refused (CP_REGISTRY_INVALID) without being read; the running one stays',
    doc: 'a registry file larger than this many bytes is refused (`CP_REGISTRY_INVALID`) before it is read, at start and on reload (the running registry stays); 4 MiB holds about 100,000 services',
  }),
  httpSdMaxGroups: setting({
    flag: { name: '--http-sd-max-groups', value: 'N' },
    env: 'CANONPORT_HTTP_SD_MAX_GROUPS',
    file: 'daemon',
    kind: int(1, 10_000_000),
    default: 10_000,
    applies: 'reload',
    help: '/sd/prometheus target groups per reply; more are paged (?page=N)',
    doc: '`/sd/prometheus` target groups per reply: a larger list is cut into pages of this many (`?page=1`, `?page=2`…; the reply says how many in `X-Canonport-Pages`), so one reply stays bounded',
  }),
  workers: setting({
    flag: { name: '--workers', value: 'N' },
    env: 'CANONPORT_WORKERS',
    file: 'daemon',
    kind: int(1, 64),
    default: 1,
    applies: 'restart',
    help: 'DNS worker processes sharing one socket, to use more than one core',
    doc: 'DNS worker processes sharing one socket, to use more than one core (see [Performance](performance.md#past-one-core---workers-n))',
  }),
  procRoot: setting({
    flag: { name: '--proc-root', value: 'DIR' },
    env: 'CANONPORT_PROC_ROOT',
    file: 'daemon',
    kind: path(),
    default: '/proc',
    applies: 'restart',
    help: 'where the inventory reads net/tcp, tcp6, udp, udp6 and the processes that hold the sockets',
    doc: 'the `/proc` the inventory reads `net/tcp`, `tcp6`, `udp` and `udp6` from, and the processes holding the sockets (a host\'s, mounted into a container)',
  }),
  // Names people recognise (issue 22): where they come from, and what is left out of browsing and Prometheus discovery.
  processNames: setting({
    flag: { name: '--process-names', value: 'BOOL' },
    env: 'CANONPORT_PROCESS_NAMES',
    file: 'daemon',
    kind: boolean(),
    default: true,
    applies: 'reload',
    help: 'name a listener after its process (systemd unit, executable) when that name\'s canonical port is its port',
    doc: 'name a listener the registry does not list after the process holding its socket (its systemd unit, its executable, the script an interpreter runs) when that name\'s canonical port is the port it listens on ([names](inventory.md#names-people-recognise)); reads `/proc/<pid>/fd` only for a socket never seen before, bounded. `false`: never read processes (their names then never leave the host)',
  }),
  learnNames: setting({
    flag: { name: '--learn-names', value: 'BOOL' },
    env: 'CANONPORT_LEARN_NAMES',
    file: 'daemon',
    kind: boolean(),
    default: true,
    applies: 'reload',
    help: 'name a port after the names clients ask for (db.<zone> names 14688 db) while some host listens on it',
    doc: 'name a port the registry does not list after the names clients ask for in the served zones (`db.<zone>`, `_db._tcp.<zone>`, a gRPC `Resolve`) while some host listens on its canonical port; in cluster mode published in this node\'s record, at most 256 names, one write per 5 s at most ([names](inventory.md#names-people-recognise))',
  }),
  learnedNameTtl: setting({
    flag: { name: '--learned-name-ttl', value: 'SECONDS' },
    env: 'CANONPORT_LEARNED_NAME_TTL',
    file: 'daemon',
    kind: int(60, 30 * 86_400),
    default: 86_400,
    applies: 'reload',
    help: 'forget a name learned from queries after this many seconds without one',
    doc: 'how long a name learned from queries stays without being asked again, in seconds (a name whose port no host listens on any more goes at once)',
  }),
  sdUnnamed: setting({
    flag: { name: '--sd-unnamed', value: 'BOOL' },
    env: 'CANONPORT_SD_UNNAMED',
    file: 'daemon',
    kind: boolean(),
    default: false,
    applies: 'reload',
    help: 'list unnamed listeners in DNS-SD browsing and /sd/prometheus too',
    doc: 'list listeners no source names (no registry entry, no name asked for, no process name) in DNS-SD browsing and `/sd/prometheus` too, under their canonical name and `__meta_canonport_name_source="none"`; they answer their canonical names either way. `/sd/prometheus?unnamed=true` asks for them in one scrape job',
  }),
  // Containers and pods (issue 26): every network namespace on the host, src/inventory/namespaces.ts.
  namespaces: setting({
    flag: { name: '--namespaces', value: 'all|own' },
    env: 'CANONPORT_NAMESPACES',
    file: 'daemon',
    kind: oneOf(['all', 'own'] as const, 'namespaces'),
    default: 'all',
    applies: 'reload',
    help: 'which network namespaces the inventory reads: all (containers and pods too) or own',
    doc: 'which network namespaces the inventory reads: `all`, every one on the host (containers and pods; needs the host\'s PID namespace, `hostPID: true`, and no capability), or `own`, the daemon\'s only. When `all` cannot be had the daemon says so once (`CP_NAMESPACES_RESTRICTED`), and `/readyz` and `inventory` show it (see [Containers and pods](cluster.md#containers-and-pods))',
  }),
  containerNetworks: setting({
    flag: { name: '--container-network', value: 'CIDR' },
    env: 'CANONPORT_CONTAINER_NETWORKS',
    file: 'daemon',
    kind: listOf(cidr()),
    default: [],
    defaultText: 'none (containers only through ports the host publishes)',
    applies: 'reload',
    help: 'a container network other hosts route to (a pod CIDR; repeatable): its containers are published at their own addresses',
    doc: 'container networks other hosts can reach (repeatable: the cluster\'s pod CIDR, a macvlan or routed bridge): a listener in a container or pod whose namespace owns an address in one is published at that address. A container elsewhere (a bridge-private address) is published only through a port the host itself listens on (`-p`, docker-proxy)',
  }),
  podDirectory: setting({
    flag: { name: '--pod-directory', value: 'DIR' },
    env: 'CANONPORT_POD_DIRECTORY',
    file: 'daemon',
    kind: path(),
    default: '/var/log/pods',
    applies: 'restart',
    help: 'the kubelet\'s pod log directory, whose entries name pods (<namespace>_<name>_<uid>)',
    doc: 'the kubelet\'s pod log directory (`<namespace>_<name>_<uid>` per pod): where a pod\'s name and namespace are read, its UID coming from the cgroup path. Only its listing is read',
  }),
  // Cluster mode (issue 14): each daemon publishes what listens on its host into etcd and answers from the merged view.
  cluster: optionalSetting({
    flag: { name: '--cluster', value: 'etcd://HOST:PORT[,…]' },
    env: 'CANONPORT_CLUSTER',
    file: 'daemon',
    kind: etcdUrl(),
    defaultText: 'off (one host, no etcd)',
    applies: 'restart',
    help: 'cluster mode: publish this host\'s listeners into etcd and answer from every host\'s',
    doc: 'cluster mode: the etcd members to publish this host\'s listeners to and read every host\'s from (see [Cluster mode](cluster.md)); unset, one host and no etcd',
  }),
  advertise: setting({
    flag: { name: '--advertise', value: 'ADDR' },
    env: 'CANONPORT_ADVERTISE',
    file: 'daemon',
    kind: listOf(ipAddress(), { unique: true }),
    default: [],
    defaultText: 'detected (the address toward etcd)',
    applies: 'restart',
    help: 'the addresses other hosts reach this host at (repeatable)',
    doc: 'the addresses other hosts reach this host at (repeatable, IPv4 or IPv6); detected when none is given: the source address the host uses toward the first etcd member, logged at start',
  }),
  node: optionalSetting({
    flag: { name: '--node', value: 'NAME' },
    env: 'CANONPORT_NODE',
    file: 'daemon',
    kind: label(),
    defaultText: 'the hostname, as a DNS label',
    applies: 'restart',
    help: "this host's name in the cluster (a DNS label)",
    doc: "this host's name in the cluster: a DNS label, unique in the cluster; `<node>.node.<zone>` answers its addresses",
  }),
  leaseTtl: setting({
    flag: { name: '--lease-ttl', value: 'SECONDS' },
    env: 'CANONPORT_LEASE_TTL',
    file: 'daemon',
    kind: int(2, 3600),
    default: 10,
    applies: 'restart',
    help: "the etcd lease all of this host's keys hang on; a dead host is gone this long after",
    doc: "seconds of the etcd lease every key of this host hangs on: a host that dies disappears from every answer when it expires",
  }),
  clusterPrefix: setting({
    flag: { name: '--cluster-prefix', value: 'PREFIX' },
    env: 'CANONPORT_CLUSTER_PREFIX',
    file: 'daemon',
    kind: word(),
    default: '/canonport',
    applies: 'restart',
    help: 'the etcd key prefix (the layout under it is versioned)',
  }),
  clusterCa: optionalSetting({
    flag: { name: '--cluster-ca', value: 'FILE' },
    env: 'CANONPORT_CLUSTER_CA',
    file: 'daemon',
    kind: path(),
    defaultText: 'none (plaintext)',
    applies: 'restart',
    help: "CA certificate (PEM) that signs etcd's server certificates; given, etcd is reached over TLS",
  }),
  clusterCert: optionalSetting({
    flag: { name: '--cluster-cert', value: 'FILE' },
    env: 'CANONPORT_CLUSTER_CERT',
    file: 'daemon',
    kind: path(),
    defaultText: 'none',
    applies: 'restart',
    help: 'client certificate (PEM) for etcd',
  }),
  clusterKey: optionalSetting({
    flag: { name: '--cluster-key', value: 'FILE' },
    env: 'CANONPORT_CLUSTER_KEY',
    file: 'daemon',
    kind: path(),
    defaultText: 'none',
    applies: 'restart',
    help: "the client certificate's key (PEM)",
  }),
  clusterUser: optionalSetting({
    flag: { name: '--cluster-user', value: 'NAME' },
    env: 'CANONPORT_CLUSTER_USER',
    file: 'daemon',
    kind: word(),
    defaultText: 'none',
    applies: 'restart',
    help: 'etcd user (with --cluster-password-file)',
    doc: 'etcd user; its role should allow reads under `<prefix>/` and writes only to this host\'s keys, `<prefix>/v2/nodes/<node>/` (and, for the v1 mirror, `<prefix>/v1/nodes/<node>` and `<prefix>/v1/listeners/<node>/<port>`; see [An etcd role per host](cluster.md#an-etcd-role-per-host))',
  }),
  clusterPasswordFile: optionalSetting({
    flag: { name: '--cluster-password-file', value: 'FILE' },
    env: 'CANONPORT_CLUSTER_PASSWORD_FILE',
    file: 'daemon',
    kind: path(),
    defaultText: 'none',
    applies: 'restart',
    help: "file holding the etcd user's password (a file, so it never shows in ps or the environment)",
  }),
  clusterMaxStaleness: setting({
    flag: { name: '--cluster-max-staleness', value: 'SECONDS' },
    env: 'CANONPORT_CLUSTER_MAX_STALENESS',
    file: 'daemon',
    kind: int(0, 31_536_000),
    default: 0,
    defaultText: '0 (keep serving the last view)',
    applies: 'restart',
    help: 'drop the cluster view after etcd has been unreachable this long; 0 keeps the last one',
    doc: 'seconds after which a view etcd can no longer confirm is dropped (answers fall back to a single host\'s); 0: the last view is served, marked stale, for as long as etcd is away',
  }),
  clusterMaxNodes: setting({
    flag: { name: '--cluster-max-nodes', value: 'N' },
    env: 'CANONPORT_CLUSTER_MAX_NODES',
    file: 'daemon',
    kind: int(1, 1_000_000),
    default: 10_000,
    applies: 'restart',
    help: 'nodes kept in the cluster view at most; more are refused and counted',
    doc: 'nodes kept in the cluster view at most; beyond it the worst-ranked are refused and counted (this host first, then nodes under a live lease, then the longest known: never key order) and admitted when room appears',
  }),
  clusterMaxEndpoints: setting({
    flag: { name: '--cluster-max-endpoints', value: 'N' },
    env: 'CANONPORT_CLUSTER_MAX_ENDPOINTS',
    file: 'daemon',
    kind: int(1, 10_000_000),
    default: 250_000,
    applies: 'restart',
    help: 'listeners kept in the cluster view at most; more are refused and counted',
    doc: 'instances (listeners) kept in the cluster view at most, over every node; beyond it the worst-ranked node\'s newest are refused and counted, and admitted when room appears',
  }),
  clusterMaxNodeInstances: setting({
    flag: { name: '--cluster-max-node-instances', value: 'N' },
    env: 'CANONPORT_CLUSTER_MAX_NODE_INSTANCES',
    file: 'daemon',
    kind: int(1, 1_000_000),
    default: 1_024,
    applies: 'restart',
    help: 'instances one node may have in the cluster view; its newest beyond it are refused and counted',
    doc: 'instances (listeners) one node may have in the cluster view (its v2 records and its v1 mirror each); beyond it that node\'s newest are refused and counted, so one node can crowd out only its own entries',
  }),
  clusterMaxNodeAddresses: setting({
    flag: { name: '--cluster-max-node-addresses', value: 'N' },
    env: 'CANONPORT_CLUSTER_MAX_NODE_ADDRESSES',
    file: 'daemon',
    kind: int(1, 16_000_000),
    default: 4_096,
    applies: 'restart',
    help: 'answer addresses one node\'s instances may add (each instance: its addresses times its services)',
    doc: 'what one node\'s instances may add to answers: each counts its addresses (its own, or its node\'s for a wildcard bind) times its services, as SRV, `Resolve`, xDS and `/sd/prometheus` list them; beyond it that node\'s newest are refused and counted',
  }),
  clusterMaxNodeBytes: setting({
    flag: { name: '--cluster-max-node-bytes', value: 'BYTES' },
    env: 'CANONPORT_CLUSTER_MAX_NODE_BYTES',
    file: 'daemon',
    kind: int(65_536, 1_073_741_824),
    default: 1_048_576,
    applies: 'restart',
    help: 'bytes of instance values one node may have in the cluster view',
    doc: 'bytes of instance values (as stored in etcd) one node may have in the cluster view; beyond it that node\'s newest are refused and counted. At least 64 KiB, the largest value a record may have',
  }),
  onlyListening: setting({
    flag: { name: '--only-listening' },
    env: 'CANONPORT_ONLY_LISTENING',
    file: 'daemon',
    kind: boolean(),
    default: false,
    applies: 'reload',
    help: 'cluster mode: a service no host reports is NXDOMAIN (else: the single-host answer)',
    doc: 'cluster mode: a service that no host reports listening does not exist (NXDOMAIN with the zone\'s SOA, gRPC NOT_FOUND); off, such a service gets the single-host answer, so nothing breaks while a fleet adopts cluster mode',
  }),
  observedTtl: setting({
    flag: { name: '--observed-ttl', value: 'SECONDS' },
    env: 'CANONPORT_OBSERVED_TTL',
    file: 'daemon',
    kind: int(0, 3600),
    default: 5,
    applies: 'reload',
    help: 'TTL of answers made from observed listeners',
    doc: 'TTL, in seconds, of answers made from what hosts observe (short: a listener that stops must leave caches quickly); also caps the zone\'s negative TTL (SOA TTL and MINIMUM), so a "does not exist" leaves caches as quickly',
  }),
  stateDir: optionalSetting({
    flag: { name: '--state-dir', value: 'DIR' },
    env: 'CANONPORT_STATE_DIR',
    file: 'daemon',
    kind: path(),
    defaultText: '$STATE_DIRECTORY, else /var/lib/canonport, else ~/.local/state/canonport (the first writable)',
    applies: 'restart',
    help: 'cluster mode: where the lease, the node identity and the view snapshot are kept across restarts',
    doc: 'cluster mode: the directory holding this node\'s lease id (a restart takes its lease back and keeps its records) and the last cluster view (served, marked stale, when the daemon starts while etcd is unreachable); systemd\'s `StateDirectory=canonport` sets `$STATE_DIRECTORY`. When none is writable the daemon runs without one and says so (`CP_STATE_DIR_UNAVAILABLE`): a restart then withdraws and re-publishes',
  }),
  readyInterval: setting({
    flag: { name: '--ready-interval', value: 'MS' },
    env: 'CANONPORT_READY_INTERVAL',
    file: 'daemon',
    kind: int(100, 60_000),
    default: 1_000,
    applies: 'reload',
    help: 'cluster mode: readiness probe period per listener, milliseconds (gRPC Watch streams are pushed, not polled)',
    doc: 'cluster mode: how often each claimed listener\'s readiness is asked, in milliseconds (one probe per listener per period however many clients ask, every due listener asked together in one round per period; while the period is at least the inventory scan\'s (1 s in cluster mode) the round runs on the scan\'s own tick, the last one within the period, so one wake-up does both, and a shorter period keeps a timer of its own with jitter on the round; a gRPC server\'s health `Watch` pushes changes and is not polled). 1000 keeps a verdict change in other hosts\' answers within 1.5 s; keep it below the probed servers\' keep-alive timeout (Node\'s http server closes an idle connection after 5 s), or every probe opens a connection and costs the next inventory scan a full read of `/proc/net/tcp`',
  }),
  preferLocal: setting({
    flag: { name: '--prefer-local', value: 'BOOL' },
    env: 'CANONPORT_PREFER_LOCAL',
    file: 'daemon',
    kind: boolean(),
    default: true,
    applies: 'reload',
    help: "cluster mode: answer with this host's ready instance first (a registry service's preferLocal overrides)",
    doc: 'cluster mode: a host that runs a ready instance answers with it first (first A/AAAA, a better SRV priority, the first `canon:` endpoint, the local locality in xDS); the other instances follow in an order that changes per answer. `--prefer-local false` spreads every instance alike; a registry service\'s `preferLocal:` overrides per service',
  }),
  clusterWriteLegacy: setting({
    flag: { name: '--cluster-write-legacy' },
    env: 'CANONPORT_CLUSTER_WRITE_LEGACY',
    file: 'daemon',
    kind: boolean(),
    default: true,
    applies: 'restart',
    help: 'cluster mode: also write the v1 key layout (ready instances only) for daemons not yet upgraded',
    doc: 'cluster mode: besides the v2 layout, write this node\'s *ready* instances in the v1 layout, so daemons of an older canonport keep seeing them during a rolling upgrade; turn off once every daemon runs this version (halves the writes)',
  }),
  nodeTakeover: setting({
    flag: { name: '--node-takeover' },
    env: 'CANONPORT_NODE_TAKEOVER',
    file: 'daemon',
    kind: boolean(),
    default: false,
    applies: 'restart',
    help: 'cluster mode: take the --node name even while another live daemon holds it',
    doc: 'cluster mode: start publishing as `--node` even when another live daemon (a lease that is not this host\'s previous one) holds that name. Off, the daemon refuses (`CP_CLUSTER_NODE_TAKEN`, logged on both sides) and waits for the other\'s lease to end; it never deletes another lease\'s keys either way',
  }),
  leaveOnTerminate: setting({
    flag: { name: '--leave-on-terminate' },
    env: 'CANONPORT_LEAVE_ON_TERMINATE',
    file: 'daemon',
    kind: boolean(),
    default: false,
    applies: 'reload',
    help: 'cluster mode: withdraw this host at once on SIGTERM (else its records stay for a restart within the lease TTL)',
    doc: 'cluster mode: on SIGTERM, revoke the lease so this host leaves every view at once (Consul\'s `leave_on_terminate`). Off (the default), a SIGTERM keeps the lease alive for its TTL so a restart takes it back and other hosts see no change; `canonport leave` withdraws at once either way',
  }),
  identity: setting({
    flag: { name: '--identity', value: 'WHAT' },
    env: 'CANONPORT_IDENTITY',
    file: 'daemon',
    kind: oneOf(['answer', 'hide']),
    default: 'answer',
    applies: 'reload',
    help: 'CH TXT version.bind, id.server, hostname.bind: answer with canonport\'s version and host name, or hide (REFUSED)',
    doc: 'identity queries (CH TXT `version.bind`, `version.server`, `hostname.bind`, `id.server`): `answer` with canonport\'s version and the host name, or `hide` them (REFUSED); never forwarded',
  }),
  ttl: setting({
    file: 'top',
    kind: int(0, 86_400),
    default: 60,
    applies: 'reload',
    help: 'TTL of canonical answers, seconds',
    doc: 'TTL of canonical answers, in seconds (top-level `ttl:` of the registry file)',
  }),
} as const satisfies Record<string, Setting>;

export type Settings = typeof SETTINGS;
export type SettingKey = keyof Settings;
/** The raw form of a setting (what the registry file holds). */
export type RawOf<K extends SettingKey> = Settings[K] extends Setting<infer R, unknown, FilePlace | null, boolean> ? R : never;
/** The value of a setting in Config. */
export type ValueOf<K extends SettingKey> = Settings[K] extends Setting<unknown, infer T, FilePlace | null, infer O> ? (O extends true ? T | null : T) : never;

/** Every setting's value: the settings part of Config. */
export type SettingValues = { -readonly [K in SettingKey]: ValueOf<K> };

/** Settings as one source gives them (flags, env): any key may be missing; values are text or typed. */
export type ConfigInput = { [K in SettingKey]?: SettingInput | undefined };

type KeysIn<P extends FilePlace> = { [K in SettingKey]: Settings[K]['file'] extends P | 'both' ? K : never }[SettingKey];
/** The registry file's `daemon:` section. */
export type DaemonFile = { [K in KeysIn<'daemon'>]?: RawOf<K> };
/** The settings the registry file holds at its top level. */
export type TopLevelFile = { [K in KeysIn<'top'>]?: RawOf<K> };
/** Every setting the registry file sets, with `both` places joined. */
export type FileSettings = { [K in SettingKey]?: RawOf<K> };

/** The settings in table order, each with its key. */
export function settingEntries(): [SettingKey, Setting][] {
  return Object.entries(SETTINGS) as [SettingKey, Setting][];
}

/** How the registry file names where a setting sits: `daemon.cacheSize`, `ttl`, `zones, daemon.zones`. */
export function fileKeys(key: SettingKey): string[] {
  const place = SETTINGS[key].file as FilePlace | null;
  if (place === null) return [];
  return place === 'daemon' ? [`daemon.${key}`] : place === 'top' ? [key] : [key, `daemon.${key}`];
}

/**
 * The zod schema of one setting in the registry file: the kind's own check,
 * so the file gets the same rule and wording as flags and env. A list's bad
 * element is reported at its own index (so at its own line).
 */
function fileSchema<Raw>(s: Setting<Raw>): z.ZodType<Raw> {
  return z.unknown().transform((v, ctx) => {
    const r = s.kind.check(v);
    if (r.ok) return r.raw;
    ctx.addIssue({ code: 'custom', message: r.reason, ...(r.index === undefined ? {} : { path: [r.index] }) });
    return z.NEVER;
  }) as unknown as z.ZodType<Raw>;
}

function shapeOf(place: 'daemon' | 'top'): Record<string, z.ZodOptional<z.ZodType>> {
  const shape: Record<string, z.ZodOptional<z.ZodType>> = {};
  for (const [key, s] of settingEntries()) if (s.file === place || s.file === 'both') shape[key] = fileSchema(s).optional();
  return shape;
}

/** The `daemon:` section's zod shape, one optional key per setting the section may hold. */
export function daemonShape(): { [K in KeysIn<'daemon'>]: z.ZodOptional<z.ZodType<RawOf<K>>> } {
  return shapeOf('daemon') as { [K in KeysIn<'daemon'>]: z.ZodOptional<z.ZodType<RawOf<K>>> };
}

/** The top-level settings' zod shape (`zones`, `ttl`), spread into the registry schema. */
export function topLevelShape(): { [K in KeysIn<'top'>]: z.ZodOptional<z.ZodType<RawOf<K>>> } {
  return shapeOf('top') as { [K in KeysIn<'top'>]: z.ZodOptional<z.ZodType<RawOf<K>>> };
}

/**
 * The settings a parsed registry file sets. A `both` list is the top-level
 * one followed by the `daemon:` one (repeats go when the kind drops them).
 */
export function fileSettings(data: { daemon?: Record<string, unknown> | undefined } & Record<string, unknown>): FileSettings {
  const out: Record<string, unknown> = {};
  for (const [key, s] of settingEntries()) {
    const top = s.file === 'top' || s.file === 'both' ? data[key] : undefined;
    const daemon = s.file === 'daemon' || s.file === 'both' ? data.daemon?.[key] : undefined;
    if (top !== undefined && daemon !== undefined) out[key] = [...(top as unknown[]), ...(daemon as unknown[])];
    else if (top !== undefined || daemon !== undefined) out[key] = top ?? daemon;
  }
  return out as FileSettings;
}

/** The default of a setting as a raw value, when it has a fixed one (ttl's is the registry's default TTL). */
export function fixedDefault<K extends SettingKey>(key: K): RawOf<K> {
  const d = SETTINGS[key].default;
  if (d === null || isDynamic(d)) throw new Error(`setting ${key} has no fixed default`);
  return d as RawOf<K>;
}
