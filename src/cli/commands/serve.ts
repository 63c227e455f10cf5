import { Option, type Command } from 'commander';
import { configFromEnv, ENV_VARS, type ConfigInput } from '../../config/config.js';
import { resolveServeConfig } from '../../daemon/load.js';
import { configJson, configText, helpLine } from '../../config/docs.js';
import { settingEntries, type SettingKey } from '../../config/settings.js';
import { handleSignals, startedByNpm } from '../../daemon/signals.js';
import { createLogger, LogThrottle } from '../../log.js';
import { ErrorCodes, isDescriptorExhaustion } from '../../errors.js';
import { collect, printJson, type CliIO } from '../io.js';

/**
 * The flags of every daemon setting, from the settings table. They only
 * collect text: values are checked in buildConfig, so a flag, its env var
 * and its registry key get the same check and the same error.
 */
function settingOptions(): [SettingKey, Option][] {
  return settingEntries().flatMap(([key, s]): [SettingKey, Option][] => {
    if (!s.flag) return [];
    const opt = new Option(s.flag.value ? `${s.flag.name} <${s.flag.value}>` : s.flag.name, helpLine(s));
    if (s.kind.list) opt.argParser(collect);
    return [[key, opt]];
  });
}

const RESTART_ONLY = settingEntries()
  .filter(([, s]) => s.applies === 'restart')
  .map(([key]) => key);

/** How long SIGTERM/SIGINT wait for in-flight queries before closing. */
const DRAIN_MS = 5000;

export function registerServe(program: Command, io: CliIO): void {
  const options = settingOptions();
  const cmd = program.command('serve').description('run the daemon: DNS (UDP+TCP), gRPC and HTTP');
  for (const [, opt] of options) cmd.addOption(opt);
  cmd
    .option('--print-config', 'print every setting, its value and where it came from (flag, env, file, default), and exit')
    .option('--json', 'with --print-config: as JSON')
    .addHelpText(
      'after',
      [
        '',
        'Each setting comes from its flag, else its environment variable, else the registry file (daemon: section), else its default;',
        'a list (zones, upstreams, allow) is taken whole from the first of those that gives it.',
        `Environment: ${ENV_VARS.join(', ')}`,
        `Signals: SIGHUP reloads the registry file (so does editing it); settings apply then, except ${RESTART_ONLY.join(', ')}, which need a restart.`,
        'SIGTERM and SIGINT drain and exit 0.',
      ].join('\n'),
    )
    .action(async (opts: Record<string, unknown>) => {
      const flags: Record<string, unknown> = {};
      for (const [key, opt] of options) flags[key] = opts[opt.attributeName()];
      const env = configFromEnv();
      if (opts.printConfig) {
        // The same path as serve, files read and checked included, so it refuses what serve refuses, with the same error.
        const { config } = await resolveServeConfig(flags as ConfigInput, env);
        if (opts.json) printJson(io, configJson(config));
        else for (const line of configText(config)) io.out(line);
        return;
      }
      const input = flags as ConfigInput;
      // The log format and the worker count are needed before anything starts (they decide how
      // the process logs and its layout), so the whole config is read once here, with the files
      // it names (certificates, etcd's): a bad one stops the start before anything binds. The
      // daemon reads it again, as on every reload.
      const { config } = await resolveServeConfig(input, env);
      // Starts at info; the daemon sets the configured level (flags > env > file) once it has
      // checked it, and again on every reload.
      const logger = createLogger({ format: config.logFormat });
      // The daemon's modules load here, not when the CLI starts: `canonport port api` never pays for them.
      const { Daemon } = await import('../../daemon/daemon.js');
      const { isClusterWorker, runWorker, startPrimary } = await import('../../daemon/workers.js');
      if (isClusterWorker()) {
        guardProcess(logger);
        return runWorker({ flags: input, env, logger: logger.child({ worker: process.pid }) });
      }
      const start = config.workers > 1 ? startPrimary({ flags: input, env, logger, workers: config.workers }) : Daemon.start({ flags: input, env, logger });
      const started = start.then(
        (running) => ({ running, daemon: running instanceof Daemon ? running : running.daemon }),
        () => undefined,
      );
      // The handlers go in before the daemon starts: Node has none of its own, so a SIGTERM that came
      // between the "ready" line and their installation (a service manager, a test) ended the process
      // at once, undrained (exit 143). One that comes during the start waits for it, then drains.
      const signals = handleSignals(
        { close: async (ms) => (await started)?.running.close(ms), reload: async () => (await started)?.daemon.reload() },
        logger,
        DRAIN_MS,
        // A stop is bounded whatever is running: past the drain and 5 s more (or at a second signal), exit anyway.
        {
          watchLauncher: startedByNpm(),
          onOverdue: () => {
            logger.flush?.();
            process.exit(1);
          },
        },
      );
      try {
        await start;
      } catch (err) {
        signals.dispose();
        throw err;
      }
      // Installed once serving (a start that fails reports as before): out of descriptors, a library's
      // callback may throw EMFILE; it is logged and the daemon goes on.
      guardProcess(logger);
      // `canonport leave` has withdrawn the host: stop as a SIGTERM would (the lease is already revoked).
      (await started)!.daemon.events.once('leave', () => process.kill(process.pid, 'SIGTERM'));
      await signals.stopped;
      logger.flush?.();
      // Upstream queries still out past the drain would hold the process until their
      // timeouts; nobody is waiting for them any more.
      setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
    });
}

/**
 * The last line of defence against descriptor exhaustion: an EMFILE or
 * ENFILE that some library throws from a callback of its own (canonport
 * guards its own timers and accepts) is logged with CP_FD_EXHAUSTED and
 * the daemon goes on; once descriptors free up everything works again
 * (issue 21: an EMFILE thrown from a timer killed the process). Any other
 * uncaught error still ends the process, as Node would, after logging it.
 */
function guardProcess(logger: import('../../log.js').Logger): void {
  const throttle = new LogThrottle();
  const onError = (err: unknown, kind: string) => {
    if (isDescriptorExhaustion(err)) {
      throttle.run(kind, (heldBack) =>
        logger.error({ code: ErrorCodes.FD_EXHAUSTED, err: (err as Error).message, heldBack }, `out of file descriptors (${kind}): carrying on; connections are refused until some close`),
      );
      return;
    }
    logger.fatal({ code: ErrorCodes.HANDLER_FAILED, err: err instanceof Error ? err.stack : String(err) }, `${kind}: exiting`);
    logger.flush?.();
    process.exit(70);
  };
  process.on('uncaughtException', (err) => onError(err, 'uncaught exception'));
  process.on('unhandledRejection', (err) => onError(err, 'unhandled rejection'));
}
