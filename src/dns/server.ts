import dgram from 'node:dgram';
import dns from 'node:dns';
import net from 'node:net';
import type { HostPort } from '../config/address.js';
import type { NameClass } from '../core/service-name.js';
import { CanonportError, ErrorCodes, errorToRcode, Rcode } from '../errors.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Logger } from '../log.js';
import { ConnectionGate } from '../net/gate.js';
import { RCODE_BADVERS } from './message.js';
import type { MaybePromise } from './pipeline.js';
import { errorReply, finishReply, formerrReply, notImplementedReply, type Truncation } from './reply.js';
import { requestKey, ServerRequest, type DnsReply, type DnsRequest, type Transport } from './request.js';
import { HEADER_SIZE, parseHeader, parseQuery, readU16, WireError, type Query } from './wire.js';

export interface DnsServerOptions {
  listen: HostPort;
  handler: (req: DnsRequest) => MaybePromise<DnsReply>;
  classify: (lname: string) => NameClass;
  /** Whether a client may recurse (the chain's access policy), asked at most once per query. */
  mayRecurse: (address: string) => boolean;
  metrics: Metrics;
  logger: Logger;
  /** Fraction of queries to log, 0–1, read per query so a reload applies at once. */
  queryLogRate: () => number;
  /**
   * TCP: idle timeout and connection cap, read at every accept (a reload
   * applies to the next connection); `perSource` is what one address may
   * hold (loopback exempt). Clients that may not recurse hold at most half
   * the cap together (src/net/gate.ts).
   */
  tcp: () => { idleTimeoutMs: number; maxConnections: number; perSource: number };
  now?: () => number;
  /**
   * Cluster worker: bind non-exclusively so every worker receives on the one
   * UDP socket the cluster primary holds (the kernel hands each datagram to
   * one of them), and TCP connections are spread by the primary.
   */
  shared?: boolean | undefined;
}

const UDP_BUFFER = 4 * 1024 * 1024;
/** Pipelined queries one TCP connection may have unanswered before we stop reading from it. */
const TCP_MAX_PENDING = 64;

/**
 * The DNS listeners, UDP and TCP on one address and port. Sockets are ours
 * (not dns2's server): we need exact binding, FORMERR for malformed
 * questions, a handler that can never crash the process, EDNS-sized UDP
 * answers with TC, and pipelined TCP with idle timeouts and a connection cap.
 */
export class DnsServer {
  private udp: dgram.Socket | null = null;
  private tcp: net.Server | null = null;
  /** TCP connections open: at most tcp().maxConnections (the gate admits no more). */
  private readonly conns = new Set<net.Socket>();
  /** Who may hold a TCP connection, at accept: the cap, per source, and clients outside --allow together. */
  private readonly gate: ConnectionGate;
  private pending = 0;
  private closing = false;
  private drained: (() => void) | null = null;
  private readonly now: () => number;
  /** Set only while one of warmUp()'s queries is answered: nothing is counted or logged. */
  private warming = false;
  /** The socket warmUp() sends its queries to, while it runs. */
  private warmSocket: dgram.Socket | null = null;
  /** What the warm-up's queries added to the metrics, taken back when it ends (Metrics.uncountQueries). */
  private warmCounted: { qtype: number; rcode: number; source: string; transport: string; seconds: number }[] = [];

  constructor(private readonly o: DnsServerOptions) {
    this.now = o.now ?? (() => performance.now());
    this.gate = new ConnectionGate({
      listener: 'dns',
      limits: () => {
        const t = o.tcp();
        return { total: t.maxConnections, perSource: t.perSource, outsiders: Math.max(1, Math.floor(t.maxConnections / 2)), perOutsider: t.perSource, outsiderLifetimeMs: 0, idleMs: 0 };
      },
      // Everyone gets canonical answers; clients that may recurse (loopback, --allow) are the ones the cap protects.
      standing: (address) => (o.mayRecurse(address) ? 'insider' : 'outsider'),
      metrics: o.metrics,
      logger: o.logger,
    });
  }

