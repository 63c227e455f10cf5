import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import type { PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
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

/**
 * Adds reflection to `server`. @grpc/reflection indexes the package
 * definition's `fileDescriptorProtos`, so each protoc file is handed over
 * there; it re-encodes them through protobufjs's descriptor types, which
 * gives back protoc's bytes for these files (the test compares them).
 */
export function addReflection(server: Pick<grpc.Server, 'addService'>): void {
  files ??= fileDescriptorProtos(readFileSync(DESCRIPTOR_SET_FILE));
  const definition = Object.fromEntries(
    files.map((bytes, i) => [`protoc-file-${i}`, { format: 'Protocol Buffer 3 FileDescriptorProto', type: {}, fileDescriptorProtos: [bytes] }]),
  ) as unknown as PackageDefinition;
  new ReflectionService(definition).addToServer(server);
}
