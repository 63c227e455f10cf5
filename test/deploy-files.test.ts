import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as grpcXds from '@grpc/grpc-js-xds';
import { parseAllDocuments } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { formatHostPort, parseHostPort } from '../src/config/address.js';
import { buildConfig, configFromEnv, ENV_VARS, readResolvConf } from '../src/config/config.js';
import { publishedAddress } from '../src/inventory/namespaces.js';
import { parseRegistry } from '../src/registry/load.js';
import { Registry } from '../src/registry/registry.js';
import { runCli } from './helpers/cli.js';
import { PythonXdsClient, pollUntil, requirePythonGrpc, startBackend, whoAmI, type Backend } from './helpers/xds.js';
import { API, API_PORT, loopbackHost, startXdsDaemon, type XdsDaemon } from './helpers/xds-daemon.js';

/** Static checks of deploy/: every YAML file, the Kubernetes objects, the registry example, resolv.conf. */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const read = (rel: string) => readFileSync(join(DEPLOY, rel), 'utf8');

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : [p];
  });
}

type Obj = Record<string, unknown>;
const obj = (v: unknown, what: string): Obj => {
  expect(v, what).toBeTypeOf('object');
  expect(v, what).not.toBeNull();
  return v as Obj;
};
const list = (v: unknown, what: string): unknown[] => {
  expect(Array.isArray(v), `${what} is a list`).toBe(true);
  return v as unknown[];
};

/** Every document of a YAML file, failing on any parse error or warning. */
function yamlDocs(rel: string): Obj[] {
  const docs = parseAllDocuments(read(rel), { prettyErrors: true, uniqueKeys: true });
  if (!Array.isArray(docs)) throw new Error(`${rel}: not a YAML stream`);
  for (const d of docs) {
    expect(d.errors.map(String), `${rel} parses`).toEqual([]);
    expect(d.warnings.map(String), `${rel} has no warnings`).toEqual([]);
  }
  return docs.map((d) => d.toJS() as Obj).filter((d) => d !== null);
}

function k8sObjects(): Obj[] {
  return ['kubernetes/configmap.yaml', 'kubernetes/daemonset.yaml'].flatMap(yamlDocs);
}
const byKind = (kind: string): Obj[] => k8sObjects().filter((o) => o.kind === kind);

describe('deploy/ YAML', () => {
  it('every YAML file parses without errors or warnings', () => {
    const files = walk(DEPLOY).filter((f) => /\.ya?ml$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files) expect(yamlDocs(relative(DEPLOY, f)).length, f).toBeGreaterThan(0);
  });

  it('the registry example parses with the project parser and exercises every scheme', () => {
    const reg = parseRegistry(read('registry.example.yaml'), 'deploy/registry.example.yaml');
    expect(reg.zones).toContain('cluster-1.example.com');
    expect(new Set([...reg.services.values()].map((s) => s.scheme))).toEqual(new Set(['base32', 'pinned', 'versioned', 'block']));
    // The comments in the example state these ports; keep them true.
    expect(reg.lookup('api').port).toBe(12082);
    expect(reg.lookup('cat').port).toBe(13661);
    expect(reg.lookup('caterpillar').port).toBe(13700);
    expect(reg.lookup('users', 1).port).toBe(8101);
    expect(reg.lookup('users', 2).port).toBe(8102);
    expect(reg.lookup('splashpage-api').port).toBe(7001);
    expect(reg.lookup('splashpage-psql').port).toBe(7009);
    expect(reg.lookup('splashpage-redis').port).toBe(7008);
    // An example with a collision in it would teach the wrong thing.
    for (const a of reg.expanded.values()) expect(a.collidesWith, a.service).toEqual([]);
    // Every dependency names a service of the file.
    for (const s of reg.services.values()) for (const d of s.spec.dependsOn ?? []) expect(reg.services.has(d), `${s.name} → ${d}`).toBe(true);
  });
});

