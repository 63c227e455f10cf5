import { readFileSync } from 'node:fs';
import net from 'node:net';
import { Quota } from '../concurrency.js';
import { isLoopback } from '../config/cidr.js';
import { ErrorCodes, isDescriptorExhaustion } from '../errors.js';
import { LogThrottle, type Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';

/**
 * Who gets a connection, decided at accept, before any byte is read: the
 * one gate every TCP listener of the daemon (gRPC, HTTP, DNS over TCP)
 * puts in front of its protocol.
 *
 * Each accepted socket has a standing, from the listener's own rule:
 *   - `insider`: an address the listener serves (loopback, its allow-list);
 *   - `outsider`: an address it serves only a little (HTTP: the probes;
 *     DNS: canonical answers to clients outside `--allow`; gRPC: one
 *     connection to be told PERMISSION_DENIED and why);
 *   - `refused`: closed at once.
 * and three bounds apply: connections in total (the listener's cap), per
 * source address (loopback exempt: it is the host's own processes, all
 * on one address), and outsiders all together, a small share of the total
 * that leaves the rest to insiders: no outsider, and no crowd of them, can
 * take the connections an allowed client needs. Outsider connections also
 * live at most `outsiderLifetimeMs`, whatever they do.
 *
 * Descriptor exhaustion degrades instead of killing the process: the
 * gates of the process together keep below the descriptor limit
 * (descriptorBudget), refusing new connections there, counted and logged
 * once a minute with CP_FD_EXHAUSTED; an accept the kernel still fails is
 * treated the same way.
 */

export type ListenerKind = 'grpc' | 'http' | 'dns';
export type Standing = 'insider' | 'outsider' | 'refused';

/** Why a connection was closed at accept: the `reason` label of canonport_connections_refused_total. */
export type GateRefusal = 'address' | 'total' | 'per_source' | 'outsiders' | 'fd_exhausted' | 'closing';

export interface GateLimits {
  /** Connections open at once on this listener, everyone together. */
  total: number;
  /** Connections one source address may hold (loopback exempt). */
  perSource: number;
  /** Connections all outsiders together may hold (part of `total`). */
  outsiders: number;
  /** Connections one outsider address may hold. */
  perOutsider: number;
  /** An outsider's connection is closed this long after accept, whatever it does (0: no limit). */
  outsiderLifetimeMs: number;
  /** A connection with no traffic either way for this long is closed (0: the protocol's own timeouts only). */
  idleMs: number;
}

export interface GateOptions {
  listener: ListenerKind;
  /** Read at every accept, so a reload applies to the next connection. */
  limits: () => GateLimits;
  /** The listener's rule for an address (read at every accept). */
  standing: (address: string) => Standing;
  /** Addresses exempt from the per-source bound: this host's own processes (default: loopback). */
  ownHost?: ((address: string) => boolean) | undefined;
  metrics: Metrics;
  logger: Logger;
  now?: (() => number) | undefined;
}

/**
 * The descriptors connections may use, every gate of the process together:
 * the soft RLIMIT_NOFILE less a reserve for everything else the daemon
 * opens (upstream sockets, files, etcd, logs). Reaching it refuses new
 * connections (reason fd_exhausted, CP_FD_EXHAUSTED) before the kernel
 * would fail an accept: libuv drops a connection it cannot accept without
 * telling anyone, and the next thing to need a descriptor (a timer reading
 * the interfaces, in issue 21) would fail instead.
 */
export const descriptorBudget = {
  /** Connections open through every gate of this process. */
  open: 0,
  /** At most this many (Infinity where the limit cannot be read). */
  max: connectionBudget(readDescriptorLimit()),
};

/** The reserve left for the rest of the daemon: a quarter of the limit, between 64 and 1024. */
export function connectionBudget(limit: number): number {
  if (!Number.isFinite(limit)) return Infinity;
  return Math.max(1, limit - Math.min(1024, Math.max(64, Math.floor(limit / 4))));
}

/** The soft limit on open files of this process (Linux /proc/self/limits); Infinity elsewhere. */
function readDescriptorLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    const n = Number(soft);
    return Number.isFinite(n) && n > 0 ? n : Infinity;
  } catch {
    return Infinity;
  }
}

export class ConnectionGate {
  /** Every connection open, insiders and outsiders, by source address: at most `total` connections. */
  private readonly all: Quota;
  /** Outsiders' connections, by source address: at most `outsiders`. */
  private readonly outside: Quota;
  /** Connections admitted and still open: at most `total` (the `all` quota admits no more). */
  private readonly open = new Set<net.Socket>();
  private closing = false;
  /** CP_FD_EXHAUSTED and CP_CONNECTION_LIMIT at most once a minute per reason. */
  private readonly throttle: LogThrottle;

  constructor(private readonly o: GateOptions) {
    this.all = new Quota(
      () => ({ total: o.limits().total, perClient: o.limits().perSource }),
      (client, per) => ((o.ownHost ?? isLoopback)(client) ? Infinity : per),
    );
    this.outside = new Quota(() => ({ total: o.limits().outsiders, perClient: o.limits().perOutsider }));
    this.throttle = new LogThrottle(60_000, o.now ?? Date.now);
  }

  /** Connections open now. */
  get size(): number {
    return this.open.size;
  }

