import { addressProblem } from '../src/cluster/address-policy.js';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { base32Port } from '../src/scheme/index.js';
import { srvTargets, startBackend, startLab, startNode, ZONE, type Lab, type NodeDaemon } from '../test/helpers/cluster-lab.js';
import { etcdWriter, type EtcdWriter } from '../test/helpers/etcd-writer.js';
import { addressesIn, PREFIX, sdTargets, writeFakeNodes, writeHugeValues, writeImpossibleAddresses, writeWideNode } from '../test/helpers/hostile-cluster.js';
import type { Host } from '../test/helpers/netns.js';
import { rssOf } from '../test/helpers/serve-process.js';
import { parseRepoCases, runRepoCases, type Figures } from './repos.js';

/**
 * `npm run bench:hostile-cluster`: issue 21's etcd-writer attacks
 * (findings 3, 4, 7, 10) at the sizes the issue reported, against real
 * `canonport serve --cluster` daemons in the namespace lab (root,
 * iproute2, etcd-server, dig), printing per case what the closing note
 * asks for: the observing daemon's RSS, the slowest DNS answer a client of
 * the real hosts got (the event loop's stall, as a client sees it), failed
 * queries, and what the attack got.
 *
 *   npm run bench:hostile-cluster -- [--repo DIR]… [--only CASE[,CASE…]]
 *
 * `--repo` names checkouts to attack, each with bin/canonport.js and a
 * built dist/ (default: this one); give main's and the branch's to compare
 * them in one run, on one machine:
 *
 *   mkdir /tmp/cp-main && git archive main | tar -x -C /tmp/cp-main && (cd /tmp/cp-main && npm ci && npm run build)
 *   npm run bench:hostile-cluster -- --repo /tmp/cp-main --repo .
 *
 * Each case gets a lab of its own (fresh etcd). Figures, never assertions:
 * test/hostile-cluster.test.ts asserts the bounds at smaller sizes.
 */

const CASES = ['huge-values', 'wide-node', 'flood', 'addresses'] as const;
type Case = (typeof CASES)[number];
const API = base32Port('api');
const PAY = base32Port('pay');


const mb = (bytes: number) => Math.round(bytes / 1e6);
const alive = (d: NodeDaemon) => d.proc.exitCode === null && d.proc.signalCode === null;
const lists = (r: Awaited<ReturnType<NodeDaemon['dig']>>, node: string) => srvTargets(r).some((t) => t.endsWith(` ${node}.node.${ZONE}.`));

/** A lab of 4 hosts, web-a and web-b serving api, from `repo`. */
async function world(repo: string): Promise<{ lab: Lab; hosts: Host[]; a: NodeDaemon; b: NodeDaemon; evil: EtcdWriter }> {
  const lab = await startLab({ hosts: 4 });
  const [hostA, hostB] = lab.hosts as [Host, Host];
  const [a, b] = await Promise.all([startNode(lab, hostA, 'web-a', [], lab.etcdUrl, { repo }), startNode(lab, hostB, 'web-b', [], lab.etcdUrl, { repo })]);
  await Promise.all([startBackend(hostA, 'grpc', API, 'web-a'), startBackend(hostB, 'grpc', API, 'web-b')]);
  await until(60_000, async () => {
    const r = await b.dig(['SRV', `api.${ZONE}`]);
    return lists(r, 'web-a') && lists(r, 'web-b');
  });
  return { lab, hosts: lab.hosts, a, b, evil: etcdWriter(`127.0.0.1:${lab.etcd.members[0]!.clientPort}`) };
}

type World = Awaited<ReturnType<typeof world>>;

/** `fn` in a fresh world from `repo`, torn down afterwards whatever happens. */
async function inWorld(repo: string, fn: (w: World) => Promise<Figures>): Promise<Figures> {
  const w = await world(repo);
  try {
    return await fn(w);
  } finally {
    w.evil.close();
    await w.lab.stop();
  }
}

/** What the clients of the real hosts saw during an attack (during()), with the RSS before it. */
function dnsFigures(d: { sent: number; failed: number; maxMs: number; rssPeak: number }, rssBefore: number): Figures {
  return { dnsFailedDuring: `${d.failed}/${d.sent}`, dnsMaxMs: d.maxMs, rssMb: `${mb(rssBefore)} → ${mb(d.rssPeak)}` };
}

