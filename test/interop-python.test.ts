import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { createCanonportClient, type CanonportClient } from '../src/grpc/canonport-client.js';
import { ErrorCodes } from '../src/errors.js';
import { base32Port, decodePortRaw } from '../src/scheme/index.js';
import { startDaemon } from './helpers/daemon.js';
import { generatePythonStubs, pythonEnv, requirePythonGrpc, spawnJsonLines, SYSTEM_PYTHON, type LineProcess } from './helpers/python.js';
import { REPO } from './helpers/scratch-project.js';

/**
 * canonport's gRPC API from Python: Debian's grpcio with stubs protoc and
 * grpc_python_plugin generate from the .proto files, against a real daemon.
 * The Python client's answers are compared with the Node client's for the
 * same calls and with the scheme; its Watch must see a registry reload.
 */

const ZONE = 'interop.example';
const API = `api.${ZONE}`;
const USER_V2 = `v2.user.${ZONE}`;
const MOVER = `mover.${ZONE}`;
/** Where the test moves `mover` by rewriting the registry: next to its base32 port, so certainly another. */
const MOVED_PORT = base32Port('mover') + 1;

const registry = (moverPort?: number) =>
  [
    `zones: [${ZONE}]`,
    'hosts:',
    `  ${API}: [127.0.0.1, "::1"]`,
    `  ${USER_V2}: [127.0.0.1]`,
    `  ${MOVER}: [127.0.0.1]`,
    'services:',
    '  user: { id: 1, versions: [1, 2] }',
    ...(moverPort ? [`  mover: { port: ${moverPort} }`] : []),
    '',
  ].join('\n');

let dir: string;
let registryFile: string;
let daemon: Daemon;
let node: CanonportClient;
let python: LineProcess;
type Line = Record<string, any>;
const steps = (step: string): Line[] => python.lines.filter((l) => l.step === step);

beforeAll(async () => {
  requirePythonGrpc();
  dir = mkdtempSync(join(tmpdir(), 'canonport-interop-python-'));
  generatePythonStubs(dir);
  registryFile = join(dir, 'registry.yaml');
  writeFileSync(registryFile, registry());
  daemon = await startDaemon({ registry: registryFile });
  node = createCanonportClient(daemon.addresses.grpc);

  const plan = {
    resolve: [API, USER_V2, 'bad_label!.interop.example', `_foo.${ZONE}`],
    resolve_many: [API, '', USER_V2],
    decode: [
      [12082, false],
      [6379, true],
    ],
    health: ['', 'canonport.v1.Canonport', 'no.such.Service'],
    watch: MOVER,
    watch_deadline_s: 60,
  };
  writeFileSync(join(dir, 'plan.json'), JSON.stringify(plan));
  const { host, port } = daemon.addresses.grpc;
  python = spawnJsonLines(SYSTEM_PYTHON, [join(REPO, 'test/fixtures/interop/client.py'), `${host}:${port}`, join(dir, 'plan.json')], pythonEnv(dir));

  // The Watch's first answer is on its way or here: now move the service.
  const first = await python.next<Line>((l) => l.step === 'watch', 30_000);
  expect(first.resolution.port).toBe(base32Port('mover'));
  writeFileSync(registryFile, registry(MOVED_PORT));
  const code = await Promise.race([python.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 45_000))]);
  if (code !== 0) throw new Error(`python exited ${code}:\n${python.stderr()}\n${python.lines.map((l) => JSON.stringify(l)).join('\n')}`);
}, 90_000);

afterAll(async () => {
  python?.kill();
  node?.close();
  await daemon?.close(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The Node client's Resolution in the Python stubs' JSON form (proto field names, uint64 none here). */
function asProtoJson(r: Awaited<ReturnType<CanonportClient['resolve']>>): Line {
  return {
    name: r.name,
    service: r.service,
    port: r.port,
    scheme: r.scheme,
    host: r.host,
    addresses: r.addresses,
    ttl: r.ttl,
    prefix: r.prefix,
    ...(r.version !== undefined ? { version: r.version } : {}),
    collides_with: r.collidesWith,
    zone: r.zone,
  };
}

describe('Python (grpcio + protoc stubs) against the daemon', () => {
  it('Resolve: the same answers as the Node client, with `optional version` present only where set', async () => {
    const [api, user] = steps('resolve');
    expect(api!.resolution).toEqual(asProtoJson(await node.resolve(API)));
    expect(api!.resolution.port).toBe(base32Port('api'));
    expect(api!.has_version).toBe(false);
    expect(user!.resolution).toEqual(asProtoJson(await node.resolve(USER_V2)));
    expect(user!).toMatchObject({ has_version: true, resolution: { version: 2, scheme: 'versioned' } });
  });

  it('Resolve: INVALID_ARGUMENT and NOT_FOUND with the canonport-code trailer', () => {
    const [, , bad, missing] = steps('resolve');
    expect(bad!.error).toMatchObject({ status: 'INVALID_ARGUMENT', canonport_code: ErrorCodes.BAD_NAME });
    expect(missing!.error).toMatchObject({ status: 'NOT_FOUND', canonport_code: ErrorCodes.NOT_FOUND });
  });

  it('ResolveMany: one result per name, in order, each a resolution or an error (the oneof)', async () => {
    const [many] = steps('resolve_many');
    expect(many!.results.map((r: Line) => [r.name, r.which])).toEqual([
      [API, 'resolution'],
      ['', 'error'],
      [USER_V2, 'resolution'],
    ]);
    const fromNode = await node.resolveMany([API, '', USER_V2]);
    expect(many!.results[0].resolution).toEqual(asProtoJson(fromNode[0]!.resolution!));
    expect(many!.results[1].error).toEqual({ status: fromNode[1]!.error!.status, code: ErrorCodes.BAD_NAME, message: fromNode[1]!.error!.message });
  });

  it('Decode: the prefix and owners the Node client gets, raw and not', async () => {
    const [plain, raw] = steps('decode');
    expect(plain!.decoded).toEqual(await node.decode(12082, false));
    expect(plain!.decoded.prefix).toBe('api');
    expect(raw!.decoded).toEqual(await node.decode(6379, true));
    expect(raw!.decoded.prefix).toBe(decodePortRaw(6379));
  });

  it('grpc.health.v1 Health/Check: SERVING for the server and for canonport.v1.Canonport, NOT_FOUND for others', () => {
    expect(steps('health').map((h) => [h.service, h.status ?? h.error.status])).toEqual([
      ['', 'SERVING'],
      ['canonport.v1.Canonport', 'SERVING'],
      ['no.such.Service', 'NOT_FOUND'],
    ]);
  });

  it("Watch: the first answer, then the new port after the registry file is rewritten", () => {
    const watched = steps('watch').map((l) => l.resolution.port as number);
    expect(watched[0]).toBe(base32Port('mover'));
    expect(watched.at(-1)).toBe(MOVED_PORT);
    expect(steps('watch_end')).toEqual([]);
    expect(steps('done')).toHaveLength(1);
  });
});
