import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Children, type Server } from './children.js';
import { BENCH_ZONE, FWD_ZONE, canonicalSrv, dnsmasqConfig, serviceLabelAt, unboundConfig, type UnboundOptions } from './fixtures.js';
import { TYPE_SRV } from './dns-wire.js';
import { waitForDnsAnswer, waitForReadyz } from './probe.js';

/**
 * Starting each server of the bench on its own loopback port, and waiting
 * until it answers. Every start goes through `Children`, so nothing outlives
 * the bench.
 */

/** The repo root: the nearest directory above this file with a package.json (from bench/ or its build, dist-bench/bench/). */
export const REPO_ROOT = findRepoRoot(fileURLToPath(new URL('.', import.meta.url)));

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${from}`);
  }
}
const HERE = fileURLToPath(new URL('.', import.meta.url));

/** The name every server is probed with before it is measured. */
export const PROBE_NAME = canonicalSrv(serviceLabelAt(0), BENCH_ZONE).name;
export const FWD_PROBE_NAME = canonicalSrv(serviceLabelAt(0), FWD_ZONE).name;

/** Debian packages providing each external tool. */
export const TOOL_PACKAGES: Record<string, string> = { dnsperf: 'dnsperf', unbound: 'unbound', dnsmasq: 'dnsmasq', etcd: 'etcd-server' };
export const INSTALL_COMMAND = 'apt-get update && apt-get install -y dnsperf unbound dnsmasq dnsutils';

/** Finds an executable on PATH, or in the sbin directories a non-root PATH lacks. */
export function findTool(name: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return null;
}

/** The version a tool reports, or null when it is not installed. */
export function toolVersion(name: string): string | null {
  const path = findTool(name);
  if (!path) return null;
  const args: Record<string, string[]> = { dnsperf: ['-H'], unbound: ['-V'], dnsmasq: ['--version'], etcd: ['--version'] };
  const r = spawnSync(path, args[name] ?? ['--version'], { encoding: 'utf8', timeout: 5000 });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  return /version:?\s+(\S+)/i.exec(text)?.[1] ?? 'unknown version';
}

/** Whether `canonport serve` exists with the flags the bench passes; the reason when not. */
export function canonportServeAvailable(): { available: boolean; reason?: string } {
  const bin = join(REPO_ROOT, 'bin', 'canonport.js');
  const r = spawnSync(process.execPath, [bin, 'serve', '--help'], { encoding: 'utf8', timeout: 15_000 });
  const text = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status === 0 && /Usage: canonport serve/.test(text)) {
    const missing = ['--dns', '--grpc', '--http', '--zone', '--upstream', '--registry'].filter((f) => !text.includes(f));
    if (missing.length === 0) return { available: true };
    return { available: false, reason: `"canonport serve --help" lacks ${missing.join(', ')}` };
  }
  return { available: false, reason: `"canonport serve --help" exited ${r.status ?? r.signal}: no serve command yet` };
}

export interface CanonportInstance {
  server: Server;
  grpcPort: number;
  httpPort: number;
  firstAnswerMs: number;
  readyzMs: number;
}

/** Starts the servers; each `start*` resolves once the server answers. */
export class Servers {
  private seq = 0;

  constructor(
    readonly children: Children,
    readonly workDir: string,
    readonly registryFile: string,
  ) {}

  private next(kind: string): string {
    return `${kind}-${++this.seq}`;
  }

  async startUnbound(zones: UnboundOptions['zones']): Promise<Server> {
    const port = await this.children.freePort();
    const name = this.next('unbound');
    const conf = join(this.workDir, `${name}.conf`);
    writeFileSync(conf, unboundConfig({ port, directory: this.workDir, zones }));
    const server = this.children.spawnServer(name, findTool('unbound') ?? 'unbound', ['-d', '-c', conf], port);
    await waitForDnsAnswer(server, PROBE_NAME, TYPE_SRV, 30_000, 20);
    return server;
  }

  /** dnsmasq answering `srv` itself ("auth"), or forwarding to `upstreamPort` with its cache ("fwd"). */
  async startDnsmasq(kind: 'auth' | 'fwd', opts: { srv?: ReturnType<typeof canonicalSrv>[]; upstreamPort?: number }): Promise<Server> {
    const port = await this.children.freePort();
    const name = this.next(`dnsmasq-${kind}`);
    const conf = join(this.workDir, `${name}.conf`);
    const text =
      kind === 'auth'
        ? dnsmasqConfig({ port, pidFile: join(this.workDir, `${name}.pid`), srv: opts.srv ?? [], localZones: [BENCH_ZONE] })
        : dnsmasqConfig({ port, pidFile: join(this.workDir, `${name}.pid`), upstream: { host: '127.0.0.1', port: opts.upstreamPort! } });
    writeFileSync(conf, text);
    const server = this.children.spawnServer(name, findTool('dnsmasq') ?? 'dnsmasq', ['--keep-in-foreground', '--log-facility=-', `--conf-file=${conf}`], port);
    await waitForDnsAnswer(server, kind === 'auth' ? PROBE_NAME : FWD_PROBE_NAME, TYPE_SRV, 15_000, 20);
    return server;
  }

  /** One of the Node references (ref-dns2.js, ref-dgram.js) in its own process. */
  async startNodeReference(script: 'ref-dns2' | 'ref-dgram'): Promise<Server> {
    const port = await this.children.freePort();
    const server = this.children.spawnServer(this.next(script), process.execPath, [join(HERE, `${script}.js`), '127.0.0.1', String(port)], port);
    await waitForDnsAnswer(server, PROBE_NAME, TYPE_SRV, 15_000, 20);
    return server;
  }

  /** The no-op grpc-js server on canonport's proto; resolves once it listens (the caller's client waits for ready). */
  async startGrpcNoop(): Promise<Server> {
    const port = await this.children.freePort();
    return this.children.spawnServer(this.next('grpc-noop'), process.execPath, [join(HERE, 'grpc-noop.js'), '127.0.0.1', String(port)], port);
  }

  /**
   * `canonport serve` with the bench zone and registry, forwarding to
   * `upstreamPort`. Measures spawn → first canonical answer and spawn →
   * /readyz 200, polling both every 5 ms.
   */
  async startCanonport(upstreamPort: number, opts: { workers?: number; extraArgs?: string[]; repo?: string } = {}): Promise<CanonportInstance> {
    const [dns, grpcPort, httpPort] = [await this.children.freePort(), await this.children.freePort(), await this.children.freePort()];
    const args = [
      'serve',
      '--dns',
      `127.0.0.1:${dns}`,
      '--grpc',
      `127.0.0.1:${grpcPort}`,
      '--http',
      `127.0.0.1:${httpPort}`,
      '--zone',
      BENCH_ZONE,
      '--upstream',
      `127.0.0.1:${upstreamPort}`,
      '--registry',
      this.registryFile,
      ...(opts.workers ? ['--workers', String(opts.workers)] : []),
      ...(opts.extraArgs ?? []),
    ];
    // No CANONPORT_* from the caller's shell: the flags above are the whole config.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CANONPORT_')));
    // Run the launcher itself, as `npx canonport` does: its shebang sets the node flags the daemon ships with.
    // `repo`: another checkout (a baseline for before/after figures in one run).
    const server = this.children.spawnServer(this.next('canonport'), join(opts.repo ?? REPO_ROOT, 'bin', 'canonport.js'), args, dns, env);
    try {
      const [firstAnswerMs, readyzMs] = await Promise.all([
        waitForDnsAnswer(server, PROBE_NAME, TYPE_SRV, 20_000, 5),
        waitForReadyz(server, httpPort, 20_000, 5),
      ]);
      return { server, grpcPort, httpPort, firstAnswerMs, readyzMs };
    } catch (err) {
      await this.children.stop(server);
      throw err;
    }
  }
}
