import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { networkInterfaces } from 'node:os';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { settingEntries } from '../src/config/settings.js';
import type { Daemon } from '../src/daemon/daemon.js';
import { handleSignals } from '../src/daemon/signals.js';
import { createCanonportClient, type CanonportClientOptions } from '../src/grpc/canonport-client.js';
import { createLogger } from '../src/log.js';
import { makeCa, type TestCa, type TestLeaf } from './helpers/certs.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { dig } from './helpers/dig.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { freePort } from './helpers/ports.js';
import { startEtcd, type EtcdCluster } from './helpers/etcd.js';
import { until } from './helpers/cluster.js';
import { bindCanonical, closeServer, type Bound } from './inventory-support.js';
import { RawAds } from './helpers/raw-ads.js';

/**
 * A reload applies what it says: for every setting the table marks
 * reloadable, a daemon started with one value and reloaded with another
 * shows the new value in force on the next query, both after a change to
 * its registry file (the file watch) and after a real SIGHUP delivered to
 * this process (handled by the same code `canonport serve` installs,
 * daemon/signals.ts). Each setting is observed from outside: over DNS from
 * a given source address, or in the daemon's own log lines.
 *
 * Loopback clients are judged by --allow here (trustLoopback: false), so
 * 127.0.0.2 is "allowed" and 127.0.0.3 "outside". gRPC and HTTP always
 * trust loopback: their allow-lists are observed from this machine's own
 * non-loopback address, dialled on a daemon listening on every address.
 */

const Z = 'a.example';
const INSIDE = '127.0.0.2';
const OUTSIDE = '127.0.0.3';

let etcd: EtcdCluster;
/** A listener on a canonical port of this host, bound to the wildcard so cluster mode publishes it. */
let listening: Bound<Server>;
/**
 * A second listening service, so /sd/prometheus has two target groups to page (httpSdMaxGroups); no case ever
 * asks for it, so it is named by nothing (issue 22), whatever names other nodes learned (sdUnnamed).
 */
let second: Bound<Server>;
let upA: FakeUpstream;
let upB: FakeUpstream;
let silent: FakeUpstream;
let seq = 0;
const fresh = () => `www-${++seq}.example.org`;

/** This machine's first non-loopback IPv4 address: a client that is not loopback, without another host. */
const HOST_IP = Object.values(networkInterfaces())
  .flat()
  .find((a) => a && a.family === 'IPv4' && !a.internal)?.address;
/** An address that is not this machine's: what the allow-lists hold when HOST_IP must be outside them. */
const ELSEWHERE = HOST_IP === '203.0.113.77' ? '198.51.100.77' : '203.0.113.77';
let ca: TestCa;
let server: TestLeaf;

beforeAll(async () => {
  if (!HOST_IP) throw new Error('no non-loopback IPv4 address on this machine: the gRPC and HTTP allow-list cases need one to call from');
  ca = makeCa(tempDir('canonport-reload-tls-'));
  server = ca.leaf('daemon');
  etcd = await startEtcd();
  listening = await bindCanonical(['rlda-x', 'rldb-x', 'rldc-x', 'rldd-x', 'rlde-x'], () => createServer((c) => c.destroy()), ['0.0.0.0']);
  second = await bindCanonical(['sdpa', 'sdpb', 'sdpc', 'sdpd'], () => createServer((c) => c.destroy()), ['0.0.0.0']);
  upA = await FakeUpstream.start({ kind: 'answer', address: '192.0.2.1' });
  upB = await FakeUpstream.start({ kind: 'answer', address: '192.0.2.2' });
  silent = await FakeUpstream.start({ kind: 'silent' });
  upA.setMode('*.fail.example', { kind: 'servfail' });
});

afterAll(async () => {
  await Promise.all([upA?.close(), upB?.close(), silent?.close(), etcd?.stop(), ...(listening?.servers ?? []).map(closeServer), ...(second?.servers ?? []).map(closeServer)]);
});

/** Cluster mode on this host alone: what listens here is published to the test's etcd and read back. */
// Its state directory the file's own (removed with it), never the machine's default /var/lib/canonport.
let stateDir: string | undefined;
const clustered = () => ({ cluster: etcd.url, node: `reload-${++seq}`, advertise: ['127.0.0.1'], stateDir: (stateDir ??= tempDir('canonport-reload-state-')) });

