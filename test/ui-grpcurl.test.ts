import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { base32Port } from '../src/scheme/index.js';
import { commandsFor, type PageInfo } from '../src/ui/client/model.js';
import { makeCa, type TestCa } from './helpers/certs.js';
import { startDaemon, tempDir } from './helpers/daemon.js';

/**
 * The service page's `grpcurl` line, run as it says. grpcurl is not
 * installable here, so the test does what grpcurl does with that line and
 * nothing more: reads its flags (-plaintext, or -cacert FILE: TLS checked
 * against that CA), its JSON body (-d), address and method; with no
 * -proto or -protoset given, asks the daemon's server reflection for the
 * file that defines the service (grpc-js, reflection v1, as grpcurl asks
 * first), builds the request from the JSON, calls the method and decodes
 * the answer. The line comes from the page's own function (model.ts
 * commandsFor) with what a real daemon embeds in its page.
 */

const ZONE = 'c.test';
const API = base32Port('api');

interface GrpcurlCall {
  plaintext: boolean;
  cacert: string | undefined;
  data: string;
  address: string;
  service: string;
  method: string;
}

/** A command line split as sh splits it: words, and '…' quoting (all the page's lines use). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|(\S+)/g;
  for (let m; (m = re.exec(line)); ) words.push(m[1] ?? m[2]!);
  return words;
}

/** grpcurl's reading of its argv, for the flags the page uses; any other flag fails the test. */
function parseGrpcurl(line: string): GrpcurlCall {
  const [cmd, ...args] = shellWords(line);
  expect(cmd).toBe('grpcurl');
  let plaintext = false;
  let cacert: string | undefined;
  let data = '';
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-plaintext') plaintext = true;
    else if (a === '-cacert') cacert = args[++i];
    else if (a === '-d') data = args[++i]!;
    else if (a.startsWith('-')) throw new Error(`grpcurl flag ${a} is not one this test knows`);
    else rest.push(a);
  }
  expect(rest, 'grpcurl [flags] address symbol').toHaveLength(2);
  const [address, symbol] = rest as [string, string];
  // grpcurl takes service/method or service.method.
  const at = symbol.includes('/') ? symbol.lastIndexOf('/') : symbol.lastIndexOf('.');
  return { plaintext, cacert, data, address, service: symbol.slice(0, at), method: symbol.slice(at + 1) };
}

const { FileDescriptorProto } = descriptor as unknown as { FileDescriptorProto: { decode(b: Uint8Array): protobuf.Message } };
const Root = protobuf.Root as unknown as { fromDescriptor(set: { file: protobuf.Message[] }): protobuf.Root };

const require = createRequire(import.meta.url);
const Reflection = (
  grpc.loadPackageDefinition(
    protoLoader.loadSync(join(dirname(require.resolve('@grpc/reflection')), '../proto/grpc/reflection/v1/reflection.proto'), { keepCase: true, defaults: true, oneofs: true }),
  ) as unknown as { grpc: { reflection: { v1: { ServerReflection: grpc.ServiceClientConstructor } } } }
).grpc.reflection.v1.ServerReflection;

/** What grpcurl prints for the call: the answer as JSON (its field names in lowerCamelCase, as protojson writes them). */
async function runGrpcurl(line: string, cwd: string): Promise<Record<string, unknown>> {
  const call = parseGrpcurl(line);
  expect(call.plaintext !== (call.cacert !== undefined), 'either -plaintext or -cacert').toBe(true);
  const creds = call.plaintext ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(readFileSync(join(cwd, call.cacert!)));
  // The service's file, by reflection.
  const reflection = new Reflection(call.address, creds);
  const files = await new Promise<Buffer[]>((resolve, reject) => {
    const stream = (reflection as unknown as { ServerReflectionInfo(): grpc.ClientDuplexStream<unknown, Record<string, any>> }).ServerReflectionInfo();
    stream.once('data', (m: Record<string, any>) => {
      stream.end();
      if (m.error_response) reject(new Error(`reflection: ${m.error_response.error_message}`));
      else resolve(m.file_descriptor_response.file_descriptor_proto as Buffer[]);
    });
    stream.once('error', reject);
    stream.write({ file_containing_symbol: call.service });
  });
  reflection.close();
  const root = Root.fromDescriptor({ file: files.map((b) => FileDescriptorProto.decode(b)) });
  const method = root.lookupService(call.service).methods[call.method];
  if (!method) throw new Error(`${call.service} has no method ${call.method}`);
  const [Req, Res] = [root.lookupType(method.requestType), root.lookupType(method.responseType)];
  const body = JSON.parse(call.data) as Record<string, unknown>;
  const unknown = Object.keys(body).filter((k) => !Req.fields[k] && !Object.values(Req.fields).some((f) => f.name === k));
  expect(unknown, `fields the request message ${Req.name} does not have`).toEqual([]);
  const client = new grpc.Client(call.address, creds);
  try {
    const answer = await new Promise<protobuf.Message>((resolve, reject) => {
      client.makeUnaryRequest(
        `/${call.service}/${call.method}`,
        (m: protobuf.Message) => Buffer.from(Req.encode(m).finish()),
        (b: Buffer) => Res.decode(b),
        Req.fromObject(body),
        (err, res) => (err ? reject(err) : resolve(res!)),
      );
    });
    return Res.toObject(answer, { longs: Number, enums: String, defaults: false, json: true });
  } finally {
    client.close();
  }
}

