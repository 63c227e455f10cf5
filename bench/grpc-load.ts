import * as grpc from '@grpc/grpc-js';
import { canonportService } from '../src/grpc/proto.js';
import { percentile } from './dnsperf.js';

/**
 * gRPC unary load: `concurrency` calls kept in flight on one channel, for
 * `durationMs` or `maxCalls`, whichever comes first. The same client drives
 * canonport and the no-op reference, so only the server side differs.
 */

export interface GrpcLoadOptions {
  target: string;
  name: string;
  concurrency: number;
  durationMs: number;
  maxCalls: number;
  warmupCalls?: number;
  /** Ask ResolveMany for `name` this many times per call instead of Resolve once. */
  batch?: number;
}

export interface GrpcLoadResult {
  concurrency: number;
  calls: number;
  errors: number;
  seconds: number;
  callsPerSec: number;
  avgMs: number;
  p99Ms: number;
  /** First error seen, `CODE: details`. */
  firstError?: string;
  /** Every call's latency (not in the JSON: mergeLoads drops it). */
  latenciesMs?: number[];
}

/** Several runs of the same cell as one: calls over total time, percentiles over every call. */
export function mergeLoads(parts: GrpcLoadResult[]): GrpcLoadResult {
  const latencies = parts.flatMap((p) => p.latenciesMs ?? []);
  const calls = parts.reduce((n, p) => n + p.calls, 0);
  const seconds = parts.reduce((n, p) => n + p.seconds, 0);
  const merged: GrpcLoadResult = {
    concurrency: parts[0]!.concurrency,
    calls,
    errors: parts.reduce((n, p) => n + p.errors, 0),
    seconds,
    callsPerSec: calls / seconds,
    avgMs: latencies.reduce((a, b) => a + b, 0) / latencies.length,
    p99Ms: percentile(latencies, 99),
  };
  const firstError = parts.find((p) => p.firstError)?.firstError;
  if (firstError) merged.firstError = firstError;
  return merged;
}

type ResolveClient = grpc.Client & {
  resolve(req: { name: string }, cb: (err: grpc.ServiceError | null, res?: unknown) => void): grpc.ClientUnaryCall;
  resolveMany(req: { names: string[] }, cb: (err: grpc.ServiceError | null, res?: { results: { error?: { message?: string } }[] }) => void): grpc.ClientUnaryCall;
};

function connect(target: string, deadlineMs: number): Promise<ResolveClient> {
  const Ctor = canonportService();
  const client = new Ctor(target, grpc.credentials.createInsecure()) as unknown as ResolveClient;
  return new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + deadlineMs, (err) => {
      if (err) {
        client.close();
        reject(new Error(`gRPC ${target} not ready: ${err.message}`));
      } else resolve(client);
    }),
  );
}

/** One call; resolves to the error text, or null. A batch fails if any name in it does. */
function call(client: ResolveClient, name: string, batch?: readonly string[]): Promise<string | null> {
  const status = (err: grpc.ServiceError) => `${grpc.status[err.code]}: ${err.details}`;
  if (!batch) return new Promise((resolve) => client.resolve({ name }, (err) => resolve(err ? status(err) : null)));
  return new Promise((resolve) =>
    client.resolveMany({ names: batch as string[] }, (err, res) => {
      if (err) return resolve(status(err));
      const failed = res?.results.find((r) => r.error);
      if (failed || res?.results.length !== batch.length) return resolve(`a name in the batch failed: ${failed?.error?.message ?? 'results missing'}`);
      resolve(null);
    }),
  );
}

/** One Resolve call, for checking what the server answers before loading it. */
export async function grpcResolveOnce(target: string, name: string): Promise<unknown> {
  const client = await connect(target, 5000);
  try {
    return await new Promise((resolve, reject) =>
      client.resolve({ name }, (err, res) => (err ? reject(new Error(`${grpc.status[err.code]}: ${err.details}`)) : resolve(res))),
    );
  } finally {
    client.close();
  }
}

export async function grpcLoad(o: GrpcLoadOptions): Promise<GrpcLoadResult> {
  const client = await connect(o.target, 5000);
  const batch = o.batch ? Array<string>(o.batch).fill(o.name) : undefined;
  try {
    for (let i = 0; i < (o.warmupCalls ?? 200); i++) await call(client, o.name, batch);
    const latencies: number[] = [];
    let started = 0;
    let errors = 0;
    let firstError: string | undefined;
    const t0 = performance.now();
    const end = t0 + o.durationMs;
    const worker = async () => {
      while (started < o.maxCalls && performance.now() < end) {
        started++;
        const t = performance.now();
        const err = await call(client, o.name, batch);
        latencies.push(performance.now() - t);
        if (err) {
          errors++;
          firstError ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: o.concurrency }, worker));
    const elapsed = (performance.now() - t0) / 1000;
    const sum = latencies.reduce((a, b) => a + b, 0);
    const result: GrpcLoadResult = {
      concurrency: o.concurrency,
      calls: latencies.length,
      errors,
      seconds: elapsed,
      callsPerSec: latencies.length / elapsed,
      avgMs: latencies.length ? sum / latencies.length : Number.NaN,
      p99Ms: percentile(latencies, 99),
      latenciesMs: latencies,
    };
    if (firstError) result.firstError = firstError;
    return result;
  } finally {
    client.close();
  }
}
