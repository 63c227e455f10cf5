import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeInstance, encodeNode, instanceKey, nodeKey } from '../src/cluster/keys.js';
import { observedFrom } from '../src/cluster/observed.js';
import { ClusterView } from '../src/cluster/view.js';
import { requestKey, ServerRequest, type DnsReply } from '../src/dns/request.js';
import { parseQuery } from '../src/dns/wire.js';
import { base32Port } from '../src/scheme/index.js';
import { buildQuery, parseMessage, T } from './helpers/dns-wire.js';
import { buildConfig } from '../src/config/config.js';
import { classifyName } from '../src/core/service-name.js';
import type { ServingState } from '../src/core/state.js';
import { Discovery } from '../src/discovery/discovery.js';
import { EtcHosts } from '../src/discovery/etc-hosts.js';
import { accessPolicy } from '../src/dns/access.js';
import { DnsChain } from '../src/dns/chain.js';
import { Forwarder } from '../src/dns/forwarder.js';
import type { PluginDeps } from '../src/dns/pipeline.js';
import { aclPlugin } from '../src/dns/plugins/acl/acl.js';
import { localPlugin } from '../src/dns/plugins/local/local.js';
import { silentLogger } from '../src/log.js';
import { Metrics } from '../src/metrics/metrics.js';
import { parseRegistry } from '../src/registry/load.js';
import { tempDir } from './helpers/daemon.js';
import { runCases, type Case } from './helpers/stage-harness.js';

/**
 * Each DNS plugin on its own, and the whole chain, driven by case tables
 * (helpers/stage-harness.ts): a question in, the sections expected out.
 * No sockets: the stages are called as the server calls them.
 */

const Z = 'cluster-1.example.com';
const REGISTRY = `zones: [${Z}]
ttl: 60
hosts:
  api.${Z}: [10.0.0.5, fd00::5]
services:
  legacy: { port: 4242 }
  user: { id: 1, versions: [1, 2] }
  cat: {}
  caterpillar: {}
`;

function world(flags: Parameters<typeof buildConfig>[0] = {}) {
  const registry = parseRegistry(REGISTRY, 'test.yaml');
  const state: ServingState = { registry, zones: ['localhost', Z] };
  const dir = tempDir();
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, `10.0.0.9 web.${Z}\n`);
  const metrics = new Metrics({ defaultMetrics: false });
  const forwarder = new Forwarder({ metrics, logger: silentLogger, now: Date.now }, { upstreams: [], timeoutMs: 100, maxInflight: 8 });
  const discovery = new Discovery({ state: () => state, hosts: new EtcHosts(hostsFile) });
  const deps: PluginDeps = { state: () => state, discovery, forwarder, metrics, logger: silentLogger, now: Date.now };
  const config = buildConfig({ upstreams: [], ...flags }, {}, registry);
  // What the server asks per query: how the name reads, and (the chain's access policy) whether the client may recurse.
  const access = accessPolicy(config, { trustLoopback: true });
  const reader = { classify: (lname: string) => classifyName(lname, state.zones, registry), mayRecurse: (a: string) => access.mayRecurse(a) };
  return { deps, config, reader };
}

const SOA = `${Z}. 60 IN SOA ns.${Z}. hostmaster.${Z}. (minimum 60)`;

