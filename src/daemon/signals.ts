import { ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';

/** What signals act on: a running daemon (or a --workers primary). */
export interface Signalled {
  close(graceMs: number): Promise<void>;
  reload(): Promise<unknown>;
}

/** Why the daemon stopped: a signal, or the end of the process that started it (see watchLauncher). */
export type StopReason = NodeJS.Signals | 'launcher-exited';

export interface SignalHandling {
  /** Resolves with why, once SIGTERM, SIGINT or the launcher's end has drained and closed the daemon. */
  stopped: Promise<StopReason>;
  /** Removes the handlers (without stopping anything). */
  dispose(): void;
}

/**
 * The daemon's signals, as `canonport serve` installs them: SIGHUP reloads
 * (the same reload a registry file change triggers); SIGTERM and SIGINT stop
 * taking queries, drain what is in flight for up to `drainMs`, and close.
 * In its own module so a test can deliver real signals to an in-process daemon.
 */
export interface SignalOptions extends LauncherWatch {
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
  let resolveStopped!: (s: StopReason) => void;
  const stopped = new Promise<StopReason>((r) => (resolveStopped = r));
  let watch: NodeJS.Timeout | undefined;
  const dispose = () => {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
    clearInterval(watch);
  };
  let stopping = false;
  const stop = (signal: StopReason) => {
    if (stopping) {
      if (signal === 'launcher-exited') return;
      logger.warn({ event: 'shutdown', signal, code: ErrorCodes.SHUTTING_DOWN }, `${signal} again: stopping now, without waiting for the drain`);
      opts.onOverdue?.('second_signal');
      return;
    }
    stopping = true;
    if (signal === 'launcher-exited') logger.info({ event: 'shutdown', reason: signal }, 'the npm process that started canonport has ended (npx or npm start, stopped): draining');
    else logger.info({ event: 'shutdown', signal }, `${signal}: draining`);
    // Keep listening for SIGTERM and SIGINT (a second one stops at once); SIGHUP no longer reloads.
    process.off('SIGHUP', onHup);
    clearInterval(watch);
    const overdueMs = opts.overdueMs ?? 5000;
    const overdue = opts.onOverdue
      ? setTimeout(() => {
          logger.error({ event: 'shutdown', code: ErrorCodes.SHUTTING_DOWN, drainMs, overdueMs }, `still not closed ${drainMs + overdueMs} ms after ${signal}: stopping now`);
          opts.onOverdue?.('overdue');
        }, drainMs + overdueMs)
      : undefined;
    const done = (err?: unknown) => {
      clearTimeout(overdue);
      dispose();
      if (err === undefined) logger.info({ event: 'stopped' }, 'canonport stopped');
      else logger.error({ event: 'stopped', code: ErrorCodes.SHUTTING_DOWN, err: err instanceof Error ? err.message : String(err) }, 'canonport stopped with an error while closing');
      resolveStopped(signal);
    };
    void daemon.close(drainMs).then(() => done(), (err: unknown) => done(err ?? new Error('close failed')));
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
  if (opts.watchLauncher) {
    const ppid = opts.ppid ?? (() => process.ppid);
    const launcher = ppid();
    watch = setInterval(() => {
      if (ppid() !== launcher) stop('launcher-exited');
    }, opts.everyMs ?? LAUNCHER_POLL_MS);
    watch.unref();
  }
  return { stopped, dispose };
}

/**
 * How often the daemon looks whether its launcher is still there, ms. Node
 * cannot ask the kernel to signal it when its parent dies (prctl
 * PR_SET_PDEATHSIG needs native code), so it compares process.ppid, a
 * getppid() system call, once a second.
 */
const LAUNCHER_POLL_MS = 1000;

export interface LauncherWatch {
  /**
   * Stop, as SIGTERM would, when the process that started the daemon ends.
   * For npx and npm start: npm runs the daemon through `sh -c`, and
   * `kill <npm's pid>` reaches the shell, which dies and leaves the daemon
   * running on all three ports with init as its parent (the issue's
   * `npx canonport serve &`, `kill $!`). The parent changing is the sign.
   */
  watchLauncher?: boolean;
  /** The parent's PID, for tests; default process.ppid. */
  ppid?: () => number;
  everyMs?: number;
}

/**
 * True when npm started this process for a person: `npx canonport serve`
 * (npm exec) or `npm start` / `npm run` (npm sets npm_command for both).
 * Not under `npm test`, nor for a service manager or a container, whose
 * daemons outlive nothing but themselves.
 */
export function startedByNpm(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.npm_execpath !== undefined && ['exec', 'run', 'run-script', 'start', 'restart'].includes(env.npm_command ?? '');
}