/** The SRV answer for the listening service once the cluster view has it (its target is a node name). */
async function observedSrv(s: Subject): Promise<string[]> {
  const name = `${listening.name}.${Z}`;
  for (let i = 0; i < 100; i++) {
    const r = await ask(s, ['SRV', name]);
    const srv = r.answer[0];
    if (srv?.[7]?.endsWith(`.node.${Z}.`)) return srv;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`the cluster view never listed ${name}`);
}

interface Subject {
  daemon: Daemon;
  logs: Record<string, unknown>[];
}

interface Case {
  /** The setting, as the table names it. */
  key: string;
  /** The registry file before and after (the daemon section and top-level keys this case needs). */
  before: () => string;
  after: () => string;
  /** What is observed from outside. */
  observe: (s: Subject) => Promise<unknown>;
  expectBefore: unknown;
  expectAfter: unknown;
  /** Cluster mode's settings need the daemon's inventory running (it publishes what listens here). */
  inventory?: boolean;
  /** Flags the daemon starts with (they stay across the reload). */
  flags?: () => Record<string, unknown>;
}

/** One gRPC call to the daemon at `host`: 'served', or the canonport code it failed with. */
async function grpcCall(s: Subject, host: string, method: 'resolve' | 'inventory', tls: CanonportClientOptions['tls'] = false): Promise<string> {
  const c = createCanonportClient(`${host}:${s.daemon.addresses.grpc.port}`, { tls, timeoutMs: 3000 });
  try {
    await (method === 'resolve' ? c.resolve('api.localhost') : c.inventory());
    return 'served';
  } catch (err) {
    return (err as { code: string }).code;
  } finally {
    c.close();
  }
}

/**
 * Opens `n` TCP connections to `port` at `host` (from `from` when given),
 * and after a moment answers how many the daemon closed: what a connection
 * bound refuses at accept.
 */
async function closedAtAccept(host: string, port: number, n: number, from?: string): Promise<number> {
  const socks = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      // One after another: the last one is the one over the bound.
      new Promise<{ closed: boolean; sock: import('node:net').Socket }>((resolve) => {
        setTimeout(() => {
          const entry = { closed: false, sock: connect({ host, port, ...(from ? { localAddress: from } : {}) }) };
          entry.sock.on('error', () => undefined);
          entry.sock.on('close', () => (entry.closed = true));
          entry.sock.on('connect', () => resolve(entry));
        }, i * 50);
      }),
    ),
  );
  await new Promise((r) => setTimeout(r, 400));
  for (const e of socks) e.sock.destroy();
  return socks.filter((e) => e.closed).length;
}

/** Opens `n` Watch streams on one connection and answers how many the daemon refused (RESOURCE_EXHAUSTED). */
async function watchesRefused(s: Subject, n: number): Promise<number> {
  const c = createCanonportClient(`127.0.0.1:${s.daemon.addresses.grpc.port}`, { tls: false });
  const refused = await Promise.all(
    Array.from({ length: n }, async () => {
      try {
        for await (const _ of c.watch('api.localhost')) break;
        return false;
      } catch (err) {
        return (err as { code?: string }).code === 'CP_WATCH_LIMIT';
      }
    }),
  );
  c.close();
  return refused.filter(Boolean).length;
}

/** Opens ADS streams on one connection (`names` names each) and answers how many ended RESOURCE_EXHAUSTED. */
async function adsRefused(s: Subject, streams: number, names: number): Promise<number> {
  const open = Array.from({ length: streams }, () => new RawAds(`127.0.0.1:${s.daemon.addresses.grpc.port}`));
  for (const a of open) a.send('cluster', Array.from({ length: names }, (_, i) => `n${i}.localhost`));
  await new Promise((r) => setTimeout(r, 500));
  const refused = open.filter((a) => a.status?.code === grpc.status.RESOURCE_EXHAUSTED).length;
  for (const a of open) a.cancel();
  return refused;
}

/** Every address, for the gRPC and HTTP cases: the allow-lists are what is observed. */
const everywhere = () => ({ grpc: '0.0.0.0:0', http: '0.0.0.0:0' });

const registry = (daemon: Record<string, unknown>, top = ''): string =>
  `zones: [${Z}]\n${top}daemon:\n${Object.entries({ upstreams: [upA.address], allow: [`${INSIDE}/32`], ...daemon })
    .map(([k, v]) => `  ${k}: ${JSON.stringify(v)}`)
    .join('\n')}\n`;

