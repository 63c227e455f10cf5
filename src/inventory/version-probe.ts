import { request } from 'node:http';

/**
 * Asks a listening service for its running version over plain HTTP:
 * `GET http://<address>:<port><path>`, answered with a short text body
 * ("1.4.2") or JSON (`{"version": "1.4.2"}`). A probe never throws: a
 * service that does not answer simply has no known version.
 */

export type ProbeOutcome = 'ok' | 'timeout' | 'refused' | 'error' | 'bad_status' | 'invalid';

export interface ProbeResult {
  outcome: ProbeOutcome;
  /** The version, when outcome is "ok"; else "". */
  version: string;
  /** Why it failed, for debug logs. */
  reason?: string | undefined;
}

export interface ProbeTarget {
  /** Address to connect to: a concrete IPv4/IPv6 address, never a wildcard. */
  address: string;
  port: number;
  path: string;
  timeoutMs: number;
}

/** Longest version string accepted; anything longer is a page, not a version. */
export const MAX_VERSION_LENGTH = 64;
/** Bytes of body read at most. */
const MAX_BODY = 4096;
/** Printable ASCII, starting with a non-space: safe as a Prometheus label and a table cell. */
const VERSION_TEXT = /^[\x21-\x7e][\x20-\x7e]*$/;

/**
 * Reads a version from a response body. Plain text: the first line,
 * trimmed, at most 64 printable characters. JSON (by content type or a body
 * starting with `{`): the string or number field `version`. HTML is never a
 * version (a catch-all web page answering every path). Returns "" when no
 * version can be read.
 */
export function parseVersionBody(body: string, contentType = ''): string {
  const text = body.replace(/^\uFEFF/, '').trim();
  const type = contentType.toLowerCase();
  if (type.includes('html') || text.startsWith('<')) return '';
  if (type.includes('json') || text.startsWith('{')) {
    try {
      const v = (JSON.parse(text) as { version?: unknown } | null)?.version;
      if (typeof v === 'number' && Number.isFinite(v)) return String(v);
      if (typeof v === 'string') return acceptable(v.trim());
    } catch {
      // not JSON after all
    }
    return '';
  }
  return acceptable((text.split(/\r?\n/)[0] ?? '').trim());
}

function acceptable(v: string): string {
  return v.length > 0 && v.length <= MAX_VERSION_LENGTH && VERSION_TEXT.test(v) ? v : '';
}

/** One GET with a hard deadline covering connect, headers and body. */
export function probeVersion(target: ProbeTarget): Promise<ProbeResult> {
  return new Promise((resolve) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const done = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const req = request({
      host: target.address,
      port: target.port,
      path: target.path,
      method: 'GET',
      // One connection per probe: no pooled sockets outlive the refresh.
      agent: false,
      headers: { accept: 'text/plain, application/json;q=0.9', connection: 'close', 'user-agent': 'canonport-inventory' },
    });
    timer = setTimeout(() => done({ outcome: 'timeout', version: '', reason: `no answer within ${target.timeoutMs} ms` }), target.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) =>
      done({ outcome: err.code === 'ECONNREFUSED' ? 'refused' : 'error', version: '', reason: err.code ?? err.message }),
    );
    req.on('response', (res) => {
      const status = res.statusCode ?? 0;
      if (status < 200 || status > 299) {
        res.resume();
        done({ outcome: 'bad_status', version: '', reason: `HTTP ${status}` });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        size += chunk.length;
        if (size >= MAX_BODY) finish();
      });
      res.on('end', finish);
      res.on('error', (err) => done({ outcome: 'error', version: '', reason: err.message }));
      function finish() {
        const body = Buffer.concat(chunks).subarray(0, MAX_BODY).toString('utf8');
        const version = parseVersionBody(body, String(res.headers['content-type'] ?? ''));
        done(version ? { outcome: 'ok', version } : { outcome: 'invalid', version: '', reason: 'body is not a version' });
      }
    });
    req.end();
  });
}
