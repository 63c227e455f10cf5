import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import dns2 from 'dns2';
import etcd3 from 'etcd3';
import { encodeInstance, encodeNode, instanceKey, nodeKey } from '../src/cluster/keys.js';
import { base32Port } from '../src/scheme/index.js';
import { startLab, startNode, ZONE, DNS_PORT, type Lab, type NodeDaemon } from '../test/helpers/cluster-lab.js';
import { REPO } from '../test/helpers/serve-process.js';
import type { Host } from '../test/helpers/netns.js';
import { RawAds } from '../test/helpers/raw-ads.js';
import type { Children } from './children.js';
import { encodeQuery, TYPE_SRV } from './dns-wire.js';
import { runDnsperf } from './dnsperf.js';
import { percentiles, type AnswerCostRow, type ClusterBenchResult } from './cluster-report.js';

const { Packet } = dns2;

/**
 * `npm run bench -- --only cluster` (issue 14's benchmarks), through real
 * `canonport serve --cluster` daemons, each in a network namespace acting
 * as one host, with Debian's etcd. Default settings throughout (lease TTL
 * 10 s, scan 1 s, observed TTL 5 s). Needs root (namespaces), etcd-server,
 * dnsperf, dig.
 *
 *   convergence  a listener starts on host A (a real socket in A's
 *                namespace): time until SRV at host B's daemon lists it;
 *                then it closes: until B drops it. Host B is asked every
 *                10 ms over UDP. A daemon SIGKILLed on one of five hosts:
 *                until B drops that host.
 *   answer cost  dnsperf against host B's daemon: SRV of a service no host
 *                runs (the plain canonical answer), and of services with
 *                1, 10 and 100 instances (node records written into etcd),
 *                in one run, interleaved.
 *   scale        bench/cluster-scale.ts (1,000 nodes × 20 services by default)
 *   procnet      /proc/net/tcp with 11,500 sockets: the whole file vs the
 *                listeners only (bench/procnet-cost.ts)
 */

export interface ClusterBenchOptions {
  trials: number;
  killRounds: number;
  seconds: number;
  scaleNodes: number;
  scaleServices: number;
  workDir: string;
}

const POLL_MS = 10;
const LEASE_TTL = 10;
const SCAN_MS = 1000;
const API = base32Port('api');
const DB = base32Port('db');
const VICTIMS = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waiters on the latest value a poller or a stream saw: `until` resolves (with when, performance.now()) once a value satisfies its predicate, at once if the latest already does. */
class Latest<T> {
  private waiters = new Set<{ pred: (v: T) => boolean; resolve: (t: number) => void }>();

  constructor(
    public value: T,
    private readonly describe: (v: T) => string,
  ) {}

  set(value: T, at: number): void {
    this.value = value;
    for (const w of [...this.waiters]) if (w.pred(value)) (this.waiters.delete(w), w.resolve(at));
  }

  until(pred: (v: T) => boolean, timeoutMs: number, what: string): Promise<number> {
    if (pred(this.value)) return Promise.resolve(performance.now());
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (t: number) => {
          clearTimeout(timer);
          resolve(t);
        },
      };
      const timer = setTimeout(() => (this.waiters.delete(w), reject(new Error(`${what}: condition not met within ${timeoutMs} ms (last: ${this.describe(this.value)})`))), timeoutMs);
      this.waiters.add(w);
    });
  }
}

const listOrNone = (xs: string[]) => xs.join(', ') || 'none';

/** The SRV targets of `name` at host:port, every `POLL_MS`, until `pred` holds (returns when, performance.now()). */
class SrvPoller {
  private readonly socket = dgram.createSocket('udp4');
  private id = 1;
  private timer: NodeJS.Timeout;
  private readonly latest = new Latest<string[]>([], listOrNone);

