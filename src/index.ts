/**
 * canonport's public API: what a program importing `canonport` gets. The
 * CLI, the daemon's internals and the DNS pipeline stay behind it.
 */

// The port schemes: pure functions.
export {
  base32Port,
  prefixOf,
  serviceLabel,
  decodePort,
  decodePortRaw,
  versionedNumber,
  versionedPort,
  blockPort,
  DEFAULT_ROLES,
  BASE32_MIN_PORT,
  BASE32_MAX_PORT,
  type SchemeName,
  type RoleDef,
} from './scheme/index.js';

// The registry file.
export { parseRegistry, loadRegistryFile } from './registry/load.js';
export { Registry, type PortAssignment } from './registry/registry.js';
export { checkRegistry, type Finding } from './registry/check.js';
export { startOrder } from './registry/order.js';

// Talking to a daemon, and dialling services by name from grpc-js.
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

// Running a daemon in-process.
export { Daemon, type DaemonOptions } from './daemon/daemon.js';

// Errors: every one has a stable code.
export { CanonportError, ErrorCodes, type ErrorCode } from './errors.js';
