import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { launcherSettings } from './helpers/launcher.js';
import { REPO, startServe } from './helpers/serve-process.js';

/**
 * The daemon's node flags and allocator setting (issue 24: idle memory;
 * docs/performance.md, "Memory") are set by its launcher's first line, and
 * every way to start it runs with the same: the launcher itself (npx,
 * npm start, a person), the systemd unit, the container image.
 */

const { env, nodeArgs } = launcherSettings();

describe('the daemon\'s launch settings', () => {
  it('are what the launcher sets: fewer V8 threads, a smaller young generation, two malloc arenas', () => {
    expect(env).toEqual({ MALLOC_ARENA_MAX: '2' });
    expect(nodeArgs).toEqual(['--max-semi-space-size=4', '--v8-pool-size=1']);
  });

  it('are the same in npm start, the systemd unit and the container image', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    // npm start runs the launcher itself, so its first line applies.
    expect(pkg.scripts.start).toBe('bin/canonport.js serve');
    const unit = readFileSync(join(REPO, 'deploy/systemd/canonport.service'), 'utf8');
    const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!;
    const envWords = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    expect(execStart.startsWith(['/usr/bin/env', ...envWords, 'node', ...nodeArgs, '/opt/canonport/bin/canonport.js', 'serve'].join(' ') + ' ')).toBe(true);
    const docker = readFileSync(join(REPO, 'deploy/docker/Dockerfile'), 'utf8');
    const entry = JSON.parse(/^ENTRYPOINT (\[.*\])$/m.exec(docker)![1]!) as string[];
    expect(entry).toEqual(['node', ...nodeArgs, '/opt/canonport/bin/canonport.js']);
    const runtime = docker.slice(docker.lastIndexOf('\nFROM '));
    for (const [k, v] of Object.entries(env)) expect(runtime).toMatch(new RegExp(`^ENV [^]*?^\\s+${k}=${v} \\\\$`, 'm'));
  });

  it('reach a daemon started through the launcher (its command line and environment in /proc)', async () => {
    // The launcher itself, executed: its first line runs env, which runs node.
    const d = await startServe([], { spawn: (_node, argv, o) => spawn(join(REPO, 'bin', 'canonport.js'), argv.slice(1), o) });
    try {
      const cmdline = readFileSync(`/proc/${d.pid}/cmdline`, 'utf8').split('\0');
      expect(cmdline.slice(1, 1 + nodeArgs.length)).toEqual(nodeArgs);
      expect(cmdline[1 + nodeArgs.length]).toBe(join(REPO, 'bin', 'canonport.js'));
      const environ = readFileSync(`/proc/${d.pid}/environ`, 'utf8').split('\0');
      for (const [k, v] of Object.entries(env)) expect(environ).toContain(`${k}=${v}`);
    } finally {
      await d.stop();
    }
  });
});
