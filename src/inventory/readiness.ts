import { connect as http2Connect, type ClientHttp2Session, type ClientHttp2Stream } from 'node:http2';
import { silentLogger, type Logger } from '../log.js';
import { HttpProbeConnection, type HttpProbeCallback, type HttpProbeResult } from './http-probe.js';
import { CANONPORT_VERSION } from '../version.js';

/**
 * Readiness of this host's listeners, learned with no configuration (SPEC §9):
 *
 * - a gRPC server through `grpc.health.v1.Health` (service ""): the
 *   streaming `Watch` first (the server pushes every change at once and an
 *   idle stream costs nothing), `Check` every interval when Watch is
 *   UNIMPLEMENTED; a gRPC server without the health service is ready while
 *   it listens;
 * - an HTTP server through `GET /readyz`, then `/healthz` when that is 404:
 *   2xx ready, anything else not ready; a server with neither (404 twice)
 *   is ready while it listens (a 404 says "no such page", not "not ready");
 * - anything else is ready while it listens.
 *
 * What a listener speaks is asked once per life of its socket (its inode
 * key): gRPC first, then HTTP/1.1. A listener that speaks neither is never
 * asked again while that socket lives, so a database's log gets one
 * bad-handshake line per restart, not one a second. The registry may name
 * the rule per service (`ready: grpc | tcp | http:/path`); then nothing is
 * detected.
 *
 * Why node:http2 and node:http rather than a grpc-js channel per listener:
 * a channel brings a resolver, a load balancer, a subchannel pool and
 * timers per target (tens of KB and a wakeup per channel); a bare HTTP/2
 * session is one socket and one object, and the health protocol is two
 * messages of one varint each. HTTP probes reuse one kept socket per
 * listener (http-probe.ts, which says why it is not node:http), so a probe
 * is a write and a read, not a handshake.
 *
 * Cost (issue 24's idle budget): one probe per listener per interval
 * however many clients ask (probes are driven by timers, never by
 * queries), sent in rounds: one per interval, on the inventory scan's
 * tick when the interval is at least the scan's (o.ticker: one wake-up does
 * both), else on a timer of its own with jitter on the round, sends every
 * due probe together, so the replies come back close
 * together and the daemon wakes a few times per interval, not twice per
 * listener (docs/performance.md: 18 wake-ups a second for 20 listeners
 * answered by one process, 41 for 200, where a timer each gave 41 and
 * 312). A
 * round's requests share one deadline (one timer, armed only while
 * answers are missing, cleared when the last arrives) instead of a timer
 * each, and a probe allocates no promise or closure. No timer at all while
 * nothing needs polling (every listener followed by a Watch, or ready
 * while it listens). Polled verdicts are never backed off: a flip of an
 * HTTP listener's `/readyz` without any change of its sockets reaches
 * other hosts within one interval plus convergence (issue 20: p99 ≤ 1.5 s
 * at the default), and a gRPC server's `Watch` costs nothing while its
 * status holds.
 */

export const DEFAULT_READY_INTERVAL_MS = 1_000;
/**
 * Probes in a row without any answer (a timeout, a reset) before a ready
 * listener is called not ready, as Kubernetes' failureThreshold (3): one
 * slow probe on a loaded host must not take a serving instance out of every
 * answer. An answer that says not ready (a 503, NOT_SERVING) counts at once.
 */
export const FAILURE_THRESHOLD = 3;
export const USER_AGENT = `canonport-readiness/${CANONPORT_VERSION}`;
/** gRPC status UNIMPLEMENTED. */
const GRPC_UNIMPLEMENTED = 12;

/** How one listener's readiness is decided. `auto`: detect (gRPC, then HTTP, else listening). */
export type ReadyRule = { kind: 'auto' } | { kind: 'grpc' } | { kind: 'tcp' } | { kind: 'http'; path: string };

/** Parses the registry's `ready:` value; undefined → auto. */
export function readyRule(text: string | undefined): ReadyRule {
  if (text === undefined) return { kind: 'auto' };
  if (text === 'grpc' || text === 'tcp') return { kind: text };
  if (text.startsWith('http:')) return { kind: 'http', path: text.slice(5) };
  return { kind: 'auto' };
}

