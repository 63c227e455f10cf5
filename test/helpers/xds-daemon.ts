import { renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Daemon, DaemonOptions } from '../../src/daemon/daemon.js';
import { formatHostPort } from '../../src/config/address.js';
import { base32Port } from '../../src/scheme/index.js';
import { startDaemon, writeRegistry } from './daemon.js';
import { bootstrapFile } from './xds.js';

/**
 * The real daemon as an xDS control plane: `canonport serve`'s Daemon on
 * loopback, its registry in a file the test rewrites (the daemon's own
 * watcher reloads it, as on a host), and the bootstrap printed by
 * `canonport xds-bootstrap --server <its gRPC address>`.
 */

export const ZONE = 'cluster-1.example.com';
export const API = `api.${ZONE}`;
/** api's canonical port (base32 of "api"): where a stock client lands unless the registry pins it. */
export const API_PORT = base32Port('api');
/** A name outside every zone the daemon serves: the daemon cannot answer it. */
export const NOT_SERVED = 'api.not-served.example';

/**
 * A loopback address (each a distinct "host" on Linux) for this test
 * worker: 127.B.W.n, B from CANONPORT_TEST_BAND and W the vitest worker, so
 * two files, or two runs in two checkouts, never bind api's canonical port
 * on the same address. The bench takes 127.200.x.x.
 */
export function loopbackHost(n: number): string {
  const band = Number(process.env.CANONPORT_TEST_BAND ?? 0) % 64;
  const worker = Number(process.env.VITEST_POOL_ID ?? 1) % 250;
  return `127.${100 + band}.${worker}.${n}`;
}

/** What the registry says about where services run: `hosts` and pinned ports. */
export interface RegistrySpec {
  /** Served zones (default: ZONE alone). */
  zones?: readonly string[];
  hosts: Record<string, readonly string[]>;
  /** Service label → pinned port. */
  pins?: Record<string, number>;
  /** Service label → its versions (seed 000: port 8 ‖ id ‖ version). */
  versioned?: Record<string, { id: number; versions: number[] }>;
  /** A comment line: rewrites the file without changing any answer. */
  note?: string;
}

export function registryYaml(spec: RegistrySpec): string {
  const lines = [`# ${spec.note ?? 'xDS daemon test'}`, `zones: [${(spec.zones ?? [ZONE]).join(', ')}]`, 'hosts:'];
  for (const [name, addrs] of Object.entries(spec.hosts)) lines.push(`  ${name}: [${addrs.join(', ')}]`);
  if (Object.keys(spec.hosts).length === 0) lines[lines.length - 1] = 'hosts: {}';
  const pins = Object.entries(spec.pins ?? {});
  const versioned = Object.entries(spec.versioned ?? {});
  if (pins.length + versioned.length > 0) lines.push('services:');
  for (const [service, port] of pins) lines.push(`  ${service}:`, `    port: ${port}`);
  for (const [service, v] of versioned) lines.push(`  ${service}:`, `    id: ${v.id}`, `    versions: [${v.versions.join(', ')}]`);
  return `${lines.join('\n')}\n`;
}

export interface XdsDaemon {
  daemon: Daemon;
  /** The daemon's gRPC address, `127.0.0.1:PORT`: the bootstrap's server_uri. */
  address: string;
  /** The bootstrap file `canonport xds-bootstrap --server ADDRESS` printed. */
  bootstrap: string;
  registryFile: string;
  /** Reloads the daemon has completed (its 'reload' event). */
  reloads(): number;
  /**
   * Replaces the registry file the way editors and ConfigMap updates do
   * (write aside, rename over) and returns at once: the daemon's watcher
   * notices and reloads. `reloaded()` waits for that.
   */
  rewrite(spec: RegistrySpec): void;
  /** Resolves once the daemon has completed `n` reloads; fails after `ms` (a wide bound). */
  reloaded(n: number, ms?: number): Promise<void>;
  close(graceMs?: number): Promise<void>;
}

/** Starts the daemon on `spec`; `grpc` is its gRPC listen address (default 127.0.0.1:0). */
export async function startXdsDaemon(spec: RegistrySpec, opts: Partial<DaemonOptions> & { grpc?: string } = {}): Promise<XdsDaemon> {
  const registryFile = writeRegistry(registryYaml(spec));
  const { grpc, ...daemonOpts } = opts;
  const daemon = await startDaemon({ registry: registryFile, ...(grpc ? { grpc } : {}) }, daemonOpts);
  let reloads = 0;
  daemon.events.on('reload', () => reloads++);
  const address = formatHostPort(daemon.addresses.grpc);
  const bootstrap = await bootstrapFile(address);
  return {
    daemon,
    address,
    bootstrap,
    registryFile,
    reloads: () => reloads,
    rewrite(next) {
      const aside = join(dirname(registryFile), '.registry.yaml.new');
      writeFileSync(aside, registryYaml(next));
      renameSync(aside, registryFile);
    },
    async reloaded(n, ms = 5000) {
      const deadline = Date.now() + ms;
      while (reloads < n) {
        if (Date.now() > deadline) throw new Error(`the daemon reloaded ${reloads} times within ${ms} ms, want ${n}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    close: (graceMs = 2000) => daemon.close(graceMs),
  };
}

/** The sum of a daemon metric's values (optionally those with `label`). */
export async function metricTotal(
  metric: { get(): Promise<{ values: Array<{ value: number; labels: Record<string, unknown> }> }> },
  label: Record<string, string> = {},
): Promise<number> {
  const m = await metric.get();
  return m.values.filter((v) => Object.entries(label).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}
