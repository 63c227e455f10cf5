import type { IncomingMessage, ServerResponse } from 'node:http';
import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { FeedEvent, FleetFeed } from './feed.js';

/**
 * The live side of the fleet page: one Server-Sent Events stream per open
 * page, carrying the diffs the feed publishes. Bounded in number (in total
 * and per client address), in what may wait unread, and in time (a
 * heartbeat proves each one alive; a client that stops reading is cut).
 *
 * Events (`event:` name, JSON `data:`):
 *   hello      {id}        the page's document is current; diffs follow
 *   diff       FleetDiff   with `id:` the document it makes
 *   resync     {id}        the page's document is unknown here (another
 *                          process, or too far behind): fetch it again; the
 *                          stream ends
 *   heartbeat  {id}        every HEARTBEAT_MS, with the current id: a page
 *                          holding another one missed something
 */

/** Live streams open at once, from every client: each holds one of the HTTP listener's 128 connections. */
export const MAX_STREAMS = 64;
/**
 * Live streams from one client address: one person's tabs, or a team
 * behind one proxy or SSH tunnel. Half the total, so one address never
 * takes them all.
 */
export const MAX_STREAMS_PER_SOURCE = 32;
/** How often every stream gets a heartbeat; a page that hears nothing for 2.5 heartbeats reconnects. */
export const HEARTBEAT_MS = 15_000;
/** A stream whose client does not read is ended once this much waits in its socket (it reconnects and catches up). */
export const MAX_UNREAD_BYTES = 1024 * 1024;
/** How long EventSource waits before reconnecting by itself after a stream drops. */
const RETRY_MS = 2000;
/** A refused stream is logged at warn once per this interval at most (each one at debug). */
const REFUSAL_WARN_EVERY_MS = 60_000;

export type StreamRefusal = { reason: 'total' | 'source'; message: string };

interface Stream {
  res: ServerResponse;
  source: string;
  /** Caught up and following the feed: only then does it get heartbeats (one before its catch-up would name a document it has not reached). */
  following: boolean;
  unsubscribe: () => void;
}

export class LiveStreams {
  /** Every open stream: at most MAX_STREAMS. */
  private readonly streams = new Set<Stream>();
  /** Open streams per client address: at most MAX_STREAMS keys (an address leaves with its last stream). */
  private readonly perSource = new Map<string, number>();
  private heartbeat: NodeJS.Timeout | undefined;
  private lastWarnAt = -Infinity;
  private closed = false;

  constructor(
    private readonly feed: FleetFeed,
    private readonly deps: { metrics: Metrics; logger: Logger; heartbeatMs?: number | undefined },
  ) {}

  get size(): number {
    return this.streams.size;
  }

  /**
   * Opens a stream for `req` if the caps allow: the page holds document
   * `since` (the `Last-Event-ID` EventSource sends on reconnecting wins
   * over the query's). Refused: null is not returned, the refusal is, and
   * nothing was written.
   */
  async open(req: IncomingMessage, res: ServerResponse, since: string | null): Promise<StreamRefusal | null> {
    const source = req.socket.remoteAddress ?? 'unknown';
    const refusal = this.refusal(source);
    if (refusal) {
      this.deps.metrics.uiStreamsRefused.inc({ reason: refusal.reason });
      this.warn(refusal, source);
      return refusal;
    }
    // Counted before the first await, so concurrent opens see each other against the caps.
    const stream: Stream = { res, source, following: false, unsubscribe: () => undefined };
    this.add(stream);
    res.on('close', () => this.remove(stream));
    res.statusCode = 200;
    res.setHeader('Content-Type', 'text/event-stream; charset=utf-8');
    res.setHeader('Cache-Control', 'no-store');
    // Proxies (nginx) would otherwise hold events back to fill a buffer.
    res.setHeader('X-Accel-Buffering', 'no');
    req.socket.setNoDelay(true);
    req.socket.setKeepAlive(true, HEARTBEAT_MS);
    res.flushHeaders();
    res.write(`retry: ${RETRY_MS}\n\n`);
    let current;
    try {
      // Rebuilt first if the view changed, so the catch-up below ends at the current document.
      current = await this.feed.latest();
    } catch {
      res.end();
      return null;
    }
    if (res.destroyed || this.closed) return null;
    const last = headerText(req.headers['last-event-id']) ?? since;
    const missed = last === null ? null : this.feed.since(last);
    if (missed === null) {
      // Ended after this: EventSource would reconnect with the same unknown id; the page fetches the document first.
      send(res, 'resync', undefined, JSON.stringify({ id: current.id }));
      res.end();
      return null;
    }
    if (missed.length === 0) send(res, 'hello', undefined, JSON.stringify({ id: current.id }));
    for (const e of missed) send(res, 'diff', e.id, e.json);
    // Synchronously after the catch-up: no change can fall between the two.
    stream.unsubscribe = this.feed.subscribe((e) => this.deliver(stream, e));
    stream.following = true;
    return null;
  }