/** What the daemon embeds in its page, read from the page as served. */
async function pageInfo(d: Daemon): Promise<PageInfo> {
  const html = await (await fetch(`http://127.0.0.1:${d.addresses.http.port}/ui/`)).text();
  const m = /<script id="cp-info" type="application\/json">(.*?)<\/script>/.exec(html);
  expect(m, 'the page embeds its info').not.toBeNull();
  return JSON.parse(m![1]!) as PageInfo;
}

let dir: string;
let ca: TestCa;
/** The daemons' hosts file: where api.c.test is. */
let hostsFile: string;
const API_ADDRESS = '127.0.0.10';
const daemons: Daemon[] = [];

beforeAll(() => {
  dir = tempDir('canonport-ui-grpcurl-');
  ca = makeCa(dir, 'ui');
  hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, `127.0.0.1 localhost\n${API_ADDRESS} api.${ZONE}\n`);
}, 60_000);

afterAll(async () => {
  for (const d of daemons) await d.close(0);
});

describe("the service page's grpcurl line, run as it says", () => {
  it('over plaintext: Resolve answers the name the line asks, with its port', async () => {
    const d = await startDaemon({ zones: [ZONE] }, { hostsFile });
    daemons.push(d);
    const info = await pageInfo(d);
    expect(info.grpc.tls).toBe(false);
    const line = commandsFor('api', info, '127.0.0.1')[2]!;
    expect(line).toBe(`grpcurl -plaintext -d '{"name":"api.${ZONE}"}' 127.0.0.1:${d.addresses.grpc.port} canonport.v1.Canonport/Resolve`);
    const answer = await runGrpcurl(line, dir);
    expect(answer).toMatchObject({ name: `api.${ZONE}`, service: 'api', port: API, scheme: 'base32', zone: ZONE, addresses: [API_ADDRESS] });
  });

  it('over TLS: -cacert with the CA that signed the daemon\'s certificate, and the same answer', async () => {
    const server = ca.leaf('ui-grpc');
    const d = await startDaemon({ zones: [ZONE], grpcTlsCert: server.cert, grpcTlsKey: server.key }, { hostsFile });
    daemons.push(d);
    const info = await pageInfo(d);
    expect(info.grpc.tls).toBe(true);
    const line = commandsFor('api', info, '127.0.0.1')[2]!;
    expect(line).toBe(`grpcurl -cacert ca.pem -d '{"name":"api.${ZONE}"}' 127.0.0.1:${d.addresses.grpc.port} canonport.v1.Canonport/Resolve`);
    // The user's ca.pem: the CA their daemon's certificate comes from.
    const cwd = tempDir('canonport-ui-grpcurl-cwd-');
    writeFileSync(join(cwd, 'ca.pem'), readFileSync(ca.cert));
    const answer = await runGrpcurl(line, cwd);
    expect(answer).toMatchObject({ name: `api.${ZONE}`, service: 'api', port: API, zone: ZONE, addresses: [API_ADDRESS] });
    // The line's TLS is checked: the same call trusting another CA fails the handshake.
    const other = makeCa(tempDir('canonport-ui-grpcurl-other-'), 'other');
    writeFileSync(join(cwd, 'ca.pem'), readFileSync(other.cert));
    await expect(runGrpcurl(line, cwd)).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });
});
