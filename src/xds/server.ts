import * as grpc from '@grpc/grpc-js';
import type { DiscoveryReader } from '../discovery/model.js';
import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
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
  /** Open ADS streams; one more is ended at once with RESOURCE_EXHAUSTED (CP_XDS_LIMIT). */
  maxStreams: number;
  /** Resource names per stream, all types together; over it the stream ends with RESOURCE_EXHAUSTED. */
  maxSubscriptionsPerStream: number;
  /** A discovery lookup taking longer counts as failed: the name keeps its last answer. */
  lookupTimeoutMs: number;
  /** Discovery lookups in flight at once. */
  lookupConcurrency: number;
  /** How soon a failed lookup is tried again. */
  retryMs: number;
  /** Floor of the re-lookup period of answers from the upstream resolvers (A/AAAA), whatever their TTL. */
  refreshFloorMs: number;
}

export const DEFAULT_XDS_LIMITS: XdsLimits = {
  maxStreams: 4096,
  // A Listener is ~200–600 bytes: 4096 of them stay under gRPC clients' default 4 MiB message limit.
  maxSubscriptionsPerStream: 4096,
  lookupTimeoutMs: 10_000,
  lookupConcurrency: 64,
  retryMs: 5_000,
  refreshFloorMs: 5_000,
};

export interface XdsServiceOptions {
  discovery: DiscoveryReader;
  metrics: Metrics;
  logger: Logger;
  limits?: Partial<XdsLimits> | undefined;
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
  const limits: XdsLimits = { ...DEFAULT_XDS_LIMITS, ...opts.limits };
  const protos = lazyXdsProtos();
  const logger = opts.logger.child({ component: 'xds' });
  const cache = new AnswerCache({
    discovery: opts.discovery,
    protos,
    logger,
    lookupTimeoutMs: limits.lookupTimeoutMs,
    lookupConcurrency: limits.lookupConcurrency,
    retryMs: limits.retryMs,
    refreshFloorMs: limits.refreshFloorMs,
  });
  const streams = new Set<AdsStream>();
  let nextId = 1;
  let closed = false;
  const metrics = opts.metrics;

  const StreamAggregatedResources = (call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>) => {
    if (closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'canonport is shutting down', metadata: new grpc.Metadata() });
      return;
    }
    if (streams.size >= limits.maxStreams) {
      metrics.xdsStreamsEnded.inc({ reason: 'stream_limit' });
      logger.warn({ code: ErrorCodes.XDS_LIMIT, peer: call.getPeer(), max: limits.maxStreams }, 'xDS stream refused: too many streams');
      call.emit('error', errorStatus(ErrorCodes.XDS_LIMIT, `canonport: more than ${limits.maxStreams} xDS streams`));
      return;
    }
    const stream = new AdsStream(nextId++, call, {
      cache,
      metrics,
      logger,
      limits,
      onEnd: (s) => {
        if (streams.delete(s)) metrics.xdsClients.dec();
      },
    });
    streams.add(stream);
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
      cache.close();
    },
  };
}
