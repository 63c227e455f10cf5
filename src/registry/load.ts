import { open } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import * as YAML from 'yaml';
import type { z } from 'zod';
import { yieldEvery } from '../concurrency.js';
import { CanonportError, ErrorCodes } from '../errors.js';
import { HostsSchema, knownFields, nearestField, ServicesSchema, ShallowRegistrySchema, type RegistryFile } from './schema.js';
import { Registry } from './registry.js';
import { yamlTools, type YamlProblem } from './yaml-tools.js';

/** Where in the file a problem is: 1-based line and column, dotted field path. */
export interface Location {
  file: string;
  line?: number | undefined;
  column?: number | undefined;
  field?: string | undefined;
}

export interface LoadOptions {
  /**
   * A file larger than this is refused (CP_REGISTRY_INVALID) without being
   * read: the daemon's `registryMaxBytes`. Default: no limit (the CLI).
   */
  maxBytes?: number | undefined;
  /** Aborts a load in progress (the daemon is stopping): it rejects at its next slice. */
  signal?: AbortSignal | undefined;
}

/** The registry in `file`, or the empty one (every name on the base32 scheme) when there is none. */
export async function loadRegistry(file: string | null | undefined, opts: LoadOptions = {}): Promise<Registry> {
  return file ? loadRegistryFile(file, opts) : Registry.empty();
}

/**
 * Reads and validates a registry file; throws CP_REGISTRY_UNREADABLE or
 * CP_REGISTRY_INVALID. Nothing of it holds the event loop for more than a
 * few milliseconds, whatever its size (issue 21, finding 12: a 50 MB file
 * stopped DNS for minutes): the size is checked before reading, the YAML
 * is parsed in a worker thread (where the text stays), and the result is
 * checked and expanded a slice at a time.
 */
export async function loadRegistryFile(file: string, opts: LoadOptions = {}): Promise<Registry> {
  const maxBytes = opts.maxBytes ?? Infinity;
  await checkSize(file, maxBytes);
  const parser = await parseInWorker(file, maxBytes);
  try {
    const pause = pauser(opts.signal);
    const checked = await drain(validate(parser.data), pause);
    if (!checked.ok) throw invalidAt(file, checked.failure, await parser.locate(checked.failure.path));
    return await Registry.build(checked.data, file, pause);
  } finally {
    parser.close();
  }
}

/** Parses registry YAML text at once (the CLI, tests); every error names the file, line, column and field. */
export function parseRegistry(text: string, file = '<registry>'): Registry {
  const tools = yamlTools(YAML);
  const parsed = tools.parse(text);
  if (!parsed.ok) throw yamlInvalid(file, parsed.problem);
  const steps = validate(parsed.data);
  let r = steps.next();
  while (!r.done) r = steps.next();
  if (!r.value.ok) throw invalidAt(file, r.value.failure, tools.locate(r.value.failure.path));
  return Registry.fromFile(r.value.data, file);
}

/** Refuses a file over `maxBytes` by its size alone, before any of it is read. */
async function checkSize(file: string, maxBytes: number): Promise<void> {
  let size: number;
  try {
    const h = await open(file, 'r');
    try {
      size = (await h.stat()).size;
    } finally {
      await h.close();
    }
  } catch (err) {
    throw unreadable(file, err);
  }
  if (size > maxBytes) throw tooLarge(file, size, maxBytes);
}

function unreadable(file: string, err: unknown): CanonportError {
  const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
  return new CanonportError(ErrorCodes.REGISTRY_UNREADABLE, `cannot read registry file ${file}: ${reason}`, { file }, { cause: err });
}

function tooLarge(file: string, size: number | string, maxBytes: number): CanonportError {
  return new CanonportError(
    ErrorCodes.REGISTRY_INVALID,
    `${file}: ${size} bytes, over the limit of ${maxBytes} (--registry-max-bytes, CANONPORT_REGISTRY_MAX_BYTES); not read`,
    { file, size, maxBytes },
  );
}

/** An issue of the checks, and where in the data it is. */
interface Failure {
  path: (string | number)[];
  message: string;
}

/** Entries of `hosts` or `services` checked per slice. */
const ENTRIES_PER_SLICE = 500;

/**
 * The registry's checks (schema.ts), in slices: the top level with `hosts`
 * and `services` taken as they are, then their entries a slice at a time
 * with their own schemas. The data is what RegistrySchema gives; an issue
 * is reported as RegistrySchema reports it.
 */
