import { createServer, type IncomingMessage, type ServerOptions, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { CanonportError, ErrorCodes } from '../errors.js';
import { formatHostPort as fmt, type HostPort } from '../config/address.js';
import type { TlsMaterial, TlsSource } from '../config/tls.js';
import type { DaemonContext } from '../context.js';
import { listenerRule } from '../config/listen-policy.js';
import { ConnectionGate } from '../net/gate.js';
import { nextTurn } from '../concurrency.js';
import { targetGroupsPage } from './http-sd.js';
import { httpAccess } from './policy.js';

export interface HttpServerOptions {
  /**
   * Serve HTTPS with this certificate set (re-read as it changes). With a
   * client CA, clients are asked for a certificate but let through the
   * handshake without one: the probes carry none; policy.ts decides per path.
   */
  tls?: TlsSource | undefined;
  /** Paths another part of the daemon serves (the fleet page: `/ui`), behind the same access policy. */
  routes?: readonly HttpRoute[] | undefined;
}

/**
 * A group of paths served by another part of the daemon: `prefix` itself and
 * everything under `prefix/`. Only GET and HEAD reach it, after the access
 * policy; it answers, and reports each status through `counted` (the
 * `handler` label is `label`).
 */
export interface HttpRoute {
  readonly prefix: `/${string}`;
  readonly label: 'ui';
  serve(req: IncomingMessage, res: ServerResponse, path: string, counted: (status: number) => void): void | Promise<void>;
}

/** A running HTTP endpoint. */
export interface HttpServer {
  /** The address actually bound (the real port when 0 was asked). */
  address: HostPort;
  /** Stops accepting, lets in-flight responses finish, then closes every connection. Idempotent. */
  close(): Promise<void>;
}

/** Paths served; anything else is 404. Also the `handler` label of canonport_http_requests_total. */
type Handler = 'metrics' | 'healthz' | 'readyz' | 'http_sd' | HttpRoute['label'] | 'other';

const ROUTES: Readonly<Record<string, Handler>> = { '/metrics': 'metrics', '/healthz': 'healthz', '/readyz': 'readyz', '/sd/prometheus': 'http_sd' };

/** Time allowed for in-flight responses when closing, before connections are cut. */
const CLOSE_GRACE_MS = 2000;

/**
 * Serves the operator endpoints: `/metrics` (Prometheus text), `/healthz`
 * (the process runs), `/readyz` (listeners bound and config loaded). Binds
 * exactly `listen` (IPv4 or IPv6, port 0 allowed); rejects with
 * CP_LISTEN_FAILED when it cannot. Nothing a client sends can throw out of
 * here: bad requests get a 4xx, handler failures a 500 and a log line.
 */
export function startHttpServer(ctx: DaemonContext, listen: HostPort, opts: HttpServerOptions = {}): Promise<HttpServer> {
  const log = ctx.logger.child({ component: 'http' });
  const metrics = ctx.metrics;
  const access = httpAccess({ config: () => ctx.config(), metrics, logger: log });

  const common: ServerOptions = {
    // Scrapers and probes send small, quick requests; anything slow or large is not one of them.
    requestTimeout: 10_000,
    headersTimeout: 5_000,
    maxHeaderSize: 8192,
    keepAliveTimeout: 5_000,
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, code: ErrorCodes.HANDLER_FAILED, url: req.url }, 'HTTP handler failed');
      if (!res.headersSent) reply(res, req, 'other', 500, 'text/plain; charset=utf-8', 'internal error\n');
      else res.destroy();
    });
  };
  const contextOf = (m: TlsMaterial) => ({ cert: m.cert, key: m.key, ...(m.ca ? { ca: m.ca } : {}) });
  const tls = opts.tls;
  const server = tls
    ? createHttpsServer({ ...common, ...contextOf(tls.current()), requestCert: tls.current().ca !== null, rejectUnauthorized: false }, onRequest)
    : createServer(common, onRequest);
  // A rotated certificate is used from the next handshake; open connections keep theirs.
  const unsubscribe = tls?.onChange((m) => (server as ReturnType<typeof createHttpsServer>).setSecureContext(contextOf(m)));
  // Failed handshakes (plaintext to HTTPS, a bad client certificate) are the client's business; nothing to answer.
  server.on('tlsClientError', (err: Error) => log.debug({ err: err.message }, 'TLS handshake failed'));
  // Who holds a connection, decided at accept (src/net/gate.ts). A monitoring endpoint needs few connections.
  // Addresses outside --http-allow may still ask /healthz and /readyz (probes), so they are not closed at accept:
  // they hold 2 connections each, a quarter of the total together, 10 s each, and never the insiders' share.
  const rules = new WeakMap<ReturnType<typeof ctx.config>, ReturnType<typeof listenerRule>>();
  const gate = new ConnectionGate({
    listener: 'http',
    limits: () => {
      const c = ctx.config();
      return {
        total: c.httpMaxConnections,
        perSource: c.connectionsPerSource,
        outsiders: Math.max(1, Math.floor(c.httpMaxConnections / 4)),
        perOutsider: 2,
        outsiderLifetimeMs: 10_000,
        // No idle timeout of the gate's own: the fleet page's event streams are quiet for a heartbeat at a time
        // (src/ui/events.ts); a socket that never sends a request is closed by headersTimeout (checked every 30 s).
        idleMs: 0,
      };
    },
    standing: (address) => {
      const c = ctx.config();
      let rule = rules.get(c);
      if (!rule) rules.set(c, (rule = listenerRule(c, 'http')));
      return rule.allows(address) ? 'insider' : 'outsider';
    },
    metrics,
    logger: log,
  });
  // Before the server's own connection listener: a refused socket is destroyed before it reads a byte.
  server.prependListener('connection', (socket: Socket) => void gate.admit(socket));

  // Malformed HTTP (bad request line, oversized headers): answer 400 when the socket still can, never throw.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    metrics.httpRequests.inc({ handler: 'other', code: err.code === 'HPE_HEADER_OVERFLOW' ? '431' : '400' });
    log.debug({ err: err.message, errno: err.code }, 'bad HTTP request');
    // A client that hung up mid-request (EOF, reset) gets nothing: the socket is just released.
    const gone = err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || socket.readableEnded;
    if (socket.writable && !gone) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // A body on a GET is legal but meaningless: read and discard it so the connection stays usable.
    req.resume();
    req.on('error', () => undefined);
    const path = pathOf(req.url);
    const route = path === null ? undefined : opts.routes?.find((r) => path === r.prefix || path.startsWith(`${r.prefix}/`));
    const handler: Handler = (path !== null && ROUTES[path]) || route?.label || 'other';
    // Before anything else, whatever the path: a refused client learns nothing about what exists.
    const refusal = access(req.socket, path);
    if (refusal) return reply(res, req, handler, 403, 'text/plain; charset=utf-8', `${refusal.details}\n`);
    if (path === null) return reply(res, req, handler, 400, 'text/plain; charset=utf-8', 'bad request target\n');
    if (handler === 'other') return reply(res, req, handler, 404, 'text/plain; charset=utf-8', 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, req, handler, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    if (route) return route.serve(req, res, path, (status) => metrics.httpRequests.inc({ handler, code: String(status) }));
    switch (handler) {
      case 'healthz':
        return reply(res, req, handler, 200, 'text/plain; charset=utf-8', 'ok\n');
      case 'readyz': {
        // Cluster mode: the view's state rides along. A stale view (etcd away, or the snapshot read at start) does
        // not make the daemon unready: it answers from the last view, and the body and a metric say so. A missing
        // one does: neither etcd nor a snapshot told it anything, and it would answer as if alone.
        const c = ctx.clusterStatus?.() ?? null;
        // `error`: why etcd's copy cannot be read now (a list or watch failing), so a view that cannot be listed shows.
        const cluster = c ? { cluster: { view: c.state, since: new Date(c.sinceMs).toISOString(), ...(c.fromSnapshot ? { snapshot: true } : {}), ...(c.syncError ? { error: c.syncError } : {}) } } : {};
        const why = ctx.ready() ? (ctx.notReadyReason?.() ?? null) : 'not ready: listeners not all bound or configuration not loaded yet';
        const ready = why === null;
        // What the inventory observes (issue 26): only its own namespace is said with why, never a reason to be unready.
        const n = ctx.namespaces?.();
        const namespaces = n ? { namespaces: { observing: n.observing, count: n.count, ...(n.reason ? { reason: n.reason } : {}), ...(n.code ? { code: n.code } : {}) } } : {};
        const body = ready ? { ready: true, ...cluster, ...namespaces } : { ready: false, reason: why, ...cluster, ...namespaces };
        return reply(res, req, handler, ready ? 200 : 503, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
      }
      case 'http_sd': {
        // Paged (?page=N, 1-based) at httpSdMaxGroups groups a reply, and built a slice at a time.
        const page = pageOf(req.url);
        if (page === null) return reply(res, req, handler, 400, 'text/plain; charset=utf-8', 'page must be a whole number from 1\n');
        // Unnamed listeners: the setting (--sd-unnamed), or `?unnamed=true|false` for one scrape job that wants them.
        const asked = new URL(req.url ?? '/', 'http://x').searchParams.get('unnamed');
        const unnamed = asked === 'true' || asked === '1' ? true : asked === 'false' || asked === '0' ? false : ctx.config().sdUnnamed;
        const perPage = ctx.config().httpSdMaxGroups;
        const p = await targetGroupsPage(ctx.discovery, page, perPage, nextTurn, { unnamed });
        metrics.httpSdGroups.set(p.total);
        res.setHeader('X-Canonport-Pages', String(p.pages));
        res.setHeader('X-Canonport-Groups', String(p.total));
        if (page < p.pages) res.setHeader('Link', `</sd/prometheus?page=${page + 1}${asked !== null ? `&unnamed=${encodeURIComponent(asked)}` : ''}>; rel="next"`);
        return reply(res, req, handler, 200, 'application/json; charset=utf-8', `${p.json}\n`);
      }
      case 'metrics': {
        // canonport_ready is set here, from the same source /readyz answers from, at every scrape.
        metrics.ready.set(ctx.ready() && !ctx.notReadyReason?.() ? 1 : 0);
        // Counted before rendering so a scrape sees itself; the series then never lags a scrape behind.
        metrics.httpRequests.inc({ handler, code: '200' });
        const text = ctx.metricsText ? await ctx.metricsText() : await metrics.registry.metrics();
        return reply(res, req, handler, 200, metrics.registry.contentType, text, false);
      }
    }
  }

  function reply(
    res: ServerResponse,
    req: IncomingMessage,
    handler: Handler,
    status: number,
    contentType: string,
    body: string,
    count = true,
  ): void {
    if (count) metrics.httpRequests.inc({ handler, code: String(status) });
    res.statusCode = status;
    res.setHeader('Content-Type', contentType);
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.setHeader('Cache-Control', 'no-store');
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  return new Promise<HttpServer>((resolve, reject) => {
    const onListenError = (err: NodeJS.ErrnoException) => {
      unsubscribe?.();
      reject(
        new CanonportError(ErrorCodes.LISTEN_FAILED, `HTTP: cannot listen on ${fmt(listen)}: ${err.code ?? err.message}`, {
          address: fmt(listen),
          errno: err.code,
        }, { cause: err }),
      );
    };
    server.once('error', onListenError);
    // `exclusive` keeps the bind in this process even under cluster; `host` is bound exactly, never widened.
    server.listen({ host: listen.host, port: listen.port, exclusive: true }, () => {
      server.off('error', onListenError);
      // After listening, an error is a failed accept (out of descriptors): counted and logged by the gate.
      server.on('error', (err: NodeJS.ErrnoException) => gate.acceptFailed(err));
      const a = server.address() as AddressInfo;
      const address = { host: a.address, port: a.port };
      log.info({ address: fmt(address), tls: !tls ? 'off' : tls.current().ca === null ? 'on' : 'on, client certificates for every path but the probes' }, 'HTTP listening');
      let closing: Promise<void> | undefined;
      resolve({
        address,
        close: () =>
          (closing ??= new Promise<void>((done) => {
            // Node ≥ 19 closes idle keep-alive connections on close(); busy ones get a short grace.
            const cut = setTimeout(() => server.closeAllConnections(), CLOSE_GRACE_MS);
            cut.unref();
            unsubscribe?.();
            gate.close();
            server.close(() => {
              clearTimeout(cut);
              done();
            });
            server.closeIdleConnections();
          })),
      });
    });
  });
}

/** The `page` query parameter of a request target: 1 when absent, null when not a whole number ≥ 1. */
function pageOf(url: string | undefined): number | null {
  let text: string | null;
  try {
    text = new URL(url ?? '/', 'http://localhost').searchParams.get('page');
  } catch {
    return null;
  }
  if (text === null) return 1;
  const n = Number(text);
  return /^\d+$/.test(text) && Number.isSafeInteger(n) && n >= 1 ? n : null;
}

/** The path of a request target (origin or absolute form), without query; null when unparsable. */
function pathOf(url: string | undefined): string | null {
  if (!url) return null;
  try {
    return new URL(url, 'http://localhost').pathname;
  } catch {
    return null;
  }
}
