import { request, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** One Server-Sent Event as a client parses it. */
export interface SseEvent {
  event: string;
  id: string | undefined;
  data: string;
}

/**
 * A raw EventSource: GET `url` from `localAddress` (another 127.x address is
 * another client), collecting events as they come; an https URL is checked
 * against `ca`. `status` is the answer's
 * status; a refused stream's body is in `body`.
 */
export interface SseClient {
  status: number;
  headers: IncomingMessage['headers'];
  events: SseEvent[];
  body: string;
  /** Resolves with the first event (seen or to come) matching `pred`; rejects after `ms`. */
  next(pred: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

export function openSse(url: string, opts: { localAddress?: string; headers?: Record<string, string>; ca?: string | Buffer } = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const get = url.startsWith('https:') ? httpsRequest : request;
    const req = get(url, { localAddress: opts.localAddress, ca: opts.ca, headers: { Accept: 'text/event-stream', ...opts.headers } }, (res) => {
      const events: SseEvent[] = [];
      const waiters = new Set<{ pred: (e: SseEvent) => boolean; resolve: (e: SseEvent) => void }>();
      let buffer = '';
      let body = '';
      res.setEncoding('utf8');
      let endedResolve!: () => void;
      const ended = new Promise<void>((r) => (endedResolve = r));
      res.on('end', endedResolve);
      res.on('close', endedResolve);
      res.on('data', (chunk: string) => {
        body += chunk;
        buffer += chunk;
        let at;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, at);
          buffer = buffer.slice(at + 2);
          const e: SseEvent = { event: 'message', id: undefined, data: '' };
          let hasData = false;
          for (const line of block.split('\n')) {
            const [field, ...rest] = line.split(':');
            const value = rest.join(':').replace(/^ /, '');
            if (field === 'event') e.event = value;
            else if (field === 'id') e.id = value;
            else if (field === 'data') {
              e.data += (hasData ? '\n' : '') + value;
              hasData = true;
            }
          }
          if (!hasData) continue;
          events.push(e);
          for (const w of [...waiters]) if (w.pred(e)) (waiters.delete(w), w.resolve(e));
        }
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        events,
        get body() {
          return body;
        },
        ended,
        next(pred, ms = 10_000) {
          const seen = events.find(pred);
          if (seen) return Promise.resolve(seen);
          return new Promise((ok, fail) => {
            const w = { pred, resolve: (e: SseEvent) => (clearTimeout(t), ok(e)) };
            const t = setTimeout(() => (waiters.delete(w), fail(new Error(`no such event within ${ms} ms; got: ${events.map((x) => x.event).join(', ')}`))), ms);
            waiters.add(w);
          });
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A live stream opened from the current document: fetches it, opens the
 * stream from its id, and takes the `hello` that says it is current. A
 * single host's documents change on their own (each inventory scan's time),
 * so a newer one may come between the fetch and the stream (the stream then
 * starts with that diff instead): then both again, at most `tries` times.
 */
export async function openFromCurrent<D extends { id: string }>(fetchDoc: () => Promise<D>, open: (id: string) => Promise<SseClient>, tries = 20): Promise<{ doc: D; sse: SseClient }> {
  for (let i = 1; ; i++) {
    const doc = await fetchDoc();
    const sse = await open(doc.id);
    const first = await sse.next((e) => e.event === 'hello' || e.event === 'diff');
    if (first.event === 'hello' && (JSON.parse(first.data) as { id: string }).id === doc.id) return { doc, sse };
    sse.close();
    if (i >= tries) throw new Error(`the fleet document changed between its fetch and the live stream ${tries} times in a row`);
  }
}
