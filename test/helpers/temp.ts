import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The one way tests make temporary directories. Each is removed after its
 * test file, by test/file-setup.ts's afterAll (it runs after the file's own
 * hooks, so daemons the file stops there are gone first); test files that
 * remove one sooner may. The run's TMPDIR is a directory of its own, which
 * test/global-setup.ts checks is empty at the end: anything a test leaves
 * there fails the run, named.
 */

/** What this test file made and has not removed yet; bounded by the file's own calls, emptied after it. */
const made = new Set<string>();

/** A new directory in the temporary directory, named `<prefix>XXXXXX`, removed after the test file. */
export function tempDir(prefix = 'canonport-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

/** Removes every directory tempDir made in this test file. */
export function removeTempDirs(): void {
  for (const dir of made) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  made.clear();
}
