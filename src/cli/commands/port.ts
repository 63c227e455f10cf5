import { Option, type Command } from 'commander';
import { normaliseName } from '../../core/names.js';
import { isCanonportError, ErrorCodes } from '../../errors.js';
import { loadRegistryFile } from '../../registry/load.js';
import { Registry, type PortAssignment } from '../../registry/registry.js';
import { EXIT_FINDINGS, printJson, usageError, type CliIO } from '../io.js';

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
      const registry = await readRegistry(opts.registry);
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

// Helpers shared by the scheme commands (port, decode, check, order, compose).

/** `--registry FILE`, defaulting to $CANONPORT_REGISTRY like `serve`. */
export function registryOption(): Option {
  return new Option('--registry <file>', 'registry file (YAML)').env('CANONPORT_REGISTRY');
}

/** The named registry, or the empty one (every name on base32) when none is given. */
export async function readRegistry(file: string | undefined): Promise<Registry> {
  return file ? loadRegistryFile(file) : Registry.empty();
}

/** A registry is required (`order`, `compose`): usage error without one. */
export async function requireRegistry(file: string | undefined, command: string): Promise<Registry> {
  if (!file) throw usageError(`${command} needs a registry file: --registry FILE or CANONPORT_REGISTRY`);
  return loadRegistryFile(file);
}

/** Validates a name from the command line; a bad one is a usage error (exit 2) saying why. */
export function validName(raw: string): string {
  try {
    return normaliseName(raw);
  } catch (err) {
    if (isCanonportError(err, ErrorCodes.BAD_NAME)) throw usageError(`bad name "${raw.length > 40 ? `${raw.slice(0, 40)}…` : raw}": ${err.message}`);
    throw err;
  }
}
