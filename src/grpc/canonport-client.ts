import { isIP } from 'node:net';
import type * as grpc from '@grpc/grpc-js';
import { CanonportError, ErrorCodes, GrpcStatus, grpcStatusName, type ErrorCode } from '../errors.js';
import { formatHostPort, type HostPort } from '../config/address.js';
import type { ResolvedEndpoint, Resolution } from './resolution.js';
import type { InventoryListener, InventorySnapshot } from '../inventory/types.js';
import { NAME_SOURCES, type ServiceName } from '../core/naming.js';
import { canonportPackageDefinition, DEFAULT_DAEMON_ADDRESS, DEFAULT_GRPC_PORT, ERROR_CODE_METADATA } from './proto.js';
import { checkGrpcModule, ownGrpc, type GrpcModule } from './grpc-module.js';
import { channelCredentials, clientTlsFromEnv, diagnoseHandshake, loadClientTls, tlsChannelOptions, type ClientTls, type ClientTlsOptions } from './client-tls.js';

/**
 * A typed, promise-based client for the daemon's Canonport service. The CLI
 * (`canonport resolve`, `inventory`, `fleet`) and the `canon:` resolver use it;
 * nothing outside this file touches the loosely typed grpc-js client.
 */

export type { Resolution };
export type { InventoryListener };
export type { ClientTlsOptions };
/** The Inventory answer: the same shape as the daemon's snapshot. */
export type InventoryResponse = InventorySnapshot;

/** A listener's namespace as canonport.proto's Listener carries it: flat fields, "" for the host's own. */
interface WireNamespace {
  namespace?: string;
  namespaceAddresses?: string[];
  publishedAddress?: string;
  containerId?: string;
  containerRuntime?: string;
  pod?: string;
  podNamespace?: string;
  /** A host port forwarding to a published container listener: its "address:port" and namespace label. */
  forwardedTo?: string;
  forwardedNamespace?: string;
}

/** One name's outcome in ResolveMany: exactly one of resolution or error. */
export interface ResolveResult {
  name: string;
  resolution?: Resolution | undefined;
  error?: ResolveErrorInfo | undefined;
}

export interface ResolveErrorInfo {
  /** The gRPC status the single Resolve would have returned (3 INVALID_ARGUMENT, 5 NOT_FOUND…). */
  status: number;
  /** Stable canonport code, e.g. CP_BAD_NAME. */
  code: string;
  message: string;
  /** CP_NO_ADDRESS, a failing upstream: what the name reads as (port, scheme…), without addresses. */
  resolution?: Resolution | undefined;
}

export interface DecodeResult {
  port: number;
  /** Empty when the port is outside what the scheme produces. */
  prefix: string;
  /** Registry names whose port this is. */
  owners: string[];
  raw: boolean;
}

/** A Watch stream: iterate for answers; cancel() (or breaking out of the loop) ends it cleanly. */
export interface WatchStream extends AsyncIterable<Resolution> {
  cancel(): void;
}

export interface CanonportClientOptions {
  /** Deadline of each unary call, ms (default 5000). Watch has none. */
  timeoutMs?: number | undefined;
  /** Extra grpc-js channel options. */
  channelOptions?: grpc.ChannelOptions | undefined;
  /** The grpc-js module to build the channel with (default canonport's own; any supported grpc-js works, see registerCanonResolver's `grpc`). */
  grpc?: GrpcModule | undefined;
  /**
   * TLS to the daemon: `{ ca, cert, key, serverName }` (files, or PEM bytes;
   * `ca` absent trusts the system's roots; `cert` and `key` are the client
   * certificate a daemon with --grpc-tls-client-ca asks for); `true`: TLS
   * with the system's roots; `false`: plaintext. Absent: from
   * CANONPORT_TLS_CA, CANONPORT_TLS_CERT, CANONPORT_TLS_KEY,
   * CANONPORT_TLS_SERVER_NAME (CANONPORT_TLS=1: TLS, system roots), and
   * plaintext when none is set. Unreadable files throw CP_TLS_INVALID.
   */
  tls?: ClientTlsOptions | boolean | undefined;
}

export interface CanonportClient {
  /** The target dialled, `host:port`. */
  readonly address: string;
  resolve(name: string): Promise<Resolution>;
  resolveMany(names: readonly string[]): Promise<ResolveResult[]>;
  decode(port: number, raw?: boolean): Promise<DecodeResult>;
  inventory(): Promise<InventoryResponse>;
  watch(name: string): WatchStream;
  close(): void;
}

