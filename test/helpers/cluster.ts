import type { Counter, Gauge } from 'prom-client';

/** The value of one series of a prom-client metric (0 when it has no such series yet). */
export async function count(metric: Counter | Gauge, labels: Record<string, string> = {}): Promise<number> {
  const { values } = await metric.get();
  return values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((sum, v) => sum + v.value, 0);
}

/** Polls `check` until it returns a value that is not undefined; rejects with `what` after `timeoutMs` (a wide correctness bound). */
export async function until<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
