import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { mixCase } from '../src/dns/forwarder.js';
import { encodeName } from './helpers/dns-wire.js';
import { dig } from './helpers/dig.js';
import { startDaemon } from './helpers/daemon.js';
import { freePort } from './helpers/ports.js';
import { requireTool } from './helpers/tools.js';
import { waitForDns } from './helpers/unbound.js';

describe('a forwarding loop through a stub resolver', () => {
  it('is detected and broken at once instead of waiting for timeouts (real dnsmasq routing the zone back)', async () => {
    const bin = requireTool('dnsmasq', 'dnsmasq');
    const ours = await freePort();
    const stub = await freePort();
    // The trap: the host's stub routes the zone to canonport, and canonport's upstream is that stub.
    const dnsmasq = spawn(
      bin,
      ['--keep-in-foreground', '--no-resolv', '--no-hosts', '--conf-file=/dev/null', '--pid-file=', `--port=${stub}`, '--listen-address=127.0.0.1', '--bind-interfaces', '--cache-size=0', `--server=/svc.example/127.0.0.1#${ours}`, '--user=root'],
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

describe('the 0x20 mark on forwarded questions', () => {
  const label = fc.stringMatching(/^[a-zA-Z0-9-]{1,12}$/);
  const question = (name: string) => Buffer.concat([encodeName(name), Buffer.from([0, 1, 0, 1])]);

  it('keeps the name (case aside), type and class, and marks only with a spelling no honest client sends', () => {
    fc.assert(
      fc.property(fc.array(label, { minLength: 0, maxLength: 5 }), (labels) => {
        const name = labels.join('.');
        const q = question(name);
        const { question: out, marked } = mixCase(q);
        expect(out.toString('latin1').toLowerCase()).toBe(q.toString('latin1').toLowerCase());
        expect(out.subarray(-4)).toEqual(q.subarray(-4));
        const letters = name.replace(/[^a-z]/gi, '');
        const spelled = out.toString('latin1', 0, out.length - 4).replace(/[^a-z]/gi, '');
        if (letters.length < 2) expect(marked).toBe(false);
        if (marked) {
          expect(out.equals(q)).toBe(false); // never the requester's own spelling
          expect(spelled).not.toBe(spelled.toLowerCase()); // never all lowercase
          expect(spelled).not.toBe(spelled.toUpperCase()); // never all uppercase
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('chooses the case of each letter at random: every position upper about half the time, almost no two draws alike', () => {
    const name = 'abcdefghij.klmnopqrst';
    const draws = Array.from({ length: 2000 }, () => mixCase(question(name)).question.toString('latin1', 0, name.length + 2));
    for (let pos = 1; pos < name.length + 1; pos++) {
      if (pos === 11) continue; // the second label's length octet
      const upper = draws.filter((d) => d.charCodeAt(pos) < 97).length;
      expect(upper).toBeGreaterThan(850);
      expect(upper).toBeLessThan(1150);
    }
    expect(new Set(draws).size).toBeGreaterThan(1990); // 20 letters: 2^20 spellings
  });

  it('marks nearly every name with enough letters, whatever the requester sent', () => {
    for (const name of ['api.cluster-1.example.com', 'API.CLUSTER-1.EXAMPLE.COM', 'Ab.Cd']) {
      const marks = Array.from({ length: 200 }, () => mixCase(question(name)).marked).filter(Boolean).length;
      expect(marks).toBe(200);
    }
  });
});
