import { etcdAccess } from '../cluster/access.js';
import { buildConfig, configFromEnv, registryFileOf, registryMaxBytesOf, type Config, type ConfigInput } from '../config/config.js';
import { checkListeners } from '../config/listen-policy.js';
import type { DefaultContext } from '../config/settings.js';
import { readTlsMaterial, tlsFilesOf } from '../config/tls.js';
import { loadRegistry } from '../registry/load.js';
import type { Registry } from '../registry/registry.js';

/**
 * The daemon's configuration from flags, env and the registry file: the
 * file named by flags or env is read, then flags over env over the file's
 * settings over defaults (config/config.ts buildConfig). The daemon builds
 * it this way at start and on every reload. Throws CP_CONFIG_INVALID naming
 * the flag, variable or key; CP_REGISTRY_* for the file; CP_FORWARD_LOOP
 * when an upstream is the daemon itself; CP_INSECURE_LISTEN when gRPC or
 * HTTP would listen beyond loopback with nothing protecting it
 * (config/listen-policy.ts).
 */
export async function resolveConfig(
  flags: ConfigInput,
  env: ConfigInput = configFromEnv(),
  opts: DefaultContext & { signal?: AbortSignal | undefined } = {},
): Promise<{ config: Config; registry: Registry }> {
  // The file's size is checked before it is read, and a load in progress stops when `signal` aborts (the daemon is stopping).
  const registry = await loadRegistry(registryFileOf(flags, env, opts), { maxBytes: registryMaxBytesOf(flags, env, opts), signal: opts.signal });
  const config = buildConfig(flags, env, registry, opts);
  checkListeners(config);
  return { config, registry };
}

/**
 * The configuration `serve` starts with, and `serve --print-config` prints:
 * resolveConfig, then the files the settings name read and checked
 * (checkServeFiles). Both go through here, so print-config refuses what
 * serve refuses, with the same error and exit code.
 */
export async function resolveServeConfig(
  flags: ConfigInput,
  env: ConfigInput = configFromEnv(),
  opts: DefaultContext = {},
): Promise<{ config: Config; registry: Registry }> {
  const resolved = await resolveConfig(flags, env, opts);
  await checkServeFiles(resolved.config);
  return resolved;
}

/**
 * Reads and checks the files a start reads, with the code that reads them
 * there, in the order it does: in cluster mode the etcd password file
 * (cluster/access.ts), then the etcd CA, client certificate and key
 * (cluster/cluster.ts etcdClientOptions): CP_CONFIG_INVALID; then each TLS
 * listener's certificate, key and client CA (config/tls.ts
 * readTlsMaterial): CP_TLS_INVALID. Not part of resolveConfig: on a reload
 * the daemon re-reads certificates on their own, and a bad one must keep
 * the running one, not refuse the new registry file with it.
 */
export async function checkServeFiles(config: Config): Promise<void> {
  if (config.cluster !== null) {
    // Loaded only in cluster mode, as the daemon loads it (it brings the etcd client).
    const { etcdClientOptions } = await import('../cluster/cluster.js');
    etcdClientOptions({ endpoints: config.cluster, ...etcdAccess(config) });
  }
  for (const listener of ['grpc', 'http'] as const) {
    const files = tlsFilesOf(config, listener);
    if (files) readTlsMaterial(files);
  }
}
