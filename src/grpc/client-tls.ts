import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import { checkServerIdentity, tlsConnect } from '../config/tls.js';
import type * as grpc from '@grpc/grpc-js';
import { CanonportError, ErrorCodes } from '../errors.js';
import type { GrpcModule } from './grpc-module.js';

/**
 * TLS for gRPC, the clients' end (`resolve`, `inventory --daemon`, `fleet`,
 * the typed client, the `canon:` resolver): which CA to trust and which
 * certificate to show, from options or the environment, and, when a call
 * cannot connect, a look at the handshake that says what the daemon
 * demands. Types only from grpc-js: credentials are built on the module
 * the channel is made with (an application's, or canonport's own). The
 * daemon's end is tls.ts.
 */

/**
 * TLS settings of a client: each of `ca`, `cert`, `key` a file path or the
 * PEM bytes. `ca` absent: the system's roots. `serverName`: the name the
 * daemon's certificate must carry when it differs from the address dialled.
 */
export interface ClientTlsOptions {
  ca?: string | Buffer | undefined;
  cert?: string | Buffer | undefined;
  key?: string | Buffer | undefined;
  serverName?: string | undefined;
}

/** The environment variables clients read, and the flags the CLI offers for the same. */
export const CLIENT_TLS_ENV = {
  ca: 'CANONPORT_TLS_CA',
  cert: 'CANONPORT_TLS_CERT',
  key: 'CANONPORT_TLS_KEY',
  serverName: 'CANONPORT_TLS_SERVER_NAME',
  on: 'CANONPORT_TLS',
} as const;
export const CLIENT_TLS_FLAGS = { ca: '--tls-ca', cert: '--tls-cert', key: '--tls-key', serverName: '--tls-server-name', on: '--tls' } as const;

/**
 * TLS settings from the environment: CANONPORT_TLS_CA, CANONPORT_TLS_CERT,
 * CANONPORT_TLS_KEY, CANONPORT_TLS_SERVER_NAME; CANONPORT_TLS=1 alone means
 * TLS with the system's roots. Undefined when none is set (plaintext).
 */
export function clientTlsFromEnv(env: NodeJS.ProcessEnv = process.env): ClientTlsOptions | true | undefined {
  const get = (k: string) => (env[k]?.trim() ? env[k]!.trim() : undefined);
  const o: ClientTlsOptions = { ca: get(CLIENT_TLS_ENV.ca), cert: get(CLIENT_TLS_ENV.cert), key: get(CLIENT_TLS_ENV.key), serverName: get(CLIENT_TLS_ENV.serverName) };
  if (o.ca !== undefined || o.cert !== undefined || o.key !== undefined || o.serverName !== undefined) return o;
  return /^(1|true|yes|on)$/i.test(get(CLIENT_TLS_ENV.on) ?? '') ? true : undefined;
}

/** A client's TLS settings read and checked: PEM bytes, ready for grpc-js and for the handshake check. */
export interface ClientTls {
  ca: Buffer | null;
  cert: Buffer | null;
  key: Buffer | null;
  serverName: string | undefined;
}

/**
 * Reads the files of a client's TLS settings (null: plaintext). Throws
 * CP_TLS_INVALID naming the option and file when one cannot be read, or
 * when a certificate comes without its key.
 */
export function loadClientTls(opts: ClientTlsOptions | boolean | undefined): ClientTls | null {
  if (opts === undefined || opts === false) return null;
  if (opts === true) return { ca: null, cert: null, key: null, serverName: undefined };
  const read = (v: string | Buffer | undefined, what: keyof typeof CLIENT_TLS_FLAGS): Buffer | null => {
    if (v === undefined) return null;
    if (Buffer.isBuffer(v)) return v;
    try {
      return readFileSync(v);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new CanonportError(
        ErrorCodes.TLS_INVALID,
        `cannot read ${CLIENT_TLS_FLAGS[what]} (${CLIENT_TLS_ENV[what]}) ${v}: ${code === 'ENOENT' ? 'no such file' : code ?? (err as Error).message}`,
        { file: v },
      );
    }
  };
  const tls: ClientTls = { ca: read(opts.ca, 'ca'), cert: read(opts.cert, 'cert'), key: read(opts.key, 'key'), serverName: opts.serverName };
  if ((tls.cert === null) !== (tls.key === null)) {
    throw new CanonportError(
      ErrorCodes.TLS_INVALID,
      `a client certificate needs its key: give both ${CLIENT_TLS_FLAGS.cert} and ${CLIENT_TLS_FLAGS.key} (${CLIENT_TLS_ENV.cert}, ${CLIENT_TLS_ENV.key})`,
    );
  }
  return tls;
}

