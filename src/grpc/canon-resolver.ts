import { promises as dns } from 'node:dns';
import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, GrpcStatus } from '../errors.js';
import { normaliseName } from '../config/names.js';
import { LOCALHOST_ZONE } from '../core/service-name.js';
import { Discovery, type AddressAnswer, type AddressResolver } from '../discovery/discovery.js';
import { resolutionOf, type Resolution } from './resolution.js';
import { loadRegistry } from '../registry/load.js';
import { createCanonportClient, DaemonError, type CanonportClient, type WatchStream } from './canonport-client.js';
import { applicationGrpc, checkGrpcModule, type GrpcModule } from './grpc-module.js';
import { defaultDaemonAddress } from '../config/address.js';
import { clientTlsFromEnv, loadClientTls, type ClientTlsOptions } from './client-tls.js';

/**
 * The grpc-js resolver for `canon:` targets. After registerCanonResolver(),
 * `new Client('canon:///api.cluster-1.example.com', creds)` dials the
 * service's canonical port on the addresses of its host:
 *
 *   1. through the daemon: a Watch stream on the name, so a registry reload
 *      or an address change re-points the channel;
 *   2. without a daemon (unreachable, or no first answer in time): the port
 *      is computed here (scheme + optional registry file) and the host is
 *      resolved by the system resolver; the daemon is tried again later.
 *
 * A target may name its daemon: `canon://10.0.0.2:13655/api.cluster-1.example.com`.
 */

export const CANON_SCHEME = 'canon';

export interface CanonResolverOptions {
  /** Daemon gRPC address; default CANONPORT_GRPC, else 127.0.0.1:13655. */
  daemon?: string | undefined;
  /** Registry file for the fallback; default CANONPORT_REGISTRY, else none. */
  registryFile?: string | undefined;
  /** Wait this long for the daemon's first answer before using the fallback, ms (default 1000). */
  daemonTimeoutMs?: number | undefined;
  /** After the daemon is lost, try its Watch again this often, ms (default 5000). */
  retryMs?: number | undefined;
  /**
   * The application's grpc-js module (`import * as grpc from '@grpc/grpc-js'`),
   * any version from 1.10 on: `canon:` is registered on it, and the
   * resolver's own channel to the daemon uses it. Default: the copy the
   * program's main module resolves (see applicationGrpc in grpc-module.ts);
   * give it when the application is bundled, or its channels come from
   * another copy.
   */
  grpc?: GrpcModule | undefined;
  /**
   * TLS to the daemon, as createCanonportClient takes it (`{ ca, cert, key,
   * serverName }`, `true`, `false`); default CANONPORT_TLS_CA,
   * CANONPORT_TLS_CERT, CANONPORT_TLS_KEY, CANONPORT_TLS_SERVER_NAME, else
   * plaintext. The files are checked at registration (CP_TLS_INVALID) and
   * read again by each new channel to the daemon, so rotated client
   * certificates are picked up.
   */
  tls?: ClientTlsOptions | boolean | undefined;
}

interface Settings {
  daemon: string;
  registryFile: string | undefined;
  daemonTimeoutMs: number;
  retryMs: number;
  grpc: GrpcModule;
  tls: ClientTlsOptions | boolean;
}

/**
 * Registers the `canon:` scheme with grpc-js. Call once at start-up; a later
 * call replaces the options for channels created after it.
 *
 * Throws a CanonportError instead of registering where the registration
 * would not take effect: CP_GRPC_UNSUPPORTED for a module that is not a
 * supported grpc-js, CP_GRPC_COPY_MISMATCH when no `grpc` is given and the
 * application's copy cannot be told apart from others it loaded.
 */
