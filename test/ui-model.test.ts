import { describe, expect, it } from 'vitest';
import {
  commandsFor,
  countsText,
  formatRoute,
  HOSTS_PER_PAGE,
  indexFleet,
  matrixOf,
  namesOf,
  NO_FILTERS,
  parseRoute,
  type PageInfo,
  type Route,
} from '../src/ui/client/model.js';
import { esc, renderHost, renderMatrix, renderService, viewBanner } from '../src/ui/client/render.js';
import type { FleetDocument } from '../src/fleet/document.js';
import { DIGEST_A, DIGEST_B, docOf, documentOf, scaleView, type NodeSpec } from './helpers/fleet-docs.js';

/**
 * What the fleet page computes and shows (src/ui/client/model.ts and
 * render.ts), from documents made the way a daemon makes them: routes,
 * filters, majorities and outliers, the matrix's paging, the names and
 * commands of a service, and HTML that escapes what services say.
 */

const INFO: PageInfo = { mode: 'cluster', node: 'web-1', zones: ['c.test'], dns: { host: '10.0.0.1', port: 53 }, grpc: { host: '10.0.0.1', port: 13655, tls: false }, version: '0.1.0' };

/** api mixed (1.4.2 on two hosts, 1.5.0 on one), blog on one host, web-3's registry differs. */
const FLEET: NodeSpec[] = [
  { name: 'web-1', runs: { api: '1.4.2', blog: '' } },
  { name: 'web-2', runs: { api: '1.4.2' } },
  { name: 'web-3', digest: DIGEST_B, runs: { api: '1.5.0' } },
  { name: 'web-4', runs: {} },
];

const route = (hash: string): Route => parseRoute(hash);

describe('routes: every view and its filters in the URL', () => {
  it('reads and writes the three views with their filters', () => {
    const cases: [string, Route][] = [
      ['', { view: { kind: 'matrix' }, filters: NO_FILTERS }],
      ['#/', { view: { kind: 'matrix' }, filters: NO_FILTERS }],
      ['#/service/api', { view: { kind: 'service', name: 'api' }, filters: NO_FILTERS }],
      ['#/host/web-3?service=api&version=1.5.0&state=listening', { view: { kind: 'host', name: 'web-3' }, filters: { ...NO_FILTERS, service: 'api', version: '1.5.0', state: 'listening' } }],
      ['#/?host=web&page=3', { view: { kind: 'matrix' }, filters: { ...NO_FILTERS, host: 'web', page: 3 } }],
    ];
    for (const [hash, expected] of cases) expect(parseRoute(hash), hash).toEqual(expected);
    for (const [, r] of cases.slice(1)) expect(parseRoute(formatRoute(r))).toEqual(r);
    expect(formatRoute(route('#/service/api?version=1.4.2'))).toBe('#/service/api?version=1.4.2');
  });

  it('ignores what it cannot read: an unknown state, a bad page, an unknown view, bad escapes', () => {
    expect(parseRoute('#/?state=sleeping&page=-2').filters).toEqual(NO_FILTERS);
    expect(parseRoute('#/nowhere/x').view).toEqual({ kind: 'matrix' });
    expect(parseRoute('#/service/%E0%A4%A').view).toEqual({ kind: 'service', name: '%E0%A4%A' });
  });
});

describe('the index of a document', () => {
  const index = indexFleet(docOf(FLEET));

  it('counts hosts and versions per service, and finds the majority version', () => {
    const api = index.service('api')!;
    expect(countsText(api.service, index.hosts.length)).toBe('3/4 hosts, 2 versions');
    expect(api.majority).toBe('1.4.2');
    expect(countsText(index.service('blog')!.service, index.hosts.length)).toBe('1/4 hosts, 1 version');
  });

  it('flags the cell whose version is not the majority, and the host whose registry differs', () => {
    expect(index.cell('api', 'web-1')).toMatchObject({ versions: ['1.4.2'], outlier: false, state: 'listening' });
    expect(index.cell('api', 'web-3')).toMatchObject({ versions: ['1.5.0'], outlier: true });
    expect(index.cell('api', 'web-4')).toBeUndefined();
    expect([...index.registryOutliers.keys()]).toEqual(['web-3']);
    expect(index.registryOutliers.get('web-3')).toMatchObject({ digest: DIGEST_B, majority: DIGEST_A });
  });

  it('has no majority in a tie: the row is mixed, no cell stands out', () => {
    const tie = indexFleet(docOf([{ name: 'a', runs: { api: '1' } }, { name: 'b', runs: { api: '2' } }]));
    expect(tie.service('api')).toMatchObject({ majority: null, service: { mixed: true } });
    expect(tie.cell('api', 'a')!.outlier).toBe(false);
  });
});