  constructor(private readonly host: string, private readonly port: number, private readonly name: string) {
    this.socket.on('message', (msg) => {
      const t = performance.now();
      let targets: string[];
      try {
        targets = Packet.parse(msg).answers.filter((r) => r.type === Packet.TYPE.SRV).map((r) => String(r.target).toLowerCase().replace(/\.$/, ''));
      } catch {
        return;
      }
      this.latest.set(targets, t);
    });
    this.socket.on('error', () => undefined);
    this.timer = setInterval(() => this.socket.send(encodeQuery(this.id++ & 0xffff, this.name, TYPE_SRV), this.port, this.host), POLL_MS);
  }

  until(pred: (targets: string[]) => boolean, timeoutMs: number): Promise<number> {
    return this.latest.until(pred, timeoutMs, `SRV ${this.name}`);
  }

  close(): void {
    clearInterval(this.timer);
    this.socket.close();
  }
}

const nodeTarget = (node: string) => `${node}.node.${ZONE}`;

/**
 * A stock-shaped xDS subscriber at a daemon: one ADS stream asking for the
 * ClusterLoadAssignment of `name`, ACKing every push; `until` resolves
 * when a push's endpoints (ADDRESS:PORT) satisfy a predicate.
 */
class EdsWatcher {
  private readonly ads: RawAds;
  private closed = false;
  private readonly latest = new Latest<string[]>([], listOrNone);

  constructor(address: string, private readonly name: string) {
    this.ads = new RawAds(address);
    this.ads.send('endpoint', [name]);
    void this.read();
  }

  private async read(): Promise<void> {
    while (!this.closed) {
      const r = await this.ads.next(3_600_000).catch(() => null);
      if (!r) return;
      const t = performance.now();
      this.ads.ack(r, [this.name]);
      const groups = (r.resources[0]?.endpoints ?? []) as Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }> }>;
      this.latest.set(
        groups.flatMap((g) => g.lb_endpoints.map((e) => `${e.endpoint.address.socket_address.address}:${e.endpoint.address.socket_address.port_value}`)),
        t,
      );
    }
  }

  until(pred: (eps: string[]) => boolean, timeoutMs: number): Promise<number> {
    return this.latest.until(pred, timeoutMs, `EDS ${this.name}`);
  }

  close(): void {
    this.closed = true;
    this.ads.close();
  }
}

async function convergence(lab: Lab, b: NodeDaemon, hostA: Host, o: ClusterBenchOptions, progress: (m: string) => void, r: ClusterBenchResult): Promise<void> {
  const poll = new SrvPoller(b.dns.host, DNS_PORT, `api.${ZONE}`);
  // The same trials, seen by an xDS client subscribed at B (issue 15: a listener change in cluster mode).
  const eds = new EdsWatcher(`${b.grpc.host}:${b.grpc.port}`, `api.${ZONE}`);
  const onA = (eps: string[]) => eps.includes(`${hostA.address}:${API}`);
  const appear: number[] = [];
  const close: number[] = [];
  const xdsAppear: number[] = [];
  const xdsClose: number[] = [];
  try {
    for (let i = 0; i < o.trials; i++) {
      const listener = await hostA.listen(API);
      const t0 = performance.now();
      const [dnsAt, xdsAt] = await Promise.all([poll.until((ts) => ts.includes(nodeTarget('host-a')), 30_000), eds.until(onA, 30_000)]);
      appear.push(dnsAt - t0);
      xdsAppear.push(xdsAt - t0);
      // B saw it right after a scan on A: stop it at a random phase of the next one, or every close would wait a whole scan.
      await sleep(Math.random() * SCAN_MS);
      await listener.stop();
      const t1 = performance.now();
      const [dnsGone, xdsGone] = await Promise.all([poll.until((ts) => !ts.includes(nodeTarget('host-a')), 30_000), eds.until((eps) => !onA(eps), 30_000)]);
      close.push(dnsGone - t1);
      xdsClose.push(xdsGone - t1);
      if ((i + 1) % 10 === 0) progress(`cluster: convergence trial ${i + 1}/${o.trials}: appears ${percentiles(appear)!.p50} ms p50 (xDS ${percentiles(xdsAppear)!.p50}), closes ${percentiles(close)!.p50} ms p50 (xDS ${percentiles(xdsClose)!.p50})`);
      // The next trial starts at a random phase of the 1 s scan.
      await sleep(Math.random() * SCAN_MS);
    }
  } finally {
    poll.close();
    eds.close();
    r.convergence.listenerAppears = percentiles(appear);
    r.convergence.listenerCloses = percentiles(close);
    r.convergence.xdsAppears = percentiles(xdsAppear);
    r.convergence.xdsCloses = percentiles(xdsClose);
  }

  // SIGKILL: five victim hosts, each with its own daemon and a db listener; all killed at once, each timed on its own.
  const victims = lab.hosts.slice(2, 2 + VICTIMS);
  const dbPoll = new SrvPoller(b.dns.host, DNS_PORT, `db.${ZONE}`);
  const killed: number[] = [];
  try {
    for (const h of victims) await h.listen(DB);
    for (let round = 0; round < o.killRounds; round++) {
      const daemons = await Promise.all(victims.map((h, i) => startNode(lab, h, `victim-${i}`)));
      await dbPoll.until((ts) => daemons.every((d) => ts.includes(nodeTarget(d.name))), 60_000);
      // Let the leases run a random part of their keepalive period.
      await sleep(Math.random() * (LEASE_TTL / 3) * 1000);
      const kills = daemons.map(async (d) => {
        d.proc.kill('SIGKILL');
        await d.exited;
        const t0 = performance.now();
        const t = await dbPoll.until((ts) => !ts.includes(nodeTarget(d.name)), (LEASE_TTL + 20) * 1000);
        killed.push(t - t0);
      });
      await Promise.all(kills);
      progress(`cluster: SIGKILL round ${round + 1}/${o.killRounds}: ${percentiles(killed)!.p50} ms p50 so far`);
    }
  } finally {
    dbPoll.close();
    r.convergence.daemonKilled = percentiles(killed);
  }
}

