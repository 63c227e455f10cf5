import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';

type metric = MetricObjectWithValues<MetricValue<string>>;
import { formatHostPort } from '../config/address.js';
import type { ConfigInput } from '../config/config.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import type { Logger } from '../log.js';
import { Daemon } from './daemon.js';
import { MAX_ASKED_NAMES } from '../discovery/asked-names.js';

/**
 * Past one core: `canonport serve --workers N`.
 *
 * Node 20 has no SO_REUSEPORT for UDP, but a cluster can share one socket:
 * the primary holds the UDP (and TCP) handle and every worker receives on
 * it, so the kernel spreads datagrams over the workers. The DNS path is the
 * part that needs the cores; so:
 *
 *   primary   gRPC, HTTP (/metrics aggregated over all processes), inventory,
 *             registry watch and SIGHUP; tells workers to reload and to drain
 *   workers   the DNS listeners and chain only, each with its own cache
 *
 * Caches are per worker (a name may be fetched once per worker): the price
 * of sharing nothing on the hot path.
 */

type ToWorker = { type: 'reload' } | { type: 'metrics'; id: number } | { type: 'shutdown'; graceMs: number };
type FromWorker =
  | { type: 'ready' }
  | { type: 'failed'; message: string }
  | { type: 'metrics'; id: number; data: metric[] }
  /** The names clients asked this worker for, with when each was last asked: the primary learns and publishes them. */
  | { type: 'asked'; names: { port: number; name: string; lastMs: number }[] };

/** A worker tells its primary the names it was asked for at least this often (a name asked again keeps its time fresh there). */
const ASKED_REPORT_MS = 30_000;

const WORKER_START_MS = 15_000;
const METRICS_WAIT_MS = 1000;

export interface ClusterHandle {
  daemon: Daemon;
  close(graceMs: number): Promise<void>;
}

/** Runs in the primary: forks the DNS workers, then serves gRPC and HTTP itself. */
export async function startPrimary(opts: { flags: ConfigInput; env: ConfigInput; logger: Logger; workers: number }): Promise<ClusterHandle> {
  const { logger } = opts;
  let stopping = false;
  const workers = new Set<Worker>();
  let nextMetricsId = 0;
  const pending = new Map<number, (data: metric[] | null) => void>();

  const fork = (): Promise<Worker> =>
    new Promise((resolve, reject) => {
      const w = cluster.fork({ CANONPORT_CLUSTER_ROLE: 'dns' });
      const timer = setTimeout(() => reject(new CanonportError(ErrorCodes.LISTEN_FAILED, 'a DNS worker did not start in time')), WORKER_START_MS);
      w.on('message', (m: FromWorker) => {
        if (m.type === 'ready') {
          clearTimeout(timer);
          workers.add(w);
          resolve(w);
        } else if (m.type === 'failed') {
          clearTimeout(timer);
          reject(new CanonportError(ErrorCodes.LISTEN_FAILED, m.message));
        } else if (m.type === 'metrics') {
          pending.get(m.id)?.(m.data);
        } else if (m.type === 'asked' && Array.isArray(m.names)) {
          daemonRef?.askedNames.merge(m.names.slice(0, MAX_ASKED_NAMES));
        }
      });
      w.on('exit', (code, signal) => {
        workers.delete(w);
        if (stopping) return;
        logger.error({ code: ErrorCodes.WORKER_EXITED, pid: w.process.pid, exitCode: code, signal }, 'DNS worker exited; starting another');
        fork().catch((err: Error) => logger.error({ code: ErrorCodes.LISTEN_FAILED, err: err.message }, 'could not replace a DNS worker'));
      });
    });

  // Set once the primary's daemon runs: workers' asked names arrive only after their DNS answers, so after that.
  let daemonRef: Daemon | undefined;
  const started = await Promise.allSettled(Array.from({ length: opts.workers }, fork));
  const failure = started.find((r) => r.status === 'rejected');
  if (failure) {
    stopping = true;
    for (const w of workers) w.kill('SIGKILL');
    throw (failure as PromiseRejectedResult).reason;
  }

  const ask = (w: Worker) =>
    new Promise<metric[] | null>((resolve) => {
      const id = nextMetricsId++;
      const t = setTimeout(() => {
        pending.delete(id);
        resolve(null);
      }, METRICS_WAIT_MS);
      pending.set(id, (data) => {
        clearTimeout(t);
        pending.delete(id);
        resolve(data);
      });
      send(w, { type: 'metrics', id });
    });

  const daemon = await Daemon.start({
    flags: opts.flags,
    env: opts.env,
    logger,
    role: 'front',
    metricsText: async () => {
      const own = await daemon.metrics.registry.getMetricsAsJSON();
      const theirs = (await Promise.all([...workers].map(ask))).filter((d): d is metric[] => d !== null);
      return AggregatorRegistry.aggregate([own, ...theirs]).metrics();
    },
  });
  daemonRef = daemon;
  daemon.events.on('reload', () => {
    for (const w of workers) send(w, { type: 'reload' });
  });
  logger.info({ event: 'workers', workers: workers.size, dns: formatHostPort(daemon.config.dns) }, 'DNS workers started');

  return {
    daemon,
    async close(graceMs: number) {
      stopping = true;
      const exits = [...workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            w.once('exit', () => resolve());
            send(w, { type: 'shutdown', graceMs });
            setTimeout(() => w.kill('SIGKILL'), graceMs + 2000).unref();
          }),
      );
      await Promise.all([daemon.close(graceMs), ...exits]);
    },
  };
}