export type VerdictSource = 'grpc' | 'http' | 'tcp' | 'registry';

export interface Verdict {
  state: 'ready' | 'not-ready';
  by: VerdictSource;
  /** When this state began (ms since the epoch). */
  sinceMs: number;
  detail?: string | undefined;
}

export interface ReadinessTarget {
  /** The instance (its port, and its namespace's label for a container's: inventory's instanceKey); defaults to the port. */
  key?: string | undefined;
  port: number;
  /** Where to dial (loopback for wildcard binds). */
  address: string;
  /** The socket inodes: a new value is a new socket life (detect again). */
  life: string;
  rule: ReadyRule;
}

export interface ReadinessOptions {
  intervalMs: () => number;
  timeoutMs: () => number;
  /** Called (asynchronously) whenever an instance's verdict changes, the first verdict included. */
  onVerdict: (key: string) => void;
  logger?: Logger | undefined;
  now?: (() => number) | undefined;
  /** Counts probes by kind and outcome. */
  count?: ((kind: 'grpc_check' | 'grpc_watch' | 'http' | 'detect', outcome: string) => void) | undefined;
  /**
   * A kept connection to a listener (an HTTP probe's, a gRPC health
   * session) went away: its server may have restarted on the same port,
   * which the scan's socket counters alone cannot show. `key` is the
   * instance's (a container's says its namespace).
   */
  onConnectionLost?: ((port: number, key: string) => void) | undefined;
  /**
   * A timer this prober may ride instead of arming its own (the inventory's
   * scan, issue 24): its period in ms while it runs and calls onTick() on
   * every firing, undefined while it does not. While the readiness interval
   * is at least that period, a round runs on the last of its ticks that
   * falls within the interval (every tick when both are 1 s), so one
   * wake-up does the scan and the round.
   */
  ticker?: (() => number | undefined) | undefined;
}

type Kind = 'grpc-watch' | 'grpc-check' | 'http' | 'tcp';

interface Probe {
  target: ReadinessTarget;
  kind: Kind | undefined;
  /** The HTTP path in use (`/readyz`, `/healthz`, or the registry's). */
  path: string;
  verdict: Verdict | undefined;
  session: ClientHttp2Session | undefined;
  watch: ClientHttp2Stream | undefined;
  /** The kept HTTP/1.1 connection, closed with the probe. */
  http: HttpProbeConnection | undefined;
  /** The callback of this listener's HTTP probes in rounds: made once, so a probe allocates none. */
  onHttp: HttpProbeCallback;
  /** When its HTTP request in flight was sent (performance.now()). */
  sentAt: number;
  /** The last HTTP answer and what it meant: the same answer again (the usual case) allocates nothing. */
  lastHttp: { r: HttpProbeResult; path: string; o: Outcome } | undefined;
  /** Probes in a row that got no answer at all (timeout, reset); an answer resets it. */
  failures: number;
  busy: boolean;
  closed: boolean;
}

type Outcome = { state: 'ready' | 'not-ready'; detail?: string | undefined };

export class ReadinessProber {
  /** instance key (a host listener's port, a container's port/label) → its probe; bounded by the host's claimed, published listeners (reconcile() mirrors the scan). */
  private readonly probes = new Map<string, Probe>();
  private readonly logger: Logger;
  private readonly now: () => number;
  private closed = false;
  /** The next round, armed only while some probe needs polling. */
  private round: NodeJS.Timeout | undefined;
  /** Riding the ticker instead (o.ticker): ticks left until the next round; undefined while no round rides it. */
  private ticksLeft: number | undefined;
  /** The deadline of the requests in flight, armed only while any is. */
  private deadline: NodeJS.Timeout | undefined;
  /** HTTP requests sent and not answered yet (a subset of `probes`). */
  private readonly inFlight = new Set<Probe>();
  /** Rounds run so far (tests and the bench count them). */
  rounds = 0;

  constructor(private readonly o: ReadinessOptions) {
    this.logger = o.logger ?? silentLogger;
    this.now = o.now ?? Date.now;
  }