const ask = (s: Subject, args: string[], from = INSIDE) => dig(s.daemon.addresses.dns, ['-b', from, '+time=6', ...args]);

const CASES: Case[] = [
  {
    key: 'zones',
    before: () => registry({ zones: [Z] }),
    after: () => registry({ zones: [Z, 'b.example'] }),
    observe: async (s) => (await ask(s, ['SRV', 'api.b.example'])).answer[0]?.[6] ?? 'not answered here',
    expectBefore: 'not answered here',
    expectAfter: '12082',
  },
  {
    key: 'upstreams',
    before: () => registry({}),
    after: () => registry({ upstreams: [upB.address] }),
    observe: async (s) => (await ask(s, ['A', fresh()])).answer[0]?.[4],
    expectBefore: '192.0.2.1',
    expectAfter: '192.0.2.2',
  },
  {
    key: 'allow',
    before: () => registry({}),
    after: () => registry({ allow: [`${INSIDE}/32`, `${OUTSIDE}/32`] }),
    observe: async (s) => (await ask(s, ['A', fresh()], OUTSIDE)).status,
    expectBefore: 'REFUSED',
    expectAfter: 'NOERROR',
  },
  {
    key: 'canonicalClients',
    before: () => registry({ canonicalClients: 'any' }),
    after: () => registry({ canonicalClients: 'allowed' }),
    observe: async (s) => (await ask(s, ['SRV', `api.${Z}`], OUTSIDE)).status,
    expectBefore: 'NOERROR',
    expectAfter: 'REFUSED',
  },
  {
    key: 'logLevel',
    before: () => registry({ logLevel: 'info' }),
    after: () => registry({ logLevel: 'debug' }),
    // Every upstream failing is logged at debug only.
    observe: async (s) => {
      const name = `x${++seq}.fail.example`;
      await ask(s, ['A', name]);
      return s.logs.some((l) => l.code === 'CP_UPSTREAM_FAILED' && String(l.key).startsWith(name));
    },
    expectBefore: false,
    expectAfter: true,
  },
  {
    key: 'queryLog',
    before: () => registry({ queryLog: 0 }),
    after: () => registry({ queryLog: 1 }),
    observe: async (s) => {
      const name = `q${++seq}.${Z}`;
      await ask(s, ['SRV', name]);
      return s.logs.some((l) => l.event === 'query' && l.name === name);
    },
    expectBefore: false,
    expectAfter: true,
  },
  {
    key: 'upstreamTimeoutMs',
    before: () => registry({ upstreams: [silent.address], upstreamTimeoutMs: 3000 }),
    after: () => registry({ upstreams: [silent.address], upstreamTimeoutMs: 100 }),
    // Wide bounds around 3 s and 0.1 s: which timeout is in force, not how fast anything is.
    observe: async (s) => {
      const started = Date.now();
      const r = await ask(s, ['A', fresh()]);
      const ms = Date.now() - started;
      return `${r.status} after ${ms >= 2500 ? 'the long timeout' : ms < 1500 ? 'the short timeout' : `${ms} ms`}`;
    },
    expectBefore: 'SERVFAIL after the long timeout',
    expectAfter: 'SERVFAIL after the short timeout',
  },
  {
    key: 'cacheSize',
    before: () => registry({ cacheSize: 50 }),
    after: () => registry({ cacheSize: 3 }),
    observe: async (s) => {
      for (let i = 0; i < 8; i++) await ask(s, ['A', fresh()]);
      return s.daemon.cacheSize <= 3 ? 'at most 3' : `${s.daemon.cacheSize} entries`;
    },
    expectBefore: '8 entries',
    expectAfter: 'at most 3',
  },
  {
    key: 'rateLimit',
    before: () => registry({ rateLimit: 0 }),
    after: () => registry({ rateLimit: 1 }),
    // A burst of 10 forwarded queries from one client: a limit of 1/s (burst 2) refuses some.
    observe: async (s) => {
      const r = await Promise.all(Array.from({ length: 10 }, () => ask(s, ['A', fresh()])));
      return r.some((x) => x.status === 'REFUSED');
    },
    expectBefore: false,
    expectAfter: true,
  },
  {
    key: 'maxInflight',
    before: () => registry({ upstreams: [silent.address], upstreamTimeoutMs: 1500, maxInflight: 100 }),
    after: () => registry({ upstreams: [silent.address], upstreamTimeoutMs: 1500, maxInflight: 1 }),
    // Three distinct questions at once to an upstream that never answers: over the cap, one is failed at once.
    observe: async (s) => {
      const before = (await s.daemon.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'inflight_cap')?.value ?? 0;
      await Promise.all([fresh(), fresh(), fresh()].map((n) => ask(s, ['A', n])));
      const after = (await s.daemon.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'inflight_cap')?.value ?? 0;
      return after > before;
    },
    expectBefore: false,
    expectAfter: true,
  },
  {
    key: 'grpcAllow',
    flags: everywhere,
    before: () => registry({ grpcAllow: [ELSEWHERE], httpAllow: [ELSEWHERE] }),
    after: () => registry({ grpcAllow: [ELSEWHERE, HOST_IP], httpAllow: [ELSEWHERE] }),
    observe: (s) => grpcCall(s, HOST_IP!, 'resolve'),
    expectBefore: 'CP_ACCESS_DENIED',
    expectAfter: 'served',
  },
  {
    key: 'httpAllow',
    flags: everywhere,
    before: () => registry({ grpcAllow: [ELSEWHERE], httpAllow: [ELSEWHERE] }),
    after: () => registry({ grpcAllow: [ELSEWHERE], httpAllow: [HOST_IP] }),
    observe: async (s) => (await fetch(`http://${HOST_IP}:${s.daemon.addresses.http.port}/metrics`)).status,
    expectBefore: 403,
    expectAfter: 200,
  },
  {
    key: 'insecureListen',
    flags: everywhere,
    // Without it, the reload that drops the allow-lists would be refused: it is what lets everyone in.
    before: () => registry({ grpcAllow: [ELSEWHERE], httpAllow: [ELSEWHERE], insecureListen: false }),
    after: () => registry({ insecureListen: true }),
    observe: (s) => grpcCall(s, HOST_IP!, 'resolve'),
    expectBefore: 'CP_ACCESS_DENIED',
    expectAfter: 'served',
  },
  {
    key: 'inventoryAllow',
    flags: everywhere,
    before: () => registry({ grpcAllow: [HOST_IP], httpAllow: [ELSEWHERE] }),
    after: () => registry({ grpcAllow: [HOST_IP], httpAllow: [ELSEWHERE], inventoryAllow: [ELSEWHERE] }),
    observe: async (s) => `${await grpcCall(s, HOST_IP!, 'resolve')}, inventory ${await grpcCall(s, HOST_IP!, 'inventory')}`,
    expectBefore: 'served, inventory served',
    expectAfter: 'served, inventory CP_ACCESS_DENIED',
  },
  {
    key: 'inventoryRequireCert',
    // Client certificates optional at the handshake: a TLS client without one.
    flags: () => ({ grpcTlsCert: server.cert, grpcTlsKey: server.key, grpcTlsClientCa: ca.cert, grpcTlsClientAuth: 'optional' }),
    before: () => registry({ inventoryRequireCert: false }),
    after: () => registry({ inventoryRequireCert: true }),
    observe: (s) => grpcCall(s, '127.0.0.1', 'inventory', { ca: ca.cert }),
    expectBefore: 'served',
    expectAfter: 'CP_ACCESS_DENIED',
  },
  {
    key: 'identity',
    before: () => registry({ identity: 'answer' }),
    after: () => registry({ identity: 'hide' }),
    observe: async (s) => (await ask(s, ['CH', 'TXT', 'version.bind'])).status,
    expectBefore: 'NOERROR',
    expectAfter: 'REFUSED',
  },
  {
    key: 'observedTtl',
    before: () => registry({ ...clustered(), observedTtl: 5 }),
    after: () => registry({ ...clustered(), observedTtl: 2 }),
    inventory: true,
    observe: async (s) => (await observedSrv(s))[1],
    expectBefore: '5',
    expectAfter: '2',
  },
  {
    key: 'onlyListening',
    before: () => registry({ ...clustered(), onlyListening: false }),
    after: () => registry({ ...clustered(), onlyListening: true }),
    inventory: true,
    // A service no host runs: the single-host answer, then (--only-listening) nothing.
    observe: async (s) => {
      await observedSrv(s); // the view is synced
      return (await ask(s, ['SRV', `nobody-runs-this.${Z}`])).status;
    },
    expectBefore: 'NOERROR',
    expectAfter: 'NXDOMAIN',
  },
  // The bounds of issue 21: each in force from the next connection or stream after a reload.
  {
    key: 'connectionsPerSource',
    flags: everywhere,
    before: () => registry({ grpcAllow: [ELSEWHERE], httpAllow: [HOST_IP], connectionsPerSource: 32 }),
    after: () => registry({ grpcAllow: [ELSEWHERE], httpAllow: [HOST_IP], connectionsPerSource: 2 }),
    // Loopback is exempt: this machine's own non-loopback address is the source.
    observe: (s) => closedAtAccept(HOST_IP!, s.daemon.addresses.http.port, 3, HOST_IP),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'dnsTcpMaxConnections',
    before: () => registry({ dnsTcpMaxConnections: 256 }),
    after: () => registry({ dnsTcpMaxConnections: 2 }),
    observe: (s) => closedAtAccept(s.daemon.addresses.dns.host, s.daemon.addresses.dns.port, 3, INSIDE),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'grpcMaxConnections',
    before: () => registry({ grpcMaxConnections: 1024 }),
    after: () => registry({ grpcMaxConnections: 2 }),
    observe: (s) => closedAtAccept('127.0.0.1', s.daemon.addresses.grpc.port, 3),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'httpMaxConnections',
    before: () => registry({ httpMaxConnections: 128 }),
    after: () => registry({ httpMaxConnections: 4 }),
    observe: (s) => closedAtAccept('127.0.0.1', s.daemon.addresses.http.port, 5),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'watchMaxStreams',
    before: () => registry({ watchMaxStreams: 100 }),
    after: () => registry({ watchMaxStreams: 2 }),
    observe: (s) => watchesRefused(s, 3),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'watchMaxStreamsPerClient',
    before: () => registry({ watchMaxStreamsPerClient: 100 }),
    after: () => registry({ watchMaxStreamsPerClient: 2 }),
    observe: (s) => watchesRefused(s, 3),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'xdsMaxStreams',
    before: () => registry({ xdsMaxStreams: 100 }),
    after: () => registry({ xdsMaxStreams: 2 }),
    observe: (s) => adsRefused(s, 3, 1),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'xdsMaxStreamsPerClient',
    before: () => registry({ xdsMaxStreamsPerClient: 100 }),
    after: () => registry({ xdsMaxStreamsPerClient: 2 }),
    observe: (s) => adsRefused(s, 3, 1),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'xdsMaxNames',
    before: () => registry({ xdsMaxNames: 1000 }),
    after: () => registry({ xdsMaxNames: 3 }),
    observe: (s) => adsRefused(s, 1, 5),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'xdsMaxNamesPerClient',
    before: () => registry({ xdsMaxNamesPerClient: 1000 }),
    after: () => registry({ xdsMaxNamesPerClient: 3 }),
    observe: (s) => adsRefused(s, 1, 5),
    expectBefore: 0,
    expectAfter: 1,
  },
  {
    key: 'httpSdMaxGroups',
    before: () => registry({ ...clustered(), httpSdMaxGroups: 100 }),
    after: () => registry({ ...clustered(), httpSdMaxGroups: 1 }),
    inventory: true,
    // The two listening services of this host (`listening`, `second`), one target group each: one page, then one
    // page each. Each listener is published after its first readiness verdict, at its own moment: judged once both are.
    observe: async (s) => {
      await observedSrv(s);
      let pages = 0;
      await until('two target groups in /sd/prometheus', async () => {
        // Unnamed listeners too (issue 22): `second` is named by nothing.
        const r = await fetch(`http://127.0.0.1:${s.daemon.addresses.http.port}/sd/prometheus?unnamed=true`);
        await r.arrayBuffer();
        pages = Number(r.headers.get('x-canonport-pages'));
        return Number(r.headers.get('x-canonport-groups')) >= 2 ? true : undefined;
      });
      return pages > 1 ? 'paged' : 'one page';
    },
    expectBefore: 'one page',
    expectAfter: 'paged',
  },
  {
    key: 'preferLocal',
    before: () => registry({ ...clustered(), preferLocal: true }),
    after: () => registry({ ...clustered(), preferLocal: false }),
    inventory: true,
    // This host runs the service: its own endpoint is marked local (and listed first) only while local first is on.
    // (Earlier cases' daemons, stopped without leaving, may still be listed under their names until their leases end.)
    observe: async (s) => {
      await observedSrv(s);
      const client = createCanonportClient(s.daemon.addresses.grpc);
      try {
        for (let i = 0; i < 100; i++) {
          const eps = (await client.resolve(`${listening.name}.${Z}`)).endpoints;
          const own = eps.find((e) => e.node === s.daemon.cluster!.nodeName);
          if (own) return `${String(own.local)}${own.local ? `, first: ${String(eps[0] === own)}` : ''}`;
          await new Promise((r) => setTimeout(r, 100));
        }
        return 'this daemon\'s own endpoint never showed';
      } finally {
        client.close();
      }
    },
    expectBefore: 'true, first: true',
    expectAfter: 'false',
  },
  {
    // Read by every probe's timer when it schedules the next one.
    key: 'readyInterval',
    before: () => registry({ readyInterval: 1000 }),
    after: () => registry({ readyInterval: 300 }),
    observe: async (s) => String(s.daemon.config.readyInterval),
    expectBefore: '1000',
    expectAfter: '300',
  },
  // Names (issue 22). Unnamed listeners in /sd/prometheus, observed from outside: `second`, which nobody asks for
  // and whose process (this test's) is not called by a name of its port, is named by nothing.
  {
    key: 'sdUnnamed',
    before: () => registry({ ...clustered(), processNames: false, sdUnnamed: false }),
    after: () => registry({ ...clustered(), processNames: false, sdUnnamed: true }),
    inventory: true,
    observe: async (s) => {
      await observedSrv(s); // the view has this host's listeners (second came in the same scan)
      const groups = (await (await fetch(`http://127.0.0.1:${s.daemon.addresses.http.port}/sd/prometheus`)).json()) as { labels: Record<string, string> }[];
      return groups.some((g) => g.labels.__meta_canonport_port === String(second.port) && g.labels.__meta_canonport_name_source === 'none') ? 'listed' : 'left out';
    },
    expectBefore: 'left out',
    expectAfter: 'listed',
  },
  // Read where they are used (each query, each scan), as readyInterval: the value in force is what is observed.
  {
    key: 'learnNames',
    before: () => registry({ learnNames: true }),
    after: () => registry({ learnNames: false }),
    observe: async (s) => String(s.daemon.config.learnNames),
    expectBefore: 'true',
    expectAfter: 'false',
  },
  {
    key: 'learnedNameTtl',
    before: () => registry({ learnedNameTtl: 86_400 }),
    after: () => registry({ learnedNameTtl: 600 }),
    observe: async (s) => String(s.daemon.config.learnedNameTtl),
    expectBefore: '86400',
    expectAfter: '600',
  },
  // Containers and pods (issue 26): read by the inventory at every scan (namespaces.ts), as readyInterval: the value in
  // force is what is observed. The test daemons' `--namespaces own` flag is left out here so the registry's value counts.
  {
    key: 'namespaces',
    flags: () => ({ namespaces: undefined }),
    before: () => registry({ namespaces: 'all' }),
    after: () => registry({ namespaces: 'own' }),
    observe: async (s) => String(s.daemon.config.namespaces),
    expectBefore: 'all',
    expectAfter: 'own',
  },
  {
    key: 'containerNetworks',
    before: () => registry({ containerNetworks: ['10.244.0.0/16'] }),
    after: () => registry({ containerNetworks: ['10.42.0.0/16', 'fd00:42::/64'] }),
    observe: async (s) => s.daemon.config.containerNetworks.map((c) => c.text).join(' '),
    expectBefore: '10.244.0.0/16',
    expectAfter: '10.42.0.0/16 fd00:42::/64',
  },
  {
    key: 'processNames',
    before: () => registry({ processNames: true }),
    after: () => registry({ processNames: false }),
    observe: async (s) => String(s.daemon.config.processNames),
    expectBefore: 'true',
    expectAfter: 'false',
  },
  {
    // Read when the daemon stops.
    key: 'leaveOnTerminate',
    before: () => registry({ leaveOnTerminate: false }),
    after: () => registry({ leaveOnTerminate: true }),
    observe: async (s) => String(s.daemon.config.leaveOnTerminate),
    expectBefore: 'false',
    expectAfter: 'true',
  },
  {
    key: 'ttl',
    before: () => registry({}, 'ttl: 60\n'),
    after: () => registry({}, 'ttl: 7\n'),
    observe: async (s) => (await ask(s, ['SRV', `api.${Z}`])).answer[0]?.[1],
    expectBefore: '60',
    expectAfter: '7',
  },
];

