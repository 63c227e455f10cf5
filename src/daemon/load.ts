import { buildConfig, configFromEnv, registryFileOf, type Config, type ConfigInput } from '../config/config.js';
import { checkListeners } from '../config/listen-policy.js';
import type { DefaultContext } from '../config/settings.js';
import { loadRegistry } from '../registry/load.js';
import type { Registry } from '../registry/registry.js';

/**
 * The daemon's configuration as `serve` (and `serve --print-config`) builds
 * it: the registry file named by flags or env is read, then flags over env
 * over the file's settings over defaults (config/config.ts buildConfig).
 * Throws CP_CONFIG_INVALID naming the flag, variable or key; CP_REGISTRY_*
 * for the file; CP_FORWARD_LOOP when an upstream is the daemon itself;
 * CP_INSECURE_LISTEN when gRPC or HTTP would listen beyond loopback with
 * nothing protecting it (config/listen-policy.ts).
 */
export async function resolveConfig(
  flags: ConfigInput,
  env: ConfigInput = configFromEnv(),
  opts: DefaultContext = {},
): Promise<{ config: Config; registry: Registry }> {
  const registry = await loadRegistry(registryFileOf(flags, env, opts));
  const config = buildConfig(flags, env, registry, opts);
  checkListeners(config);
  return { config, registry };
}
