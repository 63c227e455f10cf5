/**
 * The error catalogue. Every error canonport raises on purpose has a stable
 * `code`; tests assert on codes, logs carry them, and the two mapping
 * functions at the bottom are the only places codes become DNS rcodes or
 * gRPC statuses.
 */

export const ErrorCodes = {
  /** A name that is not a valid DNS name (empty, too long, bad label). */
  BAD_NAME: 'CP_BAD_NAME',
  /** A name outside every served zone, or a form that cannot exist. */
  NOT_FOUND: 'CP_NOT_FOUND',
  /** A service name whose host has no known address (the port is known). */
  NO_ADDRESS: 'CP_NO_ADDRESS',
  /** A port outside what a scheme can produce. */
  BAD_PORT: 'CP_BAD_PORT',
  /** The registry file is malformed (YAML or schema). */
  REGISTRY_INVALID: 'CP_REGISTRY_INVALID',
  /** The registry file cannot be read. */
  REGISTRY_UNREADABLE: 'CP_REGISTRY_UNREADABLE',
  /** Flags, env or file give an invalid setting. */
  CONFIG_INVALID: 'CP_CONFIG_INVALID',
  /** The daemon would forward to itself. */
  FORWARD_LOOP: 'CP_FORWARD_LOOP',
  /** A listener could not bind. */
  LISTEN_FAILED: 'CP_LISTEN_FAILED',
  /** Every upstream failed for a query. */
  UPSTREAM_FAILED: 'CP_UPSTREAM_FAILED',
  /** An upstream did not answer in time. */
  UPSTREAM_TIMEOUT: 'CP_UPSTREAM_TIMEOUT',
  /** An upstream reply failed RFC 5452 matching (source, ID or question) and was dropped. */
  UPSTREAM_MISMATCH: 'CP_UPSTREAM_MISMATCH',
  /** A socket-level error talking to one upstream (the next one is tried). */
  UPSTREAM_ERROR: 'CP_UPSTREAM_ERROR',
  /** No upstream resolver is configured: names outside the zones get SERVFAIL. */
  NO_UPSTREAM: 'CP_NO_UPSTREAM',
  /** A DNS handler threw; the client got SERVFAIL. */
  HANDLER_FAILED: 'CP_HANDLER_FAILED',
  /** The DNS warm-up before ready could not run (no loopback to send its queries over): the daemon starts cold. */
  WARM_UP_FAILED: 'CP_WARM_UP_FAILED',
  /** One name of a batch (ResolveMany) was not resolved before the call's deadline; the others were answered. */
  DEADLINE: 'CP_DEADLINE',
  /** The daemon is shutting down: open streams end with UNAVAILABLE and this code; clients reconnect. */
  SHUTTING_DOWN: 'CP_SHUTTING_DOWN',
  /** The daemon cannot be reached (CLI, client). */
  DAEMON_UNREACHABLE: 'CP_DAEMON_UNREACHABLE',
  /** The registry file (or its directory) cannot be watched for changes; SIGHUP still reloads. */
  WATCH_FAILED: 'CP_WATCH_FAILED',
  /** A `--workers` DNS worker process exited; the primary starts another. */
  WORKER_EXITED: 'CP_WORKER_EXITED',
  /** A command-line usage error. */
  USAGE: 'CP_USAGE',
  /** A request that is malformed as a whole (gRPC: batch too large, bad field). */
  BAD_REQUEST: 'CP_BAD_REQUEST',
  /** The daemon answered a call with an error it gave no canonport code for. */
  DAEMON_FAILED: 'CP_DAEMON_FAILED',
  /** The registry's dependsOn graph has a cycle (`order`). */
  DEPENDENCY_CYCLE: 'CP_DEPENDENCY_CYCLE',
  /** A dependsOn entry names no registry service (`order`). */
  UNKNOWN_DEPENDENCY: 'CP_UNKNOWN_DEPENDENCY',

  // Settings (src/config/settings.ts).
  /** A reload changed a setting that applies only after a restart (listen addresses, workers…); the running value stays. */
  RESTART_NEEDED: 'CP_RESTART_NEEDED',

  // grpc-js interop (registerCanonResolver, createCanonportClient).
  /** The grpc module given (or canonport's own) is not a @grpc/grpc-js version canonport's resolver supports. */
  GRPC_UNSUPPORTED: 'CP_GRPC_UNSUPPORTED',
  /** registerCanonResolver() without `grpc` cannot tell which of several loaded @grpc/grpc-js copies the application's channels use: pass `{ grpc }`. */
  GRPC_COPY_MISMATCH: 'CP_GRPC_COPY_MISMATCH',

  // --- who may reach gRPC and HTTP: allow-lists and TLS (src/config/listen-policy.ts, src/config/tls.ts) ---
  /**
   * The access policy refused a request before any handler ran: the client's
   * address is outside the listener's allow-list (--grpc-allow, --http-allow,
   * --inventory-allow) or a client certificate was required
   * (--inventory-require-cert, --http-tls-client-ca). gRPC PERMISSION_DENIED, HTTP 403.
   */
  ACCESS_DENIED: 'CP_ACCESS_DENIED',
  /**
   * gRPC or HTTP would listen beyond loopback with neither an allow-list nor
   * required client certificates: `serve` refuses to start (and a reload to
   * apply) unless --insecure-listen says so on purpose.
   */
  INSECURE_LISTEN: 'CP_INSECURE_LISTEN',
  /**
   * A certificate, key or CA file cannot be read or is not valid (unparsable,
   * key does not match, expired). At start the daemon refuses to start; on a
   * change or SIGHUP the running certificate keeps serving.
   */
  TLS_INVALID: 'CP_TLS_INVALID',
  /**
   * A client's TLS handshake with the daemon failed: the two disagree on TLS
   * (plaintext against TLS, a client certificate the daemon requires or
   * rejects, a daemon certificate the client does not trust). The message
   * says what the daemon demands.
   */
  TLS_HANDSHAKE_FAILED: 'CP_TLS_HANDSHAKE_FAILED',

  // --- what a client of the daemon's sockets can hold (src/net/gate.ts, src/concurrency.ts Quota) ---
  /**
   * A connection was refused at accept because a bound was reached: the
   * listener's total, one source address's share, or the share all clients
   * outside the allow-list may hold together. Counted in
   * canonport_connections_refused_total; logged at most once a minute.
   */
  CONNECTION_LIMIT: 'CP_CONNECTION_LIMIT',
  /**
   * The process ran out of file descriptors (EMFILE, ENFILE): new
   * connections are refused (counted, reason fd_exhausted) and work that
   * needs a descriptor is skipped until some close; the daemon keeps serving
   * what it can and never exits for it. Logged at most once a minute.
   */
  FD_EXHAUSTED: 'CP_FD_EXHAUSTED',
  /**
   * A gRPC Watch stream was refused or ended because of a bound: Watch
   * streams per client or in total. RESOURCE_EXHAUSTED.
   */
  WATCH_LIMIT: 'CP_WATCH_LIMIT',

  // --- xDS control plane (src/xds) ---
  /** An xDS client rejected (NACKed) resources the daemon sent; its error_detail is logged beside. */
  XDS_NACK: 'CP_XDS_NACK',
  /** An xDS stream passed a limit (streams, subscriptions per stream); it ends with RESOURCE_EXHAUSTED. */
  XDS_LIMIT: 'CP_XDS_LIMIT',
  /** A discovery lookup for an xDS name failed or timed out; the name keeps its last answer. */
  XDS_LOOKUP_FAILED: 'CP_XDS_LOOKUP_FAILED',
  /**
   * A bug inside the xDS control plane: a stream that hit it ends with
   * INTERNAL (the client reconnects); an answer update that hit it leaves
   * the name's last answer in place.
   */
  XDS_INTERNAL: 'CP_XDS_INTERNAL',

  // --- the fleet page (src/ui) ---
  /**
   * A live fleet page was refused its stream: as many are open as the
   * daemon serves, in total or from that client address. HTTP 429 with
   * Retry-After; the page retries by itself.
   */
  UI_STREAM_LIMIT: 'CP_UI_STREAM_LIMIT',

  // --- cluster mode (src/cluster/) ---
  /** etcd cannot be reached (at start or later); cluster mode retries with backoff, answers keep coming from memory. */
  CLUSTER_UNREACHABLE: 'CP_CLUSTER_UNREACHABLE',
  /** A key or value under the cluster prefix does not fit the key layout (foreign writer, corruption): ignored and counted. */
  CLUSTER_VALUE_IGNORED: 'CP_CLUSTER_VALUE_IGNORED',
  /**
   * A cluster view cap refused an entry (or a better-ranked one displaced
   * it): nodes or instances in all, or one node's instances, answer
   * addresses or bytes. Counted; the entry waits for room (bounded).
   */
  CLUSTER_CAP_REACHED: 'CP_CLUSTER_CAP_REACHED',
  /**
   * A record under the cluster prefix named an address no host can have
   * (loopback of another node, unspecified, multicast, broadcast, reserved,
   * link-local, a metadata service): taken out of answers and counted; a
   * record left with no address is ignored.
   */
  CLUSTER_ADDRESS_REFUSED: 'CP_CLUSTER_ADDRESS_REFUSED',
  /** This node's etcd lease expired or was revoked behind its back: a new one is granted and everything re-published. */
  CLUSTER_LEASE_LOST: 'CP_CLUSTER_LEASE_LOST',
  /** Writing this node's keys to etcd failed (unreachable, permission denied); retried with backoff. */
  CLUSTER_PUBLISH_FAILED: 'CP_CLUSTER_PUBLISH_FAILED',
  /** The cluster view stayed stale past the maximum staleness and was dropped: answers are single-host until etcd is back. */
  CLUSTER_VIEW_DROPPED: 'CP_CLUSTER_VIEW_DROPPED',
  /** The etcd watch was cancelled (compaction past its revision, or an error): the view is listed again. */
  CLUSTER_WATCH_RESTARTED: 'CP_CLUSTER_WATCH_RESTARTED',
  /**
   * Another live daemon holds this `--node` name (a lease that is not this
   * host's previous one): this daemon refuses to publish until that lease
   * ends (or `--node-takeover`); logged on both sides, never deleting the
   * other's keys.
   */
  CLUSTER_NODE_TAKEN: 'CP_CLUSTER_NODE_TAKEN',
  /** No writable state directory, or a file in it cannot be read or written: restarts withdraw and re-publish, no snapshot. */
  STATE_DIR_UNAVAILABLE: 'CP_STATE_DIR_UNAVAILABLE',
  /** `canonport drain --wait` ran out of time before every live daemon acknowledged the drain; the drain stays in force. */
  DRAIN_TIMEOUT: 'CP_DRAIN_TIMEOUT',
  /** An admin method (drain, undrain, leave) was called from an address that is not loopback: refused (PERMISSION_DENIED). */
  ADMIN_REFUSED: 'CP_ADMIN_REFUSED',

  // Other network namespaces: containers and pods (issue 26, src/inventory/namespaces.ts).
  /**
   * The daemon observes only its own network namespace although `--namespaces all`
   * asks for every one: /proc hides other users' processes (hidepid), the daemon
   * runs in a PID namespace of its own (no hostPID), or other processes' /proc
   * entries cannot be read. Logged once; `/readyz` and `inventory` say so.
   */
  NAMESPACES_RESTRICTED: 'CP_NAMESPACES_RESTRICTED',
  /** More network namespaces than the inventory observes (MAX_NAMESPACES): the ones past it are not read. */
  NAMESPACES_CAP_REACHED: 'CP_NAMESPACES_CAP_REACHED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class CanonportError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;
  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CanonportError';
    this.code = code;
    this.details = details;
  }
}

