import * as grpc from '@grpc/grpc-js';
import type { DiscoveryReader } from '../discovery/model.js';
import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { Quota, TurnQueue } from '../concurrency.js';
import { clientOf } from '../grpc/peer.js';
import { LogThrottle } from '../log.js';
import { AnswerCache } from './answers.js';
import { lazyXdsProtos } from './protos.js';
import { AdsStream, errorStatus, type DiscoveryRequest, type DiscoveryResponse } from './stream.js';

/**
 * The xDS control plane: envoy.service.discovery.v3.AggregatedDiscoveryService
 * (state of the world) added to a grpc.Server the caller owns, answering
 * Listener, RouteConfiguration, Cluster and ClusterLoadAssignment for any
 * name the discovery answers. The incremental (delta) variant is not
 * offered: neither grpc-js-xds nor gRPC's C core (Python, C++, Ruby, PHP)
 * uses it, and the method answers UNIMPLEMENTED.
 */

export interface XdsLimits {
  /** Open ADS streams, every client together; one more is ended at once with RESOURCE_EXHAUSTED (CP_XDS_LIMIT). */
  maxStreams: number;
  /** Open ADS streams one client holds (grpc/peer.ts: a source address; on loopback, a connection). */
  maxStreamsPerClient: number;
  /** Resource names per stream, all types together; over it the stream ends with RESOURCE_EXHAUSTED. */
  maxSubscriptionsPerStream: number;
  /** Resource names subscribed over every stream of one client. */
  maxNamesPerClient: number;
  /** Resource names subscribed over every stream, every client together. */
  maxNames: number;
  /** A discovery lookup taking longer counts as failed: the name keeps its last answer. */
  lookupTimeoutMs: number;
  /** Discovery lookups in flight at once (the daemon's: grpc/watch-hub.ts streamLookupConcurrency). */
  lookupConcurrency: number;
  /** How soon a failed lookup is tried again. */
  retryMs: number;
  /** Floor of the re-lookup period of answers from the upstream resolvers (A/AAAA), whatever their TTL. */
  refreshFloorMs: number;
}

/** The defaults of the settings xdsMaxStreams… (src/config/settings.ts): the daemon hands the configured ones in. */
export const DEFAULT_XDS_LIMITS: XdsLimits = {
  maxStreams: 4096,
  maxStreamsPerClient: 256,
  // A Listener is ~200–600 bytes: 4096 of them stay under gRPC clients' default 4 MiB message limit.
  maxSubscriptionsPerStream: 4096,
  maxNamesPerClient: 16_384,
  maxNames: 65_536,
  lookupTimeoutMs: 10_000,
  lookupConcurrency: 64,
  retryMs: 5_000,
  refreshFloorMs: 5_000,
};

export interface XdsServiceOptions {
  discovery: DiscoveryReader;
  metrics: Metrics;
  logger: Logger;
  /** Fixed, or read at each new stream and subscription (the daemon's, which a reload changes). */
  limits?: Partial<XdsLimits> | (() => Partial<XdsLimits>) | undefined;
}

export interface XdsHandle {
  /** Open ADS streams. */
  streams(): number;
  /** Distinct names the streams subscribe to, looked up once each. */
  names(): number;
  /**
   * Ends every open stream with UNAVAILABLE (clients reconnect, to this
   * daemon's successor or another), refuses new ones the same way, and
   * stops listening to the discovery. Idempotent.
   */
  close(reason?: string): void;
}

