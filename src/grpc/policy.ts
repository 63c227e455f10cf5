import { networkInterfaces } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import type { Config } from '../config/config.js';
import { isLoopback } from '../config/cidr.js';
import { inventoryRule, listenerRule, RefusalLog, type AddressRule, type RefusalReason } from '../config/listen-policy.js';
import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { CANONPORT_SERVICE_NAME, ERROR_CODE_METADATA } from './proto.js';

/**
 * The gRPC access policy, as a server interceptor: every call, on every
 * service of the port (Canonport, health, reflection, xDS), is checked
 * against the listener's allow-list, and `Inventory` (what `canonport
 * fleet` reads) against its own narrower rule, before any handler sees it.
 * A refused call ends with PERMISSION_DENIED and `canonport-code:
 * CP_ACCESS_DENIED`, its message naming the flag that would let it in.
 *
 * Per call as well as per connection: the listener's gate (server.ts,
 * src/net/gate.ts) closes connections from refused addresses at accept,
 * but lets each such address hold one for 3 s, so its first call is
 * answered here and the client is told why (a connection cut at accept
 * reaches it as UNAVAILABLE "Failed to connect", like a daemon that is
 * down). Client certificates, when required, are enforced at the TLS
 * handshake (src/grpc/tls.ts).
 */

/** The method whose answer maps the host: services and versions listening on it. */
export const INVENTORY_PATH = `/${CANONPORT_SERVICE_NAME}/Inventory`;
/**
 * Every method of canonport.v1.Admin (drain, leave): only from this host,
 * whatever the allow-lists say. "This host" is loopback, or one of the
 * host's own interface addresses (a connection from there can only come
 * from a process on this host, in this network namespace: the DaemonSet's
 * daemon listens on the node's address, not on loopback).
 */
export const ADMIN_PREFIX = '/canonport.v1.Admin/';
/** How long the host's own addresses are kept before they are read again. */
const OWN_ADDRESSES_MS = 5_000;

let own: { at: number; addresses: Set<string> } | undefined;

/** Loopback, or an address of one of this host's interfaces. */
export function isThisHost(address: string): boolean {
  if (isLoopback(address)) return true;
  const now = Date.now();
  if (!own || now - own.at > OWN_ADDRESSES_MS) {
    const addresses = new Set<string>();
    try {
      for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) addresses.add(i.address);
    } catch {
      // EMFILE and the like: nothing is this host but loopback until the next read.
    }
    own = { at: now, addresses };
  }
  return own.addresses.has(address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1'));
}

interface Rules {
  listener: AddressRule;
  inventory: AddressRule;
  inventoryNeedsCert: boolean;
}

export interface PolicyDeps {
  /** The running config: the rules follow it across reloads. */
  config(): Config;
  metrics: Metrics;
  logger: Logger;
}

export function accessInterceptor(deps: PolicyDeps): grpc.ServerInterceptor {
  const log = new RefusalLog('grpc', deps);
  const cache = new WeakMap<Config, Rules>();
  const rulesOf = (config: Config): Rules => {
    let r = cache.get(config);
    if (!r) {
      r = { listener: listenerRule(config, 'grpc'), inventory: inventoryRule(config), inventoryNeedsCert: config.inventoryRequireCert };
      cache.set(config, r);
    }
    return r;
  };

  return (method, call) => {
    const client = call.getConnectionInfo().remoteAddress;
    const rules = rulesOf(deps.config());
    let refusal: { reason: RefusalReason; details: string; code?: string } | null = null;
    if (method.path.startsWith(ADMIN_PREFIX) && !(client !== undefined && isThisHost(client))) {
      refusal = { reason: 'admin_address', code: ErrorCodes.ADMIN_REFUSED, details: `${method.path.slice(ADMIN_PREFIX.length)} is an operation on this host: only a client on this host (loopback or one of its own addresses) may call it, and ${client ?? 'this client'} is not one` };
    } else if (!rules.listener.allows(client)) {
      refusal = { reason: 'address', details: `${client ?? 'this client'} may not call this daemon: it is not loopback and not in the daemon's --grpc-allow` };
    } else if (method.path === INVENTORY_PATH) {
      if (!rules.inventory.allows(client)) {
        refusal = { reason: 'inventory_address', details: `Inventory is limited to loopback and the daemon's --inventory-allow networks; ${client ?? 'this client'} is not in them` };
      } else if (rules.inventoryNeedsCert && call.getAuthContext().sslPeerCertificate === undefined) {
        refusal = {
          reason: 'no_certificate',
          details:
            "Inventory needs a client certificate signed by the daemon's --grpc-tls-client-ca (--inventory-require-cert): dial with --tls-cert FILE --tls-key FILE (CANONPORT_TLS_CERT, CANONPORT_TLS_KEY)",
        };
      }
    }
    // Allowed: hand the call on unwrapped. grpc-js chains interceptors through the
    // ServerInterceptingCallInterface only (server-interceptors.ts, getServerInterceptingCall);
    // the ServerInterceptor type asks for the class, which would cost a wrapper on every call.
    if (refusal === null) return call as grpc.ServerInterceptingCall;
    log.refused(refusal.reason, client, method.path);
    const denied = refusal;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          // The request's metadata is the first thing a handler would see: answer instead of passing it on.
          onReceiveMetadata: () => {
            const metadata = new grpc.Metadata();
            metadata.set(ERROR_CODE_METADATA, denied.code ?? ErrorCodes.ACCESS_DENIED);
            call.sendStatus({ code: grpc.status.PERMISSION_DENIED, details: denied.details, metadata });
          },
          onReceiveMessage: () => undefined,
          onReceiveHalfClose: () => undefined,
        }),
    });
  };
}

