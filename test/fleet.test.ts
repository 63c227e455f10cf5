import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InventoryListener } from '../src/inventory/types.js';
import {
  checkExpectations,
  collectFleet,
  fleetServices,
  formatFleet,
  isFleetHost,
  listenerServes,
  parseExpectation,
  parseHostsFile,
  type FleetHost,
} from '../src/fleet/fleet.js';
import { startFleetWorld, type FleetWorld } from './inventory-support.js';

let world: FleetWorld;
beforeAll(async () => {
  world = await startFleetWorld();
});
afterAll(async () => {
  await world?.close();
});

describe('collectFleet across two real daemons and one unreachable host', () => {
  it('builds service × version × hosts, flags mixed versions, marks the unreachable host', async () => {
    const progress: [number, number][] = [];
    const report = await collectFleet([world.a, world.b, world.closed], {
      timeoutMs: 5000,
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(progress.map(([d]) => d).sort()).toEqual([1, 2, 3]);
    expect(progress.every(([, t]) => t === 3)).toBe(true);

    expect(report.hosts.map((h) => [h.host, h.reachable])).toEqual([
      [world.a, true],
      [world.b, true],
      [world.closed, false],
    ]);
    expect(report.hosts[0]!.inventory!.host).toBe('host-a');
    expect(report.hosts[1]!.inventory!.host).toBe('host-b');
    expect(report.hosts[2]!.code).toBe('CP_DAEMON_UNREACHABLE');
    expect(report.hosts[2]!.error).toContain(world.closed);

    const svc = report.services.find((s) => s.service === world.httpName)!;
    expect(svc.mixed).toBe(true);
    expect(svc.hostCount).toBe(2);
    expect(svc.versions).toEqual([
      { version: '1.4.1', ports: [world.httpPort], hosts: [world.b] },
      { version: '1.4.2', ports: [world.httpPort], hosts: [world.a] },
    ]);
    const user = report.services.find((s) => s.service === 'user')!;
    expect(user).toEqual({
      service: 'user',
      protocol: 'tcp',
      nameSource: 'registry',
      scheme: 'versioned',
      versions: [{ version: '2', ports: [world.userPort], hosts: [world.a, world.b] }],
      hostCount: 2,
      mixed: false,
    });

    const text = formatFleet(report, []);
    expect(text).toMatch(new RegExp(`^user\\s+2\\s+${world.userPort}\\s+2/2\\s+${escape(world.a)}, ${escape(world.b)}$`, 'm'));
    expect(text).toContain('mixed versions:');
    expect(text).toContain(`${world.httpName}: 1.4.1 on 1 host, 1.4.2 on 1 host`);
    expect(text).toContain(`2/3 hosts answered; unreachable (1):`);
    expect(text).toMatch(new RegExp(`^  ${escape(world.closed)}  `, 'm'));
  });

  it('checks --expect: mismatch, missing, unreachable', async () => {
    const report = await collectFleet([world.a, world.b, world.closed], { timeoutMs: 5000 });
    const findings = checkExpectations(report, [
      { service: world.httpName, version: '1.4.2' },
      { service: 'user', version: '2' },
      { service: 'ghost', version: '1' },
    ]);
    expect(findings.map((f) => [f.kind, f.host, f.service, f.found])).toEqual([
      ['missing', world.a, 'ghost', []],
      ['mismatch', world.b, world.httpName, ['1.4.1']],
      ['missing', world.b, 'ghost', []],
      ['unreachable', world.closed, '', []],
    ]);
    expect(formatFleet(report, findings)).toContain(`${world.b}: ${world.httpName} runs 1.4.1 on port ${world.httpPort}, expected 1.4.2`);
    const met = await collectFleet([world.a, world.b], { timeoutMs: 5000 });
    expect(checkExpectations(met, [{ service: 'user', version: '2' }])).toEqual([]);
  });

  it('bounds each host by its deadline: a daemon that never answers is unreachable', async () => {
    const report = await collectFleet([world.hanging, world.a], { timeoutMs: 300, concurrency: 1 });
    expect(report.hosts.map((h) => [h.host, h.reachable, h.code])).toEqual([
      [world.hanging, false, 'CP_DAEMON_UNREACHABLE'],
      [world.a, true, undefined],
    ]);
  });

  it('asks a host given twice once', async () => {
    const report = await collectFleet([world.a, world.a], { timeoutMs: 5000 });
    expect(report.hosts).toHaveLength(1);
  });
});

describe('fleet pure parts', () => {
  const l = (over: Partial<InventoryListener>): InventoryListener => ({
    port: 1,
    address: '0.0.0.0',
    family: 'tcp',
    services: [],
    version: '',
    versionSource: '',
    scheme: 'base32',
    ...over,
  });
  const host = (name: string, listeners: InventoryListener[]): FleetHost => ({
    host: name,
    target: `${name}:13655`,
    reachable: true,
    inventory: { host: name, collectedAtMs: 0, listeners },
  });

  it('counts a host once per service and version, whatever its addresses; a known version beside an unknown one is "mixed"', () => {
    const services = fleetServices([
      host('a', [l({ port: 12082, services: ['api'], version: '1.0' }), l({ port: 12082, address: '::', family: 'tcp6', services: ['api'], version: '1.0' })]),
      host('b', [l({ port: 12082, services: ['api'], version: '' })]),
      host('c', [l({ port: 22, services: [], scheme: 'unknown' })]),
    ]);
    // Listeners that carry no names (a report from before names) read their claim as the registry's.
    expect(services).toEqual([
      {
        service: 'api',
        protocol: 'tcp',
        nameSource: 'registry',
        scheme: 'base32',
        versions: [
          { version: '', ports: [12082], hosts: ['b'] },
          { version: '1.0', ports: [12082], hosts: ['a'] },
        ],
        hostCount: 2,
        mixed: true,
      },
    ]);
    // Shown as mixed, the unknown version named.
    const text = formatFleet({ hosts: [], services });
    expect(text).toContain('mixed versions:\n  api: unknown version on 1 host, 1.0 on 1 host');
    // Only unknown versions (one version, "?"): nothing to compare, not mixed.
    expect(fleetServices([host('a', [l({ port: 12082, services: ['api'] })]), host('b', [l({ port: 12082, services: ['api'] })])])[0]!.mixed).toBe(false);
    // An unknown version does not confirm an expectation.
    const findings = checkExpectations({ hosts: [host('b', [l({ port: 12082, services: ['api'] })])], services }, [{ service: 'api', version: '1.0' }]);
    expect(findings).toMatchObject([{ kind: 'mismatch', host: 'b', found: [''] }]);
  });

  it('matches an expectation on the base32 prefix where the daemon knows no name', () => {
    expect(listenerServes(l({ services: ['db0'] }), 'db')).toBe(true);
    expect(listenerServes(l({ services: ['cat'] }), 'caterpillar')).toBe(true);
    expect(listenerServes(l({ services: ['cat'], scheme: 'pinned' }), 'caterpillar')).toBe(false);
    expect(listenerServes(l({ services: ['api'] }), 'apx')).toBe(false);
  });

  it.each([
    ['api=1.4.2', { service: 'api', version: '1.4.2' }],
    ['API=v2 rc1', { service: 'api', version: 'v2 rc1' }],
    ['splashpage-api=2024.05.01', { service: 'splashpage-api', version: '2024.05.01' }],
    ['api', null],
    ['=1.0', null],
    ['api=', null],
    ['a pi=1', null],
  ])('parseExpectation(%j)', (text, want) => {
    expect(parseExpectation(text)).toEqual(want);
  });

  it.each([
    ['web-1', true],
    ['web-1.cluster-1.example.com:13655', true],
    ['10.0.0.5', true],
    ['10.0.0.5:4000', true],
    ['::1', true],
    ['[::1]', true],
    ['[::1]:13655', true],
    ['[fe80::1]:1', true],
    ['web-1:0', false],
    ['web-1:70000', false],
    ['[web-1]:13655', false],
    ['http://web-1', false],
    ['', false],
    ['-web', false],
  ])('isFleetHost(%j) = %s', (text, ok) => {
    expect(isFleetHost(text)).toBe(ok);
  });

  it('reads hosts files: lines, spaces, comments', () => {
    expect(parseHostsFile('# fleet\nweb-1\nweb-2:4000  web-3 # rack 2\n\n  [::1]:13655\n')).toEqual(['web-1', 'web-2:4000', 'web-3', '[::1]:13655']);
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
