import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';

/** What signals act on: a running daemon (or a --workers primary). */
export interface Signalled {
  close(graceMs: number): Promise<void>;
  reload(): Promise<unknown>;
}

export interface SignalHandling {
  /** Resolves with the signal's name once SIGTERM or SIGINT has drained and closed the daemon. */
  stopped: Promise<NodeJS.Signals>;
  /** Removes the handlers (without stopping anything). */
  dispose(): void;
}

/**
 * The daemon's signals, as `canonport serve` installs them: SIGHUP reloads
 * (the same reload a registry file change triggers); SIGTERM and SIGINT stop
 * taking queries, drain what is in flight for up to `drainMs`, and close.
 * In its own module so a test can deliver real signals to an in-process daemon.
 */
export interface SignalOptions {
  /**
   * Called when the close has not finished `drainMs + overdueMs` after the
   * signal (something held it: an etcd revoke that never answers, a stream
   * that would not end), and on a second SIGTERM or SIGINT: `serve` exits
   * there, so a stop is always bounded. Not called in tests unless given.
   */
  onOverdue?: ((why: 'overdue' | 'second_signal') => void) | undefined;
  /** How long past the drain the close may take before onOverdue (default 5 s). */
  overdueMs?: number | undefined;
}

export function handleSignals(daemon: Signalled, logger: Logger, drainMs: number, opts: SignalOptions = {}): SignalHandling {
  let resolveStopped!: (s: NodeJS.Signals) => void;
  const stopped = new Promise<NodeJS.Signals>((r) => (resolveStopped = r));
  const dispose = () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
  };
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ event: 'shutdown', signal, code: ErrorCodes.SHUTTING_DOWN }, `${signal} again: stopping now, without waiting for the drain`);
      opts.onOverdue?.('second_signal');
      return;
    }
    stopping = true;
    logger.info({ event: 'shutdown', signal }, `${signal}: draining`);
    // Keep listening for SIGTERM/SIGINT (a second one stops at once); SIGHUP no longer reloads.
    process.off('SIGHUP', onHup);
    const overdueMs = opts.overdueMs ?? 5000;
    const overdue = opts.onOverdue
      ? setTimeout(() => {
          logger.error({ event: 'shutdown', code: ErrorCodes.SHUTTING_DOWN, drainMs, overdueMs }, `still not closed ${drainMs + overdueMs} ms after ${signal}: stopping now`);
          opts.onOverdue?.('overdue');
        }, drainMs + overdueMs)
      : undefined;
    void daemon.close(drainMs).then(
      () => {
        clearTimeout(overdue);
        dispose();
        logger.info({ event: 'stopped' }, 'canonport stopped');
        resolveStopped(signal);
      },
      (err: unknown) => {
        clearTimeout(overdue);
        dispose();
        logger.error({ event: 'stopped', code: ErrorCodes.SHUTTING_DOWN, err: err instanceof Error ? err.message : String(err) }, 'canonport stopped with an error while closing');
        resolveStopped(signal);
      },
    );
  };
  const onTerm = () => stop('SIGTERM');
  const onInt = () => stop('SIGINT');
  const onHup = () => {
    logger.info({ event: 'signal', signal: 'SIGHUP' }, 'SIGHUP: reloading');
    void daemon.reload();
  };
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  process.on('SIGHUP', onHup);
  return { stopped, dispose };
}