  /** Ends every stream (the daemon is stopping: pages reconnect to whoever answers next). */
  closeAll(): void {
    this.closed = true;
    for (const s of [...this.streams]) s.res.end();
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  private refusal(source: string): StreamRefusal | null {
    if (this.closed) return { reason: 'total', message: 'the daemon is stopping' };
    if (this.streams.size >= MAX_STREAMS) {
      return { reason: 'total', message: `${ErrorCodes.UI_STREAM_LIMIT}: ${MAX_STREAMS} live fleet pages are open on this daemon, the most it serves; try again later` };
    }
    if ((this.perSource.get(source) ?? 0) >= MAX_STREAMS_PER_SOURCE) {
      return { reason: 'source', message: `${ErrorCodes.UI_STREAM_LIMIT}: ${MAX_STREAMS_PER_SOURCE} live fleet pages are open from ${source}, the most one address may hold; close some` };
    }
    return null;
  }

  private warn(refusal: StreamRefusal, source: string): void {
    const now = Date.now();
    const entry = { code: ErrorCodes.UI_STREAM_LIMIT, reason: refusal.reason, client: source, open: this.streams.size };
    if (now - this.lastWarnAt >= REFUSAL_WARN_EVERY_MS) {
      this.lastWarnAt = now;
      this.deps.logger.warn(entry, 'fleet page: live stream refused (limit reached; further refusals this minute at debug)');
    } else this.deps.logger.debug(entry, 'fleet page: live stream refused');
  }

  private add(s: Stream): void {
    this.streams.add(s);
    this.perSource.set(s.source, (this.perSource.get(s.source) ?? 0) + 1);
    this.deps.metrics.uiStreams.set(this.streams.size);
    this.heartbeat ??= setInterval(() => this.beat(), this.deps.heartbeatMs ?? HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  private remove(s: Stream): void {
    if (!this.streams.delete(s)) return;
    s.unsubscribe();
    const n = (this.perSource.get(s.source) ?? 1) - 1;
    if (n <= 0) this.perSource.delete(s.source);
    else this.perSource.set(s.source, n);
    this.deps.metrics.uiStreams.set(this.streams.size);
    if (this.streams.size === 0) {
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
    }
  }

  private deliver(s: Stream, e: FeedEvent): void {
    if (s.res.writableLength > MAX_UNREAD_BYTES) {
      // It reconnects with its last id and catches up from the recent diffs, or fetches the document.
      s.res.destroy();
      return;
    }
    send(s.res, 'diff', e.id, e.json);
  }

  private beat(): void {
    this.feed
      .latest()
      .then((current) => {
        const data = JSON.stringify({ id: current.id });
        for (const s of this.streams) if (s.following && s.res.writableLength <= MAX_UNREAD_BYTES) send(s.res, 'heartbeat', undefined, data);
      })
      .catch(() => undefined);
  }
}

function send(res: ServerResponse, event: string, id: string | undefined, data: string): void {
  if (res.destroyed || res.writableEnded) return;
  res.write(`${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${data}\n\n`);
}

function headerText(v: string | string[] | undefined): string | null {
  const s = Array.isArray(v) ? v[0] : v;
  return s === undefined || s === '' ? null : s;
}
