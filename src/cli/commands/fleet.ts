import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { etcdAccess } from '../../cluster/access.js';
import { SETTINGS, type Setting } from '../../config/settings.js';
import { CanonportError, ErrorCodes } from '../../errors.js';
import { DEFAULT_GRPC_PORT } from '../../grpc/proto.js';
import { fleetDocument } from '../../fleet/document.js';
import {
  collectFleet,
  DEFAULT_FLEET_CONCURRENCY,
  DEFAULT_FLEET_TIMEOUT_MS,
  formatFleet,
  isExpectationFinding,
  isFleetHost,
  parseExpectation,
  parseHostsFile,
  type Expectation,
  type FleetReport,
} from '../../fleet/fleet.js';
import { collectFleetFromCluster, DEFAULT_FLEET_CLUSTER_TIMEOUT_MS, type FleetClusterOptions } from '../../fleet/from-cluster.js';
import { collect, EXIT_FINDINGS, EXIT_OK, intOption, printJson, usageError, type CliIO } from '../io.js';
import type { RegisterCommand } from '../io.js';
import { tlsFromFlags, tlsOptions, type TlsFlags } from '../options.js';

interface FleetFlags extends TlsFlags {
  hostsFile?: string;
  timeout?: string;
  concurrency: string;
  expect: string[];
  strict?: boolean;
  json?: boolean;
}

/** Above this many hosts, progress goes to stderr even when it is not a terminal. */
const PROGRESS_HOSTS = 20;

/**
 * The etcd settings `serve` takes that `fleet --cluster` needs too: the
 * same flags, environment variables and checks, from the settings table
 * (fleet has no registry file, so flag, else variable, else unset).
 */
const ETCD_SETTINGS = ['cluster', 'clusterPrefix', 'clusterCa', 'clusterCert', 'clusterKey', 'clusterUser', 'clusterPasswordFile'] as const;
type EtcdSetting = (typeof ETCD_SETTINGS)[number];

function etcdOption(key: EtcdSetting): Option {
  const s: Setting = SETTINGS[key];
  const help = key === 'cluster' ? 'read the whole fleet from the cluster view in etcd (every node serve --cluster publishes), no host list' : s.help;
  const opt = new Option(`${s.flag!.name} <${s.flag!.value}>`, s.optional ? help : `${help} (default: ${s.defaultText})`);
  return s.env ? opt.env(s.env) : opt;
}

