/// <reference lib="dom" />
import type { FleetDocument } from '../../fleet/document.js';
import { applyDiff, type FleetDiff } from './diff.js';
import { MATRIX_TIMING } from './render.js';

/**
 * Keeps the page's document current: starts from the one inlined in the
 * page (the first screen's at scale: then fetches `api/fleet`), then
 * follows `api/events` (Server-Sent Events) and applies each diff.
 * Whatever goes wrong (the daemon restarts, a diff for another document, a
 * refused stream, silence past 2.5 heartbeats) ends in the same place:
 * fetch the document again and follow from it, after a backoff that grows
 * to 30 s, with jitter so many pages do not come back at once.
 */

export type LiveStatus =
  /** Fetching the document or opening the stream. */
  | { kind: 'connecting' }
  /** Following the daemon's changes. */
  | { kind: 'live' }
  /** Lost the daemon at `since`; trying again at `retryAt`. The document shown is the last one received. */
  | { kind: 'offline'; since: number; retryAt: number; reason: string };

export interface LiveCallbacks {
  /**
   * A new document (the first, or one a diff made); `firstScreen`: the
   * first-screen document (diff.ts firstScreenJson), drawn while the whole
   * one loads, which always follows. Returns whether it drew the matrix
   * (the whole document is then read once that is on the screen).
   */
  document(doc: FleetDocument, id: string, firstScreen?: boolean): boolean | void;
  status(s: LiveStatus): void;
}

/** A browser that reports no paint (no Element Timing) is given this long for the first screen's. */
const PAINT_WAIT_MS = 1000;

/**
 * Resolves once the matrix drawn is on the screen, as the browser reports
 * it (Element Timing of render.ts MATRIX_TIMING): work on this thread
 * before it (parsing megabytes of JSON) would hold the paint back, and a
 * busy machine presents a frame well after the script drew it. Without
 * Element Timing (Firefox, Safari): the frame after the next one, at most
 * PAINT_WAIT_MS.
 */
function afterPaint(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      observer?.disconnect();
      window.clearTimeout(timer);
      resolve();
    };
    const timer = window.setTimeout(done, PAINT_WAIT_MS);
    let observer: PerformanceObserver | undefined;
    if (PerformanceObserver.supportedEntryTypes?.includes('element')) {
      observer = new PerformanceObserver((list) => {
        if (list.getEntries().some((e) => (e as PerformanceEntry & { identifier?: string }).identifier === MATRIX_TIMING)) done();
      });
      observer.observe({ type: 'element', buffered: true });
    } else requestAnimationFrame(() => requestAnimationFrame(() => window.setTimeout(done, 0)));
  });
}

/** For the bench: when the whole document was there, parsed (app.ts marks the render). */
function documentMark(): void {
  if (performance.getEntriesByName('cp-document').length === 0) performance.mark('cp-document');
}

/** The daemon's heartbeat (events.ts): silence for 2.5 of them means the stream is dead even if the socket says nothing. */
const HEARTBEAT_MS = 15_000;
const SILENCE_MS = HEARTBEAT_MS * 2.5;
const BACKOFF_FIRST_MS = 1000;
const BACKOFF_MAX_MS = 30_000;

export class Live {
  private doc: FleetDocument | undefined;
  private id = '';
  private es: EventSource | undefined;
  private retries = 0;
  private offlineSince: number | undefined;
  private retryTimer: number | undefined;
  private silenceTimer: number | undefined;
  private stopped = false;

  constructor(
    private readonly base: string,
    private readonly on: LiveCallbacks,
  ) {}

  /**
   * Starts from the document the page came with (page.ts inlines it: the
   * first screen's, or the whole one when the fleet fits in it), drawn at
   * once; then fetches the whole one if that was only the first screen,
   * and follows changes. Without one, fetches it.
   */
  start(inline?: { doc: FleetDocument; id: string; firstScreen: boolean }): void {
    if (!inline) return void this.resync();
    const drawn = this.on.document(inline.doc, inline.id, inline.firstScreen) === true;
    if (inline.firstScreen) {
      // The whole document is asked for now, but read (megabytes of JSON to parse at 1,000 hosts, on the one
      // thread that also paints) only once the first screen is on the screen.
      const whole = fetch(`${this.base}api/fleet`, { cache: 'no-store' });
      whole.catch(() => undefined);
      return void (drawn ? afterPaint() : Promise.resolve()).then(() => this.resync(whole));
    }
    documentMark();
    this.doc = inline.doc;
    this.id = inline.id;
    this.follow();
  }

