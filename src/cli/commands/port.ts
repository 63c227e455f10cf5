import type { Command } from 'commander';
import { loadRegistry } from '../../registry/load.js';
import type { PortAssignment, Registry } from '../../registry/registry.js';
import { EXIT_FINDINGS, printJson, type CliIO } from '../io.js';
import { registryOption, validName } from '../options.js';

/**
 * `canonport port NAME…`: one port per line, in input order, so
 * `PORT=$(npx canonport port api)` works. All or nothing: when one name has
 * no port (a versioned number over 65535), stdout stays empty and the exit
 * code is 1, so a script never reads a port that belongs to another line.
 */
export function registerPort(program: Command, io: CliIO): void {
  program
    .command('port')
    .description('print the canonical port of each NAME, one per line, in order')
    .argument('<name...>', 'service names: api, api.cluster-1.example.com, _api._tcp.example.com, v2.user')
    .addOption(registryOption())
    .option('--json', 'print a JSON array')
    .action(async (names: string[], opts: { registry?: string; json?: boolean }) => {
      const valid = names.map(validName);
      const registry = await loadRegistry(opts.registry);
      const rows = valid.map((name) => portRow(registry, name));
      const failed = rows.filter((r) => r.port === null);
      if (opts.json) printJson(io, rows);
      else if (failed.length === 0) io.out(rows.map((r) => String(r.port)).join('\n'));
      for (const r of failed) io.err(`canonport: ${r.name}: scheme ${r.scheme} gives ${r.number}, which is not a port (over 65535)`);
      if (failed.length > 0) io.exitCode = EXIT_FINDINGS;
    });
}

export interface PortRow extends PortAssignment {
  /** The name as given, validated and lowercased. */
  name: string;
}

export function portRow(registry: Registry, name: string): PortRow {
  return { name, ...registry.lookupName(name) };
}