describe('filters', () => {
  const index = indexFleet(docOf(FLEET));
  const m = (hash: string) => {
    const r = matrixOf(index, parseRoute(hash).filters);
    return { rows: r.rows.map((s) => s.service.service), cols: r.columns.map((h) => h.host) };
  };

  it('keep services and hosts by name; idle hosts stay without a version or state filter', () => {
    expect(m('#/')).toEqual({ rows: ['api', 'blog'], cols: ['web-1', 'web-2', 'web-3', 'web-4'] });
    expect(m('#/?service=BL')).toEqual({ rows: ['blog'], cols: ['web-1', 'web-2', 'web-3', 'web-4'] });
    expect(m('#/?host=web-2')).toEqual({ rows: ['api', 'blog'], cols: ['web-2'] });
  });

  it('by version or state keep what runs it; "?" is the unknown version', () => {
    expect(m('#/?version=1.5')).toEqual({ rows: ['api'], cols: ['web-3'] });
    expect(m('#/?version=?')).toEqual({ rows: ['blog'], cols: ['web-1'] });
    expect(m('#/?state=listening')).toEqual({ rows: ['api', 'blog'], cols: ['web-1', 'web-2', 'web-3'] });
    expect(m('#/?state=draining')).toEqual({ rows: [], cols: [] });
  });

  it('page the hosts of a large fleet', () => {
    const big = indexFleet(documentOf(scaleView({ nodes: 250, services: 3 })));
    const p1 = matrixOf(big, NO_FILTERS);
    expect(p1).toMatchObject({ page: 1, pages: 3 });
    expect(p1.columns.length).toBe(HOSTS_PER_PAGE);
    const p3 = matrixOf(big, { ...NO_FILTERS, page: 9 });
    expect(p3).toMatchObject({ page: 3 });
    expect(p3.columns.map((h) => h.host)).toEqual(big.hosts.slice(200).map((h) => h.host));
  });
});

describe('a service\'s names and the lines to try it', () => {
  it('in every zone, with dig and grpcurl against this daemon (a wildcard listen address: the page\'s host)', () => {
    expect(namesOf('api', INFO)).toEqual([{ zone: 'c.test', names: ['api.c.test', '_api._tcp.c.test', 'canon:///api.c.test', 'xds:///api.c.test'] }]);
    expect(commandsFor('api', INFO, '10.0.0.1')).toEqual([
      'dig @10.0.0.1 +short SRV _api._tcp.c.test',
      'dig @10.0.0.1 +short A api.c.test',
      `grpcurl -plaintext -d '{"name":"api.c.test"}' 10.0.0.1:13655 canonport.v1.Canonport/Resolve`,
    ]);
    const wild = { ...INFO, dns: { host: '0.0.0.0', port: 5300 }, grpc: { host: '::', port: 13655, tls: true } };
    expect(commandsFor('api', wild, '[fd00::5]')).toEqual([
      'dig @fd00::5 -p 5300 +short SRV _api._tcp.c.test',
      'dig @fd00::5 -p 5300 +short A api.c.test',
      `grpcurl -cacert ca.pem -d '{"name":"api.c.test"}' [fd00::5]:13655 canonport.v1.Canonport/Resolve`,
    ]);
  });
});

describe('the HTML', () => {
  it('escapes what services and hosts say (a version is any printable text a probe got back)', () => {
    const doc = docOf([{ name: 'web-1', runs: { api: '<img src=x onerror=alert(1)>' } }]);
    const index = indexFleet(doc);
    for (const html of [renderMatrix(index, route('#/')), renderService(index, route('#/service/api'), INFO, 'h'), renderHost(index, route('#/host/web-1'), INFO)]) {
      expect(html).not.toContain('<img');
      expect(html).toContain(esc('<img src=x onerror=alert(1)>'));
    }
    expect(esc(`<a href="x" title='y'>&`)).toBe('&#60;a href=&#34;x&#34; title=&#39;y&#39;&#62;&#38;');
  });

  it('tells a stale or missing view apart from an empty fleet', () => {
    const synced = docOf([]);
    expect(viewBanner(synced.source)).toBe('');
    expect(renderMatrix(indexFleet(synced), route('#/'))).toContain('No host is in the view.');
    const missing: FleetDocument = { ...synced, source: { ...(synced.source as Extract<FleetDocument['source'], { kind: 'cluster' }>), view: 'missing' } };
    expect(viewBanner(missing.source)).toContain('No cluster view.');
    expect(viewBanner(missing.source)).toContain('this is not an empty fleet');
    expect(renderMatrix(indexFleet(missing), route('#/'))).toContain('there is no cluster view');
    const stale: FleetDocument = { ...synced, source: { ...(synced.source as Extract<FleetDocument['source'], { kind: 'cluster' }>), view: 'stale' } };
    expect(viewBanner(stale.source)).toContain('Cluster view stale');
  });

  it('marks states, outliers and registry differences in words, not colour alone', () => {
    const index = indexFleet(docOf(FLEET));
    const html = renderMatrix(index, route('#/'));
    expect(html).toContain('<span aria-hidden="true">●</span><span class="sr"> listening</span>');
    expect(renderHost(index, route('#/host/web-1'), INFO)).toContain('listening (readiness not probed)');
    expect(html).toContain('not the majority version 1.4.2');
    expect(html).toMatch(/web-3<\/a> <span class="flag flag-registry"[^>]*>.*registry differs/);
    expect(html).toContain('mixed versions</span>');
    expect(html).toContain('3/4 hosts, 2 versions');
  });
});
