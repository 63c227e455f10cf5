import { base32Port } from '../src/scheme/base32.js';

/**
 * The data every server in the bench serves: names, dnsperf query files, and
 * the unbound / dnsmasq / registry configs that make each reference give the
 * same answers as canonport. Pure: text in memory, the caller writes files.
 */

/** Zone canonport answers canonically. */
export const BENCH_ZONE = 'bench.test';
/** Zone served by unbound only: canonport forwards it (scenario "cached"). */
export const FWD_ZONE = 'fwd.test';
/** Zone of never-seen forwarded names (scenario "cold"). */
export const COLD_ZONE = 'cold.test';
/** Zone of the RSS fill: any A name, answered by the dgram reference. */
export const RSS_ZONE = 'rss.test';
/** TTL of every record, so caches keep what they are given for the whole run. */
export const BENCH_TTL = 300;
/** The name gRPC Resolve asks for; the registry gives its host an address. */
export const GRPC_NAME = `api.${BENCH_ZONE}`;

export const SRV_NAMES = 2_000;
export const COLD_NAMES = 20_000;
export const RSS_NAMES = 100_000;

/** One dnsperf query: `name TYPE`. */
export interface Query {
  name: string;
  type: 'A' | 'SRV';
}

/** An SRV answer as `priority weight port target.` (target absolute). */
export interface SrvRecord {
  name: string;
  priority: number;
  weight: number;
  port: number;
  target: string;
}

/** `svc0000` … : four digits so the names sort and all share the prefix `svc`. */
export function serviceLabelAt(i: number): string {
  return `svc${String(i).padStart(4, '0')}`;
}

/**
 * The canonical SRV answer for `_svc._tcp.<zone>`: `0 0 <base32 port> svc.<zone>.`,
 * exactly what canonport serves, so every reference can be given the same record.
 */
export function canonicalSrv(service: string, zone: string): SrvRecord {
  return { name: `_${service}._tcp.${zone}`, priority: 0, weight: 0, port: base32Port(service), target: `${service}.${zone}.` };
}

/** The 2,000 SRV records of a zone (bench.test for canonical answers, fwd.test for forwarded ones). */
export function srvRecords(zone: string, count = SRV_NAMES): SrvRecord[] {
  const out: SrvRecord[] = [];
  for (let i = 0; i < count; i++) out.push(canonicalSrv(serviceLabelAt(i), zone));
  return out;
}

/**
 * The cold-cache mix, in a fixed interleaved order: half A names that exist,
 * a quarter SRV names that exist, a quarter A names that do not (NXDOMAIN),
 * so a forwarder sees positive and negative answers of two types.
 */
export interface ColdSet {
  queries: Query[];
  a: { name: string; address: string }[];
  srv: SrvRecord[];
}

/** Names in the warm-up set of scenario "cold" (a separate `w` prefix: never among the measured names). */
export const COLD_WARM_NAMES = 4_000;

