import { readFile } from 'node:fs/promises';

/**
 * What `check` needs to know about the host it runs on. Read once by
 * readHostFacts and passed in, so the checks stay pure and tests inject
 * any host they like.
 */
export interface HostFacts {
  /** The kernel's ephemeral (source) port range, inclusive; null when unknown. */
  ephemeralRange: readonly [number, number] | null;
  /** Ports excluded from the ephemeral range (ip_local_reserved_ports): safe to bind. */
  reservedPorts: ReadonlySet<number>;
  /** Port → service names listed in /etc/services (tcp or udp). */
  services: ReadonlyMap<number, readonly string[]>;
}

export const NO_HOST_FACTS: HostFacts = Object.freeze({
  ephemeralRange: null,
  reservedPorts: new Set<number>(),
  services: new Map<number, readonly string[]>(),
});

export interface HostFactPaths {
  portRange?: string;
  reservedPorts?: string;
  etcServices?: string;
}

const DEFAULT_PATHS: Required<HostFactPaths> = {
  portRange: '/proc/sys/net/ipv4/ip_local_port_range',
  reservedPorts: '/proc/sys/net/ipv4/ip_local_reserved_ports',
  etcServices: '/etc/services',
};

/**
 * Reads the host's facts. A missing file means "unknown" (no /proc on macOS,
 * no /etc/services in slim containers): the matching checks then find nothing.
 */
export async function readHostFacts(paths: HostFactPaths = {}): Promise<HostFacts> {
  const p = { ...DEFAULT_PATHS, ...paths };
  const [range, reserved, services] = await Promise.all([readOrNull(p.portRange), readOrNull(p.reservedPorts), readOrNull(p.etcServices)]);
  return {
    ephemeralRange: range === null ? null : parsePortRange(range),
    reservedPorts: reserved === null ? new Set() : parsePortList(reserved),
    services: services === null ? new Map() : parseEtcServices(services),
  };
}

/** `32768\t60999` → [32768, 60999]; null when the text is not two ordered ports. */
export function parsePortRange(text: string): [number, number] | null {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) return null;
  const lo = Number(m[1]);
  const hi = Number(m[2]);
  return lo <= hi && hi <= 65535 ? [lo, hi] : null;
}

/** The kernel's list syntax, `8080,9000-9010` → {8080, 9000…9010}; bad items are skipped. */
export function parsePortList(text: string): Set<number> {
  const out = new Set<number>();
  for (const item of text.split(',')) {
    const m = /^\s*(\d+)(?:-(\d+))?\s*$/.exec(item);
    if (!m) continue;
    const lo = Number(m[1]);
    const hi = Math.min(Number(m[2] ?? m[1]), 65535);
    for (let p = lo; p <= hi; p++) out.add(p);
  }
  return out;
}

/** `/etc/services` lines `name port/proto [aliases] # comment` → port → names (first name of each line). */
export function parseEtcServices(text: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [name, portProto] = line.split(/\s+/);
    const m = /^(\d+)\/(tcp|udp|sctp|ddp)$/i.exec(portProto ?? '');
    if (!name || !m) continue;
    const port = Number(m[1]);
    const names = out.get(port) ?? [];
    if (!names.includes(name)) names.push(name);
    out.set(port, names);
  }
  return out;
}

async function readOrNull(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return null;
  }
}