/**
 * An error the daemon returned, or the failure to reach it. `code` is the
 * daemon's canonport code when it sent one (CP_ACCESS_DENIED when its
 * allow-lists or certificate rules refused the call); otherwise
 * CP_TLS_HANDSHAKE_FAILED when the client and the daemon disagree on TLS,
 * CP_DAEMON_UNREACHABLE (UNAVAILABLE, DEADLINE_EXCEEDED) or
 * CP_DAEMON_FAILED. `status` is the gRPC status.
 */
export class DaemonError extends CanonportError {
  readonly status: number;
  readonly address: string;
  constructor(code: ErrorCode, message: string, status: number, address: string) {
    super(code, message, { status, address });
    this.name = 'DaemonError';
    this.status = status;
    this.address = address;
  }
}

const DEFAULT_TIMEOUT_MS = 5000;
const KNOWN_CODES = new Set<string>(Object.values(ErrorCodes));

/**
 * The gRPC target for a daemon address: `host:port`, `[v6]:port`, a bare host
 * or address (port 13655 added), or a HostPort.
 */
export function daemonTarget(address: string | HostPort): string {
  if (typeof address !== 'string') return formatHostPort(address);
  const s = address.trim();
  if (isIP(s) === 6) return `[${s}]:${DEFAULT_GRPC_PORT}`;
  if (s.startsWith('[')) return s.includes(']:') ? s : `${s}:${DEFAULT_GRPC_PORT}`;
  return s.includes(':') ? s : `${s}:${DEFAULT_GRPC_PORT}`;
}

export function createCanonportClient(address: string | HostPort = DEFAULT_DAEMON_ADDRESS, opts: CanonportClientOptions = {}): CanonportClient {
  return new GrpcCanonportClient(daemonTarget(address), opts);
}

/** Wire shapes as @grpc/proto-loader gives them (camelCase, longs as numbers, defaults filled). */
interface WireResolution {
  name: string;
  service: string;
  port: number;
  scheme: string;
  host: string;
  addresses: string[];
  ttl: number;
  prefix: string;
  version?: number;
  collidesWith: string[];
  zone: string;
  endpoints?: ResolvedEndpoint[];
}

type Unary = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;

/** The Canonport client constructor built on each grpc-js module in use (usually one). */
const serviceCtors = new WeakMap<GrpcModule, grpc.ServiceClientConstructor>();

function serviceCtorFor(grpcModule: GrpcModule): grpc.ServiceClientConstructor {
  let ctor = serviceCtors.get(grpcModule);
  if (!ctor) {
    const root = grpcModule.loadPackageDefinition(canonportPackageDefinition()) as { canonport: { v1: { Canonport: grpc.ServiceClientConstructor } } };
    ctor = root.canonport.v1.Canonport;
    serviceCtors.set(grpcModule, ctor);
  }
  return ctor;
}

class GrpcCanonportClient implements CanonportClient {
  private readonly client: grpc.Client & Record<string, unknown>;
  private readonly timeoutMs: number;
  private readonly grpc: GrpcModule;
  private readonly tls: ClientTls | null;

