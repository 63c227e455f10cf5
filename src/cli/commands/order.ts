import type { Command } from 'commander';
import { startOrder } from '../../registry/order.js';
import { printJson, type CliIO } from '../io.js';
import { registryOption, requireRegistry } from '../options.js';

/**
 * `canonport order`: the registry's services in start order, dependencies
 * first, one per line (`for s in $(canonport order); do …`). A cycle or an
 * unknown dependency is an error naming it (exit 1).
 */
export function registerOrder(program: Command, io: CliIO): void {
  program
    .command('order')
    .description("print the registry's services in start order, dependencies first")
    .addOption(registryOption())
    .option('--json', 'print JSON: name, dependsOn, level (equal levels may start together)')
    .action(async (opts: { registry?: string; json?: boolean }) => {
      const registry = await requireRegistry(opts.registry, 'order');
      const steps = startOrder(registry);
      if (opts.json) printJson(io, steps);
      else if (steps.length > 0) io.out(steps.map((s) => s.name).join('\n'));
    });
}
