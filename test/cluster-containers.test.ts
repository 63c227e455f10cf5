
import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerCanonResolver } from '../src/grpc/canon-resolver.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { base32Port } from '../src/scheme/index.js';
import { until } from './helpers/cluster.js';
import { addressLines, GRPC_PORT, srvTargets, startBackend, startLab, startNode, untilDig, ZONE, type Lab, type NodeDaemon } from './helpers/cluster-lab.js';
import type { Container, Host } from './helpers/netns.js';
import { REPO, startServe, type ServeProcess } from './helpers/serve-process.js';
import { bootstrapFile, PythonXdsClient, requirePythonGrpc } from './helpers/xds.js';
import { requireTool } from './helpers/tools.js';

/**
 * Issue 26 end to end: two lab hosts, each a node as a DaemonSet with
 * `hostPID` sees it (a PID namespace of its own, netns.ts `pid: true`),
 * each with a real `canonport serve --cluster` publishing into a real etcd
 * and "containers" in it: network namespaces whose processes are the
 * host's, on a routed pod network (every host and the root namespace route
 * each host's pod subnet through it) or on a bridge-private one (Docker's
 * default bridge). Clients as a user has them: dig, Node's resolver
 * (c-ares), glibc's getaddrinfo (getent), grpc-js on `canon:` and Debian's
 * Python grpcio on `xds:///`,
 * all in the root namespace, asking host B's daemon about containers on
 * host A.
 */

const execFileAsync = promisify(execFile);
const API = base32Port('api');
const DB = base32Port('db');
const CAB = base32Port('cab');
const POD_UIDS = ['0b1f6a52-6a0e-4a55-9d55-3a1c1c000001', '0b1f6a52-6a0e-4a55-9d55-3a1c1c000002'];
const hex = (n: number) => n.toString(16).padStart(2, '0').repeat(32);

let lab: Lab;
let hostA: Host;
let hostB: Host;
let a: NodeDaemon;
let b: NodeDaemon;
let podDir: string;
const stops: (() => Promise<void>)[] = [];

beforeAll(async () => {
  requirePythonGrpc();
  requireTool('curl', 'curl');
  lab = await startLab({ hosts: 2, pid: true });
  [hostA, hostB] = lab.hosts as [Host, Host];
  // The kubelet's pod log directory: `<namespace>_<name>_<uid>` per pod (what the daemon reads pod names from).
  podDir = mkdtempSync(join(tmpdir(), 'cp-pods-'));
  mkdirSync(join(podDir, `shop_cab-7d9f-1_${POD_UIDS[0]}`));
  mkdirSync(join(podDir, `shop_cab-7d9f-2_${POD_UIDS[1]}`));
  const networks = lab.hosts.flatMap((h) => ['--container-network', `${h.podSubnet}.0/24`]);
  const args = ['--namespaces', 'all', ...networks, '--pod-directory', podDir];
  [a, b] = await Promise.all([startNode(lab, hostA, 'host-a', args), startNode(lab, hostB, 'host-b', args)]);
}, 120_000);

afterAll(async () => {
  for (const s of stops.reverse()) await s().catch(() => undefined);
  await lab?.stop();
  if (podDir) rmSync(podDir, { recursive: true, force: true });
});

async function container(host: Host, opts: Parameters<NonNullable<Host['addContainer']>>[0] = {}): Promise<Container> {
  const c = await host.addContainer!(opts);
  stops.push(() => c.stop());
  return c;
}

/**
 * `name`'s IPv4 addresses as glibc's getaddrinfo gives them (`getent ahostsv4`), asking `server` on port 53: in a
 * mount namespace of its own whose /etc/resolv.conf names it (the host's is untouched).
 */
