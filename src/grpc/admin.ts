import type * as grpc from '@grpc/grpc-js';
import type { DaemonContext } from '../context.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import { toStatus } from './service.js';

/**
 * canonport.v1.Admin: operations on this host's daemon (`canonport drain`,
 * `undrain`, `leave`). The access policy (policy.ts) lets only loopback
 * clients reach these methods; here they are handed to the daemon
 * (ctx.admin), or refused with FAILED_PRECONDITION outside cluster mode.
 */

/** A drain waits at most this long unless the caller says otherwise. */
export const DEFAULT_DRAIN_TIMEOUT_MS = 30_000;
/** And never longer than this (a bound on a call a script may forget). */
const MAX_DRAIN_TIMEOUT_MS = 600_000;
const SERVICE = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export function createAdminService(ctx: DaemonContext): grpc.UntypedServiceImplementation {
  const admin = () => {
    if (!ctx.admin) throw new CanonportError(ErrorCodes.BAD_REQUEST, 'drain, undrain and leave need cluster mode (--cluster)');
    return ctx.admin;
  };
  const service = (req: { service?: unknown }): string => {
    const s = typeof req.service === 'string' ? req.service.trim().toLowerCase() : '';
    if (!SERVICE.test(s)) throw new CanonportError(ErrorCodes.BAD_NAME, `${JSON.stringify(req.service ?? '')} is not a service name (a lowercase label such as api)`);
    return s;
  };
  function unary<Req, Res>(fn: (req: Req) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let p: Promise<Res>;
      try {
        p = fn(call.request);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (res) => callback(null, res),
        (err: unknown) => {
          if (!(err instanceof CanonportError)) ctx.logger.error({ err }, 'admin call failed');
          callback(toStatus(err) as grpc.ServiceError);
        },
      );
    };
  }
  return {
    Drain: unary(async (req: { service?: string; wait?: boolean; timeoutMs?: number }) => {
      const name = service(req);
      const timeoutMs = Math.min(MAX_DRAIN_TIMEOUT_MS, req.timeoutMs && req.timeoutMs > 0 ? req.timeoutMs : DEFAULT_DRAIN_TIMEOUT_MS);
      const r = await admin().drain(name, { wait: req.wait === true, timeoutMs });
      ctx.logger.info({ service: name, ports: r.ports, wait: req.wait === true, acked: r.acked.length }, 'drained');
      return { service: name, ports: r.ports, acked: r.acked, unconfirmed: r.unconfirmed, ttlWaitedMs: r.ttlWaitedMs };
    }),
    Undrain: unary(async (req: { service?: string }) => {
      const name = service(req);
      const r = await admin().undrain(name);
      return { service: name, ports: r.ports, acked: [], unconfirmed: [], ttlWaitedMs: 0 };
    }),
    Leave: unary(async () => admin().leave()),
  };
}
