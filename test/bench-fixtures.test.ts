import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BENCH_TTL,
  BENCH_ZONE,
  COLD_NAMES,
  FWD_ZONE,
  GRPC_NAME,
  SRV_NAMES,
  benchRegistry,
  canonicalSrv,
  coldSet,
  dnsmasqConfig,
  queryFile,
  rssQueries,
  srvQueries,
  srvRecords,
  unboundConfig,
} from '../bench/fixtures.js';
import { findTool } from '../bench/servers.js';
import { parseRegistry } from '../src/registry/load.js';
import { base32Port } from '../src/scheme/base32.js';

const dir = mkdtempSync(join(tmpdir(), 'canonport-bench-fixtures-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A Debian tool the test needs; fails (never skips) naming the package. */
function tool(name: string, pkg: string): string {
  const path = findTool(name);
  if (!path) throw new Error(`${name} is not installed: apt-get install -y ${pkg}`);
  return path;
}

describe('bench fixtures: the same answers for every server', () => {
  it('gives _svcNNNN._tcp.<zone> the canonical SRV answer canonport serves', () => {
    const recs = srvRecords(BENCH_ZONE);
    expect(recs).toHaveLength(SRV_NAMES);
    expect(new Set(recs.map((r) => r.name)).size).toBe(SRV_NAMES);
    expect(recs[0]).toEqual({ name: '_svc0000._tcp.bench.test', priority: 0, weight: 0, port: base32Port('svc0000'), target: 'svc0000.bench.test.' });
    expect(recs[1999]!.name).toBe('_svc1999._tcp.bench.test');
    expect(canonicalSrv('api', FWD_ZONE)).toMatchObject({ port: 12082, target: 'api.fwd.test.' });
  });

  it('writes dnsperf query files as "name TYPE" lines', () => {
    const text = queryFile(srvQueries(srvRecords(BENCH_ZONE, 2)));
    expect(text).toBe('_svc0000._tcp.bench.test SRV\n_svc0001._tcp.bench.test SRV\n');
    const rss = rssQueries(3);
    expect(queryFile(rss)).toBe('n0000000.rss.test A\nn0000001.rss.test A\nn0000002.rss.test A\n');
  });

  it('mixes the cold set: distinct names, 1/2 A that exist, 1/4 SRV, 1/4 absent', () => {
    const cold = coldSet();
    expect(cold.queries).toHaveLength(COLD_NAMES);
    expect(new Set(cold.queries.map((q) => q.name)).size).toBe(COLD_NAMES);
    expect(cold.a).toHaveLength(COLD_NAMES / 2);
    expect(cold.srv).toHaveLength(COLD_NAMES / 4);
    const present = new Set([...cold.a.map((a) => a.name), ...cold.srv.map((s) => s.name)]);
    expect(cold.queries.filter((q) => !present.has(q.name))).toHaveLength(COLD_NAMES / 4);
    expect(cold.queries.slice(0, 4).map((q) => `${q.name} ${q.type}`)).toEqual([
      'h00000.cold.test A',
      'h00001.cold.test A',
      '_s00002._tcp.cold.test SRV',
      'm00003.cold.test A',
    ]);
  });

  it('generates an unbound config that unbound-checkconf accepts, with every record as local-data', () => {
    const checkconf = tool('unbound-checkconf', 'unbound');
    const srv = srvRecords(BENCH_ZONE);
    const cold = coldSet(8);
    const text = unboundConfig({
      port: 15353,
      directory: dir,
      zones: [
        { zone: BENCH_ZONE, srv },
        { zone: 'cold.test', srv: cold.srv, a: cold.a },
      ],
    });
    for (const line of ['do-daemonize: no', 'username: ""', 'chroot: ""', 'num-threads: 1', 'interface: 127.0.0.1@15353', 'local-zone: "bench.test." static']) {
      expect(text).toContain(`  ${line}\n`);
    }
    expect(text).toContain(`local-data: "_svc0042._tcp.bench.test. ${BENCH_TTL} IN SRV 0 0 ${base32Port('svc0042')} svc0042.bench.test."`);
    expect(text).toContain(`local-data: "h00000.cold.test. ${BENCH_TTL} IN A 10.0.0.0"`);
    expect(text.match(/local-data:/g)).toHaveLength(SRV_NAMES + cold.srv.length + cold.a.length);
    const file = join(dir, 'unbound.conf');
    writeFileSync(file, text);
    const r = spawnSync(checkconf, [file], { encoding: 'utf8' });
    expect(r.stderr + r.stdout).toContain('no errors');
    expect(r.status).toBe(0);
  });

  it('generates dnsmasq configs that dnsmasq --test accepts (local SRV records, and a forwarder)', () => {
    const dnsmasq = tool('dnsmasq', 'dnsmasq');
    const auth = dnsmasqConfig({ port: 15354, pidFile: join(dir, 'd.pid'), srv: srvRecords(BENCH_ZONE, 3), localZones: [BENCH_ZONE] });
    expect(auth.split('\n')).toEqual(
      expect.arrayContaining([
        'port=15354',
        'listen-address=127.0.0.1',
        'bind-interfaces',
        'no-resolv',
        'no-hosts',
        `local-ttl=${BENCH_TTL}`,
        'local=/bench.test/',
        `srv-host=_svc0002._tcp.bench.test,svc0002.bench.test,${base32Port('svc0002')},0,0`,
      ]),
    );
    expect(auth).not.toContain('server=');
    const fwd = dnsmasqConfig({ port: 15355, pidFile: join(dir, 'f.pid'), upstream: { host: '127.0.0.1', port: 15353 } });
    expect(fwd).toContain('server=127.0.0.1#15353\n');
    expect(fwd).not.toContain('srv-host=');
    for (const [name, text] of [
      ['auth', auth],
      ['fwd', fwd],
    ] as const) {
      const file = join(dir, `dnsmasq-${name}.conf`);
      writeFileSync(file, text);
      const r = spawnSync(dnsmasq, ['--test', `--conf-file=${file}`], { encoding: 'utf8' });
      expect(`${r.stderr}${r.stdout}`).toMatch(/syntax check OK/);
      expect(r.status).toBe(0);
    }
  });

  it('writes a registry file canonport accepts: bench zone, same TTL, an address for the gRPC name', () => {
    const reg = parseRegistry(benchRegistry(), 'bench-registry.yaml');
    expect(reg.zones).toEqual([BENCH_ZONE]);
    expect(reg.ttl).toBe(BENCH_TTL);
    expect(reg.hosts.get(GRPC_NAME)).toEqual(['127.0.0.1']);
  });
});
