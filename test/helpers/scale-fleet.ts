import type etcd3 from 'etcd3';
import { encodeListener, encodeNode, legacyNodeKey as nodeKey, listenerKey } from '../../src/cluster/keys.js';
import { base32Port } from '../../src/scheme/index.js';

/**
 * The cluster bench's scale generator (bench/cluster-scale.ts, bench/ui.ts,
 * the fleet page's tests): N nodes × S services in the v1 layout, values a
 * real publisher would write.
 */

/** Service names whose base32 ports differ: the first three characters make the port. */
export function serviceNames(n: number): string[] {
  const alphabet = 'abcdefghijklmnopqrstuv';
  return Array.from({ length: n }, (_, i) => `${alphabet[Math.floor(i / 22) % 22]}${alphabet[i % 22]}x-svc`);
}

export function nodeName(i: number): string {
  return `node-${String(i).padStart(5, '0')}`;
}

export interface ScaleNode {
  name: string;
  /** The node record and its listener records, as [key, value]. */
  puts: [string, string][];
}

export interface ScaleOptions {
  nodes: number;
  services: number;
  /** Registry digest of node i (default "" for all). */
  digest?: (i: number) => string;
  /** Version of service s on node i (default 1.0.0). */
  version?: (i: number, service: string) => string;
  started?: string;
}

/** Node i's keys: its record and one listener per service, bound to `::` and reached at its one address. */
export function scaleNode(prefix: string, i: number, opts: ScaleOptions): ScaleNode {
  const name = nodeName(i);
  const started = opts.started ?? new Date().toISOString();
  const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const puts: [string, string][] = [
    [nodeKey(prefix, name), encodeNode({ name, addresses: [address], canonportVersion: 'bench', registryDigest: opts.digest?.(i) ?? '', started })],
    ...serviceNames(opts.services).map((s): [string, string] => [
      listenerKey(prefix, name, base32Port(s)),
      encodeListener({ port: base32Port(s), services: [s], scheme: 'base32', version: opts.version?.(i, s) ?? '1.0.0', versionSource: 'http', since: started, bind: [{ family: 'tcp6', address: '::' }] }),
    ]),
  ];
  return { name, puts };
}

/**
 * Writes every node's keys, one transaction per node, 8 in flight; with
 * `ttl`, each node under its own lease kept alive (returned: revoke or
 * release them when done).
 */
export async function writeScaleFleet(client: etcd3.Etcd3, prefix: string, opts: ScaleOptions & { ttl?: number | undefined }): Promise<etcd3.Lease[]> {
  const leases: etcd3.Lease[] = [];
  let next = 0;
  const write = async (i: number): Promise<void> => {
    let leaseId: string | undefined;
    if (opts.ttl !== undefined) {
      const lease = client.lease(opts.ttl, { autoKeepAlive: true });
      leases.push(lease);
      leaseId = await lease.grant();
    }
    const { puts } = scaleNode(prefix, i, opts);
    await client.kv.txn({ success: puts.map(([key, value]) => ({ request_put: { key: Buffer.from(key), value: Buffer.from(value), ...(leaseId ? { lease: leaseId } : {}) } })) });
  };
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < opts.nodes) await write(next++);
    }),
  );
  return leases;
}
