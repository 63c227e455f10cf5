import * as grpc from '@grpc/grpc-js';
import type { SecureServerOptions } from 'node:http2';
import type { SecureContextOptions } from 'node:tls';
import type { TlsMaterial, TlsSource } from '../config/tls.js';

/**
 * TLS for gRPC, the daemon's end: ServerCredentials whose secure context
 * follows a TlsSource, through grpc-js's own watcher hook
 * (ServerCredentials keeps a set of watchers and each bound http2 server
 * calls setSecureContext on update): a rotated certificate is used by new
 * connections, open ones and their streams keep theirs. The clients' end
 * is client-tls.ts.
 */

class RotatingServerCredentials extends grpc.ServerCredentials {
  constructor(constructorOptions: SecureServerOptions, contextOptions: SecureContextOptions) {
    super(constructorOptions, contextOptions);
  }

  update(contextOptions: SecureContextOptions): void {
    this.updateSecureContextOptions(contextOptions);
  }

  _equals(other: grpc.ServerCredentials): boolean {
    return other === this;
  }
}

function contextOptionsOf(m: TlsMaterial): SecureContextOptions {
  return { cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) };
}

/**
 * Server credentials serving `source`'s certificate, re-read as it changes.
 * With a client CA, clients are asked for a certificate; `require` rejects
 * a client without a valid one at the handshake, `optional` lets it in
 * (without an authenticated peer: --inventory-require-cert then decides).
 */
export function serverCredentials(source: TlsSource, clientAuth: 'require' | 'optional'): { credentials: grpc.ServerCredentials; close(): void } {
  const initial = source.current();
  const requestCert = initial.ca !== null;
  const credentials = new RotatingServerCredentials({ requestCert, rejectUnauthorized: requestCert && clientAuth === 'require' }, contextOptionsOf(initial));
  const unsubscribe = source.onChange((m) => credentials.update(contextOptionsOf(m)));
  return { credentials, close: unsubscribe };
}