async function until(ms: number, check: () => Promise<boolean>): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/**
 * What a DNS client of `d` sees while `attack` runs: SRV api every 100 ms,
 * failed when it does not list both real hosts within 2 s; the peak RSS
 * sampled meanwhile.
 */
async function during<T>(d: NodeDaemon, attack: Promise<T>): Promise<{ result: T; sent: number; failed: number; maxMs: number; rssPeak: number }> {
  let over = false;
  const done = attack.finally(() => (over = true));
  let sent = 0;
  let failed = 0;
  let maxMs = 0;
  let rssPeak = 0;
  const rss = (async () => {
    while (!over && alive(d)) {
      rssPeak = Math.max(rssPeak, await rssOf(d.pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, 250));
    }
  })();
  while (!over || sent < 5) {
    const t0 = performance.now();
    const r = await d.dig(['SRV', `api.${ZONE}`]).catch(() => null);
    const ok = r !== null && r.status === 'NOERROR' && lists(r, 'web-a') && lists(r, 'web-b');
    maxMs = Math.max(maxMs, Math.round(ok ? performance.now() - t0 : 2000));
    sent++;
    if (!ok) failed++;
    await new Promise((res) => setTimeout(res, 100));
  }
  await rss;
  return { result: await done, sent, failed, maxMs, rssPeak };
}

/** Finding 3: 70 values of 1 MB under one node's prefix, then a daemon starts (a restart, or a new host). */
async function hugeValues(repo: string): Promise<Figures> {
  return inWorld(repo, async (w) => {
    const rssBefore = await rssOf(w.b.pid);
    const d = await during(w.b, writeHugeValues(w.evil, 'evil', 70));
    const t0 = performance.now();
    const c = await startNode(w.lab, w.hosts[2]!, 'web-c', [], w.lab.etcdUrl, { repo });
    const synced = await until(60_000, async () => {
      const r = await c.get('/readyz');
      return r.status === 200 && (JSON.parse(r.body) as { cluster?: { view?: string } }).cluster?.view === 'synced';
    });
    const readyz = await c.get('/readyz');
    return {
      newDaemonSynced: synced ? `yes, ${Math.round(performance.now() - t0)} ms after start` : 'no, within 60 s',
      newDaemonReadyz: `${readyz.status} ${readyz.body.trim().slice(0, 140)}`,
      newDaemonAnswersApi: lists(await c.dig(['SRV', `api.${ZONE}`]), 'web-a'),
      ...dnsFigures(d, rssBefore),
    };
  });
}

/** Finding 4: one node's 5,000 listeners × 64 services on 16 addresses (the 302 MB /sd/prometheus). */
async function wideNode(repo: string): Promise<Figures> {
  return inWorld(repo, async (w) => {
    const rssBefore = await rssOf(w.b.pid);
    const d = await during(w.b, writeWideNode(w.evil, 'evil', 5_000));
    // The view settles (the writes reached it), then Prometheus asks, while a client keeps asking DNS.
    await new Promise((r) => setTimeout(r, 5_000));
    const t0 = performance.now();
    const sd = await during(
      w.b,
      fetch(`http://${w.b.http.host}:${w.b.http.port}/sd/prometheus`, { signal: AbortSignal.timeout(120_000) }).then((r) => r.text()),
    ).catch((err: Error) => ({ result: `failed: ${err.message}`, sent: 0, failed: 0, maxMs: 0, rssPeak: 0 }));
    const sdMs = Math.round(performance.now() - t0);
    const evilTargets = sd.result.startsWith('[') ? (sdTargets(sd.result).get('evil')?.length ?? 0) : sd.result;
    return {
      alive: alive(w.b),
      dnsFailedWhileWritten: `${d.failed}/${d.sent}`,
      dnsMaxMsWhileWritten: d.maxMs,
      sdPrometheusBytes: sd.result.length,
      sdPrometheusMs: sdMs,
      evilTargets,
      dnsFailedDuringSd: `${sd.failed}/${sd.sent}`,
      dnsMaxMsDuringSd: sd.maxMs,
      rssMb: `${mb(rssBefore)} → ${mb(Math.max(d.rssPeak, sd.rssPeak))}`,
      refusedEntries: (await w.b.metric('canonport_cluster_refused_entries_total').catch(() => NaN)) || 0,
    };
  });
}

