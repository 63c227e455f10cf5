import { describe, expect, it } from 'vitest';
import { ClusterView } from '../src/cluster/view.js';
import { encodeInstance, encodeNode, instanceKey, nodeKey, type InstanceRecord, type ListenerRecord, type NodeRecord } from '../src/cluster/keys.js';
import { checkConsistency, portNameFindings, registryFindings } from '../src/fleet/consistency.js';
import { fleetServices, fleetUnnamed, formatFleet, type FleetHost } from '../src/fleet/fleet.js';
import { fleetHostsFromView } from '../src/fleet/from-cluster.js';
import type { InventoryListener } from '../src/inventory/types.js';
import { base32Port, decodePort } from '../src/scheme/index.js';

/**
 * What hosts of a fleet disagree on besides versions (src/fleet/consistency.ts),
 * and the cluster view read as a fleet (fleetHostsFromView over a real
 * ClusterView fed the way the etcd list feeds it). No I/O.
 */

const D1 = 'a'.repeat(64);
const D2 = 'b'.repeat(64);
const D3 = 'c'.repeat(64);

const l = (port: number, services: string[], over: Partial<InventoryListener> = {}): InventoryListener => ({
  port,
  address: '0.0.0.0',
  family: 'tcp',
  services,
  version: '',
  versionSource: '',
  scheme: services.length ? 'pinned' : 'unknown',
  ...over,
});
const host = (name: string, digest: string | undefined, listeners: InventoryListener[] = [], reachable = true): FleetHost => ({
  host: name,
  target: `${name}:13655`,
  reachable,
  ...(reachable ? { inventory: { host: name, collectedAtMs: 0, listeners, ...(digest === undefined ? {} : { registryDigest: digest }) } } : { error: 'down' }),
});

describe('registryFindings: hosts whose registry differs from the majority', () => {
  it.each([
    ['all alike', [D1, D1, D1], []],
    ['one differs from the majority', [D1, D2, D1], [['h1', D1, D2]]],
    ['two differ, differently', [D1, D1, D1, D2, D3], [['h3', D1, D2], ['h4', D1, D3]]],
    ['a tie: no majority, every host named', [D1, D2], [['h0', '', D1], ['h1', '', D2]]],
    ['a tie for the most among three digests', [D1, D1, D2, D2, D3], [['h0', '', D1], ['h1', '', D1], ['h2', '', D2], ['h3', '', D2], ['h4', '', D3]]],
    ['hosts without a digest (older daemons) take no part', [D1, '', undefined, D1], []],
    ['one digest beside hosts without one', [D1, '', D2, D2], [['h0', D2, D1]]],
  ] as const)('%s', (_name, digests, want) => {
    const hosts = digests.map((d, i) => host(`h${i}`, d));
    expect(registryFindings(hosts).map((f) => [f.host, f.expected, f.found[0]])).toEqual(want);
  });

  it('ignores unreachable hosts, and says why in the message', () => {
    const hosts = [host('web-1', D1), host('web-2', D1), host('web-3', D2), host('web-4', undefined, [], false)];
    const [f, ...rest] = registryFindings(hosts);
    expect(rest).toEqual([]);
    expect(f).toEqual({
      kind: 'registry',
      host: 'web-3',
      service: '',
      expected: D1,
      found: [D2],
      message: `web-3: registry ${D2.slice(0, 12)} differs from the majority's ${D1.slice(0, 12)} (2 of 3 hosts)`,
    });
  });
});

