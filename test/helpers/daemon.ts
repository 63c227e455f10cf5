import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config, ConfigInput } from '../../src/config/config.js';
import { Daemon, type DaemonOptions } from '../../src/daemon/daemon.js';
import { tempDir } from './temp.js';

export { tempDir };

/**
 * Queries in each warm-up round of a daemon started here, unless the test names its own count: the same rounds,
 * kinds of query and clean-up as the default 3,000 (src/dns/warm-up.ts), at a few percent of its CPU. The fast
 * files start a few hundred daemons in-process, and a full warm-up was most of each start's ~200 ms (issue 23,
 * a --cpu-prof of eight starts). The tests about the warm-up (dns-warm-up.test.ts) ask for the full count.
 */
export const TEST_WARM_UP_QUERIES = 100;

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
    warmUpQueries: TEST_WARM_UP_QUERIES,
    ...opts,
  });
}

export function writeRegistry(text: string, dir = tempDir()): string {
  const file = join(dir, 'registry.yaml');
  writeFileSync(file, text);
  return file;
}