/** Finding 7: 12,000 made-up a* nodes (claiming pay), a daemon started meanwhile (api: who it admits); then the flood deleted. And --cluster-max-endpoints 10. */
async function flood(repo: string): Promise<Figures> {
  return inWorld(repo, async (w) => {
    const rssBefore = await rssOf(w.b.pid);
    // The made-up nodes claim pay, not api: an SRV of 10,000 hosts fits no DNS message, and api's answer must show
    // who the view admitted (with the flood on api too, the encoding cost is the 800-node case of the suite).
    const d = await during(w.b, writeFakeNodes(w.evil, 12_000, 'pay', PAY));
    await startBackend(w.hosts[2]!, 'grpc', API, 'web-c');
    const c = await startNode(w.lab, w.hosts[2]!, 'web-c', [], w.lab.etcdUrl, { repo });
    const real = (r: Awaited<ReturnType<NodeDaemon['dig']>>) => ['web-a', 'web-b', 'web-c'].filter((n) => lists(r, n)).length;
    let withFlood = 0;
    await until(60_000, async () => (withFlood = real(await c.dig(['SRV', `api.${ZONE}`, '+tcp']))) === 3);
    const t0 = performance.now();
    await w.evil.deletePrefix(`${PREFIX}/v2/nodes/a`);
    let after = 0;
    const back = await until(30_000, async () => (after = real(await c.dig(['SRV', `api.${ZONE}`, '+tcp']))) === 3);
    // The daemon's own listener at --cluster-max-endpoints 10, with 20 made-up nodes' listeners older than it.
    await writeFakeNodes(w.evil, 20, 'api', API);
    await startBackend(w.hosts[3]!, 'grpc', API, 'web-d');
    const e = await startNode(w.lab, w.hosts[3]!, 'web-d', ['--cluster-max-endpoints', '10'], w.lab.etcdUrl, { repo });
    const own = await until(30_000, async () => lists(await e.dig(['SRV', `api.${ZONE}`, '+tcp']), 'web-d'));
    return {
      restartedSeesRealNodesWithFlood: `${withFlood}/3`,
      afterFloodDeleted: back ? `${after}/3 within ${Math.round(performance.now() - t0)} ms` : `${after}/3 after 30 s`,
      ownListenerAtMaxEndpoints10: own,
      ...dnsFigures(d, rssBefore),
    };
  });
}

/** Finding 10: nodes advertising addresses no host can have; a forged lease-less key under a live node. */
async function addresses(repo: string): Promise<Figures> {
  return inWorld(repo, async (w) => {
    await writeImpossibleAddresses(w.evil, 'api', API, { victim: 'web-a', service: 'pay', port: PAY });
    await new Promise((r) => setTimeout(r, 3_000));
    const srv = await w.b.dig(['SRV', `api.${ZONE}`]);
    const dns = [...addressesIn(srv.additional), ...addressesIn((await w.b.dig(['A', `api.${ZONE}`])).answer), ...addressesIn((await w.b.dig(['AAAA', `api.${ZONE}`])).answer)];
    const client = createCanonportClient(`${w.b.grpc.host}:${w.b.grpc.port}`, { tls: false });
    const grpc = await client.resolve(`api.${ZONE}`).then((r) => r.endpoints.map((e) => e.address), () => []);
    client.close();
    const sd = [...sdTargets((await w.b.get('/sd/prometheus')).body).values()].flat();
    const bad = (xs: string[]) => [...new Set(xs.filter((x) => addressProblem(x) !== null))].join(' ') || 'none';
    return {
      badInDns: bad(dns),
      badInResolve: bad(grpc),
      badInSdPrometheus: bad(sd),
      forgedKeyAnswered: lists(await w.b.dig(['SRV', `pay.${ZONE}`]), 'web-a'),
      refusedAddressesCounted: (await w.b.metric('canonport_cluster_refused_addresses_total').catch(() => NaN)) || 0,
    };
  });
}

const RUN: Record<Case, (repo: string) => Promise<Figures>> = { 'huge-values': hugeValues, 'wide-node': wideNode, flood, addresses };

async function main(): Promise<number> {
  const { repos, only } = parseRepoCases(CASES);
  if (process.getuid?.() !== 0) throw new Error('the hostile cluster bench uses network namespaces: run it as root');
  await runRepoCases('hostile-cluster', only, repos, (c, repo) => RUN[c](repo));
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`hostile cluster bench: ${(err as Error).stack ?? String(err)}`);
    process.exit(2);
  },
);
