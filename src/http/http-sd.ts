import type { Discovery } from '../discovery/discovery.js';

/** One Prometheus target group (https://prometheus.io/docs/prometheus/latest/http_sd/). */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/**
 * Every named TCP service some host of the cluster runs, in Prometheus's
 * HTTP service discovery format: one target group per name and host, its
 * targets that host's addresses at the service's canonical port, labelled
 * `__meta_canonport_{service,port,node,version,scheme,readiness,name_source,names}`
 * so one `http_sd_configs` entry can keep, drop and name them by
 * relabelling: `name_source` is `registry`, `query` (a client asked for the
 * name) or `process` (the listener's unit or executable), so a rule can keep
 * only the registry's services, or only named ones.
 *
 * Left out: UDP listeners (Prometheus scrapes HTTP), and listeners no source
 * names (an unclaimed port: Prometheus's own `:9090`, a development server)
 * unless `unnamed` (`--sd-unnamed`), when they come with their canonical name
 * and `name_source` `none`. Every instance is listed whatever its readiness
 * (a not-ready or draining one is still worth scraping); `readiness` says
 * which. The full list each time, as http_sd wants; empty without cluster mode.
 */
export function targetGroups(discovery: Discovery, opts: { unnamed?: boolean | undefined } = {}): TargetGroup[] {
  const out: TargetGroup[] = [];
  for (const { service, port, hosts } of discovery.observedServices({ unnamed: opts.unnamed, protocol: 'tcp' })) {
    for (const { host: h, source } of hosts) {
      out.push({
        targets: h.addresses.map((a) => (a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`)),
        labels: {
          __meta_canonport_service: service,
          __meta_canonport_port: String(port),
          __meta_canonport_node: h.node,
          __meta_canonport_version: h.version,
          __meta_canonport_scheme: h.scheme,
          __meta_canonport_readiness: h.readiness?.state ?? 'ready',
          __meta_canonport_name_source: source,
          // Every name of the listener, comma-separated and wrapped in commas (`,cat,caterpillar,`), as consul_sd's tags: a regex `.*,cat,.*` matches one.
          __meta_canonport_names: `,${(h.names ?? []).map((n) => n.name).join(',')},`,
        },
      });
    }
  }
  return out;
}
