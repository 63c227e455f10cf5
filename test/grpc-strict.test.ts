import http2 from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { ErrorCodes } from '../src/errors.js';
import { wireProblem } from '../src/grpc/strict-decode.js';
import { startDaemon } from './helpers/daemon.js';

/**
 * Malformed requests on the wire: checked before protobufjs decodes them
 * (its Node reader clamps a length running past the end, so a truncated
 * request read as whole), answered INVALID_ARGUMENT with CP_BAD_REQUEST,
 * and counted as that; calls to methods that do not exist are counted too.
 * The daemon is asked over raw HTTP/2, since no gRPC client sends such bytes.
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

  /** Calls counted for a method and code, over every service label. */
  const counted = async (method: string, code: string) =>
    (await daemon.metrics.grpcCalls.get()).values.filter((v) => v.labels.method === method && v.labels.code === code).reduce((n, v) => n + v.value, 0);

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

  it('counts calls to methods and services that do not exist, as UNIMPLEMENTED', async () => {
    const before = await counted('Nope', 'UNIMPLEMENTED');
    expect((await call('/canonport.v1.Canonport/Nope', Buffer.alloc(0))).status).toBe('12');
    expect((await call('/no.such.Service/Nope', Buffer.alloc(0))).status).toBe('12');
    expect(await counted('Nope', 'UNIMPLEMENTED')).toBe(before + 2);
    const labels = (await daemon.metrics.grpcCalls.get()).values.filter((v) => v.labels.method === 'Nope').map((v) => v.labels.service);
    expect(labels.sort()).toEqual(['canonport.v1.Canonport', 'no.such.Service']);
  });
});
