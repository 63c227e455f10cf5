import type { ObservedSource } from '../discovery/discovery.js';
import type { ClusterViewReader } from './view.js';

/**
 * The cluster view as the discovery core reads it. A view that is missing
 * (never synced, or dropped after the maximum staleness) answers null, so
 * answers fall back to what one host knows; a stale one keeps answering.
 */
export function observedFrom(view: ClusterViewReader, localNode?: string): ObservedSource {
  const present = () => view.status().state !== 'missing';
  return {
    onPort: (port) => (present() ? view.endpointsOnPort(port) : null),
    ports: () => (present() ? view.ports() : null),
    nodeAddresses: (node) => (present() ? (view.node(node)?.addresses ?? null) : null),
    instanceAddress: (node, namespace) => (present() ? (view.instanceAddress(node, namespace) ?? null) : null),
    get generation() {
      // The state counts too: a view dropped or synced again changes every answer.
      return view.generation * 4 + ['missing', 'synced', 'stale'].indexOf(view.status().state);
    },
    onChange: (listener) => view.onChange(listener),
    localNode,
  };
}
