import type { Command } from 'commander';
import { formatHostPort } from '../../config/address.js';
import { configFromEnv, DEFAULTS, ENV_VARS, resolveConfig, type ConfigInput } from '../../config/config.js';
import { isClusterWorker, runWorker, startPrimary } from '../../daemon/workers.js';
import { Daemon } from '../../daemon/daemon.js';
import { createLogger } from '../../log.js';
import { collect, printJson, usageError, type CliIO } from '../io.js';

const number = (what: string) => (v: string) => {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw usageError(`${what}: "${v}" is not a number`);
  return n;
};

/** How long SIGTERM/SIGINT wait for in-flight queries before closing. */
const DRAIN_MS = 5000;

export function registerServe(program: Command, io: CliIO): void {
  program
    .command('serve')
    .description('run the daemon: DNS (UDP+TCP), gRPC and HTTP')
    .option('--dns <addr:port>', `DNS listen address [env CANONPORT_DNS] (default ${DEFAULTS.dns})`)
    .option('--grpc <addr:port>', `gRPC listen address [env CANONPORT_GRPC] (default ${DEFAULTS.grpc})`)
    .option('--http <addr:port>', `HTTP listen address for /metrics, /healthz, /readyz [env CANONPORT_HTTP] (default ${DEFAULTS.http})`)
    .option('--zone <zone>', 'serve canonical names under ZONE (repeatable) [env CANONPORT_ZONES]', collect)
    .option('--upstream <addr[:port]>', 'forward other queries here (repeatable; default: /etc/resolv.conf) [env CANONPORT_UPSTREAMS]', collect)
    .option('--allow <cidr>', 'networks that may use forwarding besides loopback (repeatable) [env CANONPORT_ALLOW]', collect)
    .option('--canonical-clients <who>', 'who gets canonical answers: any, or only allowed clients [env CANONPORT_CANONICAL_CLIENTS] (default any)')
    .option('--registry <file>', 'registry file (YAML) [env CANONPORT_REGISTRY]')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent [env CANONPORT_LOG_LEVEL] (default info)')
    .option('--query-log <rate>', 'log this fraction of queries, 0–1 [env CANONPORT_QUERY_LOG] (default 0)', number('--query-log'))
    .option('--upstream-timeout <ms>', 'per-upstream timeout [env CANONPORT_UPSTREAM_TIMEOUT] (default 1000)', number('--upstream-timeout'))
    .option('--cache-size <n>', 'forwarding cache entries [env CANONPORT_CACHE_SIZE] (default 100000)', number('--cache-size'))
    .option('--rate-limit <qps>', 'forwarded queries per second per client, 0 = off [env CANONPORT_RATE_LIMIT] (default 0)', number('--rate-limit'))
    .option('--max-inflight <n>', 'upstream queries in flight at once [env CANONPORT_MAX_INFLIGHT] (default 1024)', number('--max-inflight'))
    .option('--workers <n>', 'DNS worker processes sharing one socket, to use more than one core [env CANONPORT_WORKERS] (default 1)', number('--workers'))
    .option('--print-config', 'print the effective configuration (flags > env > file > defaults) and exit')
    .option('--json', 'with --print-config: as JSON')
    .addHelpText('after', `\nEnvironment: ${ENV_VARS.join(', ')}\nSignals: SIGHUP reloads the registry file (so does editing it); SIGTERM and SIGINT drain and exit 0.`)
    .action(async (opts: Record<string, unknown>) => {
      const flags: ConfigInput = {
        dns: opts.dns as string | undefined,
        grpc: opts.grpc as string | undefined,
        http: opts.http as string | undefined,
        zones: opts.zone as string[] | undefined,
        upstreams: opts.upstream as string[] | undefined,
        allow: opts.allow as string[] | undefined,
        registry: opts.registry as string | undefined,
        logLevel: opts.logLevel as string | undefined,
        queryLog: opts.queryLog as number | undefined,
        upstreamTimeoutMs: opts.upstreamTimeout as number | undefined,
        cacheSize: opts.cacheSize as number | undefined,
        rateLimit: opts.rateLimit as number | undefined,
        maxInflight: opts.maxInflight as number | undefined,
        canonicalClients: opts.canonicalClients as string | undefined,
      };
      const env = configFromEnv();
      if (opts.printConfig) {
        const { config: c } = await resolveConfig(flags, env);
        const view = {
          ...c,
          dns: formatHostPort(c.dns),
          grpc: formatHostPort(c.grpc),
          http: formatHostPort(c.http),
          upstreams: c.upstreams.map(formatHostPort),
          allow: c.allow.map((a) => a.text),
          zones: ['localhost', ...c.zones],
        };
        if (opts.json) printJson(io, view);
        else for (const [k, v] of Object.entries(view)) io.out(`${k.padEnd(18)} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
        return;
      }
      // Starts at info; the daemon sets the configured level (flags > env > file) once it has
      // checked it, and again on every reload.
      const logger = createLogger();
      if (isClusterWorker()) return runWorker({ flags, env, logger: logger.child({ worker: process.pid }) });
      const workers = (opts.workers as number | undefined) ?? (process.env.CANONPORT_WORKERS ? Number(process.env.CANONPORT_WORKERS) : 1);
      if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw usageError(`--workers: ${workers} is not an integer in 1–64`);
      const running = workers > 1 ? await startPrimary({ flags, env, logger, workers }) : await Daemon.start({ flags, env, logger });
      const daemon = running instanceof Daemon ? running : running.daemon;
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          logger.info({ event: 'shutdown', signal }, `${signal}: draining`);
          process.off('SIGTERM', onTerm);
          process.off('SIGINT', onInt);
          process.off('SIGHUP', onHup);
          void running.close(DRAIN_MS).then(() => {
            logger.info({ event: 'stopped' }, 'canonport stopped');
            logger.flush?.();
            resolve();
            // Upstream queries still out past the drain would hold the process until their
            // timeouts; nobody is waiting for them any more.
            setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref();
          });
        };
        const onTerm = () => stop('SIGTERM');
        const onInt = () => stop('SIGINT');
        const onHup = () => void daemon.reload();
        process.on('SIGTERM', onTerm);
        process.on('SIGINT', onInt);
        process.on('SIGHUP', onHup);
      });
    });
}
