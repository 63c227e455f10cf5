import { describe, expect, it } from 'vitest';
import { withoutOwnSockets } from '../src/daemon/daemon.js';
import type { InventoryListener } from '../src/inventory/types.js';

/**
 * What the daemon hands its cluster publisher: the host's inventory without
 * the daemon's own DNS, gRPC and HTTP sockets (published, they would be
 * services named by their ports' base32 prefixes: 13656 → "cao").
 * cluster-daemon-answers.test.ts checks the same end to end (DNS-SD lists
 * only the services that run).
 */

const l = (port: number, address: string): InventoryListener => ({ port, address, family: address.includes(':') ? 'tcp6' : 'tcp', services: ['x'], version: '', versionSource: '', scheme: 'base32' });
const snap = (...listeners: InventoryListener[]) => ({ host: 'h', collectedAtMs: 1, listeners });

describe('withoutOwnSockets', () => {
  it('drops the daemon\'s own sockets by port and address, keeps everything else', () => {
    const own = [
      { host: '10.0.1.12', port: 53 },
      { host: '10.0.1.12', port: 13655 },
      { host: '0.0.0.0', port: 13656 },
    ];
    const out = withoutOwnSockets(snap(l(53, '10.0.1.12'), l(13655, '10.0.1.12'), l(13655, '10.0.1.99'), l(13656, '0.0.0.0'), l(13656, '::'), l(12082, '0.0.0.0'), l(13655, '::ffff:10.0.1.12')), own);
    expect(out.listeners.map((x) => `${x.address}:${x.port}`)).toEqual(['10.0.1.99:13655', '0.0.0.0:12082']);
  });

  it('leaves the snapshot alone before the daemon has bound anything', () => {
    const s = snap(l(13655, '0.0.0.0'));
    expect(withoutOwnSockets(s, [])).toBe(s);
  });
});
