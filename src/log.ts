import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: string | undefined;
  /** Force pretty (true) or JSON (false); default: pretty when stderr is a terminal. */
  pretty?: boolean | undefined;
  /** Destination fd or stream; default stderr so stdout stays for command output. */
  destination?: number | NodeJS.WritableStream | undefined;
}

/**
 * One JSON line per event (pino). Pretty output only when a person is
 * watching (stderr is a TTY) and pino-pretty is installed.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stderr.isTTY === true);
  if (pretty) {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { destination: 2, colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  const dest = opts.destination ?? 2;
  return pino(options, typeof dest === 'number' ? pino.destination({ dest, sync: false }) : (dest as NodeJS.WritableStream));
}

/** A logger that drops everything: the default for library use and unit tests. */
export const silentLogger: Logger = pino({ level: 'silent' });

/**
 * At most one log line per key every `everyMs`: for conditions an outsider
 * can repeat at will (refusals, caps reached, descriptors exhausted), so
 * they cannot fill the log. `run` is called with how many were held back
 * since the last line. The keys are the caller's fixed set (never client data).
 */
export class LogThrottle {
  private readonly next = new Map<string, number>();
  private readonly held = new Map<string, number>();

  constructor(
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  run(key: string, log: (heldBack: number) => void): void {
    const t = this.now();
    if (t < (this.next.get(key) ?? 0)) {
      this.held.set(key, (this.held.get(key) ?? 0) + 1);
      return;
    }
    log(this.held.get(key) ?? 0);
    this.held.set(key, 0);
    this.next.set(key, t + this.everyMs);
  }
}
