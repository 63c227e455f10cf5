/**
 * Per-client token buckets for forwarded queries. The map of clients is
 * bounded: when it is full the oldest buckets go first (a client that comes
 * back starts with a full bucket, which only errs towards answering).
 */
export class RateLimiter {
  /** One bucket per client: at most maxClients (10,000), the oldest going first. */
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly perSecond: () => number,
    private readonly now: () => number = Date.now,
    private readonly maxClients = 10_000,
  ) {}

  /** True when `client` may send one more forwarded query now. */
  allow(client: string): boolean {
    const rate = this.perSecond();
    if (!(rate > 0)) return true;
    const burst = Math.max(1, rate * 2);
    const now = this.now();
    let b = this.buckets.get(client);
    if (!b) {
      if (this.buckets.size >= this.maxClients) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
      b = { tokens: burst, at: now };
      this.buckets.set(client, b);
    } else {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }
}
