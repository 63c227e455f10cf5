import { readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * What the tests' namespaces allow (test/sandbox.mjs: `npm test` and
 * `npm run test:fast` run vitest in a user, network and mount namespace of
 * its own, where the user is root). Tests that build network namespaces,
 * bind port 53 or run a process as another user check here first, so that
 * one run outside the sandbox by a user who is not root fails saying what
 * to do, instead of with iproute2's or the kernel's words.
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));

/** How to run a file in the sandbox, for failure messages. */
export const SANDBOX_HOWTO = 'run it as `npm test -- <file>` (test/sandbox.mjs runs vitest in a user namespace where this is allowed; CI runs as root)';

/** True inside test/sandbox.mjs's namespaces. */
export function inSandbox(): boolean {
  return process.env.CANONPORT_TEST_SANDBOX === 'inside';
}

/** Fails unless this process may create network namespaces, veths and bridges, and bind ports below 1024: root, or root of the sandbox's user namespace. */
export function requireNetAdmin(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root in its network namespace: ${SANDBOX_HOWTO}`);
}

/** True when `id` is mapped in this process's user namespace (`/proc/self/uid_map` or `gid_map`); always, outside one. */
function mapped(file: string, id: number): boolean {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return true; // not Linux, or no /proc: no user namespaces either
  }
  return text
    .trim()
    .split('\n')
    .some((line) => {
      const [inside, , count] = line.trim().split(/\s+/).map(Number);
      return id >= inside! && id < inside! + count!;
    });
}

/**
 * Fails unless this process can run a command as `uid`:`gid` with setpriv:
 * root, and both ids existing in its user namespace. In the sandbox they
 * exist when the user has subordinate ids (/etc/subuid and /etc/subgid,
 * mapped with newuidmap): then `setpriv --reuid` runs the command as a
 * different, unprivileged user of the host (a subordinate id), holding only
 * the capabilities it is given. That user runs code from this checkout
 * (dist/, node_modules/), so every folder above it must let others in.
 */
export function requireUserSwitch(uid: number, gid = uid): void {
  requireNetAdmin(`running a process as uid ${uid}`);
  if (!mapped('/proc/self/uid_map', uid) || !mapped('/proc/self/gid_map', gid)) {
    throw new Error(
      `uid ${uid} or gid ${gid} does not exist in the tests' user namespace (/proc/self/uid_map: ${readFileSync('/proc/self/uid_map', 'utf8').trim().replace(/\s+/g, ' ')}): ` +
        'the user running the tests needs subordinate ids; once, as root: apt-get install -y uidmap && usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER',
    );
  }
  for (let dir = REPO; ; dir = dirname(dir)) {
    if ((statSync(dir).mode & 0o005) !== 0o005) {
      throw new Error(`${dir} is closed to other users (mode ${(statSync(dir).mode & 0o777).toString(8)}), so a process running as uid ${uid} cannot load this checkout's code: chmod o+rx it, or clone elsewhere`);
    }
    if (dirname(dir) === dir) break;
  }
}
