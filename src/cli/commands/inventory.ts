import { table } from '../../fleet/fleet.js';
import type { Command } from 'commander';
import type { InventoryListener, InventorySnapshot } from '../../inventory/types.js';
import { createCanonportClient } from '../../grpc/canonport-client.js';
import { DEFAULT_DAEMON_ADDRESS, defaultDaemonAddress } from '../../config/address.js';
import { Metrics } from '../../metrics/metrics.js';
import { protocolOf } from '../../inventory/procnet.js';
import { HostInventory } from '../../inventory/inventory.js';
import { loadRegistry } from '../../registry/load.js';
import { EXIT_FINDINGS, intOption, printJson, usageError, type CliIO } from '../io.js';
import { registryOption, tlsFromFlags, withTlsOptions, type TlsFlags } from '../options.js';
import type { RegisterCommand } from '../io.js';

interface InventoryFlags extends TlsFlags {
  registry?: string;
  json?: boolean;
  probe?: boolean;
  versionPath?: string;
  probeTimeout?: string;
  daemon?: string | true;
  procRoot?: string;
}

/**
 * `canonport inventory`: this host's listening ports, named by canonical
 * port, with versions. Reads /proc itself (no daemon needed) unless
 * `--daemon` asks a running one.
 */
export const registerInventory: RegisterCommand = (program: Command, io: CliIO) => {
  withTlsOptions(program
    .command('inventory')
    .description('what listens on this host, named by canonical port, with versions')
    .addOption(registryOption())
    .option('--probe', 'ask each claimed port for its version over HTTP (registry versionPath, or --version-path)')
    .option('--version-path <path>', 'HTTP path asked on every claimed port without a port version; implies --probe')
    .option('--probe-timeout <ms>', 'deadline of one version probe (default: registry inventory.probeTimeoutMs, else 500)')
    .option('--daemon [addr]', `ask a running daemon's Inventory instead of reading /proc here (default $CANONPORT_GRPC, else ${DEFAULT_DAEMON_ADDRESS})`)
    .option('--proc-root <dir>', 'read net/tcp and net/tcp6 under this directory (default /proc; e.g. a host /proc mounted in a container)')
    .option('--json', 'print the snapshot as JSON (the gRPC InventoryResponse shape)'))
    .action(async (flags: InventoryFlags) => {
      if (flags.versionPath !== undefined && !flags.versionPath.startsWith('/')) throw usageError(`--version-path "${flags.versionPath}" must start with /`);
      const probeTimeoutMs = flags.probeTimeout === undefined ? undefined : intOption(flags.probeTimeout, '--probe-timeout', 1, 60_000);
      let snap: InventorySnapshot;
      if (flags.daemon !== undefined) {
        const client = createCanonportClient(flags.daemon === true ? defaultDaemonAddress() : flags.daemon, { tls: tlsFromFlags(flags) });
        try {
          snap = await client.inventory();
        } finally {
          client.close();
        }
      } else {
        const registry = await loadRegistry(flags.registry);
        const inventory = new HostInventory({
          state: () => ({ registry, zones: registry.zones }),
          metrics: new Metrics({ defaultMetrics: false }),
          probe: flags.probe === true || flags.versionPath !== undefined,
          versionPath: flags.versionPath,
          probeTimeoutMs,
          procRoot: flags.procRoot,
          // No daemon, so no names clients asked for; the processes' own names are read (issue 22).
          names: { asked: () => [], processNames: () => true },
        });
        snap = await inventory.snapshot();
        // The processes behind new sockets are looked up in the background: wait for that walk, then take the names it found.
        await inventory.owners.settled();
        await Promise.resolve();
        snap = { ...(inventory.current ?? snap), registryDigest: registry.digest };
        if (inventory.errors.length > 0) {
          // Nothing on stdout: a script reading it must not mistake a failed read for a host with nothing listening.
          for (const e of inventory.errors) io.err(`canonport: cannot read ${e.file}: ${e.message}`);
          io.exitCode = EXIT_FINDINGS;
          return;
        }
      }
      if (flags.json) printJson(io, snap);
      else io.out(formatInventory(snap));
    });
};

/**
 * One row per port and protocol (its addresses joined), sorted by port, TCP
 * first; a UDP row's port reads `15761/udp`. SERVICE is what the port
 * answers (its canonical names); NAME what people know it by and where that
 * comes from (`db (query)`), `-` for a claimed listener nothing names
 * (core/naming.ts). Unclaimed ports show "-" in both.
 */
export function formatInventory(snap: InventorySnapshot): string {
  const byPort = new Map<string, InventoryListener[]>();
  for (const l of snap.listeners) {
    const key = `${l.port}/${protocolOf(l.family)}`;
    const list = byPort.get(key);
    if (list) list.push(l);
    else byPort.set(key, [l]);
  }
  // Cluster mode: whether each claimed listener serves (READY: ready, not-ready, draining; "-" before its first verdict).
  const probed = snap.listeners.some((l) => l.readiness);
  const named = snap.listeners.some((l) => l.names !== undefined);
  const rows: string[][] = [['PORT', 'SERVICE', ...(named ? ['NAME'] : []), 'VERSION', 'FROM', 'SCHEME', ...(probed ? ['READY'] : []), 'ADDRESSES']];
  const order = [...byPort.values()].sort((a, b) => a[0]!.port - b[0]!.port || (protocolOf(a[0]!.family) === 'tcp' ? -1 : 1));
  for (const ls of order) {
    const l = ls[0]!;
    const port = protocolOf(l.family) === 'udp' ? `${l.port}/udp` : String(l.port);
    const name = named ? [l.names && l.names.length > 0 ? l.names.map((n) => `${n.name} (${n.source})`).join(', ') : '-'] : [];
    const ready = probed ? [l.readiness ? `${l.readiness.state} (${l.readiness.by})` : '-'] : [];
    rows.push([port, l.services.join(',') || '-', ...name, l.version, l.versionSource, l.scheme, ...ready, ls.map((x) => x.address).join(', ')]);
  }
  const when = new Date(snap.collectedAtMs).toISOString();
  const ports = new Set(snap.listeners.map((l) => l.port)).size;
  const head = `${snap.host}: ${ports} listening port${ports === 1 ? '' : 's'} at ${when}`;
  return [head, ...table(rows)].join('\n');
}
