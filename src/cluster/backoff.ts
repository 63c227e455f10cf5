/**
 * Exponential backoff with full jitter (AWS architecture blog, "Exponential
 * Backoff and Jitter"): many daemons that lost etcd together do not come
 * back in lockstep.
 */
export class Backoff {
  private attempt = 0;
  constructor(
    private readonly initialMs = 200,
    private readonly maxMs = 5_000,
    private readonly random: () => number = Math.random,
  ) {}

  /** The next delay: uniform in [initial/2, min(max, initial·2^n)]. */
  next(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** this.attempt);
    if (cap < this.maxMs) this.attempt++;
    const floor = this.initialMs / 2;
    return floor + this.random() * Math.max(0, cap - floor);
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
