import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { formatHostPort } from '../src/config/address.js';
import { DESCRIPTOR_SET_FILE, fileDescriptorProtos } from '../src/grpc/reflection.js';
import { startDaemon } from './helpers/daemon.js';
import { REPO } from './helpers/scratch-project.js';
import { requireTool } from './helpers/tools.js';

/**
 * What server reflection serves is what protoc produces: a real daemon, a
 * real reflection client over gRPC (v1 and v1alpha), and a descriptor set
 * built here by protoc with the command `npm run proto` runs. Compared
 * byte for byte: file names, proto3_optional, fully-qualified type names
 * and options all come with it.
 */

interface FileDescriptor {
  name: string;
  package: string;
  dependency: string[];
  messageType: MessageDescriptor[];
  enumType: { name: string }[];
  service: { name: string; method: { name: string; inputType: string; outputType: string }[] }[];
  options?: { goPackage?: string };
}
interface MessageDescriptor {
  name: string;
  field: { name: string; typeName?: string; proto3Optional?: boolean }[];
  nestedType: MessageDescriptor[];
  enumType: { name: string }[];
}

const { FileDescriptorProto } = descriptor as unknown as { FileDescriptorProto: { decode(b: Uint8Array): unknown; toObject(m: unknown, o: object): FileDescriptor } };
const decode = (bytes: Uint8Array): FileDescriptor =>
  FileDescriptorProto.toObject(FileDescriptorProto.decode(bytes), { arrays: true, defaults: false }) as FileDescriptor;

let dir: string;
/** protoc's own bytes for each file, by file name. */
let protoc: Map<string, Buffer>;
let daemon: Daemon;

beforeAll(async () => {
  requireTool('protoc', 'protobuf-compiler');
  dir = mkdtempSync(join(tmpdir(), 'canonport-reflection-'));
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const out = join(dir, 'descriptors.binpb');
  const command = pkg.scripts.proto!.replace('--descriptor_set_out=proto/descriptors.binpb', `--descriptor_set_out=${out}`);
  expect(command, 'the proto script writes proto/descriptors.binpb').not.toBe(pkg.scripts.proto);
  execFileSync('sh', ['-c', command], { cwd: REPO, stdio: 'pipe' });
  protoc = new Map(fileDescriptorProtos(readFileSync(out)).map((b) => [decode(b).name, b]));
  daemon = await startDaemon();
});