  /** The verdict for an instance (its key; a host listener's is its port), once its first probe answered. */
  verdict(key: string | number): Verdict | undefined {
    return this.probes.get(String(key))?.verdict;
  }

  /** Listeners probed now (bounded by the host's claimed, reachable listeners). */
  get size(): number {
    return this.probes.size;
  }

  /** Starts probing new targets, stops gone ones, starts over for a new socket life or rule. */
  reconcile(targets: readonly ReadinessTarget[]): void {
    if (this.closed) return;
    const seen = new Set<string>();
    for (const t of targets) {
      seen.add(keyOf(t));
      const p = this.probes.get(keyOf(t));
      if (p && p.target.life === t.life && p.target.address === t.address && sameRule(p.target.rule, t.rule)) continue;
      if (p) this.stopProbe(p);
      this.startProbe(t);
    }
    for (const [key, p] of this.probes) if (!seen.has(key)) this.stopProbe(p);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.round);
    clearTimeout(this.deadline);
    this.round = this.deadline = this.ticksLeft = undefined;
    for (const p of this.probes.values()) this.stopProbe(p);
  }

  // --- rounds ---

  /** Arms the next round unless one is armed (a no-op while nothing needs polling). */
  private arm(): void {
    if (this.round || this.ticksLeft !== undefined || this.closed) return;
    const interval = this.o.intervalMs();
    const every = this.o.ticker?.();
    if (every !== undefined && every > 0 && interval >= every) {
      // On the ticker's last tick within the interval: never later than one interval (the next tick may be close, so
      // a round armed between ticks comes sooner), and no wake-up of its own.
      this.ticksLeft = Math.floor(interval / every);
      return;
    }
    // Jitter on the round, within the interval (never past it): no verdict waits longer than one interval.
    this.round = setTimeout(() => this.runRound(), Math.max(10, Math.round(interval * (0.9 + Math.random() * 0.1))));
    this.round.unref();
  }

  /** One tick of the ticker (o.ticker): the round that rides it runs when its ticks are counted down. */
  onTick(): void {
    if (this.ticksLeft === undefined || this.closed) return;
    if (--this.ticksLeft > 0) return;
    this.ticksLeft = undefined;
    this.runRound();
  }

  /** Sends every due probe together; arms the next round while any probe still needs polling. */
  private runRound(): void {
    this.round = undefined;
    if (this.closed) return;
    this.rounds++;
    let polled = false;
    for (const p of this.probes.values()) {
      switch (p.kind) {
        case 'http':
          polled = true;
          // Still waiting for the last round's answer (a timeout longer than the interval): not asked twice.
          if (!p.busy) this.sendHttp(p);
          break;
        case 'grpc-check':
          polled = true;
          void this.tick(p);
          break;
        case 'grpc-watch':
          // A Watch pushes; a round only re-opens one that ended.
          if (!p.watch) {
            polled = true;
            if (!p.busy) void this.tick(p);
          }
          break;
        case undefined:
          // Not detected yet (refused: it went between the scan and the probe): asked again.
          polled = true;
          if (!p.busy) void this.tick(p);
          break;
        default:
          // Ready while it listens: nothing to poll.
          break;
      }
    }
    if (polled) this.arm();
  }

  /** One HTTP probe of a round: no promise, closure or timer of its own (the round's deadline covers it). */
  private sendHttp(p: Probe): void {
    if (p.closed || this.closed) return;
    p.busy = true;
    p.sentAt = performance.now();
    this.inFlight.add(p);
    p.http ??= new HttpProbeConnection(p.target.address, p.target.port, USER_AGENT, () => this.o.onConnectionLost?.(p.target.port, keyOf(p.target)));
    p.http.ask(p.path, p.onHttp);
    if (p.busy && !this.deadline) this.armDeadline(this.o.timeoutMs());
  }

  private armDeadline(inMs: number): void {
    this.deadline = setTimeout(() => this.expire(), Math.max(1, Math.ceil(inMs)));
    this.deadline.unref();
  }

  /**
   * The round's deadline: every request sent `timeoutMs` ago or more and
   * still unanswered is a probe without an answer. Requests sent later
   * (a new listener's first probe between rounds) get their full time: the
   * deadline is armed again for the oldest of them.
   */
  private expire(): void {
    this.deadline = undefined;
    const timeoutMs = this.o.timeoutMs();
    const detail = `no HTTP answer within ${timeoutMs} ms`;
    const t = performance.now();
    let next = Infinity;
    for (const p of [...this.inFlight]) {
      // 1 ms of slack: a timer may fire a fraction of a millisecond before performance.now() says it is due.
      if (t - p.sentAt >= timeoutMs - 1) p.http?.expire(detail);
      else next = Math.min(next, p.sentAt + timeoutMs);
    }
    if (next !== Infinity && !this.deadline && !this.closed) this.armDeadline(next - t);
  }

  private httpAnswered(p: Probe, r: HttpProbeResult): void {
    p.busy = false;
    this.inFlight.delete(p);
    if (this.inFlight.size === 0 && this.deadline) {
      clearTimeout(this.deadline);
      this.deadline = undefined;
    }
    if (p.closed) return;
    try {
      this.o.count?.('http', r.kind === 'http' ? String(r.status) : r.kind);
      if (r.kind === 'http' && r.status === 404 && p.path === '/readyz' && p.target.rule.kind === 'auto') {
        // The server dropped /readyz: /healthz from now on, asked at once.
        p.path = '/healthz';
        this.sendHttp(p);
        return;
      }
      // HTTP results are one object per status (http-probe.ts): the same object is the same answer.
      const last = p.lastHttp;
      const o = last && last.r === r && last.path === p.path ? last.o : (p.lastHttp = { r, path: p.path, o: httpOutcome(r, p.path) }).o;
      this.answered(p, r.kind === 'http', o, p.target.rule.kind === 'http' ? 'registry' : 'http');
    } catch (err) {
      // Runs from a socket's event: a throw here is a bug, kept from reaching the process.
      this.logger.error({ err, port: p.target.port }, 'readiness probe failed unexpectedly');
    }
  }

  // --- one listener ---

  private startProbe(target: ReadinessTarget): void {
    const p: Probe = { target, kind: undefined, path: '/readyz', verdict: undefined, session: undefined, watch: undefined, http: undefined, onHttp: (r) => this.httpAnswered(p, r), sentAt: 0, lastHttp: undefined, failures: 0, busy: false, closed: false };
    this.probes.set(keyOf(target), p);
    const rule = target.rule;
    if (rule.kind === 'tcp') {
      p.kind = 'tcp';
      this.setVerdict(p, { state: 'ready', detail: 'registry: ready while listening' }, 'registry');
      return;
    }
    if (rule.kind === 'http') {
      p.kind = 'http';
      p.path = rule.path;
    }
    if (rule.kind === 'grpc') p.kind = 'grpc-watch';
    // The first verdict at once (a new listener is published only after it), then in the rounds.
    if (p.kind === 'http') this.sendHttp(p);
    else void this.tick(p);
    this.arm();
  }

  private stopProbe(p: Probe): void {
    p.closed = true;
    p.watch?.close();
    p.session?.destroy();
    p.http?.close();
    this.inFlight.delete(p);
    if (this.probes.get(keyOf(p.target)) === p) this.probes.delete(keyOf(p.target));
  }

  /** Detection, a gRPC Check, or (re)opening a Watch: the rare paths, each with its own deadline. */
  private async tick(p: Probe): Promise<void> {
    if (p.closed || p.busy) return;
    p.busy = true;
    try {
      if (p.kind === undefined) await this.detect(p);
      else await this.probeOnce(p);
    } catch (err) {
      // Every probe settles to a verdict; a throw here is a bug, kept from stopping the schedule.
      this.logger.error({ err, port: p.target.port }, 'readiness probe failed unexpectedly');
    } finally {
      p.busy = false;
    }
    // Polled from now on (HTTP, Check, a Watch to re-open): the rounds ask it. A listener that speaks neither is not asked again.
    if (!p.closed && p.kind !== 'tcp' && !(p.kind === 'grpc-watch' && p.watch)) this.arm();
  }

  /** What the listener speaks, asked once per socket life: gRPC, then HTTP/1.1, else listening decides. */
  private async detect(p: Probe): Promise<void> {
    const grpc = await this.grpcCall(p, 'Check');
    if (grpc.kind === 'grpc') {
      this.o.count?.('detect', 'grpc');
      if (grpc.grpcStatus === GRPC_UNIMPLEMENTED) {
        p.kind = 'tcp';
        this.setVerdict(p, { state: 'ready', detail: 'gRPC without grpc.health.v1: ready while listening' }, 'tcp');
        return;
      }
      p.kind = 'grpc-watch';
      this.setVerdict(p, grpc.outcome, 'grpc');
      this.openWatch(p);
      return;
    }
    p.session?.destroy();
    p.session = undefined;
    const http = await this.httpGet(p, '/readyz');
    if (http.kind === 'http') {
      this.o.count?.('detect', 'http');
      p.kind = 'http';
      if (http.status === 404) {
        p.path = '/healthz';
        const second = await this.httpGet(p, '/healthz');
        if (second.kind === 'http' && second.status === 404) {
          p.kind = 'tcp';
          this.setVerdict(p, { state: 'ready', detail: 'HTTP without /readyz or /healthz: ready while listening' }, 'tcp');
          return;
        }
        this.setVerdict(p, httpOutcome(second, '/healthz'), 'http');
        return;
      }
      this.setVerdict(p, httpOutcome(http, '/readyz'), 'http');
      return;
    }
    if (http.kind === 'refused') {
      // Nothing listens (it went between the scan and the probe): not ready, asked again next interval.
      this.setVerdict(p, { state: 'not-ready', detail: 'connection refused' }, 'tcp');
      return;
    }
    this.o.count?.('detect', 'neither');
    p.kind = 'tcp';
    this.setVerdict(p, { state: 'ready', detail: 'speaks neither gRPC nor HTTP: ready while listening' }, 'tcp');
  }

  private async probeOnce(p: Probe): Promise<void> {
    switch (p.kind) {
      case 'grpc-watch': {
        this.openWatch(p);
        return;
      }
      case 'grpc-check': {
        const r = await this.grpcCall(p, 'Check');
        this.o.count?.('grpc_check', r.kind === 'grpc' ? r.outcome.state : r.kind);
        this.answered(p, r.kind === 'grpc', r.kind === 'grpc' ? r.outcome : { state: 'not-ready', detail: r.detail }, p.target.rule.kind === 'grpc' ? 'registry' : 'grpc');
        return;
      }
      default:
        return;
    }
  }

  /** A periodic probe's result: an answer counts at once; no answer only after FAILURE_THRESHOLD in a row while ready. */
  private answered(p: Probe, answer: boolean, o: Outcome, by: VerdictSource): void {
    if (answer) p.failures = 0;
    else if (p.verdict?.state === 'ready' && ++p.failures < FAILURE_THRESHOLD) return;
    this.setVerdict(p, o, by);
  }

  private setVerdict(p: Probe, o: Outcome, by: VerdictSource): void {
    if (p.closed) return;
    const before = p.verdict;
    if (before && before.state === o.state && before.by === by) {
      before.detail = o.detail;
      return;
    }
    p.verdict = { state: o.state, by, sinceMs: this.now(), detail: o.detail };
    if (before) this.logger.info({ port: p.target.port, state: o.state, by, detail: o.detail }, 'readiness changed');
    else this.logger.debug({ key: keyOf(p.target), state: o.state, by }, 'readiness first verdict');
    queueMicrotask(() => this.o.onVerdict(keyOf(p.target)));
  }

  // --- gRPC health over a bare HTTP/2 session ---

  private session(p: Probe): ClientHttp2Session {
    if (p.session && !p.session.closed && !p.session.destroyed) return p.session;
    // A probe stopped mid-call (close(), a listener gone) opens nothing more: the caller gets a destroyed session.
    const { address, port } = p.target;
    const host = address.includes(':') ? `[${address}]` : address;
    const session = http2Connect(`http://${host}:${port}`);
    session.on('error', () => undefined);
    if (p.closed || this.closed) session.destroy();
    session.on('close', () => {
      if (p.session !== session) return;
      p.session = undefined;
      if (!this.closed) this.o.onConnectionLost?.(p.target.port, keyOf(p.target));
    });
    session.unref();
    p.session = session;
    return session;
  }

  /** One unary Check (or the first answer of a Watch): what it says, or why it is not gRPC. */
  private grpcCall(p: Probe, method: 'Check'): Promise<
    { kind: 'grpc'; outcome: Outcome; grpcStatus: number } | { kind: 'not-grpc' | 'failed'; detail: string }
  > {
    return new Promise((resolve) => {
      let settled = false;
      const session = this.session(p);
      const done = (r: Awaited<ReturnType<ReadinessProber['grpcCall']>>) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        stream.close();
        resolve(r);
      };
      const timer = setTimeout(() => done({ kind: 'failed', detail: `no gRPC answer within ${this.o.timeoutMs()} ms` }), this.o.timeoutMs());
      const stream = session.request(grpcHeaders(method));
      stream.on('error', (err: NodeJS.ErrnoException) => done({ kind: err.code === 'ECONNREFUSED' ? 'failed' : 'not-grpc', detail: err.code ?? err.message }));
      // A session that fails (an HTTP/1 server answering the preface, a database closing) destroys its streams: 'close' settles it.
      stream.on('close', () => done({ kind: 'not-grpc', detail: `stream closed (${stream.rstCode ?? 'no code'})` }));
      const reader = new GrpcReader();
      let headerStatus: number | undefined;
      stream.on('response', (headers) => {
        const type = String(headers['content-type'] ?? '');
        if (!type.startsWith('application/grpc')) return done({ kind: 'not-grpc', detail: `HTTP/2 ${String(headers[':status'])} ${type}` });
        if (headers['grpc-status'] !== undefined) headerStatus = Number(headers['grpc-status']);
        if (headerStatus !== undefined && headerStatus !== 0) done({ kind: 'grpc', grpcStatus: headerStatus, outcome: { state: 'not-ready', detail: `grpc-status ${headerStatus}` } });
      });
      stream.on('data', (chunk: Buffer) => {
        const status = reader.push(chunk);
        if (status !== undefined) done({ kind: 'grpc', grpcStatus: 0, outcome: servingOutcome(status) });
      });
      stream.on('trailers', (trailers) => {
        const s = Number(trailers['grpc-status'] ?? 0);
        done({ kind: 'grpc', grpcStatus: s, outcome: { state: 'not-ready', detail: s === 0 ? 'no health status in the answer' : `grpc-status ${s}` } });
      });
      stream.on('end', () => done({ kind: 'failed', detail: 'stream ended without an answer' }));
      stream.end(EMPTY_REQUEST);
    });
  }

  /** Opens (or keeps) the Watch stream: every message is a verdict; UNIMPLEMENTED falls back to Check. */
  private openWatch(p: Probe): void {
    if (p.watch || p.closed) return;
    const session = this.session(p);
    const stream = session.request(grpcHeaders('Watch'));
    p.watch = stream;
    const reader = new GrpcReader();
    const by: VerdictSource = p.target.rule.kind === 'grpc' ? 'registry' : 'grpc';
    let ended = false;
    const end = (o: Outcome | undefined, fallback: boolean, lost = false) => {
      if (ended) return;
      ended = true;
      if (p.watch === stream) p.watch = undefined;
      stream.close();
      if (fallback) p.kind = 'grpc-check';
      // A stream that broke (no status from the server) is a probe without an answer; a status is one.
      if (o) this.answered(p, !lost, o, by);
      // Re-opened (or Check asked) in the next round.
      this.arm();
    };
    stream.on('response', (headers) => {
      const s = headers['grpc-status'];
      if (s !== undefined && Number(s) === GRPC_UNIMPLEMENTED) end(undefined, true);
      else if (s !== undefined && Number(s) !== 0) end({ state: 'not-ready', detail: `Watch: grpc-status ${String(s)}` }, false);
    });
    stream.on('data', (chunk: Buffer) => {
      for (let status = reader.push(chunk); status !== undefined; status = reader.push(Buffer.alloc(0))) {
        this.o.count?.('grpc_watch', status === 1 ? 'ready' : 'not-ready');
        p.failures = 0;
        this.setVerdict(p, servingOutcome(status), by);
      }
    });
    stream.on('trailers', (t) => {
      const s = Number(t['grpc-status'] ?? 0);
      end(s === GRPC_UNIMPLEMENTED ? undefined : { state: 'not-ready', detail: `Watch ended: grpc-status ${s}` }, s === GRPC_UNIMPLEMENTED, true);
    });
    stream.on('error', (err: NodeJS.ErrnoException) => end({ state: 'not-ready', detail: `Watch: ${err.code ?? err.message}` }, false, true));
    stream.on('close', () => end(undefined, false));
    stream.end(EMPTY_REQUEST);
  }

  // --- HTTP/1.1 ---

  private httpGet(p: Probe, path: string): Promise<HttpProbeResult> {
    if (p.closed || this.closed) return Promise.resolve({ kind: 'not-http', detail: 'probe stopped' });
    p.http ??= new HttpProbeConnection(p.target.address, p.target.port, USER_AGENT, () => this.o.onConnectionLost?.(p.target.port, keyOf(p.target)));
    return p.http.get(path, this.o.timeoutMs());
  }
}

