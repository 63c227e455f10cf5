import { accessSync, constants, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { ErrorCodes } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { KeyValue } from './view.js';

/**
 * What a cluster daemon keeps across its own restarts, in one directory:
 *
 *   node.json       the node name, prefix and lease id this daemon last held:
 *                   a restart within the lease TTL takes the lease back
 *                   ("my previous self"), so other hosts see no change;
 *   view.json       the last cluster view (bounded by MAX_SNAPSHOT_BYTES),
 *                   served marked stale when the daemon starts while etcd is
 *                   unreachable.
 *
 * Every file is written whole to a temporary name, synced and renamed, so
 * a crash leaves the old file or the new one, never half of one. A file
 * that does not parse is ignored (and said so), never trusted.
 */

/** The snapshot's size bound: past it the view is not written (logged once); 64 MiB holds ~200,000 instances. */
export const MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024;

const NodeStateSchema = z.object({
  node: z.string().max(63),
  prefix: z.string().max(256),
  leaseId: z.string().regex(/^[1-9][0-9]{0,19}$/),
  /** False after `canonport leave` or a revoked lease: nothing to take back. */
  savedAt: z.string(),
});
export type NodeState = z.infer<typeof NodeStateSchema>;

const SnapshotSchema = z.object({
  format: z.literal(1),
  prefix: z.string(),
  revision: z.number().int().min(0),
  savedAt: z.string(),
  // createRevision: the caps rank nodes by it (admission.ts); absent in snapshots of earlier versions (then: unknown).
  entries: z.array(z.object({ key: z.string(), value: z.string(), lease: z.string().optional(), modRevision: z.number().optional(), createRevision: z.number().optional() })),
});
export interface ViewSnapshot {
  prefix: string;
  revision: number;
  savedAt: string;
  entries: KeyValue[];
}

/** A snapshot to write: its entries may be encoded as they are read (ClusterView.capture). */
export type SnapshotSource = Omit<ViewSnapshot, 'entries'> & { entries: Iterable<KeyValue> };

/** Entries encoded per piece of the snapshot: the slice written in one event-loop turn (~0.5 ms of encoding). */
export const SNAPSHOT_SLICE_ENTRIES = 256;

/**
 * view.json's text in pieces: the header, the entries SNAPSHOT_SLICE_ENTRIES
 * at a time, the end. Joined, exactly JSON.stringify of the whole snapshot;
 * both writers use it, so the file is the same whichever wrote it.
 */
function* snapshotPieces(s: SnapshotSource, sliceEntries = SNAPSHOT_SLICE_ENTRIES): Generator<string> {
  const header = JSON.stringify({ format: 1, prefix: s.prefix, revision: s.revision, savedAt: s.savedAt });
  yield `${header.slice(0, -1)},"entries":[`;
  let slice: string[] = [];
  let first = true;
  for (const e of s.entries) {
    slice.push(JSON.stringify({ key: e.key, value: e.value.toString(), ...(e.lease ? { lease: e.lease } : {}), ...(e.modRevision ? { modRevision: e.modRevision } : {}), ...(e.createRevision ? { createRevision: e.createRevision } : {}) }));
    if (slice.length >= sliceEntries) {
      yield (first ? '' : ',') + slice.join(',');
      first = false;
      slice = [];
    }
  }
  if (slice.length) yield (first ? '' : ',') + slice.join(',');
  yield ']}';
}

/** Where a daemon given no `stateDir` keeps its state, in the order it tries them. */
export function defaultStateDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  return [env.STATE_DIRECTORY?.split(':')[0], '/var/lib/canonport', join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'canonport')].filter((d): d is string => !!d);
}

/**
 * The directory to use: the setting, else systemd's $STATE_DIRECTORY
 * (`StateDirectory=canonport`), else /var/lib/canonport, else
 * ~/.local/state/canonport: the first that exists or can be made, and is
 * writable. null when none is (the daemon then runs without one and says so).
 */
