import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, watch, type FSWatcher } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname } from 'node:path';
import { CanonportError, ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import type { ListenerName } from './listen-policy.js';

/**
 * What canonport uses of Node's `tls` module, taken with require() rather
 * than an ES import (issue 24: idle memory). An ES import of a built-in
 * module reads every one of its exports to build the module's namespace,
 * and reading `tls.rootCertificates` parses and keeps Node's ~140 bundled
 * root certificates as strings (0.22 MB of every daemon's heap) that no
 * part of canonport reads: TLS connections verify against Node's store
 * inside OpenSSL, or against the CA files the settings name. require()
 * reads only the names below. test/lazy-load.test.ts keeps every other
 * module from importing `node:tls` for its values.
 */
export const { checkServerIdentity, connect: tlsConnect, createSecureContext, TLSSocket } = createRequire(import.meta.url)('node:tls') as typeof import('node:tls');

/**
 * The certificate, key and client CA a TLS listener serves, read from the
 * files the settings name: checked before use, re-read when a file changes
 * (cert-manager, a cron job, a Kubernetes Secret update) or on SIGHUP. A
 * listener subscribes with onChange and swaps its secure context for new
 * handshakes; connections already open keep theirs, so nothing is dropped.
 * A new set that does not check out is refused whole: the running one keeps
 * serving, CP_TLS_INVALID is logged and canonport_tls_reloads_total counts it.
 */

export interface TlsFiles {
  cert: string;
  key: string;
  /** CA certificates client certificates are checked against; null: no client certificates asked. */
  ca: string | null;
}

/** What a listener builds its secure context from (PEM bytes, as Node's tls options take them). */
export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | null;
  /** The serving certificate's subject and expiry, for logs and the expiry gauge. */
  subject: string;
  notAfter: Date;
  /** SHA-256 of the three files' bytes: a re-read that finds the same bytes changes nothing. */
  digest: string;
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * Reads and checks one set: each file readable, the certificate chain and
 * the CA bundle parse, the key parses and matches the certificate, the
 * certificate is valid now (past its notBefore, before its notAfter), and
 * Node builds a secure context from it.
 * Throws CP_TLS_INVALID naming the file and what is wrong.
 */
export function readTlsMaterial(files: TlsFiles, now: number = Date.now()): TlsMaterial {
  const read = (file: string, what: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw invalid(`cannot read the ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : code ?? (err as Error).message}`, file);
    }
  };
  const cert = read(files.cert, 'certificate');
  const key = read(files.key, 'private key');
  const ca = files.ca === null ? null : read(files.ca, 'client CA file');

  const chain = cert.toString('latin1').match(PEM_CERT) ?? [];
  if (chain.length === 0) throw invalid(`${files.cert} holds no PEM certificate`, files.cert);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(chain[0]!);
    for (const c of chain.slice(1)) new X509Certificate(c);
  } catch (err) {
    throw invalid(`${files.cert}: a certificate does not parse (${(err as Error).message})`, files.cert);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw invalid(`${files.key} is not a PEM private key (${(err as Error).message})`, files.key);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw invalid(`${files.key} is not the key of ${files.cert}: the key does not match the certificate`, files.key);
  const notAfter = new Date(leaf.validTo);
  if (notAfter.getTime() <= now) throw invalid(`${files.cert} expired on ${notAfter.toISOString()}`, files.cert);
  // Not yet valid is as unusable as expired: every client refuses it (issue 21, finding 12).
  const notBefore = new Date(leaf.validFrom);
  if (notBefore.getTime() > now) {
    throw new CanonportError(ErrorCodes.TLS_INVALID, `${files.cert} is not valid before ${notBefore.toISOString()}`, { file: files.cert, notBefore: notBefore.toISOString() });
  }
  if (ca !== null) {
    const cas = ca.toString('latin1').match(PEM_CERT) ?? [];
    if (cas.length === 0) throw invalid(`${files.ca} holds no PEM certificate`, files.ca!);
    try {
      for (const c of cas) new X509Certificate(c);
    } catch (err) {
      throw invalid(`${files.ca}: a CA certificate does not parse (${(err as Error).message})`, files.ca!);
    }
  }
  try {
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
  } catch (err) {
    throw invalid(`${files.cert}, ${files.key}: not usable for TLS (${(err as Error).message})`, files.cert);
  }
  const digest = createHash('sha256').update(cert).update('\0').update(key).update('\0').update(ca ?? '').digest('hex');
  return { cert, key, ca, subject: leaf.subject.replace(/\n/g, ', '), notAfter, digest };
}

function invalid(message: string, file: string): CanonportError {
  return new CanonportError(ErrorCodes.TLS_INVALID, message, { file });
}

export interface TlsSourceDeps {
  logger: Logger;
  metrics: Metrics;
  now?: (() => number) | undefined;
}

/** How long file events settle before a re-read: a cert and its key are often written one after the other. */
const SETTLE_MS = 300;