  /** Binds UDP then TCP on the same port (with port 0, the port UDP got). */
  async start(): Promise<HostPort> {
    const { host } = this.o.listen;
    for (let attempt = 0; ; attempt++) {
      // A resolver takes bursts (every host process starting at once): the kernel's default
      // ~208 KiB receive buffer holds only ~270 queries, so ask for 4 MiB, as unbound's
      // so-rcvbuf advice does. Linux caps it at net.core.rmem_max.
      const udp = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4', recvBufferSize: UDP_BUFFER, sendBufferSize: UDP_BUFFER, lookup: literalLookup });
      const port = await new Promise<number>((resolve, reject) => {
        udp.once('error', reject);
        udp.bind({ port: this.o.listen.port, address: host, exclusive: !this.o.shared }, () => {
          udp.off('error', reject);
          resolve(udp.address().port);
        });
      }).catch((err: NodeJS.ErrnoException) => {
        udp.close();
        throw listenError('udp', this.o.listen, err);
      });
      // allowHalfOpen: a client may send its queries and then FIN; it still gets every answer.
      const tcp = net.createServer({ allowHalfOpen: true }, (sock) => this.onConnection(sock));
      try {
        await new Promise<void>((resolve, reject) => {
          tcp.once('error', reject);
          tcp.listen({ port, host, exclusive: !this.o.shared }, () => {
            tcp.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        udp.close();
        // With port 0 the kernel's UDP port may be taken on TCP: try another.
        if (this.o.listen.port === 0 && attempt < 5) continue;
        throw listenError('tcp', { host, port }, err as NodeJS.ErrnoException);
      }
      udp.on('message', (msg, rinfo) => this.onDatagram(udp, msg, rinfo));
      udp.on('error', (err) => this.o.logger.error({ code: ErrorCodes.LISTEN_FAILED, err: err.message }, 'udp socket error'));
      // An accept that failed (out of descriptors): counted and logged by the gate; the server keeps listening.
      tcp.on('error', (err) => this.gate.acceptFailed(err));
      this.udp = udp;
      this.tcp = tcp;
      return { host, port };
    }
  }

  /**
   * Stops taking queries, lets those in flight finish (up to graceMs), then
   * closes every socket.
   */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    this.tcp?.close();
    if (this.pending > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs);
        this.drained = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    // done() runs just before the last answer's send or write is queued: let it go out first.
    await new Promise((resolve) => setImmediate(resolve));
    for (const c of this.conns) {
      // end(), not destroy(): an answer still in the socket's buffer goes out before the FIN.
      c.end(() => c.destroy());
      setTimeout(() => c.destroy(), 1000).unref();
    }
    const udp = this.udp;
    this.udp = null;
    await new Promise<void>((resolve) => (udp ? udp.close(() => resolve()) : resolve()));
  }

  private onDatagram(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return;
    // The warm-up's own socket: answered the same way, counted nowhere (warmUp()).
    const warming = sock === this.warmSocket;
    this.warming = warming;
    let r: Buffer | null | Promise<Buffer | null>;
    try {
      r = this.handlePacket(msg, { address: rinfo.address, port: rinfo.port }, 'udp');
    } finally {
      this.warming = false;
    }
    if (r === null) return;
    if (r instanceof Promise) {
      r.then((out) => out && this.sendUdp(sock, out, rinfo));
    } else {
      this.sendUdp(sock, r, rinfo);
    }
  }

  /**
   * Sends `packets` to this server as queries over loopback UDP and waits
   * for the answers, so V8 has compiled the whole path (Node's datagram
   * receive and send included) before the first real query (warm-up.ts).
   * They go to a socket of their own, answered by the same code as the
   * listening one: nothing else waits behind them. They are counted as any
   * query is, then taken back (Metrics.uncountQueries), and never logged;
   * the daemon warms up before its HTTP listener opens, so no scrape sees
   * them. `window` queries are in flight at a time; real
   * queries arriving meanwhile are answered between them. Resolves with the
   * time it took (ms).
   */
  async warmUp(packets: readonly Buffer[], window = 64): Promise<number> {
    const t0 = this.now();
    const bind = async (s: dgram.Socket): Promise<number> => {
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        // exclusive: in a --workers DNS worker, a socket of its own, not one the cluster primary shares out.
        s.bind({ port: 0, address: WARM_UP_ADDRESS, exclusive: true }, () => {
          s.off('error', reject);
          resolve();
        });
      });
      s.on('error', () => undefined);
      return s.address().port;
    };
    // The same lookup as the listening socket's: the answers go out by the same path real ones take.
    const server = dgram.createSocket({ type: 'udp4', lookup: literalLookup });
    const client = dgram.createSocket('udp4');
    try {
      const port = await bind(server);
      await bind(client);
      server.on('message', (msg, rinfo) => this.onDatagram(server, msg, rinfo));
      this.warmSocket = server;
      let answered = 0;
      let wake: (() => void) | null = null;
      client.on('message', () => {
        answered++;
        wake?.();
      });
      for (let i = 0; i < packets.length && !this.closing; i += window) {
        const batch = packets.slice(i, i + window);
        for (const p of batch) client.send(p, port, WARM_UP_ADDRESS);
        const want = Math.min(packets.length, i + window);
        // Loopback may drop a datagram under a burst: a batch waits at most a second.
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, 1000);
          function done(): void {
            clearTimeout(t);
            wake = null;
            resolve();
          }
          wake = () => answered >= want && done();
          wake();
        });
      }
    } catch (err) {
      // No loopback (a namespace without lo up): start cold rather than not at all.
      this.o.logger.warn({ code: ErrorCodes.WARM_UP_FAILED, err: (err as Error).message }, 'DNS warm-up skipped');
    } finally {
      this.warmSocket = null;
      this.o.metrics.uncountQueries(this.warmCounted);
      this.warmCounted = [];
      server.close();
      client.close();
    }
    return this.now() - t0;
  }

  /** An answer that is ready only after close() (grace period over) is dropped: sending on a closed socket throws. */
  private sendUdp(sock: dgram.Socket, out: Buffer, rinfo: dgram.RemoteInfo): void {
    if (sock === this.udp || sock === this.warmSocket) sock.send(out, rinfo.port, rinfo.address);
  }

  private onConnection(sock: net.Socket): void {
    if (this.closing) {
      sock.destroy();
      return;
    }
    if (!this.gate.admit(sock)) {
      this.o.metrics.dnsDropped.inc({ reason: 'tcp_limit' });
      return;
    }
    this.conns.add(sock);
    sock.setNoDelay(true);
    const idleTimeoutMs = this.o.tcp().idleTimeoutMs;
    sock.setTimeout(idleTimeoutMs);
    let buf = Buffer.alloc(0);
    let outstanding = 0;
    /** The client sent FIN: answer what is pending, then close. */
    let ended = false;
    /** When the frame now in `buf` began arriving: a frame may not take longer than the idle timeout. */
    let frameSince = this.now();
    const client = { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 };
    const write = (out: Buffer | null) => {
      outstanding--;
      // finishReply never makes more than 65,535 octets for TCP (TC instead): the length always fits its two octets.
      if (out && !sock.destroyed && out.length <= 0xffff) {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        sock.write(Buffer.concat([len, out]));
      }
      if (ended && outstanding === 0) sock.end();
      if (outstanding < TCP_MAX_PENDING && sock.isPaused()) {
        frameSince = this.now();
        sock.resume();
      }
    };
    sock.on('timeout', () => {
      if (outstanding === 0) sock.destroy();
    });
    sock.on('end', () => {
      ended = true;
      if (outstanding === 0) sock.end();
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.conns.delete(sock));
    sock.on('data', (chunk) => {
      // Draining: answer what is in flight, take nothing new.
      if (this.closing) return;
      const now = this.now();
      if (buf.length === 0) frameSince = now;
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = readU16(buf, 0);
        if (len < HEADER_SIZE) {
          // Not a DNS message: a framing we cannot trust any further.
          this.o.metrics.dnsDropped.inc({ reason: 'unparsable' });
          sock.destroy();
          return;
        }
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        frameSince = now;
        outstanding++;
        const r = this.handlePacket(Buffer.from(msg), client, 'tcp');
        if (r instanceof Promise) r.then(write);
        else write(r);
        if (outstanding >= TCP_MAX_PENDING) sock.pause();
      }
      // Slowloris: each octet resets the idle timer, so bound the time one frame may take.
      if (buf.length > 0 && now - frameSince > idleTimeoutMs) {
        this.o.metrics.dnsDropped.inc({ reason: 'tcp_slow' });
        sock.destroy();
      }
    });
  }

  /**
   * One query in, one answer out (or null: drop). Never throws and never
   * rejects: anything unexpected becomes SERVFAIL and a log line.
   */
  handlePacket(raw: Buffer, client: { address: string; port: number }, transport: Transport): Buffer | null | Promise<Buffer | null> {
    const started = this.now();
    const header = parseHeader(raw);
    if (header === null) {
      this.o.metrics.dnsDropped.inc({ reason: 'unparsable' });
      return null;
    }
    if (header.qr) {
      // Never answer a response: that is how reflection loops start.
      this.o.metrics.dnsDropped.inc({ reason: 'response' });
      return null;
    }
    // An opcode we do not implement is answered from the header alone, whatever follows it
    // (a NOTIFY or UPDATE has its own section rules; genreport's `opcode` probe has no question).
    if (header.opcode !== 0) {
      this.count(-1, Rcode.NOTIMP, 'error', transport, started);
      return notImplementedReply(raw);
    }
    let q: Query | null;
    try {
      q = parseQuery(raw, header);
    } catch (err) {
      if (!(err instanceof WireError)) {
        this.o.metrics.dnsDropped.inc({ reason: 'unparsable' });
        return null;
      }
      this.count(-1, Rcode.FORMERR, 'error', transport, started);
      return formerrReply(raw, err.partial, this.o.mayRecurse(client.address));
    }
    if (q === null) {
      this.o.metrics.dnsDropped.inc({ reason: 'unparsable' });
      return null;
    }
    const req: DnsRequest = new ServerRequest(q, raw, client, transport, requestKey(q), this.o);
    if (q.edns && q.edns.version > 0) return this.finish(req, started, errorReply(req, RCODE_BADVERS));

    this.pending++;
    let result: MaybePromise<DnsReply>;
    try {
      result = this.o.handler(req);
    } catch (err) {
      result = this.handlerFailed(req, err);
    }
    if (result instanceof Promise) {
      return result
        .catch((err: unknown) => this.handlerFailed(req, err))
        .then((reply) => this.done(this.finish(req, started, reply)));
    }
    return this.done(this.finish(req, started, result));
  }

  private done<T>(v: T): T {
    this.pending--;
    if (this.pending === 0 && this.drained) this.drained();
    return v;
  }

  /** A stage threw: the error catalogue picks the rcode (SERVFAIL for anything unexpected), and it is logged. */
  private handlerFailed(req: DnsRequest, err: unknown): DnsReply {
    const rcode = errorToRcode(err);
    this.o.logger.error(
      { code: ErrorCodes.HANDLER_FAILED, name: req.query.lname, qtype: req.query.qtype, rcode, err: err instanceof Error ? err.message : String(err) },
      'DNS handler failed',
    );
    return errorReply(req, rcode);
  }

  /** finishReply's onTruncate: one function for every query, not a closure made per answer. */
  private readonly truncated = (why: Truncation): void => this.o.metrics.dnsTruncated.inc({ reason: why });

  /** The reply finished for this client (reply.ts), counted, and logged at the configured rate. */
  private finish(req: DnsRequest, started: number, reply: DnsReply): Buffer {
    const { query: q, transport } = req;
    const out = finishReply(req, reply, this.truncated);
    this.count(q.qtype, reply.rcode, reply.source, transport, started);
    // Read during the warm-up too (only the log line is left out): a call V8 never saw before ready would
    // deoptimize the whole path at the first real query (--trace-deopt: "insufficient type feedback").
    const rate = this.o.queryLogRate();
    if (rate > 0 && !this.warming && Math.random() < rate) {
      this.o.logger.info(
        { event: 'query', name: q.qname, qtype: q.qtype, client: req.client.address, rcode: reply.rcode, source: reply.source, transport, ms: +(this.now() - started).toFixed(3) },
        'query',
      );
    }
    return out;
  }

  private count(qtype: number, rcode: number, source: string, transport: Transport, started: number): void {
    const seconds = (this.now() - started) / 1000;
    this.o.metrics.countQuery(qtype, rcode, source, transport);
    this.o.metrics.dnsDuration.observe(source, seconds);
    if (this.warming) this.warmCounted.push({ qtype, rcode, source, transport, seconds });
  }
}


