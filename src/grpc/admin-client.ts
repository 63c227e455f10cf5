import * as grpc from '@grpc/grpc-js';
import type { HostPort } from '../config/address.js';
import { daemonTarget, toDaemonError } from './canonport-client.js';
import { adminService, DEFAULT_DAEMON_ADDRESS } from './proto.js';
import { channelCredentials, clientTlsFromEnv, loadClientTls, tlsChannelOptions, type ClientTlsOptions } from './client-tls.js';

/** The daemon's canonport.v1.Admin service, for `canonport drain`, `undrain` and `leave` (loopback only). */

export interface DrainResult {
  service: string;
  ports: number[];
  acked: string[];
  unconfirmed: string[];
  ttlWaitedMs: number;
}

export interface AdminClient {
  readonly address: string;
  drain(service: string, opts?: { wait?: boolean; timeoutMs?: number }): Promise<DrainResult>;
  undrain(service: string): Promise<DrainResult>;
  leave(): Promise<{ node: string }>;
  close(): void;
}

type Unary = (req: unknown, meta: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => grpc.ClientUnaryCall;

export function createAdminClient(address: string | HostPort = DEFAULT_DAEMON_ADDRESS, opts: { tls?: ClientTlsOptions | boolean | undefined } = {}): AdminClient {
  const target = daemonTarget(address);
  const tls = loadClientTls(opts.tls ?? clientTlsFromEnv());
  const Ctor = adminService();
  const client = new Ctor(target, channelCredentials(grpc, tls), tlsChannelOptions(tls)) as grpc.Client & Record<string, Unary>;
  const call = (method: string, req: unknown, timeoutMs: number): Promise<unknown> =>
    new Promise((resolve, reject) => {
      client[method]!.call(client, req, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(toDaemonError(err, target)) : resolve(res)));
    });
  return {
    address: target,
    async drain(service, o = {}) {
      const timeoutMs = o.timeoutMs ?? 30_000;
      // The call outlives the drain's own bound by a little, so the daemon's CP_DRAIN_TIMEOUT arrives rather than a bare deadline.
      return (await call('Drain', { service, wait: o.wait === true, timeoutMs }, timeoutMs + 15_000)) as DrainResult;
    },
    async undrain(service) {
      return (await call('Undrain', { service }, 5_000)) as DrainResult;
    },
    async leave() {
      return (await call('Leave', {}, 10_000)) as { node: string };
    },
    close: () => client.close(),
  };
}
