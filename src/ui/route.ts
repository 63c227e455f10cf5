import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import type { HttpRoute } from '../http/server.js';
import type { Logger } from '../log.js';
import type { PageInfo } from './client/model.js';
import { brotliOptions, compress, type Encoding, type FleetFeed, type Published } from './feed.js';
import type { LiveStreams } from './events.js';
import { CLIENT_SCRIPT, indexHtml, inlineHash, STYLE_CSS } from './page.js';

export type { PageInfo };

/**
 * `/ui`: the fleet page on the daemon's HTTP listener, behind its access
 * policy (`--http-allow`, client certificates), read-only (GET and HEAD):
 *
 *   /ui/                 the page: HTML with its style, its script, what the daemon says
 *                        about itself and the first screen's document inline, and that first
 *                        screen already drawn (page.ts), so a first visit paints from this one
 *                        answer; made and compressed once per document
 *   /ui/api/fleet        the fleet document: what `canonport fleet --json` prints, from this daemon's view
 *   /ui/api/events       its changes, live (Server-Sent Events, events.ts)
 *
 * Bodies go compressed (brotli or gzip) to clients that accept it.
 */

export interface UiRouteDeps {
  feed: FleetFeed;
  streams: LiveStreams;
  /** What the page says about this daemon (read per request: a reload may change zones). */
  info(): PageInfo;
  logger: Logger;
}

/**
 * Sent with every answer under /ui: the page runs only its own script and
 * style (named by their digests: they are inline), talks only to this
 * daemon, is never framed, leaks no referrer.
 */