describe('local plugin', () => {
  const cases: Case[] = [
    { qname: `api.${Z}`, qtype: 'SRV', rcode: 'NOERROR', aa: true, answer: [`api.${Z}. 60 IN SRV 0 0 12082 api.${Z}.`], extra: [`api.${Z}. 60 IN A 10.0.0.5`, `api.${Z}. 60 IN AAAA fd00::5`] },
    { qname: `_api._tcp.${Z}`, qtype: 'SRV', rcode: 'NOERROR', answer: [`_api._tcp.${Z}. 60 IN SRV 0 0 12082 api.${Z}.`] },
    // The question comes back as asked (0x20), and the answer's owner points at it.
    { qname: `API.${Z.toUpperCase()}`, qtype: 'A', rcode: 'NOERROR', answer: [`API.${Z.toUpperCase()}. 60 IN A 10.0.0.5`] },
    { qname: `web.${Z}`, qtype: 'A', rcode: 'NOERROR', answer: [`web.${Z}. 60 IN A 10.0.0.9`] },
    { qname: `web.${Z}`, qtype: 'AAAA', rcode: 'NOERROR', answer: [], ns: [SOA] },
    { qname: `_api._tcp.${Z}`, qtype: 'A', rcode: 'NOERROR', answer: [], ns: [SOA] },
    { qname: `legacy.${Z}`, qtype: 'SRV', rcode: 'NOERROR', answer: [`legacy.${Z}. 60 IN SRV 0 0 4242 legacy.${Z}.`], extra: [] },
    { qname: `v1.user.${Z}`, qtype: 'TXT', rcode: 'NOERROR', answer: [`v1.user.${Z}. 60 IN TXT "port=8101" "scheme=versioned" "prefix=6t5" "version=1"`] },
    { qname: `cat.${Z}`, qtype: 'TXT', rcode: 'NOERROR', answer: [`cat.${Z}. 60 IN TXT "port=13661" "scheme=base32" "prefix=cat" "collision=shares port 13661 with caterpillar"`] },
    { qname: `v3.user.${Z}`, qtype: 'SRV', rcode: 'NXDOMAIN', aa: true, answer: [], ns: [SOA] },
    { qname: `_x.${Z}`, qtype: 'SRV', rcode: 'NXDOMAIN', ns: [SOA] },
    { qname: Z, qtype: 'SOA', rcode: 'NOERROR', answer: [SOA] },
    { qname: Z, qtype: 'SRV', rcode: 'NOERROR', answer: [], ns: [SOA] },
    { qname: `_tcp.${Z}`, qtype: 'SRV', rcode: 'NOERROR', answer: [], ns: [SOA] },
    { qname: `api.${Z}`, qtype: 'ANY', rcode: 'NOERROR', answer: [`api.${Z}. 60 IN SRV 0 0 12082 api.${Z}.`] },
    { qname: 'api.localhost', qtype: 'A', rcode: 'NOERROR', answer: ['api.localhost. 60 IN A 127.0.0.1'] },
    { qname: 'api.localhost', qtype: 'SRV', rcode: 'NOERROR', answer: ['api.localhost. 60 IN SRV 0 0 12082 api.localhost.'], extra: ['api.localhost. 60 IN A 127.0.0.1', 'api.localhost. 60 IN AAAA ::1'] },
    { qname: `api.${Z}`, qtype: 'SRV', qclass: 3, rcode: 'REFUSED' },
    // Zone transfers and meta types get what they get for any name (question-policy.ts).
    { qname: Z, qtype: 252, rcode: 'REFUSED' },
    { qname: `api.${Z}`, qtype: 250, rcode: 'NOTIMP' },
    { qname: 'www.example.org', qtype: 'A', rcode: 'REFUSED', next: true },
  ];

  it('answers its zones from the discovery core, and passes everything else on', async () => {
    const { deps, config, reader } = world();
    await runCases(localPlugin.create(deps, localPlugin.setup(config, { trustLoopback: true })), cases, reader);
  });
});

describe('acl plugin', () => {
  it('lets loopback and --allow through, refuses recursion to others, answers them about the zones', async () => {
    const { deps, config, reader } = world({ allow: ['10.1.0.0/16'] });
    const acl = aclPlugin.create(deps, aclPlugin.setup(config, { trustLoopback: true }));
    await runCases(
      acl,
      [
        { qname: 'www.example.org', qtype: 'A', client: '127.0.0.1', rcode: 'REFUSED', next: true },
        { qname: 'www.example.org', qtype: 'A', client: '10.1.2.3', rcode: 'REFUSED', next: true },
        { qname: 'www.example.org', qtype: 'A', client: '192.0.2.1', rcode: 'REFUSED', next: false, answer: [] },
        { qname: `api.${Z}`, qtype: 'SRV', client: '192.0.2.1', rcode: 'REFUSED', next: true },
      ],
      reader,
    );
    const strict = world({ allow: ['10.1.0.0/16'], canonicalClients: 'allowed' });
    await runCases(
      aclPlugin.create(strict.deps, aclPlugin.setup(strict.config, { trustLoopback: true })),
      [{ qname: `api.${Z}`, qtype: 'SRV', client: '192.0.2.1', rcode: 'REFUSED', next: false }],
      strict.reader,
    );
  });
});

describe('the whole chain', () => {
  it('answers zones locally for anyone, refuses recursion to outsiders, and fails forwarding with no upstream', async () => {
    const { deps, config, reader } = world();
    const chain = new DnsChain(deps, config, { trustLoopback: true });
    await runCases(
      chain.handler,
      [
        // RA says whether this client may recurse, on every reply, whoever built it.
        { qname: `api.${Z}`, qtype: 'SRV', rcode: 'NOERROR', ra: true, answer: [`api.${Z}. 60 IN SRV 0 0 12082 api.${Z}.`] },
        { qname: `api.${Z}`, qtype: 'SRV', client: '192.0.2.1', rcode: 'NOERROR', ra: false, answer: [`api.${Z}. 60 IN SRV 0 0 12082 api.${Z}.`] },
        { qname: 'www.example.org', qtype: 'A', client: '192.0.2.1', rcode: 'REFUSED', aa: false, ra: false },
        { qname: 'www.example.org', qtype: 'A', rcode: 'SERVFAIL', aa: false },
        { qname: `nohost.${Z}`, qtype: 'A', rcode: 'NOERROR', aa: true, answer: [], ns: [SOA] },
      ],
      reader,
    );
    chain.close();
  });
});

