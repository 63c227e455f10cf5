import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AskedNames, MAX_ASKED_NAMES, MAX_NAMES_PER_PORT, type AskedName } from '../src/discovery/asked-names.js';
import { base32Port } from '../src/scheme/index.js';

/**
 * The names clients ask for (src/discovery/asked-names.ts): learned only
 * while some host listens on their port and the registry does not name it,
 * bounded per port and in all, forgotten when unused or when nobody
 * listens, and published at most once per interval whatever the query rate.
 * The clock and the timers are vitest's fake ones: no sleeping.
 */

const DB = base32Port('db');

describe('AskedNames', () => {
  let now = 1_000_000;
  let listening: Set<number>;
  let published: AskedName[][];
  const make = (o: Partial<ConstructorParameters<typeof AskedNames>[0]> = {}) =>
    new AskedNames({ listening: (p) => listening.has(p), registryNames: (p) => p === 6379, onChange: (n) => published.push([...n]), now: () => now, ...o });

  beforeEach(() => {
    vi.useFakeTimers();
    now = 1_000_000;
    listening = new Set([DB, 6379, base32Port('cat')]);
    published = [];
  });
  afterEach(() => vi.useRealTimers());

  it('learns a name while some host listens on its canonical port; never for a port nobody listens on, one the registry names, or a malformed name', () => {
    const names = make();
    expect(names.ask('db', DB)).toBeTypeOf('function');
    expect(names.ask('api', base32Port('api'))).toBeUndefined(); // nobody listens on 12082
    expect(names.ask('legacy', 6379)).toBeUndefined(); // the registry names 6379
    expect(names.ask('Not A Name', DB)).toBeUndefined();
    expect(names.list()).toEqual([{ port: DB, name: 'db' }]);
    expect(names.namesOn(DB)).toEqual(['db']);
  });

  it('keeps both names of a collision (cat and caterpillar on one port): a name never moves a port', () => {
    const names = make();
    names.ask('cat', base32Port('cat'));
    names.ask('caterpillar', base32Port('caterpillar'));
    expect(names.namesOn(base32Port('cat'))).toEqual(['cat', 'caterpillar']);
  });

  it('publishes a change at once, then at most once per interval however many names come (a query flood is one write per interval)', () => {
    const names = make({ minPublishMs: 5000 });
    names.ask('db', DB);
    vi.advanceTimersByTime(0);
    expect(published).toEqual([[{ port: DB, name: 'db' }]]);
    // A flood of made-up names on the same port, within the interval: nothing published until it ends.
    for (let i = 0; i < 1000; i++) names.ask(`db0x${i}`, DB);
    now += 4999;
    vi.advanceTimersByTime(4999);
    expect(published.length).toBe(1);
    now += 1;
    vi.advanceTimersByTime(1);
    expect(published.length).toBe(2);
    // Bounded per port: the names asked most recently stay.
    expect(published[1]!.length).toBe(MAX_NAMES_PER_PORT);
    expect(names.evicted).toBe(1000 + 1 - MAX_NAMES_PER_PORT);
    // Asked again, an unchanged set publishes nothing.
    names.ask('db0x999', DB);
    now += 10_000;
    vi.advanceTimersByTime(10_000);
    expect(published.length).toBe(2);
  });

  it('holds at most MAX_ASKED_NAMES in all, forgetting the one asked least recently', () => {
    const names = make();
    const ports = Array.from({ length: MAX_ASKED_NAMES + 10 }, (_, i) => 2000 + i);
    for (const p of ports) listening.add(p);
    ports.forEach((p, i) => {
      now += 1;
      names.ask(`n${i}`, p);
    });
    expect(names.size).toBe(MAX_ASKED_NAMES);
    expect(names.namesOn(2000)).toEqual([]);
    expect(names.namesOn(2000 + MAX_ASKED_NAMES + 9)).toEqual([`n${MAX_ASKED_NAMES + 9}`]);
  });

  it('forgets a name not asked within its TTL, and one whose port no host listens on any more; a touch keeps it', () => {
    const names = make({ ttlMs: () => 60_000 });
    const touch = names.ask('db', DB)!;
    names.ask('cat', base32Port('cat'));
    now += 50_000;
    touch(); // served again from an encoded answer
    now += 20_000;
    names.sweep();
    expect(names.list().map((n) => n.name)).toEqual(['db']); // cat: 70 s without a query
    listening.delete(DB);
    names.sweep();
    expect(names.list()).toEqual([]);
    // A touch of a forgotten name asks anew: learned again once a host listens.
    listening.add(DB);
    touch();
    expect(names.list()).toEqual([{ port: DB, name: 'db' }]);
  });

  it('learns nothing while turned off (--learn-names false)', () => {
    const names = make({ enabled: () => false });
    expect(names.ask('db', DB)).toBeUndefined();
    expect(names.size).toBe(0);
  });

  it('merges what a --workers DNS worker learned, under the same rules, keeping the later time', () => {
    const names = make({ ttlMs: () => 60_000 });
    names.merge([
      { port: DB, name: 'db', lastMs: now - 10_000 },
      { port: 6379, name: 'legacy', lastMs: now }, // the registry names it
      { port: 70000, name: 'x', lastMs: now }, // not a port
    ]);
    expect(names.list()).toEqual([{ port: DB, name: 'db' }]);
    names.merge([{ port: DB, name: 'db', lastMs: now }]);
    now += 55_000;
    names.sweep();
    expect(names.list()).toEqual([{ port: DB, name: 'db' }]);
  });
});
