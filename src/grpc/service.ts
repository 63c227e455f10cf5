import { MAX_TURNS, spreadLookup } from '../discovery/spread.js';
import { forEachLimited, Quota } from '../concurrency.js';
import * as grpc from '@grpc/grpc-js';
import { CanonportError, ErrorCodes, GrpcStatus, errorToGrpcStatus } from '../errors.js';
import { describedResolution, resolutionOf, type Resolution } from './resolution.js';
import { lookupError } from '../discovery/discovery.js';
import { nameSourceOf } from '../core/naming.js';
import type { DaemonContext } from '../context.js';
import { decodePort, decodePortRaw } from '../scheme/index.js';
import { LogThrottle } from '../log.js';
import { clientOf } from './peer.js';
import { ERROR_CODE_METADATA } from './proto.js';
import { streamLookupConcurrency, WatchHub } from './watch-hub.js';

/**
 * The canonport.v1.Canonport handlers. Every handler goes through `unary`
 * or the Watch wrapper, which turn any error into a status through
 * errorToGrpcStatus: a thrown bug is INTERNAL, never UNKNOWN. A malformed
 * request never reaches them: the server answers it (strict-decode.ts).
 */

/** Names per ResolveMany call; more is INVALID_ARGUMENT (CP_BAD_REQUEST). */
export const MAX_BATCH = 1000;
/** Lookups of one ResolveMany running at once, so a batch cannot flood the upstreams. */
const BATCH_CONCURRENCY = 32;
/** Floor of the Watch re-resolve period, whatever the TTL says. */
const MIN_WATCH_INTERVAL_MS = 1000;

export interface ServiceOptions {
  /** Watch re-resolve period, ms; default the answer's TTL (min 1 s). Tests shorten it. */
  watchIntervalMs?: number | undefined;
}

/** The Watch stream bounds, from the settings (read at every new stream, so a reload applies). */
function watchLimits(ctx: DaemonContext): { total: number; perClient: number } {
  const c = ctx.config();
  return { total: c.watchMaxStreams, perClient: c.watchMaxStreamsPerClient };
}

/** What the server needs besides the handlers: ending every open Watch on shutdown. */
export interface CanonportService {
  handlers: grpc.UntypedServiceImplementation;
  /** Ends every open Watch with UNAVAILABLE, so graceful shutdown is not held by endless streams. */
  endWatches(reason: string): void;
  /** Open Watch streams (tests check that cancels release them). */
  activeWatches(): number;
  /** Distinct names the open Watch streams follow. */
  watchedNames(): number;
  /**
   * A slot for another stream that stays open (health Watch) under the
   * Watch bounds: `release` it when the stream ends, or the refusal.
   */
  holdStream(call: { getPeer(): string }): { release(): void } | { refused: string };
}

/** A status error for grpc-js, carrying the stable canonport code in trailing metadata. */
export function toStatus(err: unknown): grpc.StatusObject {
  const metadata = new grpc.Metadata();
  if (err instanceof CanonportError) {
    metadata.set(ERROR_CODE_METADATA, err.code);
    return { code: errorToGrpcStatus(err), details: err.message, metadata };
  }
  return { code: GrpcStatus.INTERNAL, details: `internal error: ${err instanceof Error ? err.message : String(err)}`, metadata };
}

