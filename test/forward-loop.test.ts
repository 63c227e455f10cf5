import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { dig } from './helpers/dig.js';
import { freeDnsPort, startDaemon } from './helpers/daemon.js';
import { requireTool } from './helpers/tools.js';
import { freePort, waitForDns } from './helpers/unbound.js';

describe('a forwarding loop through a stub resolver', () => {
  it('is detected and broken at once instead of waiting for timeouts (real dnsmasq routing the zone back)', async () => {
    const bin = requireTool('dnsmasq', 'dnsmasq');
    const ours = await freeDnsPort();
    const stub = await freePort();
    // The trap: the host's stub routes the zone to canonport, and canonport's upstream is that stub.
    const dnsmasq = spawn(
      bin,
      ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', `--port=${stub}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--cache-size=0', `--server=/svc.example/127.0.0.1#${ours}`, '--user=root'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    dnsmasq.stderr!.on('data', (b) => (stderr += b));
    const daemon = await startDaemon({ dns: `127.0.0.1:${ours}`, zones: ['svc.example'], upstreams: [`127.0.0.1:${stub}`], upstreamTimeoutMs: 2000 });
    try {
      await waitForDns(stub, () => (dnsmasq.exitCode !== null ? `dnsmasq exited: ${stderr}` : null));
      const t0 = performance.now();
      const r = await dig(daemon.addresses.dns, ['A', 'db.svc.example']);
      const ms = performance.now() - t0;
      expect(r.status).toBe('NOERROR'); // NODATA: the name holds SRV and TXT here, just no address
      expect(r.answer).toHaveLength(0);
      expect(ms).toBeLessThan(2000); // no upstream timeout was waited out
      const loops = (await daemon.metrics.dnsDropped.get()).values.find((v) => v.labels.reason === 'forward_loop');
      expect(loops?.value).toBeGreaterThanOrEqual(1);
    } finally {
      await daemon.close(100);
      dnsmasq.kill('SIGTERM');
    }
  });
});