/** Starts a daemon on `file`, logging into an array. */
async function subject(file: string, watchRegistry: boolean, inventory = false, flags: Record<string, unknown> = {}): Promise<Subject> {
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const daemon = await startDaemon({ registry: file, ...flags }, { logger: createLogger({ destination: sink, format: 'json' }), trustLoopback: false, watchRegistry, inventory });
  return { daemon, logs };
}

function reloaded(d: Daemon): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no reload within 10 s')), 10_000);
    d.events.once('reload', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

describe('every reloadable setting is in force after a reload', () => {
  it('covers every setting the table marks reloadable, and no other', () => {
    const reloadable = settingEntries()
      .filter(([, s]) => s.applies === 'reload')
      .map(([k]) => k)
      .sort();
    expect(CASES.map((c) => c.key).sort()).toEqual(reloadable);
  });

  describe.each(['a change to the registry file', 'SIGHUP'] as const)('after %s', (trigger) => {
    it.each(CASES.map((c) => [c.key, c] as const))('%s', async (_key, c) => {
      const file = writeRegistry(c.before(), tempDir());
      const s = await subject(file, trigger !== 'SIGHUP', c.inventory, c.flags?.());
      const signals = trigger === 'SIGHUP' ? handleSignals(s.daemon, s.daemon.logger, 1000) : null;
      try {
        expect(await c.observe(s)).toEqual(c.expectBefore);
        const done = reloaded(s.daemon);
        writeFileSync(file, c.after());
        if (trigger === 'SIGHUP') process.kill(process.pid, 'SIGHUP');
        await done;
        expect(await c.observe(s)).toEqual(c.expectAfter);
      } finally {
        signals?.dispose();
        await s.daemon.close(0);
      }
    });
  });
});

describe('a restart-only setting changed by a reload', () => {
  it('logs CP_RESTART_NEEDED naming each, keeps serving on the running address, and applies the rest', async () => {
    const [running, configured] = [await freePort(), await freePort()];
    const file = writeRegistry(registry({ dns: `127.0.0.1:${running}`, workers: 1 }, 'ttl: 60\n'), tempDir());
    // No --dns flag: the address comes from the file's daemon section, as the change does.
    const s = await subject(file, true, false, { dns: undefined });
    try {
      expect(s.daemon.addresses.dns.port).toBe(running);
      const done = reloaded(s.daemon);
      writeFileSync(file, registry({ dns: `127.0.0.1:${configured}`, workers: 2 }, 'ttl: 7\n'));
      await done;
      const restart = s.logs
        .filter((l) => l.code === 'CP_RESTART_NEEDED')
        .map((l) => ({ setting: l.setting, running: l.running, configured: l.configured, level: l.level, msg: l.msg }));
      expect(restart).toEqual([
        { setting: 'dns', running: `127.0.0.1:${running}`, configured: `127.0.0.1:${configured}`, level: 40, msg: `--dns changed: restart to apply (still running with "127.0.0.1:${running}")` },
        { setting: 'workers', running: 1, configured: 2, level: 40, msg: '--workers changed: restart to apply (still running with 1)' },
      ]);
      // The reload itself went through: the reloadable ttl is in force, answered on the running address...
      expect(s.daemon.config.dns.port).toBe(running);
      expect(s.daemon.config.workers).toBe(1);
      const r = await ask(s, ['SRV', `api.${Z}`]);
      expect(r.status).toBe('NOERROR');
      expect(r.answer[0]?.[1]).toBe('7');
      // ...and nothing took the configured one: it can still be bound here.
      const probe = createSocket('udp4');
      try {
        await new Promise<void>((resolve, reject) => {
          probe.once('error', reject);
          probe.bind({ address: '127.0.0.1', port: configured, exclusive: true }, () => resolve());
        });
      } finally {
        probe.close();
      }
    } finally {
      await s.daemon.close(0);
    }
  });
});
