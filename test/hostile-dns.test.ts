import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_CHARACTER_STRING } from '../src/dns/message.js';
import { base32Port } from '../src/scheme/index.js';
import { tempDir, writeRegistry } from './helpers/daemon.js';
import { createHostNet, type Host, type HostNet } from './helpers/netns.js';
import { SYSTEM_PYTHON } from './helpers/python.js';
import { metric, scrape, startServe, type ServeProcess } from './helpers/serve-process.js';
import { requireTool } from './helpers/tools.js';

/**
 * Issue 21, findings 6 and 11, on the wire, asked from other hosts of the
 * namespace lab with dig and dnspython (helpers/dns-probe.py): the daemon
 * is a real `canonport serve` answering DNS on the bridge address, one
 * host is in `--allow`, the other is not.
 */

const ZONE = 'wire.example';
const PROBE = fileURLToPath(new URL('./helpers/dns-probe.py', import.meta.url));
/** Ten names of 63 octets that share their first three characters, so their port: each collision= lists nine others (≈ 600 octets). */
const LONG = Array.from({ length: 10 }, (_, i) => `abc${String(i).padStart(2, '0')}${'x'.repeat(58)}`);
/** A name with 40 IPv6 hosts: the 40-host service. */
const MANY = Array.from({ length: 40 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);

let net: HostNet;
let allowed: Host;
let outsider: Host;
let s: ServeProcess;

interface Probe {
  query_len: number;
  reply_len: number;
  tc: boolean;
  rcode: number;
  answers: { type: string; text: string; strings?: string[] }[];
  error?: string;
}

async function probe(from: Host, name: string, type: string, transport: 'udp' | 'tcp', payload?: number): Promise<Probe> {
  const r = await from.exec(SYSTEM_PYTHON, [PROBE, net.gateway, String(s.dns.port), name, type, transport, ...(payload ? [String(payload)] : [])]);
  if (r.stdout.trim() === '') throw new Error(`dns-probe.py failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Probe;
}

beforeAll(async () => {
  requireTool('dig', 'dnsutils');
  const check = await import('node:child_process').then((cp) => cp.spawnSync(SYSTEM_PYTHON, ['-c', 'import dns.message'], { encoding: 'utf8' }));
  if (check.status !== 0) throw new Error(`${SYSTEM_PYTHON} cannot import dns (dnspython): apt-get install -y python3-dnspython (.ci/run installs it)`);
  net = await createHostNet({ hosts: 2 });
  [allowed, outsider] = net.hosts as [Host, Host];
  const registry = writeRegistry(
    [`zones: [${ZONE}]`, 'hosts:', `  many.${ZONE}: [${MANY.join(', ')}]`, 'services:', ...LONG.map((n) => `  ${n}:`)].join('\n') + '\n',
    tempDir('canonport-hostile-dns-'),
  );
  s = await startServe(['--registry', registry, '--allow', allowed.address], { listen: ['--dns', `${net.gateway}:0`, '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'] });
}, 60_000);

afterAll(async () => {
  await s?.stop();
  net?.cleanup();
});

describe('finding 6: TXT strings longer than 255 octets', () => {
  const name = `${LONG[0]}.${ZONE}`;
  const collision = `collision=shares port ${base32Port('abc')} with ${LONG.slice(1).join(',')}`;

  it('dnspython reads the record (UDP and TCP): the long string comes as strings of at most 255 octets that join to it', async () => {
    expect(collision.length).toBeGreaterThan(500);
    for (const transport of ['udp', 'tcp'] as const) {
      const r = await probe(allowed, name, 'TXT', transport, 1232);
      expect(r.error).toBeUndefined();
      expect(r.tc).toBe(false);
      const txt = r.answers.find((a) => a.type === 'TXT')!;
      expect(txt.strings!.every((x) => Buffer.byteLength(x) <= MAX_CHARACTER_STRING)).toBe(true);
      expect(txt.strings!.slice(0, 3)).toEqual([`port=${base32Port('abc')}`, 'scheme=base32', 'prefix=abc']);
      expect(txt.strings!.slice(3).join('')).toBe(collision);
    }
  });

  it('dig reads it without a warning, the same strings', async () => {
    const r = await allowed.exec('dig', ['@' + net.gateway, '-p', String(s.dns.port), 'TXT', name, '+tcp', '+short']);
    const all = await allowed.exec('dig', ['@' + net.gateway, '-p', String(s.dns.port), 'TXT', name]);
    expect(all.stdout).not.toMatch(/malformed|WARNING|FORMERR/i);
    expect(all.stdout).toContain('status: NOERROR');
    const strings = [...r.stdout.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
    expect(strings.slice(3).join('')).toBe(collision);
  });
});

describe('finding 11: amplification', () => {
  it('a client outside --allow gets at most 3 times its query over UDP (TC), the whole answer over TCP; an allowed client gets it over UDP', async () => {
    const name = `many.${ZONE}`;
    const udp = await probe(outsider, name, 'AAAA', 'udp', 4096);
    expect(udp.tc).toBe(true);
    expect(udp.answers).toEqual([]);
    expect(udp.reply_len / udp.query_len).toBeLessThanOrEqual(3);
    const tcp = await probe(outsider, name, 'AAAA', 'tcp', 4096);
    expect(tcp.answers.map((a) => a.text)).toEqual(MANY);
    const inside = await probe(allowed, name, 'AAAA', 'udp', 4096);
    expect(inside.tc).toBe(false);
    expect(inside.answers).toHaveLength(40);
    expect(inside.reply_len / inside.query_len).toBeGreaterThan(20); // what the bound keeps from outsiders
    // Small answers still go out over UDP to anyone, under the bound.
    const srv = await probe(outsider, `api.${ZONE}`, 'SRV', 'udp', 1232);
    expect(srv.tc).toBe(false);
    expect(srv.answers.map((a) => a.text)).toEqual([`0 0 12082 api.${ZONE}.`]);
    expect(srv.reply_len / srv.query_len).toBeLessThanOrEqual(3);
    const m = await scrape(s.http);
    expect(metric(m, 'canonport_dns_truncated_total', { reason: 'amplification' })).toBe(1);
  });

  it('dig from the outsider gets the whole answer (it retries over TCP on TC, as resolvers do)', async () => {
    const r = await outsider.exec('dig', ['@' + net.gateway, '-p', String(s.dns.port), 'AAAA', `many.${ZONE}`, '+short']);
    expect(r.stdout.trim().split('\n').filter((l) => !l.startsWith(';;'))).toEqual(MANY);
  });
});
