import { spawn, type ChildProcess } from 'node:child_process';
import { stopChild } from './child.js';
import { requireTool } from './tools.js';

/**
 * A command on a real pseudo-terminal, as a person runs it: util-linux's
 * `script` gives it a pty for stdin, stdout and stderr, and copies what it
 * writes there to our pipe (with the terminal's \r\n line ends).
 */

export interface PtyRun {
  proc: ChildProcess;
  /** Everything the command wrote to the terminal so far, ANSI colour codes included. */
  output(): string;
  /** Resolves with the output once `pred` holds for it; rejects after `ms` or when the command ends first. */
  waitFor(pred: (text: string) => boolean, ms?: number): Promise<string>;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Shell-quotes one word for `script -c`. */
const quote = (w: string) => `'${w.replaceAll("'", `'\\''`)}'`;

export function runOnPty(argv: string[], opts: { cwd: string; env: NodeJS.ProcessEnv }): PtyRun {
  requireTool('script', 'bsdutils');
  // -q: no "Script started" banner; -e: script's exit code is the command's; the typescript goes nowhere.
  const proc = spawn('script', ['-qec', argv.map(quote).join(' '), '/dev/null'], { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const waiters: (() => void)[] = [];
  const onData = (chunk: Buffer) => {
    out += chunk.toString('utf8');
    for (const w of [...waiters]) w();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const waitFor = (pred: (text: string) => boolean, ms = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (!pred(out)) return;
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(check), 1);
        resolve(out);
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(check), 1);
        reject(new Error(`not seen within ${ms} ms on the terminal; it shows:\n${out}`));
      }, ms);
      waiters.push(check);
      void exited.then((code) => setTimeout(() => reject(new Error(`the command ended (exit ${code}) first; the terminal shows:\n${out}`)), 50));
      check();
    });
  return { proc, output: () => out, waitFor, exited, stop: () => stopChild(proc) };
}

/** The text with ANSI colour codes and carriage returns removed. */
export function plain(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, '').replaceAll('\r', '');
}
