import { cpus, loadavg } from 'node:os';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO } from '../test/helpers/serve-process.js';

/**
 * The arguments of the attack benches (hostile.ts, hostile-cluster.ts):
 * `--repo DIR` (repeatable: checkouts to attack, each with a built dist/;
 * default this one) and `--only CASE[,CASE…]` (the cases, in the order
 * given; default all).
 */
export function parseRepoCases<C extends string>(cases: readonly C[]): { repos: string[]; only: C[] } {
  const { values } = parseArgs({ options: { repo: { type: 'string', multiple: true }, only: { type: 'string', multiple: true } } });
  const only = (values.only ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
  for (const o of only) if (!(cases as readonly string[]).includes(o)) throw new Error(`unknown case "${o}": use ${cases.join(', ')}`);
  const repos = (values.repo ?? [REPO]).map((r) => `${resolve(r)}/`);
  for (const r of repos) if (!existsSync(join(r, 'dist', 'cli', 'main.js'))) throw new Error(`${r} has no built dist/ (npm run build there)`);
  return { repos, only: only.length ? (only as C[]) : [...cases] };
}

export type Figures = Record<string, string | number | boolean>;

/**
 * Runs each case against each checkout, in that order, printing its figures
 * as it goes (a case that throws prints its error instead: the next still
 * runs); `after` cleans up after each. Ends with the machine's load, since
 * figures of a shared machine compare only within one run.
 */
export async function runRepoCases<C extends string>(label: string, only: readonly C[], repos: readonly string[], run: (c: C, repo: string) => Promise<Figures>, after?: () => Promise<void>): Promise<void> {
  for (const c of only) {
    for (const repo of repos) {
      process.stderr.write(`${label}: ${c} against ${repo}…\n`);
      let figures: Figures;
      try {
        figures = await run(c, repo);
      } catch (err) {
        figures = { error: (err as Error).message.split('\n')[0]!.slice(0, 200) };
      }
      await after?.();
      console.log(`${c.padEnd(12)} ${repo}\n  ${Object.entries(figures).map(([k, v]) => `${k}: ${v}`).join('\n  ')}`);
    }
  }
  console.log(`\nmachine: ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(' ')} (shared: compare rows of one run only)`);
}
