/**
 * `--maxWorkers` from the command line (`npm test -- --maxWorkers=N`, `--maxWorkers N`, or a percentage), for the
 * projects. vitest 4 hands a few command-line options on to projects (its `cliOverrides`: isolate, pool, sequence…)
 * but not maxWorkers, and each project in vitest.config.ts inherits that file's `maxWorkers` (`extends: true`), which wins over
 * the command line's (vitest's resolveMaxWorkers: the project's own first): without this, `--maxWorkers=1` still
 * ran two files at once (issue 23). VITEST_MAX_WORKERS reaches every project by itself.
 */
export function cliMaxWorkers(argv = process.argv): number | string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const m = /^--max(?:Workers|-workers)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) continue;
    const v = m[1] ?? argv[i + 1];
    if (v === undefined) return undefined;
    return /^\d+$/.test(v) ? Number(v) : v;
  }
  return undefined;
}