async function glibcAddresses(server: string, name: string): Promise<string[]> {
  requireTool('getent', 'libc-bin');
  requireTool('unshare', 'util-linux');
  const dir = mkdtempSync(join(tmpdir(), 'cp-resolv-'));
  try {
    writeFileSync(join(dir, 'resolv.conf'), `nameserver ${server}\noptions attempts:2 timeout:2\n`);
    const { stdout } = await execFileAsync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind "$1" /etc/resolv.conf && exec getent ahostsv4 "$2"`, 'sh', join(dir, 'resolv.conf'), name]);
    return [...new Set(stdout.split('\n').filter((l) => l.trim()).map((l) => l.split(/\s+/)[0]!))];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A service in a container (cluster-backend.mjs through the container's spawn). */
function serveIn(c: Container, mode: 'grpc' | 'http', port: number, name: string) {
  return startBackend({ ns: c.ns, spawn: c.spawn } as unknown as Host, mode, port, name);
}

describe('containers and pods on a node (issue 26)', () => {
  it('a container with a routed address is found by another host: SRV, A, gRPC endpoints, canon: and xDS all reach it', async () => {
    const c = await container(hostA);
    await serveIn(c, 'grpc', API, 'api-in-container');
    // SRV at host B: one instance, aimed at the container's own name, whose A record is the container's address.
    const srv = await untilDig(b, ['SRV', `api.${ZONE}`], (r) => (srvTargets(r).length === 1 && srvTargets(r)[0]!.includes('.host-a.node.') ? r : undefined));
    const target = srvTargets(srv)[0]!.split(' ')[1]!;
    expect(target).toMatch(new RegExp(`^[a-z0-9-]+\\.host-a\\.node\\.${ZONE.replace('.', '\\.')}\\.$`));
    expect(addressLines(srv.additional)).toEqual([`${target} ${c.address}`]);
    const direct = await b.dig(['A', target]);
    expect(direct.answer.map((l) => l[4])).toEqual([c.address]);
    // A of the service name: the container, not host A.
    const aRecords = await b.dig(['A', `api.${ZONE}`]);
    expect(aRecords.answer.map((l) => l[4])).toEqual([c.address]);
    // Node's resolver (c-ares) asking host B's daemon, and glibc (getaddrinfo, as every program resolves) through a
    // resolv.conf naming it: the container's address, as a user's programs get it.
    const resolver = new Resolver();
    resolver.setServers([`${b.dns.host}:${b.dns.port}`]);
    expect(await resolver.resolve4(`api.${ZONE}`)).toEqual([c.address]);
    expect(await glibcAddresses(b.dns.host, `api.${ZONE}`)).toEqual([c.address]);

    // gRPC Resolve at host B: the endpoint carries the container's address and its namespace.
    const daemon = createCanonportClient(`${b.grpc.host}:${GRPC_PORT}`);
    stops.push(async () => daemon.close());
    const res = await daemon.resolve(`api.${ZONE}`);
    expect(res.endpoints).toHaveLength(1);
    expect(res.endpoints[0]).toMatchObject({ address: c.address, port: API, node: 'host-a', source: 'observed' });
    expect((res.endpoints[0] as { namespace?: string }).namespace).toBe(target.split('.')[0]);

    // grpc-js on canon:, through host B's daemon, reaches the service in the container.
    registerCanonResolver({ grpc, daemon: `${b.grpc.host}:${GRPC_PORT}` });
    const Who = grpc.makeGenericClientConstructor(
      { Name: { path: '/canonport.test.Who/Name', requestStream: false, responseStream: false, requestSerialize: (x: Buffer) => x, requestDeserialize: (x: Buffer) => x, responseSerialize: (x: Buffer) => x, responseDeserialize: (x: Buffer) => x } },
      'Who',
    );
    const client = new Who(`canon:///api.${ZONE}`, grpc.credentials.createInsecure());
    try {
      const answer = await new Promise<string>((resolve, reject) =>
        (client as unknown as { Name: (r: Buffer, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v?: Buffer) => void) => void }).Name(Buffer.alloc(0), { deadline: Date.now() + 10_000 }, (e, v) =>
          e ? reject(e) : resolve(v!.toString()),
        ),
      );
      expect(answer).toBe('api-in-container');
    } finally {
      client.close();
    }

    // Debian's grpcio on xds:///, its control plane host B's daemon: the ClusterLoadAssignment holds the container.
    const py = new PythonXdsClient(`xds:///api.${ZONE}`, await bootstrapFile(`${b.grpc.host}:${GRPC_PORT}`));
    try {
      const tally = await until('the Python xDS client to reach the container', async () => {
        const t = await py.calls(3, 3000);
        return t['api-in-container'] === 3 ? t : undefined;
      });
      expect(tally).toEqual({ 'api-in-container': 3 });
    } finally {
      py.close();
    }
  });

  it('a container outside every --container-network is not published; the port its host publishes for it is, once', async () => {
    const c = await container(hostA, { network: 'bridge' });
    await c.listen(DB);
    // Host A's own inventory shows it, not published; nothing of it reaches etcd.
    const inventory = createCanonportClient(`${a.grpc.host}:${GRPC_PORT}`);
    stops.push(async () => inventory.close());
    const seen = await until('host A to list the bridge container', async () => (await inventory.inventory()).listeners.find((l) => l.port === DB && l.namespace));
    expect(seen.namespace!.addresses).toEqual([c.address]);
    expect(seen.namespace!.published).toBeUndefined();
    const daemon = createCanonportClient(`${b.grpc.host}:${GRPC_PORT}`);
    stops.push(async () => daemon.close());
    const before = await daemon.resolve(`db.${ZONE}`).catch((e: Error) => e);
    expect(before instanceof Error ? [] : before.endpoints.filter((e) => e.source === 'observed')).toEqual([]);

    // `-p DB:DB`: docker-proxy on the host, forwarding to the container's bridge address (not published: the host's port is).
    await c.publish(DB);
    const found = await until('host B to hand out the published port', async () => {
      const r = await daemon.resolve(`db.${ZONE}`).catch(() => null);
      const observed = r?.endpoints.filter((e) => e.source === 'observed') ?? [];
      return observed.length > 0 ? observed : undefined;
    });
    // Once: host A's address, never the bridge-private one.
    expect(found.map((e) => `${e.address}:${e.port}`)).toEqual([`${hostA.address}:${DB}`]);
    const srv = await b.dig(['SRV', `db.${ZONE}`]);
    expect(srvTargets(srv)).toEqual([`${DB} host-a.node.${ZONE}.`]);
  });

  it('a container on a --container-network also published with -p is one service: its own address; the host port docker-proxy holds is listed, not published', async () => {
    const WEB = base32Port('web');
    const c = await container(hostA);
    await c.listen(WEB);
    const daemon = createCanonportClient(`${b.grpc.host}:${GRPC_PORT}`);
    const inventory = createCanonportClient(`${a.grpc.host}:${GRPC_PORT}`);
    stops.push(async () => daemon.close(), async () => inventory.close());
    const observed = async (name: string) => ((await daemon.resolve(`${name}.${ZONE}`).catch(() => null))?.endpoints ?? []).filter((e) => e.source === 'observed');
    await until('host B to hand out the container', async () => ((await observed('web')).length > 0 ? true : undefined));

    // `docker run -p WEB:WEB`: docker-proxy on host A, forwarding the host's port to the container's own address.
    await c.publish(WEB);
    const forwarder = await until('host A to list the host port as a forwarder to the container', async () =>
      (await inventory.inventory()).listeners.find((l) => l.port === WEB && !l.namespace && l.forwardedTo),
    );
    expect(forwarder.forwardedTo).toMatchObject({ address: c.address, port: WEB });
    // What host A publishes after that scan reaches host B: a later change (another container's listener) is seen there.
    const later = await container(hostA);
    await later.listen(base32Port('cue'));
    await until('host B to see the later change', async () => ((await observed('cue')).length > 0 ? true : undefined));
    // Once, at the container's own address, never also at host A's.
    expect((await observed('web')).map((e) => `${e.address}:${e.port}`)).toEqual([`${c.address}:${WEB}`]);
    const srv = await b.dig(['SRV', `web.${ZONE}`]);
    expect(srvTargets(srv)).toHaveLength(1);
    expect(addressLines(srv.additional).map((l) => l.split(' ')[1])).toEqual([c.address]);
    expect((await b.dig(['A', `web.${ZONE}`])).answer.map((l) => l[4])).toEqual([c.address]);
    // The forward really works: the host's port reaches the container's listener (it accepts and closes).
    const viaHost = await hostA.exec(process.execPath, ['-e', `require('node:net').connect(${WEB}, '127.0.0.1').on('connect', () => console.log('connected')).on('close', () => process.exit(0))`]);
    expect(viaHost.stdout).toContain('connected');
    // Gone before the next tests, whose daemons scan every namespace of host A.
    await Promise.all([c.stop(), later.stop()]);
  });

  it('a UDP listener in a container with a routed address is found by another host (SRV _svc._udp, A), and leaves when it stops', async () => {
    const LOG = base32Port('log');
    const c = await container(hostA);
    const udp = c.spawn(process.execPath, ['-e', UDP_LISTENER, String(LOG)]);
    await new Promise<void>((resolve, reject) => {
      udp.stdout!.on('data', (d) => String(d).includes('listening') && resolve());
      udp.once('exit', (code) => reject(new Error(`UDP listener exited (${code})`)));
    });
    const srv = await untilDig(b, ['SRV', `_log._udp.${ZONE}`], (r) => (srvTargets(r).length === 1 && srvTargets(r)[0]!.includes('.host-a.node.') ? r : undefined));
    const target = srvTargets(srv)[0]!;
    expect(target).toMatch(new RegExp(`^${LOG} [a-z0-9-]+\\.host-a\\.node\\.${ZONE.replace('.', '\\.')}\\.$`));
    expect(addressLines(srv.additional)).toEqual([`${target.split(' ')[1]} ${c.address}`]);
    expect((await b.dig(['A', `log.${ZONE}`])).answer.map((l) => l[4])).toEqual([c.address]);
    // Not a TCP service: _log._tcp has no instance of it.
    expect(srvTargets(await b.dig(['SRV', `_log._tcp.${ZONE}`])).filter((t) => t.includes('.node.'))).toEqual([]);
    // The listener stops (the container runs on): it leaves host B's answers.
    const exited = new Promise((r) => udp.once('exit', r));
    udp.kill('SIGTERM');
    await exited;
    await untilDig(b, ['SRV', `_log._udp.${ZONE}`], (r) => (srvTargets(r).some((t) => t.includes('.node.')) ? undefined : r), 15_000);
    expect((await b.dig(['A', `log.${ZONE}`])).answer.map((l) => l[4])).not.toContain(c.address);
    await c.stop();
  });

  it('two pods of one service on one node are two endpoints, named by their pods; a pod that stops leaves the answers', async () => {
    const pods = await Promise.all(POD_UIDS.map((uid, i) => container(hostA, { cgroup: { id: hex(0xa0 + i), podUid: uid } })));
    await Promise.all(pods.map((p, i) => serveIn(p, 'grpc', CAB, `cab-${i + 1}`)));
    const daemon = createCanonportClient(`${b.grpc.host}:${GRPC_PORT}`);
    stops.push(async () => daemon.close());
    const both = await until('host B to list both pods', async () => {
      const r = await daemon.resolve(`cab.${ZONE}`).catch(() => null);
      return r && r.endpoints.length === 2 && r.endpoints.every((e) => (e as { pod?: string }).pod) ? r : undefined;
    });
    const byPod = both.endpoints.map((e) => ({ address: e.address, node: e.node, ...(e as { pod?: string; podNamespace?: string; containerId?: string; namespace?: string }) }));
    expect(byPod.map((e) => e.address).sort()).toEqual(pods.map((p) => p.address).sort());
    expect(byPod.map((e) => `${e.podNamespace}/${e.pod}`).sort()).toEqual(['shop/cab-7d9f-1', 'shop/cab-7d9f-2']);
    expect(byPod.map((e) => e.containerId).sort()).toEqual([hex(0xa0), hex(0xa1)]);
    // The namespace label is the container's short id, as `docker ps` and crictl show it.
    expect(byPod.map((e) => e.namespace).sort()).toEqual([hex(0xa0).slice(0, 12), hex(0xa1).slice(0, 12)]);
    // Two SRV records, two A records.
    const srv = await b.dig(['SRV', `cab.${ZONE}`]);
    expect(srvTargets(srv)).toHaveLength(2);
    const aRecords = await b.dig(['A', `cab.${ZONE}`]);
    expect(aRecords.answer.map((l) => l[4]).sort()).toEqual(pods.map((p) => p.address).sort());
    // Prometheus discovery: a target group each, with the pod's labels. Only named listeners are listed (issue 22): cab is
    // named by the queries above (asked names reach the view through B's node record, written at most every 5 s).
    const pay = await until('cab named in /sd/prometheus', async () => {
      const sd = JSON.parse((await b.get('/sd/prometheus')).body) as { targets: string[]; labels: Record<string, string> }[];
      const groups = sd.filter((g) => g.labels.__meta_canonport_port === String(CAB));
      return groups.length === 2 ? groups : undefined;
    });
    expect(pay.map((g) => g.labels.__meta_canonport_name_source)).toEqual(['query', 'query']);
    expect(pay.map((g) => `${g.targets.join()} ${g.labels.__meta_canonport_pod_namespace}/${g.labels.__meta_canonport_pod}`).sort()).toEqual(
      pods.map((p, i) => `${p.address}:${CAB} shop/cab-7d9f-${i + 1}`).sort(),
    );
    // The fleet (what `fleet --cluster` and the fleet page read): host-a runs two instances of it.
    type Doc = { services: { service: string; versions: { hosts: string[]; instances?: { host: string; count: number }[] }[] }[] };
    const cabFleet = await until('the fleet page to show both', async () => {
      const doc = JSON.parse((await b.get('/ui/api/fleet')).body) as Doc;
      return doc.services.find((s) => s.service === 'cab' && s.versions[0]?.instances);
    });
    expect(cabFleet.versions[0]).toMatchObject({ hosts: ['host-a'], instances: [{ host: 'host-a', count: 2 }] });

    // One pod stops: it leaves host B's answers within the bound (a scan, a write, a watch delivery), the other stays.
    const stopped = Date.now();
    await pods[0]!.stop();
    const left = await until(
      'host B to drop the stopped pod',
      async () => {
        const r = await daemon.resolve(`cab.${ZONE}`).catch(() => null);
        return r?.endpoints.length === 1 ? r : undefined;
      },
      15_000,
    );
    expect(left.endpoints[0]!.address).toBe(pods[1]!.address);
    console.log(`a stopped pod left host B's answers ${Date.now() - stopped} ms after its stop`);
  });

  it('a daemon without the rights to see other namespaces says so; one with only the host\'s PID namespace (no capability) sees them', async () => {
    const c = await container(hostA);
    await c.listen(base32Port('ops'));
    // Both as uid 1000 with no capability, inside host A (its PID namespace): one with /proc as is, one with hidepid=invisible
    // (systemd's ProtectProc=invisible), which hides other users' processes.
    const asUser = (hidepid: boolean) => (cmd: string, argv: string[], o: object) =>
      hostA.spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${hidepid ? 'mount -t proc -o hidepid=invisible proc /proc && ' : ''}exec setpriv --reuid 1000 --regid 1000 --clear-groups --inh-caps=-all "$@"`, 'sh', cmd, ...argv], o);
    const plain = await startServe(['--namespaces', 'all'], { spawn: asUser(false) });
    const hidden = await startServe(['--namespaces', 'all'], { spawn: asUser(true) });
    stops.push(() => plain.stop(), () => hidden.stop());
    const inventoryOf = (s: ServeProcess) => JSON.parse(hostA.run(process.execPath, [`${REPO}bin/canonport.js`, 'inventory', '--daemon', `127.0.0.1:${s.grpc.port}`, '--json'])) as { listeners: { port: number; namespace?: { addresses: string[] } }[]; namespaces?: { observing: string; code?: string } };
    const seen = await until('the unprivileged daemon to see the container', async () => {
      const inv = inventoryOf(plain);
      return inv.listeners.find((l) => l.port === base32Port('ops') && l.namespace) ? inv : undefined;
    });
    expect(seen.namespaces?.observing).toBe('all');

    const log = await hidden.waitForLog((l) => l.code === 'CP_NAMESPACES_RESTRICTED', 15_000);
    expect(String(log.reason)).toMatch(/hidepid=invisible/);
    const inv = inventoryOf(hidden);
    expect(inv.namespaces).toMatchObject({ observing: 'own', code: 'CP_NAMESPACES_RESTRICTED' });
    expect(inv.listeners.filter((l) => l.namespace)).toEqual([]);
    const readyz = JSON.parse(hostA.run('curl', ['-s', `http://127.0.0.1:${hidden.http.port}/readyz`])) as { ready: boolean; namespaces: { observing: string; code: string } };
    expect(readyz).toMatchObject({ ready: true, namespaces: { observing: 'own', code: 'CP_NAMESPACES_RESTRICTED' } });
    // Said once, not every scan.
    await new Promise((r) => setTimeout(r, 2500));
    expect(hidden.logs.filter((l) => l.code === 'CP_NAMESPACES_RESTRICTED')).toHaveLength(1);
  });
});

/** A UDP service: a socket bound on every address of its namespace, answering each datagram with one. */
const UDP_LISTENER = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => s.send(m, r.port, r.address));
s.bind(Number(process.argv[1]), '0.0.0.0', () => console.log('listening'));
process.on('SIGTERM', () => s.close(() => process.exit(0)));
`;