/** Adds the ADS service to `server` (before it starts). */
export function addXdsService(server: grpc.Server, opts: XdsServiceOptions): XdsHandle {
  const given = opts.limits;
  const limitsNow = (): XdsLimits => ({ ...DEFAULT_XDS_LIMITS, ...(typeof given === 'function' ? given() : given) });
  const first = limitsNow();
  const protos = lazyXdsProtos();
  const logger = opts.logger.child({ component: 'xds' });
  const cache = new AnswerCache({
    discovery: opts.discovery,
    protos,
    logger,
    lookupTimeoutMs: first.lookupTimeoutMs,
    lookupConcurrency: () => limitsNow().lookupConcurrency,
    retryMs: first.retryMs,
    refreshFloorMs: first.refreshFloorMs,
  });
  /** Open streams: at most maxStreams (streamQuota). */
  const streams = new Set<AdsStream>();
  /** Open streams by client, for taking back from the largest holder: entries exist while a client holds a stream. */
  const byClient = new Map<string, Set<AdsStream>>();
  const streamQuota = new Quota(() => ({ total: limitsNow().maxStreams, perClient: limitsNow().maxStreamsPerClient }));
  const nameQuota = new Quota(() => ({ total: limitsNow().maxNames, perClient: limitsNow().maxNamesPerClient }));
  // Streams answer in slices of the event loop, however many have something to send (src/concurrency.ts).
  const flushes = new TurnQueue<AdsStream>(
    (s) => s.flushNow(),
    (err) => logger.error({ code: ErrorCodes.XDS_INTERNAL, err }, 'xDS flush failed'),
  );
  let nextId = 1;
  let closed = false;
  const metrics = opts.metrics;
  const limitLog = new LogThrottle();

  const refuseLogged = (what: string, fields: Record<string, unknown>) =>
    limitLog.run(what, (heldBack) => logger.warn({ code: ErrorCodes.XDS_LIMIT, ...fields, heldBack }, `xDS ${what}: refused (logged at most once a minute; counted in canonport_xds_streams_ended_total)`));

  /** Ends the stream of `holder` that holds the most names (or the newest): taking back from the largest holder. */
  const takeBack = (holder: string, by: 'names' | 'streams', why: string): boolean => {
    const own = byClient.get(holder);
    if (!own || own.size === 0) return false;
    let victim: AdsStream | undefined;
    for (const st of own) if (!victim || (by === 'names' ? st.subscriptionCount > victim.subscriptionCount : st.id > victim.id)) victim = st;
    victim!.end(by === 'names' ? 'subscription_limit' : 'stream_limit', errorStatus(ErrorCodes.XDS_LIMIT, `canonport: ${why}; this client holds more than an equal share`));
    return true;
  };

  const StreamAggregatedResources = (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => {
    if (closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'canonport is shutting down', metadata: new grpc.Metadata() });
      return;
    }
    const client = clientOf(call);
    let v = streamQuota.acquire(client);
    if (!v.ok && v.holder !== undefined && takeBack(v.holder, 'streams', `more than ${limitsNow().maxStreams} xDS streams`)) v = streamQuota.acquire(client);
    if (!v.ok) {
      const limits = limitsNow();
      metrics.xdsStreamsEnded.inc({ reason: 'stream_limit' });
      const why = v.reason === 'client' ? `more than ${limits.maxStreamsPerClient} xDS streams from ${client}` : `more than ${limits.maxStreams} xDS streams`;
      refuseLogged('stream limit', { peer: call.getPeer(), client, reason: v.reason, max: v.reason === 'client' ? limits.maxStreamsPerClient : limits.maxStreams });
      call.emit('error', errorStatus(ErrorCodes.XDS_LIMIT, `canonport: ${why}`));
      return;
    }
    const stream = new AdsStream(nextId++, call, {
      cache,
      metrics,
      logger,
      limits: { get maxSubscriptionsPerStream() { return limitsNow().maxSubscriptionsPerStream; } },
      names: {
        acquire: (n) => {
          let r = nameQuota.acquire(client, n);
          // Past the total, a client under its equal share takes back from the largest holder instead of being refused.
          if (!r.ok && r.holder !== undefined && takeBack(r.holder, 'names', `more than ${limitsNow().maxNames} xDS names subscribed`)) r = nameQuota.acquire(client, n);
          if (r.ok) return null;
          const limits = limitsNow();
          refuseLogged('name limit', { client, reason: r.reason, max: r.reason === 'client' ? limits.maxNamesPerClient : limits.maxNames });
          return r.reason === 'client' ? `more than ${limits.maxNamesPerClient} xDS names subscribed by ${client}` : `more than ${limits.maxNames} xDS names subscribed on this daemon`;
        },
        release: (n) => nameQuota.release(client, n),
      },
      flush: (s) => flushes.add(s),
      onEnd: (s) => {
        if (!streams.delete(s)) return;
        streamQuota.release(client);
        const own = byClient.get(client);
        own?.delete(s);
        if (own?.size === 0) byClient.delete(client);
        metrics.xdsClients.dec();
      },
    });
    streams.add(stream);
    let own = byClient.get(client);
    if (!own) byClient.set(client, (own = new Set()));
    own.add(stream);
    metrics.xdsClients.inc();
  };

  const DeltaAggregatedResources = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
    call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'canonport serves xDS state of the world only', metadata: new grpc.Metadata() });
  };

  server.addService(protos.ads, { StreamAggregatedResources, DeltaAggregatedResources } as grpc.UntypedServiceImplementation);

  return {
    streams: () => streams.size,
    names: () => cache.size,
    close(reason = 'canonport is shutting down') {
      if (closed) return;
      closed = true;
      for (const s of [...streams]) s.end('shutdown', { code: grpc.status.UNAVAILABLE, details: reason, metadata: new grpc.Metadata() });
      flushes.clear();
      cache.close();
    },
  };
}
