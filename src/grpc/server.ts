import * as grpc from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import { CanonportError, ErrorCodes } from '../errors.js';
import { formatHostPort, type HostPort } from '../config/address.js';
import type { DaemonContext } from '../context.js';
import { listenerRule } from '../config/listen-policy.js';
import type { TlsSource } from '../config/tls.js';
import { ConnectionGate, listenGated } from '../net/gate.js';
import { accessInterceptor, isThisHost } from './policy.js';
import { adminService, CANONPORT_SERVICE_NAME, canonportService, ERROR_CODE_METADATA } from './proto.js';
import { createAdminService } from './admin.js';
import { addReflection } from './reflection.js';
import { malformedRequests, strictRequests } from './strict-decode.js';
import { createCanonportService, type ServiceOptions } from './service.js';
import { serverCredentials } from './tls.js';

/**
 * The daemon's gRPC listener: canonport.v1.Canonport, grpc.health.v1.Health
 * and server reflection (v1 and v1alpha) on one port, plaintext or TLS
 * (with client certificates when asked), every call checked by the access
 * policy (policy.ts) before any handler runs.
 */

export interface GrpcHandle {
  /** The address actually bound (port 0 resolved). */
  address: HostPort;
  /**
   * Health status on top of readiness: SERVING only while both this flag
   * (default true) and the last ctx 'ready' event (initially ctx.ready()) say so.
   */
  setServing(serving: boolean): void;
  /**
   * Health goes NOT_SERVING, open Watch streams end with UNAVAILABLE, other
   * calls get `graceMs` to finish, then the server is stopped hard.
   */
  close(graceMs: number): Promise<void>;
}

/** A service another module adds to the same server (xDS): added before the server binds, closed first when it closes. */
export type ExtraService = (server: grpc.Server) => { close(reason: string): void };

export interface GrpcServerOptions extends ServiceOptions {
  /** More services on the same port (the daemon adds xDS here; grpc/ does not import the layers above it). */
  services?: readonly ExtraService[] | undefined;
  /**
   * Serve TLS with this certificate set (re-read as it changes), asking
   * clients for a certificate when it has a CA: `require` rejects a client
   * without one at the handshake. Absent: plaintext.
   */
  tls?: { source: TlsSource; clientAuth: 'require' | 'optional' } | undefined;
}

/** The health service's name, as a call's path gives it. */
const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** Names the health service answers for: the server as a whole ('') and the Canonport service. */
const HEALTH_NAMES = ['', CANONPORT_SERVICE_NAME] as const;

/**
 * Counts every call, health and reflection included, in grpcCalls{service,
 * method, code} once: at the status the server sends, or CANCELLED when the
 * client goes first. The path `/canonport.v1.Canonport/Resolve` splits into
 * service `canonport.v1.Canonport` and method `Resolve`, the labels
 * go-grpc-prometheus uses, so existing dashboards' queries carry over.
 */
function countCalls(ctx: DaemonContext): grpc.ServerInterceptor {
  return (method, call) => {
    const labels = callLabels(method.path);
    // Health checks come every few seconds from probes, like scrapes: they keep nothing awake (metrics/event-loop.ts).
    if (labels.service !== HEALTH_SERVICE) ctx.metrics.countActivity();
    let counted = false;
    const count = (code: number) => {
      if (counted) return;
      counted = true;
      ctx.metrics.grpcCalls.inc({ ...labels, code: grpc.status[code] ?? String(code) });
    };
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => count(grpc.status.CANCELLED) }),
      sendStatus: (status, next) => {
        count(status.code);
        next(status);
      },
    });
  };
}

/** `/canonport.v1.Canonport/Resolve` → service `canonport.v1.Canonport`, method `Resolve`. */
function callLabels(path: string): { service: string; method: string } {
  const slash = path.lastIndexOf('/');
  return { service: path.slice(1, Math.max(1, slash)), method: path.slice(slash + 1) };
}

/**
 * The labels of every call to a method the server does not have. The path
 * is the caller's to choose, before any access policy: labelled by it, each
 * new path would add a series to /metrics for as long as the daemon runs.
 */
export const UNKNOWN_METHOD_LABELS = { service: 'unknown', method: 'unknown' } as const;

/**
 * The grpc-js Server, counting calls to methods it has no handler for:
 * grpc-js answers those UNIMPLEMENTED before any interceptor runs, so
 * countCalls never sees them. It asks `_retrieveHandler` for every call's
 * handler (grpc-js 1.14, the one line canonport supports: grpc-module.ts);
 * an unknown path is counted there, under UNKNOWN_METHOD_LABELS. If a
 * grpc-js without that method were ever loaded, nothing breaks: those calls
 * simply go uncounted.
 */
function countingServer(options: grpc.ServerOptions, metrics: DaemonContext['metrics']): grpc.Server {
  const server = new grpc.Server(options);
  const internals = server as unknown as { _retrieveHandler?: (path: string) => unknown };
  const retrieve = internals._retrieveHandler;
  if (typeof retrieve === 'function') {
    internals._retrieveHandler = function (this: unknown, path: string) {
      const handler = retrieve.call(this, path);
      if (handler === null || handler === undefined) metrics.grpcCalls.inc({ ...UNKNOWN_METHOD_LABELS, code: 'UNIMPLEMENTED' });
      return handler;
    };
  }
  return server;
}