export function createCanonportService(ctx: DaemonContext, opts: ServiceOptions = {}): CanonportService {
  /** Open Watch streams (how to end each), by client: at most watchMaxStreams, watchMaxStreamsPerClient each (quota). */
  const watches = new Map<string, Map<number, (status: grpc.StatusObject) => void>>();
  const quota = new Quota(() => watchLimits(ctx));
  let nextWatch = 0;
  const limitLog = new LogThrottle();
  const hub = new WatchHub({
    resolve: (name) => resolve(nameOf(name)),
    intervalMs: opts.watchIntervalMs,
    minIntervalMs: MIN_WATCH_INTERVAL_MS,
    concurrency: () => streamLookupConcurrency(ctx.config().maxInflight),
    logger: ctx.logger,
    discovery: ctx.discovery,
  });
  // One discovery listener for all streams (not one each), subscribed while any
  // stream is open: a reload, an edited hosts file or a learned address re-resolves them.
  let unsubscribe: (() => void) | undefined;
  const addWatch = (client: string, id: number, end: (status: grpc.StatusObject) => void) => {
    unsubscribe ??= ctx.discovery.onChange(() => hub.refreshAll());
    let own = watches.get(client);
    if (!own) watches.set(client, (own = new Map()));
    own.set(id, end);
    ctx.metrics.watchStreams.inc();
  };
  const removeWatch = (client: string, id: number) => {
    const own = watches.get(client);
    if (!own?.delete(id)) return;
    if (own.size === 0) watches.delete(client);
    quota.release(client);
    ctx.metrics.watchStreams.dec();
    if (quota.total === 0) {
      unsubscribe?.();
      unsubscribe = undefined;
    }
  };
  /** A new stream from `client`: taken when the bounds allow, or from the largest holder when that is fair. */
  const admitWatch = (client: string): string | null => {
    let v = quota.acquire(client);
    if (!v.ok && v.holder !== undefined) {
      const theirs = watches.get(v.holder);
      const newest = theirs ? Math.max(...theirs.keys()) : undefined;
      if (newest !== undefined) {
        ctx.metrics.watchRefused.inc({ reason: 'total' });
        theirs!.get(newest)!(toStatus(new CanonportError(ErrorCodes.WATCH_LIMIT, `more than ${watchLimits(ctx).total} Watch streams on this daemon, and this client holds more than an equal share`)));
        v = quota.acquire(client);
      }
    }
    if (v.ok) return null;
    ctx.metrics.watchRefused.inc({ reason: v.reason });
    const { total, perClient } = watchLimits(ctx);
    const why = v.reason === 'client' ? `more than ${perClient} Watch streams from ${client}` : `more than ${total} Watch streams on this daemon`;
    limitLog.run(v.reason, (heldBack) => ctx.logger.warn({ code: ErrorCodes.WATCH_LIMIT, client, reason: v.reason, total, perClient, heldBack }, `Watch refused: ${why} (logged at most once a minute)`));
    return why;
  };

  /** Runs a unary handler: maps errors to statuses, logs the ones that are bugs. (server.ts counts calls.) */
  function unary<Req, Res>(method: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      let p: Promise<Res>;
      try {
        p = fn(call.request, call);
      } catch (err) {
        p = Promise.reject(err);
      }
      p.then(
        (res) => callback(null, res),
        (err: unknown) => {
          const status = toStatus(err);
          if (status.code === GrpcStatus.INTERNAL) ctx.logger.error({ err, method }, 'gRPC handler failed');
          else ctx.logger.debug({ method, code: status.code, details: status.details }, 'gRPC call rejected');
          callback(status, null);
        },
      );
    };
  }

  const resolve = async (name: string): Promise<Resolution> => resolutionOf(await ctx.discovery.lookup(name));

  // Resolve spreads: each call turns the other hosts by one place (this host's own instance stays first; spread.ts).
  // Watch keeps the core's order: a stream re-sends only on change, and round_robin clients spread by themselves.
  let turn = 0;
  const Resolve = unary('Resolve', async (req: { name?: unknown }) => toWire(resolutionOf(spreadLookup(await ctx.discovery.lookup(nameOf(req.name)), turn++ % MAX_TURNS))));

  const ResolveMany = unary('ResolveMany', async (req: { names?: unknown }, call) => {
    const names = Array.isArray(req.names) ? (req.names as unknown[]) : [];
    if (names.length > MAX_BATCH) {
      throw new CanonportError(ErrorCodes.BAD_REQUEST, `${names.length} names in one ResolveMany, over the limit of ${MAX_BATCH}`, {
        count: names.length,
      });
    }
    const results = new Array<unknown>(names.length);
    // The call's deadline bounds the whole batch: the reply goes out a little before it, with what is done;
    // a name still waiting on a slow upstream gets its own UNAVAILABLE instead of costing every other name its answer.
    const answerBy = answerDeadline(call.getDeadline());
    const work = forEachLimited(names, BATCH_CONCURRENCY, async (raw, i) => {
      if (Date.now() >= answerBy) return;
      const name = String(raw ?? '');
      try {
        const l = await ctx.discovery.lookup(name);
        if (l.ok) results[i] = { name, resolution: toWire(resolutionOf(l)) };
        else {
          // Nothing found: the error, and what the name reads as when that is known (the port a SRV query gives).
          const s = toStatus(lookupError(l));
          const known = describedResolution(l);
          results[i] = { name, error: { status: s.code, code: l.code, message: s.details, ...(known ? { resolution: toWire(known) } : {}) } };
        }
      } catch (err) {
        const s = toStatus(err);
        if (s.code === GrpcStatus.INTERNAL) ctx.logger.error({ err, name }, 'ResolveMany: lookup failed');
        results[i] = { name, error: { status: s.code, code: err instanceof CanonportError ? err.code : '', message: s.details } };
      }
    });
    if (answerBy === Infinity) await work;
    else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([work, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, answerBy - Date.now()))))]);
      clearTimeout(timer);
    }
    const late = { status: GrpcStatus.UNAVAILABLE, code: ErrorCodes.DEADLINE, message: "not resolved before the call's deadline" };
    return { results: names.map((raw, i) => results[i] ?? { name: String(raw ?? ''), error: late }) };
  });

  const Decode = unary('Decode', async (req: { port?: number; raw?: boolean }) => {
    const port = Number(req.port ?? 0);
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new CanonportError(ErrorCodes.BAD_PORT, `port ${req.port} is not 0–65535`, { port: req.port });
    }
    const raw = req.raw === true;
    const prefix = (raw ? decodePortRaw(port) : decodePort(port)) ?? '';
    return { port, prefix, owners: ctx.state().registry.ownersOf(port), raw };
  });

  const Inventory = unary('Inventory', async () => {
    const snap = await ctx.inventory.snapshot();
    const listeners = snap.listeners.map(({ readiness, names, daemon, namespace, forwardedTo, ...l }) => ({
      ...l,
      readiness: readiness?.state ?? '',
      readinessBy: readiness?.by ?? '',
      readinessSince: readiness ? new Date(readiness.sinceMs).toISOString() : '',
      readinessDetail: readiness?.detail ?? '',
      // A container's or pod's namespace travels as flat fields (canonport.proto's Listener); "" for the host's own.
      namespace: namespace?.label ?? '',
      namespaceAddresses: namespace?.addresses ?? [],
      publishedAddress: namespace?.published ?? '',
      containerId: namespace?.container?.id ?? '',
      containerRuntime: namespace?.container?.runtime ?? '',
      pod: namespace?.container?.pod ?? '',
      podNamespace: namespace?.container?.podNamespace ?? '',
      forwardedTo: forwardedTo ? `${forwardedTo.address}:${forwardedTo.port}` : '',
      forwardedNamespace: forwardedTo?.namespace ?? '',
      names: names ?? [],
      nameSource: names ? nameSourceOf(names) : '',
      daemon: daemon === true,
    }));
    const n = snap.namespaces;
    const namespaces = n ? { namespacesObserving: n.observing, namespacesReason: n.reason ?? '', namespacesCode: n.code ?? '', namespacesCount: n.count } : {};
    return { host: snap.host, collectedAtMs: snap.collectedAtMs, listeners, registryDigest: ctx.state().registry.digest, node: snap.node ?? '', ...namespaces };
  });

  /**
   * Watch: the current answer at once, then a re-resolve on every reload and
   * every TTL (WatchHub: once per name, however many streams), sending only
   * answers that differ from the last one sent. A definitive error (bad
   * name, NOT_FOUND) ends the stream with its status; a transient one
   * (INTERNAL, UNAVAILABLE) after the first answer is logged and the last
   * answer stands. Streams are bounded per client and in total
   * (watchMaxStreams…): one more gets RESOURCE_EXHAUSTED, CP_WATCH_LIMIT.
   */
  const Watch: grpc.handleServerStreamingCall<{ name?: unknown }, unknown> = (call) => {
    const rawName = typeof call.request.name === 'string' ? call.request.name : '';
    const client = clientOf(call);
    const refused = admitWatch(client);
    if (refused !== null) {
      call.emit('error', toStatus(new CanonportError(ErrorCodes.WATCH_LIMIT, refused, { client })));
      return;
    }
    const id = nextWatch++;
    let lastKey: string | undefined;
    let done = false;
    let stop: (() => void) | undefined;

    const finish = (status: grpc.StatusObject | null) => {
      if (done) return;
      done = true;
      stop?.();
      removeWatch(client, id);
      if (status !== null) {
        if (status.code === grpc.status.OK) call.end();
        // grpc-js turns an 'error' event on a server stream into the call's final status.
        else call.emit('error', status);
      }
    };

    addWatch(client, id, finish);
    stop = hub.add(rawName, {
      deliver(r) {
        if (done) return;
        const wire = toWire(r);
        // A new answer is one where the port, scheme, version, addresses or hosts changed; a TTL counting down is not.
        const endpoints = r.endpoints.map((e) => JSON.stringify(e)).sort();
        const key = JSON.stringify({ ...wire, ttl: 0, addresses: [...r.addresses].sort(), endpoints });
        if (key !== lastKey) {
          lastKey = key;
          call.write(wire);
        }
      },
      fail(err, transient) {
        if (done || (transient && lastKey !== undefined)) return;
        const status = toStatus(err);
        if (status.code === GrpcStatus.INTERNAL) ctx.logger.error({ err, name: rawName }, 'Watch: resolve failed');
        finish(status);
      },
    });
    // 'cancelled' fires when the client cancels or the connection drops.
    call.on('cancelled', () => finish(null));
    call.on('error', () => finish(null));
  };

  return {
    handlers: { Resolve, ResolveMany, Watch, Decode, Inventory } as grpc.UntypedServiceImplementation,
    endWatches(reason) {
      const status = toStatus(new CanonportError(ErrorCodes.SHUTTING_DOWN, reason));
      for (const own of [...watches.values()]) for (const end of [...own.values()]) end(status);
      hub.close();
    },
    activeWatches: () => quota.total,
    watchedNames: () => hub.size,
    holdStream(call) {
      const client = clientOf(call);
      const refused = admitWatch(client);
      if (refused !== null) return { refused };
      let held = true;
      return {
        release: () => {
          if (held) quota.release(client);
          held = false;
        },
      };
    },
  };
}

/**
 * When a batch must be answered for its reply to arrive before the call's
 * deadline: a tenth of the time left before it (at least 20 ms, at most
 * 500 ms) is kept for sending. Infinity without a deadline.
 */
export function answerDeadline(deadline: grpc.Deadline): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return Infinity;
  const left = at - Date.now();
  return at - Math.min(500, Math.max(20, left / 10));
}

/** The request's name as a string; absence reads as empty, which normaliseName rejects. */
function nameOf(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** A Resolution as the wire message: `version` only when set (proto3 optional). */
function toWire(r: Resolution): Record<string, unknown> {
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
    collidesWith: r.collidesWith,
    zone: r.zone,
    endpoints: r.endpoints,
  };
}
