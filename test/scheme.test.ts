import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  base32Port,
  BASE32_MAX_PORT,
  BASE32_MIN_PORT,
  blockPort,
  decodePort,
  decodePortRaw,
  DEFAULT_ROLES,
  prefixOf,
  serviceLabel,
  versionedNumber,
  versionedPort,
} from '../src/scheme/index.js';

/** Seed 003's table, exactly. */
const SEED_TABLE: [string, number, string][] = [
  ['api', 12082, 'api'],
  ['db', 14688, 'db0'],
  ['foo-bar', 17176, 'foo'],
  ['aardvark', 11611, 'aar'],
  ['alligator', 11957, 'all'],
  ['bee', 12750, 'bee'],
  ['cat', 13661, 'cat'],
  ['caterpillar', 13661, 'cat'],
  ['dog', 15120, 'dog'],
  ['elephant', 16046, 'ele'],
  ['vole', 33557, 'vol'],
  ['zebra', 33227, 'veb'],
];

/** Seed 003's well-known ports, read without the 1024 offset. */
const SEED_RAW: [number, string][] = [
  [6379, '67b'],
  [27017, 'qc9'],
  [3000, '2to'],
  [8000, '7q0'],
  [8080, '7sg'],
  [2195, '24j'],
];

describe('base32 scheme', () => {
  it.each(SEED_TABLE)('%s → %i (%s)', (name, port, prefix) => {
    expect(base32Port(name)).toBe(port);
    expect(prefixOf(name)).toBe(prefix);
    expect(decodePort(port)).toBe(prefix);
  });

  it.each(SEED_RAW)('decodes %i raw (no offset) as %s, as the seed did', (port, raw) => {
    expect(decodePortRaw(port)).toBe(raw);
    // With the offset the same port reads differently: the two readings differ by 1024.
    expect(decodePort(port)).not.toBe(raw);
    expect(decodePort(port + 1024)).toBe(raw);
  });

  it('reads the service label: first label, one leading underscore, lowercased', () => {
    expect(serviceLabel('_api._tcp.cluster-1.example.com')).toBe('api');
    expect(serviceLabel('API.Cluster-1')).toBe('api');
    expect(serviceLabel('__x')).toBe('_x');
    expect(base32Port('_api._tcp.cluster-1.example.com')).toBe(12082);
    expect(base32Port('API')).toBe(12082);
    // Only one underscore is dropped; the second reads as 0, like padding.
    expect(prefixOf('__api')).toBe('0ap');
  });

  it('reads w–z as v and every other character as 0', () => {
    expect(prefixOf('wxy')).toBe('vvv');
    expect(prefixOf('a-b')).toBe('a0b');
    expect(prefixOf('a_b')).toBe('a0b');
    expect(base32Port('')).toBe(BASE32_MIN_PORT);
    expect(base32Port('zzz')).toBe(BASE32_MAX_PORT);
  });

  it('has no decode outside 1024–33791 (0–32767 raw)', () => {
    for (const p of [0, 80, 1023, 33792, 65535, -1, 1.5]) expect(decodePort(p)).toBeNull();
    for (const p of [-1, 32768, 65535, 2.5]) expect(decodePortRaw(p)).toBeNull();
    expect(decodePort(1024)).toBe('000');
    expect(decodePort(33791)).toBe('vvv');
    expect(decodePortRaw(0)).toBe('000');
  });
});

const labelChar = fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_'.split(''));
const label = fc.string({ unit: labelChar, minLength: 0, maxLength: 20 });