afterAll(async () => {
  await daemon?.close(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the committed descriptor set', () => {
  it('is what protoc makes of the .proto files now (else: npm run proto)', () => {
    const committed = new Map(fileDescriptorProtos(readFileSync(DESCRIPTOR_SET_FILE)).map((b) => [decode(b).name, b]));
    expect([...committed.keys()]).toEqual(['canonport/v1/canonport.proto', 'grpc/health/v1/health.proto']);
    for (const [name, bytes] of protoc) {
      // On a mismatch, show the decoded difference rather than two byte strings.
      expect(decode(committed.get(name)!), `${name}: proto/descriptors.binpb is stale, run \`npm run proto\``).toEqual(decode(bytes));
      expect(Buffer.compare(committed.get(name)!, bytes), `${name}: proto/descriptors.binpb is stale, run \`npm run proto\``).toBe(0);
    }
    expect(committed.size).toBe(protoc.size);
  });
});

for (const version of ['v1', 'v1alpha'] as const) {
  describe(`reflection ${version}, asked by a real client`, () => {
    const require = createRequire(import.meta.url);
    const proto = join(dirname(require.resolve('@grpc/reflection')), `../proto/grpc/reflection/${version}/reflection.proto`);
    const Reflection = (
      grpc.loadPackageDefinition(protoLoader.loadSync(proto, { keepCase: true, defaults: true, oneofs: true })) as unknown as {
        grpc: { reflection: Record<string, { ServerReflection: grpc.ServiceClientConstructor }> };
      }
    ).grpc.reflection[version]!.ServerReflection;

    let client: grpc.Client;
    beforeAll(() => {
      client = new Reflection(formatHostPort(daemon.addresses.grpc), grpc.credentials.createInsecure());
    });
    afterAll(() => client?.close());

    /** One request on the bidi stream, and its response. */
    function ask(req: Record<string, unknown>): Promise<Record<string, any>> {
      const stream = (client as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, Record<string, any>> }).ServerReflectionInfo();
      return new Promise((resolve, reject) => {
        stream.once('data', (m: Record<string, any>) => {
          resolve(m);
          stream.end();
        });
        stream.once('error', reject);
        stream.write(req);
      });
    }

    /** The file descriptors a response carries; fails with the server's error when it sent one. */
    async function files(req: Record<string, unknown>): Promise<Buffer[]> {
      const res = await ask(req);
      expect(res.error_response ?? null, JSON.stringify(req)).toBeNull();
      return res.file_descriptor_response.file_descriptor_proto as Buffer[];
    }

    /** protoc's bytes for a file and everything it imports, the file first. */
    function withImports(name: string): Buffer[] {
      const out: string[] = [];
      const visit = (n: string) => {
        if (out.includes(n)) return;
        out.push(n);
        for (const dep of decode(protoc.get(n)!).dependency) visit(dep);
      };
      visit(name);
      return out.map((n) => protoc.get(n)!);
    }

    it('lists the services protoc describes', async () => {
      const res = await ask({ list_services: '*' });
      const served = (res.list_services_response.service as { name: string }[]).map((s) => s.name).sort();
      const described = [...protoc.values()].flatMap((b) => {
        const f = decode(b);
        return f.service.map((s) => `${f.package}.${s.name}`);
      });
      expect(described.length).toBeGreaterThan(0);
      expect(served).toEqual(described.sort());
    });

    it("file_by_filename serves protoc's bytes under protoc's file names", async () => {
      for (const name of protoc.keys()) {
        expect(await files({ file_by_filename: name }), name).toEqual(withImports(name));
      }
      // The name the protobufjs conversion used to invent is not a file.
      const res = await ask({ file_by_filename: 'canonport_v1.proto' });
      expect(res.error_response?.error_code).toBe(grpc.status.NOT_FOUND);
    });

    it("file_containing_symbol serves the defining file for every service, method, message and enum", async () => {
      let symbols = 0;
      for (const [name, bytes] of protoc) {
        const f = decode(bytes);
        const found: string[] = [];
        const messages = (prefix: string, ms: MessageDescriptor[]) => {
          for (const m of ms) {
            found.push(`${prefix}.${m.name}`);
            for (const e of m.enumType) found.push(`${prefix}.${m.name}.${e.name}`);
            messages(`${prefix}.${m.name}`, m.nestedType);
          }
        };
        messages(f.package, f.messageType);
        for (const e of f.enumType) found.push(`${f.package}.${e.name}`);
        for (const s of f.service) {
          found.push(`${f.package}.${s.name}`);
          for (const m of s.method) found.push(`${f.package}.${s.name}.${m.name}`);
        }
        for (const symbol of found) expect(await files({ file_containing_symbol: symbol }), symbol).toEqual(withImports(name));
        symbols += found.length;
      }
      expect(symbols).toBeGreaterThan(10);
    });

    it('keeps what the protobufjs conversion lost: proto3_optional, absolute type names, go_package', async () => {
      const [served] = await files({ file_containing_symbol: 'canonport.v1.Resolution' });
      const f = decode(served!);
      expect(f.name).toBe('canonport/v1/canonport.proto');
      const resolution = f.messageType.find((m) => m.name === 'Resolution')!;
      expect(resolution.field.find((x) => x.name === 'version')?.proto3Optional).toBe(true);
      const resolve = f.service[0]!.method.find((m) => m.name === 'Resolve')!;
      expect([resolve.inputType, resolve.outputType]).toEqual(['.canonport.v1.ResolveRequest', '.canonport.v1.Resolution']);
      expect(f.options?.goPackage).toMatch(/;canonportv1$/);
    });
  });
}
