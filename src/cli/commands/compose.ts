import type { Command } from 'commander';
import { composeMappings, composeYaml } from '../../registry/compose.js';
import { EXIT_FINDINGS, printJson, usageError, type CliIO } from '../io.js';
import { registryOption, requireRegistry } from '../options.js';

/**
 * `canonport compose [NAME…]`: docker-compose `external:internal` port
 * mappings for the registry's apps, as a compose fragment (YAML) or --json.
 * Names the scheme gives no port are left out, named on stderr, exit 1.
 */
export function registerCompose(program: Command, io: CliIO): void {
  program
    .command('compose')
    .description('print docker-compose "external:internal" port mappings for the registry\'s apps')
    .argument('[name...]', 'only these apps or names (splashpage, splashpage-psql)')
    .addOption(registryOption())
    .option('--json', 'print JSON')
    .action(async (names: string[], opts: { registry?: string; json?: boolean }) => {
      const registry = await requireRegistry(opts.registry, 'compose');
      for (const n of names) {
        if (!registry.services.has(n) && !registry.expanded.has(n)) throw usageError(`compose: "${n}" is not an app or name in ${registry.file}`);
      }
      const result = composeMappings(registry, names);
      if (opts.json) printJson(io, result);
      else io.out(composeYaml(result, registry.file));
      for (const s of result.skipped) io.err(`canonport: skipped ${s.name}: ${s.reason}`);
      if (result.skipped.length > 0) io.exitCode = EXIT_FINDINGS;
    });
}
