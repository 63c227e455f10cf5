import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { DEFAULT_GRPC_PORT } from '../../grpc/proto.js';
import {
  checkExpectations,
  collectFleet,
  DEFAULT_FLEET_CONCURRENCY,
  DEFAULT_FLEET_TIMEOUT_MS,
  formatFleet,
  isFleetHost,
  parseExpectation,
  parseHostsFile,
  type Expectation,
} from '../../fleet/fleet.js';
import { collect, EXIT_FINDINGS, EXIT_OK, intOption, printJson, usageError, type CliIO } from '../io.js';
import type { RegisterCommand } from '../io.js';
import { tlsFromFlags, withTlsOptions, type TlsFlags } from '../options.js';

interface FleetFlags extends TlsFlags {
  hostsFile?: string;
  timeout: string;
  concurrency: string;
  expect: string[];
  strict?: boolean;
  json?: boolean;
}

/** Above this many hosts, progress goes to stderr even when it is not a terminal. */
const PROGRESS_HOSTS = 20;

/**
 * `canonport fleet HOST…`: asks many daemons' Inventory at once and prints
 * service × version × hosts.
 *
 * Exit codes: 1 when an --expect is not met (another or unknown version, or
 * the service missing on a reachable host); with --expect or --strict, 1 too
 * when any host is unreachable (it cannot confirm anything); with --strict,
 * 1 when any service runs mixed versions. Without either, the command is a
 * view and exits 0 even with hosts down. 2 for usage errors.
 */
export const registerFleet: RegisterCommand = (program: Command, io: CliIO) => {
  withTlsOptions(program
    .command('fleet')
    .description('ask many daemons what runs where: service × version × hosts')
    .argument('[hosts...]', `daemons as HOST, HOST:PORT or [IPV6]:PORT (port ${DEFAULT_GRPC_PORT} when none)`)
    .option('--hosts-file <file>', 'more hosts, whitespace- or line-separated, # comments')
    .option('--timeout <ms>', 'deadline per host, connecting included', String(DEFAULT_FLEET_TIMEOUT_MS))
    .option('--concurrency <n>', 'hosts asked at once', String(DEFAULT_FLEET_CONCURRENCY))
    .option('--expect <svc=version>', 'exit 1 unless every reachable host runs svc at exactly this version (repeatable)', collect, [])
    .option('--strict', 'exit 1 also when a host is unreachable or a service runs mixed versions')
    .option('--json', 'print hosts, services and findings as JSON'))
    .action(async (args: string[], flags: FleetFlags) => {
      const timeoutMs = intOption(flags.timeout, '--timeout', 1, 600_000);
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
      if (hosts.length === 0) throw usageError('no hosts: give HOST[:PORT]… or --hosts-file FILE');
      const bad = hosts.filter((h) => !isFleetHost(h));
      if (bad.length > 0) throw usageError(`not a host or HOST:PORT: ${bad.map((h) => `"${h}"`).join(', ')}`);

      const progress = progressReporter(io, hosts.length);
      const report = await collectFleet(hosts, { timeoutMs, concurrency, onProgress: progress.update, tls: tlsFromFlags(flags) });
      progress.end();
      const findings = checkExpectations(report, expectations);

      if (flags.json) printJson(io, { hosts: report.hosts, services: report.services, findings });
      else io.out(formatFleet(report, findings));

      const unreachable = report.hosts.some((h) => !h.reachable);
      const mixed = report.services.some((s) => s.mixed);
      const failed =
        findings.some((f) => f.kind !== 'unreachable') ||
        ((expectations.length > 0 || flags.strict === true) && unreachable) ||
        (flags.strict === true && mixed);
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
