import type { ClusterViewReader } from '../cluster/view.js';
import { fleetDocument } from '../fleet/document.js';
import { fleetOfHost } from '../fleet/fleet.js';
import { ViewFleet } from '../fleet/from-cluster.js';
import type { InventoryProvider } from '../inventory/types.js';
import type { FeedSource } from './feed.js';

/**
 * Where a daemon's fleet page reads the fleet: in cluster mode the view it
 * answers from (the whole cluster, as `fleet --cluster` prints it: the same
 * build, ViewFleet, kept between reads so a change costs the hosts it
 * touched, and fleetDocument); without it, its own inventory.
 */

export function viewSource(reader: ClusterViewReader, where: { endpoints: string; prefix: string }): FeedSource & { fleet: ViewFleet } {
  const fleet = new ViewFleet(reader, where);
  return {
    fleet,
    read: () => fleetDocument(fleet.read()),
    onChange: (listener) => reader.onChange(listener),
  };
}

/** This host's inventory; `changed()` is called with every new snapshot (the daemon's inventory refresh). */
export function inventorySource(inventory: InventoryProvider): FeedSource & { changed(): void } {
  const listeners = new Set<() => void>();
  return {
    read: async () => fleetDocument(fleetOfHost(await inventory.snapshot())),
    onChange: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    changed: () => {
      for (const l of [...listeners]) l();
    },
  };
}