function securityHeaders(script: string): Readonly<Record<string, string>> {
  return {
    'Content-Security-Policy': `default-src 'none'; script-src ${inlineHash(script)}; style-src ${inlineHash(STYLE_CSS)}; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
  };
}

/** Below this, compressing costs more than it saves. */
const COMPRESS_MIN_BYTES = 1024;
/** An id as the feed makes them (`<epoch>-<seq>`); anything else is not one. */
const FLEET_ID = /^[0-9a-f]{1,16}-[0-9]{1,15}$/;

export function uiRoute(deps: UiRouteDeps): HttpRoute {
  let script: string | undefined;
  let headers: Readonly<Record<string, string>> | undefined;
  const page = new PageCache();
  return {
    prefix: '/ui',
    label: 'ui',
    async serve(req, res, path, counted) {
      // Read once, on the first request (a daemon nobody opens the page of never reads it).
      script ??= clientScript();
      headers ??= securityHeaders(script);
      for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
      const sub = path.slice('/ui'.length);
      if (sub === '') {
        res.setHeader('Location', '/ui/');
        return end(req, res, counted, 308, 'text/plain; charset=utf-8', Buffer.from('the fleet page is at /ui/\n'));
      }
      if (sub === '/') {
        const current = await deps.feed.latest();
        const encoding = accepted(req, COMPRESS_MIN_BYTES);
        const body = await page.get(current, deps.info(), script, encoding);
        res.setHeader('X-Canonport-Fleet-Id', current.id);
        return sendBody(req, res, counted, 'text/html; charset=utf-8', body, { cache: 'no-store', encoding });
      }
      if (sub === '/api/fleet') {
        const current = await deps.feed.latest();
        res.setHeader('X-Canonport-Fleet-Id', current.id);
        const etag = `"${current.id}"`;
        res.setHeader('ETag', etag);
        if (req.headers['if-none-match'] === etag) return end(req, res, counted, 304);
        const encoding = accepted(req, current.encoded.json.length);
        return sendBody(req, res, counted, 'application/json; charset=utf-8', await current.body(encoding), { cache: 'no-cache', encoding });
      }
      if (sub === '/api/events') {
        if (req.method === 'HEAD') return end(req, res, counted, 200, 'text/event-stream; charset=utf-8');
        const since = new URL(req.url ?? '', 'http://localhost').searchParams.get('since');
        const refused = await deps.streams.open(req, res, since !== null && FLEET_ID.test(since) ? since : null);
        if (refused) {
          res.setHeader('Retry-After', '10');
          return end(req, res, counted, 429, 'text/plain; charset=utf-8', Buffer.from(`${refused.message}\n`));
        }
        counted(200);
        return;
      }
      return end(req, res, counted, 404, 'text/plain; charset=utf-8', Buffer.from('not found\n'));
    },
  };
}

/**
 * The page's bundled script (scripts/bundle-ui.mjs): beside this module
 * when it runs compiled (dist/ui/client/), else, run from src/ by vitest,
 * the build in dist/ (test/global-setup.ts builds it before any test).
 */
function clientScript(): string {
  const here = new URL(`./client/${CLIENT_SCRIPT}`, import.meta.url);
  const file = fileURLToPath(import.meta.url.endsWith('.ts') ? new URL(`../../dist/ui/client/${CLIENT_SCRIPT}`, import.meta.url) : here);
  const text = readFileSync(file, 'utf8');
  // Inline, these would end the script element early (the bundler keeps them out of what it writes; checked, not assumed).
  if (/<\/script|<!--/i.test(text)) throw new Error(`${file} holds "</script" or "<!--": it cannot be inlined into the page`);
  return text;
}

/**
 * The page as last served: made (the HTML with the current document's
 * first screen) and compressed once per document, daemon info and
 * encoding, whatever the number of loads. One entry, the current document's.
 */
class PageCache {
  private key = '';
  private html: Buffer | undefined;
  private readonly bodies = new Map<Encoding, Promise<Buffer>>();

  get(current: Published, info: PageInfo, script: string, encoding: Encoding): Promise<Buffer> {
    const key = `${current.id}\u0000${JSON.stringify(info)}`;
    if (key !== this.key) {
      this.key = key;
      this.html = undefined;
      this.bodies.clear();
    }
    let body = this.bodies.get(encoding);
    if (!body) {
      // Made once (it draws the first screen: page.ts firstScreenHtml), compressed once per encoding.
      this.html ??= Buffer.from(indexHtml(info, current.firstScreenDocument(), script));
      body = compress(this.html, encoding);
      this.bodies.set(encoding, body);
    }
    return body;
  }
}

/** Sends `body` as is, or compressed first when the client accepts it and it is worth it. */
function sendBody(
  req: IncomingMessage,
  res: ServerResponse,
  counted: (status: number) => void,
  type: string,
  body: Buffer,
  opts: { cache: 'no-store' | 'no-cache'; encoding?: Encoding },
): void {
  let encoding = opts.encoding;
  if (encoding === undefined) {
    encoding = accepted(req, body.length);
    if (encoding === 'br') body = brotliCompressSync(body, brotliOptions(body.length));
    else if (encoding === 'gzip') body = gzipSync(body);
  }
  res.setHeader('Cache-Control', opts.cache);
  res.setHeader('Vary', 'Accept-Encoding');
  if (encoding !== 'identity') res.setHeader('Content-Encoding', encoding);
  end(req, res, counted, 200, type, body);
}

function end(req: IncomingMessage, res: ServerResponse, counted: (status: number) => void, status: number, type?: string, body?: Buffer): void {
  counted(status);
  res.statusCode = status;
  if (type) res.setHeader('Content-Type', type);
  if (!res.hasHeader('Cache-Control')) res.setHeader('Cache-Control', 'no-store');
  if (body) res.setHeader('Content-Length', body.length);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** The encoding to send `size` bytes in: brotli, else gzip, when Accept-Encoding allows (q > 0) and the body is worth compressing. */
export function accepted(req: IncomingMessage, size: number): Encoding {
  if (size < COMPRESS_MIN_BYTES) return 'identity';
  const header = req.headers['accept-encoding'];
  const text = Array.isArray(header) ? header.join(',') : (header ?? '');
  const ok = new Set<string>();
  for (const part of text.split(',')) {
    const [token, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q=([0-9.]+)\s*$/.exec(p)).find(Boolean);
    if (token && (!q || Number(q[1]) > 0)) ok.add(token);
  }
  if (ok.has('br')) return 'br';
  if (ok.has('gzip')) return 'gzip';
  return 'identity';
}
