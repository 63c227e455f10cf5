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

/** A child's exit code and everything it wrote, once it has exited (its stdout and stderr must be pipes). */
export function outputOf(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
