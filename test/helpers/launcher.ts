import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './serve-process.js';

/**
 * What bin/canonport.js's first line (`#!/usr/bin/env -S NAME=VALUE… node
 * FLAGS…`) starts node with: the environment it sets and node's flags.
 * Every other way to start the daemon (npm start, the systemd unit, the
 * container image, the benches' floor) uses the same.
 */
export function launcherSettings(): { env: Record<string, string>; nodeArgs: string[] } {
  const first = readFileSync(join(REPO, 'bin', 'canonport.js'), 'utf8').split('\n')[0]!;
  const m = /^#!\/usr\/bin\/env -S (.*)$/.exec(first);
  if (!m) throw new Error(`bin/canonport.js: its first line is not "#!/usr/bin/env -S …": ${first}`);
  const words = m[1]!.trim().split(/\s+/);
  const at = words.indexOf('node');
  if (at < 0) throw new Error(`bin/canonport.js: its first line runs no node: ${first}`);
  const env = Object.fromEntries(words.slice(0, at).map((w) => w.split('=', 2) as [string, string]));
  return { env, nodeArgs: words.slice(at + 1) };
}