  stop(): void {
    this.stopped = true;
    this.es?.close();
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.silenceTimer);
  }

  /** Fetches the whole document (or reads `asked`, its fetch under way), then follows changes from it. */
  private async resync(asked?: Promise<Response>): Promise<void> {
    this.es?.close();
    this.es = undefined;
    if (this.stopped) return;
    if (this.offlineSince === undefined) this.on.status({ kind: 'connecting' });
    let res: Response;
    try {
      res = await (asked ?? fetch(`${this.base}api/fleet`, { cache: 'no-store' }));
    } catch (err) {
      return this.offline(`the daemon cannot be reached (${(err as Error).message})`);
    }
    if (!res.ok) return this.offline(`the daemon answered ${res.status} ${(await res.text().catch(() => '')).trim()}`);
    const id = res.headers.get('X-Canonport-Fleet-Id') ?? '';
    let doc: FleetDocument;
    try {
      doc = (await res.json()) as FleetDocument;
    } catch (err) {
      return this.offline(`the daemon's answer was cut or unreadable (${(err as Error).message})`);
    }
    documentMark();
    this.doc = doc;
    this.id = id;
    this.on.document(doc, id);
    this.follow();
  }

  private follow(): void {
    const es = new EventSource(`${this.base}api/events?since=${encodeURIComponent(this.id)}`);
    this.es = es;
    this.heard();
    es.onopen = () => {
      this.retries = 0;
      this.offlineSince = undefined;
      this.on.status({ kind: 'live' });
      this.heard();
    };
    es.addEventListener('hello', () => this.heard());
    es.addEventListener('heartbeat', (e) => {
      this.heard();
      const { id } = JSON.parse((e as MessageEvent<string>).data) as { id: string };
      // A change this page never got (it cannot happen on one ordered stream, unless the daemon restarted).
      if (id !== this.id) void this.resync();
    });
    es.addEventListener('diff', (e) => {
      this.heard();
      const diff = JSON.parse((e as MessageEvent<string>).data) as FleetDiff;
      if (!this.doc || diff.from !== this.id) return void this.resync();
      try {
        this.doc = applyDiff(this.doc, diff);
      } catch {
        return void this.resync();
      }
      this.id = diff.to;
      this.on.document(this.doc, this.id);
    });
    es.addEventListener('resync', () => {
      es.close();
      void this.resync();
    });
    es.onerror = () => {
      // CONNECTING: the browser reconnects by itself (with Last-Event-ID); CLOSED: it gave up (a 429, a 403, a restart): so do we, for a while.
      if (es.readyState === EventSource.CLOSED) this.offline('the live stream was refused or ended');
      else this.offline('the live stream dropped; reconnecting', false);
    };
  }

  /** Marks the page offline; with `retry`, closes the stream and fetches everything again after the backoff. */
  private offline(reason: string, retry = true): void {
    if (this.stopped) return;
    const now = Date.now();
    this.offlineSince ??= now;
    if (!retry) {
      this.on.status({ kind: 'offline', since: this.offlineSince, retryAt: now + 2000, reason });
      return;
    }
    this.es?.close();
    this.es = undefined;
    window.clearTimeout(this.silenceTimer);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** this.retries++) * (0.8 + Math.random() * 0.4);
    this.on.status({ kind: 'offline', since: this.offlineSince, retryAt: now + delay, reason });
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => void this.resync(), delay);
  }

  /** Something came from the daemon: the stream is alive for another SILENCE_MS. */
  private heard(): void {
    window.clearTimeout(this.silenceTimer);
    this.silenceTimer = window.setTimeout(() => this.offline(`nothing from the daemon for ${SILENCE_MS / 1000} s`), SILENCE_MS);
  }
}
