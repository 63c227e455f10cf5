import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatHostPort } from '../src/config/address.js';
import { DEFAULTS } from '../src/config/config.js';
import { Daemon } from '../src/daemon/daemon.js';
import { silentLogger } from '../src/log.js';
import { freePort } from './helpers/ports.js';

/**
 * deploy/dnsmasq/canonport.conf: dnsmasq's own syntax check, then dnsmasq
 * actually routing the zone to a real canonport daemon with DNS-rebind
 * protection on (the snippet's rebind-domain-ok is what lets the zone's
 * private addresses through).
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SNIPPET = join(ROOT, 'deploy/dnsmasq/canonport.conf');
const REGISTRY = join(ROOT, 'deploy/registry.example.yaml');

function dnsmasqBinary(): string {
  for (const p of ['/usr/sbin/dnsmasq', '/usr/bin/dnsmasq']) {
    if (!spawnSync(p, ['--version']).error) return p;
  }
  throw new Error('dnsmasq is not installed: apt-get install -y dnsmasq (Debian package "dnsmasq")');
}

function dnsmasqTest(file: string): { status: number | null; out: string } {
  const r = spawnSync(dnsmasqBinary(), ['--test', `--conf-file=${file}`], { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}


describe('deploy/dnsmasq/canonport.conf', () => {
  let daemon: Daemon;
  let dir: string;
  const children: ChildProcess[] = [];

  beforeAll(async () => {
    daemon = await Daemon.start({
      flags: { dns: '127.0.0.1:0', grpc: '127.0.0.1:0', http: '127.0.0.1:0', registry: REGISTRY, upstreams: ['192.0.2.53'] },
      env: {},
      logger: silentLogger,
      watchRegistry: false,
      inventory: false,
    });
    dir = mkdtempSync(join(tmpdir(), 'canonport-dnsmasq-'));
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await daemon?.close(0);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The snippet pointed at the test daemon instead of 127.0.0.1#5300, run by a dnsmasq on a free port. */
  async function startDnsmasq(edit: (text: string) => string = (t) => t): Promise<Resolver> {
    const text = readFileSync(SNIPPET, 'utf8');
    const target = `127.0.0.1#${DEFAULTS.dns.split(':')[1]}`;
    expect(text, `the snippet forwards to the default DNS address ${DEFAULTS.dns}`).toContain(target);
    const conf = join(dir, `canonport-${children.length}.conf`);
    writeFileSync(conf, edit(text.replaceAll(target, `127.0.0.1#${daemon.addresses.dns.port}`)));
    const port = await freePort();
    const child = spawn(
      dnsmasqBinary(),
      [
        '--keep-in-foreground',
        `--conf-file=${conf}`,
        `--port=${port}`,
        '--listen-address=127.0.0.1',
        '--bind-interfaces',
        '--no-resolv',
        '--no-hosts',
        '--stop-dns-rebind',
        '--pid-file=',
        '--log-facility=-',
        '--cache-size=0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(child);
    const resolver = new Resolver({ timeout: 1000, tries: 1 });
    resolver.setServers([`127.0.0.1:${port}`]);
    // Bounded wait for dnsmasq to answer (a TXT lookup through it reaches the daemon).
    for (let i = 0; ; i++) {
      if (child.exitCode !== null) throw new Error(`dnsmasq exited with ${child.exitCode}`);
      const ok = await resolver.resolveTxt('api.cluster-1.example.com').then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (i >= 50) throw new Error('dnsmasq did not answer in 50 tries');
      await new Promise((r) => setTimeout(r, 100));
    }
    return resolver;
  }

  it('passes dnsmasq --test', () => {
    const r = dnsmasqTest(SNIPPET);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/syntax check OK/);
  });

  it('fails dnsmasq --test when broken (the check can fail)', () => {
    const broken = join(dir, 'broken.conf');
    writeFileSync(broken, readFileSync(SNIPPET, 'utf8').replace('#5300', '#notaport'));
    const r = dnsmasqTest(broken);
    expect(r.status).not.toBe(0);
    expect(r.out).toMatch(/bad port/);
  });

  it('routes the zone to canonport: SRV and the zone\'s private addresses come through dnsmasq', async () => {
    const resolver = await startDnsmasq();
    expect(await resolver.resolveSrv('api.cluster-1.example.com')).toEqual([{ name: 'api.cluster-1.example.com', port: 12082, priority: 0, weight: 0 }]);
    expect(await resolver.resolveSrv('_users._tcp.cluster-1.example.com')).toEqual([
      { name: 'users.cluster-1.example.com', port: 8102, priority: 0, weight: 0 },
    ]);
    expect((await resolver.resolve4('api.cluster-1.example.com')).sort()).toEqual(['10.0.1.11', '10.0.1.12']);
    expect(formatHostPort(daemon.addresses.dns)).toMatch(/^127\.0\.0\.1:\d+$/);
  });

  it('needs its rebind-domain-ok line: without it dnsmasq drops the private addresses', async () => {
    const resolver = await startDnsmasq((t) => t.replace(/^rebind-domain-ok=.*$/m, ''));
    const err = await resolver.resolve4('api.cluster-1.example.com').then(
      () => null,
      (e: NodeJS.ErrnoException) => e.code,
    );
    // dnsmasq 2.89 answers NOERROR with the addresses removed; older ones REFUSED.
    expect(err).toMatch(/^(ENODATA|EREFUSED)$/);
  });
});
