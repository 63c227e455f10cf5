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
  /** A DNS handler threw; the client got SERVFAIL. */
  HANDLER_FAILED: 'CP_HANDLER_FAILED',
  /** The daemon cannot be reached (CLI, client). */
  DAEMON_UNREACHABLE: 'CP_DAEMON_UNREACHABLE',
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

/** gRPC status codes used by canonport (subset of grpc.status; kept numeric to avoid importing grpc here). */
export const GrpcStatus = {
  OK: 0,
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

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
      return GrpcStatus.UNAVAILABLE;
    case ErrorCodes.XDS_LIMIT:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    default:
      return GrpcStatus.INTERNAL;
  }
}