/** One etcd setting as given by its flag or variable, checked by its kind; null when unset (an empty variable is unset, as for serve). */
function etcdSetting(cmd: Command, key: EtcdSetting): string | null {
  const s: Setting = SETTINGS[key];
  const attr = new Option(s.flag!.name).attributeName();
  const given = cmd.getOptionValue(attr) as string | undefined;
  const fromEnv = cmd.getOptionValueSource(attr) === 'env';
  if (given === undefined || (fromEnv && given.trim() === '')) return null;
  const r = s.kind.check(s.kind.fromInput(given));
  if (!r.ok) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${fromEnv ? s.env : s.flag!.name}: ${r.reason}`, { setting: key });
  return r.value as string;
}

/** How fleet reaches etcd, as serve would (cluster/access.ts). */
function clusterOptions(cmd: Command, endpoints: string, timeoutMs: number | undefined): FleetClusterOptions {
  const [clusterPrefix, clusterCa, clusterCert, clusterKey, clusterUser, clusterPasswordFile] = (
    ['clusterPrefix', 'clusterCa', 'clusterCert', 'clusterKey', 'clusterUser', 'clusterPasswordFile'] as const
  ).map((k) => etcdSetting(cmd, k));
  return { endpoints, ...etcdAccess({ clusterPrefix, clusterCa, clusterCert, clusterKey, clusterUser, clusterPasswordFile }), timeoutMs };
}

/**
 * `canonport fleet HOST…` asks many daemons' Inventory at once;
 * `canonport fleet --cluster etcd://…` reads every node from the cluster
 * view instead. Both list the same things for the same hosts
 * (fleet.ts's `fleetInventory`): name × protocol × version × hosts, the
 * ports no source names apart, then what the hosts disagree on (mixed
 * versions, registries, port names, learned names sharing a port).
 *
 * Exit codes: 1 when an --expect is not met (another or unknown version, or
 * the service missing on a reachable host); with --expect or --strict, 1 too
 * when any host is unreachable (it cannot confirm anything); with --strict,
 * 1 when any service runs mixed versions (an unknown one included), a
 * host's registry differs from the majority's, hosts name one port as
 * different services, or names learned at run time share a port. Without either, the command is a view and exits 0
 * even with hosts down. 1 when etcd cannot be read (CP_CLUSTER_UNREACHABLE).
 * 2 for usage errors and bad etcd settings.
 */
export const registerFleet: RegisterCommand = (program: Command, io: CliIO) => {
  const command = program
    .command('fleet')
    .description('ask many daemons (or the cluster view) what runs where: service × version × hosts')
    .argument('[hosts...]', `daemons as HOST, HOST:PORT or [IPV6]:PORT (port ${DEFAULT_GRPC_PORT} when none)`)
    .option('--hosts-file <file>', 'more hosts, whitespace- or line-separated, # comments')
    .option('--timeout <ms>', `deadline per host, connecting included (default ${DEFAULT_FLEET_TIMEOUT_MS}); with --cluster, for reading the view (default ${DEFAULT_FLEET_CLUSTER_TIMEOUT_MS})`)
    .option('--concurrency <n>', 'hosts asked at once', String(DEFAULT_FLEET_CONCURRENCY))
    .option('--expect <svc=version>', 'exit 1 unless every reachable host runs svc at exactly this version (repeatable)', collect, [])
    .option('--strict', 'exit 1 also when a host is unreachable, a service runs mixed versions, registries or port names disagree, or learned names share a port')
    .option('--json', 'print source, hosts, services and findings as JSON');
  for (const key of ETCD_SETTINGS) command.addOption(etcdOption(key));
  // For daemons with TLS: one CA and one client certificate for the whole fleet.
  for (const o of tlsOptions()) command.addOption(o);
  command.action(async (args: string[], flags: FleetFlags, cmd: Command) => {
    const timeoutMs = flags.timeout === undefined ? undefined : intOption(flags.timeout, '--timeout', 1, 600_000);
    const concurrency = intOption(flags.concurrency, '--concurrency', 1, 10_000);
    const expectations: Expectation[] = flags.expect.map((text) => {
      const e = parseExpectation(text);
      if (!e) throw usageError(`--expect "${text}" is not svc=version (e.g. --expect api=1.4.2)`);
      return e;
    });
    const hosts = [...args];
    if (flags.hostsFile !== undefined) {
      let text: string;
      try {
        text = await readFile(flags.hostsFile, 'utf8');
      } catch (err) {
        throw usageError(`cannot read hosts file ${flags.hostsFile}: ${(err as Error).message}`);
      }
      hosts.push(...parseHostsFile(text));
    }
    // Hosts given win over $CANONPORT_CLUSTER (set for serve on the same host); over the --cluster flag they are a usage error.
    if (hosts.length > 0 && cmd.getOptionValueSource('cluster') === 'cli') throw usageError('give hosts or --cluster, not both');
    const cluster = hosts.length === 0 ? etcdSetting(cmd, 'cluster') : null;
    if (hosts.length === 0 && cluster === null) throw usageError('no hosts: give HOST[:PORT]…, --hosts-file FILE or --cluster etcd://HOST:PORT');
    const bad = hosts.filter((h) => !isFleetHost(h));
    if (bad.length > 0) throw usageError(`not a host or HOST:PORT: ${bad.map((h) => `"${h}"`).join(', ')}`);

    let report: FleetReport;
    if (cluster !== null) {
      report = await collectFleetFromCluster(clusterOptions(cmd, cluster, timeoutMs));
    } else {
      const progress = progressReporter(io, hosts.length);
      report = await collectFleet(hosts, { timeoutMs, concurrency, onProgress: progress.update, tls: tlsFromFlags(flags) });
      progress.end();
    }
    // The same document a daemon's fleet page serves (fleet/document.ts).
    const doc = fleetDocument(report, expectations);
    const findings = doc.findings;

    if (flags.json) printJson(io, doc);
    else io.out(formatFleet(report, findings));
    const unreachable = report.hosts.some((h) => !h.reachable);
    const mixed = report.services.some((s) => s.mixed);
    const disagree = findings.some((f) => f.kind === 'registry' || f.kind === 'port-names' || f.kind === 'collision');
    const failed =
      findings.some(isExpectationFinding) ||
      ((expectations.length > 0 || flags.strict === true) && unreachable) ||
      (flags.strict === true && (mixed || disagree));
    io.exitCode = failed ? EXIT_FINDINGS : EXIT_OK;
  });
};

/**
 * "asked 37/200 hosts…" on stderr: redrawn in place on a terminal; on a
 * pipe, for fleets over 20 hosts only and about every tenth of the way.
 */
function progressReporter(io: CliIO, total: number): { update: (done: number, total: number) => void; end: () => void } {
  const tty = io.errIsTTY && io.errRaw !== undefined;
  if (!tty && total <= PROGRESS_HOSTS) return { update: () => undefined, end: () => undefined };
  const step = Math.max(1, Math.ceil(total / 10));
  let drawn = false;
  return {
    update: (done, n) => {
      const text = `asked ${done}/${n} hosts…`;
      if (tty) {
        io.errRaw!(`\r${text}`);
        drawn = true;
      } else if (done % step === 0 || done === n) io.err(text);
    },
    end: () => {
      if (drawn) io.errRaw!('\r\x1b[K');
    },
  };
}
