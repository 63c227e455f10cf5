import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Config } from '../../../config/config.js';

export interface ChaosOptions {
  /** `--identity hide`: every identity query is REFUSED. */
  hide: boolean;
  /** What version.bind and version.server say. */
  version: string;
  /** What hostname.bind and id.server say. */
  hostname: string;
}

/** The package's version, read once: src/dns/plugins/chaos/ and dist/dns/plugins/chaos/ both sit four levels below package.json. */
const PACKAGE_VERSION = (JSON.parse(readFileSync(new URL('../../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** `--identity`, with this process's version and the host's name (read again on reload, so a renamed host is seen). */
export function setup(config: Config): ChaosOptions {
  return { hide: config.identity === 'hide', version: `canonport ${PACKAGE_VERSION}`, hostname: hostname() };
}