describe('portNameFindings: one port named as different services', () => {
  const api = base32Port('api');
  it('names the port, each naming and its hosts; ports named alike are not findings', () => {
    const hosts = [
      host('web-1', D1, [l(40123, ['alpha']), l(40123, ['alpha'], { address: '::', family: 'tcp6' }), l(8102, ['user'], { scheme: 'versioned' })]),
      host('web-2', D1, [l(40123, ['alpha']), l(8102, ['user'], { scheme: 'versioned' })]),
      host('web-3', D2, [l(40123, ['beta']), l(8102, ['user'], { scheme: 'versioned' }), l(50000, [])]),
      host('web-4', D2, [l(50000, [])]),
    ];
    expect(portNameFindings(hosts)).toEqual([
      {
        kind: 'port-names',
        host: '',
        service: '',
        expected: '',
        found: ['alpha', 'beta'],
        port: 40123,
        groups: [
          { value: 'alpha', hosts: ['web-1', 'web-2'] },
          { value: 'beta', hosts: ['web-3'] },
        ],
        message: '40123: alpha on web-1, web-2; beta on web-3',
      },
    ]);
  });

  it.each([
    ['a bare base32 prefix agrees with a name that encodes to it', [['api'], ['apiserver']], false],
    ['a bare prefix beside a name pinned there disagrees', [['api'], ['alpha']], true],
    ['two names that both encode to the prefix still disagree', [['apiserver'], ['apigw']], true],
    ['aliases listed in another order are one naming', [['shop', 'shop-www'], ['shop-www', 'shop']], false],
    ['a port one host claims and another does not is not a naming disagreement', [['api'], []], false],
  ] as const)('%s', (_name, namings, finding) => {
    const hosts = namings.map((services, i) => host(`h${i}`, D1, [l(api, [...services], { scheme: 'base32' })]));
    expect(decodePort(api)).toBe('api');
    expect(portNameFindings(hosts).length).toBe(finding ? 1 : 0);
  });
});

describe('the findings in the fleet text', () => {
  it('lists registries and ports the hosts disagree on, after mixed versions', () => {
    const hosts = [
      host('web-1', D1, [l(40123, ['alpha'], { version: '1.2.3' })]),
      host('web-2', D1, [l(40123, ['alpha'])]),
      host('web-3', D2, [l(40123, ['beta'])]),
    ];
    const report = { hosts, services: fleetServices(hosts) };
    const text = formatFleet(report, checkConsistency(report));
    expect(text).toContain(['mixed versions:', '  alpha: unknown version on 1 host, 1.2.3 on 1 host'].join('\n'));
    expect(text).toContain(['registries that differ from the majority (aaaaaaaaaaaa on 2 of 3 hosts):', '  web-3  bbbbbbbbbbbb'].join('\n'));
    expect(text).toContain(['ports named as different services:', '  40123: alpha on web-1, web-2; beta on web-3'].join('\n'));
    expect(text).toContain('3/3 hosts answered');
    // Without a majority, the heading says so.
    const tie = { hosts: hosts.slice(1), services: [] };
    expect(formatFleet(tie, checkConsistency(tie))).toContain(['registries differ, none on a majority of the 2 hosts:', '  web-2  aaaaaaaaaaaa', '  web-3  bbbbbbbbbbbb'].join('\n'));
  });
});

