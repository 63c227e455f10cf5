import { createRequire } from 'node:module';
import pino, { type DestinationStream, type Logger, type LoggerOptions } from 'pino';
import type { PrettyOptions } from 'pino-pretty';

export type { Logger };

/** How log lines look: `pretty` for a person, `json` (one pino line per event) for a machine, `auto` picks by the terminal. */
export const LOG_FORMATS = ['auto', 'pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LogOptions {
  level?: string | undefined;
  /** Default `auto`: pretty when the destination is stderr and stderr is a terminal, JSON otherwise. */
  format?: LogFormat | undefined;
  /** Destination fd or stream; default stderr so stdout stays for command output. */
  destination?: number | NodeJS.WritableStream | undefined;
}

/** Whether `format` means pretty lines on this destination. */
export function isPretty(format: LogFormat, destination: LogOptions['destination'], stderrIsTTY = process.stderr.isTTY === true): boolean {
  if (format !== 'auto') return format === 'pretty';
  return (destination === undefined || destination === 2) && stderrIsTTY;
}

/**
 * One event per line (pino): JSON for journald, Docker and log shippers,
 * pretty when a person is watching (stderr is a terminal) or asked for.
 * Every error line carries `code` either way.
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const dest = opts.destination ?? 2;
  if (isPretty(opts.format ?? 'auto', opts.destination)) return pino(options, prettyStream(dest));
  return pino(options, typeof dest === 'number' ? pino.destination({ dest, sync: false }) : (dest as NodeJS.WritableStream));
}

/**
 * pino-pretty as a stream in this thread, loaded only here, so a daemon
 * logging JSON never loads it. Not pino's `transport` (a worker thread): that
 * costs a thread at start and loses the last lines when the process exits
 * soon after writing them; a person's terminal is slow enough for sync writes.
 */
function prettyStream(dest: number | NodeJS.WritableStream): DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (o: PrettyOptions) => DestinationStream;
  const toTerminal = dest === 2 ? process.stderr.isTTY === true : dest === 1 ? process.stdout.isTTY === true : false;
  return pretty({
    destination: dest,
    sync: true,
    // Colours only on a terminal that has not asked for none (https://no-color.org).
    colorize: toTerminal && !process.env.NO_COLOR,
    translateTime: 'SYS:HH:MM:ss.l',
  });
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
