import type { Command } from 'commander';
import { BASE32_MAX_PORT, BASE32_MIN_PORT, decodePort, decodePortRaw } from '../../scheme/index.js';
import { EXIT_FINDINGS, parsePortArg, printJson, type CliIO } from '../io.js';
import { loadRegistry } from '../../registry/load.js';
import { registryOption } from '../options.js';

/**
 * `canonport decode PORT…`: the three-character prefix each port encodes,
 * one per line. `--raw` reads the port without the 1024 offset, as the seed
 * decoded well-known ports (6379 → 67b). With a registry, the names that
 * own the port follow a tab.
 *
 * A port the scheme cannot produce (outside 1024–33791, or 0–32767 with
 * --raw) and no registry name owns is a finding, exit 1: the argument is a
 * valid port, it just has no name. A non-number or a number over 65535 is a
 * usage error, exit 2. Like `port`, all or nothing on stdout.
 */
export function registerDecode(program: Command, io: CliIO): void {
  program
    .command('decode')
    .description('print the name prefix each PORT encodes, one per line')
    .argument('<port...>', 'port numbers')
    .option('--raw', "the seed's reading of well-known ports: no 1024 offset (6379 → 67b)")
    .addOption(registryOption())
    .option('--json', 'print a JSON array')
    .action(async (ports: string[], opts: { raw?: boolean; registry?: string; json?: boolean }) => {
      const numbers = ports.map(parsePortArg);
      const registry = opts.registry ? await loadRegistry(opts.registry) : null;
      const rows = numbers.map((port) => ({
        port,
        prefix: opts.raw ? decodePortRaw(port) : decodePort(port),
        raw: Boolean(opts.raw),
        owners: registry ? registry.ownersOf(port).sort() : [],
      }));
      const failed = rows.filter((r) => r.prefix === null && r.owners.length === 0);
      if (opts.json) printJson(io, rows);
      else if (failed.length === 0) {
        io.out(rows.map((r) => (registry && r.owners.length > 0 ? `${r.prefix ?? '-'}\t${r.owners.join(',')}` : (r.prefix ?? '-'))).join('\n'));
      }
      const range = opts.raw ? '0–32767 (--raw)' : `${BASE32_MIN_PORT}–${BASE32_MAX_PORT}`;
      for (const r of failed) {
        const hint = !opts.raw && decodePortRaw(r.port) !== null ? ` (--raw reads it as the seed did: ${decodePortRaw(r.port)})` : '';
        io.err(`canonport: ${r.port} is outside ${range}, where names land${registry ? ', and no registry name owns it' : ''}${hint}`);
      }
      if (failed.length > 0) io.exitCode = EXIT_FINDINGS;
    });
}