/** One listener's certificate set, kept current. */
export class TlsSource {
  private material: TlsMaterial;
  private readonly listeners = new Set<(m: TlsMaterial) => void>();
  private watchers: FSWatcher[] = [];
  private timer: NodeJS.Timeout | null = null;
  private readonly log: Logger;

  /** Reads the first set; throws CP_TLS_INVALID when it does not check out (the daemon does not start). */
  constructor(
    readonly listener: ListenerName,
    readonly files: TlsFiles,
    private readonly deps: TlsSourceDeps,
  ) {
    this.log = deps.logger.child({ component: 'tls', listener });
    this.material = readTlsMaterial(files, this.now());
    this.publish();
  }

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  current(): TlsMaterial {
    return this.material;
  }

  /** Called with every new set that checked out. Returns an unsubscribe. */
  onChange(fn: (m: TlsMaterial) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Re-reads the files. A set that checks out and differs replaces the
   * running one for new connections; an unchanged one does nothing; a bad
   * one is refused, logged and counted, and the running one stays.
   */
  reload(trigger: 'signal' | 'file'): { ok: true; changed: boolean } | { ok: false; error: CanonportError } {
    let next: TlsMaterial;
    try {
      next = readTlsMaterial(this.files, this.now());
    } catch (err) {
      const error = err instanceof CanonportError ? err : new CanonportError(ErrorCodes.TLS_INVALID, (err as Error).message);
      this.deps.metrics.tlsReloads.inc({ listener: this.listener, result: 'failed' });
      this.log.error(
        { code: error.code, err: error.message, trigger, serving: this.material.subject, notAfter: this.material.notAfter.toISOString() },
        'new TLS certificate refused; the running one keeps serving',
      );
      this.retryWhenValid(error);
      return { ok: false, error };
    }
    if (next.digest === this.material.digest) {
      this.deps.metrics.tlsReloads.inc({ listener: this.listener, result: 'unchanged' });
      return { ok: true, changed: false };
    }
    this.material = next;
    this.publish();
    this.deps.metrics.tlsReloads.inc({ listener: this.listener, result: 'ok' });
    this.log.info({ event: 'tls-reload', trigger, subject: next.subject, notAfter: next.notAfter.toISOString() }, 'TLS certificate reloaded for new connections');
    for (const fn of this.listeners) fn(next);
    return { ok: true, changed: true };
  }

  /**
   * Re-reads when a file changes. Watches the directories, not the files:
   * editors, cert-manager and Kubernetes Secret volumes replace files (a
   * Secret swaps its `..data` symlink) rather than write them in place.
   */
  watch(): void {
    const files = [this.files.cert, this.files.key, ...(this.files.ca ? [this.files.ca] : [])];
    const byDir = new Map<string, Set<string>>();
    for (const f of files) byDir.set(dirname(f), (byDir.get(dirname(f)) ?? new Set()).add(basename(f)));
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, (_event, name) => {
          if (name !== null && !names.has(name) && !name.startsWith('..')) return;
          if (this.timer) clearTimeout(this.timer);
          this.timer = setTimeout(() => {
            this.timer = null;
            this.reload('file');
          }, SETTLE_MS);
          this.timer.unref();
        });
        w.on('error', (err) => this.log.warn({ code: ErrorCodes.WATCH_FAILED, dir, err: err.message }, 'certificate watch failed; SIGHUP still reloads'));
        this.watchers.push(w);
      } catch (err) {
        this.log.warn({ code: ErrorCodes.WATCH_FAILED, dir, err: (err as Error).message }, 'cannot watch the certificate directory; SIGHUP still reloads');
      }
    }
  }

  /**
   * A certificate refused only because it is not valid yet (issued for
   * later, or a clock a little behind its issuer's) is tried again when it
   * becomes valid, if that is within a day: no file event would announce it.
   */
  private retryWhenValid(error: CanonportError): void {
    const at = typeof error.details?.notBefore === 'string' ? Date.parse(error.details.notBefore) : NaN;
    const wait = at - this.now();
    if (!(wait > 0 && wait <= 86_400_000)) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reload('file');
    }, wait + 1000);
    this.timer.unref();
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.listeners.clear();
  }

  private publish(): void {
    this.deps.metrics.tlsCertificateExpiry.set({ listener: this.listener }, Math.floor(this.material.notAfter.getTime() / 1000));
  }
}

/** The certificate set of a listener from the settings, or null when it serves plaintext. */
export function tlsFilesOf(s: { grpcTlsCert: string | null; grpcTlsKey: string | null; grpcTlsClientCa: string | null; httpTlsCert: string | null; httpTlsKey: string | null; httpTlsClientCa: string | null }, listener: ListenerName): TlsFiles | null {
  const [cert, key, ca] = listener === 'grpc' ? [s.grpcTlsCert, s.grpcTlsKey, s.grpcTlsClientCa] : [s.httpTlsCert, s.httpTlsKey, s.httpTlsClientCa];
  return cert !== null && key !== null ? { cert, key, ca } : null;
}
