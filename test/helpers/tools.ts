import { execFileSync } from 'node:child_process';

/** Fails with a clear message when a Debian tool the test needs is missing. */
export function requireTool(cmd: string, debianPackage: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`"${cmd}" is not installed: apt-get install -y ${debianPackage} (.ci/run installs it)`);
  }
}
