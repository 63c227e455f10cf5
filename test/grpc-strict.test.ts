import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { ErrorCodes } from '../src/errors.js';
import { UNKNOWN_METHOD_LABELS } from '../src/grpc/server.js';
import { wireProblem } from '../src/grpc/strict-decode.js';
import { startDaemon } from './helpers/daemon.js';

/**
 * Malformed requests on the wire: checked before protobufjs decodes them
 * (its Node reader clamps a length running past the end, so a truncated
 * request read as whole), answered INVALID_ARGUMENT with CP_BAD_REQUEST,
 * and counted as that, on every service the daemon itself serves (Canonport,
 * health, reflection); calls to methods that do not exist are counted too,
 * under one fixed label. The daemon is asked over raw HTTP/2, since no gRPC
 * client sends such bytes.
 */

const string = (field: number, s: string, declared = Buffer.byteLength(s)) => Buffer.concat([Buffer.from([(field << 3) | 2, declared]), Buffer.from(s)]);

describe('wireProblem', () => {
  it.each([
    ['empty message', Buffer.alloc(0), null],
    ['one string field', string(1, 'api.localhost'), null],
    ['varint and bool', Buffer.from([0x08, 0xb2, 0x5e, 0x10, 0x01]), null],
    ['a length past the end', string(1, 'api.localhost', 40), /field 1 at byte 0 runs 27 bytes past the end of the 15-byte message/],
    ['a varint cut short', Buffer.from([0x08, 0xff]), /field 1: varint runs past the end/],
    ['wire type 7', Buffer.from([0x0f]), /wire type 7/],
    ['field number 0', Buffer.from([0x02, 0x00]), /field number 0/],
    ['a fixed64 cut short', Buffer.from([0x09, 1, 2, 3]), /runs 5 bytes past the end/],
  ] as const)('%s', (_what, buf, expected) => {
    const p = wireProblem(buf);
    if (expected === null) expect(p).toBeNull();
    else expect(p).toMatch(expected);
  });
});

