import { Command, CommanderError } from 'commander';
import { isCanonportError, ErrorCodes } from '../errors.js';
import { EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, processIO, type CliIO } from './io.js';
import { commands } from './commands/index.js';
import { CANONPORT_VERSION } from '../version.js';

/**
 * Runs the CLI. Returns the exit code instead of exiting, so tests call it
 * in-process; bin/canonport.js sets process.exitCode.
 */
export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  const program = new Command('canonport')
    .description('Ports as a pure function of service names, served over DNS and gRPC.')
    .version(CANONPORT_VERSION, '-V, --version')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) })
    .exitOverride();
  for (const register of commands) register(program, io);
  program.commands.forEach((c) => c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) }));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return io.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every other parse problem is a usage error.
      if (err.exitCode === 0 || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      if (err.code === 'commander.help') return EXIT_OK;
      return EXIT_USAGE;
    }
    if (isCanonportError(err, ErrorCodes.USAGE)) {
      // Raised by a command's own argument checks: say what is wrong, then how the command is used.
      const cmd = program.commands.find((c) => c.name() === argv[0]);
      io.err(`canonport: ${err.message}`);
      io.err(cmd ? `usage: canonport ${cmd.name()} ${cmd.usage()}` : '(run with --help for usage)');
      return EXIT_USAGE;
    }
    if (isCanonportError(err)) {
      io.err(`canonport: ${err.message} [${err.code}]`);
      return err.code === ErrorCodes.CONFIG_INVALID ? EXIT_USAGE : EXIT_FINDINGS;
    }
    throw err;
  }
}
