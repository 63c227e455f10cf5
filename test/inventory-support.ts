/**
 * Real sockets for the inventory and fleet tests: listeners on canonical
 * ports (the first candidate whose port is free here), HTTP servers answering
 * a version path, and a minimal gRPC daemon serving Inventory.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server } from 'node:net';
import { versionedPort } from '../src/scheme/index.js';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { canonportService } from '../src/grpc/proto.js';
import type { InventoryProvider } from '../src/inventory/types.js';
import { base32Port } from '../src/scheme/index.js';
import { closedPort } from './helpers/ports.js';

export const REPO = fileURLToPath(new URL('..', import.meta.url));

type AnyServer = Server | HttpServer;

/** Listens on host:port; resolves false (and leaves nothing open) when the port is taken. */
/**
 * Every connection a test server accepts, so closing it never waits on one.
 * The servers sit on canonical ports of this host, and every inventory
 * running meanwhile (other test files probe each claimed port with HTTP)
 * may hold a connection to them: close() would wait for it, and a plain TCP
 * server never ends one. That kept world.close() past the hook timeout.
 */
const accepted = new WeakMap<AnyServer, Set<import('node:net').Socket>>();

function tryListen(server: AnyServer, port: number, host: string): Promise<boolean> {
  if (!accepted.has(server)) {
    const sockets = new Set<import('node:net').Socket>();
    accepted.set(server, sockets);
    server.on('connection', (s: import('node:net').Socket) => {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    });
  }
  return new Promise((resolve) => {
    const onError = () => {
      server.removeListener('listening', onListening);
      resolve(false);
    };
    const onListening = () => {
      server.removeListener('error', onError);
      resolve(true);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, host, exclusive: true });
  });
}

export function closeServer(server: AnyServer): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    for (const s of accepted.get(server) ?? []) s.destroy();
  });
}

/** A TCP server that accepts and never answers (a probe of it times out). */
export function silentTcpServer(): Server {
  const sockets = new Set<import('node:net').Socket>();
  const server = createTcpServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  // close() waits for open connections; end them so teardown never hangs.
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void) => {
    for (const s of sockets) s.destroy();
    return close(cb);
  };
  return server;
}

/** An HTTP server answering `routes[path]` (status 200, given type), 404 otherwise. */
export function versionServer(routes: Record<string, { body: string; type?: string; status?: number }>): HttpServer {
  return createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const r = routes[req.url ?? ''];
    if (!r) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(r.status ?? 200, { 'content-type': r.type ?? 'text/plain' }).end(r.body);
  });
}

export interface Bound<S extends AnyServer> {
  name: string;
  port: number;
  servers: S[];
}

/**
 * Binds `make()` on the canonical (base32) port of the first candidate name
 * whose port is free on every host in `hosts`. Fails the test naming the
 * candidates when none is free.
 */
export async function bindCanonical<S extends AnyServer>(candidates: readonly string[], make: () => S, hosts: readonly string[] = ['127.0.0.1']): Promise<Bound<S>> {
  for (const name of candidates) {
    const port = base32Port(name);
    const servers = await bindAll(port, make, hosts);
    if (servers) return { name, port, servers };
  }
  throw new Error(`none of the canonical ports of ${candidates.join(', ')} is free on ${hosts.join(' and ')}`);
}

/** Binds make() on `port` on every host, or nothing at all. */
async function bindAll<S extends AnyServer>(port: number, make: () => S, hosts: readonly string[]): Promise<S[] | null> {
  const servers: S[] = [];
  for (const host of hosts) {
    const s = make();
    if (!(await tryListen(s, port, host))) {
      await Promise.all(servers.map(closeServer));
      return null;
    }
    servers.push(s);
  }
  return servers;
}

/** A loopback port above 33791 (outside every scheme), bound by a TCP server. Bounded retries. */
export async function bindUnclaimed(): Promise<{ port: number; server: Server }> {
  for (let i = 0; i < 50; i++) {
    const s = createTcpServer();
    await tryListen(s, 0, '127.0.0.1');
    const port = (s.address() as { port: number }).port;
    if (port > 33791) return { port, server: s };
    await closeServer(s);
  }
  throw new Error('no ephemeral port above 33791 in 50 tries');
}

export { closedPort };

/** A gRPC server with the Canonport service whose Inventory answers from `provider` (the daemon's wiring, minimal). */
export async function startInventoryDaemon(provider: InventoryProvider, host = '127.0.0.1'): Promise<{ address: string; server: grpc.Server }> {
  const server = new grpc.Server();
  server.addService(canonportService().service, {
    Inventory: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      provider.snapshot().then(
        (snap) => cb(null, snap),
        (err: Error) => cb({ code: grpc.status.INTERNAL, details: err.message }),
      );
    },
  });
  const bindHost = host.includes(':') ? `[${host}]` : host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${bindHost}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: `${bindHost}:${port}`, server };
}