export async function startGrpcServer(ctx: DaemonContext, listen: HostPort, opts: GrpcServerOptions = {}): Promise<GrpcHandle> {
  const log = ctx.logger.child({ component: 'grpc' });
  // The last interceptor is the outermost: the policy answers refused calls, and countCalls still counts them;
  // malformedRequests answers only calls the policy let through, and is counted too.
  const interceptors = [countCalls(ctx), accessInterceptor({ config: ctx.config, metrics: ctx.metrics, logger: log }), malformedRequests()];
  const server = countingServer({ interceptors, ...CONNECTION_OPTIONS }, ctx.metrics);
  const creds = opts.tls ? serverCredentials(opts.tls.source, opts.tls.clientAuth) : null;
  const service = createCanonportService({ ...ctx, logger: log }, opts);
  // Requests are checked on the wire before decoding (strict-decode.ts): a malformed one is INVALID_ARGUMENT, counted.
  // The same for health and reflection, whose libraries add their services themselves: through `strict`.
  const strict = strictServices(server);
  strict.addService(canonportService().service, service.handlers);
  strict.addService(adminService().service, createAdminService({ ...ctx, logger: log }));

  let ready = ctx.ready();
  let wanted = true;
  const status = (): ServingStatus => (ready && wanted ? 'SERVING' : 'NOT_SERVING');
  const health = new HealthImplementation(Object.fromEntries(HEALTH_NAMES.map((n) => [n, status()])));
  const healthWatches = addHealth(strict, health, HEALTH_NAMES, (call) => service.holdStream(call));
  let current = status();
  const update = () => {
    const next = status();
    if (next === current) return;
    current = next;
    for (const n of HEALTH_NAMES) health.setStatus(n, next);
    log.info({ status: next }, 'gRPC health changed');
  };
  const onReady = (r: boolean) => {
    ready = r;
    update();
  };
  ctx.events.on('ready', onReady);

  addReflection(strict);
  const extras = (opts.services ?? []).map((add) => add(server));

  const target = formatHostPort(listen);
  // The socket is ours, not grpc-js's: each connection passes the gate at accept (src/net/gate.ts) and only
  // then is handed to grpc-js through its connection injector (why: connectionGate below).
  const injector = server.createConnectionInjector(creds?.credentials ?? grpc.ServerCredentials.createInsecure());
  const gate = connectionGate(ctx, log);
  let port: number;
  let listener: import('node:net').Server;
  try {
    ({ server: listener, port } = await listenGated({ host: listen.host, port: listen.port, gate, handOn: (socket) => injector.injectConnection(socket) }));
  } catch (err) {
    ctx.events.off('ready', onReady);
    creds?.close();
    injector.destroy();
    server.forceShutdown();
    throw new CanonportError(ErrorCodes.LISTEN_FAILED, `gRPC cannot listen on ${target}: ${(err as Error).message}`, { listen: target }, { cause: err });
  }
  const address = { host: listen.host, port };
  log.info({ address: formatHostPort(address), status: current, tls: !opts.tls ? 'off' : opts.tls.source.current().ca === null ? 'on' : `on, client certificates ${opts.tls.clientAuth === 'require' ? 'required' : 'optional'}` }, 'gRPC listening');

  let closing: Promise<void> | undefined;
  return {
    address,
    setServing(serving) {
      wanted = serving;
      update();
    },
    close(graceMs) {
      closing ??= new Promise<void>((resolve) => {
        ctx.events.off('ready', onReady);
        // No new connection from here on; the open ones drain below.
        gate.close();
        listener.close();
        wanted = false;
        update();
        // Streams never end by themselves: end them now, or they hold the shutdown for the whole grace period.
        service.endWatches('canonport daemon shutting down');
        for (const w of [...healthWatches]) w.end();
        for (const e of extras) e.close('canonport daemon shutting down');
        const timer = setTimeout(() => {
          log.warn({ graceMs }, 'gRPC calls still open after the grace period; closing them');
          server.forceShutdown();
          gate.destroyAll();
          resolve();
        }, Math.max(0, graceMs));
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }).then(() => {
        creds?.close();
        log.info('gRPC closed');
      });
      return closing;
    },
  };
}

/**
 * Connection-level options of the grpc-js server. A connection that
 * carries no call for 5 minutes is closed (GOAWAY; clients reconnect when
 * they next call). Every connection is pinged after a minute without
 * traffic and closed when the ping goes unanswered for 20 s, so a peer
 * that vanished, or that never finished the HTTP/2 handshake, does not
 * hold a descriptor for good.
 */
const CONNECTION_OPTIONS: grpc.ServerOptions = {
  'grpc.max_connection_idle_ms': 300_000,
  'grpc.keepalive_time_ms': 60_000,
  'grpc.keepalive_timeout_ms': 20_000,
};

