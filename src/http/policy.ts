import type { Socket } from 'node:net';
import { TLSSocket } from '../config/tls.js';
import type { Config } from '../config/config.js';
import { listenerRule, RefusalLog, type AddressRule, type RefusalReason } from '../config/listen-policy.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';

/**
 * The HTTP access policy. `/healthz` and `/readyz` answer every client that
 * reaches the port: they say one bit each (up, ready), and the probes that
 * need them (the kubelet, Docker's HEALTHCHECK, a load balancer) come from
 * addresses an operator does not always know and carry no certificate.
 * Every other path (`/metrics`, which lists every service and version
 * listening on the host, and any endpoint added later, such as a discovery
 * endpoint) is for the listener's allow-list (`--http-allow`, loopback
 * always) and, with `--http-tls-client-ca`, for clients that showed a
 * certificate signed by it. A refused request gets 403 before its handler
 * runs, whatever its path, so a refused client cannot even learn which
 * paths exist.
 */

/** Paths every client may ask: the probes. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

export interface HttpRefusal {
  reason: RefusalReason;
  /** The 403 body: what was refused and which setting would allow it. */
  details: string;
}

export interface HttpPolicyDeps {
  config(): Config;
  metrics: Metrics;
  logger: Logger;
}

/** The check the server runs on every request; null: serve it. */
export function httpAccess(deps: HttpPolicyDeps): (socket: Socket, path: string | null) => HttpRefusal | null {
  const log = new RefusalLog('http', deps);
  const cache = new WeakMap<Config, { rule: AddressRule; needsCert: boolean }>();
  return (socket, path) => {
    if (path !== null && OPEN_PATHS.has(path)) return null;
    const config = deps.config();
    let rules = cache.get(config);
    if (!rules) {
      rules = { rule: listenerRule(config, 'http'), needsCert: config.httpTlsClientCa !== null };
      cache.set(config, rules);
    }
    const client = socket.remoteAddress;
    let refusal: HttpRefusal | null = null;
    if (!rules.rule.allows(client)) {
      refusal = { reason: 'address', details: `forbidden: ${client ?? 'this client'} is not loopback and not in this daemon's --http-allow (/healthz and /readyz answer everyone)` };
    } else if (rules.needsCert && !(socket instanceof TLSSocket && socket.authorized)) {
      refusal = { reason: 'no_certificate', details: "forbidden: this path needs a client certificate signed by the daemon's --http-tls-client-ca (/healthz and /readyz answer everyone)" };
    }
    if (refusal) log.refused(refusal.reason, client, path ?? '(unparsable target)');
    return refusal;
  };
}
