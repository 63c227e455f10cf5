import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyDiff, diffDocuments, encodeDocument, firstScreenJson } from '../src/ui/client/diff.js';
import { indexFleet, parseRoute } from '../src/ui/client/model.js';
import { renderMatrix } from '../src/ui/client/render.js';
import type { FleetDocument } from '../src/fleet/document.js';
import { base32Port } from '../src/scheme/index.js';
import { docOf, documentOf, PREFIX, scaleView, SINCE, type NodeSpec } from './helpers/fleet-docs.js';
import { scaleNode } from './helpers/scale-fleet.js';

/**
 * The diffs the daemon sends open fleet pages (src/ui/client/diff.ts):
 * applied to the document they were made from, they give the next one
 * exactly, whatever changed; the whole text the page fetches is exactly
 * JSON.stringify of the document (what `fleet --json` prints).
 */

const SERVICES = ['api', 'blog', 'db', 'cache'];
const VERSIONS = ['', '1.0.0', '1.1.0', '2.0.0'];

/** A random small fleet, as records in a real view read by fleetFromView. */
const fleet: fc.Arbitrary<NodeSpec[]> = fc
  .uniqueArray(fc.integer({ min: 1, max: 12 }), { maxLength: 8 })
  .chain((ids) =>
    fc.tuple(
      ...ids.map((id) =>
        fc.record({
          name: fc.constant(`web-${id}`),
          digest: fc.constantFrom('a'.repeat(64), 'b'.repeat(64), ''),
          runs: fc.dictionary(fc.constantFrom(...SERVICES), fc.constantFrom(...VERSIONS), { maxKeys: 4 }),
        }),
      ),
    ),
  )
  .map((nodes) => [...nodes]);

describe('fleet diffs', () => {
  it('encodeDocument gives exactly JSON.stringify of the document', () => {
    fc.assert(
      fc.property(fleet, (nodes) => {
        const doc = docOf(nodes);
        expect(encodeDocument(doc).json).toBe(JSON.stringify(doc));
      }),
      { numRuns: 200 },
    );
  });

  it('applied to the document it was made from, a diff gives the next document exactly; equal documents give none', () => {
    fc.assert(
      fc.property(fleet, fleet, (a, b) => {
        const prev = encodeDocument(docOf(a));
        const next = encodeDocument(docOf(b));
        const diff = diffDocuments(prev, next, 'x-1', 'x-2');
        if (prev.json === next.json) {
          expect(diff).toBeNull();
          return;
        }
        expect(diff).not.toBeNull();
        // Through JSON, as the page gets it.
        const applied = applyDiff(JSON.parse(prev.json), JSON.parse(JSON.stringify(diff)));
        expect(JSON.stringify(applied)).toBe(next.json);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a diff made for another document (a host it does not hold)', () => {
    const prev = encodeDocument(docOf([{ name: 'web-1', runs: { api: '1.0.0' } }]));
    const next = encodeDocument(docOf([{ name: 'web-1', runs: { api: '1.0.0' } }, { name: 'web-2', runs: {} }, { name: 'web-3', runs: {} }]));
    const diff = diffDocuments(prev, next, 'x-1', 'x-2')!;
    const other = docOf([{ name: 'web-9', runs: {} }]);
    // web-1 is not in `other` and not put by the diff (unchanged): the diff is not for it.
    expect(() => applyDiff(other, diff)).toThrow(/web-1/);
  });

  it('at 1,000 hosts × 20 services, one listener starting sends that host and that service, not the fleet', () => {
    const view = scaleView({ nodes: 1000, services: 20 });
    const prev = encodeDocument(documentOf(view));
    // node 500 restarts aax-svc at another version: its publisher rewrites that one key.
    const [key, value] = scaleNode(PREFIX, 500, { nodes: 1000, services: 20, started: SINCE, version: (_, s) => (s === 'aax-svc' ? '1.1.0' : '1.0.0') }).puts.find(([k]) => k.endsWith(`/${base32Port('aax-svc')}`))!;
    view.applyChanges([{ type: 'put', key, value }], 11);
    const next = encodeDocument(documentOf(view));
    const diff = diffDocuments(prev, next, 'x-1', 'x-2')!;
    expect(diff.hosts.put.map((h) => h.host)).toEqual(['node-00500']);
    expect(diff.services.put.map((s) => s.service)).toEqual(['aax-svc']);
    expect(diff.hosts.order).toBeUndefined();
    const bytes = JSON.stringify(diff).length;
    // The document is megabytes; the diff, one host's listeners and one service's host lists.
    expect(prev.json.length).toBeGreaterThan(2_000_000);
    expect(bytes).toBeLessThan(prev.json.length / 50);
  });

  it('the first-screen document draws its first columns exactly as the whole one does, with every host counted', () => {
    fc.assert(
      fc.property(fleet, fc.integer({ min: 0, max: 9 }), (nodes, k) => {
        const encoded = encodeDocument(docOf(nodes));
        const whole = encoded.doc;
        const first = JSON.parse(firstScreenJson(encoded, k)) as FleetDocument;
        // Every host, in order, the first k whole; services, findings, unnamed ports and source whole.
        expect(first.hosts.map((h) => h.host)).toEqual(whole.hosts.map((h) => h.host));
        expect(JSON.stringify(first.hosts.slice(0, k))).toBe(JSON.stringify(whole.hosts.slice(0, k)));
        for (const h of first.hosts.slice(k)) expect(h.inventory).toBeUndefined();
        expect(JSON.stringify({ ...first, hosts: [] })).toBe(JSON.stringify({ ...whole, hosts: [] }));
        // What the page draws from it (the matrix, its first k columns) is what it draws from the whole document.
        for (const hash of ['#/', '#/?page=1']) expect(renderMatrix(indexFleet(first), parseRoute(hash), k)).toBe(renderMatrix(indexFleet(whole), parseRoute(hash), k));
      }),
      { numRuns: 200 },
    );
  });

  it('at 1,000 hosts × 20 services the first-screen document is a tenth of the whole one', () => {
    const encoded = encodeDocument(documentOf(scaleView({ nodes: 1000, services: 20 })));
    const first = firstScreenJson(encoded, 30);
    expect(JSON.parse(first).hosts).toHaveLength(1000);
    expect(first.length).toBeLessThan(encoded.json.length / 10);
  });
});