describe('deploy/kubernetes', () => {
  it('has apiVersion, kind and metadata.name on every object, in the canonport namespace', () => {
    const objects = k8sObjects();
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'DaemonSet', 'Namespace', 'ServiceAccount']);
    for (const o of objects) {
      expect(o.apiVersion, String(o.kind)).toMatch(/^(v1|apps\/v1)$/);
      const meta = obj(o.metadata, `${o.kind}.metadata`);
      expect(meta.name).toMatch(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/);
      if (o.kind !== 'Namespace') expect(meta.namespace, `${o.kind} namespace`).toBe('canonport');
    }
  });

  it('runs the DaemonSet on the host network, non-root, read-only, with resources', () => {
    const [ds] = byKind('DaemonSet');
    expect(ds!.apiVersion).toBe('apps/v1');
    const spec = obj(ds!.spec, 'spec');
    const selector = obj(obj(spec.selector, 'selector').matchLabels, 'matchLabels');
    const template = obj(spec.template, 'template');
    const labels = obj(obj(template.metadata, 'template.metadata').labels, 'labels');
    for (const [k, v] of Object.entries(selector)) expect(labels[k], `selector ${k} matches the template`).toBe(v);
    const pod = obj(template.spec, 'pod spec');
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe('ClusterFirstWithHostNet');
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10);
    const podSec = obj(pod.securityContext, 'pod securityContext');
    expect(podSec.runAsNonRoot).toBe(true);
    expect(podSec.runAsUser).toBeGreaterThan(0);
    const [c] = list(pod.containers, 'containers').map((x) => obj(x, 'container'));
    const sec = obj(c!.securityContext, 'container securityContext');
    expect(sec.readOnlyRootFilesystem).toBe(true);
    expect(sec.allowPrivilegeEscalation).toBe(false);
    expect(obj(sec.capabilities, 'capabilities').drop).toEqual(['ALL']);
    // Pods (issue 26): the node's PID namespace, and no capability added back (none is needed: see the pods test below).
    expect(pod.hostPID).toBe(true);
    expect(obj(sec.capabilities, 'capabilities').add).toBeUndefined();
    expect(sec.privileged).toBeUndefined();
    const res = obj(c!.resources, 'resources');
    expect(obj(res.requests, 'requests').memory).toBeDefined();
    expect(obj(res.limits, 'limits').memory).toBeDefined();
    // hostNetwork requires hostPort == containerPort.
    for (const p of list(c!.ports, 'ports').map((x) => obj(x, 'port'))) expect(p.hostPort, String(p.name)).toBe(p.containerPort);
  });

  it('probes /healthz (liveness) and /readyz (readiness) on the port the daemon serves HTTP on', () => {
    const [ds] = byKind('DaemonSet');
    const pod = obj(obj(obj(ds!.spec, 'spec').template, 'template').spec, 'pod');
    const c = obj(list(pod.containers, 'containers')[0], 'container');
    const ports = new Map(list(c.ports, 'ports').map((x) => [obj(x, 'port').name, obj(x, 'port').containerPort]));
    const env = new Map(list(c.env, 'env').map((x) => [obj(x, 'env').name as string, obj(x, 'env')]));
    const probe = (which: string) => obj(obj(c[which], which).httpGet, `${which}.httpGet`);
    expect(probe('livenessProbe').path).toBe('/healthz');
    expect(probe('readinessProbe').path).toBe('/readyz');
    for (const which of ['livenessProbe', 'readinessProbe']) {
      const port = probe(which).port;
      const number = typeof port === 'string' ? ports.get(port) : port;
      // The daemon's HTTP address comes from CANONPORT_HTTP; the probe must hit that port.
      const http = buildConfig({}, { http: expandEnv(String(env.get('CANONPORT_HTTP')?.value), { NODE_IP: '10.1.2.3' }) }, Registry.empty());
      expect(number, `${which} port`).toBe(http.http.port);
      // No probe host: the kubelet uses the pod IP, which with hostNetwork is the node IP the daemon binds.
      expect(probe(which).host).toBeUndefined();
      expect(http.http.host).toBe('10.1.2.3');
    }
  });

  it('gives the daemon settings that validate, for IPv4 and IPv6 node addresses', () => {
    const [ds] = byKind('DaemonSet');
    const pod = obj(obj(obj(ds!.spec, 'spec').template, 'template').spec, 'pod');
    const c = obj(list(pod.containers, 'containers')[0], 'container');
    const vars = list(c.env, 'env').map((x) => obj(x, 'env'));
    const nodeIp = vars.find((v) => v.name === 'NODE_IP');
    expect(obj(obj(nodeIp?.valueFrom, 'valueFrom').fieldRef, 'fieldRef').fieldPath).toBe('status.hostIP');
    for (const ip of ['10.1.2.3', 'fd00:1::3']) {
      const env: Record<string, string> = {};
      for (const v of vars) if (typeof v.value === 'string') env[v.name as string] = expandEnv(v.value, { NODE_IP: ip });
      const cfg = buildConfig({}, { dns: env.CANONPORT_DNS, grpc: env.CANONPORT_GRPC, http: env.CANONPORT_HTTP, logLevel: env.CANONPORT_LOG_LEVEL }, Registry.empty(), {
        resolvConf: '/nonexistent',
      });
      expect(cfg.dns).toEqual({ host: '127.0.0.1', port: 5300 });
      expect(cfg.grpc).toEqual({ host: ip, port: 13655 });
      expect(cfg.http).toEqual({ host: ip, port: 13656 });
    }
    // The registry path the container is told to read is where the ConfigMap is mounted.
    const args = list(c.args, 'args') as string[];
    const registryPath = args[args.indexOf('--registry') + 1]!;
    expect(args[0]).toBe('serve');
    const mounts = list(c.volumeMounts, 'volumeMounts').map((x) => obj(x, 'mount'));
    const regMount = mounts.find((m) => registryPath.startsWith(`${String(m.mountPath)}/`));
    expect(regMount, `a volume is mounted above ${registryPath}`).toBeDefined();
    expect(regMount!.readOnly).toBe(true);
  });

  it('mounts a ConfigMap that exists, whose registry.yaml parses with parseRegistry', () => {
    const [ds] = byKind('DaemonSet');
    const pod = obj(obj(obj(ds!.spec, 'spec').template, 'template').spec, 'pod');
    const c = obj(list(pod.containers, 'containers')[0], 'container');
    const args = list(c.args, 'args') as string[];
    const registryPath = args[args.indexOf('--registry') + 1]!;
    const mount = list(c.volumeMounts, 'volumeMounts')
      .map((x) => obj(x, 'mount'))
      .find((m) => registryPath.startsWith(`${String(m.mountPath)}/`))!;
    const volume = list(pod.volumes, 'volumes')
      .map((x) => obj(x, 'volume'))
      .find((v) => v.name === mount.name);
    const cmName = obj(volume?.configMap, 'volume.configMap').name;
    const cm = byKind('ConfigMap').find((o) => obj(o.metadata, 'metadata').name === cmName);
    expect(cm, `ConfigMap ${String(cmName)} is defined`).toBeDefined();
    const key = registryPath.slice(String(mount.mountPath).length + 1);
    const text = obj(cm!.data, 'data')[key];
    expect(text, `ConfigMap has key ${key}`).toBeTypeOf('string');
    const reg = parseRegistry(text as string, `configmap:${key}`);
    expect(reg.zones).toContain('cluster-1.example.com');
    expect(reg.lookup('caterpillar').port).toBe(13700);
    // A ConfigMap is only mountable from its own namespace.
    expect(obj(cm!.metadata, 'metadata').namespace).toBe(obj(ds!.metadata, 'metadata').namespace);
  });

  it('discovers pods: every namespace read, the pod CIDR its container network (the one gRPC lets in), pod names from a read-only /var/log/pods', () => {
    const [ds] = byKind('DaemonSet');
    const pod = obj(obj(obj(ds!.spec, 'spec').template, 'template').spec, 'pod');
    const c = obj(list(pod.containers, 'containers')[0], 'container');
    const env = Object.fromEntries(list(c.env, 'env').map((x) => obj(x, 'env')).filter((v) => typeof v.value === 'string').map((v) => [v.name, expandEnv(v.value as string, { NODE_IP: '10.1.2.3' })]));
    const cfg = buildConfig({}, { namespaces: env.CANONPORT_NAMESPACES, containerNetworks: env.CANONPORT_CONTAINER_NETWORKS, grpcAllow: env.CANONPORT_GRPC_ALLOW }, Registry.empty(), { resolvConf: '/nonexistent' });
    expect(cfg.namespaces).toBe('all');
    expect(cfg.containerNetworks.map((n) => n.text)).toEqual(['10.244.0.0/16']);
    // The pod network the daemon publishes is the one its gRPC lets in: pods resolve where they are found.
    expect(cfg.grpcAllow.map((n) => n.text)).toContain(cfg.containerNetworks[0]!.text);
    const mount = list(c.volumeMounts, 'volumeMounts').map((x) => obj(x, 'mount')).find((m) => m.mountPath === cfg.podDirectory);
    expect(mount?.readOnly).toBe(true);
    const volume = list(pod.volumes, 'volumes').map((x) => obj(x, 'volume')).find((v) => v.name === mount!.name);
    expect(obj(volume?.hostPath, 'hostPath').path).toBe('/var/log/pods');
  });

  it('names a service account that exists', () => {
    const [ds] = byKind('DaemonSet');
    const pod = obj(obj(obj(ds!.spec, 'spec').template, 'template').spec, 'pod');
    expect(byKind('ServiceAccount').map((o) => obj(o.metadata, 'metadata').name)).toContain(pod.serviceAccountName);
  });

  it('has commented cluster-mode lines that, uncommented, parse and give a cluster config: node name and address from the downward API, etcd TLS from a mounted Secret', () => {
    const text = read('kubernetes/daemonset.yaml');
    // The commented YAML (`# - name:`, `#   value:`), uncommented in place; prose comments stay.
    const uncommented = text.replace(/^(\s+)# (?=- |  )/gm, '$1');
    expect(uncommented, 'commented cluster lines').not.toBe(text);
    expect(text).not.toMatch(/^\s+- name: CANONPORT_CLUSTER$/m); // off as shipped
    const docs = parseAllDocuments(uncommented, { uniqueKeys: true });
    for (const d of docs) expect([...d.errors, ...d.warnings].map(String)).toEqual([]);
    const ds = docs.map((d) => d.toJS() as Obj).find((o) => o.kind === 'DaemonSet')!;
    const pod = obj(obj(obj(ds.spec, 'spec').template, 'template').spec, 'pod');
    const c = obj(list(pod.containers, 'containers')[0], 'container');
    const vars = list(c.env, 'env').map((x) => obj(x, 'env'));
    for (const v of vars) if (String(v.name).startsWith('CANONPORT_')) expect(ENV_VARS, String(v.name)).toContain(v.name);
    const field = (name: string) => obj(obj(vars.find((v) => v.name === name)?.valueFrom, `${name}.valueFrom`).fieldRef, 'fieldRef').fieldPath;
    expect(field('CANONPORT_NODE')).toBe('spec.nodeName');
    // The kubelet's view: downward-API fields, $(VAR) from variables above.
    const fields: Record<string, string> = { 'status.hostIP': '10.1.2.3', 'spec.nodeName': 'worker-3' };
    const env: Record<string, string> = {};
    for (const v of vars) {
      if (v.valueFrom !== undefined) env[v.name as string] = fields[String(field(v.name as string))]!;
      else env[v.name as string] = expandEnv(String(v.value), env);
    }
    const cfg = buildConfig({}, configFromEnv(env), Registry.empty(), { resolvConf: '/nonexistent' });
    expect(cfg.cluster).toMatch(/^etcd:\/\//);
    expect(cfg.node).toBe('worker-3');
    expect(cfg.advertise).toEqual(['10.1.2.3']);
    // The etcd TLS files sit in a read-only mount of a Secret volume.
    const mounts = list(c.volumeMounts, 'volumeMounts').map((x) => obj(x, 'mount'));
    // The state directory (lease id, last view) is the node's own, so a new pod of the DaemonSet finds it.
    expect(cfg.stateDir).toBe('/var/lib/canonport');
    const stateMount = mounts.find((m) => m.mountPath === cfg.stateDir);
    expect(stateMount?.readOnly, 'a writable mount at the state directory').not.toBe(true);
    const stateVolume = list(pod.volumes, 'volumes').map((x) => obj(x, 'volume')).find((v) => v.name === stateMount!.name);
    expect(obj(stateVolume?.hostPath, 'state volume hostPath').path).toBe(cfg.stateDir);
    for (const file of [cfg.clusterCa, cfg.clusterCert, cfg.clusterKey]) {
      expect(file).toBeTypeOf('string');
      const mount = mounts.find((m) => String(file).startsWith(`${String(m.mountPath)}/`));
      expect(mount, `a volume is mounted above ${file}`).toBeDefined();
      expect(mount!.readOnly).toBe(true);
      const volume = list(pod.volumes, 'volumes').map((x) => obj(x, 'volume')).find((v) => v.name === mount!.name);
      expect(obj(volume?.secret, 'volume.secret').secretName).toBeTypeOf('string');
    }
  });
});

