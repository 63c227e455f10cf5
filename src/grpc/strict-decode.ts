import type * as grpc from '@grpc/grpc-js';

/**
 * Requests are checked against the protobuf wire format before they are
 * decoded, by hand on purpose: protobufjs's Node reader clamps a
 * length-delimited field that runs past the end of the message (a string
 * whose length prefix says 40 where 13 bytes follow is read as the 13), so
 * a truncated request would be answered as if it were whole. And grpc-js
 * answers a request its deserializer throws on with INTERNAL, a status
 * that blames the server, through no interceptor, so the call was counted
 * as CANCELLED. Here a malformed request decodes to a marker instead; the
 * handler answers it INVALID_ARGUMENT (CP_BAD_REQUEST) like any other bad
 * request, counted as such.
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