export function registerCanonResolver(opts: CanonResolverOptions = {}): void {
  const grpcModule: unknown = opts.grpc ?? applicationGrpc();
  checkGrpcModule(grpcModule);
  const settings: Settings = {
    daemon: opts.daemon ?? defaultDaemonAddress(),
    registryFile: opts.registryFile ?? (process.env.CANONPORT_REGISTRY || undefined),
    daemonTimeoutMs: opts.daemonTimeoutMs ?? 1000,
    retryMs: opts.retryMs ?? 5000,
    grpc: grpcModule,
    tls: opts.tls ?? clientTlsFromEnv() ?? false,
  };
  // Unreadable certificate files fail here, loudly, not at the first call.
  loadClientTls(settings.tls);
  grpcModule.experimental.registerResolver(
    CANON_SCHEME,
    class extends CanonResolver {
      constructor(target: grpc.experimental.GrpcUri, listener: AnyListener, options: grpc.ChannelOptions) {
        super(target, listener, options, settings);
      }
    },
  );
}

/** What the resolver reports to its listener: the endpoints, or the status every call fails with. */
type Endpoints = grpc.experimental.StatusOr<grpc.experimental.Endpoint[]>;

/** The listener of grpc-js 1.10–1.13 (resolver.d.ts there): an object, endpoints and errors reported apart. */
interface ListenerBefore114 {
  onSuccessfulResolution(endpointList: grpc.experimental.Endpoint[], serviceConfig: null, serviceConfigError: null, configSelector: null, attributes: Record<string, unknown>): void;
  onError(error: grpc.StatusObject): void;
}

/** The listener a resolver is constructed with: 1.14's function, or the object of the versions before. */
type AnyListener = grpc.experimental.ResolverListener | ListenerBefore114;

/**
 * Reports to either listener: 1.14 takes a StatusOr and a function call
 * (attributes, no service config, no resolution note); 1.10–1.13 take the
 * endpoints or the error through the object's two methods. Told apart by
 * shape, not version, so a bundled grpc-js works the same.
 */
function reportTo(listener: AnyListener, result: Endpoints): void {
  if (typeof listener === 'function') listener(result, {}, null, '');
  else if (result.ok) listener.onSuccessfulResolution(result.value, null, null, null, {});
  else listener.onError(result.error);
}

/**
 * The least time between two answers to grpc-js's requests to resolve
 * again (a subchannel that failed asks for one at once). grpc-js backs
 * those requests off only until a resolver reports, and this resolver can
 * report within the same tick (a `*.localhost` fallback does no I/O): with
 * nothing listening, report, fail, ask and report again would spin the
 * event loop and starve every timer, the call's deadline included.
 * grpc-js's own DNS resolver waits 30 s between resolutions; 1 s keeps the
 * fallback quick to follow a host that comes back. The daemon's Watch
 * pushes are not held back: they are changes, not answers to a request.
 */
const MIN_RERESOLVE_MS = 1000;

class CanonResolver implements grpc.experimental.Resolver {
  private readonly name: string;
  private readonly daemon: string;
  private client: CanonportClient | undefined;
  private stream: WatchStream | undefined;
  /** The stream has delivered an answer: the daemon is authoritative until it ends. */
  private answered = false;
  /** The daemon was lost; a retry is scheduled and the fallback serves meanwhile. */
  private lost = false;
  private last: Endpoints | undefined;
  /** Bumped by destroy(): results of work started before it are dropped. */
  private generation = 0;
  private destroyed = false;
  private firstAnswerTimer: NodeJS.Timeout | undefined;
  /** Why the daemon last failed (refused, TLS, unreachable), for the fallback's error message. */
  private daemonFailure: string | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  /** When the last report was made (Date.now()), and a re-resolution held back until MIN_RERESOLVE_MS after it. */
  private reportedAt = 0;
  private heldTimer: NodeJS.Timeout | undefined;

  constructor(
    target: grpc.experimental.GrpcUri,
    private readonly listener: AnyListener,
    _options: grpc.ChannelOptions,
    private readonly settings: Settings,
  ) {
    this.name = target.path;
    this.daemon = target.authority || settings.daemon;
  }

