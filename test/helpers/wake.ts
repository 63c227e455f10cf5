/**
 * Waits up to `ms` for a wake-up: `setWake` receives the function that
 * ends the wait early (a client stores it and calls it when a message
 * arrives), and `undefined` once the wait is over. For clients that queue
 * what they receive and let a test await the next item with a bound.
 */
export function untilWokenOr(ms: number, setWake: (wake: (() => void) | undefined) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      setWake(undefined);
      resolve();
    };
    const timer = setTimeout(done, ms);
    setWake(done);
  });
}
