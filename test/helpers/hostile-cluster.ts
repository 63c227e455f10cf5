import { createCanonportClient } from '../../src/grpc/canonport-client.js';
import type { NodeDaemon } from './cluster-lab.js';
import { srvTargets, ZONE } from './cluster-lab.js';
import { instanceKey, instanceValue, nodeKey, nodeValue, type EtcdWriter } from './etcd-writer.js';

/**
 * Issue 21's attacks from an etcd writer (findings 3, 4, 7, 10), shared by
 * test/hostile-cluster.test.ts (which asserts the bounds) and
 * bench/hostile-cluster.ts (which prints the figures, for main and a
 * branch side by side). The attacker writes with a real etcd client from
 * the lab's root namespace; the daemons it attacks are real `canonport
 * serve --cluster` processes in their hosts (cluster-lab.ts).
 */

export const PREFIX = '/canonport';

/** What a client of one daemon saw while an attack ran. */
export interface Served {
  /** Rounds of checks: dig SRV, GET /healthz, gRPC Resolve. */
  asked: number;
  /** What went wrong, one line each (empty: served throughout). */
  failures: string[];
  /** The slowest DNS answer, ms (a timeout counts as 2,000): the event loop's stall, as a client sees it. */
  maxDnsMs: number;
}

/**
 * Asks `d` every `everyMs` until stop(): an SRV for `service` must list
 * every node of `nodes` (others may be listed too), /healthz must answer
 * 200, and gRPC Resolve must name every one of `nodes`. Each check is
 * bounded (dig: 2 s; HTTP and gRPC: 5 s). stop() lets at least `min`
 * rounds finish, so a quick attack is watched too.
 */
export function keepServed(d: NodeDaemon, service: string, nodes: readonly string[], everyMs = 250, min = 3): { stop(): Promise<Served> } {
  const client = createCanonportClient(`${d.grpc.host}:${d.grpc.port}`, { tls: false });
  const out: Served = { asked: 0, failures: [], maxDnsMs: 0 };
  let running = true;
  const fail = (what: string) => out.failures.length < 50 && out.failures.push(what);
  const loop = (async () => {
    while (running || out.asked < min) {
      const t0 = performance.now();
      const r = await d.dig(['SRV', `${service}.${ZONE}`]).catch((err: Error) => ({ status: `dig: ${err.message}`, answer: [] as string[][], raw: '' }));
      const ms = r.status === 'NOERROR' ? performance.now() - t0 : 2000;
      out.maxDnsMs = Math.max(out.maxDnsMs, Math.round(ms));
      const targets = r.status === 'NOERROR' ? srvTargets(r as Parameters<typeof srvTargets>[0]) : [];
      const missing = nodes.filter((n) => !targets.some((t) => t.endsWith(` ${n}.node.${ZONE}.`)));
      if (r.status !== 'NOERROR' || missing.length) fail(`SRV ${service} at ${d.name}: ${r.status}, missing ${missing.join(', ')}`);
      const health = await fetch(`http://${d.http.host}:${d.http.port}/healthz`, { signal: AbortSignal.timeout(5_000) }).then((res) => res.status, (err: Error) => err.message);
      if (health !== 200) fail(`/healthz at ${d.name}: ${health}`);
      const resolved = await Promise.race([
        client.resolve(`${service}.${ZONE}`).then((res) => res.endpoints.map((e) => e.node ?? ''), (err: Error) => err.message),
        new Promise<string>((res) => setTimeout(() => res('Resolve: no answer within 5 s'), 5_000)),
      ]);
      if (typeof resolved === 'string' || nodes.some((n) => !resolved.includes(n))) fail(`Resolve ${service} at ${d.name}: ${typeof resolved === 'string' ? resolved : resolved.join(',')}`);
      out.asked++;
      await new Promise((res) => setTimeout(res, everyMs));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      client.close();
      return out;
    },
  };
}

/** Finding 3: `count` values of `bytes` each under node `node`'s own instance keys (under a live lease). */
export async function writeHugeValues(w: EtcdWriter, node: string, count: number, bytes = 1_000_000): Promise<void> {
  const big = Buffer.alloc(bytes, 'x');
  await w.putAll(Array.from({ length: count }, (_, i) => [instanceKey(PREFIX, node, 20000 + i), big] as [string, Buffer]), { live: true, concurrency: 4 });
}

/** Sixteen unicast addresses nobody uses in the lab, for made-up nodes. */
export function madeUpAddresses(second: number, count = 16): string[] {
  return Array.from({ length: count }, (_, i) => `10.${second}.0.${i + 1}`);
}

/**
 * Finding 4: one node (its record, under a live lease) with `instances`
 * listeners, each claiming `services` names on every one of its 16
 * addresses: what a host with thousands of sockets, or a writer of its own
 * prefix, publishes.
 */
export async function writeWideNode(w: EtcdWriter, node: string, instances: number, services = 64): Promise<void> {
  await w.put(nodeKey(PREFIX, node), nodeValue(node, madeUpAddresses(99)), { live: true });
  const names = Array.from({ length: services }, (_, i) => `svc-${String(i).padStart(2, '0')}`);
  await w.putAll(
    Array.from({ length: instances }, (_, i) => [instanceKey(PREFIX, node, 30000 + i), instanceValue(30000 + i, names)] as [string, string]),
    { live: true, concurrency: 16 },
  );
}

/**
 * Finding 7: `count` made-up nodes named a000…, each under a live lease,
 * each with one listener for `service` on `port`: in key order they come
 * before any real node named web-*.
 */
export async function writeFakeNodes(w: EtcdWriter, count: number, service: string, port: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `a${String(i).padStart(3, '0')}`);
  await w.putAll(
    names.flatMap((n, i) => [
      [nodeKey(PREFIX, n), nodeValue(n, [`10.98.${Math.floor(i / 250)}.${(i % 250) + 1}`])] as [string, string],
      [instanceKey(PREFIX, n, port), instanceValue(port, [service])] as [string, string],
    ]),
    { live: true, concurrency: 16 },
  );
  return names;
}

