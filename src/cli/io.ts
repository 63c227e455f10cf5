import type { Command } from 'commander';
import { CanonportError, ErrorCodes } from '../errors.js';

/** A command module: adds its subcommand to the program. Actions set io.exitCode. */
export type RegisterCommand = (program: Command, io: CliIO) => void;

/** Exit codes: 0 ok, 1 findings (check errors, mismatches, unreachable), 2 usage, 3 `resolve`: a port without an address. */
export const EXIT_OK = 0;
export const EXIT_FINDINGS = 1;
export const EXIT_USAGE = 2;
/** `resolve`: every name has its port, and at least one has no address (CP_NO_ADDRESS), with or without --json. */
export const EXIT_PORT_ONLY = 3;

/** Where a command writes; injectable so tests capture output without spawning. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** stderr is a terminal: progress may be redrawn in place (with `errRaw`). */
  errIsTTY: boolean;
  /** Writes to stderr as is, no newline added (progress redrawn with \r). */
  errRaw?(text: string): void;
  /** Set by a command's action; main() returns it. */
  exitCode: number;
}

export function processIO(): CliIO {
  const out = closable(process.stdout);
  const err = closable(process.stderr);
  return {
    out: (t) => out(t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => err(t.endsWith('\n') ? t : `${t}\n`),
    errIsTTY: process.stderr.isTTY === true,
    errRaw: (t) => err(t),
    exitCode: EXIT_OK,
  };
}

/**
 * A writer to stdout or stderr that goes quiet when the reader has gone
 * (`canonport serve --print-config | head -1`): the write's EPIPE, which
 * Node reports as an 'error' event (unhandled: a stack trace), ends the
 * output and nothing else; the command still finishes and exits with its
 * own code. Any other write error is thrown as before.
 */
function closable(stream: NodeJS.WriteStream): (text: string) => void {
  let closed = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE' || (closed && e.code === 'ERR_STREAM_DESTROYED')) {
      closed = true;
      return;
    }
    throw e;
  });
  return (text) => {
    if (!closed) stream.write(text);
  };
}

/** A usage error: main() prints it with the command's usage line and exits 2. */
export function usageError(message: string): CanonportError {
  return new CanonportError(ErrorCodes.USAGE, message);
}

/** Writes a value as pretty JSON (for --json). */
export function printJson(io: CliIO, value: unknown): void {
  io.out(JSON.stringify(value, null, 2));
}

/** A whole-number option value in min..max, or a usage error naming the flag. */
export function intOption(text: string, flag: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw usageError(`${flag} "${text}" is not a whole number from ${min} to ${max}`);
  return n;
}

/** Commander's accumulator for a repeatable option. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Parses a positive integer argument or throws a usage error. */
export function parsePortArg(text: string): number {
  if (!/^\d+$/.test(text)) throw usageError(`"${text}" is not a port number`);
  const n = Number(text);
  if (n > 65535) throw usageError(`${text} is over 65535`);
  return n;
}