/** `prefix` keeps sets apart: the measured set has none, the warm-up set `w`. */
export function coldSet(count = COLD_NAMES, prefix = ''): ColdSet {
  const set: ColdSet = { queries: [], a: [], srv: [] };
  for (let i = 0; i < count; i++) {
    const n = `${prefix}${String(i).padStart(5, '0')}`;
    switch (i % 4) {
      case 0:
      case 1: {
        const name = `h${n}.${COLD_ZONE}`;
        set.a.push({ name, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` });
        set.queries.push({ name, type: 'A' });
        break;
      }
      case 2: {
        const rec = canonicalSrv(`s${n}`, COLD_ZONE);
        set.srv.push(rec);
        set.queries.push({ name: rec.name, type: 'SRV' });
        break;
      }
      default:
        set.queries.push({ name: `m${n}.${COLD_ZONE}`, type: 'A' });
    }
  }
  return set;
}

/** Distinct A names for the RSS fill: `n0000000.rss.test`. */
export function rssQueries(count = RSS_NAMES): Query[] {
  const out: Query[] = [];
  for (let i = 0; i < count; i++) out.push({ name: `n${String(i).padStart(7, '0')}.${RSS_ZONE}`, type: 'A' });
  return out;
}

/** A dnsperf data file: one `name TYPE` per line. */
export function queryFile(queries: Iterable<Query>): string {
  let out = '';
  for (const q of queries) out += `${q.name} ${q.type}\n`;
  return out;
}

export function srvQueries(records: SrvRecord[]): Query[] {
  return records.map((r) => ({ name: r.name, type: 'SRV' as const }));
}

function srvData(r: SrvRecord, ttl: number): string {
  return `${r.name}. ${ttl} IN SRV ${r.priority} ${r.weight} ${r.port} ${r.target}`;
}

export interface UnboundOptions {
  port: number;
  /** Working directory (unbound chdirs there; nothing is written with the settings below). */
  directory: string;
  /** Zones answered from local-data only (`static`: anything else in them is NXDOMAIN). */
  zones: { zone: string; srv?: SrvRecord[]; a?: { name: string; address: string }[] }[];
  ttl?: number;
}

/**
 * unbound.conf for one foreground, single-threaded, loopback-only instance
 * that answers the given zones from local-data (no recursion is ever needed).
 */
export function unboundConfig(opts: UnboundOptions): string {
  const ttl = opts.ttl ?? BENCH_TTL;
  const lines = [
    'server:',
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${opts.directory}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  num-threads: 1',
    `  interface: 127.0.0.1@${opts.port}`,
    `  port: ${opts.port}`,
    '  do-ip6: no',
    '  access-control: 127.0.0.0/8 allow',
    // No validator: there are no trust anchors and nothing here is signed.
    '  module-config: "iterator"',
    '  minimal-responses: yes',
    '  rrset-roundrobin: no',
  ];
  for (const z of opts.zones) {
    lines.push(`  local-zone: "${z.zone}." static`);
    for (const r of z.srv ?? []) lines.push(`  local-data: "${srvData(r, ttl)}"`);
    for (const a of z.a ?? []) lines.push(`  local-data: "${a.name}. ${ttl} IN A ${a.address}"`);
  }
  lines.push('remote-control:', '  control-enable: no', '');
  return lines.join('\n');
}

export interface DnsmasqOptions {
  port: number;
  pidFile: string;
  /** Authoritative-style local SRV records (the canonical reference). */
  srv?: SrvRecord[];
  /** Zones answered locally: names without a record get NXDOMAIN, never forwarded. */
  localZones?: string[];
  /** Forward everything else here (the forwarding reference), `127.0.0.1#PORT`. */
  upstream?: { host: string; port: number };
  cacheSize?: number;
  ttl?: number;
}

/**
 * dnsmasq config file (passed with --conf-file, so /etc/dnsmasq.conf is not
 * read): loopback only, no /etc/hosts, no resolv.conf, records from here.
 * Run it with --keep-in-foreground.
 */
export function dnsmasqConfig(opts: DnsmasqOptions): string {
  const ttl = opts.ttl ?? BENCH_TTL;
  const lines = [
    `port=${opts.port}`,
    'listen-address=127.0.0.1',
    'bind-interfaces',
    'no-resolv',
    'no-hosts',
    'no-poll',
    `pid-file=${opts.pidFile}`,
    `cache-size=${opts.cacheSize ?? 10_000}`,
    // dnsperf keeps up to 100 queries outstanding; the default of 150 would do, this leaves room.
    'dns-forward-max=1000',
    `local-ttl=${ttl}`,
  ];
  for (const z of opts.localZones ?? []) lines.push(`local=/${z}/`);
  if (opts.upstream) lines.push(`server=${opts.upstream.host}#${opts.upstream.port}`);
  for (const r of opts.srv ?? []) {
    lines.push(`srv-host=${r.name},${r.target.replace(/\.$/, '')},${r.port},${r.priority},${r.weight}`);
  }
  lines.push('');
  return lines.join('\n');
}

/**
 * The registry file canonport runs with: the bench zone, the same TTL as the
 * references, and an address for the gRPC Resolve name (without one the
 * resolver may answer NOT_FOUND, which would measure an error path).
 */
export function benchRegistry(): string {
  return [
    `ttl: ${BENCH_TTL}`,
    'zones:',
    `  - ${BENCH_ZONE}`,
    'hosts:',
    `  ${GRPC_NAME}:`,
    '    - 127.0.0.1',
    '',
  ].join('\n');
}
