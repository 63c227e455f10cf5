// One cluster-mode "host" for the tests: a real HostInventory reading this
// process's /proc (so, run inside a network namespace, that namespace's
// listeners) feeding a Cluster that publishes into etcd and keeps the
// view. Runs the compiled code in dist/ (test/global-setup.ts builds it).
//
// argv[2]: JSON ClusterOptions plus { intervalMs }. stdout: one JSON line
// per event: {"event":"started"}, then {"event":"view", ...} on every view
// change. SIGTERM: clean stop (the lease is revoked). SIGKILL: a crash.
import { Cluster } from '../../dist/cluster/cluster.js';
import { HostInventory } from '../../dist/inventory/inventory.js';
import { createLogger } from '../../dist/log.js';
import { Metrics } from '../../dist/metrics/metrics.js';
import { Registry } from '../../dist/registry/registry.js';

const { intervalMs = 1000, ...options } = JSON.parse(process.argv[2]);
const logger = createLogger({ level: process.env.CANONPORT_LOG_LEVEL ?? 'warn', pretty: false });
const metrics = new Metrics({ defaultMetrics: false });
const cluster = new Cluster(options, { metrics, logger });
const state = { registry: Registry.empty(), zones: ['localhost'] };
const inventory = new HostInventory({ state: () => state, metrics, logger, intervalMs, probe: false, onSnapshot: (s) => cluster.publish(s) });

const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
cluster.view.onChange(() => {
  const nodes = cluster.view.nodes().map((n) => n.name);
  const ports = {};
  // The ports the test asks about, read through endpointsOnPort: the call answers will make.
  for (const port of new Set(options.watchPorts ?? [])) ports[port] = cluster.view.endpointsOnPort(port).map((e) => ({ node: e.node, addresses: e.addresses }));
  say({ event: 'view', generation: cluster.view.generation, state: cluster.view.status().state, nodes, ports });
});
cluster.start();
inventory.start();
say({ event: 'started', node: cluster.nodeName });

process.on('SIGTERM', async () => {
  await inventory.stop();
  await cluster.stop({ revoke: true });
  say({ event: 'stopped' });
  process.exit(0);
});
