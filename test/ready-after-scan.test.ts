import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir, writeRegistry } from './helpers/daemon.js';
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

describe('the start', () => {
  it("reports ready only after the inventory's first scan (its version probe logged before the ready line)", async () => {
    const proc = tempDir('canonport-ready-scan-proc-');
    mkdirSync(join(proc, 'net'), { recursive: true });
    const header = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
    const tail = ' 00000000:00000000 00:00000000 00000000     0        0 1060 1 00000000e9b27b22 100 0 0 10 0';
    // 127.0.0.1:12082 (api) listening, as a little-endian kernel prints it.
    writeFileSync(join(proc, 'net', 'tcp'), `${header}\n   0: 0100007F:2F32 00000000:0000 0A${tail}\n`);
    writeFileSync(join(proc, 'net', 'tcp6'), `${header}\n`);
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
