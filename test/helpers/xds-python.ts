import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Tally } from './xds-backend.js';
import { untilWokenOr } from './wake.js';

/**
 * The stock Python client: Debian's python3-grpcio (gRPC's C core and its
 * xDS resolver) for /usr/bin/python3, which may not be the first python3
 * on PATH, driven line by line so one channel lives through a whole
 * scenario.
 */

const PYTHON = '/usr/bin/python3';
/** test/helpers/xds-client.py, found from here whether this runs from test/ (vitest) or dist-bench/ (the bench). */
const PY_CLIENT = ((): string => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'test', 'helpers', 'xds-client.py');
    if (existsSync(candidate)) return candidate;
    if (existsSync(join(dir, 'xds-client.py'))) return join(dir, 'xds-client.py');
    if (dirname(dir) === dir) throw new Error('test/helpers/xds-client.py not found');
  }
})();

/** Fails with the Debian package's name when Debian's grpcio is not there for /usr/bin/python3. */
export function requirePythonGrpc(): void {
  try {
    execFileSync(PYTHON, ['-c', 'import grpc'], { stdio: 'pipe' });
  } catch {
    throw new Error(`${PYTHON} cannot import grpc: apt-get install -y python3-grpcio (.ci/run installs it)`);
  }
}

/**
 * A Python process holding one channel per target (`xds:///NAME`, through
 * the bootstrap at GRPC_XDS_BOOTSTRAP; gRPC's one xDS client per process
 * carries them all on one ADS stream); `calls(n)` makes n WhoAmI calls on
 * the first channel (`target`: another one) and tallies who answered.
 */
export class PythonXdsClient {
  private readonly proc: ChildProcess;
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private exited = false;
  readonly stderr: string[] = [];

  constructor(targets: string | readonly string[], bootstrapPath: string | null, env: Record<string, string> = {}) {
    // null: the bootstrap comes from `env` (GRPC_XDS_BOOTSTRAP_CONFIG, as a Kubernetes pod gets it).
    const bootstrap = bootstrapPath === null ? {} : { GRPC_XDS_BOOTSTRAP: bootstrapPath };
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('GRPC_XDS_')));
    this.proc = spawn(PYTHON, [PY_CLIENT, ...(typeof targets === 'string' ? [targets] : targets)], { env: { ...base, ...bootstrap, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout! }).on('line', (l) => {
      this.lines.push(l);
      this.waiter?.();
    });
    createInterface({ input: this.proc.stderr! }).on('line', (l) => {
      if (this.stderr.length < 2000) this.stderr.push(l);
    });
    this.proc.on('exit', () => {
      this.exited = true;
      this.waiter?.();
    });
  }

  private async reply(ms: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + ms;
    while (this.lines.length === 0) {
      if (this.exited) throw new Error(`python client exited: ${this.stderr.slice(-10).join('\n')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`python client silent for ${ms} ms: ${this.stderr.slice(-10).join('\n')}`);
      await untilWokenOr(left, (wake) => (this.waiter = wake));
    }
    return JSON.parse(this.lines.shift()!) as Record<string, unknown>;
  }

  /** n WhoAmI calls on channel `target`, each with `timeoutMs`; the tally of backend ids and error codes. */
  async calls(n: number, timeoutMs = 2000, target = 0): Promise<Tally> {
    this.proc.stdin!.write(`${JSON.stringify({ n, timeout: timeoutMs / 1000, target })}\n`);
    const r = await this.reply(n * timeoutMs + 10_000);
    return r.tally as Tally;
  }

  /** Calls back to back until backend `id` answers (or `limitMs` passes); the number of calls and whether it did. */
  async until(id: string, limitMs: number, timeoutMs = 1000): Promise<{ calls: number; ok: boolean }> {
    this.proc.stdin!.write(`${JSON.stringify({ until: id, timeout: timeoutMs / 1000, limit: limitMs / 1000 })}\n`);
    const r = await this.reply(limitMs + timeoutMs + 10_000);
    return { calls: Number(r.calls), ok: r.ok === true };
  }

  close(): void {
    if (!this.exited) this.proc.kill('SIGTERM');
  }
}
