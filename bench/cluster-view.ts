import etcd3 from 'etcd3';
import { encodeListener, encodeNode, listenerKey, nodeKey } from '../src/cluster/keys.js';
import { base32Port } from '../src/scheme/index.js';

/**
 * A synthetic cluster in a real etcd, written as the v1 layout with the
 * values real publishers write: N nodes, each running S services out of a
 * pool, each node's keys under a lease kept alive (what N daemons would
 * hold). Used by cluster-scale.ts (one daemon's view of it) and by the
 * latency bench (answers from it while listeners change).
 */

export interface ViewSpec {
  nodes: number;
  servicesPerNode: number;
  /** Distinct services; node i runs services i·S … i·S + S − 1 (mod pool). Pool = S: every node runs every service. */
  pool: number;
  prefix: string;
  /** Lease TTL of each node, seconds; 0: no leases. */
  leaseTtl: number;
}

const BASE32HEX = '0123456789abcdefghijklmnopqrstuv';

/**
 * `count` service names whose base32 ports all differ (the first three
 * characters make the port; the first is a letter): `a00-s`, `a01-s`, …
 */
export function poolServices(count: number): { name: string; port: number }[] {
  if (count > 22 * 1024) throw new Error(`at most ${22 * 1024} services with distinct ports`);
  return Array.from({ length: count }, (_, i) => {
    const name = `${BASE32HEX[10 + (i >> 10)]}${BASE32HEX[(i >> 5) & 31]}${BASE32HEX[i & 31]}-s`;
    return { name, port: base32Port(name) };
  });
}

export function nodeName(i: number): string {
  return `node-${String(i).padStart(5, '0')}`;
}

/** Indexes into the pool of the services node `i` runs. */
export function servicesOf(i: number, spec: Pick<ViewSpec, 'servicesPerNode' | 'pool'>): number[] {
  return Array.from({ length: Math.min(spec.servicesPerNode, spec.pool) }, (_, k) => (i * spec.servicesPerNode + k) % spec.pool);
}

/** A loopback-free address per node (only ever put in answers; nothing is sent to it). */
export function nodeAddress(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}

function listenerValue(service: { name: string; port: number }, since: string): string {
  return encodeListener({ port: service.port, services: [service.name], scheme: 'base32', version: '1.0.0', versionSource: 'http', since, bind: [{ family: 'tcp6', address: '::' }] });
}

export interface WrittenView {
  services: { name: string; port: number }[];
  /** Lease id per node (decimal), when leased. */
  leaseIds: (string | undefined)[];
  leases: etcd3.Lease[];
  keys: number;
  writeMs: number;
}

/** Writes the view, one transaction per node, 8 in flight. */
export async function writeView(client: etcd3.Etcd3, spec: ViewSpec): Promise<WrittenView> {
  const services = poolServices(spec.pool);
  const started = new Date().toISOString();
  const leases: etcd3.Lease[] = [];
  const leaseIds: (string | undefined)[] = [];
  const t0 = performance.now();
  let next = 0;
  const writeNode = async (i: number): Promise<void> => {
    const name = nodeName(i);
    let leaseId: string | undefined;
    if (spec.leaseTtl > 0) {
      const lease = client.lease(spec.leaseTtl, { autoKeepAlive: true });
      leases.push(lease);
      leaseId = await lease.grant();
    }
    leaseIds[i] = leaseId;
    const puts = [
      [nodeKey(spec.prefix, name), encodeNode({ name, addresses: [nodeAddress(i)], canonportVersion: 'bench', registryDigest: '', started })],
      ...servicesOf(i, spec).map((k) => [listenerKey(spec.prefix, name, services[k]!.port), listenerValue(services[k]!, started)]),
    ];
    await client.kv.txn({ success: puts.map(([key, value]) => ({ request_put: { key: Buffer.from(key!), value: Buffer.from(value!), ...(leaseId ? { lease: leaseId } : {}) } })) });
  };
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < spec.nodes) await writeNode(next++);
    }),
  );
  return { services, leaseIds, leases, keys: spec.nodes * (1 + Math.min(spec.servicesPerNode, spec.pool)), writeMs: performance.now() - t0 };
}

/**
 * Listeners opening and closing across the view at `perSecond`: every
 * tick one listener of a random node is deleted, or put back if it was
 * gone, as its host's publisher would. Each change is a watch event at
 * every daemon.
 */
export class ListenerChurn {
  private timer: NodeJS.Timeout | undefined;
  private readonly gone = new Set<string>();
  private inFlight = 0;
  changes = 0;
  errors = 0;
  private rng: () => number;

  constructor(
    private readonly client: etcd3.Etcd3,
    private readonly spec: ViewSpec,
    private readonly view: WrittenView,
    private readonly perSecond: number,
    seed = 24,
  ) {
    // Deterministic (mulberry32): every run changes the same listeners in the same order.
    let a = seed >>> 0;
    this.rng = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  start(): void {
    const since = new Date().toISOString();
    this.timer = setInterval(() => {
      // Bounded: a slow etcd must not pile up writes.
      if (this.inFlight > 50) return;
      const i = Math.floor(this.rng() * this.spec.nodes);
      const mine = servicesOf(i, this.spec);
      const service = this.view.services[mine[Math.floor(this.rng() * mine.length)]!]!;
      const key = listenerKey(this.spec.prefix, nodeName(i), service.port);
      const lease = this.view.leaseIds[i];
      const op = this.gone.delete(key)
        ? this.client.kv.put({ key: Buffer.from(key), value: Buffer.from(listenerValue(service, since)), ...(lease ? { lease } : {}) })
        : (this.gone.add(key), this.client.kv.deleteRange({ key: Buffer.from(key) }));
      this.inFlight++;
      op.then(
        () => this.changes++,
        () => this.errors++,
      ).finally(() => this.inFlight--);
    }, 1000 / this.perSecond);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 20));
  }
}
