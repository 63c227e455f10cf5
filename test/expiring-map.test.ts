import { afterEach, describe, expect, it, vi } from 'vitest';
import { ExpiringMap } from '../src/dns/expiring-map.js';

/**
 * The store of the forwarding cache and the learned upstream addresses
 * (issue 24): entries expire on read by the injected clock, eviction reads
 * the oldest first without copying keys, and the sweep that gives memory
 * back runs a batch per turn of the event loop, never on an empty map.
 */

afterEach(() => {
  vi.useRealTimers();
});

describe('ExpiringMap', () => {
  it('returns an entry until its lifetime passes on the injected clock, then forgets it', () => {
    let t = 1_000;
    const m = new ExpiringMap<string>({ now: () => t });
    m.set('a', 'A', 10);
    t += 9_999;
    expect(m.get('a')).toBe('A');
    expect(m.has('a')).toBe(true);
    t += 1;
    expect(m.get('a')).toBeUndefined();
    expect(m.size).toBe(0);
    m.close();
  });

  it('walks entries oldest first, says which are live, and moveToBack gives one a second chance with its expiry kept', () => {
    let t = 0;
    const m = new ExpiringMap<number>({ now: () => t });
    m.set('a', 1, 5);
    m.set('b', 2, 100);
    m.set('c', 3, 100);
    m.moveToBack('a');
    t = 6_000;
    expect([...m.entries()]).toEqual([
      ['b', 2, true],
      ['c', 3, true],
      ['a', 1, false],
    ]);
    // A known key set again keeps its place (the owner moves it explicitly).
    m.set('b', 20, 100);
    expect([...m.entries()].map(([k]) => k)).toEqual(['b', 'c', 'a']);
    m.close();
  });

  it('sweeps expired entries a batch per turn of the event loop, reports the size, and sleeps while empty', async () => {
    vi.useFakeTimers();
    let t = 0;
    const sizes: number[] = [];
    const m = new ExpiringMap<number>({ now: () => t, sweepEveryMs: 60_000, sweepBatch: 100, onSweep: (n) => sizes.push(n) });
    // An empty map arms no timer: an idle daemon is not woken for it.
    expect(vi.getTimerCount()).toBe(0);
    for (let i = 0; i < 1_000; i++) m.set(`k${i}`, i, i < 900 ? 10 : 1_000);
    expect(vi.getTimerCount()).toBe(1);
    t = 20_000;
    await vi.advanceTimersByTimeAsync(60_000);
    // Each batch is the next turn of the loop (an immediate): let them run, one turn at a time.
    for (let i = 0; i < 12 && m.size > 100; i++) await vi.runOnlyPendingTimersAsync();
    // 1,000 entries, 100 per turn: ten turns, each giving back what it found expired.
    expect(m.size).toBe(100);
    expect(sizes).toEqual([900, 800, 700, 600, 500, 400, 300, 200, 100]);
    // The live ones are still there; the next sweep is armed since some remain.
    expect(m.get('k950')).toBe(950);
    expect(vi.getTimerCount()).toBe(1);
    m.clear();
    t = 2_000_000;
    await vi.advanceTimersByTimeAsync(60_000);
    expect(vi.getTimerCount()).toBe(0);
    m.close();
  });

  it('a sweep never holds the event loop for more than one batch: each batch is its own turn of the loop', async () => {
    vi.useFakeTimers();
    let t = 0;
    const sizes: number[] = [];
    const m = new ExpiringMap<number>({ now: () => t, sweepEveryMs: 1_000, sweepBatch: 50, onSweep: (n) => sizes.push(n) });
    for (let i = 0; i < 500; i++) m.set(`k${i}`, i, 1);
    t = 10_000;
    await vi.advanceTimersByTimeAsync(1_000);
    // The timer fired and the first batch ran; the rest waits for later turns.
    expect(sizes[0]).toBe(450);
    await vi.runAllTimersAsync();
    expect(sizes).toEqual([450, 400, 350, 300, 250, 200, 150, 100, 50, 0]);
    expect(m.size).toBe(0);
    m.close();
  });

  it('close() stops the sweep; the map stays readable', async () => {
    vi.useFakeTimers();
    const m = new ExpiringMap<number>({ sweepEveryMs: 1_000 });
    m.set('a', 1, 100);
    m.close();
    expect(vi.getTimerCount()).toBe(0);
    expect(m.get('a')).toBe(1);
  });
});
