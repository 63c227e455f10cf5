import type etcd3 from 'etcd3';
import { encodeListener, encodeNode, legacyNodeKey as nodeKey, listenerKey } from '../../src/cluster/keys.js';
import { base32Port } from '../../src/scheme/index.js';

/**
 * The cluster bench's scale generator (bench/cluster-scale.ts, bench/ui.ts,
 * the fleet page's tests): N nodes × S services in the v1 layout, values a
 * real publisher would write.
 */

/**
 * Service names whose base32 ports differ: the first three characters make
 * the port. The first 484 end their prefix in `x`; more (a pool of
 * thousands, the latency bench's) end it in `a`–`u`, which never meets `x`.
 */
export function serviceNames(n: number): string[] {
  const alphabet = 'abcdefghijklmnopqrstuv';
  const third = 'abcdefghijklmnopqrstu';
  if (n > 484 + 22 * 22 * third.length) throw new Error(`at most ${484 + 22 * 22 * third.length} services with distinct ports`);
  return Array.from({ length: n }, (_, i) => {
    if (i < 484) return `${alphabet[Math.floor(i / 22) % 22]}${alphabet[i % 22]}x-svc`;
    const j = i - 484;
    return `${alphabet[Math.floor(j / (22 * third.length)) % 22]}${alphabet[Math.floor(j / third.length) % 22]}${third[j % third.length]}-svc`;
  });
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
  /** Services per node. */
  services: number;
  /**
   * Distinct services over the fleet (default `services`: every node runs
   * the same ones). Larger, node i runs services i·S … i·S + S − 1 of the
   * pool (mod pool), so each has nodes · S / pool instances.
   */
  pool?: number;
  /** Registry digest of node i (default "" for all). */
  digest?: (i: number) => string;
  /** Version of service s on node i (default 1.0.0). */
  version?: (i: number, service: string) => string;
  started?: string;
}

/** The names of the services node i runs (ScaleOptions.pool). */
export function servicesOf(i: number, opts: Pick<ScaleOptions, 'services' | 'pool'>): string[] {
  const pool = opts.pool ?? opts.services;
  const names = serviceNames(pool);
  if (pool === opts.services) return names;
  return Array.from({ length: Math.min(opts.services, pool) }, (_, k) => names[(i * opts.services + k) % pool]!);
}

/** Node i's keys: its record and one listener per service, bound to `::` and reached at its one address. */
export function scaleNode(prefix: string, i: number, opts: ScaleOptions): ScaleNode {
  const name = nodeName(i);
  const started = opts.started ?? new Date().toISOString();
  const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const puts: [string, string][] = [
    [nodeKey(prefix, name), encodeNode({ name, addresses: [address], canonportVersion: 'bench', registryDigest: opts.digest?.(i) ?? '', started })],
    ...servicesOf(i, opts).map((s): [string, string] => [
      listenerKey(prefix, name, base32Port(s)),
      encodeListener({ port: base32Port(s), services: [s], scheme: 'base32', version: opts.version?.(i, s) ?? '1.0.0', versionSource: 'http', since: started, bind: [{ family: 'tcp6', address: '::' }] }),
    ]),
  ];
  return { name, puts };
}

/**
 * Writes every node's keys, one transaction per node, 8 in flight; with
 * `ttl`, each node under its own lease kept alive (returned, node i's at
 * index i: revoke or release them when done).
 */
export async function writeScaleFleet(client: etcd3.Etcd3, prefix: string, opts: ScaleOptions & { ttl?: number | undefined }): Promise<etcd3.Lease[]> {
  const leases: etcd3.Lease[] = [];
  let next = 0;
  const write = async (i: number): Promise<void> => {
    let leaseId: string | undefined;
    if (opts.ttl !== undefined) {
      const lease = client.lease(opts.ttl, { autoKeepAlive: true });
      leases[i] = lease;
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
