import etcd3 from 'etcd3';

// etcd3 is CommonJS whose named exports Node's ESM loader cannot see: taken from the default export, as publisher.ts does.
const { EtcdAuthenticationFailedError, EtcdInvalidAuthTokenError, EtcdLeaseInvalidError, EtcdPermissionDeniedError, EtcdUserNotFoundError, GRPCDeadlineExceededError } = etcd3;

/** A lease given up because etcd answered none of its keepalives for two TTLs (lease.ts): canonport's words already. */
export class LeaseSilentError extends Error {
  constructor(ttlSeconds: number) {
    super(`etcd answered none of the lease's keepalives for ${2 * ttlSeconds} s (two lease TTLs): etcd is down or out of reach`);
    this.name = 'LeaseSilentError';
  }
}

/**
 * What went wrong talking to etcd, in canonport's words. The etcd client's
 * own text is about its machinery, not the operator's problem: its circuit
 * breaker ("Execution prevented because the circuit breaker is open"),
 * grpc-js's status numbers and an empty "Resolution note:". Used where
 * cluster mode logs an etcd failure (the codes, CP_CLUSTER_UNREACHABLE and
 * CP_CLUSTER_PUBLISH_FAILED, stay the callers').
 *
 * `client` is the etcd client the call went through. Once its circuit
 * breaker opens, its errors say nothing new, so the last reason found for
 * that client stands (and a caller that logs only a changed reason stays
 * quiet); the view's loop and the publisher share one client, and either
 * may meet the breaker first.
 */
export function etcdReason(err: unknown, client?: object): string {
  const text = err instanceof Error ? err.message : String(err);
  // cockatiel's BrokenCircuitError, from the client's own copy of cockatiel: matched by name and text.
  if ((err instanceof Error && err.name === 'BrokenCircuitError') || /circuit breaker is open/i.test(text)) {
    return (client && lastReason.get(client)) ?? 'etcd failed several calls in a row; the client waits a few seconds before it calls again';
  }
  const reason = translate(err, text);
  if (client) lastReason.set(client, reason);
  return reason;
}

/** The last reason found per etcd client, for its breaker's errors (weak: a closed client goes). */
const lastReason = new WeakMap<object, string>();

function translate(err: unknown, text: string): string {
  if (err instanceof LeaseSilentError) return err.message;
  // The client's "Lease <id> is expired or revoked", on a keepalive's answer or a write under the lease.
  if (err instanceof EtcdLeaseInvalidError) {
    return "etcd no longer has this node's lease: it expired (etcd was out of reach longer than the lease TTL) or was revoked";
  }
  if (err instanceof EtcdAuthenticationFailedError || err instanceof EtcdUserNotFoundError) {
    return 'etcd refused the user name or password (--cluster-user, --cluster-password-file)';
  }
  if (err instanceof EtcdInvalidAuthTokenError) return 'etcd no longer accepts the sign-in token; the client signs in again';
  if (err instanceof EtcdPermissionDeniedError) return "etcd refused: this node's etcd user has no permission for the key (see its role)";
  if (err instanceof GRPCDeadlineExceededError || /DEADLINE_EXCEEDED|Deadline exceeded/i.test(text)) return 'etcd did not answer in time';
  const connect = /connect (E[A-Z]+) (\S+?)\.?(?:\s|$)/.exec(text);
  if (connect) {
    const [, code, at] = connect;
    const why: Record<string, string> = {
      ECONNREFUSED: 'refused the connection (is etcd running and listening there?)',
      ETIMEDOUT: 'did not accept the connection in time',
      EHOSTUNREACH: 'cannot be reached (no route to the host)',
      ENETUNREACH: 'cannot be reached (no route to the network)',
      ECONNRESET: 'closed the connection',
    };
    return `etcd at ${at} ${why[code!] ?? `cannot be reached (${code})`}`;
  }
  // grpc-js's word for a handshake that failed (etcd's certificate not trusted, a client certificate refused).
  if (/No connection established\. Last error: null/.test(text)) {
    return 'no connection to etcd could be made and the etcd client gave no reason; with TLS, check that --cluster-ca signed etcd\'s certificate and that etcd accepts --cluster-cert';
  }
  const unresolved = /Name resolution failed for target dns:(\S+)/.exec(text);
  if (unresolved) return `the etcd host name in ${unresolved[1]} does not resolve`;
  if (/SSL|TLS|certificate|handshake|wrong version number/i.test(text)) return `TLS with etcd failed: ${plain(text)} (--cluster-ca, --cluster-cert, --cluster-key)`;
  return `etcd: ${plain(text)}`;
}

/** A library message without its wrapping: `Error: ` prefixes, grpc-js's `14 UNAVAILABLE: ` and an empty trailing `Resolution note:`. */
function plain(text: string): string {
  return text
    .replace(/^(Error: )+/, '')
    .replace(/^\d+ [A-Z_]+: /, '')
    .replace(/\s*Resolution note:\s*$/, '')
    .trim();
}
