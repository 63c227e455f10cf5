import { CanonportError, ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { formatHostPort, type HostPort } from './address.js';
import { isLoopback, NetworkSet, type Cidr } from './cidr.js';
import type { SettingValues } from './settings.js';

/**
 * Who may reach the gRPC and HTTP listeners, from the settings: the one rule
 * both servers apply (src/grpc/policy.ts, src/http/policy.ts), and the
 * checks `serve` makes before it binds anything (and a reload before it
 * applies a new file).
 *
 * The rule for a listener's addresses:
 *   - loopback clients are always allowed;
 *   - with an allow-list, only it besides loopback;
 *   - without one, any client when the listener is bound to loopback (only
 *     loopback reaches it), when client certificates are required (the
 *     certificate is the gate), or when `--insecure-listen` says so;
 *   - otherwise (a non-loopback bind with nothing protecting it) the daemon
 *     refuses to start: checkListeners throws CP_INSECURE_LISTEN.
 * Certificate requirements apply on top of the address rule, loopback
 * included.
 */

export type ListenerName = 'grpc' | 'http';

/** The settings the rule reads. */
export type ListenSettings = Pick<
  SettingValues,
  | 'grpc'
  | 'http'
  | 'grpcAllow'
  | 'httpAllow'
  | 'insecureListen'
  | 'grpcTlsCert'
  | 'grpcTlsKey'
  | 'grpcTlsClientCa'
  | 'grpcTlsClientAuth'
  | 'inventoryAllow'
  | 'inventoryRequireCert'
  | 'httpTlsCert'
  | 'httpTlsKey'
  | 'httpTlsClientCa'
>;

/** Who may reach one listener (or one method), by address. */
export class AddressRule {
  private readonly networks: NetworkSet;

  /**
   * @param any every address may (no allow-list applies)
   * @param flag the flag an operator sets to widen it, named in refusals
   */
  constructor(
    allow: readonly Cidr[],
    readonly any: boolean,
    readonly flag: string,
  ) {
    this.networks = new NetworkSet(allow);
  }

  /** Loopback always; then every address, or the allow-list. An unknown address (no socket) is refused. */
  allows(address: string | undefined): boolean {
    if (address === undefined || address === '') return false;
    return this.any || isLoopback(address) || this.networks.has(address);
  }
}

/** Whether a listen address is a loopback one (wildcards 0.0.0.0 and :: are not). */
export function isLoopbackListen(listen: HostPort): boolean {
  return isLoopback(listen.host);
}

/** Client certificates gate the whole listener: gRPC with a required client CA; HTTP with any client CA (probes aside). */
export function certificatesRequired(s: ListenSettings, listener: ListenerName): boolean {
  return listener === 'grpc' ? s.grpcTlsClientCa !== null && s.grpcTlsClientAuth === 'require' : s.httpTlsClientCa !== null;
}

/** The address rule of a listener as a whole. */
export function listenerRule(s: ListenSettings, listener: ListenerName): AddressRule {
  const allow = listener === 'grpc' ? s.grpcAllow : s.httpAllow;
  const listen = listener === 'grpc' ? s.grpc : s.http;
  const any = allow.length === 0 && (isLoopbackListen(listen) || certificatesRequired(s, listener) || s.insecureListen);
  return new AddressRule(allow, any, listener === 'grpc' ? '--grpc-allow' : '--http-allow');
}

/** The extra rule for gRPC Inventory: `--inventory-allow` when set, else everyone the listener lets in. */
export function inventoryRule(s: ListenSettings): AddressRule {
  return new AddressRule(s.inventoryAllow, s.inventoryAllow.length === 0, '--inventory-allow');
}

/**
 * Everything `serve` must refuse about the listeners before binding:
 * certificate settings that only make sense together (CP_CONFIG_INVALID),
 * and a non-loopback listener with nothing protecting it
 * (CP_INSECURE_LISTEN, naming the flags that fix it).
 */
export function checkListeners(s: ListenSettings): void {
  const invalid = (message: string, setting: string) => new CanonportError(ErrorCodes.CONFIG_INVALID, message, { setting });
  for (const [l, cert, key, ca] of [
    ['grpc', s.grpcTlsCert, s.grpcTlsKey, s.grpcTlsClientCa],
    ['http', s.httpTlsCert, s.httpTlsKey, s.httpTlsClientCa],
  ] as const) {
    if ((cert === null) !== (key === null)) {
      throw invalid(`--${l}-tls-cert and --${l}-tls-key go together: ${cert === null ? `--${l}-tls-key is set without --${l}-tls-cert` : `--${l}-tls-cert is set without --${l}-tls-key`}`, `${l}TlsCert`);
    }
    if (ca !== null && cert === null) {
      throw invalid(`--${l}-tls-client-ca needs --${l}-tls-cert and --${l}-tls-key: client certificates are checked inside TLS`, `${l}TlsClientCa`);
    }
  }
  if (s.grpcTlsClientAuth === 'optional' && s.grpcTlsClientCa === null) {
    throw invalid('--grpc-tls-client-auth optional needs --grpc-tls-client-ca: the CA that offered certificates are checked against', 'grpcTlsClientAuth');
  }
  if (s.inventoryRequireCert && s.grpcTlsClientCa === null) {
    throw invalid('--inventory-require-cert needs --grpc-tls-client-ca (and --grpc-tls-cert, --grpc-tls-key): the CA client certificates are checked against', 'inventoryRequireCert');
  }
  for (const l of ['grpc', 'http'] as const) {
    const listen = l === 'grpc' ? s.grpc : s.http;
    const allow = l === 'grpc' ? s.grpcAllow : s.httpAllow;
    if (isLoopbackListen(listen) || allow.length > 0 || certificatesRequired(s, l) || s.insecureListen) continue;
    const what = l === 'grpc' ? 'Resolve, Watch, Inventory and xDS' : '/metrics (every listening service and version)';
    throw new CanonportError(
      ErrorCodes.INSECURE_LISTEN,
      `${l === 'grpc' ? 'gRPC' : 'HTTP'} would listen on ${formatHostPort(listen)}, beyond loopback, open to every client that reaches it (${what}): ` +
        `set --${l}-allow CIDR (CANONPORT_${l.toUpperCase()}_ALLOW) for the networks that may use it, ` +
        `or --${l}-tls-client-ca FILE to require client certificates, ` +
        `or --insecure-listen to serve everyone on purpose`,
      { listener: l, listen: formatHostPort(listen) },
    );
  }
}

/** Why a request was refused: the `reason` label of canonport_access_denied_total. */
export type RefusalReason = 'address' | 'inventory_address' | 'no_certificate' | 'admin_address';

/**
 * Counts every refusal and logs it without letting refused clients fill the
 * log: each one at debug, and at most one warn a minute per listener (with
 * how many were refused since the last one). The first refusal after a quiet
 * minute is always a warn, so a misconfigured allow-list shows at once.
 */
export class RefusalLog {
  private nextWarn = 0;
  private since = 0;

  constructor(
    private readonly listener: ListenerName,
    private readonly deps: { logger: Logger; metrics: Metrics; now?: (() => number) | undefined },
    private readonly everyMs = 60_000,
  ) {}

  refused(reason: RefusalReason, client: string | undefined, target: string): void {
    this.deps.metrics.accessDenied.inc({ listener: this.listener, reason });
    const fields = { code: ErrorCodes.ACCESS_DENIED, listener: this.listener, reason, client: client ?? 'unknown', target };
    this.deps.logger.debug(fields, 'request refused by the access policy');
    const now = (this.deps.now ?? Date.now)();
    this.since++;
    if (now < this.nextWarn) return;
    this.deps.logger.warn(
      { ...fields, refusedSinceLastWarning: this.since },
      `${this.listener}: refused ${client ?? 'a client'} (${reason}) for ${target}; refusals are counted in canonport_access_denied_total and warned about at most once a minute`,
    );
    this.nextWarn = now + this.everyMs;
    this.since = 0;
  }
}
