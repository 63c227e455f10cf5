import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { defaultDaemonAddress, formatHostPort, parseHostPort } from '../../config/address.js';
import { isCanonportError } from '../../errors.js';
import { xdsBootstrap, type XdsBootstrapTls } from '../../xds/bootstrap.js';
import { printJson, usageError, type CliIO } from '../io.js';
import { tlsFromFlags, withTlsOptions, type TlsFlags } from '../options.js';

/**
 * `canonport xds-bootstrap [--server ADDR:PORT]`: prints the bootstrap JSON
 * a gRPC client reads from $GRPC_XDS_BOOTSTRAP to dial `xds:///NAME`
 * through this host's daemon. stdout is the JSON and nothing else, so
 * `canonport xds-bootstrap > /etc/canonport/xds-bootstrap.json` is the
 * whole setup. Exit 2 for an address that is not ADDR:PORT.
 *
 * With TLS settings (--tls-ca, --tls-cert, --tls-key, or their
 * CANONPORT_TLS_* variables, or --tls) the channel_creds are `tls` with
 * those files (gRFC A65), for a daemon with --grpc-tls-cert. The paths are
 * written as absolute paths and must be readable where the client runs.
 */
export function registerXdsBootstrap(program: Command, io: CliIO): void {
  withTlsOptions(
    program
      .command('xds-bootstrap')
      .description('print the xDS bootstrap JSON (GRPC_XDS_BOOTSTRAP) pointing gRPC clients at the daemon')
      .addOption(new Option('--server <addr:port>', "the daemon's gRPC address (default $CANONPORT_GRPC or 127.0.0.1:13655)"))
      .option('--node-id <id>', 'the node id clients report (default canonport~HOSTNAME)')
      .option('--json', 'accepted for symmetry: the output is always JSON'),
    // gRFC A65's tls channel_creds carry no server name: the daemon's certificate must name the server address.
    { serverName: false },
  ).action((opts: { server?: string; nodeId?: string } & TlsFlags) => {
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
    const wanted = tlsFromFlags(opts);
    if (typeof wanted === 'object' && (wanted.cert === undefined) !== (wanted.key === undefined)) {
      throw usageError('a client certificate needs its key: give both --tls-cert and --tls-key (CANONPORT_TLS_CERT, CANONPORT_TLS_KEY)');
    }
    const abs = (p: string | Buffer | undefined) => (typeof p === 'string' ? resolve(p) : undefined);
    const tls: XdsBootstrapTls | undefined = wanted === false ? undefined : wanted === true ? {} : { ca: abs(wanted.ca), cert: abs(wanted.cert), key: abs(wanted.key) };
    printJson(io, xdsBootstrap({ server, nodeId: opts.nodeId, tls }));
  });
}