function keyOf(t: ReadinessTarget): string {
  return t.key ?? String(t.port);
}

function sameRule(a: ReadyRule, b: ReadyRule): boolean {
  return a.kind === b.kind && (a.kind !== 'http' || a.path === (b as { path: string }).path);
}

function httpOutcome(r: { kind: 'http'; status: number } | { kind: string; detail: string }, path: string): Outcome {
  if (r.kind === 'http') {
    const status = (r as { status: number }).status;
    return status >= 200 && status < 300 ? { state: 'ready', detail: `HTTP ${status} from ${path}` } : { state: 'not-ready', detail: `HTTP ${status} from ${path}` };
  }
  return { state: 'not-ready', detail: `${path}: ${(r as { detail: string }).detail}` };
}

const SERVING_STATUS = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

function servingOutcome(status: number): Outcome {
  return status === 1 ? { state: 'ready', detail: 'SERVING' } : { state: 'not-ready', detail: SERVING_STATUS[status] ?? `status ${status}` };
}

/** A gRPC message frame holding an empty HealthCheckRequest (service ""). */
const EMPTY_REQUEST = Buffer.from([0, 0, 0, 0, 0]);

function grpcHeaders(method: 'Check' | 'Watch'): Record<string, string> {
  return {
    ':method': 'POST',
    ':path': `/grpc.health.v1.Health/${method}`,
    'content-type': 'application/grpc',
    te: 'trailers',
    'user-agent': USER_AGENT,
  };
}

