import { describe, expect, it } from 'vitest';

describe('the package entry point (import from "canonport")', () => {
  it('exposes the schemes, the registry, the client, the resolver, Daemon and the error catalogue', async () => {
    // By package name, as a user imports it: resolves through package.json "exports" to dist/.
    const api = await import('canonport');
    expect(api.base32Port('api')).toBe(12082);
    expect(api.decodePort(12082)).toBe('api');
    expect(api.versionedNumber(4, 300)).toBe(84300); // the seed's ProductService v300…
    expect(api.versionedPort(4, 300)).toBeNull(); // …which is not a port (> 65535)
    expect(api.versionedPort(1, 2)).toBe(8102);
    expect(api.parseRegistry('services:\n  legacy: { port: 4242 }\n').lookup('legacy').port).toBe(4242);
    for (const f of ['registerCanonResolver', 'createCanonportClient', 'resolveWithoutDaemon', 'checkRegistry', 'startOrder', 'loadRegistryFile']) {
      expect(typeof (api as Record<string, unknown>)[f], f).toBe('function');
    }
    expect(api.CANON_SCHEME).toBe('canon');
    expect(api.ErrorCodes.BAD_NAME).toBe('CP_BAD_NAME');
    expect(typeof api.Daemon.start).toBe('function');
  });
});
