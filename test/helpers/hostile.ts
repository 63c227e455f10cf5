import { spawn, type SpawnOptions } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Host } from './netns.js';
import { REPO, startServe, type ServeOptions, type ServeProcess } from './serve-process.js';

/**
 * The hostile suite's tools (test/hostile-*.test.ts, bench/hostile.ts):
 * floods run as their own processes inside an outsider's namespace
 * (flood.mjs), the daemon as a real `canonport serve` under a descriptor
 * limit, and the allowed client's checks (curl, the canonport CLI) run
 * from its own namespace.
 */

const FLOOD = fileURLToPath(new URL('./flood.mjs', import.meta.url));

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
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
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