export function chooseStateDir(configured: string | null, env: NodeJS.ProcessEnv = process.env): { dir: string | null; tried: string[] } {
  const candidates = configured ? [configured] : defaultStateDirs(env);
  const tried: string[] = [];
  for (const dir of candidates) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o750 });
      accessSync(dir, constants.W_OK);
      return { dir, tried };
    } catch (err) {
      tried.push(`${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return { dir: null, tried };
}

export class StateDir {
  private readonly logger: Logger;
  private tooLargeLogged = false;

  constructor(
    readonly dir: string,
    logger?: Logger,
  ) {
    this.logger = logger ?? silentLogger;
  }

  readNode(): NodeState | undefined {
    const data = this.readJson('node.json');
    if (data === undefined) return undefined;
    const r = NodeStateSchema.safeParse(data);
    if (!r.success) {
      this.logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, file: join(this.dir, 'node.json') }, 'ignoring an unreadable node state file');
      return undefined;
    }
    return r.data;
  }

  writeNode(s: NodeState): void {
    this.writeAtomic('node.json', JSON.stringify(s));
  }

  /** After a leave: there is no lease to take back. */
  clearNode(): void {
    rmSync(join(this.dir, 'node.json'), { force: true });
  }

  readSnapshot(prefix: string): ViewSnapshot | undefined {
    const data = this.readJson('view.json');
    if (data === undefined) return undefined;
    const r = SnapshotSchema.safeParse(data);
    if (!r.success || r.data.prefix !== prefix) {
      this.logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, file: join(this.dir, 'view.json') }, 'ignoring a view snapshot that does not fit (another prefix, or unreadable)');
      return undefined;
    }
    return { prefix: r.data.prefix, revision: r.data.revision, savedAt: r.data.savedAt, entries: r.data.entries };
  }

  /** Writes the view at once (at stop); false (logged once) when it is over MAX_SNAPSHOT_BYTES. */
  writeSnapshot(s: SnapshotSource): boolean {
    const text = [...snapshotPieces(s)].join('');
    const bytes = Buffer.byteLength(text);
    if (bytes > MAX_SNAPSHOT_BYTES) return this.tooLarge(bytes);
    this.writeAtomic('view.json', text);
    return true;
  }

  /**
   * writeSnapshot a slice at a time: each slice's entries are encoded and
   * written in a turn of their own, then the file is synced and renamed
   * (the I/O on libuv's threads), so answers wait for one slice at most,
   * never for the whole view (issue 24). `s.entries` must not change while
   * it is read: a capture (ClusterView.capture). Same file, same bound, same
   * atomic rename as writeSnapshot; rejects on an I/O error (no temporary
   * file is left).
   */
  async writeSnapshotInSlices(s: SnapshotSource, opts: { sliceEntries?: number | undefined } = {}): Promise<boolean> {
    const file = join(this.dir, 'view.json');
    // Not writeSnapshot's temporary name: the write at stop may overlap the end of this one.
    const tmp = `${file}.${process.pid}.slices.tmp`;
    const fh = await open(tmp, 'w', 0o640);
    let bytes = 0;
    let done = false;
    try {
      for (const piece of snapshotPieces(s, opts.sliceEntries)) {
        bytes += Buffer.byteLength(piece);
        if (bytes > MAX_SNAPSHOT_BYTES) break;
        await fh.write(piece);
      }
      if (bytes <= MAX_SNAPSHOT_BYTES) {
        await fh.sync();
        done = true;
      }
    } finally {
      await fh.close();
      if (!done) await rm(tmp, { force: true });
    }
    if (!done) return this.tooLarge(bytes);
    try {
      await rename(tmp, file);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return true;
  }

  private tooLarge(bytes: number): false {
    if (!this.tooLargeLogged) this.logger.warn({ code: ErrorCodes.STATE_DIR_UNAVAILABLE, bytes, max: MAX_SNAPSHOT_BYTES }, 'cluster view too large to snapshot; a start without etcd will know nothing');
    this.tooLargeLogged = true;
    return false;
  }

  private readJson(name: string): unknown {
    let text: string;
    try {
      text = readFileSync(join(this.dir, name), 'utf8');
    } catch {
      return undefined;
    }
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  private writeAtomic(name: string, text: string): void {
    const file = join(this.dir, name);
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, text, { mode: 0o640 });
    const fd = openSync(tmp, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  }
}
