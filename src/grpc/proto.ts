import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ownGrpc } from './grpc-module.js';

export const CANONPORT_PROTO = 'canonport/v1/canonport.proto';

/**
 * proto/ of the package this file belongs to: the nearest directory above
 * it holding proto/canonport/v1/canonport.proto. Searched, not fixed, so
 * the same code works from src/ (vitest), dist/ (the package) and the
 * bench's own build.
 */
export const PROTO_ROOT = findProtoRoot(dirname(fileURLToPath(import.meta.url)));

function findProtoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, CANONPORT_PROTO))) return candidate;
    if (dirname(dir) === dir) throw new Error(`proto/${CANONPORT_PROTO} not found above ${from}`);
  }
}

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

/** The `Canonport` service constructor on canonport's own grpc-js, for `server.addService` (clients build theirs on their module). */
export function canonportService(): grpc.ServiceClientConstructor {
  const root = ownGrpc().loadPackageDefinition(canonportPackageDefinition()) as unknown as {
    canonport: { v1: { Canonport: grpc.ServiceClientConstructor } };
  };
  return root.canonport.v1.Canonport;
}

/** The `Admin` service constructor on canonport's own grpc-js (drain, undrain, leave; loopback only). */
export function adminService(): grpc.ServiceClientConstructor {
  const root = ownGrpc().loadPackageDefinition(canonportPackageDefinition()) as unknown as {
    canonport: { v1: { Admin: grpc.ServiceClientConstructor } };
  };
  return root.canonport.v1.Admin;
}

export { DEFAULT_DAEMON_ADDRESS, DEFAULT_GRPC_PORT } from '../config/address.js';

/**
 * Trailing metadata key carrying the stable canonport error code (CP_BAD_NAME…)
 * beside the gRPC status, so clients can tell two INVALID_ARGUMENTs apart.
 */
export const ERROR_CODE_METADATA = 'canonport-code';

/** Fully-qualified name of the service, as health checks and reflection know it. */
export const CANONPORT_SERVICE_NAME = 'canonport.v1.Canonport';