/** Writes `n` node records and their listener on `port` into etcd, under leases kept alive (what n daemons would hold). */
async function fakeNodes(client: etcd3.Etcd3, prefix: string, first: number, n: number, port: number, service: string, leases: etcd3.Lease[]): Promise<void> {
  const started = new Date().toISOString();
  for (let i = first; i < first + n; i++) {
    const name = `fake-${String(i).padStart(3, '0')}`;
    const lease = client.lease(60, { autoKeepAlive: true });
    leases.push(lease);
    const id = await lease.grant();
    // Loopback addresses: they only appear in answers; nothing is ever sent to them.
    const address = `127.77.${i >> 8}.${i & 255}`;
    await client.kv.txn({
      success: [
        { request_put: { key: Buffer.from(nodeKey(prefix, name)), value: Buffer.from(encodeNode({ name, addresses: [address], canonportVersion: 'bench', registryDigest: '', started })), lease: id } },
        {
          request_put: {
            key: Buffer.from(instanceKey(prefix, name, port)),
            value: Buffer.from(encodeInstance({ port, services: [service], scheme: 'base32', version: '1.0.0', versionSource: 'http', since: started, bind: [{ family: 'tcp', address: '0.0.0.0' }], protocol: 'tcp', namespace: 'host', readiness: { state: 'ready', since: started, by: 'http' } })),
            lease: id,
          },
        },
      ],
    });
  }
}

function digCount(host: string, name: string, tcp: boolean): Promise<string> {
  return new Promise((resolve) => {
    const p = spawn('dig', [`@${host}`, '-p', String(DNS_PORT), '+time=2', '+tries=1', '+nocookie', '+ignore', ...(tcp ? ['+tcp'] : []), 'SRV', name], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', () => {
      const flags = /;; flags: ([^;]*);/.exec(out)?.[1]?.trim() ?? '';
      const counts = /ANSWER: (\d+), AUTHORITY: (\d+), ADDITIONAL: (\d+)/.exec(out);
      const size = /MSG SIZE\s+rcvd: (\d+)/.exec(out)?.[1];
      resolve(counts ? `${counts[1]} SRV, ${Number(counts[3]) - 1} additional, ${size} bytes${flags.split(' ').includes('tc') ? ', TC' : ''}` : 'no answer');
    });
  });
}