  /** The name itself, so TLS and :authority see the service's host name. Throws for a malformed name. */
  static getDefaultAuthority(target: grpc.experimental.GrpcUri): string {
    normaliseName(target.path);
    return target.path;
  }

  /** Never reports synchronously: every report comes from a promise or timer callback. */
  updateResolution(): void {
    this.destroyed = false;
    const wait = this.reportedAt + MIN_RERESOLVE_MS - Date.now();
    if (this.last !== undefined && wait > 0) {
      // Asked again right after an answer: answer once, when the interval is over.
      if (this.heldTimer === undefined) {
        const gen = this.generation;
        this.heldTimer = setTimeout(() => {
          this.heldTimer = undefined;
          if (gen === this.generation && !this.destroyed) this.resolveNow();
        }, wait);
        this.heldTimer.unref();
      }
      return;
    }
    this.resolveNow();
  }

  private resolveNow(): void {
    if (this.stream === undefined && !this.lost) {
      this.startWatch();
    } else if (this.lost) {
      void this.runFallback();
    } else if (this.answered && this.last !== undefined) {
      const gen = this.generation;
      const last = this.last;
      setImmediate(() => gen === this.generation && this.report(last));
    }
    // Otherwise the first answer (or the fallback timer) is on its way.
  }

  /** Stops the Watch and timers; no report until updateResolution() is called again. */
  destroy(): void {
    this.destroyed = true;
    this.generation++;
    this.stream?.cancel();
    this.stream = undefined;
    this.client?.close();
    this.client = undefined;
    clearTimeout(this.firstAnswerTimer);
    clearTimeout(this.retryTimer);
    clearTimeout(this.heldTimer);
    this.heldTimer = undefined;
    this.answered = false;
    this.lost = false;
    this.last = undefined;
  }

  private startWatch(): void {
    const gen = this.generation;
    this.client ??= createCanonportClient(this.daemon, { grpc: this.settings.grpc, tls: this.settings.tls });
    const stream = this.client.watch(this.name);
    this.stream = stream;
    this.answered = false;
    this.lost = false;
    clearTimeout(this.firstAnswerTimer);
    this.firstAnswerTimer = setTimeout(() => {
      if (gen === this.generation && !this.answered) void this.runFallback();
    }, this.settings.daemonTimeoutMs);
    this.firstAnswerTimer.unref();
    void this.follow(stream, gen);
  }

  private async follow(stream: WatchStream, gen: number): Promise<void> {
    let failure: unknown;
    try {
      for await (const r of stream) {
        if (gen !== this.generation) return;
        this.answered = true;
        clearTimeout(this.firstAnswerTimer);
        this.report({ ok: true, value: endpointsOf(r) });
      }
    } catch (err) {
      failure = err;
    }
    if (gen !== this.generation || this.stream !== stream) return;
    this.stream = undefined;
    this.answered = false;
    clearTimeout(this.firstAnswerTimer);
    if (failure instanceof DaemonError && (failure.code === ErrorCodes.BAD_NAME || failure.code === ErrorCodes.NOT_FOUND || failure.code === ErrorCodes.NO_ADDRESS)) {
      // The daemon's answer is final; grpc-js backs off and calls updateResolution to ask again.
      this.report(this.errorStatus(failure.message));
      return;
    }
    // Unreachable, broken, shutting down, refused (CP_ACCESS_DENIED, TLS) or a stream that
    // just ended: serve from the fallback and come back to the daemon later.
    this.daemonFailure = failure instanceof DaemonError ? `${failure.message} [${failure.code}]` : undefined;
    this.lost = true;
    void this.runFallback();
    this.retryTimer = setTimeout(() => {
      if (gen !== this.generation || this.destroyed) return;
      this.lost = false;
      this.startWatch();
    }, this.settings.retryMs);
    this.retryTimer.unref();
  }