describe('deploy/docker/compose.containers.yaml', () => {
  const services = () => obj(yamlDocs('docker/compose.containers.yaml')[0]!.services, 'services');
  const env = (svc: Obj) => obj(svc.environment, 'environment') as Record<string, string>;

  it('runs canonport in the host\'s network and PID namespace with no capability added, reading every namespace', () => {
    const cp = obj(services().canonport, 'canonport');
    expect(cp.network_mode).toBe('host');
    expect(cp.pid).toBe('host');
    expect(cp.cap_add).toBeUndefined();
    expect(cp.privileged).toBeUndefined();
    const e = env(cp);
    const cfg = buildConfig({}, { namespaces: e.CANONPORT_NAMESPACES, containerNetworks: e.CANONPORT_CONTAINER_NETWORKS }, Registry.empty(), { resolvConf: '/nonexistent' });
    expect(cfg.namespaces).toBe('all');
  });

  it('shows both containers: the routed one inside --container-network (published at its address), the -p one on the bridge (only its host port)', () => {
    const s = services();
    const e = env(obj(s.canonport, 'canonport'));
    const cfg = buildConfig({}, { containerNetworks: e.CANONPORT_CONTAINER_NETWORKS }, Registry.empty(), { resolvConf: '/nonexistent' });
    const routed = obj(obj(obj(s['api-routed'], 'api-routed').networks, 'networks').lan, 'lan').ipv4_address as string;
    expect(publishedAddress({ addresses: [routed] }, '0.0.0.0', cfg.containerNetworks)).toBe(routed);
    // The routed network's subnet is the one named: a macvlan network other hosts reach.
    const lan = obj(obj(yamlDocs('docker/compose.containers.yaml')[0]!.networks, 'networks').lan, 'lan');
    expect(lan.driver).toBe('macvlan');
    const subnet = obj(list(obj(lan.ipam, 'ipam').config, 'config')[0], 'ipam config').subnet as string;
    expect(cfg.containerNetworks.map((n) => n.text)).toContain(subnet);
    // The published one: Docker's default bridge (172.17.0.0/16, not named), its port published on the host.
    const published = obj(s['api-published'], 'api-published');
    expect(published.networks).toBeUndefined();
    expect(publishedAddress({ addresses: ['172.17.0.2'] }, '0.0.0.0', cfg.containerNetworks)).toBeUndefined();
    expect(list(published.ports, 'ports')).toEqual([`${API_PORT}:${API_PORT}`]);
  });
});

