import * as grpc from '@grpc/grpc-js';
import { silentLogger } from '../src/log.js';
import { Metrics } from '../src/metrics/metrics.js';
import { addXdsService } from '../src/xds/server.js';
import { MemoryDiscovery } from '../test/helpers/xds-discovery.js';

/**
 * The xDS control plane alone in its own process, for the bench: its CPU
 * and memory are then its own, apart from the clients'. The bench drives
 * the in-memory discovery over the IPC channel (fork) and reads this
 * process's figures back.
 *
 *   → {id, op: 'set', name, port, addresses} | {id, op: 'setMany', entries}
 *     | {id, op: 'changed'} | {id, op: 'stats'} | {id, op: 'gc'}
 *   ← {ready: true, address} once, then {id, ...reply} per request
 */

export type ControlRequest =
  | { id: number; op: 'set'; name: string; port: number; addresses: string[] }
  | { id: number; op: 'setMany'; entries: Array<[string, number, string[]]> }
  | { id: number; op: 'changed' }
  | { id: number; op: 'stats' }
  | { id: number; op: 'gc' };

export interface ControlStats {
  /** process.cpuUsage() so far, µs. */
  cpuUs: number;
  rss: number;
  heapUsed: number;
  streams: number;
  names: number;
  pushes: number;
  resourcesSent: number;
  acks: number;
  nacks: number;
  lookups: number;
  /** Epoch ms (sub-ms precision) of the last response written: server side of the fan-out time. */
  lastPushAt: number;
}

const sum = async (c: { get(): Promise<{ values: Array<{ value: number }> }> }) => (await c.get()).values.reduce((n, v) => n + v.value, 0);

async function main(): Promise<void> {
  const discovery = new MemoryDiscovery();
  const metrics = new Metrics({ defaultMetrics: false });
  const server = new grpc.Server();
  const handle = addXdsService(server, { discovery, metrics, logger: silentLogger });
  // When the last response went out: the counter moves as each is written.
  let lastPushAt = 0;
  const inc = metrics.xdsPushes.inc.bind(metrics.xdsPushes);
  metrics.xdsPushes.inc = ((...args: Parameters<typeof inc>) => {
    lastPushAt = performance.timeOrigin + performance.now();
    return inc(...args);
  }) as typeof inc;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const reply = (msg: object) => process.send!(msg);
  process.on('message', (m: ControlRequest) => {
    void (async () => {
      switch (m.op) {
        case 'set':
          discovery.set(m.name, m.port, m.addresses);
          return reply({ id: m.id });
        case 'setMany':
          discovery.setMany(m.entries);
          return reply({ id: m.id });
        case 'changed':
          discovery.changed();
          return reply({ id: m.id });
        case 'gc':
          (globalThis as { gc?: () => void }).gc?.();
          return reply({ id: m.id });
        case 'stats': {
          const cpu = process.cpuUsage();
          const mem = process.memoryUsage();
          const stats: ControlStats = {
            cpuUs: cpu.user + cpu.system,
            rss: mem.rss,
            heapUsed: mem.heapUsed,
            streams: handle.streams(),
            names: handle.names(),
            pushes: await sum(metrics.xdsPushes),
            resourcesSent: await sum(metrics.xdsResourcesSent),
            acks: await sum(metrics.xdsAcks),
            nacks: await sum(metrics.xdsNacks),
            lookups: [...discovery.lookups.values()].reduce((a, b) => a + b, 0),
            lastPushAt,
          };
          return reply({ id: m.id, stats });
        }
      }
    })();
  });
  process.on('disconnect', () => {
    handle.close();
    server.forceShutdown();
    process.exit(0);
  });
  reply({ ready: true, address: `127.0.0.1:${port}` });
}

void main();
