import { Resolver } from 'node:dns/promises';
import { utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { dig } from './helpers/dig.js';
import { startDaemon, tempDir, writeRegistry } from './helpers/daemon.js';
import { startUnbound, type Unbound } from './helpers/unbound.js';
import { buildQuery, frame, rawUdp, tcpExchange } from './helpers/dns-wire.js';

const Z = 'cluster-1.example.com';
const REGISTRY = `
zones: [${Z}]
ttl: 45
hosts:
  api.${Z}: [10.0.0.5, "fd00::5"]
services:
  cat: {}
  caterpillar: {}
  legacy: { port: 4242 }
  user: { id: 1, versions: [1, 2] }
  acme: { id: 100, version: 101 }
  splashpage: { block: 7000 }
`;

let daemon: Daemon;
let unbound: Unbound;
let server: { host: string; port: number };

function resolver(): Resolver {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  r.setServers([`${server.host}:${server.port}`]);
  return r;
}

beforeAll(async () => {
  // The real DNS for the parent zone: knows the hosts that carry services.
  unbound = await startUnbound({
    zones: ['example.com'],
    localData: [`db.${Z}. 300 IN A 10.0.0.9`, 'www.example.com. 300 IN A 192.0.2.80'],
  });
  const dir = tempDir();
  const hostsFile = join(dir, 'hosts');
  writeFileSync(hostsFile, `127.0.0.1 localhost\n10.1.2.3 web.${Z}\n`);
  daemon = await startDaemon({ registry: writeRegistry(REGISTRY), upstreams: [`127.0.0.1:${unbound.port}`] }, { hostsFile });
  server = daemon.addresses.dns;
});

afterAll(async () => {
  await daemon?.close(100);
  await unbound?.stop();
});

describe('localhost zone (RFC 6761), zero configuration', () => {
  it('answers SRV api.localhost with the canonical port and loopback additionals (dig)', async () => {
    const r = await dig(server, ['SRV', 'api.localhost']);
    expect(r.status).toBe('NOERROR');
    expect(r.flags).toContain('aa');
    expect(r.answer).toHaveLength(1);
    expect(r.answer[0]!.slice(3)).toEqual(['SRV', '0', '0', '12082', 'api.localhost.']);
    const extra = r.additional.map((l) => `${l[3]} ${l[4]}`);
    expect(extra).toContain('A 127.0.0.1');
    expect(extra).toContain('AAAA ::1');
  });

  it('answers A and AAAA for any name under localhost (c-ares)', async () => {
    await expect(resolver().resolve4('anything.localhost')).resolves.toEqual(['127.0.0.1']);
    await expect(resolver().resolve6('deep.name.localhost')).resolves.toEqual(['::1']);
  });
});

describe('configured zone', () => {
  it('answers RFC 2782 SRV names with the scheme port and target (c-ares)', async () => {
    const srv = await resolver().resolveSrv(`_api._tcp.${Z}`);
    expect(srv).toEqual([{ name: `api.${Z}`, port: 12082, priority: 0, weight: 0 }]);
    const udp = await resolver().resolveSrv(`_db._udp.east.${Z}`);
    expect(udp).toEqual([{ name: `db.east.${Z}`, port: 14688, priority: 0, weight: 0 }]);
  });

  it('puts the target addresses from the registry hosts map in the additional section', async () => {
    const r = await dig(server, ['SRV', `api.${Z}`]);
    expect(r.answer[0]!.slice(3)).toEqual(['SRV', '0', '0', '12082', `api.${Z}.`]);
    expect(r.answer[0]![1]).toBe('45');
    expect(r.additional.map((l) => `${l[3]} ${l[4]}`).sort()).toEqual(['A 10.0.0.5', 'AAAA fd00::5']);
  });

  it('answers A/AAAA from the hosts map, then /etc/hosts, then upstream', async () => {
    await expect(resolver().resolve4(`api.${Z}`)).resolves.toEqual(['10.0.0.5']);
    await expect(resolver().resolve6(`api.${Z}`)).resolves.toEqual(['fd00::5']);
    await expect(resolver().resolve4(`web.${Z}`)).resolves.toEqual(['10.1.2.3']);
    await expect(resolver().resolve4(`db.${Z}`)).resolves.toEqual(['10.0.0.9']);
  });

  it('turns an upstream NXDOMAIN for an in-zone host into NODATA, so its SRV is not denied', async () => {
    const r = await dig(server, ['A', `nohost.${Z}`]);
    expect(r.status).toBe('NOERROR');
    expect(r.answer).toHaveLength(0);
    expect(r.authority[0]![3]).toBe('SOA');
  });

  it('uses registry pins, blocks and versions', async () => {
    const port = async (name: string) => (await resolver().resolveSrv(name))[0]!.port;
    expect(await port(`legacy.${Z}`)).toBe(4242);
    expect(await port(`splashpage-psql.${Z}`)).toBe(7009);
    expect(await port(`_splashpage-api._tcp.${Z}`)).toBe(7001);
    expect(await port(`user.${Z}`)).toBe(8102);
    expect(await port(`v1.user.${Z}`)).toBe(8101);
    expect(await port(`v2.user.east.${Z}`)).toBe(8102);
  });

  it('answers NXDOMAIN for a version the registry does not list, and for vN of a service without versions', async () => {
    for (const name of [`v11.user.${Z}`, `v0.user.${Z}`, `v01.user.${Z}`, `v2.api.${Z}`]) {
      const r = await dig(server, ['SRV', name]);
      expect(r.status, name).toBe('NXDOMAIN');
      expect(r.authority[0]![3], name).toBe('SOA');
    }
  });

  it('answers NXDOMAIN for a versioned port that is not a port (8100101)', async () => {
    const r = await dig(server, ['SRV', `acme.${Z}`]);
    expect(r.status).toBe('NXDOMAIN');
    expect(r.authority[0]![3]).toBe('SOA');
  });

  it('answers TXT with port, scheme, prefix and a collision warning', async () => {
    // One TXT record of key=value strings, as DNS-SD does (RFC 6763 §6).
    const records = await resolver().resolveTxt(`caterpillar.${Z}`);
    expect(records).toHaveLength(1);
    const txt = records[0]!;
    expect(txt).toEqual(expect.arrayContaining(['port=13661', 'scheme=base32', 'prefix=cat']));
    expect(txt.some((t) => t.startsWith('collision=') && t.includes('cat'))).toBe(true);
    const plain = (await resolver().resolveTxt(`dog.${Z}`)).flat();
    expect(plain.some((t) => t.startsWith('collision='))).toBe(false);
  });

  it('answers the apex and empty non-terminals with NODATA and the SOA, never NXDOMAIN', async () => {
    for (const name of [Z, `_tcp.${Z}`, `_udp.east.${Z}`]) {
      const r = await dig(server, ['A', name]);
      expect(r.status, name).toBe('NOERROR');
      expect(r.answer, name).toHaveLength(0);
      expect(r.authority[0]!.slice(0, 4), name).toEqual([`${Z}.`, r.authority[0]![1], 'IN', 'SOA']);
    }
    const soa = await dig(server, ['SOA', Z]);
    expect(soa.answer[0]![3]).toBe('SOA');
  });

  it('answers NXDOMAIN with the SOA for names that cannot exist', async () => {
    for (const name of [`_foo.${Z}`, `_api._sctp.${Z}`, `_api._tcp._tcp.${Z}`]) {
      const r = await dig(server, ['SRV', name]);
      expect(r.status, name).toBe('NXDOMAIN');
      expect(r.authority[0]![3], name).toBe('SOA');
    }
  });

  it('gives ANY the RFC 8482 minimal answer: one RRset', async () => {
    const r = await dig(server, ['ANY', `api.${Z}`]);
    expect(r.status).toBe('NOERROR');
    expect(new Set(r.answer.map((l) => l[3]))).toEqual(new Set(['SRV']));
  });

  it('matches names case-insensitively and echoes the question as asked (0x20)', async () => {
    const name = 'ApI.ClUsTeR-1.ExAmPlE.CoM';
    const reply = await rawUdp(server, buildQuery({ id: 0x1234, name, type: 33 }));
    expect(reply.readUInt16BE(0)).toBe(0x1234);
    expect(reply.subarray(12, 12 + name.length + 2).toString('latin1')).toContain('ClUsTeR');
    expect(reply.readUInt16BE(6)).toBe(1); // one answer
  });
});

describe('transports', () => {
  it('answers over TCP (dig +tcp)', async () => {
    const r = await dig(server, ['+tcp', 'SRV', `_api._tcp.${Z}`]);
    expect(r.answer[0]!.slice(3)).toEqual(['SRV', '0', '0', '12082', `api.${Z}.`]);
  });

  it('answers several pipelined queries on one TCP connection', async () => {
    const names = ['api.localhost', 'db.localhost', 'cat.localhost', 'dog.localhost', 'bee.localhost'];
    const frames = names.map((n, i) => frame(buildQuery({ id: 100 + i, name: n, type: 33 })));
    const replies = await tcpExchange(server, Buffer.concat(frames), names.length);
    const byId = new Map(replies.map((r) => [r.readUInt16BE(0), r]));
    expect([...byId.keys()].sort()).toEqual([100, 101, 102, 103, 104]);
    for (const r of replies) expect(r.readUInt16BE(6)).toBe(1);
  });

  it('serves IPv6 listen addresses', async () => {
    const d6 = await startDaemon({ dns: '[::1]:0', grpc: '[::1]:0', http: '[::1]:0' });
    try {
      const r = await dig(d6.addresses.dns, ['SRV', 'api.localhost']);
      expect(r.answer[0]![6]).toBe('12082');
    } finally {
      await d6.close(100);
    }
  });
});

describe('EDNS and truncation', () => {
  it('echoes EDNS with our 1232-byte buffer and answers FORMERR for two questions', async () => {
    const r = await dig(server, ['+bufsize=4096', 'SRV', 'api.localhost']);
    expect(r.raw).toMatch(/udp: 1232/);
    const q = buildQuery({ id: 7, name: 'api.localhost', type: 33 });
    q.writeUInt16BE(2, 4);
    const reply = await rawUdp(server, q);
    expect(reply[3]! & 0xf).toBe(1); // FORMERR
  });
});

describe('/etc/hosts edits', () => {
  it('reach in-zone addresses that are already answered from the encoded-answer map', async () => {
    // Regression: the map was invalidated only from EtcHosts.lookup(), which a hit never calls.
    let t = Date.now();
    const dir = tempDir();
    const hostsFile = join(dir, 'hosts');
    writeFileSync(hostsFile, `10.1.2.3 web.${Z}\n`);
    const d = await startDaemon({ zones: [Z] }, { hostsFile, now: () => t });
    try {
      const ask = async () => (await dig(d.addresses.dns, ['A', `web.${Z}`])).answer.map((l) => l[4]);
      expect(await ask()).toEqual(['10.1.2.3']);
      expect(await ask()).toEqual(['10.1.2.3']); // now a hit
      writeFileSync(hostsFile, `10.9.9.9 web.${Z}\n`);
      utimesSync(hostsFile, new Date(), new Date(Date.now() + 60_000)); // a distinct mtime, whatever the clock's grain
      t += 6000; // past the 5 s re-check interval
      expect(await ask()).toEqual(['10.9.9.9']);
    } finally {
      await d.close(0);
    }
  });
});