export function stopDaemon(server: grpc.Server): void {
  server.forceShutdown();
}

export { runCli } from './helpers/cli.js';

/** Names whose base32 ports (27648–32767: prefixes q–u, below the ephemeral range) nothing here is likely to use. */
export const CANDIDATES = {
  plain: ['qmx-inv', 'qnb-inv', 'qpc-inv', 'qrd-inv', 'qsf-inv', 'qtg-inv'],
  http: ['rmx-inv', 'rnb-inv', 'rpc-inv', 'rrd-inv', 'rsf-inv', 'rtg-inv'],
  json: ['smx-inv', 'snb-inv', 'spc-inv', 'srd-inv', 'ssf-inv', 'stg-inv'],
  dual: ['tmx-inv', 'tnb-inv', 'tpc-inv', 'trd-inv', 'tsf-inv', 'ttg-inv'],
  silent: ['umx-inv', 'unb-inv', 'upc-inv', 'urd-inv', 'usf-inv', 'utg-inv'],
} as const;

/** Ids whose version 2 is a valid versioned port (8102, 8302…; an id of two digits gives 81102, over 65535). */
export const VERSIONED_IDS = [1, 3, 5, 7, 9, 2, 4, 6, 8] as const;

/**
 * A real TCP listener on the versioned port (version 2) of the first id in
 * VERSIONED_IDS (or the last, `fromEnd`) whose port is free on 127.0.0.1.
 */
export async function bindVersioned(fromEnd = false): Promise<{ id: number; port: number; servers: Server[] }> {
  const ids = fromEnd ? VERSIONED_IDS.slice().reverse() : VERSIONED_IDS;
  for (const id of ids) {
    const port = versionedPort(id, 2)!;
    const servers = await bindAll(port, () => createTcpServer(), ['127.0.0.1']);
    if (servers) return { id, port, servers };
  }
  throw new Error(`no versioned test port free among ${ids.map((id) => versionedPort(id, 2)).join(', ')}`);
}

/**
 * Two daemons on loopback (127.0.0.1 and ::1) over one host's real sockets,
 * disagreeing the way two hosts of a fleet would: daemon A's registry probes
 * `/version` (1.4.2) where B's probes `/version-old` (1.4.1) on the same
 * HTTP service. Both know `user` (versioned, version 2 from the port) and
 * `ghost` (pinned to a port nothing listens on). `closed` is a loopback
 * address nothing answers.
 */
export interface FleetWorld {
  httpName: string;
  httpPort: number;
  userPort: number;
  a: string;
  b: string;
  closed: string;
  /** Accepts TCP and never answers: a daemon that hangs. */
  hanging: string;
  close(): Promise<void>;
}

export async function startFleetWorld(): Promise<FleetWorld> {
  const { HostInventory } = await import('../src/inventory/inventory.js');
  const { Metrics } = await import('../src/metrics/metrics.js');
  const { parseRegistry } = await import('../src/registry/load.js');
  const opened: AnyServer[] = [];
  const daemons: grpc.Server[] = [];
  const close = async () => {
    daemons.forEach(stopDaemon);
    await Promise.all(opened.map(closeServer));
  };
  try {
    const http = await bindCanonical(CANDIDATES.http, () =>
      versionServer({ '/version': { body: '1.4.2\n' }, '/version-old': { body: '1.4.1\n' } }),
    );
    opened.push(...http.servers);
    const user = await bindVersioned(true);
    opened.push(...user.servers);
    const ghostPort = await closedPort();
    const registryFor = (path: string) =>
      parseRegistry(
        `services:\n  user: { id: ${user.id}, version: 2 }\n  ${http.name}: { versionPath: ${path} }\n  ghost: { port: ${ghostPort} }\n`,
        'fleet.yaml',
      );
    const inventoryFor = (path: string, hostname: string) => {
      const registry = registryFor(path);
      return new HostInventory({ state: () => ({ registry, zones: [] }), metrics: new Metrics({ defaultMetrics: false }), hostname, probeTimeoutMs: 1000 });
    };
    const a = await startInventoryDaemon(inventoryFor('/version', 'host-a'), '127.0.0.1');
    daemons.push(a.server);
    const b = await startInventoryDaemon(inventoryFor('/version-old', 'host-b'), '::1');
    daemons.push(b.server);
    const hang = silentTcpServer();
    await tryListen(hang, 0, '127.0.0.1');
    opened.push(hang);
    return {
      httpName: http.name,
      httpPort: http.port,
      userPort: user.port,
      a: a.address,
      b: b.address,
      closed: `127.0.0.1:${await closedPort()}`,
      hanging: `127.0.0.1:${(hang.address() as { port: number }).port}`,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
