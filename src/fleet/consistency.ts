import { NO_HOST_FACTS } from '../registry/host-facts.js';
import { checkRegistry, CheckCodes } from '../registry/check.js';
import { Registry } from '../registry/registry.js';
import { decodePort, prefixOf } from '../scheme/index.js';
import { DIGEST_SHOWN, namesOf, type FleetFinding, type FleetHost, type FleetReport } from './fleet.js';

/**
 * What the hosts of a fleet disagree on besides versions: their registries.
 * Two hosts whose registries differ may answer one name with two ports, or
 * name one port as two services, and neither notices (issue 13, point 12).
 * Pure functions of the collected answers.
 */

/** Registry and port-naming findings, hosts in report order. */
export function checkConsistency(report: FleetReport): FleetFinding[] {
  return [...registryFindings(report.hosts), ...portNameFindings(report.hosts), ...collisionFindings(report.hosts)];
}


/**
 * One `collision` finding per port that names learned at run time (names
 * clients asked for, process names) give two services, with `check`'s rule
 * and words: `cat, caterpillar share port 13661 (all start with "cat")`.
 * Both names stay on the port (a name never moves one); the finding says a
 * fleet calls one listener two things. Registry names are left to `check`.
 */
export function collisionFindings(hosts: readonly FleetHost[]): FleetFinding[] {
  const byPort = new Map<number, Set<string>>();
  for (const h of hosts) {
    if (!h.reachable || !h.inventory) continue;
    for (const l of h.inventory.listeners) {
      const learned = namesOf(l).filter((n) => n.source !== 'registry');
      if (learned.length === 0) continue;
      const at = byPort.get(l.port) ?? new Set<string>();
      for (const n of learned) at.add(n.name);
      byPort.set(l.port, at);
    }
  }
  const findings: FleetFinding[] = [];
  for (const [port, names] of [...byPort].sort((a, b) => a[0] - b[0])) {
    if (names.size < 2) continue;
    // An empty registry: learned names are checked as `check NAME…` checks names the registry does not list.
    for (const f of checkRegistry(Registry.empty(), NO_HOST_FACTS, [...names].sort())) {
      if (f.code !== CheckCodes.COLLISION || f.port !== port) continue;
      findings.push({ kind: 'collision', host: '', service: '', expected: '', found: f.names, port, message: f.message });
    }
  }
  return findings;
}

/**
 * One `registry` finding per host whose registry digest differs from the
 * majority's. With no majority (a tie for the most hosts), every host with
 * a digest is named. Hosts that gave no digest (daemons older than the
 * field) take no part.
 */
export function registryFindings(hosts: readonly FleetHost[]): FleetFinding[] {
  const known = hosts.filter((h) => h.reachable && h.inventory?.registryDigest);
  const byDigest = new Map<string, number>();
  for (const h of known) byDigest.set(h.inventory!.registryDigest!, (byDigest.get(h.inventory!.registryDigest!) ?? 0) + 1);
  if (byDigest.size < 2) return [];
  const ranked = [...byDigest.entries()].sort((a, b) => b[1] - a[1]);
  const majority = ranked[0]![1] > ranked[1]![1] ? ranked[0]![0] : '';
  const short = (d: string) => d.slice(0, DIGEST_SHOWN);
  return known
    .filter((h) => h.inventory!.registryDigest !== majority)
    .map((h) => {
      const digest = h.inventory!.registryDigest!;
      const message = majority
        ? `${h.host}: registry ${short(digest)} differs from the majority's ${short(majority)} (${byDigest.get(majority)} of ${known.length} hosts)`
        : `${h.host}: registry ${short(digest)}; no registry is on a majority of the ${known.length} hosts`;
      return { kind: 'registry' as const, host: h.host, service: '', expected: majority, found: [digest], message };
    });
}

/**
 * One `port-names` finding per port that reachable hosts name as different
 * services. A host that knows only the base32 prefix of a port (`api` for
 * 12082: no registry entry claims it) agrees with any name that encodes to
 * that prefix (`apiserver`), not with a name pinned there (`alpha`). Ports
 * nobody names are left out.
 */
export function portNameFindings(hosts: readonly FleetHost[]): FleetFinding[] {
  /** port → naming (services joined) → hosts */
  const byPort = new Map<number, Map<string, Set<string>>>();
  for (const h of hosts) {
    if (!h.reachable || !h.inventory) continue;
    for (const l of h.inventory.listeners) {
      if (l.services.length === 0) continue;
      const naming = [...l.services].sort().join(',');
      let namings = byPort.get(l.port);
      if (!namings) byPort.set(l.port, (namings = new Map()));
      let on = namings.get(naming);
      if (!on) namings.set(naming, (on = new Set()));
      on.add(h.host);
    }
  }
  const findings: FleetFinding[] = [];
  for (const [port, namings] of [...byPort.entries()].sort((a, b) => a[0] - b[0])) {
    if (namings.size < 2 || !disagree(port, [...namings.keys()])) continue;
    const groups = [...namings.entries()]
      .map(([value, on]) => ({ value, hosts: hosts.map((h) => h.host).filter((h) => on.has(h)) }))
      .sort((a, b) => b.hosts.length - a.hosts.length || a.value.localeCompare(b.value));
    findings.push({
      kind: 'port-names',
      host: '',
      service: '',
      expected: '',
      found: groups.map((g) => g.value),
      port,
      groups,
      message: `${port}: ${groups.map((g) => `${g.value} on ${g.hosts.join(', ')}`).join('; ')}`,
    });
  }
  return findings;
}

/** Whether several namings of `port` name different services (a bare base32 prefix agrees with the names it encodes). */
function disagree(port: number, namings: readonly string[]): boolean {
  const prefix = decodePort(port);
  const named = namings.filter((n) => n !== prefix);
  if (named.length > 1) return true;
  if (named.length === 0) return false;
  // One naming beside the bare prefix: agreement if every name in it encodes to that prefix.
  return named[0]!.split(',').some((name) => prefixOf(name) !== prefix);
}
