import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { base32Port } from '../src/scheme/index.js';
import { stopChild } from './helpers/child.js';
import { until } from './helpers/cluster.js';
import { srvTargets, startBackend, startLab, startNode, untilDig, ZONE, type Lab, type NodeDaemon } from './helpers/cluster-lab.js';
import type { DigResult } from './helpers/dig.js';
import type { Host } from './helpers/netns.js';
import { freePort } from './helpers/ports.js';
import { requireTool } from './helpers/tools.js';
import { runCli } from './inventory-support.js';

/**
 * Issue 22 end to end, with real parts: two hosts (network namespaces, each
 * its own /proc/net), a real `canonport serve --cluster` in each, one real
 * etcd, a real Prometheus (Debian's) reading host A's /sd/prometheus with
 * http_sd_configs, dig for DNS-SD, and `canonport fleet` both ways.
 *
 * What listens, and what names it:
 *   A  blog    (http backend)   the registry lists it            → registry
 *   A  db0     (a node -e TCP listener on db's port)             → unnamed, until a client asks for db.<zone> → query
 *   B  ledger  (python3 ledger.py, TCP)                          → process (its script's name lands on its port)
 *   B  kil     (a node -e TCP listener on kiln's port)           → unnamed for good
 *   B  echo    (python3 udp_responder.py, UDP only: a script name that is not a name of its port)
 *                                                                → unnamed, until a client asks _echo._udp.<zone> → query
 */

const BLOG = base32Port('blog');
const DB = base32Port('db');
const LEDGER = base32Port('ledger');
const KILN = base32Port('kiln');
const ECHO = base32Port('echo');

let lab: Lab;
let dir: string;
let a: NodeDaemon;
let b: NodeDaemon;
let hostA: Host;
let hostB: Host;
let prometheus: ChildProcess | undefined;
let promUrl = '';

/** A python3 script in `host`: its file name is the process's name (process-names.ts reads the script an interpreter runs). */
function python(host: Host, file: string, source: string): Promise<ChildProcess> {
  const path = join(dir, file);
  writeFileSync(path, source);
  const child = host.spawn(requireTool('python3', 'python3'), ['-u', path]);
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('listening') && resolve(child));
    child.once('exit', (code) => reject(new Error(`${file} in ${host.ns} exited (${code}): ${err}`)));
  });
}

const TCP_SERVER = (port: number) => `import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('0.0.0.0', ${port}))\ns.listen()\nprint('listening')\nwhile True:\n    c, _ = s.accept()\n    c.close()\n`;
const UDP_SERVER = (port: number) => `import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', ${port}))\nprint('listening')\nwhile True:\n    data, peer = s.recvfrom(512)\n    s.sendto(data, peer)\n`;

interface TargetGroup {
  targets: string[];
  labels: Record<string, string>;
}
async function sd(node: NodeDaemon, query = ''): Promise<TargetGroup[]> {
  const r = await node.get(`/sd/prometheus${query}`);
  expect(r.status).toBe(200);
  return JSON.parse(r.body) as TargetGroup[];
}
/** `service source node` per target group, sorted: what a relabelling sees. */
const groupsOf = (groups: readonly TargetGroup[]) =>
  groups.map((g) => `${g.labels.__meta_canonport_service} ${g.labels.__meta_canonport_name_source} ${g.labels.__meta_canonport_node}`).sort();

interface PromTarget {
  discoveredLabels: Record<string, string>;
  labels: Record<string, string>;
}
/** Prometheus's active targets, per job, as `service source` (its /api/v1/targets). */
async function promTargets(): Promise<Record<string, string[]>> {
  const res = await fetch(`${promUrl}/api/v1/targets?state=active`);
  const body = (await res.json()) as { data: { activeTargets: PromTarget[] } };
  const out: Record<string, string[]> = { all: [], registry: [], unnamed: [] };
  for (const t of body.data.activeTargets) out[t.labels.job!]!.push(`${t.discoveredLabels.__meta_canonport_service} ${t.discoveredLabels.__meta_canonport_name_source}`);
  for (const k of Object.keys(out)) out[k]!.sort();
  return out;
}

