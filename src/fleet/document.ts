import { checkConsistency } from './consistency.js';
import { checkExpectations, type Expectation, type FleetFinding, type FleetHost, type FleetReport, type FleetService, type FleetSource, type FleetUnnamed } from './fleet.js';

/**
 * The fleet as data: what `canonport fleet --json` prints and what a
 * daemon's fleet page (`/ui/api/fleet`) serves, built here for both, so the
 * page shows exactly what the command prints.
 */
export interface FleetDocument {
  source?: FleetSource | undefined;
  hosts: FleetHost[];
  services: FleetService[];
  /** Ports hosts listen on that no source names, apart from the services (core/naming.ts). */
  unnamed: FleetUnnamed[];
  /** Unmet expectations (`--expect`), then what the hosts disagree on (registries, port names). */
  findings: FleetFinding[];
}

export function fleetDocument(report: FleetReport, expectations: readonly Expectation[] = []): FleetDocument {
  return {
    source: report.source,
    hosts: report.hosts,
    services: report.services,
    unnamed: report.unnamed ?? [],
    findings: [...checkExpectations(report, expectations), ...checkConsistency(report)],
  };
}