/** The answer-cost rows alone (the rollout bench runs them on its own lab): SRV q/s for 1, 10 and 100 instances and a canonical answer. */
export async function answerCostRows(lab: Lab, b: NodeDaemon, o: Pick<ClusterBenchOptions, 'seconds' | 'workDir'>, children: Children, progress: (m: string) => void): Promise<AnswerCostRow[]> {
  const r = { answerCost: [] as AnswerCostRow[], errors: [] as string[] };
  await answerCost(lab, b, o, children, progress, r);
  if (r.errors.length > 0) throw new Error(r.errors.join('; '));
  return r.answerCost;
}

async function answerCost(
  lab: Lab,
  b: NodeDaemon,
  o: Pick<ClusterBenchOptions, 'seconds' | 'workDir'>,
  children: Children,
  progress: (m: string) => void,
  r: Pick<ClusterBenchResult, 'answerCost' | 'errors'>,
): Promise<void> {
  const client = new etcd3.Etcd3({ hosts: `http://127.0.0.1:${lab.etcd.members[0]!.clientPort}` });
  const leases: etcd3.Lease[] = [];
  // Service names whose base32 ports differ and that nothing else uses here.
  const sets = [
    { label: '1 instance', instances: 1, service: 'fsa' },
    { label: '10 instances', instances: 10, service: 'fsb' },
    { label: '100 instances', instances: 100, service: 'fsc' },
  ];
  try {
    // Node records are shared: fake-000… run fsc, the first ten fsb too, the first fsa.
    progress('cluster: writing 100 fake nodes into etcd for the answer-cost runs');
    await fakeNodes(client, '/canonport', 0, 100, base32Port('fsc'), 'fsc', leases);
    const started = new Date().toISOString();
    for (const s of sets.slice(0, 2)) {
      for (let i = 0; i < s.instances; i++) {
        const name = `fake-${String(i).padStart(3, '0')}`;
        const port = base32Port(s.service);
        await client.put(instanceKey('/canonport', name, port)).value(encodeInstance({ port, services: [s.service], scheme: 'base32', version: '1.0.0', versionSource: 'http', since: started, bind: [{ family: 'tcp', address: '0.0.0.0' }], protocol: 'tcp', namespace: 'host', readiness: { state: 'ready', since: started, by: 'http' } })).lease(await leases[i]!.grant());
      }
    }
    const poll = new SrvPoller(b.dns.host, DNS_PORT, `fsb.${ZONE}`);
    await poll.until((ts) => ts.length === 10, 30_000).finally(() => poll.close());
    const files = new Map<string, string>();
    const fileFor = (name: string) => {
      const f = join(o.workDir, `cluster-${name}.txt`);
      writeFileSync(f, `${name}.${ZONE} SRV\n`);
      files.set(name, f);
      return f;
    };
    const plan: { label: string; instances: number; name: string; transport: 'udp' | 'tcp' }[] = [
      { label: 'canonical', instances: 0, name: 'nobody-runs', transport: 'udp' },
      ...sets.map((s) => ({ label: s.label, instances: s.instances, name: s.service, transport: 'udp' as const })),
      { label: 'canonical', instances: 0, name: 'nobody-runs', transport: 'tcp' },
      { label: '100 instances', instances: 100, name: 'fsc', transport: 'tcp' },
    ];
    const rows: AnswerCostRow[] = [];
    for (const p of plan) {
      rows.push({ label: p.label, instances: p.instances, transport: p.transport, qps: null, avgMs: null, answer: await digCount(b.dns.host, `${p.name}.${ZONE}`, p.transport === 'tcp') });
      if (!files.has(p.name)) fileFor(p.name);
    }
    // Two halves in opposite orders, so drift in the machine's load weighs on every row alike.
    const half = Math.max(1, Math.round(o.seconds / 2));
    const sums = rows.map(() => ({ completed: 0, seconds: 0, avg: 0, n: 0 }));
    for (const order of [plan.map((_, i) => i), plan.map((_, i) => plan.length - 1 - i)]) {
      for (const i of order) {
        const p = plan[i]!;
        try {
          const run = await runDnsperf({ server: b.dns.host, port: DNS_PORT, file: files.get(p.name)!, seconds: half, mode: p.transport }, children);
          sums[i]!.completed += run.stats.completed;
          sums[i]!.seconds += run.stats.runtimeS;
          sums[i]!.avg += run.stats.avgMs;
          sums[i]!.n++;
        } catch (err) {
          rows[i]!.error = (err as Error).message.split('\n')[0];
          r.errors.push(`answer cost ${p.label} ${p.transport}: ${(err as Error).message}`);
        }
      }
    }
    rows.forEach((row, i) => {
      const s = sums[i]!;
      if (s.n > 0) {
        row.qps = s.completed / s.seconds;
        row.avgMs = s.avg / s.n;
      }
      progress(`cluster: SRV ${row.label} over ${row.transport}: ${row.qps ? Math.round(row.qps) : '–'} q/s (${row.answer})`);
    });
    r.answerCost = rows;
  } finally {
    for (const l of leases) await l.revoke().catch(() => undefined);
    client.close();
  }
}

