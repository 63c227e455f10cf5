/// <reference lib="dom" />
import type { FleetDocument } from '../../fleet/document.js';
import { applyDiff, type FleetDiff } from './diff.js';

/**
 * Keeps the page's document current: fetches it (`api/fleet`, compressed),
 * then follows `api/events` (Server-Sent Events) and applies each diff.
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
   * one loads, which always follows.
   */
  document(doc: FleetDocument, id: string, firstScreen?: boolean): void;
  status(s: LiveStatus): void;
  /** Whether what the page shows now can be drawn from the first-screen document (asked once, on the first load). */
  firstScreenWill?(): boolean;
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

  start(): void {
    void this.resync();
  }

  stop(): void {
    this.stopped = true;
    this.es?.close();
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.silenceTimer);
  }

  /**
   * Fetches the whole document, then follows changes from it. The first
   * load of a view the first screen can draw asks for that first (page.ts
   * preloads it): the daemon answers the whole document when the fleet fits
   * in it, else the first screen, drawn while the whole one downloads.
   */
  private async resync(): Promise<void> {
    this.es?.close();
    this.es = undefined;
    if (this.stopped) return;
    if (this.offlineSince === undefined) this.on.status({ kind: 'connecting' });
    let res: Response;
    try {
      const first = this.doc === undefined && this.on.firstScreenWill?.() === true;
      res = await fetch(`${this.base}api/fleet${first ? '/first' : ''}`, { cache: 'no-store' });
      if (first && res.ok && res.headers.get('X-Canonport-Fleet-Part') === 'first-screen') {
        const whole = fetch(`${this.base}api/fleet`, { cache: 'no-store' });
        // Awaited below; until then, a rejection is not an unhandled one.
        whole.catch(() => undefined);
        await this.firstScreen(res);
        res = await whole;
      }
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
    // For the bench: when the document arrived and was parsed (app.ts marks the render).
    if (performance.getEntriesByName('cp-document').length === 0) performance.mark('cp-document');
    this.doc = doc;
    this.id = id;
    this.on.document(doc, id);
    this.follow();
  }

  /**
   * The first load's first screen: at 1,000 hosts the whole document is
   * megabytes to download and parse, the first screen a tenth of it. A
   * failure here is left to the whole document's fetch, under way.
   */
  private async firstScreen(res: Response): Promise<void> {
    try {
      const id = res.headers.get('X-Canonport-Fleet-Id') ?? '';
      const doc = (await res.json()) as FleetDocument;
      this.on.document(doc, id, true);
    } catch {
      // The whole document follows.
    }
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
