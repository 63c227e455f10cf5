import { Option } from 'commander';
import { normaliseName } from '../config/names.js';
import { isCanonportError, ErrorCodes } from '../errors.js';
import { loadRegistryFile } from '../registry/load.js';
import type { Registry } from '../registry/registry.js';
import { usageError } from './io.js';

/** Options and argument checks shared by the commands. */

/** `--registry FILE`, defaulting to $CANONPORT_REGISTRY like `serve`. */
export function registryOption(): Option {
  return new Option('--registry <file>', 'registry file (YAML)').env('CANONPORT_REGISTRY');
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