  constructor(
    readonly address: string,
    opts: CanonportClientOptions,
  ) {
    const grpcModule: unknown = opts.grpc ?? ownGrpc();
    checkGrpcModule(grpcModule);
    this.grpc = grpcModule;
    this.tls = loadClientTls(opts.tls ?? clientTlsFromEnv());
    const Ctor = serviceCtorFor(grpcModule);
    const channelOptions = { ...tlsChannelOptions(this.tls), ...opts.channelOptions };
    this.client = new Ctor(address, channelCredentials(grpcModule, this.tls), channelOptions) as grpc.Client & Record<string, unknown>;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async resolve(name: string): Promise<Resolution> {
    return toResolution((await this.unary('Resolve', { name })) as WireResolution);
  }

  async resolveMany(names: readonly string[]): Promise<ResolveResult[]> {
    const res = (await this.unary('ResolveMany', { names })) as {
      results: { name: string; resolution?: WireResolution | null; error?: (Omit<ResolveErrorInfo, 'resolution'> & { resolution?: WireResolution | null }) | null }[];
    };
    return res.results.map((r) => {
      if (r.resolution) return { name: r.name, resolution: toResolution(r.resolution) };
      if (!r.error) return { name: r.name, error: { status: 2, code: '', message: 'empty result' } };
      const { resolution, ...error } = r.error;
      return { name: r.name, error: { ...error, ...(resolution ? { resolution: toResolution(resolution) } : {}) } };
    });
  }

  async decode(port: number, raw = false): Promise<DecodeResult> {
    const res = (await this.unary('Decode', { port, raw })) as DecodeResult;
    return { port: res.port, prefix: res.prefix, owners: [...res.owners], raw: res.raw };
  }

  async inventory(): Promise<InventoryResponse> {
    const res = (await this.unary('Inventory', {})) as InventoryResponse & { namespacesObserving?: string; namespacesReason?: string; namespacesCode?: string; namespacesCount?: number };
    return {
      host: res.host,
      collectedAtMs: res.collectedAtMs,
      listeners: res.listeners.map((wire) => {
        // Readiness travels as four flat strings (canonport.proto's Listener); "" before a verdict or outside cluster mode.
        const { readiness, readinessBy, readinessSince, readinessDetail, names, nameSource, daemon, namespace, namespaceAddresses, publishedAddress, containerId, containerRuntime, pod, podNamespace, forwardedTo, forwardedNamespace, ...l } =
          wire as unknown as Omit<InventoryListener, 'readiness' | 'names' | 'daemon' | 'namespace'> &
            WireNamespace & {
              readiness: string;
              readinessBy: string;
              readinessSince: string;
              readinessDetail: string;
              names?: { name: string; source: string }[];
              nameSource?: string;
              daemon?: boolean;
            };
        const state = readiness === 'ready' || readiness === 'not-ready' || readiness === 'draining' ? readiness : undefined;
        const container = containerId ? { id: containerId, runtime: containerRuntime ?? '', ...(pod ? { pod } : {}), ...(podNamespace ? { podNamespace } : {}) } : undefined;
        return {
          ...l,
          services: [...l.services],
          ...(daemon ? { daemon: true as const } : {}),
          ...(l.services.length > 0 ? { names: namesFromWire(l.services, names ?? [], nameSource ?? '') } : {}),
          ...(state
            ? { readiness: { state, by: readinessBy as NonNullable<InventoryListener['readiness']>['by'], sinceMs: Date.parse(readinessSince), ...(readinessDetail ? { detail: readinessDetail } : {}) } }
            : {}),
          // A daemon before issue 26 sends no namespace: the listener is its host's.
          ...(namespace
            ? { namespace: { label: namespace, addresses: [...(namespaceAddresses ?? [])], ...(publishedAddress ? { published: publishedAddress } : {}), ...(container ? { container } : {}) } }
            : {}),
          ...(forwardedTo ? { forwardedTo: forwardedToFromWire(forwardedTo, forwardedNamespace ?? '') } : {}),
        };
      }),
      registryDigest: res.registryDigest ?? '',
      ...(res.namespacesObserving
        ? {
            namespaces: {
              mode: res.namespacesObserving === 'own' && !res.namespacesCode ? ('own' as const) : ('all' as const),
              observing: res.namespacesObserving === 'own' ? ('own' as const) : ('all' as const),
              count: res.namespacesCount ?? 0,
              ...(res.namespacesReason ? { reason: res.namespacesReason } : {}),
              ...(res.namespacesCode ? { code: res.namespacesCode as NonNullable<InventorySnapshot['namespaces']>['code'] } : {}),
            },
          }
        : {}),
      ...(res.node ? { node: res.node } : {}),
    };
  }

  watch(name: string): WatchStream {
    const call = (this.client.Watch as (req: unknown) => grpc.ClientReadableStream<WireResolution>).call(this.client, { name });
    let cancelled = false;
    const cancel = () => {
      cancelled = true;
      call.cancel();
    };
    const failure = (err: grpc.ServiceError) => this.failure(err);
    async function* iterate(): AsyncGenerator<Resolution> {
      try {
        for await (const msg of call as AsyncIterable<WireResolution>) yield toResolution(msg);
      } catch (err) {
        if (cancelled && (err as grpc.ServiceError).code === GrpcStatus.CANCELLED) return;
        throw await failure(err as grpc.ServiceError);
      } finally {
        // A consumer that breaks out of the loop ends the stream on the server too.
        if (!cancelled) cancel();
      }
    }
    return { [Symbol.asyncIterator]: iterate, cancel };
  }

  close(): void {
    this.client.close();
  }

  private unary(method: string, req: unknown): Promise<unknown> {
    const fn = this.client[method] as Unary;
    return new Promise((resolve, reject) => {
      fn.call(this.client, req, new this.grpc.Metadata() as grpc.Metadata, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (err) void this.failure(err).then(reject);
        else resolve(res);
      });
    });
  }

