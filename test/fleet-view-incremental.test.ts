import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeListener, encodeNode, legacyNodeKey as nodeKey, listenerKey, type ListenerRecord } from '../src/cluster/keys.js';
import type { WatchChange } from '../src/cluster/view.js';
import { fleetDocument } from '../src/fleet/document.js';
import { fleetFromView, ViewFleet } from '../src/fleet/from-cluster.js';
import { base32Port } from '../src/scheme/index.js';
import { encodeDocument, type EncodedDocument } from '../src/ui/client/diff.js';
import { DIGEST_A, DIGEST_B, PREFIX, scaleView, SINCE, viewOf, type NodeSpec } from './helpers/fleet-docs.js';
import { scaleNode } from './helpers/scale-fleet.js';

/**
 * The fleet page's view of the cluster, kept between changes (issue 25,
 * from-cluster.ts ViewFleet): a change rebuilds the hosts and service rows
 * it touched, counted here (work, never time), and what it builds is
 * always what a whole build of the same view gives (`fleet --cluster`'s
 * fleetFromView), over random sequences of changes.
 */

const WHERE = { endpoints: 'etcd://127.0.0.1:2379', prefix: PREFIX };
const SERVICES = ['api', 'blog', 'db', 'cache'];
const VERSIONS = ['', '1.0.0', '1.1.0', '2.0.0'];

function listenerPut(node: string, service: string, version: string): WatchChange {
  const port = base32Port(service);
  const record: ListenerRecord = { port, services: [service], scheme: 'base32', version, versionSource: version ? 'http' : '', since: SINCE, bind: [{ family: 'tcp', address: '0.0.0.0' }] };
  return { type: 'put', key: listenerKey(PREFIX, node, port), value: encodeListener(record) };
}

function nodePut(node: string, digest: string, address: string): WatchChange {
  return { type: 'put', key: nodeKey(PREFIX, node), value: encodeNode({ name: node, addresses: [address], canonportVersion: '0.1.0', registryDigest: digest, started: SINCE }) };
}

describe('the fleet of a view, rebuilt incrementally', () => {
  it('rebuilds only the host and the service row a change touches, and keeps every other one as it was', () => {
    const view = scaleView({ nodes: 200, services: 5 });
    const fleet = new ViewFleet(view, WHERE);
    const first = fleet.read();
    expect(fleet.lastRead).toEqual({ hosts: 200, services: 5 });

    // One listener's version on one host.
    const [key, value] = scaleNode(PREFIX, 70, { nodes: 200, services: 5, started: SINCE, version: () => '1.0.1' }).puts[1]!;
    view.applyChanges([{ type: 'put', key, value }], 11);
    const second = fleet.read();
    expect(fleet.lastRead).toEqual({ hosts: 1, services: 1 });
    expect(second.hosts.filter((h, i) => h !== first.hosts[i]).map((h) => h.host)).toEqual([first.hosts[70]!.host]);
    expect(second.services.filter((s, i) => s !== first.services[i])).toHaveLength(1);
    expect(second.services.find((s) => s.mixed)?.versions.map((v) => [v.version, v.hosts.length])).toEqual([['1.0.0', 199], ['1.0.1', 1]]);

    // Nothing changed: nothing rebuilt.
    fleet.read();
    expect(fleet.lastRead).toEqual({ hosts: 0, services: 0 });

    // A host leaves: no host to build, the rows it was in worked out again.
    view.applyChanges([{ type: 'delete', key: nodeKey(PREFIX, first.hosts[3]!.host) }], 12);
    const third = fleet.read();
    expect(fleet.lastRead).toEqual({ hosts: 0, services: 5 });
    expect(third.hosts).toHaveLength(199);
    expect(third).toEqual(fleetFromView(view, WHERE));
  });

  it('gives what a whole build of the view gives, and the same JSON, after any sequence of changes', () => {
    const names = Array.from({ length: 8 }, (_, i) => `web-${i}`);
    const start: fc.Arbitrary<NodeSpec[]> = fc
      .subarray(names)
      .chain((ns) => fc.tuple(...ns.map((name) => fc.record({ name: fc.constant(name), digest: fc.constantFrom(DIGEST_A, DIGEST_B), runs: fc.dictionary(fc.constantFrom(...SERVICES), fc.constantFrom(...VERSIONS), { maxKeys: 4 }) }))))
      .map((ns) => [...ns]);
    const node = fc.constantFrom(...names);
    // What publishers write and what leaves etcd: versions changing, listeners starting and stopping, registries
    // changing, nodes coming and going (a listener of a node with no record is no endpoint), several per revision.
    const change: fc.Arbitrary<WatchChange> = fc.oneof(
      fc.tuple(node, fc.constantFrom(...SERVICES), fc.constantFrom(...VERSIONS)).map(([n, s, v]) => listenerPut(n, s, v)),
      fc.tuple(node, fc.constantFrom(...SERVICES)).map(([n, s]): WatchChange => ({ type: 'delete', key: listenerKey(PREFIX, n, base32Port(s)) })),
      fc.tuple(node, fc.constantFrom(DIGEST_A, DIGEST_B, ''), fc.constantFrom('10.0.0.1', '10.0.0.2', 'fd00::1')).map(([n, d, a]) => nodePut(n, d, a)),
      node.map((n): WatchChange => ({ type: 'delete', key: nodeKey(PREFIX, n) })),
    );
    fc.assert(
      fc.property(start, fc.array(fc.array(change, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 12 }), (nodes, batches) => {
        const view = viewOf(nodes);
        const fleet = new ViewFleet(view, WHERE);
        let encoded: EncodedDocument = encodeDocument(fleetDocument(fleet.read()));
        let revision = 10;
        for (const batch of batches) {
          view.applyChanges(batch, ++revision);
          const doc = fleetDocument(fleet.read());
          const whole = fleetDocument(fleetFromView(view, WHERE));
          expect(doc).toEqual(whole);
          // The page's text, reusing the previous document's JSON of what was left alone, is the whole build's.
          encoded = encodeDocument(doc, encoded);
          expect(encoded.json).toBe(JSON.stringify(whole));
          // No more hosts rebuilt than the view holds, and none when nothing a host depends on changed.
          expect(fleet.lastRead.hosts).toBeLessThanOrEqual(doc.hosts.length);
        }
      }),
      { numRuns: 150 },
    );
  });
});