/**
 * Reads gRPC length-prefixed messages from a stream and returns the
 * `status` of each HealthCheckResponse (field 1, varint; absent = 0 UNKNOWN).
 * Hand-written: the message is one optional varint, and pulling in a
 * protobuf runtime for it would cost more than the parse.
 */
export class GrpcReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Appends `chunk`; returns the status of the next complete message, or undefined. Call again with an empty chunk for more. */
  push(chunk: Buffer): number | undefined {
    if (chunk.length > 0) this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length < 5) return undefined;
    const len = this.buf.readUInt32BE(1);
    if (len > 1024) {
      // Not a health answer: drop it all.
      this.buf = Buffer.alloc(0);
      return 0;
    }
    if (this.buf.length < 5 + len) return undefined;
    const msg = this.buf.subarray(5, 5 + len);
    this.buf = this.buf.subarray(5 + len);
    return healthStatus(msg);
  }
}

/** The `status` field of a HealthCheckResponse. */
export function healthStatus(msg: Buffer): number {
  let i = 0;
  let status = 0;
  while (i < msg.length) {
    const tag = msg[i++]!;
    const field = tag >> 3;
    const wire = tag & 7;
    if (wire === 0) {
      let v = 0;
      let shift = 0;
      for (;;) {
        const b = msg[i++];
        if (b === undefined) return status;
        v |= (b & 0x7f) << shift;
        shift += 7;
        if ((b & 0x80) === 0 || shift > 28) break;
      }
      if (field === 1) status = v;
    } else if (wire === 2) {
      const len = msg[i++] ?? 0;
      i += len;
    } else {
      return status;
    }
  }
  return status;
}
