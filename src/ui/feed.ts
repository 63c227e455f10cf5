import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { brotliCompress, constants as zlib, gzip } from 'node:zlib';
import { ErrorCodes } from '../errors.js';
import type { FleetDocument } from '../fleet/document.js';
import { silentLogger, type Logger } from '../log.js';
import { FIRST_SCREEN_HOSTS } from './client/model.js';
import { diffDocuments, encodeDocument, firstScreenJson, type EncodedDocument } from './client/diff.js';

/**
 * The fleet as a daemon's page sees it: the current document (the one
 * `fleet --json` prints, from this daemon's view), rebuilt when the view
 * changes, with the diff from the one before. Bursts of changes (a relist,
 * a deploy touching many hosts) are coalesced: a rebuild runs at most
 * DEBOUNCE_MS after the last change and MAX_WAIT_MS after the first (later
 * only to keep rebuilds under REBUILD_CPU_SHARE of a core), and only while
 * some page follows (otherwise the next request rebuilds). One rebuild and
 * one diff per change, whatever the number of pages.
 */

/** Where the documents come from: the cluster view, or this host's inventory. */
export interface FeedSource {
  /** The document now (the single-host inventory may have to read /proc first). */
  read(): FleetDocument | Promise<FleetDocument>;
  /** Calls `listener` whenever `read()` may answer differently; returns the unsubscribe function. */
  onChange(listener: () => void): () => void;
}

export type Encoding = 'br' | 'gzip' | 'identity';

/** One document as published: its id, its parts as JSON, and its compressed forms, each made once. */
export interface Published {
  /** `<epoch>-<seq>`: the epoch tells this daemon process's documents from another's. */
  id: string;
  encoded: EncodedDocument;
  /** The JSON text in `encoding`, compressed on first use (off the event loop: zlib's thread pool). */
  body(encoding: Encoding): Promise<Buffer>;
  /**
   * What the page inlines (page.ts): the first screen's document, or the
   * whole one when the fleet fits in the first screen (`firstScreen` false).
   * Its JSON is made once per document.
   */
  firstScreenDocument(): { id: string; json: string; firstScreen: boolean };
}

/** A change as pages receive it. */
export interface FeedEvent {
  /** The document it makes. */
  id: string;
  /** The FleetDiff as JSON. */
  json: string;
}

/** Quiet time after the last change before a rebuild. */
export const DEBOUNCE_MS = 250;
/** Longest a change waits for its rebuild, however long a burst goes on (unless REBUILD_CPU_SHARE holds it back). */
export const MAX_WAIT_MS = 1000;
/**
 * The most of one core rebuilds may take while a view churns and pages
 * follow: a rebuild that took B ms is followed by at least
 * B × (1 / share − 1) ms without one. At 10 hosts a rebuild takes a few ms
 * and MAX_WAIT_MS decides; at 1,000 hosts × 20 services one takes a
 * quarter of a second, which once a second was a quarter of a core, shared
 * by every page (what each more page costs is a write of each diff).
 */
export const REBUILD_CPU_SHARE = 0.1;
/**
 * Diffs kept (the most recent), so a page that reconnects, or that fetched
 * the document just before a change, catches up without fetching it again.
 * Further behind, it is told to fetch the document (`since` answers null).
 */
export const RECENT_DIFFS = 32;

const brotli = promisify(brotliCompress);
const gzipAsync = promisify(gzip);

export interface FleetFeedOptions {
  logger?: Logger | undefined;
  debounceMs?: number | undefined;
  maxWaitMs?: number | undefined;
}

export class FleetFeed {
  private readonly epoch = randomBytes(4).toString('hex');
  private seq = 0;
  private current: Published | undefined;
  private building: Promise<Published> | undefined;
  private dirty = true;
  /** The last RECENT_DIFFS diffs, oldest first. */
  private readonly recent: { from: string; event: FeedEvent }[] = [];
  /** Pages following the feed: at most the live streams' caps (events.ts). */
  private readonly subscribers = new Set<(e: FeedEvent) => void>();
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt: number | undefined;
  /** When the last rebuild ended and how long it took (Date.now()): REBUILD_CPU_SHARE spaces the next one. */
  private lastBuild = { endedAt: -Infinity, ms: 0 };
  private unsubscribe: (() => void) | undefined;
  private readonly logger: Logger;
  private readonly debounceMs: number;
  private readonly maxWaitMs: number;

  constructor(
    private readonly source: FeedSource,
    opts: FleetFeedOptions = {},
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.debounceMs = opts.debounceMs ?? DEBOUNCE_MS;
    this.maxWaitMs = opts.maxWaitMs ?? MAX_WAIT_MS;
    this.unsubscribe = source.onChange(() => this.changed());
  }