  /**
   * The DaemonError for a failed call. A connection that opened but carried
   * no call ("Failed to connect", a TLS alert) is looked at once more, as a
   * bare TLS handshake with this client's settings, to say what the daemon
   * demands (TLS, a client certificate, another CA) rather than "unreachable".
   */
  private async failure(err: grpc.ServiceError): Promise<DaemonError> {
    const plain = toDaemonError(err, this.address);
    if (plain.code !== ErrorCodes.DAEMON_UNREACHABLE || err.code !== GrpcStatus.UNAVAILABLE) return plain;
    if (!/Failed to connect|SSL|TLS|certificate|alert|handshake|socket disconnected|ECONNRESET/i.test(err.details || err.message)) return plain;
    const why = await diagnoseHandshake(this.address, this.tls, Math.min(2000, this.timeoutMs)).catch(() => null);
    return why ? new DaemonError(ErrorCodes.TLS_HANDSHAKE_FAILED, `cannot talk to the canonport daemon: ${why}`, err.code, this.address) : plain;
  }
}

function toResolution(w: WireResolution): Resolution {
  return {
    name: w.name,
    zone: w.zone,
    service: w.service,
    port: w.port,
    scheme: w.scheme,
    prefix: w.prefix,
    ...(w.version !== undefined && w.version !== null ? { version: w.version } : {}),
    host: w.host,
    addresses: [...w.addresses],
    ttl: w.ttl,
    collidesWith: [...w.collidesWith],
    // A daemon from before cluster mode sends no endpoints: the addresses are them.
    endpoints: w.endpoints?.length
      ? w.endpoints.map((e) => ({ ...e }))
      : w.addresses.map((address) => ({ address, port: w.port, source: '', node: '', version: '', since: '' })),
  };
}

/** A grpc-js call error as a DaemonError, keeping the daemon's own code when it sent one. */
export function toDaemonError(err: grpc.ServiceError, address: string): DaemonError {
  const sent = err.metadata?.get(ERROR_CODE_METADATA)[0];
  const status = typeof err.code === 'number' ? err.code : GrpcStatus.UNKNOWN;
  // grpc-js appends an empty 'Resolution note: ' to connection failures; drop it.
  const details = (err.details || err.message).replace(/\s*Resolution note:\s*$/, '');
  if (sent === ErrorCodes.ACCESS_DENIED) return new DaemonError(ErrorCodes.ACCESS_DENIED, `the canonport daemon at ${address} refused the call: ${details}`, status, address);
  if (typeof sent === 'string' && KNOWN_CODES.has(sent)) return new DaemonError(sent as ErrorCode, details, status, address);
  if (status === GrpcStatus.UNAVAILABLE || status === GrpcStatus.DEADLINE_EXCEEDED) {
    return new DaemonError(ErrorCodes.DAEMON_UNREACHABLE, `cannot reach the canonport daemon at ${address}: ${details}`, status, address);
  }
  return new DaemonError(ErrorCodes.DAEMON_FAILED, `daemon at ${address}: ${grpcStatusName(status)}: ${details}`, status, address);
}

/**
 * A listener's names as a daemon sent them. A daemon before issue 22 says
 * nothing of names (no `nameSource`): its claim is its names, as before.
 */
function namesFromWire(services: readonly string[], names: readonly { name: string; source: string }[], nameSource: string): ServiceName[] {
  if (nameSource === '') return services.map((name) => ({ name, source: 'registry' as const }));
  return names.filter((n): n is ServiceName => (NAME_SOURCES as readonly string[]).includes(n.source)).map((n) => ({ name: n.name, source: n.source }));
}

/** A forwarding host port's target from the wire's "address:port" (an IPv6 address keeps its colons). */
function forwardedToFromWire(text: string, namespace: string): { address: string; port: number; namespace: string } {
  const at = text.lastIndexOf(':');
  return { address: text.slice(0, at), port: Number(text.slice(at + 1)), namespace };
}
