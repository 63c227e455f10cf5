import { EventEmitter } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { base32Port } from '../src/scheme/index.js';
import { buildConfig } from '../src/config/config.js';
import type { ServingState } from '../src/core/state.js';
import { Discovery, type AddressResolver } from '../src/discovery/discovery.js';
import type { DaemonContext, DaemonEvents } from '../src/context.js';
import type { InventoryProvider, InventorySnapshot } from '../src/inventory/types.js';
import { Metrics } from '../src/metrics/metrics.js';
import { silentLogger } from '../src/log.js';
import { parseRegistry } from '../src/registry/load.js';
import type { Registry } from '../src/registry/registry.js';

/**
 * A real DaemonContext for gRPC tests: a real Registry parsed from YAML text,
 * the real discovery core (addresses from the registry's hosts map, or the
 * resolver a test passes), real Metrics and a real EventEmitter. reload()
 * swaps the state the way the daemon does: 'reload', and the core told.
 */
export interface TestDaemon {
  ctx: DaemonContext;
  metrics: Metrics;
  events: EventEmitter<DaemonEvents>;
  /** Replaces the state; emits 'reload' unless `silent` (a change only the periodic re-resolve sees). */
  reload(registryYaml: string, opts?: { silent?: boolean }): void;
  setReady(ready: boolean): void;
}

export const FIXED_INVENTORY: InventorySnapshot = {
  host: 'test-host',
  collectedAtMs: 1_700_000_000_123,
  listeners: [
    { port: 12082, address: '0.0.0.0', family: 'tcp', services: ['api'], version: '', versionSource: '', scheme: 'base32' },
    { port: 8102, address: '::', family: 'tcp6', services: ['v2.user'], version: '2', versionSource: 'port', scheme: 'versioned' },
  ],
};

export function testDaemon(
  registryYaml: string,
  opts: {
    inventory?: InventoryProvider;
    addresses?: (registry: () => Registry) => AddressResolver;
    ready?: boolean;
    /** Defaults to a Metrics without the process series; a test of /metrics passes one with them. */
    metrics?: Metrics;
  } = {},
): TestDaemon {
  const stateOf = (text: string): ServingState => {
    const registry = parseRegistry(text, 'test-registry.yaml');
    return { registry, zones: [...new Set([...registry.zones, 'localhost'])] };
  };
  let state = stateOf(registryYaml);
  let ready = opts.ready ?? true;
  const events = new EventEmitter<DaemonEvents>();
  const metrics = opts.metrics ?? new Metrics({ defaultMetrics: false });
  const discovery = new Discovery({ state: () => state, addresses: opts.addresses?.(() => state.registry) });
  const config = buildConfig({ upstreams: ['127.0.0.1:53'] }, {}, state.registry);
  const ctx: DaemonContext = {
    logger: silentLogger,
    metrics,
    config: () => config,
    state: () => state,
    discovery,
    inventory: opts.inventory ?? { snapshot: async () => FIXED_INVENTORY },
    events,
    ready: () => ready,
  };
  return {
    ctx,
    metrics,
    events,
    reload(text, o = {}) {
      state = stateOf(text);
      if (!o.silent) {
        events.emit('reload', state);
        discovery.changed();
      }
    },
    setReady(r) {
      ready = r;
      events.emit('ready', r);
    },
  };
}

/** Resolves when `check` passes, retrying every `everyMs`, at most `tries` times; rejects with the last failure. */
export async function eventually<T>(check: () => Promise<T>, tries = 100, everyMs = 50): Promise<T> {
  let last: unknown;
  for (let i = 0; i < tries; i++) {
    try {
      return await check();
    } catch (err) {
      last = err;
      await new Promise((r) => setTimeout(r, everyMs));
    }
  }
  throw last;
}

/** Binds a bare grpc-js server on 127.0.0.1:port (0 = any); rejects when the port is taken. */
export function bindServer(server: grpc.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
}

/** The stock health service's client constructor: the test server every canon: test dials. */
export const Health = (
  grpc.loadPackageDefinition(protoLoader.loadSync(healthProtoPath, { keepCase: true, enums: String, defaults: true })) as unknown as {
    grpc: { health: { v1: { Health: grpc.ServiceClientConstructor } } };
  }
).grpc.health.v1.Health;

/** A health server that answers SERVING for `tag` only, so a test can tell which server it reached. */
export async function healthServer(tag: string, port = 0): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  new HealthImplementation({ '': 'SERVING', [tag]: 'SERVING' }).addToServer(server);
  try {
    return { server, port: await bindServer(server, port) };
  } catch (err) {
    server.forceShutdown();
    throw err;
  }
}

/**
 * A service name whose canonical (base32) port is free on this host, with a
 * health server already listening there. Bounded: 60 candidates, all below
 * the ephemeral range.
 */
export async function healthServerOnCanonicalPort(tag: string): Promise<{ label: string; port: number; server: grpc.Server }> {
  for (const a of 'klmnop') {
    for (const b of 'abcdefghij') {
      const label = `${a}${b}q${tag.replace(/[^a-z]/g, '')}`;
      try {
        return { label, ...(await healthServer(tag, base32Port(label))) };
      } catch {
        // taken: next candidate
      }
    }
  }
  throw new Error('no free canonical port among 60 candidate names');
}

/** A unary call as a promise, for loosely typed grpc-js clients. */
export function call<T>(client: grpc.Client, method: string, req: unknown, deadlineMs = 5000): Promise<T> {
  const fn = (client as unknown as Record<string, Function>)[method]!;
  return new Promise((resolve, reject) =>
    fn.call(client, req, { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res))),
  );
}
