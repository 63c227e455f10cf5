import type { Command } from 'commander';
import { CheckCodes, checkRegistry, failed, type Finding } from '../../registry/check.js';
import { NO_HOST_FACTS, readHostFacts } from '../../registry/host-facts.js';
import { EXIT_FINDINGS, EXIT_OK, printJson, type CliIO } from '../io.js';
import { loadRegistry } from '../../registry/load.js';
import { registryOption, validName } from '../options.js';

/**
 * `canonport check [NAME…]`: the registry's and the names' problems, one
 * line per finding. Exit 1 on an error (or any finding with --strict), 0
 * otherwise; see src/registry/check.ts for which findings are errors.
 */
export function registerCheck(program: Command, io: CliIO): void {
  program
    .command('check')
    .description('check the registry and NAMEs: collisions, ephemeral and well-known ports, versions, blocks, dependencies')
    .argument('[name...]', 'extra service names to check with the registry (cat caterpillar)')
    .addOption(registryOption())
    .option('--strict', 'exit 1 on warnings too')
    .option('--no-host', "skip this host's facts (ephemeral range, /etc/services), e.g. in CI for another host")
    .option('--json', 'print JSON')
    .action(async (names: string[], opts: { registry?: string; strict?: boolean; host: boolean; json?: boolean }) => {
      const extra = names.map(validName);
      const registry = await loadRegistry(opts.registry);
      const facts = opts.host ? await readHostFacts() : NO_HOST_FACTS;
      const findings = checkRegistry(registry, facts, extra);
      const errors = findings.filter((f) => f.severity === 'error').length;
      const warnings = findings.length - errors;
      const fail = failed(findings, Boolean(opts.strict));
      if (opts.json) {
        printJson(io, { ok: !fail, errors, warnings, findings });
      } else {
        const lines = findings.map(formatFinding);
        lines.push(findings.length === 0 ? 'ok: no findings' : `${plural(errors, 'error')}, ${plural(warnings, 'warning')}`);
        io.out(lines.join('\n'));
      }
      io.exitCode = fail ? EXIT_FINDINGS : EXIT_OK;
    });
}

const CODE_WIDTH = Math.max(...Object.values(CheckCodes).map((c) => c.length));

/** `error    CHECK_COLLISION          cat, caterpillar share port 13661 …` */
export function formatFinding(f: Finding): string {
  return `${f.severity.padEnd(8)} ${f.code.padEnd(CODE_WIDTH)}  ${f.message}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