  /**
   * Decides on a socket just accepted: true, and it is counted until it
   * closes; false, and it has been destroyed. Never throws.
   */
  admit(socket: net.Socket): boolean {
    const address = socket.remoteAddress ?? '';
    if (this.closing) return this.refuse(socket, 'closing', address);
    // A socket whose peer is already gone has no address: nothing to serve.
    if (address === '') return this.refuse(socket, 'address', address);
    const standing = this.o.standing(address);
    if (standing === 'refused') return this.refuse(socket, 'address', address);
    if (descriptorBudget.open >= descriptorBudget.max) return this.refuse(socket, 'fd_exhausted', address);
    const limits = this.o.limits();
    if (standing === 'outsider') {
      const v = this.outside.acquire(address);
      if (!v.ok) return this.refuse(socket, v.reason === 'client' ? 'per_source' : 'outsiders', address);
    }
    const v = this.all.acquire(address);
    if (!v.ok) {
      if (standing === 'outsider') this.outside.release(address);
      return this.refuse(socket, v.reason === 'client' ? 'per_source' : 'total', address);
    }
    this.open.add(socket);
    descriptorBudget.open++;
    this.o.metrics.connectionsOpen.inc({ listener: this.o.listener });
    let lifetime: NodeJS.Timeout | undefined;
    if (standing === 'outsider' && limits.outsiderLifetimeMs > 0) {
      lifetime = setTimeout(() => socket.destroy(), limits.outsiderLifetimeMs);
      lifetime.unref();
    }
    if (limits.idleMs > 0) {
      socket.setTimeout(limits.idleMs);
      socket.once('timeout', () => socket.destroy());
    }
    // A socket error is the peer's business: without a listener it would be thrown.
    socket.on('error', () => socket.destroy());
    socket.once('close', () => {
      clearTimeout(lifetime);
      if (!this.open.delete(socket)) return;
      descriptorBudget.open--;
      this.all.release(address);
      if (standing === 'outsider') this.outside.release(address);
      this.o.metrics.connectionsOpen.dec({ listener: this.o.listener });
    });
    return true;
  }

  /**
   * The listening server's 'error' event after it listens: an accept that
   * failed. Out of descriptors, the connection is dropped and counted; the
   * server keeps listening. Anything else is logged.
   */
  acceptFailed(err: NodeJS.ErrnoException): void {
    if (isDescriptorExhaustion(err)) {
      this.o.metrics.connectionsRefused.inc({ listener: this.o.listener, reason: 'fd_exhausted' });
      this.logExhausted(err.code ?? 'EMFILE');
      return;
    }
    this.o.logger.error({ code: ErrorCodes.LISTEN_FAILED, listener: this.o.listener, err: err.message, errno: err.code }, `${this.o.listener}: accepting a connection failed`);
  }

  /** Refuses every later connection (the daemon is stopping); open ones are the protocol's to finish. */
  close(): void {
    this.closing = true;
  }

  /** Destroys every connection still open. */
  destroyAll(): void {
    for (const s of [...this.open]) s.destroy();
  }

  private refuse(socket: net.Socket, reason: GateRefusal, address: string): false {
    socket.on('error', () => undefined);
    socket.destroy();
    this.o.metrics.connectionsRefused.inc({ listener: this.o.listener, reason });
    // Address refusals are the allow-list doing its job (and counted there too); caps reached are worth a line.
    if (reason === 'fd_exhausted') {
      this.logExhausted(`${descriptorBudget.open} connections open, the most the descriptor limit leaves room for`);
    } else if (reason === 'address') {
      this.o.metrics.accessDenied.inc({ listener: this.o.listener, reason: 'address' });
      this.o.logger.debug({ code: ErrorCodes.ACCESS_DENIED, listener: this.o.listener, client: address }, 'connection refused at accept by the access policy');
    } else if (reason !== 'closing') {
      this.throttle.run(reason, (suppressed) =>
        this.o.logger.warn(
          { code: ErrorCodes.CONNECTION_LIMIT, listener: this.o.listener, reason, client: address, limits: this.o.limits(), refusedSinceLastLog: suppressed },
          `${this.o.listener}: connection from ${address} refused (${reason} limit); counted in canonport_connections_refused_total, logged at most once a minute`,
        ),
      );
    }
    return false;
  }

  private logExhausted(why: string): void {
    this.throttle.run('fd_exhausted', (suppressed) =>
      this.o.logger.error(
        { code: ErrorCodes.FD_EXHAUSTED, listener: this.o.listener, why, refusedSinceLastLog: suppressed },
        `${this.o.listener}: out of file descriptors (${why}): new connections are refused until some close; counted in canonport_connections_refused_total{reason="fd_exhausted"}`,
      ),
    );
  }
}

/**
 * A TCP listener with the gate in front: binds exactly `host:port`, admits
 * each connection through the gate and hands the admitted ones to
 * `handOn` (an http.Server's or a grpc-js connection injector's), which
 * then owns the protocol. Accept errors never reach the process.
 */
export async function listenGated(opts: {
  host: string;
  port: number;
  gate: ConnectionGate;
  handOn: (socket: net.Socket) => void;
}): Promise<{ server: net.Server; port: number }> {
  // pauseOnConnect: no byte is read before the gate has decided, and none is lost for the protocol after it.
  const server = net.createServer({ pauseOnConnect: true }, (socket) => {
    if (!opts.gate.admit(socket)) return;
    opts.handOn(socket);
    socket.resume();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // `exclusive` keeps the bind in this process even under cluster; `host` is bound exactly, never widened.
    server.listen({ host: opts.host, port: opts.port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err: NodeJS.ErrnoException) => opts.gate.acceptFailed(err));
  return { server, port: (server.address() as net.AddressInfo).port };
}
