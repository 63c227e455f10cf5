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

// Talking to a daemon, and dialling services by name from grpc-js: the client entry
// (`canonport/client`), whole; with it the error catalogue, where every error has a stable code.
export * from './client.js';

// Running a daemon in-process.
export { Daemon, type DaemonOptions } from './daemon/daemon.js';

