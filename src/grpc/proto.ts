import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** proto/ at the repo root, whether running from src/ (vitest) or dist/. */
export const PROTO_ROOT = fileURLToPath(new URL('../../proto', import.meta.url));
export const CANONPORT_PROTO = 'canonport/v1/canonport.proto';

/** Loader options shared by server, clients and reflection: keep field names as in the .proto. */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_ROOT],
};

let cached: protoLoader.PackageDefinition | undefined;

/** The canonport.v1 package definition (loaded once). */
export function canonportPackageDefinition(): protoLoader.PackageDefinition {
  cached ??= protoLoader.loadSync(CANONPORT_PROTO, LOADER_OPTIONS);
  return cached;
}

/** The `Canonport` service constructor, for clients and `server.addService`. */
export function canonportService(): grpc.ServiceClientConstructor {
  const root = grpc.loadPackageDefinition(canonportPackageDefinition()) as unknown as {
    canonport: { v1: { Canonport: grpc.ServiceClientConstructor } };
  };
  return root.canonport.v1.Canonport;
}

export { DEFAULT_DAEMON_ADDRESS, DEFAULT_GRPC_PORT } from '../config/address.js';

/**
 * Trailing metadata key carrying the stable canonport error code (CP_BAD_NAME…)
 * beside the gRPC status, so clients can tell two INVALID_ARGUMENTs apart.
 */
export const ERROR_CODE_METADATA = 'canonport-code';

/** Fully-qualified name of the service, as health checks and reflection know it. */
export const CANONPORT_SERVICE_NAME = 'canonport.v1.Canonport';
