import { Option, type Command } from 'commander';
import { defaultDaemonAddress, formatHostPort, parseHostPort } from '../../config/address.js';
import { isCanonportError } from '../../errors.js';
import { xdsBootstrap } from '../../xds/bootstrap.js';
import { printJson, usageError, type CliIO } from '../io.js';

/**
 * `canonport xds-bootstrap [--server ADDR:PORT]`: prints the bootstrap JSON
 * a gRPC client reads from $GRPC_XDS_BOOTSTRAP to dial `xds:///NAME`
 * through this host's daemon. stdout is the JSON and nothing else, so
 * `canonport xds-bootstrap > /etc/canonport/xds-bootstrap.json` is the
 * whole setup. Exit 2 for an address that is not ADDR:PORT.
 */
export function registerXdsBootstrap(program: Command, io: CliIO): void {
  program
    .command('xds-bootstrap')
    .description('print the xDS bootstrap JSON (GRPC_XDS_BOOTSTRAP) pointing gRPC clients at the daemon')
    .addOption(new Option('--server <addr:port>', "the daemon's gRPC address (default $CANONPORT_GRPC or 127.0.0.1:13655)"))
    .option('--node-id <id>', 'the node id clients report (default canonport~HOSTNAME)')
    .option('--json', 'accepted for symmetry: the output is always JSON')
    .action((opts: { server?: string; nodeId?: string }) => {
      let server: string;
      try {
        server = formatHostPort(parseHostPort(opts.server ?? defaultDaemonAddress(), '--server'));
      } catch (err) {
        if (isCanonportError(err)) throw usageError(err.message);
        throw err;
      }
      if (opts.nodeId !== undefined && !/^[\x21-\x7e]{1,200}$/.test(opts.nodeId)) {
        throw usageError(`--node-id "${opts.nodeId.slice(0, 40)}" must be 1–200 printable characters without spaces`);
      }
      printJson(io, xdsBootstrap({ server, nodeId: opts.nodeId }));
    });
}
