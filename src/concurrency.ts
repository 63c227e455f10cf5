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
