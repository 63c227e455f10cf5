import type { ChildProcess } from 'node:child_process';

/**
 * Stops a child process by its PID: `signal` (SIGTERM unless told), then
 * SIGKILL if it is still there after `killAfterMs`; resolves once it has
 * exited, at once for one that already has (by a code or a signal) or
 * never started (spawn failed: no PID, and no 'exit' to wait for). The one
 * way the tests and the bench stop what they started.
 */
export function stopChild(proc: ChildProcess, opts: { signal?: NodeJS.Signals; killAfterMs?: number } = {}): Promise<void> {
  const { signal = 'SIGTERM', killAfterMs = 3000 } = opts;
  return new Promise<void>((resolve) => {
    if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return resolve();
    const timer = signal === 'SIGKILL' ? undefined : setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill(signal);
  });
}
