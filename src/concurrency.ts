/**
 * Runs fn over every item with at most `limit` calls in flight, and
 * resolves when all are done. fn gets the item's index, so callers can
 * write results in input order. fn must not throw (handle errors per item).
 */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
}

/**
 * A first-in first-out queue with O(1) push and shift. `Array.prototype.shift`
 * moves every element: over a queue of a million entries (an xDS flood's
 * lookups) that made draining it quadratic. Hand-written (a head index over
 * an array, compacted as it drains) because it is ten lines; yocto-queue
 * would do the same with a linked list.
 */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head] = undefined as T; // let it be collected
    this.head++;
    // Compact once the consumed part is most of the array: amortised O(1), memory follows the queue.
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
  }
}

/** What Quota.acquire says. */
export type QuotaVerdict =
  /** Taken: release it later. */
  | { ok: true }
  /** Refused: `reason` says which bound; `holder` (total only) is the key holding the most, when taking from it would be fair. */
  | { ok: false; reason: 'client' | 'total'; holder?: string | undefined };

/**
 * Counts of something clients hold (connections, streams, subscribed names)
 * per client and in total, each with a bound: no client may hold more than
 * `perClient` (unless `perClientOf` says otherwise for it), and all together
 * no more than `total`. The map holds only clients that hold something, so
 * its size is at most `total`.
 *
 * Fairness when the total is reached: a client holding less than an equal
 * share (total / clients holding) is told who holds the most (`holder`),
 * so the caller can take back from the largest holder rather than refuse a
 * small one; a client at or above its share is refused.
 */
export class Quota {
  /** Client → what it holds; a client that holds nothing has no entry. Bounded by `total` (entries hold ≥ 1). */
  private readonly held = new Map<string, number>();
  private sum = 0;

  constructor(
    private readonly limits: () => { total: number; perClient: number },
    private readonly perClientOf: (client: string, perClient: number) => number = (_c, p) => p,
  ) {}

  get total(): number {
    return this.sum;
  }

  get clients(): number {
    return this.held.size;
  }

  of(client: string): number {
    return this.held.get(client) ?? 0;
  }

  /** Takes `n` for `client` when both bounds allow it. */
  acquire(client: string, n = 1): QuotaVerdict {
    const { total, perClient } = this.limits();
    const has = this.of(client);
    if (has + n > this.perClientOf(client, perClient)) return { ok: false, reason: 'client' };
    if (this.sum + n > total) {
      const share = total / Math.max(1, this.held.size + (has === 0 ? 1 : 0));
      let holder: string | undefined;
      if (has + n <= share) {
        let most = 0;
        for (const [c, k] of this.held) if (k > most && c !== client) [holder, most] = [c, k];
        if (most <= share) holder = undefined;
      }
      return { ok: false, reason: 'total', holder };
    }
    this.held.set(client, has + n);
    this.sum += n;
    return { ok: true };
  }

  release(client: string, n = 1): void {
    const has = this.of(client);
    const take = Math.min(has, n);
    if (take === 0) return;
    this.sum -= take;
    if (has === take) this.held.delete(client);
    else this.held.set(client, has - take);
  }
}

/**
 * Resolves after the event loop has had a turn (I/O, timers, signals): long
 * work awaits it every few milliseconds so DNS keeps answering and SIGTERM
 * is heard. `yieldEvery` returns a function to call in a loop; it yields
 * only when `sliceMs` have passed since the last yield.
 */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export function yieldEvery(sliceMs = 10): () => Promise<void> | undefined {
  let since = performance.now();
  return () => {
    const now = performance.now();
    if (now - since < sliceMs) return undefined;
    return nextTurn().then(() => {
      since = performance.now();
    });
  };
}

/**
 * Runs `run(item)` for queued items in arrival order, at most `sliceMs` of
 * them per turn of the event loop, then lets I/O and timers in: work that
 * outsiders can make large (thousands of xDS streams to answer, Watch
 * streams to refresh) never holds the loop for long. `run` must not throw
 * (it is guarded: a throw is reported to `onError` and the queue goes on).
 * Items are kept until run or cleared: the caller bounds how many it adds.
 */
export class TurnQueue<T> {
  private readonly queue = new Fifo<T>();
  private scheduled = false;

  constructor(
    private readonly run: (item: T) => void,
    private readonly onError: (err: unknown) => void = () => {},
    private readonly sliceMs = 5,
  ) {}

  get length(): number {
    return this.queue.length;
  }

  add(item: T): void {
    this.queue.push(item);
    this.schedule();
  }

  clear(): void {
    this.queue.clear();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    const until = performance.now() + this.sliceMs;
    while (this.queue.length > 0) {
      const item = this.queue.shift()!;
      try {
        this.run(item);
      } catch (err) {
        this.onError(err);
      }
      if (performance.now() >= until) break;
    }
    if (this.queue.length > 0) this.schedule();
  }
}

/**
 * Work per item that can be asked for again while it runs (look a name up,
 * resolve a watched name): each item waits in the queue at most once, runs
 * at most once at a time, and runs once more afterwards when it was asked
 * for meanwhile (`askedAgain` tells `run` so, to drop a result already out
 * of date); at most `concurrency()` run at once. Work that settles at once
 * chains through microtasks, each run finishing starting the next, so the
 * event loop gets a turn every `perTurn` starts. Shared by the xDS answer
 * cache and the Watch hub; `live(item)` false drops an item still queued.
 */
export class CoalescingQueue<T> {
  private readonly queue = new Fifo<T>();
  /** The items queued or running: at most the caller's live items. */
  private readonly state = new Map<T, { queued: boolean; running: boolean; again: boolean }>();
  private active = 0;
  private startedThisTurn = 0;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly run: (item: T) => Promise<void>,
    private readonly o: { concurrency: () => number; live: (item: T) => boolean; onError: (err: unknown, item: T) => void; perTurn?: number },
  ) {}

  enqueue(item: T): void {
    if (this.closed) return;
    let st = this.state.get(item);
    if (!st) this.state.set(item, (st = { queued: false, running: false, again: false }));
    if (st.running) {
      st.again = true;
      return;
    }
    if (st.queued) return;
    st.queued = true;
    this.queue.push(item);
    this.pump();
  }

  /** Whether `item` was asked for again since its run started (it will run once more). */
  askedAgain(item: T): boolean {
    return this.state.get(item)?.again === true;
  }

  /** Drops every queued item; runs in flight finish, and nothing more starts. */
  close(): void {
    this.closed = true;
    this.clear();
  }

  /** Drops every queued item (nothing is live any more); runs in flight finish. */
  clear(): void {
    this.queue.clear();
    for (const [item, st] of this.state) if (!st.running) this.state.delete(item);
  }

  private pump(): void {
    if (this.scheduled || this.closed) return;
    while (this.active < this.o.concurrency() && this.queue.length > 0) {
      if (this.startedThisTurn >= (this.o.perTurn ?? 128)) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.startedThisTurn = 0;
          this.pump();
        });
        return;
      }
      const item = this.queue.shift()!;
      const st = this.state.get(item);
      if (!st) continue;
      st.queued = false;
      if (!this.o.live(item)) {
        this.state.delete(item);
        continue;
      }
      this.startedThisTurn++;
      this.active++;
      st.running = true;
      st.again = false;
      this.run(item)
        .catch((err: unknown) => this.o.onError(err, item))
        .finally(() => {
          this.active--;
          st.running = false;
          const again = st.again;
          st.again = false;
          if (!st.queued) this.state.delete(item);
          if (again && this.o.live(item)) this.enqueue(item);
          this.pump();
        });
    }
  }
}