  /** Stops following the source. */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.subscribers.clear();
  }

  /** The current document, rebuilt first when the source changed since. Rejects only if the source throws (a bug). */
  latest(): Promise<Published> {
    if (!this.dirty && this.current) return Promise.resolve(this.current);
    return this.rebuild();
  }

  /**
   * The changes from document `id` to the current one, oldest first: empty
   * when `id` is current, null when it is not one of the recent ones (a
   * page from before a restart, or too far behind).
   */
  since(id: string): FeedEvent[] | null {
    if (this.current?.id === id) return [];
    const at = this.recent.findIndex((d) => d.from === id);
    return at < 0 ? null : this.recent.slice(at).map((d) => d.event);
  }

  /** Calls `listener` with every change from now on; returns the unsubscribe function. */
  subscribe(listener: (e: FeedEvent) => void): () => void {
    this.subscribers.add(listener);
    if (this.dirty) this.schedule();
    return () => this.subscribers.delete(listener);
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  private changed(): void {
    this.dirty = true;
    if (this.subscribers.size > 0) this.schedule();
  }

  private schedule(): void {
    const now = Date.now();
    this.firstChangeAt ??= now;
    const spaced = this.lastBuild.endedAt + this.lastBuild.ms * (1 / REBUILD_CPU_SHARE - 1);
    const wait = Math.max(0, Math.min(this.debounceMs, this.firstChangeAt + this.maxWaitMs - now), spaced - now);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.rebuild().catch(() => undefined);
    }, wait);
    this.timer.unref();
  }

  /** Reads the source, and publishes a new document when it differs (one rebuild at a time). */
  private rebuild(): Promise<Published> {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.firstChangeAt = undefined;
    this.building ??= (async () => {
      // Cleared before reading: a change during the read marks it dirty again.
      this.dirty = false;
      const startedAt = Date.now();
      try {
        const prev = this.current;
        // What the source left as it was keeps its JSON from the document before (diff.ts encodeDocument).
        const encoded = encodeDocument(await this.source.read(), prev?.encoded);
        const id = `${this.epoch}-${this.seq + 1}`;
        const diff = prev ? diffDocuments(prev.encoded, encoded, prev.id, id) : null;
        // The same document again (a change undone, a rebuild that found nothing new): nothing to publish.
        if (prev && !diff) return prev;
        this.seq++;
        const next = published(id, encoded);
        this.current = next;
        if (prev && diff) {
          const event = { id, json: JSON.stringify(diff) };
          this.recent.push({ from: prev.id, event });
          if (this.recent.length > RECENT_DIFFS) this.recent.shift();
          for (const s of [...this.subscribers]) s(event);
        }
        return next;
      } catch (err) {
        this.dirty = true;
        this.logger.error({ err, code: ErrorCodes.HANDLER_FAILED }, 'fleet page: building the fleet document failed');
        throw err;
      } finally {
        this.building = undefined;
        this.lastBuild = { endedAt: Date.now(), ms: Date.now() - startedAt };
        if (this.dirty && this.subscribers.size > 0) this.schedule();
      }
    })();
    return this.building;
  }
}

/** `raw` in `encoding`, off the event loop (zlib's thread pool). */
export function compress(raw: Buffer, encoding: Encoding): Promise<Buffer> {
  return encoding === 'br' ? brotli(raw, brotliOptions(raw.length)) : encoding === 'gzip' ? gzipAsync(raw, { level: 6 }) : Promise.resolve(raw);
}

function published(id: string, encoded: EncodedDocument): Published {
  // At most 3 encodings per document, and one document is current.
  const bodies = new Map<Encoding, Promise<Buffer>>();
  // The fleet fits in the first screen: its document is the whole one.
  const part = encoded.doc.hosts.length > FIRST_SCREEN_HOSTS;
  let first: string | undefined;
  const firstText = () => (part ? (first ??= firstScreenJson(encoded, FIRST_SCREEN_HOSTS)) : encoded.json);
  return {
    id,
    encoded,
    body: (encoding) => {
      let b = bodies.get(encoding);
      if (!b) {
        b = compress(Buffer.from(encoded.json), encoding);
        bodies.set(encoding, b);
      }
      return b;
    },
    firstScreenDocument: () => ({ id, json: firstText(), firstScreen: part }),
  };
}

/** Quality 5: about gzip's speed at a smaller size; 11 (the default) takes seconds on a 4 MB document. */
export function brotliOptions(size: number): { params: Record<number, number> } {
  return { params: { [zlib.BROTLI_PARAM_QUALITY]: 5, [zlib.BROTLI_PARAM_SIZE_HINT]: size, [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT } };
}
