import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { SocketOwners } from '../src/inventory/socket-owner.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';

/**
 * Issue 24 (warm from the first query): the inventory's first scan is start-up work, done before /readyz says
 * ready, not during the first second of queries. Seen from outside, in the order of the daemon's own log: the
 * first scan's version probe of a listener (in a /proc of the test's; nothing answers on the port in the test's
 * network, so the probe fails and says so at debug level) comes before the `ready` line. Before, the scan began
 * as the daemon reported ready, and its probe was logged after it.
 */
let serve: ServeProcess | undefined;
afterEach(async () => {
  await serve?.stop();
  serve = undefined;
});

/** A /proc of the test's: 127.0.0.1:12082 (api) listening with inode 1060, as a little-endian kernel prints it. */
function procWithListener(prefix: string): string {
  const proc = tempDir(prefix);
  mkdirSync(join(proc, 'net'), { recursive: true });
  const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
  const tail = ' 00000000:00000000 00:00000000 00000000     0        0 1060 1 00000000e9b27b22 100 0 0 10 0';
  writeFileSync(join(proc, 'net', 'tcp'), `${header}\n   0: 0100007F:2F32 00000000:0000 0A${tail}\n`);
  writeFileSync(join(proc, 'net', 'tcp6'), `${header}\n`);
  return proc;
}

describe('the start', () => {
  it("reports ready only after the inventory's first scan (its version probe logged before the ready line)", async () => {
    const proc = procWithListener('canonport-ready-scan-proc-');
    const registry = writeRegistry('inventory:\n  versionPath: /version\n  probeTimeoutMs: 500\n');
    const started = await startServe(['--log-level', 'debug', '--proc-root', proc, '--registry', registry]);
    serve = started;
    const probe = started.logs.findIndex((l) => l.msg === 'version probe failed' && l.port === 12082);
    const ready = started.logs.findIndex((l) => l.event === 'ready');
    expect(ready, 'the ready line').toBeGreaterThanOrEqual(0);
    expect(probe, `the first scan's probe of 127.0.0.1:12082 before the ready line; log: ${JSON.stringify(started.logs.map((l) => l.msg))}`).toBeGreaterThanOrEqual(0);
    expect(probe).toBeLessThan(ready);
  });
});

describe('the start, in process', () => {
  it("waits for the walk that finds the first scan's sockets' owners too: at ready, a listener's process is already known", async () => {
    // No registry entry claims 12082 here (base32 "api"): a process may name it.
    const proc = procWithListener('canonport-ready-owner-proc-');
    // Its process has the lowest pid, so the walk (newest pid first) reads it last, after 200 others of 10 descriptors.
    for (let pid = 1000; pid < 1200; pid++) {
      mkdirSync(join(proc, String(pid), 'fd'), { recursive: true });
      for (let fd = 0; fd < 10; fd++) symlinkSync(`pipe:[${pid * 100 + fd}]`, join(proc, String(pid), 'fd', String(fd)));
    }
    mkdirSync(join(proc, '999', 'fd'), { recursive: true });
    symlinkSync('socket:[1060]', join(proc, '999', 'fd', '3'));
    writeFileSync(join(proc, '999', 'comm'), 'apigw\n');
    writeFileSync(join(proc, '999', 'cmdline'), 'apigw\0');
    writeFileSync(join(proc, '999', 'cgroup'), '0::/system.slice/apigw.service\n');
    const daemon = await startDaemon({ procRoot: proc }, { inventory: true });
    try {
      // Daemon.start resolved as it reported ready: the walk for 1060's owner had to be done by then.
      const owners = (daemon as unknown as { inventory: { owners: SocketOwners } }).inventory.owners;
      expect(owners.lastWalk, 'a finished walk at ready').toMatchObject({ found: 1, truncated: false });
      expect(owners.peek(['1060']).get('1060')).toMatchObject({ pid: 999, comm: 'apigw', unit: 'apigw' });
    } finally {
      await daemon.close();
    }
  });
});