/** Channel credentials for the daemon, built on the grpc-js module the channel is made with. */
export function channelCredentials(grpcModule: GrpcModule, tls: ClientTls | null): grpc.ChannelCredentials {
  if (tls === null) return grpcModule.credentials.createInsecure() as grpc.ChannelCredentials;
  if (!grpcModule.credentials.createSsl) throw new CanonportError(ErrorCodes.GRPC_UNSUPPORTED, 'the grpc module given has no credentials.createSsl: it cannot speak TLS');
  return grpcModule.credentials.createSsl(tls.ca, tls.key, tls.cert) as grpc.ChannelCredentials;
}

/** Channel options a TLS client needs: the name to check the daemon's certificate against, when given. */
export function tlsChannelOptions(tls: ClientTls | null): grpc.ChannelOptions {
  if (!tls?.serverName) return {};
  return { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName };
}

/** `host:port` or `[v6]:port` → its parts; null when it is neither (a name grpc-js resolves some other way). */
function splitTarget(target: string): { host: string; port: number } | null {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(target) ?? /^([^:[\]]+):(\d+)$/.exec(target);
  return m ? { host: m[1]!, port: Number(m[2]) } : null;
}

/**
 * Why a connection to the daemon failed, when TLS is the reason: one TLS
 * handshake with the client's own settings, then a wait for the daemon's
 * first HTTP/2 frame (under TLS 1.3 a server refuses a client certificate
 * only after the client thinks the handshake is done). Returns a sentence
 * naming what the daemon demands and the option that provides it, or null
 * when the handshake is not the problem (or the daemon cannot be reached).
 */
export async function diagnoseHandshake(target: string, tls: ClientTls | null, timeoutMs = 2000): Promise<string | null> {
  const at = splitTarget(target);
  if (!at) return null;
  const base: ConnectionOptions = {
    host: at.host,
    port: at.port,
    ALPNProtocols: ['h2'],
    ...(isIP(tls?.serverName ?? at.host) === 0 ? { servername: tls?.serverName ?? at.host } : {}),
  };
  if (tls === null) {
    // A plaintext client: does the daemon speak TLS, and does it want a certificate?
    const r = await handshake({ ...base, rejectUnauthorized: false }, timeoutMs);
    if (r.kind !== 'tls-ok' && r.kind !== 'rejected-after') return null;
    const wantsCert = r.kind === 'rejected-after' && /certificate required/i.test(r.reason);
    return (
      `the daemon at ${target} speaks TLS (its --grpc-tls-cert is set) and this client dialled in plaintext: ` +
      `trust its CA with ${CLIENT_TLS_FLAGS.ca} FILE (${CLIENT_TLS_ENV.ca})` +
      (wantsCert ? `, and show a client certificate signed by its --grpc-tls-client-ca with ${CLIENT_TLS_FLAGS.cert} FILE ${CLIENT_TLS_FLAGS.key} FILE (${CLIENT_TLS_ENV.cert}, ${CLIENT_TLS_ENV.key})` : '')
    );
  }
  const r = await handshake(
    {
      ...base,
      ...(tls.ca ? { ca: tls.ca } : {}),
      ...(tls.cert && tls.key ? { cert: tls.cert, key: tls.key } : {}),
      ...(tls.serverName ? { checkServerIdentity: checkAs(tls.serverName) } : {}),
    },
    timeoutMs,
  );
  switch (r.kind) {
    case 'not-tls':
      return `the daemon at ${target} does not speak TLS (no --grpc-tls-cert there) and this client dialled with TLS: drop ${CLIENT_TLS_FLAGS.ca}/${CLIENT_TLS_FLAGS.cert} (unset CANONPORT_TLS_*)`;
    case 'untrusted':
      return `the daemon's certificate at ${target} is not trusted (${r.reason}): give the CA that signed it with ${CLIENT_TLS_FLAGS.ca} FILE (${CLIENT_TLS_ENV.ca})${r.reason.includes('altnames') || r.reason.includes('does not match') ? `, or the name it carries with ${CLIENT_TLS_FLAGS.serverName} (${CLIENT_TLS_ENV.serverName})` : ''}`;
    case 'rejected-after':
    case 'rejected':
      if (tls.cert === null || /certificate required/i.test(r.reason)) {
        return `the daemon at ${target} requires a client certificate (its --grpc-tls-client-ca is set): show one signed by that CA with ${CLIENT_TLS_FLAGS.cert} FILE ${CLIENT_TLS_FLAGS.key} FILE (${CLIENT_TLS_ENV.cert}, ${CLIENT_TLS_ENV.key})`;
      }
      return `the daemon at ${target} rejected this client certificate (${r.reason}): it must be signed by a CA in the daemon's --grpc-tls-client-ca`;
    default:
      return null;
  }
}

