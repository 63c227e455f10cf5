import type { Registry } from '../registry/registry.js';
import type { SocketOwner } from './socket-owner.js';

/**
 * The names a listening process goes by (its systemd unit, its container's
 * name where one is known, its executable, the script an interpreter runs),
 * kept only where the name's canonical port is the port the process
 * listens on: `api.service` on 12082 is `api`; Prometheus on 9090 or a
 * development server named `node` on 2024 are nobody's canonical port, so
 * they stay unnamed. The port is never moved by a name: a name is kept
 * because the scheme (or the registry) already gives it that port.
 */

/** Interpreters whose own name says nothing: the script or module they run names the process. */
const INTERPRETERS = /^(node|nodejs|bun|deno|python[0-9.]*|pypy[0-9.]*|ruby[0-9.]*|perl[0-9.]*|php[0-9.]*|java|dotnet|sh|bash|dash)$/;
/** What a name may be (a registry name's form, as the cluster records take it). */
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** The process's names to try, best first, lowercased; duplicates removed. */
export function candidateNames(owner: Pick<SocketOwner, 'unit' | 'exe' | 'comm' | 'args'>): string[] {
  const out: string[] = [];
  const add = (raw: string | undefined) => {
    if (!raw) return;
    const name = raw.toLowerCase().replace(/@.*$/, '');
    if (NAME.test(name) && !out.includes(name)) out.push(name);
  };
  add(owner.unit);
  const exe = owner.exe ?? owner.comm;
  if (INTERPRETERS.test(exe) || INTERPRETERS.test(owner.comm)) add(scriptOf(owner.args));
  add(owner.exe);
  add(owner.comm);
  return out;
}

/** The script or module an interpreter runs: `-m pkg.db` → `db`, `/srv/api.js` → `api`; undefined when none. */
export function scriptOf(args: readonly string[]): string | undefined {
  for (let i = 1; i < args.length; i++) {
    const a = args[i]!;
    if (a === '-m' && args[i + 1]) return args[i + 1]!.split('.').pop();
    if (a === '-c' || a === '-e' || a === '--eval') return undefined;
    if (a.startsWith('-')) continue;
    const file = a.split('/').pop()!;
    return file.replace(/\.[a-z0-9]+$/i, '');
  }
  return undefined;
}

/**
 * The names of `owner` whose canonical port (the registry's, else the
 * scheme's) is `port`, in candidateNames' order. Empty for a process none
 * of whose names lands on its port.
 */
export function processNames(owner: Pick<SocketOwner, 'unit' | 'exe' | 'comm' | 'args'>, port: number, registry: Registry): string[] {
  const out: string[] = [];
  for (const name of candidateNames(owner)) {
    let canonical: number | null;
    try {
      canonical = registry.lookup(name).port;
    } catch {
      continue; // not a name the scheme can read
    }
    if (canonical === port) out.push(name);
  }
  return out;
}