/**
 * The gRPC listener's gate. Why a socket of our own in front of grpc-js:
 * grpc-js 1.14 binds its own http2 servers (`bindAsync`) and offers no hook
 * on accepted connections, so the allow-list could only refuse per call,
 * after the connection (and a descriptor) was taken, and never closed or
 * timed out an idle one: three outsiders holding 9,000 idle connections
 * each exhausted the daemon's descriptors (issue 21). grpc-js 1.14 has
 * `Server.createConnectionInjector(credentials)`, public, which builds the
 * same http2 server (TLS, rotating credentials, sessions, keepalive,
 * shutdown) for connections handed to it: our own `net.Server` accepts,
 * the gate decides, and only admitted sockets reach grpc-js. (A listener
 * on grpc-js's private http2 servers would work too, but through
 * internals; a TCP proxy in front would cost a second socket per
 * connection and hide the client's address.)
 *
 * Standing: an address the allow-list admits is an insider. One it refuses
 * could be closed at accept, but then its client sees only "UNAVAILABLE:
 * failed to connect", the same as a daemon that is down; so each such
 * address may hold one connection for at most 3 s (enough to be told
 * PERMISSION_DENIED and which flag would let it in), 16 such connections
 * together, and every one past that is closed at accept. Refused addresses
 * cost at most 16 descriptors for 3 s, whatever they send.
 */
function connectionGate(ctx: DaemonContext, log: DaemonContext['logger']): ConnectionGate {
  const rules = new WeakMap<ReturnType<typeof ctx.config>, ReturnType<typeof listenerRule>>();
  return new ConnectionGate({
    listener: 'grpc',
    limits: () => {
      const c = ctx.config();
      return { total: c.grpcMaxConnections, perSource: c.connectionsPerSource, outsiders: 16, perOutsider: 1, outsiderLifetimeMs: 3000, idleMs: 0 };
    },
    // This host's own addresses are the host's processes (canonport drain, leave: Admin, admin.ts): insiders,
    // like loopback, whatever the allow-list says, and exempt from the per-source bound.
    standing: (address) => {
      const c = ctx.config();
      let rule = rules.get(c);
      if (!rule) rules.set(c, (rule = listenerRule(c, 'grpc')));
      return rule.allows(address) || isThisHost(address) ? 'insider' : 'outsider';
    },
    ownHost: isThisHost,
    metrics: ctx.metrics,
    logger: log,
  });
}

/** Where a service is added: the server itself, or `strictServices` in front of it. */
type ServiceAdder = Pick<grpc.Server, 'addService'>;

/**
 * `server`, adding each service with its requests checked on the wire
 * (strict-decode.ts), for the libraries that call addService themselves.
 * The interceptor that answers malformed requests sees every service; only
 * the services added here mark them (xDS decodes its own: src/xds).
 */
function strictServices(server: grpc.Server): ServiceAdder {
  return { addService: (definition, implementation) => server.addService(strictRequests(definition), implementation) };
}

/**
 * grpc.health.v1 from grpc-health-check, with two changes to Watch, whose
 * streams Kubernetes probes and load balancers keep open. They are tracked,
 * so shutdown can end them at once: close() has already set NOT_SERVING,
 * which the library sent to every stream, so ending is all that is left (a
 * second NOT_SERVING would read as another change). And a Watch for a name
 * the daemon has no status for gets SERVICE_UNKNOWN here, not from the
 * library: the library keeps an entry per watched name for good, a map a
 * caller could grow name by name; the daemon's names never change
 * (HEALTH_NAMES), so such a stream has nothing more to hear.
 */
function addHealth(
  server: ServiceAdder,
  health: HealthImplementation,
  known: readonly string[],
  hold: (call: { getPeer(): string }) => { release(): void } | { refused: string },
): Set<{ end(): void }> {
  /** Open health Watch streams: they count under the Watch bounds (watchMaxStreams…), so this set is bounded by them. */
  const open = new Set<{ end(): void }>();
  health.addToServer({
    addService(definition: grpc.ServiceDefinition, impl: grpc.UntypedServiceImplementation) {
      const watch = impl.watch as grpc.handleServerStreamingCall<{ service?: string }, unknown>;
      const wrapped: grpc.handleServerStreamingCall<{ service?: string }, unknown> = (call) => {
        const slot = hold(call);
        if ('refused' in slot) {
          const metadata = new grpc.Metadata();
          metadata.set(ERROR_CODE_METADATA, ErrorCodes.WATCH_LIMIT);
          call.emit('error', { code: grpc.status.RESOURCE_EXHAUSTED, details: `${slot.refused} [${ErrorCodes.WATCH_LIMIT}]`, metadata });
          return;
        }
        const entry = {
          end: () => {
            open.delete(entry);
            slot.release();
            if (call.cancelled || call.destroyed) return;
            call.end();
          },
        };
        open.add(entry);
        call.on('cancelled', () => {
          open.delete(entry);
          slot.release();
        });
        if (known.includes(call.request.service ?? '')) watch(call);
        else call.write({ status: 'SERVICE_UNKNOWN' });
      };
      server.addService(definition, { ...impl, watch: wrapped });
    },
  } as unknown as grpc.Server);
  return open;
}
