import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../../src/daemon/daemon.js';
import { createCanonportClient, type CanonportClient } from '../../src/grpc/canonport-client.js';
import { ErrorCodes } from '../../src/errors.js';
import { base32Port, decodePortRaw } from '../../src/scheme/index.js';
import { startDaemon } from './daemon.js';

/**
 * One interop scenario for every language: a client built from the .proto
 * with that language's protoc plugin runs a plan against a real daemon
 * (test/fixtures/interop/: client.py, go/main.go) and prints one JSON line
 * per answer. Its answers are compared with the Node client's for the same
 * calls and with the scheme; its Watch must see a registry reload.
 */

const ZONE = 'interop.example';
const API = `api.${ZONE}`;
const USER_V2 = `v2.user.${ZONE}`;
const MOVER = `mover.${ZONE}`;
/** Where the test moves `mover` by rewriting the registry: next to its base32 port, so certainly another. */
const MOVED_PORT = base32Port('mover') + 1;

/** What the client is asked, in its order. */
const PLAN = {
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

function registry(moverPort?: number): string {
  return [
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
}

export interface InteropClient {
  /** Checks the tools (failing with the Debian package to install) and builds the client in `dir`. */
  prepare(dir: string): void | Promise<void>;
  /** Starts the client: `<daemon host:port> <plan.json>`. */
  start(dir: string, daemon: string, planFile: string): LineProcess;
}

type Line = Record<string, any>;

/** The Node client's Resolution as proto3 JSON with the .proto's field names, as the other languages print it. */
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
    endpoints: r.endpoints.map((e) => ({ address: e.address, port: e.port, source: e.source, node: e.node, version: e.version, since: e.since, readiness: e.readiness ?? '', local: e.local ?? false, protocol: e.protocol ?? '', names: (e.names ?? []).map((n) => ({ name: n.name, source: n.source })), namespace: e.namespace ?? '', container_id: e.containerId ?? '', pod: e.pod ?? '', pod_namespace: e.podNamespace ?? '' })),
  };
}

export function describeInterop(language: string, client: InteropClient, prepareMs = 120_000): void {
  let dir: string;
  let registryFile: string;
  let daemon: Daemon;
  let node: CanonportClient;
  let proc: LineProcess;
  const steps = (step: string): Line[] => proc.lines.filter((l) => l.step === step);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), `canonport-interop-${language.toLowerCase()}-`));
    await client.prepare(dir);
    registryFile = join(dir, 'registry.yaml');
    writeFileSync(registryFile, registry());
    daemon = await startDaemon({ registry: registryFile });
    node = createCanonportClient(daemon.addresses.grpc);
    const planFile = join(dir, 'plan.json');
    writeFileSync(planFile, JSON.stringify(PLAN));
    const { host, port } = daemon.addresses.grpc;
    proc = client.start(dir, `${host}:${port}`, planFile);

    // The Watch's first answer is here: now move the service.
    const first = await proc.next<Line>((l) => l.step === 'watch', 30_000);
    expect(first.resolution.port).toBe(base32Port('mover'));
    writeFileSync(registryFile, registry(MOVED_PORT));
    const code = await Promise.race([proc.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 45_000))]);
    if (code !== 0) throw new Error(`the ${language} client exited ${code}:\n${proc.stderr()}\n${proc.lines.map((l) => JSON.stringify(l)).join('\n')}`);
  }, prepareMs + 90_000);

  afterAll(async () => {
    proc?.kill();
    node?.close();
    await daemon?.close(0);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe(`${language} against the daemon`, () => {
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
      // An unset message field: Go's protojson prints null (EmitUnpopulated), Python's leaves it out.
      const { resolution: unset, ...badName } = many!.results[1].error as Line;
      expect(unset ?? null).toBeNull();
      expect(badName).toEqual({ status: fromNode[1]!.error!.status, code: ErrorCodes.BAD_NAME, message: fromNode[1]!.error!.message });
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

    it('Watch: the first answer, then the new port after the registry file is rewritten', () => {
      const watched = steps('watch').map((l) => l.resolution.port as number);
      expect(watched[0]).toBe(base32Port('mover'));
      expect(watched.at(-1)).toBe(MOVED_PORT);
      expect(steps('watch_end')).toEqual([]);
      expect(steps('done')).toHaveLength(1);
    });
  });
}

export interface LineProcess {
  /** Resolves with the next line matching `pred` (earlier unread lines included); rejects after `ms` or when the process ends first. */
  next<T = Record<string, unknown>>(pred: (l: Record<string, unknown>) => boolean, ms?: number): Promise<T>;
  /** Every JSON line so far. */
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
  stderr: () => string;
  kill(): void;
}

/** Runs a program that prints one JSON object per line on stdout. */
export function spawnJsonLines(file: string, args: string[], env: NodeJS.ProcessEnv): LineProcess {
  const proc = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  let consumed = 0;
  let stderr = '';
  let partial = '';
  const waiters = new Set<() => void>();
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    for (const p of parts) if (p.trim()) lines.push(JSON.parse(p) as Record<string, unknown>);
    for (const w of waiters) w();
  });
  let ended = false;
  const exited = new Promise<number | null>((resolve) =>
    proc.on('close', (code) => {
      ended = true;
      for (const w of waiters) w();
      resolve(code);
    }),
  );
  return {
    lines,
    exited,
    stderr: () => stderr,
    kill: () => proc.kill('SIGKILL'),
    next<T>(pred: (l: Record<string, unknown>) => boolean, ms = 20_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const check = () => {
          for (; consumed < lines.length; consumed++) {
            if (pred(lines[consumed]!)) {
              done();
              resolve(lines[consumed++] as T);
              return;
            }
          }
          if (ended) {
            done();
            reject(new Error(`${file} ended before the expected line; stdout lines:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`no expected line from ${file} within ${ms} ms; lines so far:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
}
