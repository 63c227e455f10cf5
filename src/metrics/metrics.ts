import { Counter, Gauge, Histogram, Registry as PromRegistry, collectDefaultMetrics } from 'prom-client';
import { EVENT_LOOP_LAG_SERIES, EventLoopDelay } from './event-loop.js';

/**
 * Every Prometheus series canonport exports, in one place so names stay
 * consistent (snake_case, `canonport_` prefix, `_total` on counters, base
 * units). One instance per daemon: tests run several daemons in one process.
 */
export class Metrics {
  readonly registry = new PromRegistry();

  /** Queries counted by countQuery since the last scrape, by packed label index (see queryKey). */
  private readonly queryTally = new Tally<number>();
  readonly dnsQueries = new Counter({
    name: 'canonport_dns_queries_total',
    help: 'DNS queries answered, by query type, response code, answer source (canonical, builtin, cache, stale, forward, refused, error) and transport.',
    labelNames: ['type', 'rcode', 'source', 'transport'] as const,
    registers: [this.registry],
    collect: () => this.queryTally.drain((key, n) => this.dnsQueries.inc(queryLabels(key), n)),
  });
  /** Observed per query: bucket counts in plain arrays (SourceHistogram), not prom-client's observe(). */
  readonly dnsDuration = new SourceHistogram(
    'canonport_dns_query_duration_seconds',
    'Time from receiving a DNS query to sending its answer, by answer source.',
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    this.registry,
  );
  readonly dnsDropped = new Counter({
    name: 'canonport_dns_dropped_total',
    help: 'DNS queries not served normally, by reason: dropped without an answer (unparsable, response, tcp_limit) or refused/failed early (ratelimit, inflight_cap).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly dnsTruncated = new Counter({
    name: 'canonport_dns_truncated_total',
    help: 'UDP answers sent truncated (TC, no records), by reason (size: over the client\'s buffer; amplification: over 3 times the query for a client outside --allow).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly cacheEntries = new Gauge({
    name: 'canonport_cache_entries',
    help: 'Entries in the forwarding cache.',
    registers: [this.registry],
  });
  /** Cache lookups counted by countCacheLookup since the last scrape. */
  private readonly lookupTally = new Tally<'hit' | 'miss' | 'stale'>();
  readonly cacheLookups = new Counter({
    name: 'canonport_cache_lookups_total',
    help: 'Forwarding cache lookups by result (hit, miss, stale).',
    labelNames: ['result'] as const,
    registers: [this.registry],
    collect: () => this.lookupTally.drain((result, n) => this.cacheLookups.inc({ result }, n)),
  });
  readonly upstreamQueries = new Counter({
    name: 'canonport_upstream_queries_total',
    help: 'Queries sent to upstream resolvers, by upstream and outcome (ok, ok_tcp after a truncated UDP reply, timeout, servfail, refused, notimp, formerr, error).',
    labelNames: ['upstream', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly upstreamDuration = new Histogram({
    name: 'canonport_upstream_duration_seconds',
    help: 'Upstream round-trip time, by upstream.',
    labelNames: ['upstream'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly upstreamMismatches = new Counter({
    name: 'canonport_upstream_mismatched_replies_total',
    help: 'Upstream replies dropped because ID, question or source did not match (RFC 5452), by upstream and reason (source, id, question; case: the question not in the letter case it was sent in, DNS 0x20).',
    labelNames: ['upstream', 'reason'] as const,
    registers: [this.registry],
  });
  readonly inflight = new Gauge({
    name: 'canonport_upstream_inflight',
    help: 'Upstream queries in flight.',
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'canonport_config_reloads_total',
    help: 'Configuration reloads, by result (ok, failed).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly grpcCalls = new Counter({
    name: 'canonport_grpc_calls_total',
    help: 'gRPC calls, by service, method and status code name.',
    labelNames: ['service', 'method', 'code'] as const,
    registers: [this.registry],
  });
  readonly serviceListening = new Gauge({
    name: 'canonport_service_listening',
    help: 'A service listening on this host: 1 per (service, port, version).',
    labelNames: ['service', 'port', 'version'] as const,
    registers: [this.registry],
  });
  readonly inventoryProbes = new Counter({
    name: 'canonport_inventory_probes_total',
    help: 'HTTP version probes of listening services, by result (ok, timeout, refused, error, bad_status, invalid).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly namespaceReads = new Counter({
    name: 'canonport_inventory_namespace_reads_total',
    help: 'Reads of another network namespace\'s listening sockets (a container\'s, a pod\'s), by trigger (new: it appeared, process: a process started in it, counters: its socket counters moved, invalidated: a readiness probe\'s connection to one of its listeners was lost, or a drain waits for its restart).',
    labelNames: ['trigger'] as const,
    registers: [this.registry],
  });
  readonly namespacesObserved = new Gauge({
    name: 'canonport_inventory_namespaces',
    help: 'Network namespaces observed besides the daemon\'s own (containers, pods).',
    registers: [this.registry],
  });

  readonly httpRequests = new Counter({
    name: 'canonport_http_requests_total',
    help: 'Requests to the HTTP endpoint, by handler (metrics, healthz, readyz, http_sd, ui, other) and status code.',
    labelNames: ['handler', 'code'] as const,
    registers: [this.registry],
  });
  readonly httpSdGroups = new Gauge({
    name: 'canonport_http_sd_groups',
    help: 'Target groups /sd/prometheus held at its last request, every page together (a reply holds at most --http-sd-max-groups).',
    registers: [this.registry],
  });
  readonly uiStreams = new Gauge({
    name: 'canonport_ui_streams',
    help: 'Live fleet pages following this daemon (Server-Sent Events streams open on /ui/api/events).',
    registers: [this.registry],
  });
  readonly uiStreamsRefused = new Counter({
    name: 'canonport_ui_streams_refused_total',
    help: 'Live fleet page streams refused (CP_UI_STREAM_LIMIT), by the limit reached: total or source (per client address).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly ready = new Gauge({
    name: 'canonport_ready',
    help: '1 when every listener is bound and the configuration is loaded (what /readyz answers), else 0.',
    registers: [this.registry],
  });

  // --- access to gRPC and HTTP: allow-lists and TLS ---
  readonly accessDenied = new Counter({
    name: 'canonport_access_denied_total',
    help: 'Requests refused before any handler ran, by listener (grpc, http) and reason (address: outside the listener allow-list; inventory_address: outside --inventory-allow; no_certificate: a client certificate was required).',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  // --- connections at accept (src/net/gate.ts) ---
  readonly connectionsOpen = new Gauge({
    name: 'canonport_connections_open',
    help: 'TCP connections open, by listener (grpc, http, dns).',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'canonport_connections_refused_total',
    help: 'TCP connections closed at accept, by listener (grpc, http, dns) and reason (address: no allow-list admits it; total, per_source, outsiders: a connection bound was reached; fd_exhausted: out of file descriptors; closing: the daemon is stopping).',
    labelNames: ['listener', 'reason'] as const,
    registers: [this.registry],
  });
  readonly tlsReloads = new Counter({
    name: 'canonport_tls_reloads_total',
    help: 'Certificate and key re-reads, by listener (grpc, http) and result (ok; unchanged; failed: the running certificate keeps serving).',
    labelNames: ['listener', 'result'] as const,
    registers: [this.registry],
  });
  readonly tlsCertificateExpiry = new Gauge({
    name: 'canonport_tls_certificate_expiry_timestamp_seconds',
    help: 'When the certificate a TLS listener serves expires, as Unix time, by listener (grpc, http).',
    labelNames: ['listener'] as const,
    registers: [this.registry],
  });

  // --- gRPC Watch streams (src/grpc/service.ts) ---
  readonly watchStreams = new Gauge({
    name: 'canonport_grpc_watch_streams',
    help: 'Open gRPC Watch streams.',
    registers: [this.registry],
  });
  readonly watchRefused = new Counter({
    name: 'canonport_grpc_watch_refused_total',
    help: 'Watch streams refused or ended by a bound, by reason (client: the per-client bound; total: every client together).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  // --- xDS control plane (src/xds); `type` is listener, route, cluster or endpoint ---
  readonly xdsClients = new Gauge({
    name: 'canonport_xds_clients',
    help: 'Open xDS ADS streams (connected xDS clients).',
    registers: [this.registry],
  });
  readonly xdsSubscriptions = new Gauge({
    name: 'canonport_xds_subscriptions',
    help: 'Resource names subscribed over all open xDS streams, by resource type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly xdsPushes = new Counter({
    name: 'canonport_xds_pushes_total',
    help: 'xDS DiscoveryResponses sent, by resource type and reason (initial: a new subscription; change: the discovery changed).',
    labelNames: ['type', 'reason'] as const,
    registers: [this.registry],
  });
  readonly xdsResourcesSent = new Counter({
    name: 'canonport_xds_resources_sent_total',
    help: 'Resources carried by xDS DiscoveryResponses, by resource type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly xdsAcks = new Counter({
    name: 'canonport_xds_acks_total',
    help: 'xDS responses a client accepted (ACK), by resource type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly xdsNacks = new Counter({
    name: 'canonport_xds_nacks_total',
    help: 'xDS responses a client rejected (NACK), by resource type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly xdsRequestsIgnored = new Counter({
    name: 'canonport_xds_requests_ignored_total',
    help: 'xDS DiscoveryRequests ignored as the protocol says, by reason (stale_nonce, unknown_type).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly xdsStreamsEnded = new Counter({
    name: 'canonport_xds_streams_ended_total',
    help: 'xDS streams the daemon ended, by reason (stream_limit, subscription_limit, shutdown, error).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  // --- cluster mode (src/cluster/): the etcd view and this node's publication ---
  // With --workers every process keeps its own view: /metrics aggregates the view gauges with `max`
  // (the largest view; a state is 1 when any process is in it), never the sum of copies of one view.
  readonly clusterViewNodes = new Gauge({
    name: 'canonport_cluster_view_nodes',
    help: 'Nodes in the cluster view (from etcd).',
    registers: [this.registry],
    aggregator: 'max',
  });
  readonly clusterViewEndpoints = new Gauge({
    name: 'canonport_cluster_view_endpoints',
    help: 'Listener records (service endpoints) in the cluster view.',
    registers: [this.registry],
    aggregator: 'max',
  });
  readonly clusterViewState = new Gauge({
    name: 'canonport_cluster_view_state',
    help: 'The cluster view state: 1 for the current one of missing, synced, stale (with --workers: 1 when any process is in it).',
    labelNames: ['state'] as const,
    registers: [this.registry],
    aggregator: 'max',
  });
  /** Read at scrape time; the cluster sets it while it runs. */
  clusterStalenessSource: (() => number) | undefined;
  readonly clusterViewStaleness: Gauge = new Gauge({
    name: 'canonport_cluster_view_staleness_seconds',
    help: 'Seconds since the cluster view stopped being synced with etcd; 0 while synced.',
    registers: [this.registry],
    aggregator: 'max',
    collect: () => {
      this.clusterViewStaleness.set(this.clusterStalenessSource?.() ?? 0);
    },
  });
  readonly clusterEtcdWrites = new Counter({
    name: 'canonport_cluster_etcd_writes_total',
    help: 'Writes this node sent to etcd, by kind (put, delete, txn, lease_grant, lease_revoke); keepalives are not writes.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly clusterIgnoredValues = new Counter({
    name: 'canonport_cluster_ignored_values_total',
    help: 'Keys or values under the cluster prefix ignored, by reason (foreign_key, too_large, bad_json, invalid, key_mismatch).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly clusterRefusedEntries = new Counter({
    name: 'canonport_cluster_refused_entries_total',
    help: 'Cluster view entries refused (or displaced by a better-ranked one) by a cap, by kind (node, endpoint, node_instances, node_addresses, node_bytes, drain, node_drains, ack, node_acks).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly clusterRefusedAddresses = new Counter({
    name: 'canonport_cluster_refused_addresses_total',
    help: 'Addresses no host can have, taken out of records under the cluster prefix, by reason (loopback, unspecified, multicast, broadcast, reserved, link_local, metadata).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly clusterLeaseGrants = new Counter({
    name: 'canonport_cluster_lease_grants_total',
    help: 'etcd leases granted to this node, by reason (start, lost: the previous one expired or was revoked).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly clusterViewLists = new Counter({
    name: 'canonport_cluster_view_lists_total',
    help: 'Full lists of the cluster prefix, by reason (start, compacted: etcd compacted past the watch revision, watch_cancelled: etcd ended the watch, dropped: after the maximum staleness, too_large: the watch was sent a batch larger than a message, refused: entries a cap refused were lost and room appeared).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly clusterEtcdErrors = new Counter({
    name: 'canonport_cluster_etcd_errors_total',
    help: 'Failed etcd operations, by operation (list, watch, publish, lease).',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly readinessProbes = new Counter({
    name: 'canonport_readiness_probes_total',
    help: 'Readiness probes of this host\'s listeners, by kind (detect, http, grpc_check, grpc_watch) and outcome (ready, not-ready, an HTTP status, grpc, http, neither, timeout, refused).',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly readinessListeners = new Gauge({
    name: 'canonport_readiness_listeners',
    help: 'This host\'s claimed listeners by readiness state (ready, not-ready, draining, unknown: no verdict yet, so not published).',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  readonly noReadyAnswers = new Counter({
    name: 'canonport_cluster_no_ready_instance_total',
    help: 'Answers for a service some host runs but none reports ready: answered with every listening, not-draining instance (panic), by service.',
    labelNames: ['service'] as const,
    registers: [this.registry],
  });
  readonly clusterDrains = new Counter({
    name: 'canonport_cluster_drains_total',
    help: 'Drains requested on this node (canonport drain), by result (acked: every live daemon dropped it, timeout, refused).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly clusterNodeConflicts = new Counter({
    name: 'canonport_cluster_node_conflicts_total',
    help: 'Times this daemon found its node name held by another live daemon (side: refused at start, or taken: another daemon wrote over this one).',
    labelNames: ['side'] as const,
    registers: [this.registry],
  });
  // --- end of cluster mode ---

  /** The event loop's delay, sampled while queries and calls come in (event-loop.ts); null without default metrics. */
  readonly eventLoop: EventLoopDelay | null = null;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) {
      // prom-client's event-loop collector samples every 10 ms for ever (100 wake-ups a second on an idle
      // daemon) and cannot be left out: its timer is pushed out of reach (2^31 - 1 ms) and its series are
      // replaced by EventLoopDelay's, same names, sampled only while the daemon is busy.
      collectDefaultMetrics({ register: this.registry, prefix: PREFIX, eventLoopMonitoringPrecision: 2 ** 31 - 1 });
      for (const name of EVENT_LOOP_LAG_SERIES) this.registry.removeSingleMetric(`${PREFIX}${name}`);
      this.eventLoop = new EventLoopDelay(this.registry, PREFIX);
    }
  }

  /** A gRPC call: keeps the event-loop delay sampled (DNS queries do it through countQuery). */
  countActivity(): void {
    this.eventLoop?.active();
  }

  /** Stops the event-loop sampling (tests start many daemons in one process). */
  close(): void {
    this.eventLoop?.close();
  }

  /**
   * One answered query. Called for every packet, so it only bumps a plain
   * number under a packed integer key; the counts reach dnsQueries when it
   * is scraped (its collect hook). prom-client's inc() validates and hashes
   * its label object on every call: ~0.28 µs, 3% of a canonical answer
   * (perf, dnsperf against serve), for a figure read every 15 s or so.
   */
  countQuery(qtype: number, rcode: number, source: string, transport: string): void {
    this.queryTally.add(queryKey(qtype, rcode, source, transport));
    this.eventLoop?.active();
  }

  /**
   * Takes back queries counted by countQuery and dnsDuration before any
   * scrape could read them: the DNS warm-up's (dns/server.ts warmUp), which
   * run through the very counting code real queries do, so it is compiled
   * for them too, and must not show as queries.
   */
  uncountQueries(counted: readonly { qtype: number; rcode: number; source: string; transport: string; seconds: number }[]): void {
    for (const c of counted) {
      this.queryTally.add(queryKey(c.qtype, c.rcode, c.source, c.transport), -1);
      this.dnsDuration.observe(c.source, c.seconds, -1);
    }
    // Nor are they activity: the event-loop delay sleeps again until a real query.
    if (counted.length > 0) this.eventLoop?.forget();
  }

  /** One forwarding-cache lookup: per query too, so counted like countQuery. */
  countCacheLookup(result: 'hit' | 'miss' | 'stale'): void {
    this.lookupTally.add(result);
  }
}

/**
 * A histogram labelled by answer source, observed on every query. prom-
 * client's Histogram.observe() validates and hashes its label object on
 * each call: about 240 bytes of garbage per query, a fifth of what a
 * canonical answer allocates (issue 24: allocation on the hot path is what
 * brings the minor GCs that make the slow 1 %). Here each source has an
 * array of bucket counts; the registry reads them as prom-client's own
 * histogram would export them (same series, same labels), and
 * AggregatorRegistry sums them across --workers like any histogram.
 */
export class SourceHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** Per source (SOURCES order, then 'unknown'): bucket counts (not cumulative), then sum and count. */
  private readonly data: { buckets: Float64Array; sum: number; count: number }[];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly upperBounds: readonly number[],
    registry: PromRegistry,
  ) {
    this.data = [...SOURCES, 'unknown'].map(() => ({ buckets: new Float64Array(upperBounds.length), sum: 0, count: 0 }));
    registry.registerMetric(this as unknown as Parameters<PromRegistry['registerMetric']>[0]);
  }

  /** One observation (`weight` −1 takes one back: Metrics.uncountQueries). */
  observe(source: string, seconds: number, weight = 1): void {
    const i = SOURCES.indexOf(source);
    const d = this.data[i < 0 ? SOURCES.length : i]!;
    d.sum += seconds * weight;
    d.count += weight;
    const b = this.upperBounds;
    for (let k = 0; k < b.length; k++) {
      if (seconds <= b[k]!) {
        d.buckets[k]! += weight;
        break;
      }
    }
  }

  /** The series as prom-client's Histogram.get() gives them; only sources seen so far, as it does. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] }> {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    this.data.forEach((d, i) => {
      if (d.count === 0) return;
      const source = [...SOURCES, 'unknown'][i]!;
      let acc = 0;
      this.upperBounds.forEach((le, k) => {
        acc += d.buckets[k]!;
        values.push({ labels: { le, source }, value: acc, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', source }, value: d.count, metricName: `${this.name}_bucket` });
      values.push({ labels: { source }, value: d.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { source }, value: d.count, metricName: `${this.name}_count` });
    });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    for (const d of this.data) {
      d.buckets.fill(0);
      d.sum = 0;
      d.count = 0;
    }
  }
}

/**
 * Counts kept as plain numbers between scrapes, for counters bumped on
 * every query: a counter's collect hook drains them into prom-client.
 */
class Tally<K> {
  private readonly counts = new Map<K, number>();

  add(key: K, n = 1): void {
    this.counts.set(key, (this.counts.get(key) ?? 0) + n);
  }

  drain(into: (key: K, n: number) => void): void {
    // Zero after a take-back (uncountQueries): nothing happened under that key.
    for (const [key, n] of this.counts) if (n !== 0) into(key, n);
    this.counts.clear();
  }
}

const PREFIX = 'canonport_';

const TYPE_LABELS = ['other', 'A', 'NS', 'CNAME', 'SOA', 'PTR', 'MX', 'TXT', 'AAAA', 'SRV', 'HTTPS', 'SVCB', 'ANY'] as const;
const TYPE_INDEX = new Map<number, number>([1, 2, 5, 6, 12, 15, 16, 28, 33, 65, 64, 255].map((t, i) => [t, i + 1]));
const RCODE_LABELS = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
const SOURCES = ['canonical', 'cache', 'stale', 'forward', 'refused', 'error', 'builtin'];
const TRANSPORTS = ['udp', 'tcp', 'internal'];

/** type × rcode (12 bits, extended codes included) × source × transport in one integer. */
function queryKey(qtype: number, rcode: number, source: string, transport: string): number {
  const s = SOURCES.indexOf(source);
  const t = TRANSPORTS.indexOf(transport);
  return (((TYPE_INDEX.get(qtype) ?? 0) * 4096 + (rcode & 0xfff)) * 8 + (s < 0 ? 7 : s)) * 4 + (t < 0 ? 3 : t);
}

function queryLabels(key: number): { type: string; rcode: string; source: string; transport: string } {
  const t = key % 4;
  const s = Math.floor(key / 4) % 8;
  const rcode = Math.floor(key / 32) % 4096;
  const type = Math.floor(key / (32 * 4096));
  return {
    type: TYPE_LABELS[type] ?? 'other',
    rcode: RCODE_LABELS[rcode] ?? String(rcode),
    source: SOURCES[s] ?? 'unknown',
    transport: TRANSPORTS[t] ?? 'unknown',
  };
}
