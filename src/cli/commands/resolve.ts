import { Option, type Command } from 'commander';
import { ErrorCodes, GrpcStatus, isCanonportError } from '../../errors.js';
import { createCanonportClient, type ResolveResult, type Resolution } from '../../grpc/canonport-client.js';
import { DEFAULT_DAEMON_ADDRESS } from '../../grpc/proto.js';
import { MAX_BATCH } from '../../grpc/service.js';
import { EXIT_FINDINGS, EXIT_PORT_ONLY, EXIT_USAGE, intOption, printJson, type CliIO } from '../io.js';
import { tlsFromFlags, validName, withTlsOptions, type TlsFlags } from '../options.js';


/**
 * `canonport resolve NAME…`: asks the daemon (gRPC ResolveMany) for each
 * name's port, scheme and addresses, one line per name in order.
 *
 * Exit 0 when every name resolved to addresses; 3 when every name has its
 * port but some have no address (CP_NO_ADDRESS: printed with "(no address)",
 * as `dig SRV` gives it); 1 when some name has no answer (NOT_FOUND, the
 * upstreams failed), the daemon cannot be reached, refuses the call
 * (CP_ACCESS_DENIED) or wants other TLS settings (CP_TLS_HANDSHAKE_FAILED,
 * saying which); 2 for a malformed name, found here before the daemon is
 * asked, or by the daemon. The worst wins (2, then 1, then 3); --json
 * prints the same results and exits the same way.
 */
export function registerResolve(program: Command, io: CliIO): void {
  withTlsOptions(program
    .command('resolve')
    .description("ask the daemon for each NAME's port, scheme and addresses")
    .argument('<name...>', 'service names, e.g. api.cluster-1.example.com or _api._tcp.cluster-1.example.com')
    .addOption(new Option('--daemon <addr:port>', `the daemon's gRPC address (default ${DEFAULT_DAEMON_ADDRESS})`).env('CANONPORT_GRPC'))
    .option('--timeout <ms>', 'deadline of the call (default 5000)')
    .option('--json', 'print a JSON array of {name, resolution} or {name, error}')
    .addHelpText('after', '\nExit codes: 0 every name resolved; 3 every name has its port, some no address (CP_NO_ADDRESS); 1 a name has no answer, or the daemon failed; 2 a malformed name.'))
    .action(async (names: string[], opts: { daemon?: string; timeout?: string; json?: boolean } & TlsFlags) => {
      names.forEach(validName);
      const timeoutMs = opts.timeout === undefined ? undefined : intOption(opts.timeout, '--timeout', 1, 600_000);

      const client = createCanonportClient(opts.daemon || DEFAULT_DAEMON_ADDRESS, { timeoutMs, tls: tlsFromFlags(opts) });
      let results: ResolveResult[] = [];
      try {
        for (let i = 0; i < names.length; i += MAX_BATCH) results.push(...(await client.resolveMany(names.slice(i, i + MAX_BATCH))));
      } catch (err) {
        if (isCanonportError(err, ErrorCodes.DAEMON_UNREACHABLE)) {
          io.err(`canonport: ${err.message} (is \`canonport serve\` running? --daemon ADDR:PORT names another) [${err.code}]`);
          io.exitCode = EXIT_FINDINGS;
          return;
        }
        throw err;
      } finally {
        client.close();
      }

      // A name whose port is known but not its address (no registry host, /etc/hosts entry or upstream
      // record) is still an answer, as `dig SRV` gives it: printed, with why the address is missing,
      // and exit 3, its own code. When the upstreams failed the line says so too, but that is not an
      // answer: exit 1.
      const portOnly = (r: ResolveResult) => r.error?.code === ErrorCodes.NO_ADDRESS && r.error.resolution !== undefined;
      const missing = (r: ResolveResult) => (r.error?.code === ErrorCodes.NO_ADDRESS ? 'no address' : 'no address: the upstreams failed');
      if (opts.json) printJson(io, results);
      else {
        const lines = results.flatMap((r) => (r.resolution ? [line(r.resolution)] : r.error?.resolution ? [line(r.error.resolution, missing(r))] : []));
        if (lines.length > 0) io.out(lines.join('\n'));
      }
      for (const r of results) if (r.error) io.err(`canonport: ${r.name}: ${r.error.message} [${r.error.code}]`);
      if (results.some((r) => r.error?.status === GrpcStatus.INVALID_ARGUMENT)) io.exitCode = EXIT_USAGE;
      else if (results.some((r) => r.error && !portOnly(r))) io.exitCode = EXIT_FINDINGS;
      else if (results.some(portOnly)) io.exitCode = EXIT_PORT_ONLY;
    });
}

/** `api.cluster-1.example.com  port 12082  base32  10.0.0.5,fd00::5`, or `… base32  (no address)` */
function line(r: Resolution, missing?: string): string {
  const scheme = r.version !== undefined ? `${r.scheme} v${r.version}` : r.scheme;
  const collides = r.collidesWith.length > 0 ? `  (same port as ${r.collidesWith.join(', ')})` : '';
  const where = missing !== undefined ? `(${missing})` : hostsOf(r);
  return `${r.name}  port ${r.port}  ${scheme}  ${where}${collides}`;
}

/** Addresses, grouped by host in cluster mode: `web-1=10.0.0.5 web-2=10.0.0.6`. */
function hostsOf(r: Resolution): string {
  if (!r.endpoints.some((e) => e.node !== '')) return r.addresses.join(',');
  const byNode = new Map<string, string[]>();
  for (const e of r.endpoints) byNode.set(e.node, [...(byNode.get(e.node) ?? []), e.address]);
  return [...byNode].map(([node, a]) => `${node}=${a.join(',')}`).join(' ');
}
