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
