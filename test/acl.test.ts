import { afterEach, describe, expect, it } from 'vitest';
import { NetworkSet, parseCidr } from '../src/config/cidr.js';
import type { Daemon } from '../src/daemon/daemon.js';
import { dig } from './helpers/dig.js';
import { startDaemon } from './helpers/daemon.js';

// Loopback is trusted in production; these daemons do not trust it, so the
// allow list can be exercised from distinct loopback source addresses.
const daemons: Daemon[] = [];
afterEach(async () => {
  while (daemons.length) await daemons.pop()!.close(100);
});

async function start(canonicalClients?: string): Promise<Daemon> {
  const d = await startDaemon({ zones: ['svc.example'], allow: ['127.0.0.2/32'], upstreams: ['127.0.0.1:9'], upstreamTimeoutMs: 100, canonicalClients }, { trustLoopback: false });
  daemons.push(d);
  return d;
}

describe('who may use the daemon', () => {
  it('answers canonical names to anyone by default, but forwards only for allowed networks', async () => {
    const d = await start();
    const outsider = await dig(d.addresses.dns, ['-b', '127.0.0.3', 'SRV', 'api.svc.example']);
    expect(outsider.answer[0]![6]).toBe('12082');
    const refused = await dig(d.addresses.dns, ['-b', '127.0.0.3', 'A', 'www.example.org']);
    expect(refused.status).toBe('REFUSED');
    const allowed = await dig(d.addresses.dns, ['-b', '127.0.0.2', 'A', 'www.example.org']);
    expect(allowed.status).toBe('SERVFAIL'); // allowed, forwarded, and the (dead) upstream failed
  });

  it('refuses canonical names too with --canonical-clients allowed', async () => {
    const d = await start('allowed');
    expect((await dig(d.addresses.dns, ['-b', '127.0.0.3', 'SRV', 'api.svc.example'])).status).toBe('REFUSED');
    expect((await dig(d.addresses.dns, ['-b', '127.0.0.2', 'SRV', 'api.svc.example'])).answer[0]![6]).toBe('12082');
  });

  it('rejects an unknown --canonical-clients value', async () => {
    await expect(start('everyone')).rejects.toMatchObject({ code: 'CP_CONFIG_INVALID' });
  });
});

describe('NetworkSet', () => {
  it('matches IPv4, IPv6 and IPv4-mapped IPv6 clients (as a dual-stack socket reports them), any case', () => {
    const set = new NetworkSet([parseCidr('10.0.0.0/8', '--allow'), parseCidr('fd00::/8', '--allow')]);
    expect(['10.1.2.3', '::ffff:10.1.2.3', '::FFFF:10.1.2.3', '::ffff:a01:203', 'fd00::1'].map((a) => set.has(a))).toEqual([true, true, true, true, true]);
    expect(['11.1.2.3', '::ffff:11.1.2.3', 'fe80::1', 'not-an-address', ''].map((a) => set.has(a))).toEqual([false, false, false, false, false]);
  });
});