describe('fleetHostsFromView: the cluster view as a fleet', () => {
  const PREFIX = '/cp';
  const node = (name: string, addresses: string[], registryDigest: string): NodeRecord => ({ name, addresses, canonportVersion: '0.1.0', registryDigest, started: '2025-05-01T09:00:00.000Z' });
  const listener = (port: number, services: string[], version: string, bind: ListenerRecord['bind'], state: 'ready' | 'draining' = 'ready'): InstanceRecord => ({
    port,
    services,
    scheme: 'base32',
    version,
    versionSource: version ? 'http' : '',
    since: '2025-05-01T09:00:01.000Z',
    bind,
    protocol: 'tcp',
    namespace: 'host',
    readiness: { state, since: '2025-05-01T09:00:02.000Z', by: state === 'ready' ? 'http' : 'admin' },
    // Written by a daemon that names listeners (issue 22): none of these has a registry entry or a process name.
    nameSource: 'none',
  });
  const ready = { since: '2025-05-01T09:00:01.000Z', state: 'ready', stateSince: '2025-05-01T09:00:02.000Z' };
  const draining = { since: '2025-05-01T09:00:01.000Z', state: 'draining', stateSince: '2025-05-01T09:00:02.000Z' };

  it('gives one host per node (a node without listeners too), one listener per reachable address, the node\'s digest', () => {
    const view = new ClusterView({ prefix: PREFIX });
    const kvs = [
      { key: nodeKey(PREFIX, 'web-2'), value: encodeNode(node('web-2', ['10.0.0.2', 'fd00::2'], D2)) },
      // web-1 was asked for `api` (a client's `api.<zone>`): every node's 12082 is named so; 14688 stays unnamed.
      { key: nodeKey(PREFIX, 'web-1'), value: encodeNode({ ...node('web-1', ['10.0.0.1'], D1), askedNames: [{ port: 12082, name: 'api' }] }) },
      { key: nodeKey(PREFIX, 'idle'), value: encodeNode(node('idle', ['10.0.0.9'], D1)) },
      { key: instanceKey(PREFIX, 'web-1', 12082), value: encodeInstance(listener(12082, ['api'], '1.4.2', [{ family: 'tcp', address: '0.0.0.0' }])) },
      // A draining instance is out of answers, but the fleet shows it (not silently missing).
      { key: instanceKey(PREFIX, 'web-2', 12082), value: encodeInstance(listener(12082, ['api'], '', [{ family: 'tcp6', address: '::' }], 'draining')) },
      { key: instanceKey(PREFIX, 'web-2', 14688), value: encodeInstance(listener(14688, ['db0'], '', [{ family: 'tcp', address: '10.0.0.2' }])) },
      // A listener whose node has no record is no member's: left out, as answers leave it out.
      { key: instanceKey(PREFIX, 'ghost', 12082), value: encodeInstance(listener(12082, ['api'], '1.4.2', [{ family: 'tcp', address: '0.0.0.0' }])) },
    ];
    view.replaceAll(kvs, 7);
    const hosts = fleetHostsFromView(view, PREFIX, 1234);
    // Each listening since the record says, in the state its readiness says (since when, as it differs); each node's record beside it.
    const record = (name: string) => {
      const { name: _name, ...rest } = view.node(name)!;
      return rest;
    };
    const asked = [{ name: 'api', source: 'query' }];
    expect(hosts).toEqual([
      { host: 'idle', target: '/cp/v2/nodes/idle/node', reachable: true, inventory: { host: 'idle', collectedAtMs: 1234, listeners: [], registryDigest: D1, node: 'idle' }, node: record('idle') },
      {
        host: 'web-1',
        target: '/cp/v2/nodes/web-1/node',
        reachable: true,
        inventory: {
          host: 'web-1',
          collectedAtMs: 1234,
          registryDigest: D1,
          node: 'web-1',
          listeners: [{ port: 12082, address: '10.0.0.1', family: 'tcp', services: ['api'], names: asked, version: '1.4.2', versionSource: 'http', scheme: 'base32', ...ready }],
        },
        node: { ...record('web-1'), askedNames: undefined },
      },
      {
        host: 'web-2',
        target: '/cp/v2/nodes/web-2/node',
        reachable: true,
        inventory: {
          host: 'web-2',
          collectedAtMs: 1234,
          registryDigest: D2,
          node: 'web-2',
          listeners: [
            { port: 12082, address: '10.0.0.2', family: 'tcp', services: ['api'], names: asked, version: '', versionSource: '', scheme: 'base32', ...draining },
            { port: 12082, address: 'fd00::2', family: 'tcp6', services: ['api'], names: asked, version: '', versionSource: '', scheme: 'base32', ...draining },
            { port: 14688, address: '10.0.0.2', family: 'tcp', services: ['db0'], names: [], version: '', versionSource: '', scheme: 'base32', ...ready },
          ],
        },
        node: record('web-2'),
      },
    ]);
    // Folded like a host list: web-2's two addresses count once; 1.4.2 beside "?" is mixed.
    const api = fleetServices(hosts).find((s) => s.service === 'api')!;
    expect(api).toMatchObject({ nameSource: 'query', hostCount: 2, mixed: true, versions: [{ version: '', hosts: ['web-2'], notServing: [{ host: 'web-2', state: 'draining' }] }, { version: '1.4.2', hosts: ['web-1'] }] });
    // 14688: claimed (it answers db0), named by no source: apart from the services.
    expect(fleetServices(hosts).map((s) => s.service)).toEqual(['api']);
    expect(fleetUnnamed(hosts)).toEqual([{ port: 14688, protocol: 'tcp', services: ['db0'], scheme: 'base32', hosts: ['web-2'] }]);
    const text = formatFleet({ hosts, services: fleetServices(hosts), unnamed: fleetUnnamed(hosts) });
    expect(text).toContain('web-2 (draining)');
    expect(text).toContain(['unnamed ports (no registry entry, no name asked for, no process name; they answer their canonical names):', '  PORT   ANSWERS  HOSTS  ON', '  14688  db0      1/3    web-2'].join('\n'));
    expect(registryFindings(hosts).map((f) => f.host)).toEqual(['web-2']);
  });
});