/**
 * The address lookup of our UDP sockets (dgram's `lookup` option). dgram
 * asks it for the destination of every send; Node's default (dns.lookup)
 * answers an address literal a tick later, so each answer cost a closure,
 * a nextTick, a pass of the tick queue and its promise-rejection check
 * (~700 of the ~2,200 bytes allocated per answer, and one more turn before
 * the datagram left: issue 24). An answer always goes to the address it
 * came from, a literal: handed back at once. Anything else goes to
 * dns.lookup as before.
 */
export function literalLookup(hostname: string, options: dns.LookupOneOptions, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = net.isIP(hostname);
  if (family === 0) dns.lookup(hostname, options, callback);
  else callback(null, hostname, family);
}

/** Where warm-up queries go and come from. */
const WARM_UP_ADDRESS = '127.0.0.1';

function listenError(proto: string, at: HostPort, err: NodeJS.ErrnoException): CanonportError {
  const hint = err.code === 'EACCES' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : err.code === 'EADDRINUSE' ? ' (address in use: another canonport serve may be running; stop it, or give this one other --dns, --grpc and --http addresses)' : '';
  return new CanonportError(ErrorCodes.LISTEN_FAILED, `cannot listen for DNS on ${proto} ${at.host}:${at.port}: ${err.message}${hint}`, {
    proto,
    host: at.host,
    port: at.port,
  });
}
