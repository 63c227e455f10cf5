/**
 * canonport's client entry (`canonport/client`): what an application that
 * only dials services needs, and nothing of the daemon. It loads no grpc-js
 * of its own: `canon:` is registered on the application's copy (any version
 * from 1.10 on), and the typed client loads canonport's own only when it is
 * made without a `grpc` module.
 */

export { registerCanonResolver, resolveWithoutDaemon, CANON_SCHEME, type CanonResolverOptions } from './grpc/canon-resolver.js';
export {
  createCanonportClient,
  DaemonError,
  type CanonportClient,
  type CanonportClientOptions,
  type ClientTlsOptions,
  type WatchStream,
  type ResolveResult,
  type ResolveErrorInfo,
  type DecodeResult,
  type InventoryResponse,
  type InventoryListener,
} from './grpc/canonport-client.js';
export { SUPPORTED_GRPC_JS_RANGE, type GrpcModule } from './grpc/grpc-module.js';
export type { Resolution } from './grpc/resolution.js';
export { CanonportError, ErrorCodes, type ErrorCode } from './errors.js';
