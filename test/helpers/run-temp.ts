import { chmodSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The temporary directories of one test run (test/global-setup.ts): a new,
 * empty `canonport-run-XXXXXX` under each base, open to every user like
 * /tmp itself (mode 1777: tests run daemons as other users, whose files
 * live there). finish() removes them and throws, naming every entry, when a
 * test left anything in them.
 */
export interface RunTemp {
  dirs: string[];
  /** Removes the directories; throws if they were not empty (after removing them: nothing stays either way). */
  finish(): void;
}

export function runTemp(bases: string[]): RunTemp {
  const dirs = bases.map((b) => mkdtempSync(join(b, 'canonport-run-')));
  for (const d of dirs) chmodSync(d, 0o1777);
  return {
    dirs,
    finish() {
      const left = dirs.flatMap((d) => readdirSync(d).map((e) => join(d, e)));
      for (const d of dirs) rmSync(d, { recursive: true, force: true, maxRetries: 3 });
      if (left.length > 0) {
        throw new Error(
          `the tests left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in the run's temporary directories (removed now). ` +
            `A test removes what it makes (test/helpers/temp.ts tempDir() does it after the file); the names say which made them:\n  ${left.join('\n  ')}`,
        );
      }
    },
  };
}
