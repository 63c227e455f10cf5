import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config, ConfigInput } from '../../src/config/config.js';
import { Daemon, type DaemonOptions } from '../../src/daemon/daemon.js';
import { tempDir } from './temp.js';

export { tempDir };

/**
 * Starts a real daemon on loopback ephemeral ports. Upstreams default to
 * none (an empty resolv.conf in a temp dir, so tests never forward to the
 * host's resolvers by accident) unless given.
 */
export async function startDaemon(
  flags: ConfigInput = {},
  opts: Partial<DaemonOptions> & { tune?: (c: Config) => Config } = {},
): Promise<Daemon> {
  const dir = tempDir();
  const resolvConf = join(dir, 'resolv.conf');
  writeFileSync(resolvConf, '');
  const hostsFile = opts.hostsFile ?? join(dir, 'hosts');
  if (!opts.hostsFile) writeFileSync(hostsFile, '127.0.0.1 localhost\n');
  return Daemon.start({
    // Cluster mode keeps its lease and view in a state directory: a test's own, never the machine's default.
    // Only the daemon's own network namespace: this shared machine's other processes (other test runs' containers) are not the test's.
    flags: { dns: '127.0.0.1:0', grpc: '127.0.0.1:0', http: '127.0.0.1:0', namespaces: 'own', ...(flags.cluster ? { stateDir: join(dir, 'state') } : {}), ...flags },
    env: {},
    resolvConf,
    hostsFile,
    inventory: false,
    ...opts,
  });
}

export function writeRegistry(text: string, dir = tempDir()): string {
  const file = join(dir, 'registry.yaml');
  writeFileSync(file, text);
  return file;
}
