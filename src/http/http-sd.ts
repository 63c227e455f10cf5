import { namesOfHost, type Discovery } from '../discovery/discovery.js';

/** One Prometheus target group (https://prometheus.io/docs/prometheus/latest/http_sd/). */
export interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}

/**
 * Every named TCP service some host of the cluster runs, in Prometheus's
 * HTTP service discovery format: one target group per name and instance (a
 * host's own, or a container's or pod's on it: `namespace`, `container_id`,
 * `pod`, `pod_namespace` say which), its
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
 * which. Empty without cluster mode; served a page at a time (targetGroupsPage).
 */
function* eachTargetGroup(discovery: Discovery, opts: TargetOptions): Generator<TargetGroup> {
  for (const { service, port, hosts } of discovery.eachObservedService({ unnamed: opts.unnamed, protocol: 'tcp' })) {
    for (const { host: h, source } of hosts) {
      yield {
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
          __meta_canonport_name_source: source,
          // Every name of the listener, comma-separated and wrapped in commas (`,cat,caterpillar,`), as consul_sd's tags: a regex `.*,cat,.*` matches one.
          __meta_canonport_names: `,${namesOfHost(h).map((n) => n.name).join(',')},`,
        },
      };
    }
  }
}

/** `unnamed`: list listeners no source names too (`--sd-unnamed`, `?unnamed=true`). */
export interface TargetOptions {
  unnamed?: boolean | undefined;
}

/** One page of the target groups, as JSON text, and how many there are in all. */
export interface TargetPage {
  /** The page's groups as a JSON array. */
  json: string;
  /** Groups in this page. */
  groups: number;
  /** Groups in the whole list, and the pages they make (at least 1). */
  total: number;
  pages: number;
}

/** Groups walked between two turns of the event loop. */
const GROUPS_PER_TURN = 2000;

/**
 * Page `page` (1-based) of the target groups, `perPage` to a page, built
 * a slice at a time: `pause` is awaited every GROUPS_PER_TURN groups, so
 * a view of tens of thousands of listeners is never one long stall of the
 * event loop, and the reply is at most `perPage` groups (issue 21, finding
 * 4: one node's 5,000 listeners made a 302 MB reply and an 8.7 s stall).
 * The whole list is walked to count it (memory only, no I/O); only the
 * page is kept. A page past the last is empty.
 */
export async function targetGroupsPage(discovery: Discovery, page: number, perPage: number, pause: () => Promise<void> | undefined, opts: TargetOptions = {}): Promise<TargetPage> {
  const first = (page - 1) * perPage;
  const parts: string[] = [];
  let total = 0;
  for (const group of eachTargetGroup(discovery, opts)) {
    if (total >= first && total < first + perPage) parts.push(JSON.stringify(group));
    total++;
    if (total % GROUPS_PER_TURN === 0) await pause();
  }
  return { json: `[${parts.join(',')}]`, groups: parts.length, total, pages: Math.max(1, Math.ceil(total / perPage)) };
}