describe('deploy/kubernetes/xds-client.example.yaml', () => {
  const file = 'kubernetes/xds-client.example.yaml';
  const container = () => {
    const [deployment] = yamlDocs(file);
    expect(deployment!.kind).toBe('Deployment');
    const pod = obj(obj(obj(deployment!.spec, 'spec').template, 'template').spec, 'pod');
    return obj(list(pod.containers, 'containers')[0], 'container');
  };
  const daemonGrpcPort = (): number => {
    const [ds] = byKind('DaemonSet');
    const c = obj(list(obj(obj(obj(ds!.spec, 'spec').template, 'template').spec, 'pod').containers, 'containers')[0], 'container');
    const grpcPort = list(c.ports, 'ports').map((x) => obj(x, 'port')).find((p) => p.name === 'grpc')!;
    const listen = list(c.env, 'env').map((x) => obj(x, 'env')).find((v) => v.name === 'CANONPORT_GRPC')!;
    // The port pods dial on the node is the daemon's own gRPC port.
    expect(parseHostPort(expandEnv(String(listen.value), { NODE_IP: '10.1.2.3' }), 'CANONPORT_GRPC').port).toBe(grpcPort.hostPort);
    return grpcPort.hostPort as number;
  };

  /** The container's variables as the kubelet sets them: downward-API fields given, $(VAR) only from variables above. */
  function podEnv(fields: Record<string, string>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const v of list(container().env, 'env').map((x) => obj(x, 'env'))) {
      const name = v.name as string;
      if (v.valueFrom !== undefined) {
        const path = String(obj(obj(v.valueFrom, 'valueFrom').fieldRef, 'fieldRef').fieldPath);
        expect(fields[path], `downward API field ${path}`).toBeDefined();
        out[name] = fields[path]!;
      } else {
        const value = String(v.value);
        for (const m of value.matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g)) expect(out[m[1]!], `${name} uses $(${m[1]}) defined above it`).toBeDefined();
        out[name] = expandEnv(value, out);
      }
    }
    return out;
  }

  it('passes the bootstrap `canonport xds-bootstrap` prints, naming the node\'s daemon', async () => {
    const port = daemonGrpcPort();
    const env = podEnv({ 'status.hostIP': '10.1.2.3', 'metadata.name': 'web-7f9c', 'metadata.namespace': 'shop' });
    expect(env.GRPC_XDS_BOOTSTRAP, 'the file variable would win over the inline one').toBeUndefined();
    const cli = await runCli(['xds-bootstrap', '--server', `10.1.2.3:${port}`, '--node-id', 'shop/web-7f9c']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(env.GRPC_XDS_BOOTSTRAP_CONFIG!)).toEqual(JSON.parse(cli.stdout));
    // The IPv6 form the comment gives is what the CLI prints for an IPv6 node.
    expect(read(file)).toContain(`"[$(NODE_IP)]:${port}"`);
    const v6 = await runCli(['xds-bootstrap', '--server', `[fd00:1::3]:${port}`]);
    expect(JSON.parse(v6.stdout).xds_servers[0].server_uri).toBe(`[fd00:1::3]:${port}`);
  });

  it('is what docs/xds.md shows', () => {
    const page = readFileSync(join(ROOT, 'docs/xds.md'), 'utf8');
    const block = /```yaml\n(env:[\s\S]*?)```/.exec(page)?.[1];
    expect(block, 'a ```yaml block starting with env: in docs/xds.md').toBeDefined();
    const shown = parseAllDocuments(block!)[0]!.toJS() as { env: unknown[] };
    expect(shown.env).toEqual(container().env);
  });

  describe('with a real daemon on "the node" (loopback)', () => {
    const daemons: XdsDaemon[] = [];
    const backends: Backend[] = [];
    const pythons: PythonXdsClient[] = [];
    let node: grpc.Client | undefined;
    afterAll(async () => {
      for (const p of pythons) p.close();
      node?.close();
      for (const b of backends) b.stop();
      for (const d of daemons) await d.close();
    });

    /** The pod's GRPC_XDS_BOOTSTRAP_CONFIG on a node at `nodeIp`, the port swapped for the test daemon's ephemeral one. */
    function inlineFor(nodeIp: string, daemonPort: number, ipv6 = false): string {
      const env = podEnv({ 'status.hostIP': nodeIp, 'metadata.name': 'web-7f9c', 'metadata.namespace': 'shop' });
      let text = env.GRPC_XDS_BOOTSTRAP_CONFIG!.replace(`"${nodeIp}:${daemonGrpcPort()}"`, `"${nodeIp}:${daemonPort}"`);
      // The comment's IPv6 form.
      if (ipv6) text = text.replace(`"${nodeIp}:`, `"[${nodeIp}]:`);
      expect(JSON.parse(text).xds_servers[0].server_uri).toBe(ipv6 ? `[${nodeIp}]:${daemonPort}` : `${nodeIp}:${daemonPort}`);
      return text;
    }

    async function pythonReaches(inline: string, backend: Backend): Promise<void> {
      const python = new PythonXdsClient(`xds:///${API}`, null, { GRPC_XDS_BOOTSTRAP_CONFIG: inline });
      pythons.push(python);
      const r = await pollUntil((n) => python.calls(n), (t) => t[backend.id] === 5, 20_000, 5);
      expect(r.ok, `${JSON.stringify(r.tally)} ${python.stderr.slice(-5).join('\n')}`).toBe(true);
    }

    it('lets stock Python and Node clients reach api with nothing but that environment (IPv4 node)', async () => {
      requirePythonGrpc();
      const host = loopbackHost(8);
      const cp = await startXdsDaemon({ hosts: { [API]: [host] } });
      daemons.push(cp);
      const backend = await startBackend(host, API_PORT);
      backends.push(backend);
      const inline = inlineFor('127.0.0.1', cp.daemon.addresses.grpc.port);
      await pythonReaches(inline, backend);

      delete process.env.GRPC_XDS_BOOTSTRAP;
      process.env.GRPC_XDS_BOOTSTRAP_CONFIG = inline;
      grpcXds.register();
      node = new grpc.Client(`xds:///${API}`, grpc.credentials.createInsecure());
      const js = await pollUntil(
        async (n) => {
          const tally: Record<string, number> = {};
          for (let i = 0; i < n; i++) {
            const r = await whoAmI(node!, 2000);
            const k = r.id ?? `error:${r.error}`;
            tally[k] = (tally[k] ?? 0) + 1;
          }
          return tally;
        },
        (t) => t[backend.id] === 5,
        20_000,
        5,
      );
      expect(js.ok, JSON.stringify(js.tally)).toBe(true);
    });

    it('works with the bracketed form on an IPv6 node (stock Python client)', async () => {
      requirePythonGrpc();
      const host = loopbackHost(9);
      const cp = await startXdsDaemon({ hosts: { [API]: [host] } }, { grpc: '[::1]:0' });
      daemons.push(cp);
      const backend = await startBackend(host, API_PORT);
      backends.push(backend);
      await pythonReaches(inlineFor('::1', cp.daemon.addresses.grpc.port, true), backend);
    });
  });
});