describe('base32 properties', () => {
  it('every port is in 1024–33791', () => {
    fc.assert(fc.property(label, (name) => {
      const p = base32Port(name);
      return Number.isInteger(p) && p >= BASE32_MIN_PORT && p <= BASE32_MAX_PORT;
    }));
  });

  it('decode(port(name)) is the padded prefix', () => {
    fc.assert(
      fc.property(label, (name) => {
        const padded = serviceLabel(name).padEnd(3, '0').slice(0, 3);
        const expected = [...padded].map((c) => (/[0-9a-v]/.test(c) ? c : /[w-z]/.test(c) ? 'v' : '0')).join('');
        expect(decodePort(base32Port(name))).toBe(expected);
        expect(prefixOf(name)).toBe(expected);
      }),
    );
  });

  it('port(decode(port)) is the port, for every port in range', () => {
    for (let p = BASE32_MIN_PORT; p <= BASE32_MAX_PORT; p++) {
      if (base32Port(decodePort(p)!) !== p) expect.fail(`round trip breaks at ${p}`);
    }
  });

  it('is case-insensitive', () => {
    fc.assert(fc.property(label, (name) => base32Port(name.toUpperCase()) === base32Port(name)));
  });

  it('drops one leading underscore and ignores everything after the first label', () => {
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'.split('')), minLength: 1, maxLength: 10 }), label, (name, rest) => {
        return base32Port(`_${name}`) === base32Port(name) && base32Port(`${name}.${rest}`) === base32Port(name);
      }),
    );
  });

  it('is deterministic and depends only on the first three characters', () => {
    const noUnderscoreFirst = label.filter((n) => !n.startsWith('_'));
    fc.assert(fc.property(noUnderscoreFirst, label, (name, tail) => {
      const head = name.slice(0, 3).padEnd(3, '0');
      return base32Port(name) === base32Port(name) && base32Port(`${head}${tail.replace(/\./g, '')}`) === base32Port(head);
    }));
  });

  it('keeps lexical order of lowercase base32hex prefixes', () => {
    const digit = fc.constantFrom(...'0123456789abcdefghijklmnopqrstuv'.split(''));
    const p3 = fc.string({ unit: digit, minLength: 3, maxLength: 3 });
    fc.assert(fc.property(p3, p3, (a, b) => Math.sign(base32Port(a) - base32Port(b)) === Math.sign(a < b ? -1 : a > b ? 1 : 0)));
  });
});

describe('versioned scheme (seed 000)', () => {
  it.each([
    [1, 1, 8101],
    [1, 2, 8102],
    [2, 11, 8211],
    [0, 0, 8000],
  ])('id %i v%i → %i', (id, version, port) => {
    expect(versionedNumber(id, version)).toBe(port);
    expect(versionedPort(id, version)).toBe(port);
  });

  it.each([
    [4, 300, 84300],
    [100, 101, 8100101],
  ])('id %i v%i → %i, not a port', (id, version, n) => {
    expect(versionedNumber(id, version)).toBe(n);
    expect(versionedPort(id, version)).toBeNull();
  });

  it('gives the same number for id 1 v101 and id 11 v1', () => {
    expect(versionedNumber(1, 101)).toBe(versionedNumber(11, 1));
  });

  it('is one-to-one wherever it gives a port', () => {
    const seen = new Map<number, string>();
    for (let id = 0; id < 1000; id++) {
      for (let v = 0; v < 1000; v++) {
        const p = versionedPort(id, v);
        if (p === null) continue;
        const prev = seen.get(p);
        if (prev) expect.fail(`${p}: ${prev} and ${id}/${v}`);
        seen.set(p, `${id}/${v}`);
      }
    }
    expect(seen.size).toBe(1000); // ids 0–9 × versions 0–99: 8000–8999
  });

  it('rejects negative and fractional ids and versions', () => {
    expect(() => versionedNumber(-1, 1)).toThrow(RangeError);
    expect(() => versionedNumber(1, 1.5)).toThrow(RangeError);
  });
});

describe('block scheme (seed 002)', () => {
  it.each([
    [7000, 'www', 7000],
    [7000, 'nodejs', 7000],
    [7000, 'api', 7001],
    [7000, 'play', 7001],
    [7000, 'psql', 7009],
    [7000, 'postgresql', 7009],
    [7010, 'www', 7010],
    [7010, 'api', 7011],
    [7010, 'psql', 7019],
  ])('base %i role %s → %i', (base, role, port) => {
    expect(blockPort(base, DEFAULT_ROLES[role]!)).toBe(port);
  });

  it('knows the internal port of postgresql', () => {
    expect(DEFAULT_ROLES.psql!.internal).toBe(5432);
    expect(DEFAULT_ROLES.postgresql!.internal).toBe(5432);
  });
});
