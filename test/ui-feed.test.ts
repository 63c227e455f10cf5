import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { FleetDocument } from '../src/fleet/document.js';
import { DEBOUNCE_MS, FleetFeed, MAX_WAIT_MS, REBUILD_CPU_SHARE, RECENT_DIFFS, type FeedEvent, type FeedSource } from '../src/ui/feed.js';
import { docOf } from './helpers/fleet-docs.js';

/**
 * The fleet page's feed (src/ui/feed.ts): it rebuilds the document only
 * when the source changed, coalesces bursts (quiet DEBOUNCE_MS, or
 * MAX_WAIT_MS at most), publishes a diff per new document, and keeps the
 * last RECENT_DIFFS so a page catches up from a recent one.
 */

/** A source whose document is the fleet of `n` hosts running api; counts its reads. */
function counter(readMs = 0): FeedSource & { n: number; reads: number; change(n: number): void } {
  const listeners = new Set<() => void>();
  const docs = new Map<number, FleetDocument>();
  const s = {
    n: 1,
    reads: 0,
    read() {
      s.reads++;
      // A large fleet's read takes time: the clock moves on while it runs.
      if (readMs > 0) vi.setSystemTime(Date.now() + readMs);
      let d = docs.get(s.n);
      if (!d) docs.set(s.n, (d = docOf(Array.from({ length: s.n }, (_, i) => ({ name: `web-${i}`, runs: { api: '1.0.0' } })))));
      return d;
    },
    onChange(l: () => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    change(n: number) {
      s.n = n;
      for (const l of listeners) l();
    },
  };
  return s;
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('the fleet feed', () => {
  it('reads the source once per request while nothing changes, and not at all on changes nobody follows', async () => {
    const src = counter();
    const feed = new FleetFeed(src);
    const a = await feed.latest();
    expect(await feed.latest()).toBe(a);
    expect(src.reads).toBe(1);
    src.change(2);
    src.change(3);
    await vi.advanceTimersByTimeAsync(MAX_WAIT_MS * 2);
    expect(src.reads).toBe(1);
    // The next request rebuilds.
    const b = await feed.latest();
    expect(b.id).not.toBe(a.id);
    expect(src.reads).toBe(2);
    feed.close();
  });

  it('coalesces a burst of changes into one diff, DEBOUNCE_MS after the last, and never waits past MAX_WAIT_MS', async () => {
    const src = counter();
    const feed = new FleetFeed(src);
    const first = await feed.latest();
    const events: FeedEvent[] = [];
    feed.subscribe((e) => events.push(e));
    // Five changes 100 ms apart: one rebuild, DEBOUNCE_MS after the last.
    for (let n = 2; n <= 6; n++) {
      src.change(n);
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(events).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(DEBOUNCE_MS);
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0]!.json)).toMatchObject({ from: first.id, to: events[0]!.id });
    // A change every 100 ms for 3 s: published at least every MAX_WAIT_MS.
    for (let i = 0; i < 30; i++) {
      src.change(10 + i);
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(events.length).toBeGreaterThanOrEqual(1 + Math.floor(3000 / MAX_WAIT_MS));
    feed.close();
  });

  it('publishes nothing when the source changed back: the document is the same', async () => {
    const src = counter();
    const feed = new FleetFeed(src);
    const a = await feed.latest();
    const events: FeedEvent[] = [];
    feed.subscribe((e) => events.push(e));
    src.change(2);
    src.change(1);
    await vi.advanceTimersByTimeAsync(MAX_WAIT_MS);
    expect(events).toEqual([]);
    expect((await feed.latest()).id).toBe(a.id);
    feed.close();
  });

  it(`catches up a page from any of the last ${RECENT_DIFFS} documents; older ones fetch again`, async () => {
    const src = counter();
    const feed = new FleetFeed(src);
    const ids = [(await feed.latest()).id];
    for (let n = 2; n <= RECENT_DIFFS + 3; n++) {
      src.change(n);
      ids.push((await feed.latest()).id);
    }
    const current = ids.at(-1)!;
    expect(feed.since(current)).toEqual([]);
    const fromRecent = feed.since(ids.at(-RECENT_DIFFS - 1)!)!;
    expect(fromRecent.map((e) => e.id)).toEqual(ids.slice(-RECENT_DIFFS));
    expect(feed.since(ids[0]!)).toBeNull();
    expect(feed.since('unknown-1')).toBeNull();
    feed.close();
  });

  it(`keeps rebuilds of a large fleet under ${REBUILD_CPU_SHARE * 100} % of a core while its view churns, and still publishes`, async () => {
    // Each read takes 400 ms (a fleet of a few thousand hosts); a change every 100 ms for 40 s.
    const READ_MS = 400;
    const src = counter(READ_MS);
    const feed = new FleetFeed(src);
    await feed.latest();
    const events: FeedEvent[] = [];
    feed.subscribe((e) => events.push(e));
    const reads = src.reads;
    const start = Date.now();
    for (let i = 0; i < 400; i++) {
      src.change(2 + (i % 50));
      await vi.advanceTimersByTimeAsync(100);
    }
    const elapsed = Date.now() - start;
    const rebuilds = src.reads - reads;
    // Without the bound: one every MAX_WAIT_MS (40 and more). With it: one per READ_MS / share at most, give or take the last.
    expect(rebuilds * READ_MS).toBeLessThanOrEqual(elapsed * REBUILD_CPU_SHARE + READ_MS);
    expect(events.length).toBeGreaterThanOrEqual(Math.floor(elapsed / (READ_MS / REBUILD_CPU_SHARE)) - 1);
    feed.close();
  });
});