describe('deploy/resolv.conf.example', () => {
  const text = read('resolv.conf.example');
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));

  it('lists canonport (127.0.0.1, port 53 implied) first and a fallback after it', () => {
    const servers = readResolvConf(join(DEPLOY, 'resolv.conf.example'));
    expect(servers[0]).toBe('127.0.0.1:53');
    expect(servers.length).toBeGreaterThanOrEqual(2);
    expect(servers.slice(1).every((s) => !s.startsWith('127.'))).toBe(true);
    // resolv.conf has no port syntax: a nameserver line with a port would be ignored by glibc.
    for (const l of lines.filter((l) => l.startsWith('nameserver'))) expect(l).toMatch(/^nameserver\s+[0-9a-f.:]+$/);
    expect(text).toMatch(/port 53/);
  });

  it('sets short timeouts and few attempts so the fallback takes over quickly', () => {
    const options = lines.filter((l) => l.startsWith('options')).flatMap((l) => l.split(/\s+/).slice(1));
    expect(options).toContain('timeout:1');
    expect(options).toContain('attempts:2');
    // glibc honours at most 3 nameservers.
    expect(lines.filter((l) => l.startsWith('nameserver')).length).toBeLessThanOrEqual(3);
  });

  it('lets a daemon reading it forward to the fallback, not to itself', () => {
    const cfg = buildConfig({ dns: '127.0.0.1:53' }, {}, Registry.empty(), { resolvConf: join(DEPLOY, 'resolv.conf.example') });
    expect(cfg.upstreams.map(formatHostPort)).toEqual(readResolvConf(join(DEPLOY, 'resolv.conf.example')).slice(1));
    expect(cfg.upstreams.length).toBeGreaterThan(0);
  });
});

