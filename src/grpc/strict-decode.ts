import * as grpc from '@grpc/grpc-js';
import { ErrorCodes } from '../errors.js';
import { ERROR_CODE_METADATA } from './proto.js';

/**
 * Requests are checked against the protobuf wire format before they are
 * decoded, by hand on purpose: protobufjs's Node reader clamps a
 * length-delimited field that runs past the end of the message (a string
 * whose length prefix says 40 where 13 bytes follow is read as the 13), so
 * a truncated request would be answered as if it were whole. And grpc-js
 * answers a request its deserializer throws on with INTERNAL, a status
 * that blames the server, through no interceptor, so the call was counted
 * as CANCELLED. Here a malformed request decodes to a marker instead, and
 * `malformedRequests`, an interceptor in front of every handler, answers it
 * INVALID_ARGUMENT (CP_BAD_REQUEST) like any other bad request, counted as
 * such. The handlers, ours (service.ts) and the libraries' (health,
 * reflection), never see a marker.
 */

/** Set on the decoded request when its bytes are not a well-formed message: the reason. */
export const MALFORMED = Symbol('canonport.malformedRequest');

export type MaybeMalformed = { [MALFORMED]?: string };

/** Why `buf` is not a well-formed protobuf message (every field inside it, nested ones unchecked), or null. */
export function wireProblem(buf: Buffer): string | null {
  let off = 0;
  const varint = (): number | null => {
    let v = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (off >= buf.length) return null;
      const b = buf[off++]!;
      if (shift < 49) v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
    return null;
  };
  while (off < buf.length) {
    const at = off;
    const tag = varint();
    if (tag === null) return `field key at byte ${at} runs past the end`;
    const field = Math.floor(tag / 8);
    if (field === 0) return `field number 0 at byte ${at}`;
    switch (tag % 8) {
      case 0:
        if (varint() === null) return `field ${field}: varint runs past the end`;
        break;
      case 1:
        off += 8;
        break;
      case 2: {
        const len = varint();
        if (len === null) return `field ${field}: length runs past the end`;
        off += len;
        break;
      }
      case 5:
        off += 4;
        break;
      default:
        return `field ${field}: wire type ${tag % 8} is not one proto3 uses`;
    }
    if (off > buf.length) return `field ${field} at byte ${at} runs ${off - buf.length} bytes past the end of the ${buf.length}-byte message`;
  }
  return null;
}

/** A service definition whose request deserializers check the wire first and mark malformed requests instead of throwing. */
export function strictRequests(service: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (buf: Buffer) => {
        const problem = wireProblem(buf);
        if (problem !== null) return { [MALFORMED]: problem };
        try {
          return decode(buf);
        } catch (err) {
          return { [MALFORMED]: err instanceof Error ? err.message : String(err) };
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

/**
 * The server interceptor answering what `strictRequests` marked: a malformed
 * message, and a call without a request message where its method takes
 * exactly one (unary and server-streaming), INVALID_ARGUMENT with
 * CP_BAD_REQUEST. The second is also what a frame cut short looks like here:
 * grpc-js keeps the bytes of a frame whose length prefix runs past what
 * arrived and reports only the half-close, which its handlers answer
 * UNIMPLEMENTED "Received no request message", a status saying the method
 * does not exist. On a request stream (reflection's ServerReflectionInfo)
 * such a cut-short last frame cannot be told from a clean end and is dropped
 * by grpc-js; the messages before it are answered.
 *
 * It must sit outside the call counter, so its answers are counted, and
 * outside the access policy, so a refused caller learns nothing about its bytes.
 */
export function malformedRequests(): grpc.ServerInterceptor {
  return (method, call) => {
    let answered = false;
    let messages = 0;
    const refuse = (problem: string) => {
      answered = true;
      const metadata = new grpc.Metadata();
      metadata.set(ERROR_CODE_METADATA, ErrorCodes.BAD_REQUEST);
      call.sendStatus({ code: grpc.status.INVALID_ARGUMENT, details: `malformed request: ${problem}`, metadata });
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message: unknown, pass) => {
            if (answered) return;
            const problem = (message as MaybeMalformed | null)?.[MALFORMED];
            if (problem !== undefined) return refuse(problem);
            messages++;
            pass(message);
          },
          onReceiveHalfClose: (pass) => {
            if (answered) return;
            if (!method.requestStream && messages === 0) return refuse('the request ended without a whole message (none was sent, or its frame was cut short)');
            pass();
          },
        }),
    });
  };
}