  private async runFallback(): Promise<void> {
    const gen = this.generation;
    let result: Endpoints;
    try {
      const r = await resolveWithoutDaemon(this.name, this.settings.registryFile);
      result = { ok: true, value: endpointsOf(r) };
    } catch (err) {
      result = this.errorStatus(`${err instanceof Error ? err.message : String(err)} (daemon at ${this.daemon} not used${this.daemonFailure ? `: ${this.daemonFailure}` : ''})`);
    }
    // A daemon answer that arrived meanwhile wins.
    if (gen !== this.generation || this.answered) return;
    this.report(result);
  }

  private report(result: Endpoints): void {
    this.last = result;
    this.reportedAt = Date.now();
    if (this.destroyed) return;
    reportTo(this.listener, result);
  }

  /** UNAVAILABLE with the reason; the Metadata comes from the registered grpc-js, the one that will read it. */
  private errorStatus(details: string): Endpoints {
    const metadata = new this.settings.grpc.Metadata() as grpc.Metadata;
    return { ok: false, error: { code: GrpcStatus.UNAVAILABLE, details: `canon:///${this.name}: ${details}`, metadata } };
  }
}

/**
 * grpc-js endpoints: in cluster mode one per host (a node's addresses are
 * one endpoint, so round_robin spreads over hosts, not over one host's
 * IPv4 and IPv6); otherwise one per address.
 */
export function endpointsOf(r: Resolution): grpc.experimental.Endpoint[] {
  const byHost = new Map<string, { host: string; port: number }[]>();
  // gRPC is TCP: a host where the service listens only on UDP is no endpoint here (a plain name's answer covers both).
  const tcp = r.endpoints.filter((e) => e.protocol !== 'udp');
  for (const e of r.endpoints.length > 0 ? tcp : r.addresses.map((address) => ({ address, port: r.port, node: '' }))) {
    const key = e.node !== '' ? `node:${e.node}` : `address:${e.address}`;
    const list = byHost.get(key) ?? [];
    list.push({ host: e.address, port: e.port || r.port });
    byHost.set(key, list);
  }
  return [...byHost.values()].map((addresses) => ({ addresses }));
}

/**
 * What the daemon would answer, computed here: the scheme and the registry
 * file (if any) give the port, the system resolver gives the addresses. The
 * discovery core is the daemon's own, reading names outside the registry's
 * zones by the scheme, since a client cannot know the daemon's flags.
 */
export async function resolveWithoutDaemon(name: string, registryFile?: string): Promise<Resolution> {
  const registry = await loadRegistry(registryFile);
  const zones = [...new Set([...registry.zones, LOCALHOST_ZONE])];
  const discovery = new Discovery({ state: () => ({ registry, zones }), addresses: systemAddressResolver(), outsideZones: 'scheme' });
  return resolutionOf(await discovery.lookup(name));
}

/** Temporary resolver failures: an error, not "no such host". */
const TRANSIENT = new Set(['EAI_AGAIN', 'ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED']);

/**
 * The system resolver (getaddrinfo: /etc/hosts, then DNS) as the discovery
 * core's address source. The core asks the registry's hosts map first and
 * answers `*.localhost` itself (RFC 6761 §6.3).
 */
export function systemAddressResolver(ttl = 60): AddressResolver {
  return {
    source: 'upstream',
    generation: 0,
    peek: () => null,
    async resolve(host): Promise<AddressAnswer> {
      try {
        const found = await dns.lookup(host, { all: true, verbatim: true });
        const addresses = [...new Set(found.map((a) => a.address))];
        return { kind: 'found', v4: addresses.filter((a) => !a.includes(':')), v6: addresses.filter((a) => a.includes(':')), ttl };
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        if (TRANSIENT.has(code)) return { kind: 'failed', reason: `system resolver failed for ${host}: ${code}` };
        return { kind: 'none', ttl };
      }
    },
  };
}