type Handshake =
  | { kind: 'unreachable' }
  | { kind: 'not-tls' }
  | { kind: 'untrusted'; reason: string }
  | { kind: 'rejected'; reason: string }
  | { kind: 'rejected-after'; reason: string }
  | { kind: 'tls-ok' };

/** Certificate errors a client raises itself (the daemon's certificate), as Node names them. */
const VERIFY_CODES = /^(SELF_SIGNED|DEPTH_ZERO|UNABLE_TO_|CERT_|ERR_TLS_CERT_ALTNAME|HOSTNAME_MISMATCH|INVALID_CA)/;

function handshake(options: ConnectionOptions, timeoutMs: number): Promise<Handshake> {
  return new Promise((resolve) => {
    let secured = false;
    let settled = false;
    const socket = tlsConnect(options);
    const done = (h: Handshake) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(h);
    };
    const timer = setTimeout(() => done(secured ? { kind: 'tls-ok' } : { kind: 'unreachable' }), timeoutMs);
    timer.unref();
    socket.once('secureConnect', () => {
      secured = true;
    });
    // The daemon's HTTP/2 SETTINGS: it accepted us.
    socket.once('data', () => done({ kind: 'tls-ok' }));
    socket.once('close', () => done(secured ? { kind: 'rejected-after', reason: 'the daemon closed the connection after the handshake' } : { kind: 'unreachable' }));
    socket.on('error', (err: NodeJS.ErrnoException) => {
      const reason = err.message.replace(/^[0-9A-F]+:error:[0-9A-F]+:SSL routines:[^:]*:/, '').replace(/:\.\.\/deps\/openssl.*$/s, '').trim();
      if (err.code === 'ECONNREFUSED' || err.code === 'ETIMEDOUT' || err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH') return done({ kind: 'unreachable' });
      if (/wrong version number|packet length too long|unknown protocol|http request/i.test(err.message)) return done({ kind: 'not-tls' });
      if (err.code && VERIFY_CODES.test(err.code)) return done({ kind: 'untrusted', reason: err.message });
      if (secured) return done({ kind: 'rejected-after', reason });
      if (/alert/i.test(err.message)) return done({ kind: 'rejected', reason });
      if (err.code === 'ECONNRESET' || /socket disconnected/i.test(err.message)) return done({ kind: 'not-tls' });
      done({ kind: 'rejected', reason });
    });
  });
}

/** Node's host name check, against the name the client was told to expect instead of the address dialled. */
function checkAs(name: string): NonNullable<ConnectionOptions['checkServerIdentity']> {
  return (_host, cert) => checkServerIdentity(name, cert);
}
