import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import type { HttpRoute } from '../http/server.js';
import type { Logger } from '../log.js';
import { FIRST_SCREEN_HOSTS, type PageInfo } from './client/model.js';
import { brotliOptions, type Encoding, type FleetFeed } from './feed.js';
import type { LiveStreams } from './events.js';
import { CLIENT_MODULES, indexHtml, STYLE_CSS } from './page.js';

export type { PageInfo };

/**
 * `/ui`: the fleet page on the daemon's HTTP listener, behind its access
 * policy (`--http-allow`, client certificates), read-only (GET and HEAD):
 *
 *   /ui/                 the page (HTML, with what the daemon says about itself)
 *   /ui/style.css, /ui/<module>.js   its style and scripts
 *   /ui/api/fleet        the fleet document: what `canonport fleet --json` prints, from this daemon's view
 *   /ui/api/fleet/first  the document for the matrix's first screen: every host, the first
 *                        FIRST_SCREEN_HOSTS with their listeners, marked `X-Canonport-Fleet-Part:
 *                        first-screen` (the page draws it while the whole one loads); the whole
 *                        document when the fleet fits in it
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

/** Sent with every answer under /ui: the page loads only its own files, is never framed, leaks no referrer. */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
};

/** Below this, compressing costs more than it saves. */
const COMPRESS_MIN_BYTES = 1024;
/** An id as the feed makes them (`<epoch>-<seq>`); anything else is not one. */
const FLEET_ID = /^[0-9a-f]{1,16}-[0-9]{1,15}$/;

export function uiRoute(deps: UiRouteDeps): HttpRoute {
  const assets = new Assets();
  return {
    prefix: '/ui',
    label: 'ui',
    async serve(req, res, path, counted) {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
      const sub = path.slice('/ui'.length);
      if (sub === '') {
        res.setHeader('Location', '/ui/');
        return end(req, res, counted, 308, 'text/plain; charset=utf-8', Buffer.from('the fleet page is at /ui/\n'));
      }
      if (sub === '/') return sendBody(req, res, counted, 'text/html; charset=utf-8', Buffer.from(indexHtml(deps.info())), { cache: 'no-store' });
      if (sub === '/style.css') return sendAsset(req, res, counted, assets.get('style.css', 'text/css; charset=utf-8', () => Buffer.from(STYLE_CSS)));
      const module = sub.slice(1);
      if ((CLIENT_MODULES as readonly string[]).includes(module)) {
        return sendAsset(req, res, counted, assets.get(module, 'text/javascript; charset=utf-8', () => readFileSync(clientFile(module))));
      }
      if (sub === '/api/fleet' || sub === '/api/fleet/first') {
        const current = await deps.feed.latest();
        const first = sub === '/api/fleet/first';
        res.setHeader('X-Canonport-Fleet-Id', current.id);
        // The two texts of one document are two representations: their tags differ.
        const etag = `"${current.id}${first ? '-first' : ''}"`;
        res.setHeader('ETag', etag);
        if (req.headers['if-none-match'] === etag) return end(req, res, counted, 304);
        // Told apart from the whole document, which it is when the fleet fits in it.
        const part = first && current.encoded.doc.hosts.length > FIRST_SCREEN_HOSTS;
        if (part) res.setHeader('X-Canonport-Fleet-Part', 'first-screen');
        const encoding = accepted(req, current.encoded.json.length);
        const body = await (part ? current.firstScreen(encoding) : current.body(encoding));
        return sendBody(req, res, counted, 'application/json; charset=utf-8', body, { cache: 'no-cache', encoding });
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
 * The compiled page scripts: beside this module when it runs compiled
 * (dist/ui/client/), else, run from src/ by vitest, the build in dist/
 * (test/global-setup.ts builds it before any test).
 */
function clientFile(name: string): string {
  const here = new URL(`./client/${name}`, import.meta.url);
  if (!import.meta.url.endsWith('.ts')) return fileURLToPath(here);
  return fileURLToPath(new URL(`../../dist/ui/client/${name}`, import.meta.url));
}

interface Asset {
  type: string;
  etag: string;
  bodies: Record<Encoding, Buffer>;
}

/** Static files, read and compressed once, on first request. */
class Assets {
  private readonly cache = new Map<string, Asset>();

  get(name: string, type: string, read: () => Buffer): Asset {
    let a = this.cache.get(name);
    if (!a) {
      const raw = read();
      a = {
        type,
        etag: `"${createHash('sha256').update(raw).digest('base64url').slice(0, 22)}"`,
        bodies: { identity: raw, gzip: gzipSync(raw, { level: 9 }), br: brotliCompressSync(raw, brotliOptions(raw.length)) },
      };
      this.cache.set(name, a);
    }
    return a;
  }
}

function sendAsset(req: IncomingMessage, res: ServerResponse, counted: (status: number) => void, a: Asset): void {
  res.setHeader('ETag', a.etag);
  if (req.headers['if-none-match'] === a.etag) return end(req, res, counted, 304);
  const encoding = accepted(req, a.bodies.identity.length);
  sendBody(req, res, counted, a.type, a.bodies[encoding], { cache: 'no-cache', encoding });
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
