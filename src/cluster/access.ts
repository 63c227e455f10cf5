import { readFileSync } from 'node:fs';
import { CanonportError, ErrorCodes } from '../errors.js';
import type { ClusterTlsOptions } from './cluster.js';

/** The etcd settings as the settings table gives them (serve's and fleet's alike; null where unset). */
export interface EtcdSettings {
  clusterPrefix?: string | null | undefined;
  clusterCa: string | null;
  clusterCert: string | null;
  clusterKey: string | null;
  clusterUser: string | null;
  clusterPasswordFile: string | null;
}

/**
 * How to reach etcd, from the settings: TLS when a CA or a client
 * certificate is given, and the user with the password read from its file
 * (a file, so it shows in neither ps nor the environment). One place for
 * `serve` and `fleet --cluster`. Throws CP_CONFIG_INVALID naming the flag.
 */
export function etcdAccess(s: EtcdSettings): { prefix?: string | undefined; tls?: ClusterTlsOptions | undefined; auth?: { username: string; password: string } | undefined } {
  let password: string | undefined;
  if (s.clusterPasswordFile !== null) {
    try {
      password = readFileSync(s.clusterPasswordFile, 'utf8').trim();
    } catch (err) {
      throw new CanonportError(ErrorCodes.CONFIG_INVALID, `--cluster-password-file ${s.clusterPasswordFile}: ${(err as Error).message}`, undefined, { cause: err });
    }
  }
  if ((s.clusterUser === null) !== (password === undefined)) {
    throw new CanonportError(ErrorCodes.CONFIG_INVALID, '--cluster-user and --cluster-password-file go together');
  }
  return {
    prefix: s.clusterPrefix ?? undefined,
    tls: s.clusterCa !== null || s.clusterCert !== null ? { caFile: s.clusterCa ?? undefined, certFile: s.clusterCert ?? undefined, keyFile: s.clusterKey ?? undefined } : undefined,
    auth: s.clusterUser !== null ? { username: s.clusterUser, password: password! } : undefined,
  };
}
