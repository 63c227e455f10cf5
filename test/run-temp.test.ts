import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTemp } from './helpers/run-temp.js';
import { removeTempDirs, tempDir } from './helpers/temp.js';

/**
 * The run leaves nothing in the temporary directory: test/global-setup.ts
 * gives it directories of its own (helpers/run-temp.ts) and fails the run
 * when a test left something there. These check that the check can fail,
 * and that the run's TMPDIR is where tests and their processes write.
 */

describe('the run\'s temporary directories', () => {
  it('are open to every user like /tmp, finish quietly when empty, and are gone after', () => {
    const base = tempDir('canonport-runtemp-');
    const run = runTemp([base, base]);
    expect(run.dirs).toHaveLength(2);
    for (const d of run.dirs) {
      expect(d.startsWith(join(base, 'canonport-run-'))).toBe(true);
      expect(statSync(d).mode & 0o7777).toBe(0o1777);
    }
    run.finish();
    for (const d of run.dirs) expect(existsSync(d)).toBe(false);
  });

  it('fail naming every entry a test left, and remove them all the same', () => {
    const base = tempDir('canonport-runtemp-');
    const run = runTemp([base]);
    writeFileSync(join(run.dirs[0]!, 'canonport-test-abc123'), '');
    mkdirSync(join(run.dirs[0]!, 'canonport-etcd-xyz789', 'm0'), { recursive: true });
    expect(() => run.finish()).toThrow(/left 2 entries[\s\S]*canonport-etcd-xyz789[\s\S]*canonport-test-abc123|left 2 entries[\s\S]*canonport-test-abc123[\s\S]*canonport-etcd-xyz789/);
    expect(existsSync(run.dirs[0]!)).toBe(false);
  });

  it('are the TMPDIR every test file and its processes see, and tempDir() makes its directories there', () => {
    expect(process.env.TMPDIR).toMatch(/\/canonport-run-[^/]+$/);
    expect(tmpdir()).toBe(process.env.TMPDIR);
    const dir = tempDir();
    expect(dir.startsWith(`${process.env.TMPDIR}/canonport-test-`)).toBe(true);
    removeTempDirs();
    expect(existsSync(dir)).toBe(false);
  });
});