/** PTR targets of an answer. */
const ptrs = (r: DigResult) => r.answer.filter((l) => l[3] === 'PTR').map((l) => l[4]!).sort();
/**
 * RFC 6763 §4.1: a service instance name is <Instance>.<Service>.<Domain>,
 * <Service> being `_name._tcp` or `_name._udp` (the protocol of the type it
 * was found under), the name 1–15 characters (§7, RFC 6335 §5.1).
 */
const INSTANCE = new RegExp(`^([a-z0-9-]+)\\._([a-z0-9-]{1,15})\\._(tcp|udp)\\.${ZONE.replace('.', '\\.')}\\.$`);

beforeAll(async () => {
  requireTool('prometheus', 'prometheus');
  lab = await startLab({ hosts: 2 });
  dir = mkdtempSync(join(tmpdir(), 'cp-names-lab-'));
  [hostA, hostB] = lab.hosts as [Host, Host];
  const registry = join(dir, 'registry.yaml');
  writeFileSync(registry, 'services:\n  blog:\n    description: listed, so named by the registry\n');
  [a, b] = await Promise.all([startNode(lab, hostA, 'host-a', ['--registry', registry]), startNode(lab, hostB, 'host-b', ['--registry', registry])]);
  await Promise.all([
    startBackend(hostA, 'http', BLOG, 'blog'),
    hostA.listen(DB),
    python(hostB, 'ledger.py', TCP_SERVER(LEDGER)),
    hostB.listen(KILN),
    python(hostB, 'udp_responder.py', UDP_SERVER(ECHO)),
  ]);
  // Both nodes see every instance: 2 on A, 3 on B (the UDP one included).
  for (const d of [a, b]) {
    await until(`${d.name} to see both nodes' instances`, async () => {
      const all = JSON.parse((await d.get('/sd/prometheus?unnamed=true')).body) as TargetGroup[];
      return new Set(all.map((g) => g.labels.__meta_canonport_port)).size === 4 ? true : undefined;
    }, 30_000, 250);
  }
  // A real Prometheus, its three jobs fed by host A: everything named; only the registry's (a relabel rule); unnamed too.
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  const sdUrl = `http://${a.http.host}:${a.http.port}/sd/prometheus`;
  const job = (name: string, url: string, relabel = '') =>
    `  - job_name: ${name}\n    scrape_interval: 1h\n    http_sd_configs:\n      - url: ${url}\n        refresh_interval: 1s\n${relabel}`;
  const keepRegistry = '    relabel_configs:\n      - source_labels: [__meta_canonport_name_source]\n        regex: registry\n        action: keep\n';
  writeFileSync(join(dir, 'prometheus.yml'), `scrape_configs:\n${job('all', sdUrl)}${job('registry', sdUrl, keepRegistry)}${job('unnamed', `${sdUrl}?unnamed=true`)}`);
  prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'tsdb')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  prometheus.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
  await until('prometheus to answer', async () => {
    if (prometheus!.exitCode !== null) throw new Error(`prometheus exited (${prometheus!.exitCode}): ${log}`);
    return (await fetch(`${promUrl}/-/ready`).then((r) => r.ok).catch(() => false)) ? true : undefined;
  }, 30_000, 250);
}, 150_000);

