import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { metricSum } from './helpers/serve-process.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { dig } from './helpers/dig.js';
import { startDaemon } from './helpers/daemon.js';
import { startUnbound, type Unbound } from './helpers/unbound.js';
import { buildQuery, rawUdp } from './helpers/dns-wire.js';

const BIG = Array.from({ length: 120 }, (_, i) => `big.example.org. 300 IN A 10.9.${i >> 8}.${i & 255}`);

let unbound: Unbound;
let daemon: Daemon;
let silent: dgram.Socket;
let clock = 1_000_000;

function resolver(): Resolver {
  const r = new Resolver({ timeout: 3000, tries: 1 });
  r.setServers([`127.0.0.1:${daemon.addresses.dns.port}`]);
  return r;
}

beforeAll(async () => {
  unbound = await startUnbound({
    zones: ['example.org'],
    localData: [
      'example.org. 3600 IN SOA ns.example.org. hostmaster.example.org. 1 3600 600 86400 120',
      'www.example.org. 300 IN A 192.0.2.80',
      'ttl.example.org. 300 IN A 192.0.2.81',
      'mixed.example.org. 300 IN A 192.0.2.82',
      'do.example.org. 300 IN A 192.0.2.83',
      'long.example.org. 200000 IN A 192.0.2.84',
      ...BIG,
    ],
  });
  // An upstream that never answers, listed first: every query must move on to unbound.
  silent = dgram.createSocket('udp4');
  await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
  daemon = await startDaemon(
    { upstreams: [`127.0.0.1:${silent.address().port}`, `127.0.0.1:${unbound.port}`], upstreamTimeoutMs: 300 },
    { now: () => clock },
  );
});

afterAll(async () => {
  await daemon?.close(100);
  silent?.close();
  await unbound?.stop();
});

describe('forwarding to a real upstream (unbound)', () => {
  it('forwards names outside the zones, past an upstream that does not answer, within a bounded delay', async () => {
    const t0 = performance.now();
    await expect(resolver().resolve4('www.example.org')).resolves.toEqual(['192.0.2.80']);
    expect(performance.now() - t0).toBeLessThan(300 + 1500);
    expect(await metricSum(daemon.metrics.upstreamQueries, { outcome: 'timeout' })).toBe(1);
  });

  it('tries an upstream that timed out last until its backoff ends', async () => {
    const t0 = performance.now();
    await expect(resolver().resolve4('mixed.example.org')).resolves.toEqual(['192.0.2.82']);
    expect(performance.now() - t0).toBeLessThan(300);
    expect(await metricSum(daemon.metrics.upstreamQueries, { outcome: 'timeout' })).toBe(1);
  });

  it('relays NXDOMAIN with the SOA and caches it (RFC 2308)', async () => {
    const before = await metricSum(daemon.metrics.cacheLookups, { result: 'hit' });
    const a = await dig(daemon.addresses.dns, ['A', 'nope.example.org']);
    expect(a.status).toBe('NXDOMAIN');
    expect(a.authority[0]![3]).toBe('SOA');
    const b = await dig(daemon.addresses.dns, ['A', 'nope.example.org']);
    expect(b.status).toBe('NXDOMAIN');
    expect(await metricSum(daemon.metrics.cacheLookups, { result: 'hit' })).toBe(before + 1);
  });

  it('relays NODATA', async () => {
    const r = await dig(daemon.addresses.dns, ['AAAA', 'www.example.org']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toHaveLength(0);
    expect(r.authority[0]![3]).toBe('SOA');
  });

  it('counts TTLs down from the cache and asks upstream again when they expire', async () => {
    const first = await dig(daemon.addresses.dns, ['A', 'ttl.example.org']);
    expect(Number(first.answer[0]![1])).toBe(300);
    const asked = await metricSum(daemon.metrics.upstreamQueries, { outcome: 'ok' });
    clock += 100_000;
    const cached = await dig(daemon.addresses.dns, ['A', 'ttl.example.org']);
    expect(Number(cached.answer[0]![1])).toBe(200);
    expect(await metricSum(daemon.metrics.upstreamQueries, { outcome: 'ok' })).toBe(asked);
    clock += 201_000;
    const fresh = await dig(daemon.addresses.dns, ['A', 'ttl.example.org']);
    expect(Number(fresh.answer[0]![1])).toBe(300);
    expect(await metricSum(daemon.metrics.upstreamQueries, { outcome: 'ok' })).toBe(asked + 1);
  });

  it('keys the cache on the DO bit', async () => {
    const asked = await metricSum(daemon.metrics.upstreamQueries, { outcome: 'ok' });
    await dig(daemon.addresses.dns, ['A', 'do.example.org']);
    await dig(daemon.addresses.dns, ['+dnssec', 'A', 'do.example.org']);
    await dig(daemon.addresses.dns, ['A', 'do.example.org']);
    expect(await metricSum(daemon.metrics.upstreamQueries, { outcome: 'ok' })).toBe(asked + 2);
  });

  it('echoes the forwarded question in the client case', async () => {
    const name = 'WwW.ExAmPlE.OrG';
    const reply = await rawUdp(daemon.addresses.dns, buildQuery({ id: 0x4242, name, type: 1 }));
    expect(reply.readUInt16BE(0)).toBe(0x4242);
    expect(reply.subarray(13, 13 + 3).toString('latin1')).toBe('WwW');
    expect(reply.readUInt16BE(6)).toBe(1);
  });

  it('retries a truncated upstream answer over TCP, sets TC for a small UDP client, and returns it whole over TCP', async () => {
    const noEdns = await dig(daemon.addresses.dns, ['+noedns', '+ignore', 'A', 'big.example.org']);
    expect(noEdns.flags).toContain('tc');
    expect(noEdns.answer).toHaveLength(0);
    expect(await metricSum(daemon.metrics.upstreamQueries, { outcome: 'ok_tcp' })).toBeGreaterThanOrEqual(1);
    const edns = await dig(daemon.addresses.dns, ['+bufsize=1232', '+ignore', 'A', 'big.example.org']);
    expect(edns.flags).toContain('tc');
    const tcp = await dig(daemon.addresses.dns, ['+tcp', 'A', 'big.example.org']);
    expect(tcp.flags).not.toContain('tc');
    expect(tcp.answer).toHaveLength(BIG.length);
  });

  it('caps TTLs it caches at the configured maximum', async () => {
    const capped = await startDaemon({ upstreams: [`127.0.0.1:${unbound.port}`] }, { tune: (c) => ({ ...c, cache: { ...c.cache, maxTtl: 100 } }) });
    try {
      const r = await dig(capped.addresses.dns, ['A', 'long.example.org']); // unbound says 200000
      expect(r.answer[0]![4]).toBe('192.0.2.84');
      expect(Number(r.answer[0]![1])).toBe(100);
      const again = await dig(capped.addresses.dns, ['A', 'long.example.org']);
      expect(Number(again.answer[0]![1])).toBeLessThanOrEqual(100);
    } finally {
      await capped.close(100);
    }
  });

  it('answers SERVFAIL when no upstream can answer', async () => {
    const lonely = await startDaemon({ upstreams: [`127.0.0.1:${silent.address().port}`], upstreamTimeoutMs: 200 });
    try {
      const r = await dig(lonely.addresses.dns, ['A', 'www.example.org']);
      expect(r.status).toBe('SERVFAIL');
    } finally {
      await lonely.close(100);
    }
  });
});