function runNode(args: string[], timeoutMs: number, spawnIn?: Host): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawnIn ? spawnIn.spawn('sh', ['-c', `ulimit -n "$(ulimit -Hn)" && exec ${process.execPath} ${args.join(' ')}`], { cwd: REPO }) : spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (err += d));
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('close', (code) => {
      clearTimeout(t);
      if (code === 0) resolve(out);
      else reject(new Error(`node ${args.join(' ')} exited ${code}: ${err.slice(-500)}`));
    });
  });
}

export async function runClusterBench(o: ClusterBenchOptions, progress: (m: string) => void, children: Children): Promise<ClusterBenchResult> {
  const r: ClusterBenchResult = {
    load: { start: os.loadavg()[0]!, end: 0 },
    settings: { leaseTtlSeconds: LEASE_TTL, scanIntervalMs: SCAN_MS, observedTtlSeconds: 5, pollMs: POLL_MS },
    convergence: { listenerAppears: null, listenerCloses: null, daemonKilled: null },
    answerCost: [],
    scale: null,
    procnet: null,
    errors: [],
  };
  if (process.getuid?.() !== 0) {
    r.errors.push('the cluster bench needs root (network namespaces)');
    return r;
  }
  progress(`cluster: starting etcd and ${2 + VICTIMS} hosts (network namespaces)`);
  const lab = await startLab({ hosts: 2 + VICTIMS });
  try {
    const [hostA, hostB] = lab.hosts as [Host, Host];
    const [, b] = await Promise.all([startNode(lab, hostA, 'host-a'), startNode(lab, hostB, 'host-b')]);
    await sleep(3000);
    try {
      await convergence(lab, b, hostA, o, progress, r);
    } catch (err) {
      r.errors.push(`convergence: ${(err as Error).message}`);
    }
    try {
      await answerCost(lab, b, o, children, progress, r);
    } catch (err) {
      r.errors.push(`answer cost: ${(err as Error).message}`);
    }
    try {
      progress('cluster: /proc/net/tcp with 11,500 sockets (a fresh host)');
      const fresh = await lab.net.addHost();
      const out = await runNode(['dist-bench/bench/procnet-cost.js', '11500'], 120_000, fresh);
      r.procnet = JSON.parse(out.trim().split('\n').at(-1)!) as ClusterBenchResult['procnet'];
    } catch (err) {
      r.errors.push(`procnet: ${(err as Error).message}`);
    }
  } finally {
    await lab.stop();
  }
  try {
    progress(`cluster: scale, ${o.scaleNodes} nodes × ${o.scaleServices} services (bench/cluster-scale.ts)`);
    const out = await runNode(['--expose-gc', 'dist-bench/bench/cluster-scale.js', '--nodes', String(o.scaleNodes), '--services', String(o.scaleServices)], 600_000);
    r.scale = JSON.parse(out.slice(out.indexOf('{'))) as Record<string, unknown>;
  } catch (err) {
    r.errors.push(`scale: ${(err as Error).message}`);
  }
  r.load.end = os.loadavg()[0]!;
  return r;
}