/** Runs in a worker: the DNS listeners on the shared socket, driven by the primary. */
export async function runWorker(opts: { flags: ConfigInput; env: ConfigInput; logger: Logger }): Promise<void> {
  let daemon: Daemon;
  try {
    // Besides each change of the set: every ASKED_REPORT_MS while it holds names, so names asked again stay fresh in
    // the primary. A timer only while there are names: an idle worker wakes for nothing (issue 24).
    let refresh: NodeJS.Timeout | undefined;
    const report = (names: { port: number; name: string; lastMs: number }[]) => {
      process.send?.({ type: 'asked', names } satisfies FromWorker);
      if (refresh === undefined && names.length > 0) {
        refresh = setTimeout(() => {
          refresh = undefined;
          const now = daemon.askedNames.entries();
          if (now.length > 0) report(now);
        }, ASKED_REPORT_MS);
        refresh.unref();
      }
    };
    daemon = await Daemon.start({ flags: opts.flags, env: opts.env, logger: opts.logger, role: 'dns', watchRegistry: false, inventory: false, onAskedNames: report });
  } catch (err) {
    process.send?.({ type: 'failed', message: (err as Error).message } satisfies FromWorker);
    process.exitCode = 1;
    return;
  }
  await new Promise<void>((resolve) => {
    const stop = (graceMs: number) => void daemon.close(graceMs).then(resolve);
    process.on('message', (m: ToWorker) => {
      if (m.type === 'reload') void daemon.reload();
      else if (m.type === 'shutdown') stop(m.graceMs);
      else if (m.type === 'metrics') {
        void daemon.metrics.registry.getMetricsAsJSON().then((data) => process.send?.({ type: 'metrics', id: m.id, data } satisfies FromWorker));
      }
    });
    // Ctrl-C reaches the whole process group: drain like the primary does.
    process.on('SIGINT', () => stop(5000));
    process.on('SIGTERM', () => stop(5000));
    // Reloads come from the primary (it owns the registry); a group-wide SIGHUP must not kill a worker.
    process.on('SIGHUP', () => {});
    process.send?.({ type: 'ready' } satisfies FromWorker);
  });
  process.disconnect?.();
}

function send(w: Worker, m: ToWorker): void {
  if (w.isConnected()) w.send(m);
}

export const isClusterWorker = (): boolean => cluster.isWorker && process.env.CANONPORT_CLUSTER_ROLE === 'dns';