/** Kubernetes' $(VAR) expansion in env values. */
function expandEnv(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, k: string) => vars[k] ?? m);
}

describe('the example registries work where they are copied', () => {
  it('name no upstream of their own, so a copied file forwards to the host resolv.conf resolvers, not to an address that may not exist there', async () => {
    const { loadRegistryFile } = await import('../src/registry/load.js');
    for (const file of ['deploy/registry.example.yaml', 'test/fixtures/registry/example.yaml']) {
      const r = await loadRegistryFile(file);
      expect(r.settings.upstreams, file).toBeUndefined();
    }
  });
});

describe('deploy/kubernetes/drain-prestop.example.yaml', () => {
  it('drains the service through the node\'s daemon before the app gets SIGTERM, with room in the grace period', async () => {
    const [deployment] = yamlDocs('kubernetes/drain-prestop.example.yaml');
    const pod = obj(obj(obj(deployment!.spec, 'spec').template, 'template').spec, 'pod');
    // Observed on the node: its sockets are the node's, and its Admin calls come from the node's address.
    expect(pod.hostNetwork).toBe(true);
    const containers = list(pod.containers, 'containers').map((x) => obj(x, 'container'));
    const sidecar = containers.find((c) => c.name === 'canonport-drain')!;
    const app = containers.find((c) => c.name !== 'canonport-drain')!;
    const hook = list(obj(obj(obj(sidecar.lifecycle, 'lifecycle').preStop, 'preStop').exec, 'exec').command, 'command').map(String);
    expect(hook.slice(0, 2)).toEqual(['node', '/opt/canonport/bin/canonport.js']);
    const args = hook.slice(2);
    expect(args.slice(0, 3)).toEqual(['drain', 'api', '--wait']);
    // The app's port is the service's canonical port: what the drain names is what the daemon observes.
    const appPort = obj(list(app.ports, 'ports')[0], 'port').containerPort as number;
    expect(parseRegistry('', 'empty.yaml').lookup('api').port).toBe(appPort);
    // The daemon it calls: the DaemonSet's gRPC port on the node, from the environment (hooks get no $(VAR) expansion).
    const env = list(sidecar.env, 'env').map((x) => obj(x, 'env'));
    const grpcEnv = env.find((v) => v.name === 'CANONPORT_GRPC')!;
    expect(parseHostPort(String(grpcEnv.value).replace('$(NODE_IP)', '10.1.2.3'), 'CANONPORT_GRPC')).toEqual({ host: '10.1.2.3', port: 13655 });
    // The app keeps serving meanwhile, and the grace period holds the drain's bound and the app's wait.
    const sleep = list(obj(obj(obj(app.lifecycle, 'lifecycle').preStop, 'preStop').exec, 'exec').command, 'command').map(String).join(' ');
    const sleepSec = Number(/sleep (\d+)/.exec(sleep)![1]);
    const timeoutMs = Number(args[args.indexOf('--timeout') + 1]);
    expect(sleepSec * 1000).toBeGreaterThan(timeoutMs);
    expect(pod.terminationGracePeriodSeconds as number).toBeGreaterThan(sleepSec);
    // The hook's arguments are a command line the CLI takes: against no daemon, unreachable, not a usage error.
    const run = await runCli([...args, '--daemon', '127.0.0.1:9']);
    expect(run.code, run.stderr).toBe(1);
  });
});