export function isCanonportError(err: unknown, code?: ErrorCode): err is CanonportError {
  return err instanceof CanonportError && (code === undefined || err.code === code);
}

/** DNS rcodes (RFC 1035 §4.1.1, RFC 6895). */
export const Rcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

/** The one place an error becomes a DNS rcode. */
export function errorToRcode(err: unknown): number {
  if (!(err instanceof CanonportError)) return Rcode.SERVFAIL;
  switch (err.code) {
    case ErrorCodes.BAD_NAME:
      return Rcode.FORMERR;
    case ErrorCodes.NOT_FOUND:
      return Rcode.NXDOMAIN;
    default:
      return Rcode.SERVFAIL;
  }
}

/**
 * gRPC status codes (grpc.status), kept here as numbers so that code which
 * only reads statuses imports no grpc-js (the client side works on the
 * application's copy, whatever its version).
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

/** A status code's name (`UNAVAILABLE`), or the number when it is not one. */
export function grpcStatusName(code: number): string {
  return Object.entries(GrpcStatus).find(([, v]) => v === code)?.[0] ?? String(code);
}

/** The one place an error becomes a gRPC status code. */
export function errorToGrpcStatus(err: unknown): number {
  if (!(err instanceof CanonportError)) return GrpcStatus.INTERNAL;
  switch (err.code) {
    case ErrorCodes.BAD_NAME:
    case ErrorCodes.BAD_PORT:
    case ErrorCodes.BAD_REQUEST:
      return GrpcStatus.INVALID_ARGUMENT;
    case ErrorCodes.NOT_FOUND:
    case ErrorCodes.NO_ADDRESS:
      return GrpcStatus.NOT_FOUND;
    case ErrorCodes.UPSTREAM_FAILED:
    case ErrorCodes.UPSTREAM_TIMEOUT:
    case ErrorCodes.SHUTTING_DOWN:
    case ErrorCodes.DEADLINE:
      return GrpcStatus.UNAVAILABLE;
    case ErrorCodes.XDS_LIMIT:
    case ErrorCodes.WATCH_LIMIT:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case ErrorCodes.ACCESS_DENIED:
    case ErrorCodes.ADMIN_REFUSED:
      return GrpcStatus.PERMISSION_DENIED;
    case ErrorCodes.DRAIN_TIMEOUT:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case ErrorCodes.CLUSTER_UNREACHABLE:
      return GrpcStatus.UNAVAILABLE;
    case ErrorCodes.CLUSTER_NODE_TAKEN:
      return GrpcStatus.FAILED_PRECONDITION;
    default:
      return GrpcStatus.INTERNAL;
  }
}

/**
 * Whether an error means the process (EMFILE) or the system (ENFILE) is out
 * of file descriptors. Node reports it as `code: 'EMFILE'` from sockets and
 * files, but as a SystemError (`code: 'ERR_SYSTEM_ERROR'`, `errno: -24`)
 * from os.networkInterfaces(): both are recognised.
 */
export function isDescriptorExhaustion(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; errno?: unknown; info?: { errno?: unknown } };
  if (e.code === 'EMFILE' || e.code === 'ENFILE') return true;
  // Linux errno values (asm-generic): EMFILE 24, ENFILE 23; libuv reports them negated.
  const errno = typeof e.errno === 'number' ? e.errno : typeof e.info?.errno === 'number' ? e.info.errno : 0;
  return errno === -24 || errno === -23;
}
