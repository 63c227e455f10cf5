/**
 * Cluster mode's surface for the rest of canonport: the daemon composes a
 * Cluster from ClusterOptions, feeds it inventory snapshots (publish), and
 * answers read `cluster.reader` (a ClusterViewReader: memory only).
 */
export {
  Cluster,
  CLUSTER_SCAN_INTERVAL_MS,
  DEFAULT_LEASE_TTL_SECONDS,
  defaultNodeName,
  parseClusterEndpoints,
  type ClusterDeps,
  type ClusterOptions,
  type ClusterTlsOptions,
  type EtcdEndpoint,
} from './cluster.js';
export { DEFAULT_CAPS, type ClusterEndpoint, type ClusterViewReader, type ViewCaps, type ViewState, type ViewStatus } from './view.js';
export type { PublisherStatus } from './publisher.js';
export {
  DEFAULT_PREFIX,
  LAYOUT_VERSION,
  decodeEntry,
  layoutPrefix,
  listenerKey,
  nodeKey,
  ListenerRecordSchema,
  NodeRecordSchema,
  type ListenerRecord,
  type NodeRecord,
} from './keys.js';
