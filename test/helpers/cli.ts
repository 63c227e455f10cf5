import { main } from '../../src/cli/main.js';
import type { CliIO } from '../../src/cli/io.js';

/**
 * The one way tests run a CLI command: in-process, through the same
 * `main(argv, io)` that bin/canonport.js calls, with stdout and stderr
 * captured and only the CANONPORT_* variables the test gives. (A daemon
 * that must run as a process, for signals and its own /proc, is started
 * with helpers/serve-process.ts instead.)
 */

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** CANONPORT_* variables are swapped for the test's while a command runs; commands in one file run one at a time. */
let running = false;

export async function runCli(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
  if (running) throw new Error('runCli: commands run one at a time (they share process.env)');
  running = true;
  const saved: Record<string, string | undefined> = {};
  for (const k of Object.keys(process.env)) {
    if (k.startsWith('CANONPORT_')) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
  }
  for (const [k, v] of Object.entries(env)) {
    if (!(k in saved)) saved[k] = process.env[k];
    process.env[k] = v;
  }
  let stdout = '';
  let stderr = '';
  const io: CliIO = {
    out: (t) => void (stdout += t.endsWith('\n') ? t : `${t}\n`),
    err: (t) => void (stderr += t.endsWith('\n') ? t : `${t}\n`),
    errIsTTY: false,
    exitCode: 0,
  };
  try {
    const code = await main(args, io);
    return { code, stdout, stderr };
  } catch (err) {
    // What bin/canonport.js does with an escaped error.
    stderr += `canonport: internal error: ${err instanceof Error ? err.stack : String(err)}\n`;
    return { code: 70, stdout, stderr };
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    running = false;
  }
}
