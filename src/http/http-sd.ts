import type { Discovery } from '../discovery/discovery.js';

/** One Prometheus target group (https://prometheus.io/docs/prometheus/latest/http_sd/). */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/**
 * Every service some host of the cluster runs, in Prometheus's HTTP
 * service discovery format: one target group per service and instance (a
 * host's own, or a container's or pod's on it: `namespace`, `container_id`,
 * `pod`, `pod_namespace` say which), its
 * targets that host's addresses at the service's canonical port, labelled
 * `__meta_canonport_{service,port,node,version,scheme,readiness}` so one
 * `http_sd_configs` entry can keep, drop and name them by relabelling.
 * Every instance is listed whatever its readiness (a not-ready or draining
 * one is still worth scraping); `readiness` says which it is.
 * The full list each time, as http_sd wants; empty without cluster mode.
 */
export function targetGroups(discovery: Discovery): TargetGroup[] {
  const out: TargetGroup[] = [];
  for (const { service, port, hosts } of discovery.observedServices()) {
    for (const h of hosts) {
      out.push({
        targets: h.addresses.map((a) => (a.includes(':') ? `[${a}]:${port}` : `${a}:${port}`)),
        labels: {
          __meta_canonport_service: service,
          __meta_canonport_port: String(port),
          __meta_canonport_node: h.node,
          __meta_canonport_version: h.version,
          __meta_canonport_scheme: h.scheme,
          __meta_canonport_readiness: h.readiness?.state ?? 'ready',
          // A container's or pod's instance (issue 26): one group each, so two replicas on one node are two targets.
          ...(h.namespace && h.namespace !== 'host' ? { __meta_canonport_namespace: h.namespace } : {}),
          ...(h.container ? { __meta_canonport_container_id: h.container.id } : {}),
          ...(h.container?.pod ? { __meta_canonport_pod: h.container.pod } : {}),
          ...(h.container?.podNamespace ? { __meta_canonport_pod_namespace: h.container.podNamespace } : {}),
        },
      });
    }
  }
  return out;
}