afterAll(async () => {
  if (prometheus) await stopChild(prometheus);
  await lab?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('names people recognise, in /sd/prometheus and a real Prometheus', () => {
  it('lists named TCP services only, each with where its name comes from; unnamed listeners only when asked; UDP never', async () => {
    expect(groupsOf(await sd(a))).toEqual(['blog registry host-a', 'ledger process host-b']);
    // Asked for (the setting's per-request form): the unnamed ones under their canonical names, source none.
    expect(groupsOf(await sd(b, '?unnamed=true'))).toEqual(['blog registry host-a', 'db0 none host-a', 'kil none host-b', 'ledger process host-b']);
    const ledger = (await sd(a)).find((g) => g.labels.__meta_canonport_service === 'ledger')!;
    expect(ledger).toEqual({
      targets: [`${hostB.address}:${LEDGER}`],
      labels: expect.objectContaining({ __meta_canonport_port: String(LEDGER), __meta_canonport_names: ',ledger,', __meta_canonport_name_source: 'process' }),
    });
  });

  it('a real Prometheus: before a client asks, db is not a target; after `dig db.<zone>` on host B it is, named db (query); the relabel rule keeps only the registry\'s', async () => {
    const before = await until('prometheus to list its targets', async () => {
      const t = await promTargets();
      return t.all!.length === 2 && t.unnamed!.length === 4 ? t : undefined;
    }, 20_000, 250);
    expect(before).toEqual({
      all: ['blog registry', 'ledger process'],
      registry: ['blog registry'],
      unnamed: ['blog registry', 'db0 none', 'kil none', 'ledger process'],
    });
    console.log(`prometheus /api/v1/targets before (job: service name_source): ${JSON.stringify(before)}`);
    // A client on host B asks for db: the name db is learned for 23904's listener on host A, published in B's node record.
    const asked = await b.dig(['A', `db.${ZONE}`]);
    expect(asked.status).toBe('NOERROR');
    const after = await until('prometheus to list db by the name asked for', async () => {
      const t = await promTargets();
      return t.all!.includes('db query') ? t : undefined;
    }, 30_000, 250);
    expect(after).toEqual({
      all: ['blog registry', 'db query', 'ledger process'],
      registry: ['blog registry'],
      unnamed: ['blog registry', 'db query', 'kil none', 'ledger process'],
    });
    console.log(`prometheus /api/v1/targets after dig db.${ZONE} (job: service name_source): ${JSON.stringify(after)}`);
    // Names never move a port: db is still 23904 on host A.
    expect((await sd(a)).find((g) => g.labels.__meta_canonport_service === 'db')!.targets).toEqual([`${hostA.address}:${DB}`]);
    // B was asked and A was not: A's /sd/prometheus (Prometheus's source) names db from B's node record, through etcd.
  });
});

describe('UDP services and DNS-SD browsing (dig)', () => {
  it('a UDP listener answers _echo._udp and not _echo._tcp; the plain name covers both', async () => {
    const udp = await untilDig(a, ['SRV', `_echo._udp.${ZONE}`], (r) => (srvTargets(r).length > 0 ? r : undefined));
    expect(srvTargets(udp)).toEqual([`${ECHO} host-b.node.${ZONE}.`]);
    expect(srvTargets(await a.dig(['SRV', `_echo._tcp.${ZONE}`]))).not.toContain(`${ECHO} host-b.node.${ZONE}.`);
    expect(srvTargets(await a.dig(['SRV', `echo.${ZONE}`]))).toEqual([`${ECHO} host-b.node.${ZONE}.`]);
    // A TCP one the other way round.
    expect(srvTargets(await a.dig(['SRV', `_ledger._tcp.${ZONE}`]))).toEqual([`${LEDGER} host-b.node.${ZONE}.`]);
    expect(srvTargets(await a.dig(['SRV', `_ledger._udp.${ZONE}`]))).not.toContain(`${LEDGER} host-b.node.${ZONE}.`);
  });

  it('browsing: PTR _services._dns-sd._udp lists named types with their protocol; PTR _svc._udp and _svc._tcp give RFC 6763 §4.1 instance names', async () => {
    // The SRV query above asked for _echo._udp: echo is named (query) once B's record says so.
    const types = await untilDig(b, ['PTR', `_services._dns-sd._udp.${ZONE}`], (r) => (ptrs(r).includes(`_echo._udp.${ZONE}.`) && ptrs(r).includes(`_db._tcp.${ZONE}.`) ? r : undefined), 30_000);
    expect(ptrs(types)).toEqual([`_blog._tcp.${ZONE}.`, `_db._tcp.${ZONE}.`, `_echo._udp.${ZONE}.`, `_ledger._tcp.${ZONE}.`]);
    // Never offered: the unnamed listener (kiln's port), a TCP type for a UDP-only service.
    for (const [type, proto] of [['echo', 'udp'], ['ledger', 'tcp'], ['blog', 'tcp'], ['db', 'tcp']] as const) {
      const r = await b.dig(['PTR', `_${type}._${proto}.${ZONE}`]);
      expect(r.status).toBe('NOERROR');
      const instances = ptrs(r);
      expect(instances.length).toBe(1);
      for (const i of instances) {
        const m = INSTANCE.exec(i);
        expect(m, `${i} is an RFC 6763 §4.1 instance name`).not.toBeNull();
        expect([m![2], m![3]]).toEqual([type, proto]);
      }
      // The instance's SRV and TXT come along (RFC 6763 §12.1), and the SRV at the instance name answers.
      expect(r.additional.some((l) => l[3] === 'SRV' && l[0] === instances[0])).toBe(true);
      expect((await b.dig(['SRV', instances[0]!])).answer.filter((l) => l[3] === 'SRV').length).toBe(1);
    }
    expect(ptrs(await b.dig(['PTR', `_echo._tcp.${ZONE}`]))).toEqual([]);
    expect(ptrs(await b.dig(['PTR', `_kil._tcp.${ZONE}`]))).toEqual([]);
  });
});

describe('one fleet view', () => {
  it('fleet HOST… and fleet --cluster list the same lines for the same hosts (the daemons\' own ports in neither); each host\'s time is its own', async () => {
    // A name asked for reaches a host's inventory at its next scan after its view has it (each second): the browsing
    // test above waited for B's view (PTR), so B's own inventory may be one scan behind; fleet HOST… reads that.
    const byHosts = await until('B\'s inventory to name echo (its next scan)', async () => {
      const r = await runCli(['fleet', `${hostA.address}:13655`, `${hostB.address}:13655`]);
      return /^echo\/udp\s/m.test(r.stdout) ? r : undefined;
    });
    const byCluster = await runCli(['fleet', '--cluster', lab.etcdUrl]);
    expect(byHosts.code).toBe(0);
    expect(byCluster.code).toBe(0);
    // Everything above the last paragraph (which says where the fleet came from), host addresses read as node names.
    const body = (out: string) => out.trimEnd().split('\n\n').slice(0, -1).join('\n\n');
    const hostsBody = body(byHosts.stdout.replaceAll(`${hostA.address}:13655`, 'host-a').replaceAll(`${hostB.address}:13655`, 'host-b'));
    expect(hostsBody.split('\n')).toEqual(body(byCluster.stdout).split('\n'));
    // What they list: named services with their protocol, the unnamed port apart, not the daemons' DNS/gRPC/HTTP.
    expect(hostsBody).toMatch(/^echo\/udp\s/m);
    expect(hostsBody).toMatch(/^ledger\s/m);
    expect(hostsBody).toMatch(new RegExp(`unnamed ports[^\\n]*\\n.*\\n\\s+${KILN}\\s+kil\\s`));
    expect(hostsBody).not.toMatch(/\b1365[3-6]\b|^ca[no]\s/m);
    expect(hostsBody).not.toContain('share port');
    const json = JSON.parse((await runCli(['fleet', '--json', '--cluster', lab.etcdUrl])).stdout) as { hosts: { host: string; inventory: { collectedAtMs: number }; node: { observedAt: string } }[] };
    for (const h of json.hosts) expect(h.inventory.collectedAtMs).toBe(Date.parse(h.node.observedAt));
    expect(await a.metric('canonport_cluster_view_nodes')).toBe(2);
  });
});