describe('the daemon, asked with malformed bytes', () => {
  let daemon: Daemon;
  beforeAll(async () => {
    daemon = await startDaemon({});
  });
  afterAll(async () => {
    await daemon?.close(0);
  });

  /** One gRPC frame carrying `message`, its length prefix saying `declared` (past the end: a frame cut short), then the end of the request. */
  async function call(path: string, message: Buffer, declared = message.length): Promise<{ status: string; code: string; message: string }> {
    const c = http2.connect(`http://127.0.0.1:${daemon.addresses.grpc.port}`);
    try {
      const s = c.request({ ':method': 'POST', ':path': path, 'content-type': 'application/grpc', te: 'trailers' });
      const head: Record<string, string> = {};
      s.on('response', (h) => Object.assign(head, h));
      s.on('trailers', (t) => Object.assign(head, t));
      s.resume();
      const frame = Buffer.alloc(5);
      frame.writeUInt32BE(declared, 1);
      s.end(Buffer.concat([frame, message]));
      await new Promise((r) => s.on('close', r));
      return { status: head['grpc-status'] ?? '', code: head['canonport-code'] ?? '', message: decodeURIComponent(head['grpc-message'] ?? '') };
    } finally {
      c.close();
    }
  }

  /** Calls counted for a method and code, over every service label; or for `service/method` when the method has a slash. */
  const counted = async (method: string, code: string) =>
    (await daemon.metrics.grpcCalls.get()).values
      .filter((v) => (method.includes('/') ? `${v.labels.service}/${v.labels.method}` : v.labels.method) === method && v.labels.code === code)
      .reduce((n, v) => n + v.value, 0);

  it('answers a truncated request INVALID_ARGUMENT (CP_BAD_REQUEST), not as if it were whole, and counts it so', async () => {
    const before = await counted('Resolve', 'INVALID_ARGUMENT');
    const r = await call('/canonport.v1.Canonport/Resolve', string(1, 'api.localhost', 40));
    expect(r).toMatchObject({ status: '3', code: ErrorCodes.BAD_REQUEST });
    expect(r.message).toMatch(/malformed request: field 1 .* past the end/);
    expect(await counted('Resolve', 'INVALID_ARGUMENT')).toBe(before + 1);
    // The same bytes, whole, are answered.
    expect((await call('/canonport.v1.Canonport/Resolve', string(1, 'api.localhost'))).status).toBe('0');
  });

  it('answers bytes that are no message at all INVALID_ARGUMENT, counted as that and not as CANCELLED', async () => {
    const cancelled = await counted('Resolve', 'CANCELLED');
    const r = await call('/canonport.v1.Canonport/Resolve', Buffer.from([0xff, 0xff, 0xff]));
    expect(r).toMatchObject({ status: '3', code: ErrorCodes.BAD_REQUEST });
    expect(await counted('Resolve', 'CANCELLED')).toBe(cancelled);
    const watch = await call('/canonport.v1.Canonport/Watch', string(1, 'api.localhost', 40));
    expect(watch).toMatchObject({ status: '3', code: ErrorCodes.BAD_REQUEST });
  });

  it.each([
    ['grpc.health.v1.Health/Check'],
    ['grpc.health.v1.Health/Watch'],
    ['grpc.reflection.v1.ServerReflection/ServerReflectionInfo'],
    ['grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo'],
  ])('answers bytes that are no message on %s INVALID_ARGUMENT (CP_BAD_REQUEST), counted so and not as CANCELLED', async (method) => {
    const [bad, cancelled] = [await counted(method, 'INVALID_ARGUMENT'), await counted(method, 'CANCELLED')];
    const r = await call(`/${method}`, Buffer.from([0xff, 0xff, 0xff]));
    expect(r).toMatchObject({ status: '3', code: ErrorCodes.BAD_REQUEST });
    expect(r.message).toMatch(/malformed request: field key at byte 0 runs past the end/);
    expect(await counted(method, 'INVALID_ARGUMENT')).toBe(bad + 1);
    expect(await counted(method, 'CANCELLED')).toBe(cancelled);
  });

  it('answers a truncated Health/Check message INVALID_ARGUMENT, not as if it were whole', async () => {
    // service "x" with a length of 40: protobufjs alone reads it as "x", which is answered NOT_FOUND.
    const r = await call('/grpc.health.v1.Health/Check', string(1, 'x', 40));
    expect(r).toMatchObject({ status: '3', code: ErrorCodes.BAD_REQUEST });
    expect(r.message).toMatch(/field 1 at byte 0 runs 39 bytes past the end of the 3-byte message/);
    expect(await call('/grpc.health.v1.Health/Check', string(1, 'x'))).toMatchObject({ status: '5' });
    expect(await call('/grpc.health.v1.Health/Check', Buffer.alloc(0))).toMatchObject({ status: '0' });
  });

  it('answers reflection requests that are whole, on the same raw path', async () => {
    // list_services (field 7) "*": the contrast to the malformed cases above.
    const r = await call('/grpc.reflection.v1.ServerReflection/ServerReflectionInfo', string(7, '*'));
    expect(r).toMatchObject({ status: '0', code: '' });
  });

  it.each([
    ['canonport.v1.Canonport/Resolve', string(1, 'api.localhost')],
    ['grpc.health.v1.Health/Check', string(1, '')],
    ['grpc.health.v1.Health/Watch', string(1, '')],
  ])('answers %s whose frame is cut short (its length prefix past what is sent) INVALID_ARGUMENT, not UNIMPLEMENTED', async (method, message) => {
    const before = await counted(method, 'INVALID_ARGUMENT');
    const r = await call(`/${method}`, message, 40);
    expect(r).toMatchObject({ status: '3', code: ErrorCodes.BAD_REQUEST });
    expect(r.message).toMatch(/the request ended without a whole message/);
    expect(await counted(method, 'INVALID_ARGUMENT')).toBe(before + 1);
    expect(await counted(method, 'UNIMPLEMENTED')).toBe(0);
  });

  it('counts calls to methods and services that do not exist as UNIMPLEMENTED, under one fixed label whatever the path', async () => {
    const unknown = async () => (await daemon.metrics.grpcCalls.get()).values.filter((v) => v.labels.code === 'UNIMPLEMENTED');
    const before = (await unknown()).reduce((n, v) => n + v.value, 0);
    expect((await call('/canonport.v1.Canonport/Nope', Buffer.alloc(0))).status).toBe('12');
    expect((await call('/no.such.Service/Nope', Buffer.alloc(0))).status).toBe('12');
    // Paths the caller makes up add no series: 50 of them, and still the one.
    const N = 50;
    for (let i = 0; i < N; i++) expect((await call(`/made.up${i}.Service/Method${i}`, Buffer.alloc(0))).status).toBe('12');
    const series = await unknown();
    expect(series.map((v) => v.labels)).toEqual([{ ...UNKNOWN_METHOD_LABELS, code: 'UNIMPLEMENTED' }]);
    expect(series[0]!.value).toBe(before + 2 + N);
  });
});
