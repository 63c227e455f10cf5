import { describe, expect, it } from 'vitest';
import { isDnsSdServiceName, nameListener, nameSourceOf } from '../src/core/naming.js';
import { candidateNames, processNames, scriptOf } from '../src/inventory/process-names.js';
import { parseRegistry } from '../src/registry/load.js';
import { Registry } from '../src/registry/registry.js';
import { base32Port } from '../src/scheme/index.js';

/**
 * Names people recognise (issue 22): how the sources rank (core/naming.ts),
 * which names may be DNS-SD service types (RFC 6335 §5.1), and which of a
 * process's names are kept: only those whose canonical port is the port it
 * listens on (inventory/process-names.ts).
 */

describe('nameListener: the sources in their order', () => {
  it('the registry alone when it lists the port: nothing learned adds to it', () => {
    expect(nameListener({ registry: ['blog'], query: ['blo', 'blogs'], process: ['blog'] })).toEqual([{ name: 'blog', source: 'registry' }]);
  });

  it('else names clients asked for, then the process\'s own; a name two sources give is listed once, with the better one', () => {
    expect(nameListener({ registry: [], query: ['db'], process: ['db', 'db0'] })).toEqual([
      { name: 'db', source: 'query' },
      { name: 'db0', source: 'process' },
    ]);
    expect(nameListener({ registry: [], query: [], process: ['api'] })).toEqual([{ name: 'api', source: 'process' }]);
  });

  it('a collision (two names, one port) shows both; no source: unnamed ("none")', () => {
    const both = nameListener({ registry: [], query: ['caterpillar', 'cat'], process: [] });
    expect(both.map((n) => n.name)).toEqual(['cat', 'caterpillar']);
    expect(nameSourceOf(both)).toBe('query');
    expect(nameListener({ registry: [], query: [], process: [] })).toEqual([]);
    expect(nameSourceOf([])).toBe('none');
  });
});

describe('isDnsSdServiceName (RFC 6335 §5.1, as RFC 6763 §7 takes it)', () => {
  it.each([
    ['api', true],
    ['db0', true],
    ['foo-bar', true],
    ['a23456789012345', true], // 15 characters
    ['a234567890123456', false], // 16
    ['123', false], // no letter
    ['-api', false],
    ['api-', false],
    ['foo--bar', false],
    ['foo_bar', false],
    ['', false],
  ])('%j → %s', (name, ok) => {
    expect(isDnsSdServiceName(name)).toBe(ok);
  });
});

describe('a process\'s names', () => {
  it('tries its unit, the script an interpreter runs, its executable, its comm; lowercased, a template instance as its template', () => {
    expect(candidateNames({ unit: 'API', exe: 'api-server', comm: 'api-server', args: ['/usr/bin/api-server'] })).toEqual(['api', 'api-server']);
    expect(candidateNames({ unit: 'worker@3', exe: 'python3.11', comm: 'python3', args: ['python3', '-u', '/srv/db.py'] })).toEqual(['worker', 'db', 'python3']); // python3.11 holds a dot: not a name
    expect(candidateNames({ unit: undefined, exe: 'node', comm: 'node', args: ['node', '--enable-source-maps', 'dist/api.js'] })).toEqual(['api', 'node']);
    expect(candidateNames({ unit: undefined, exe: undefined, comm: 'Weird Name', args: [] })).toEqual([]);
  });

  it('reads the script or module an interpreter runs', () => {
    expect(scriptOf(['python3', '-m', 'svc.db'])).toBe('db');
    expect(scriptOf(['node', '/srv/api.mjs', '--port', '1'])).toBe('api');
    expect(scriptOf(['python3', '-c', 'print(1)'])).toBeUndefined();
    expect(scriptOf(['python3'])).toBeUndefined();
  });

  it('keeps only names whose canonical port is the port it listens on: a name never moves a port', () => {
    const empty = Registry.empty();
    // api.service on api's port: named. Prometheus on 9090, a dev server named node on 2024: nobody's canonical port.
    expect(processNames({ unit: 'api', exe: 'api', comm: 'api', args: [] }, base32Port('api'), empty)).toEqual(['api']);
    expect(processNames({ unit: undefined, exe: 'prometheus', comm: 'prometheus', args: [] }, 9090, empty)).toEqual([]);
    expect(processNames({ unit: undefined, exe: 'node', comm: 'node', args: ['node', 'server.js'] }, 2024, empty)).toEqual([]);
    // cat and caterpillar share 13661: both are names of it; the unit's comes first.
    expect(processNames({ unit: 'caterpillar', exe: 'cat', comm: 'cat', args: [] }, 13661, empty)).toEqual(['caterpillar', 'cat']);
    // The registry pins `legacy` to 6379: the process `legacy` on its scheme port is not it.
    const pinned = parseRegistry('services:\n  legacy: { port: 6379 }\n', 'pinned.yaml');
    expect(processNames({ unit: 'legacy', exe: 'x', comm: 'x', args: [] }, 6379, pinned)).toEqual(['legacy']);
    expect(processNames({ unit: 'legacy', exe: 'x', comm: 'x', args: [] }, base32Port('legacy'), pinned)).toEqual([]);
  });
});
