import { parseArgs } from 'node:util';
import etcd3 from 'etcd3';
import { Cluster } from '../src/cluster/cluster.js';
import { base32Port } from '../src/scheme/index.js';
import { Metrics } from '../src/metrics/metrics.js';
import { startEtcd } from '../test/helpers/etcd.js';
import { serviceNames, writeScaleFleet } from '../test/helpers/scale-fleet.js';
import { runScript } from './run-script.js';

/**
 * Cluster-mode scale: a bounded generator writes N nodes × S services into
 * a real etcd (the v1 layout, values a real publisher would write), then a
 * daemon's view loads it. Reports the write time, the time for a view to
 * list and index everything, the view's heap, the cost of one answer's
 * lookup, and etcd's write and keepalive rates at steady state with one
 * lease per node kept alive.
 *
 *   node scripts/build.mjs && npx tsc -p tsconfig.bench.json
 *   node --expose-gc dist-bench/bench/cluster-scale.js --nodes 1000 --services 20
 */

const { values: args } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000' },
    services: { type: 'string', default: '20' },
    ttl: { type: 'string', default: '10' },
    'steady-seconds': { type: 'string', default: '10' },
    leases: { type: 'boolean', default: true },
  },
});
const NODES = Number(args.nodes);
const SERVICES = Number(args.services);
const TTL = Number(args.ttl);
const STEADY_S = Number(args['steady-seconds']);
// Bounded: this runs on a 2-core machine next to other work.
if (!(NODES >= 1 && NODES <= 10_000 && SERVICES >= 1 && SERVICES <= 100 && STEADY_S >= 1 && STEADY_S <= 60)) {
  console.error('want 1 ≤ --nodes ≤ 10000, 1 ≤ --services ≤ 100, 1 ≤ --steady-seconds ≤ 60');
  process.exit(2);
}
const PREFIX = '/canonport-bench';

async function main(): Promise<void> {
  const etcd = await startEtcd();
  const client = new etcd3.Etcd3({ hosts: etcd.endpoints.map((e) => `http://${e}`) });
  const gc = (globalThis as { gc?: () => void }).gc;
  try {
    const services = serviceNames(SERVICES).map((name) => ({ name, port: base32Port(name) }));

    // --- write N × (1 + S) keys, one transaction per node, 8 in flight (test/helpers/scale-fleet.ts) ---
    const t0 = performance.now();
    const leases = await writeScaleFleet(client, PREFIX, { nodes: NODES, services: SERVICES, ttl: args.leases ? TTL : undefined });
    const writeMs = performance.now() - t0;
    const keys = NODES * (1 + SERVICES);

    // --- one daemon's view loads it ---
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const metrics = new Metrics({ defaultMetrics: false });
    const view = new Cluster({ endpoints: `etcd://${etcd.endpoints[0]}`, node: 'viewer', prefix: PREFIX, advertise: ['127.0.0.1'], caps: { maxNodes: 20_000, maxEndpoints: 2_000_000 } }, { metrics });
    const t1 = performance.now();
    view.start();
    await view.whenSynced(120_000);
    const loadMs = performance.now() - t1;
    gc?.();
    const heapAfter = process.memoryUsage().heapUsed;
    const port = services[0]!.port;
    const t2 = performance.now();
    const first = view.view.endpointsOnPort(port);
    const firstLookupMs = performance.now() - t2;
    const t3 = performance.now();
    const LOOKUPS = 100_000;
    for (let i = 0; i < LOOKUPS; i++) view.view.endpointsOnPort(port);
    const cachedLookupNs = ((performance.now() - t3) * 1e6) / LOOKUPS;

    // --- steady state: nothing changes; count etcd's writes and lease renewals ---
    const puts0 = await etcd.metric('etcd_debugging_mvcc_put_total');
    const renew0 = await etcd.metric('etcd_debugging_lease_renewed_total');
    const rev0 = await etcd.revision();
    await new Promise((r) => setTimeout(r, STEADY_S * 1000));
    const puts1 = await etcd.metric('etcd_debugging_mvcc_put_total');
    const renew1 = await etcd.metric('etcd_debugging_lease_renewed_total');
    const rev1 = await etcd.revision();

    console.log(
      JSON.stringify(
        {
          nodes: NODES,
          servicesPerNode: SERVICES,
          keys,
          leases: leases.length,
          write: { ms: Math.round(writeMs), keysPerSecond: Math.round(keys / (writeMs / 1000)) },
          view: {
            loadMs: Math.round(loadMs),
            nodes: view.view.nodes().length,
            endpoints: view.view.endpointTotal,
            heapBytes: heapAfter - heapBefore,
            heapMeasured: gc !== undefined,
            endpointsOnOnePort: first.length,
            firstLookupMs: Number(firstLookupMs.toFixed(3)),
            cachedLookupNs: Math.round(cachedLookupNs),
          },
          steady: {
            seconds: STEADY_S,
            etcdPutsPerSecond: (puts1 - puts0) / STEADY_S,
            revisionsPerSecond: (rev1 - rev0) / STEADY_S,
            keepalivesPerSecond: Number(((renew1 - renew0) / STEADY_S).toFixed(1)),
            expectedKeepalivesPerSecond: Number((leases.length / (TTL / 3)).toFixed(1)),
          },
        },
        null,
        2,
      ),
    );
    await view.stop();
  } finally {
    client.close();
    await etcd.stop();
  }
}

runScript(main);
