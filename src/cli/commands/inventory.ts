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
 * One row per instance and protocol, sorted by port, TCP first: a port of
 * the host's own namespace (its addresses joined), or of a container's or
 * pod's (NAMESPACE: its label and container or pod; ADDRESSES: where it
 * listens inside, and the address it is published at, if any; a host port
 * that only forwards to a published container listener says so); a UDP row's
 * port reads `15761/udp`. SERVICE is what the port answers (its canonical
 * names); NAME what people know it by and where that comes from
 * (`db (query)`), `-` for a claimed listener nothing names
 * (core/naming.ts). Unclaimed ports show "-" in both. A last line says
 * which namespaces were observed, and why only the daemon's own when so.
 */
export function formatInventory(snap: InventorySnapshot): string {
  const byInstance = new Map<string, InventoryListener[]>();
  for (const l of snap.listeners) {
    const key = `${l.port}/${protocolOf(l.family)}/${l.namespace?.label ?? ''}`;
    const list = byInstance.get(key);
    if (list) list.push(l);
    else byInstance.set(key, [l]);
  }
  // Cluster mode: whether each claimed listener serves (READY: ready, not-ready, draining; "-" before its first verdict).
  const probed = snap.listeners.some((l) => l.readiness);
  const named = snap.listeners.some((l) => l.names !== undefined);
  const spaced = snap.listeners.some((l) => l.namespace);
  const rows: string[][] = [
    ['PORT', 'SERVICE', ...(named ? ['NAME'] : []), 'VERSION', 'FROM', 'SCHEME', ...(probed ? ['READY'] : []), ...(spaced ? ['NAMESPACE'] : []), 'ADDRESSES'],
  ];
  const tcpFirst = (l: InventoryListener) => (protocolOf(l.family) === 'tcp' ? 0 : 1);
  const ordered = [...byInstance.values()].sort(
    (a, b) => a[0]!.port - b[0]!.port || tcpFirst(a[0]!) - tcpFirst(b[0]!) || (a[0]!.namespace?.label ?? '').localeCompare(b[0]!.namespace?.label ?? ''),
  );
  for (const ls of ordered) {
    const l = ls[0]!;
    const port = protocolOf(l.family) === 'udp' ? `${l.port}/udp` : String(l.port);
    const name = named ? [l.names && l.names.length > 0 ? l.names.map((n) => `${n.name} (${n.source})`).join(', ') : '-'] : [];
    const ready = probed ? [l.readiness ? `${l.readiness.state} (${l.readiness.by})` : '-'] : [];
    const where = spaced ? [namespaceText(l)] : [];
    const bound = ls.map((x) => x.address).join(', ');
    const addresses = l.namespace
      ? `${bound} in ${l.namespace.addresses.join(', ') || 'no address'}; ${l.namespace.published ? `published at ${l.namespace.published}` : 'not published'}`
      : l.forwardedTo
        ? `${bound}; forwards to ${l.forwardedTo.address}:${l.forwardedTo.port} in ${l.forwardedTo.namespace}, published there instead`
        : bound;
    rows.push([port, l.services.join(',') || '-', ...name, l.version, l.versionSource, l.scheme, ...ready, ...where, addresses]);
  }
  const when = new Date(snap.collectedAtMs).toISOString();
  const ports = new Set(snap.listeners.map((l) => l.port)).size;
  const head = `${snap.host}: ${ports} listening port${ports === 1 ? '' : 's'} at ${when}`;
  return [head, ...table(rows), ...(snap.namespaces ? [namespacesLine(snap.namespaces)] : [])].join('\n');
}

/** `host`, or a namespace's label with its container or pod. */
function namespaceText(l: InventoryListener): string {
  const ns = l.namespace;
  if (!ns) return 'host';
  const c = ns.container;
  if (c?.pod) return `${ns.label} (pod ${c.podNamespace ?? '?'}/${c.pod})`;
  if (c) return `${ns.label} (${c.runtime || 'container'} ${c.id.slice(0, 12)})`;
  return ns.label;
}

/** What the inventory observes, said plainly. */
export function namespacesLine(n: NonNullable<InventorySnapshot['namespaces']>): string {
  if (n.observing === 'all') return `observing every network namespace on this host: ${n.count} besides the host's own (containers, pods)`;
  if (n.mode === 'own' && !n.code) return 'observing only the host\'s own network namespace (--namespaces own)';
  return `observing only this daemon's own network namespace: ${n.reason ?? 'unknown reason'}${n.code ? ` (${n.code})` : ''}`;
}
