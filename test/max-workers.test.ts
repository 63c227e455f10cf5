import { describe, expect, it } from 'vitest';
import { cliMaxWorkers } from './helpers/max-workers.js';

/**
 * `npm test -- --maxWorkers=N` must reach vitest.config.ts's projects, which vitest 4 does not do by itself
 * (issue 23: `--maxWorkers=1` still ran two files at once): the config reads the command line with this.
 */
describe('--maxWorkers on the command line, for the projects', () => {
  const argv = (...a: string[]) => ['node', 'vitest.mjs', 'run', ...a];

  it('takes a count in either form vitest accepts, and a percentage as vitest reads it', () => {
    expect(cliMaxWorkers(argv('--maxWorkers=1'))).toBe(1);
    expect(cliMaxWorkers(argv('test/a.test.ts', '--maxWorkers', '3'))).toBe(3);
    expect(cliMaxWorkers(argv('--max-workers=4', 'test/a.test.ts'))).toBe(4);
    expect(cliMaxWorkers(argv('--maxWorkers=50%'))).toBe('50%');
  });

  it('is undefined when the command line does not say, so the config keeps its own default', () => {
    expect(cliMaxWorkers(argv())).toBeUndefined();
    expect(cliMaxWorkers(argv('--project', 'fast', 'test/maxWorkers.test.ts'))).toBeUndefined();
    expect(cliMaxWorkers(argv('--maxWorkers'))).toBeUndefined();
  });
});
