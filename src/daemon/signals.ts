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
export function handleSignals(daemon: Signalled, logger: Logger, drainMs: number): SignalHandling {
  let resolveStopped!: (s: NodeJS.Signals) => void;
  const stopped = new Promise<NodeJS.Signals>((r) => (resolveStopped = r));
  const dispose = () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
  };
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ event: 'shutdown', signal }, `${signal}: draining`);
    dispose();
    void daemon.close(drainMs).then(() => {
      logger.info({ event: 'stopped' }, 'canonport stopped');
      resolveStopped(signal);
    });
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
