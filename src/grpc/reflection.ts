import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import type { ReflectionService as ReflectionServiceClass } from '@grpc/reflection';
import protobuf from 'protobufjs';
import { PROTO_ROOT } from './proto.js';

/**
 * Server reflection (grpc.reflection.v1 and v1alpha) serving the
 * descriptors protoc produces for canonport/v1/canonport.proto and
 * grpc/health/v1/health.proto.
 *
 * Why a committed descriptor set rather than the loaded .proto: the
 * descriptors protobufjs builds (what @grpc/proto-loader hands to
 * @grpc/reflection) regroup files by package (`canonport_v1.proto`, so
 * file_by_filename of the real name fails), drop proto3_optional and leave
 * type names relative. Other languages' tools compare against protoc, so
 * the daemon serves protoc's own output: `npm run proto` writes
 * proto/descriptors.binpb, and test/reflection.test.ts fails when it
 * differs from what protoc makes of the .proto files now.
 */

/** protoc's FileDescriptorSet (--include_imports) of the services the daemon serves. */
export const DESCRIPTOR_SET_FILE = join(PROTO_ROOT, 'descriptors.binpb');

/**
 * Each FileDescriptorProto of a FileDescriptorSet (field 1, repeated), as
 * the bytes protoc wrote: nothing is decoded and encoded again.
 */
export function fileDescriptorProtos(set: Uint8Array): Buffer[] {
  const reader = protobuf.Reader.create(set);
  const files: Buffer[] = [];
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag === ((1 << 3) | 2)) files.push(Buffer.from(reader.bytes()));
    else reader.skipType(tag & 7);
  }
  return files;
}

let files: Buffer[] | undefined;

/** grpc.status.INTERNAL (this module imports grpc-js for its types only). */
const GRPC_STATUS_INTERNAL = 13;

/** The two versions of the reflection service @grpc/reflection serves, each one bidirectional method. */
const REFLECTION_SERVICES = ['grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'] as const;

type Loaded = Map<string, { method: grpc.MethodDefinition<unknown, unknown>; handler: grpc.handleBidiStreamingCall<unknown, unknown> }>;

/**
 * Adds reflection to `server`, loaded on its first call (issue 24: idle
 * memory). The service is registered at once under its two paths, with
 * serializers and a handler that load @grpc/reflection, protoc's
 * descriptors and the library's own reflection protos the first time a
 * client asks; until then a daemon holds none of them (0.3 MB of live heap:
 * docs/performance.md, "Idle RSS, measured again"). Hand-written
 * because the library builds its service definition from a .proto it parses
 * in addToServer: nothing smaller to load first.
 */
export function addReflection(server: Pick<grpc.Server, 'addService'>): void {
  let loaded: Loaded | undefined;
  const real = (path: string) => {
    loaded ??= loadReflection();
    const m = loaded.get(path);
    if (!m) throw new Error(`@grpc/reflection serves no ${path}`);
    return m;
  };
  for (const service of REFLECTION_SERVICES) {
    const path = `/${service}/ServerReflectionInfo`;
    const method: grpc.MethodDefinition<unknown, unknown> = {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: (v) => real(path).method.requestSerialize(v),
      requestDeserialize: (b) => real(path).method.requestDeserialize(b),
      responseSerialize: (v) => real(path).method.responseSerialize(v),
      responseDeserialize: (b) => real(path).method.responseDeserialize(b),
    };
    const handler = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      let h: grpc.handleBidiStreamingCall<unknown, unknown>;
      try {
        h = real(path).handler;
      } catch (err) {
        // What failed to load (a package or proto/descriptors.binpb missing) ends this call, never the daemon.
        call.emit('error', { code: GRPC_STATUS_INTERNAL, details: `reflection could not be loaded: ${(err as Error).message}` });
        return;
      }
      h(call);
    };
    server.addService({ ServerReflectionInfo: method }, { ServerReflectionInfo: handler });
  }
}

/**
 * @grpc/reflection over protoc's files: its methods and handlers by path.
 * @grpc/reflection indexes the package definition's `fileDescriptorProtos`,
 * so each protoc file is handed over there; it re-encodes them through
 * protobufjs's descriptor types, which gives back protoc's bytes for these
 * files (the test compares them).
 */
function loadReflection(): Loaded {
  // CommonJS, required where first needed (as log.ts does pino-pretty): an import would load it with the daemon.
  const { ReflectionService } = createRequire(import.meta.url)('@grpc/reflection') as { ReflectionService: typeof ReflectionServiceClass };
  files ??= fileDescriptorProtos(readFileSync(DESCRIPTOR_SET_FILE));
  const definition = Object.fromEntries(
    files.map((bytes, i) => [`protoc-file-${i}`, { format: 'Protocol Buffer 3 FileDescriptorProto', type: {}, fileDescriptorProtos: [bytes] }]),
  ) as unknown as PackageDefinition;
  const out: Loaded = new Map();
  new ReflectionService(definition).addToServer({
    addService(def: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) {
      for (const [name, method] of Object.entries(def)) {
        out.set(method.path, { method, handler: (impl[name] ?? impl[method.originalName ?? '']) as grpc.handleBidiStreamingCall<unknown, unknown> });
      }
    },
  } as unknown as grpc.Server);
  return out;
}