function* validate(raw: unknown): Generator<void, { ok: true; data: RegistryFile } | { ok: false; failure: Failure }> {
  // The top level first, with `hosts` and `services` set aside when they are maps (their entries come next,
  // a slice at a time); one that is not a map stays, for the top level's check to say so.
  const large: Partial<Record<'hosts' | 'services', Record<string, unknown>>> = {};
  let shallow = raw;
  if (isMap(raw)) {
    shallow = { ...raw };
    for (const field of ['hosts', 'services'] as const) {
      const v = raw[field];
      if (isMap(v)) {
        large[field] = v;
        (shallow as Record<string, unknown>)[field] = {};
      }
    }
  }
  const top = ShallowRegistrySchema.safeParse(shallow);
  if (!top.success) return { ok: false, failure: failureOf(top.error.issues[0]!, []) };
  yield;
  const data = { ...top.data } as Record<string, unknown>;
  for (const [field, schema] of [['hosts', HostsSchema], ['services', ServicesSchema]] as const) {
    const map = large[field];
    if (map === undefined) continue;
    const entries = Object.entries(map);
    const out: Record<string, unknown> = {};
    for (let i = 0; i < entries.length; i += ENTRIES_PER_SLICE) {
      const part = (schema as z.ZodType).safeParse(Object.fromEntries(entries.slice(i, i + ENTRIES_PER_SLICE)));
      if (!part.success) return { ok: false, failure: failureOf(part.error.issues[0]!, [field]) };
      Object.assign(out, part.data);
      yield;
    }
    data[field] = out;
  }
  return { ok: true, data: data as RegistryFile };
}

function isMap(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A zod issue as the registry reports it: the field path (under `prefix`) and a sentence. */
function failureOf(issue: z.core.$ZodIssue, prefix: string[]): Failure {
  let path: (string | number)[] = [...prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0]!;
    const near = nearestField(key, knownFields(path));
    path = [...path, key];
    message = `unknown field "${key}"${near ? ` (did you mean "${near}"?)` : ''}`;
  } else if (issue.code === 'invalid_key') {
    // zod says only "Invalid key in record"; the key's own issue says why.
    message = `name "${String(path[path.length - 1])}" ${issue.issues[0]?.message ?? 'is not valid'}`;
  }
  return { path, message };
}

function invalidAt(file: string, f: Failure, loc: { line?: number; column?: number }): CanonportError {
  return invalid({ file, ...loc, field: f.path.join('.') || '(top level)' }, f.message);
}

function yamlInvalid(file: string, p: YamlProblem): CanonportError {
  return invalid({ file, line: p.line, column: p.column }, p.message);
}

function invalid(loc: Location, message: string): CanonportError {
  const where = `${loc.file}${loc.line ? `:${loc.line}:${loc.column ?? 1}` : ''}`;
  const field = loc.field ? ` (${loc.field})` : '';
  return new CanonportError(ErrorCodes.REGISTRY_INVALID, `${where}${field}: ${message}`, { ...loc });
}

/** Between slices: a turn of the event loop every ~10 ms, and a stop when the load is aborted. */
function pauser(signal: AbortSignal | undefined): () => Promise<void> | undefined {
  const turn = yieldEvery(10);
  return () => {
    if (signal?.aborted) throw new CanonportError(ErrorCodes.SHUTTING_DOWN, 'registry load abandoned: the daemon is stopping');
    return turn();
  };
}

async function drain<T>(steps: Generator<void, T>, pause: () => Promise<void> | undefined): Promise<T> {
  for (let r = steps.next(); ; r = steps.next()) {
    if (r.done) return r.value;
    await pause();
  }
}

/** Entries of a large map per message from the worker: each is copied in a few milliseconds. */
const PART_ENTRIES = 2000;

/** The `yaml` package's entry, for the worker to require. */
const YAML_PATH = createRequire(import.meta.url).resolve('yaml');

/**
 * The worker's program: read the file (at most maxBytes + 1 of it), parse
 * with yamlTools, post the data (or the problem), then answer `locate`
 * questions until it is terminated. Large top-level maps (`services`,
 * `hosts`) follow the rest in parts of PART_ENTRIES entries, then `end`,
 * one each time the daemon asks (`next`): a message is copied into the
 * daemon's thread in one go (one of 100,000 services held its event loop
 * for a third of a second), and messages already waiting are all
 * delivered in one turn, so the daemon asks for the next part only after
 * the last one was taken in.
 */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { openSync, readSync, closeSync } = require('node:fs');
