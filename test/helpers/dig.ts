import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { requireTool } from './tools.js';

const run = promisify(execFile);

export interface DigResult {
  status: string;
  flags: string[];
  answer: string[][];
  authority: string[][];
  additional: string[][];
  raw: string;
}

/**
 * Runs the real dig against host:port and parses its sections. `wrap` runs
 * it through another command, e.g. `ip netns exec NS` to ask from another host.
 */
export async function dig(server: { host: string; port: number }, args: string[], wrap: string[] = []): Promise<DigResult> {
  requireTool('dig', 'dnsutils');
  const argv = [...wrap, 'dig', `@${server.host}`, '-p', String(server.port), '+time=2', '+tries=1', '+nocookie', ...args];
  const { stdout } = await run(argv[0]!, argv.slice(1), { timeout: 10_000 });
  const status = /status: (\w+)/.exec(stdout)?.[1] ?? 'NONE';
  const flags = (/;; flags: ([^;]*);/.exec(stdout)?.[1] ?? '').trim().split(/\s+/).filter(Boolean);
  const section = (name: string) => {
    const m = new RegExp(`;; ${name} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(stdout);
    return m ? m[1]!.split('\n').filter((l) => l && !l.startsWith(';')).map((l) => l.split(/\s+/)) : [];
  };
  return { status, flags, answer: section('ANSWER'), authority: section('AUTHORITY'), additional: section('ADDITIONAL'), raw: stdout };
}