describe('local stage in cluster mode: encoded answers follow the view port by port (issue 24)', () => {
  it('keeps an answer encoded while other ports change, re-encodes it when its own port or one of its hosts changes', async () => {
    const P = '/cp';
    const registry = parseRegistry(`zones: [${Z}]\nttl: 60\n`, 'test.yaml');
    const state: ServingState = { registry, zones: ['localhost', Z], cluster: { onlyListening: false, observedTtl: 5 } };
    const view = new ClusterView({ prefix: P });
    // Each node's keys under its own lease, as its publisher writes them (layout v2).
    const lease = (name: string) => (name === 'a' ? '7' : '8');
    const node = (name: string, address: string) => ({
      key: nodeKey(P, name),
      value: encodeNode({ name, addresses: [address], canonportVersion: '0', registryDigest: '', started: '2024-01-01T00:00:00.000Z' }),
      lease: lease(name),
    });
    const listen = (name: string, service: string) => {
      const port = base32Port(service);
      const value = encodeInstance({
        port,
        protocol: 'tcp',
        namespace: 'host',
        services: [service],
        scheme: 'base32',
        version: '',
        versionSource: '',
        since: '2024-01-01T00:00:00.000Z',
        bind: [{ family: 'tcp', address: '0.0.0.0' }],
        readiness: { state: 'ready', since: '2024-01-01T00:00:01.000Z', by: 'tcp' },
      });
      return { type: 'put' as const, key: instanceKey(P, name, port), value, lease: lease(name) };
    };
    const { key, value } = listen('a', 'api');
    view.replaceAll([node('a', '10.0.0.1'), node('b', '10.0.0.2'), { key, value, lease: '7' }], 1);
    const metrics = new Metrics({ defaultMetrics: false });
    const forwarder = new Forwarder({ metrics, logger: silentLogger, now: Date.now }, { upstreams: [], timeoutMs: 100, maxInflight: 8 });
    const discovery = new Discovery({ state: () => state, observed: observedFrom(view) });
    const deps: PluginDeps = { state: () => state, discovery, forwarder, metrics, logger: silentLogger, now: Date.now };
    const config = buildConfig({ upstreams: [] }, {}, registry);
    const stage = localPlugin.create(deps, localPlugin.setup(config, { trustLoopback: true }));
    const reader = { classify: (lname: string) => classifyName(lname, state.zones, registry, { cluster: true }), mayRecurse: () => true };
    const ask = (name: string) => {
      const raw = buildQuery({ id: 1, name, type: T.SRV });
      const q = parseQuery(raw)!;
      const reply = stage.serve(new ServerRequest(q, raw, { address: '127.0.0.1', port: 5353 }, 'udp', requestKey(q), reader), () => {
        throw new Error('passed on');
      }) as DnsReply;
      return { reply, targets: parseMessage(reply.message).answers.map((r) => (r.data as { target: string }).target).sort() };
    };

    const first = ask(`api.${Z}`);
    expect(first.targets).toEqual([`a.node.${Z}`]);
    const other = ask(`db.${Z}`);
    // Asked again: the same encoded reply.
    expect(ask(`api.${Z}`).reply).toBe(first.reply);
    // Another port changes (db starts on b): api's answer stays encoded, db's is built again.
    view.applyChanges([listen('b', 'db')], 2);
    expect(ask(`api.${Z}`).reply).toBe(first.reply);
    expect(ask(`db.${Z}`).targets).toEqual([`b.node.${Z}`]);
    expect(ask(`db.${Z}`).reply).not.toBe(other.reply);
    // Its own port changes (api starts on b too): built again, both hosts.
    view.applyChanges([listen('b', 'api')], 3);
    const both = ask(`api.${Z}`);
    expect(both.reply).not.toBe(first.reply);
    expect(both.targets).toEqual([`a.node.${Z}`, `b.node.${Z}`]);
    // One of its hosts changes (a's address): built again.
    view.applyChanges([{ type: 'put', ...node('a', '10.0.0.9') }], 4);
    const moved = ask(`api.${Z}`);
    expect(moved.reply).not.toBe(both.reply);
    expect(parseMessage(moved.reply.message).additional.map((r) => String(r.data))).toContain('10.0.0.9');
  });
});
