import { spawn, type SpawnOptions } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { outputOf } from './child.js';
import type { Host } from './netns.js';
import { REPO, startServe, type ServeOptions, type ServeProcess } from './serve-process.js';

/**
 * The hostile suite's tools (test/hostile-*.test.ts, bench/hostile.ts):
 * floods run as their own processes inside an outsider's namespace
 * (flood.mjs), the daemon as a real `canonport serve` under a descriptor
 * limit, and the allowed client's checks (curl, the canonport CLI) run
 * from its own namespace.
 */

// From the repository root: this module also runs compiled, from dist-bench/test/helpers/, where the scripts are not.
const FLOOD = `${REPO}test/helpers/flood.mjs`;

export interface FloodResult {
  opened: number;
  failed: number;
  /** Connections the daemon closed while the flooder held them. */
  closedByPeer: number;
  /** Still open when the hold ended. */
  openAtEnd: number;
  firstCloseMs: number | null;
}

/** Runs flood.mjs from `host` (null: this namespace) and resolves with what it saw. */
export async function flood(host: Host | null, mode: 'idle' | 'http-half' | 'dns-half', target: { host: string; port: number }, count: number, holdMs: number): Promise<FloodResult> {
  const args = [FLOOD, mode, target.host, String(target.port), String(count), String(holdMs)];
  const r = host ? await host.exec(process.execPath, args) : await execLocal(process.execPath, args);
  if (r.code !== 0) throw new Error(`flood.mjs exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as FloodResult;
}

export function execLocal(cmd: string, args: string[], opts: SpawnOptions = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return outputOf(spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] }));
}

/** curl from a host (null: here): the HTTP status ('000' when no answer came within 5 s). */
export async function curlStatus(host: Host | null, url: string): Promise<string> {
  const args = ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', url];
  const r = host ? await host.exec('curl', args) : await execLocal('curl', args);
  return r.stdout.trim();
}

/** `canonport ARGS` from a host, as an operator there would run it. */
export function canonportFrom(host: Host, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return host.exec(process.execPath, [`${REPO}bin/canonport.js`, ...args], { cwd: REPO, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
}

/** `canonport serve` with at most `nofile` descriptors (prlimit; util-linux), so exhaustion is reachable with a few hundred connections. */
export function startServeLimited(args: string[], nofile: number, opts: Omit<ServeOptions, 'spawn'> = {}): Promise<ServeProcess> {
  return startServe(args, {
    ...opts,
    spawn: (cmd, argv, o) => spawn('prlimit', [`--nofile=${nofile}:${nofile}`, '--', cmd, ...argv], o),
  });
}

/** Descriptors a process holds now. */
export function openDescriptors(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

const GRPC_FLOOD = `${REPO}test/helpers/grpc-flood.mjs`;

export interface GrpcFloodResult {
  streams: number;
  responses: number;
  /** Streams the daemon ended while they were held, by status code name. */
  ended: Record<string, number>;
  openAtEnd: number;
  firstEndMs: number | null;
}

/** Runs grpc-flood.mjs from `host` (null: this namespace): xDS or Watch streams held open, see the script (`untilResponses`: its RESPONSES). */
export async function grpcFlood(
  host: Host | null,
  mode: 'xds' | 'watch',
  target: string,
  opts: { streams: number; names: number; holdMs: number; zone: string; connections?: number; untilResponses?: number },
): Promise<GrpcFloodResult> {
  const args = [GRPC_FLOOD, mode, target, String(opts.streams), String(opts.names), String(opts.holdMs), opts.zone, String(opts.connections ?? 1), String(opts.untilResponses ?? 0)];
  const r = host ? await host.exec(process.execPath, args, { cwd: REPO }) : await execLocal(process.execPath, args, { cwd: REPO });
  if (r.code !== 0) throw new Error(`grpc-flood.mjs exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as GrpcFloodResult;
}

export interface DnsProbeResult {
  sent: number;
  failed: number;
  /** Slowest answer, ms (a failure counts as the timeout). */
  maxMs: number;
}

/**
 * What a DNS client sees meanwhile: one query (SRV unless `type` says)
 * every `everyMs` until `until` resolves (at least `min`), each failed when
 * no answer with records comes within `timeoutMs`. `name` may change per
 * query (a function of its number), so forwarded names miss the cache.
 */
export async function probeDns(
  server: { host: string; port: number },
  name: string | ((i: number) => string),
  until: Promise<unknown>,
  opts: { everyMs?: number; timeoutMs?: number; min?: number; type?: 'SRV' | 'A' } = {},
): Promise<DnsProbeResult> {
  const { UdpClient, T } = await import('./dns-wire.js');
  const everyMs = opts.everyMs ?? 250;
  const timeoutMs = opts.timeoutMs ?? 1000;
  let over = false;
  void until.finally(() => (over = true));
  const udp = await UdpClient.open();
  const r: DnsProbeResult = { sent: 0, failed: 0, maxMs: 0 };
  try {
    while (!over || r.sent < (opts.min ?? 0)) {
      const t0 = performance.now();
      const a = await udp.ask(server, { name: typeof name === 'string' ? name : name(r.sent), type: T[opts.type ?? 'SRV'] }, timeoutMs);
      const ms = performance.now() - t0;
      r.sent++;
      if (!a.msg || a.msg.answers.length === 0) r.failed++;
      r.maxMs = Math.max(r.maxMs, Math.round(a.msg ? ms : timeoutMs));
      await new Promise((res) => setTimeout(res, everyMs));
    }
  } finally {
    await udp.close();
  }
  return r;
}