/** Finding 10: the addresses no host can have, as the issue lists them. */
export const IMPOSSIBLE = ['127.0.0.1', '0.0.0.0', '::', '224.0.0.1', '255.255.255.255', '169.254.169.254'];

/**
 * Finding 10: node `void` advertises only impossible addresses, node
 * `half` one real address besides three impossible ones; both run
 * `service` on `port`. And a forged key: `service2` on `port2` under
 * `victim`'s prefix, written without a lease.
 */
export async function writeImpossibleAddresses(w: EtcdWriter, service: string, port: number, forged: { victim: string; service: string; port: number }): Promise<{ real: string }> {
  const real = '10.97.0.5';
  await w.put(nodeKey(PREFIX, 'void'), nodeValue('void', IMPOSSIBLE), { live: true });
  await w.put(instanceKey(PREFIX, 'void', port), instanceValue(port, [service]), { live: true });
  await w.put(nodeKey(PREFIX, 'half'), nodeValue('half', [real, '127.0.0.1', '169.254.169.254', 'ff02::1']), { live: true });
  await w.put(instanceKey(PREFIX, 'half', port), instanceValue(port, [service]), { live: true });
  await w.put(instanceKey(PREFIX, forged.victim, forged.port), instanceValue(forged.port, [forged.service]));
  return { real };
}

/** Every address in a dig section's A/AAAA lines. */
export function addressesIn(lines: string[][]): string[] {
  return lines.filter((l) => l[3] === 'A' || l[3] === 'AAAA').map((l) => l[4]!);
}

/** Target addresses (without port) of /sd/prometheus target groups, by node. */
export function sdTargets(json: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const g of JSON.parse(json) as { targets: string[]; labels: Record<string, string> }[]) {
    const node = g.labels.__meta_canonport_node ?? '';
    const list = out.get(node) ?? [];
    for (const t of g.targets) list.push(t.startsWith('[') ? t.slice(1, t.lastIndexOf(']')) : t.slice(0, t.lastIndexOf(':')));
    out.set(node, list);
  }
  return out;
}
