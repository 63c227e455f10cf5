import { Option, type Command } from 'commander';
import { hyphenLabel, normaliseName } from '../config/names.js';
import { isCanonportError, ErrorCodes } from '../errors.js';
import { CLIENT_TLS_ENV, CLIENT_TLS_FLAGS, type ClientTlsOptions } from '../grpc/client-tls.js';
import { loadRegistryFile } from '../registry/load.js';
import type { Registry } from '../registry/registry.js';
import { usageError } from './io.js';

/** Options and argument checks shared by the commands. */

/** `--registry FILE`, defaulting to $CANONPORT_REGISTRY like `serve`. */
export function registryOption(): Option {
  return new Option('--registry <file>', 'registry file (YAML)').env('CANONPORT_REGISTRY');
}

/** A registry is required (`order`, `compose`): usage error without one. */
export async function requireRegistry(file: string | undefined, command: string): Promise<Registry> {
  if (!file) throw usageError(`${command} needs a registry file: --registry FILE or CANONPORT_REGISTRY`);
  return loadRegistryFile(file);
}

/**
 * Validates a name from the command line; a bad one is a usage error (exit
 * 2) saying why: not a DNS name, or a label that starts with "-", which no
 * service or host name can (`port -- -api` answered 1369 for it).
 */
export function validName(raw: string): string {
  const shown = raw.length > 40 ? `${raw.slice(0, 40)}…` : raw;
  let name: string;
  try {
    name = normaliseName(raw);
  } catch (err) {
    if (isCanonportError(err, ErrorCodes.BAD_NAME)) throw usageError(`bad name "${shown}": ${err.message}`);
    throw err;
  }
  const hyphen = hyphenLabel(name);
  if (hyphen !== undefined) throw usageError(`bad name "${shown}": label "${hyphen}" starts with "-", which no service or host name can (it starts with a letter, a digit or "_")`);
  return name;
}

/** The TLS flags of every command that talks to a daemon (resolve, inventory --daemon, fleet, xds-bootstrap). */
export interface TlsFlags {
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
}

/**
 * `--tls-ca FILE`, `--tls-cert FILE`, `--tls-key FILE`, `--tls-server-name
 * NAME` (each also from its CANONPORT_TLS_* variable) and `--tls`, for a
 * daemon that serves TLS (--grpc-tls-cert) or asks for client certificates
 * (--grpc-tls-client-ca).
 */
export function tlsOptions(opts: { serverName?: boolean } = {}): Option[] {
  return [
    new Option(`${CLIENT_TLS_FLAGS.on}`, `dial the daemon over TLS, trusting the system's CAs (implied by ${CLIENT_TLS_FLAGS.ca} and ${CLIENT_TLS_FLAGS.cert}; env ${CLIENT_TLS_ENV.on}=1)`),
    new Option(`${CLIENT_TLS_FLAGS.ca} <file>`, "CA certificate(s) that signed the daemon's certificate (PEM)").env(CLIENT_TLS_ENV.ca),
    new Option(`${CLIENT_TLS_FLAGS.cert} <file>`, 'client certificate (PEM), for a daemon with --grpc-tls-client-ca').env(CLIENT_TLS_ENV.cert),
    new Option(`${CLIENT_TLS_FLAGS.key} <file>`, `the private key of ${CLIENT_TLS_FLAGS.cert} (PEM)`).env(CLIENT_TLS_ENV.key),
    ...(opts.serverName === false
      ? []
      : [new Option(`${CLIENT_TLS_FLAGS.serverName} <name>`, "the name the daemon's certificate carries, when it is not the address dialled").env(CLIENT_TLS_ENV.serverName)]),
  ];
}

/** What the TLS flags ask for: settings, `true` (TLS, system CAs) or `false` (plaintext). */
export function tlsFromFlags(f: TlsFlags): ClientTlsOptions | boolean {
  let tls: ClientTlsOptions | boolean;
  if (f.tlsCa !== undefined || f.tlsCert !== undefined || f.tlsKey !== undefined || f.tlsServerName !== undefined) {
    tls = { ca: f.tlsCa, cert: f.tlsCert, key: f.tlsKey, serverName: f.tlsServerName };
  } else tls = f.tls === true || /^(1|true|yes|on)$/i.test(process.env[CLIENT_TLS_ENV.on]?.trim() ?? '');
  if (tls !== false) quietIpServerName();
  return tls;
}

let quieted = false;

/**
 * grpc-js sends the dialled address as the TLS server name even when it is
 * an IP (127.0.0.1:13655, the default daemon), and Node then prints
 * DEP0123 on stderr once per process. The address is still checked against
 * the certificate's IP names; the warning only says SNI will ignore it. A
 * command's stderr is for its own messages, so the CLI drops that one
 * warning (and only it); a program using the client keeps Node's default.
 */
function quietIpServerName(): void {
  if (quieted) return;
  quieted = true;
  const emit = process.emitWarning.bind(process) as (...args: unknown[]) => void;
  process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
    const code = typeof rest[0] === 'object' && rest[0] !== null ? (rest[0] as { code?: string }).code : rest[1];
    if (code === 'DEP0123') return;
    emit(warning, ...rest);
  }) as typeof process.emitWarning;
}

/** Adds the TLS flags to a command, for chaining. */
export function withTlsOptions(cmd: Command, opts: { serverName?: boolean } = {}): Command {
  for (const o of tlsOptions(opts)) cmd.addOption(o);
  return cmd;
}
