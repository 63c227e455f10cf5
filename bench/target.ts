/** A target of an issue, checked against one bench run: what every section's report gives (report.ts, cluster-report.ts, idle-report.ts, latency-report.ts). */

export type TargetStatus = 'PASS' | 'MISS' | 'n/a';

export interface Target {
  id: string;
  description: string;
  status: TargetStatus;
  /** The figure compared, in the unit of the threshold; null when not measured. */
  value: number | null;
  threshold: number;
  detail: string;
}
