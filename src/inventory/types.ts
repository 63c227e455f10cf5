/** What the inventory reports: the listening sockets of one host, named by canonical port. */

/** One listening socket on this host, named by canonical port. */
export interface InventoryListener {
  port: number;
  address: string;
  family: 'tcp' | 'tcp6';
  /** Services the port is canonical for; empty when nobody claims it. */
  services: string[];
  version: string;
  versionSource: 'port' | 'http' | '';
  scheme: string;
}

export interface InventorySnapshot {
  host: string;
  collectedAtMs: number;
  listeners: InventoryListener[];
  /**
   * The digest of the registry that named the listeners (Registry.digest:
   * hex SHA-256 of what it says about names and ports); absent or "" when
   * unknown (a daemon from before the field). Hosts with different digests
   * may name one port differently.
   */
  registryDigest?: string | undefined;
}

export interface InventoryProvider {
  /** The latest snapshot; never rejects (an unreadable /proc gives an empty list and a log line). */
  snapshot(): Promise<InventorySnapshot>;
}