const tools = (${yamlTools.toString()})(require(workerData.yaml));
let result;
try {
  const fd = openSync(workerData.file, 'r');
  const limit = workerData.maxBytes === null ? Infinity : workerData.maxBytes;
  const chunks = [];
  let total = 0;
  try {
    const buf = Buffer.alloc(1 << 16);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      total += n;
      if (total > limit) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
  } finally {
    closeSync(fd);
  }
  result = total > limit ? { kind: 'too-large', size: total } : { kind: 'parsed', result: tools.parse(Buffer.concat(chunks).toString('utf8')) };
} catch (err) {
  result = { kind: 'unreadable', message: err.code === 'ENOENT' ? 'no such file' : String(err.message), code: err.code };
}
const parts = [];
if (result.kind === 'parsed' && result.result.ok && result.result.data && typeof result.result.data === 'object' && !Array.isArray(result.result.data)) {
  const data = result.result.data;
  for (const [field, value] of Object.entries(data)) {
    if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > ${PART_ENTRIES}) {
      parts.push([field, Object.entries(value)]);
      data[field] = {};
    }
  }
}
const queue = [];
for (const [field, entries] of parts) {
  for (let i = 0; i < entries.length; i += ${PART_ENTRIES}) queue.push({ kind: 'part', field, entries: entries.slice(i, i + ${PART_ENTRIES}) });
}
queue.push({ kind: 'end' });
parentPort.postMessage(result);
parentPort.on('message', (m) => parentPort.postMessage(m.next ? queue.shift() : tools.locate(m.locate)));
`;

/** Heap the worker may use: the parsed document of a file takes tens of times its size. */
function workerHeapMb(maxBytes: number): number {
  return Number.isFinite(maxBytes) ? Math.max(64, Math.ceil((maxBytes / 1_048_576) * 96)) : 4096;
}

type WorkerReply =
  | { kind: 'parsed'; result: ReturnType<ReturnType<typeof yamlTools>['parse']> }
  | { kind: 'too-large'; size: number }
  | { kind: 'unreadable'; message: string; code?: string };

/** Parses `file` in a worker thread; the worker stays to locate a schema problem, until close(). */
async function parseInWorker(file: string, maxBytes: number): Promise<{ data: unknown; locate(path: (string | number)[]): Promise<{ line?: number; column?: number }>; close(): void }> {
  const worker = new Worker(WORKER_SOURCE, {
    eval: true,
    workerData: { file, maxBytes: Number.isFinite(maxBytes) ? maxBytes : null, yaml: YAML_PATH },
    resourceLimits: { maxOldGenerationSizeMb: workerHeapMb(maxBytes) },
  });
  const next = () =>
    new Promise<unknown>((resolve, reject) => {
      const onMessage = (m: unknown) => {
        worker.off('error', onError);
        worker.off('exit', onExit);
        resolve(m);
      };
      const onError = (err: Error) => {
        worker.off('message', onMessage);
        worker.off('exit', onExit);
        reject(err);
      };
      const onExit = (code: number) => onError(new Error(`the parser exited (${code})`));
      worker.once('message', onMessage);
      worker.once('error', onError);
      worker.once('exit', onExit);
    });
  const close = () => void worker.terminate();
  let reply: WorkerReply;
  try {
    reply = (await next()) as WorkerReply;
  } catch (err) {
    close();
    const oom = (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
    throw new CanonportError(
      ErrorCodes.REGISTRY_INVALID,
      oom ? `${file}: cannot be parsed within ${workerHeapMb(maxBytes)} MB of memory` : `${file}: cannot be parsed: ${(err as Error).message}`,
      { file },
      { cause: err },
    );
  }
  if (reply.kind !== 'parsed') {
    close();
    if (reply.kind === 'too-large') throw tooLarge(file, `more than ${maxBytes}`, maxBytes);
    throw unreadable(file, Object.assign(new Error(reply.message), { code: reply.code }));
  }
  if (!reply.result.ok) {
    close();
    throw yamlInvalid(file, reply.result.problem);
  }
  // The large maps follow in parts, each its own message: the event loop turns between them.
  const data = reply.result.data as Record<string, Record<string, unknown>>;
  for (;;) {
    worker.postMessage({ next: true });
    const m = (await next().catch((err: unknown) => {
      close();
      throw new CanonportError(ErrorCodes.REGISTRY_INVALID, `${file}: cannot be parsed: ${(err as Error).message}`, { file }, { cause: err });
    })) as { kind: 'part'; field: string; entries: [string, unknown][] } | { kind: 'end' };
    if (m.kind === 'end') break;
    const into = data[m.field]!;
    // Own properties, as yaml makes them: a key such as "__proto__" stays a key (and is refused by the schema).
    for (const [k, v] of m.entries) Object.defineProperty(into, k, { value: v, enumerable: true, writable: true, configurable: true });
  }
  return {
    data,
    locate: async (path) => {
      worker.postMessage({ locate: path });
      return (await next()) as { line?: number; column?: number };
    },
    close,
  };
}
