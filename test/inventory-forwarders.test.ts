import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatInventory } from '../src/cli/commands/inventory.js';
import { findForwarders, forwardCandidates, ForwarderIndex, markForwarded, parseDockerProxyArgs, type Forwarder } from '../src/inventory/forwarders.js';
import { reachableListeners } from '../src/inventory/reachable.js';
import type { InventoryListener } from '../src/inventory/types.js';
import { stopChild } from './helpers/child.js';
import { tempDir } from './helpers/temp.js';

/**
 * forwarders.ts (issue 26, "never the same service twice for one published
 * port"): docker-proxy's arguments as Docker writes them, real processes
 * named docker-proxy found under the real /proc, and a host port that
 * forwards to a published container listener left out of what is
 * published. The end-to-end case (a routed container published with -p,
 * seen from another host) is in test/cluster-containers.test.ts.
 */

const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) await stopChild(c);
});

describe('parseDockerProxyArgs', () => {
  it('reads both ends of docker-proxy\'s command line, as Docker 20–28 write it', () => {
    // Docker ≤ 27: the proxy binds the host port itself.
    expect(parseDockerProxyArgs(['/usr/bin/docker-proxy', '-proto', 'tcp', '-host-ip', '0.0.0.0', '-host-port', '12082', '-container-ip', '172.17.0.2', '-container-port', '12082'])).toEqual({
      protocol: 'tcp',
      hostAddress: '0.0.0.0',
      hostPort: 12082,
      containerAddress: '172.17.0.2',
      containerPort: 12082,
    });
    // Docker 28: the daemon binds and hands the socket over (-use-listen-fd, a flag without a value); IPv6; UDP.
    expect(parseDockerProxyArgs(['/usr/libexec/docker/docker-proxy', '-proto', 'udp', '-host-ip', '::', '-host-port', '15100', '-container-ip', 'fd00::2', '-container-port', '53', '-use-listen-fd'])).toEqual({
      protocol: 'udp',
      hostAddress: '::',
      hostPort: 15100,
      containerAddress: 'fd00::2',
      containerPort: 53,
    });
    // Go's other spellings: --name value and -name=value.
    expect(parseDockerProxyArgs(['docker-proxy', '--proto=tcp', '--host-port', '8080', '-container-ip=10.0.3.5', '-container-port=80'])).toMatchObject({ hostPort: 8080, containerAddress: '10.0.3.5', containerPort: 80, hostAddress: '0.0.0.0' });
  });

  it('refuses a command line missing an end, with a bad port or an unknown protocol', () => {
    expect(parseDockerProxyArgs(['docker-proxy', '-proto', 'tcp', '-host-port', '12082', '-container-port', '12082'])).toBeUndefined();
    expect(parseDockerProxyArgs(['docker-proxy', '-host-port', '70000', '-container-ip', '10.0.0.2', '-container-port', '1'])).toBeUndefined();
    expect(parseDockerProxyArgs(['docker-proxy', '-host-port', '12082', '-container-ip', '10.0.0.2', '-container-port', 'x'])).toBeUndefined();
    expect(parseDockerProxyArgs(['docker-proxy', '-proto', 'sctp', '-host-port', '12082', '-container-ip', '10.0.0.2', '-container-port', '12082'])).toBeUndefined();
    expect(parseDockerProxyArgs([])).toBeUndefined();
  });
});

/** Starts `file` (a script) with `args`, resolved once it runs (it prints "up"). */
async function run(file: string, args: string[]): Promise<ChildProcess> {
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (d) => String(d).includes('up') && resolve());
    child.once('exit', (code) => reject(new Error(`${file} exited (${code})`)));
  });
  return child;
}

describe('findForwarders', () => {
  it('finds a process the kernel names docker-proxy under the real /proc, and not another process with the same arguments', async () => {
    const dir = tempDir('cp-forwarders-');
    const script = `#!${process.execPath}\nconsole.log('up');\nsetInterval(() => undefined, 60_000);\n`;
    // A script's process is named after its file (comm): docker-proxy here, `imposter` there.
    for (const name of ['docker-proxy', 'imposter']) {
      writeFileSync(join(dir, name), script);
      chmodSync(join(dir, name), 0o755);
    }
    const args = (port: number) => ['-proto', 'tcp', '-host-ip', '0.0.0.0', '-host-port', String(port), '-container-ip', '10.9.8.7', '-container-port', String(port)];
    const proxy = await run(join(dir, 'docker-proxy'), args(12082));
    const imposter = await run(join(dir, 'imposter'), args(12083));
    const found = await findForwarders('/proc');
    const mine = found.filter((f) => f.pid === proxy.pid || f.pid === imposter.pid);
    expect(mine).toEqual([{ pid: proxy.pid, protocol: 'tcp', hostAddress: '0.0.0.0', hostPort: 12082, containerAddress: '10.9.8.7', containerPort: 12082 }]);
    // Gone, it is not found again.
    await stopChild(proxy);
    expect((await findForwarders('/proc')).filter((f) => f.pid === proxy.pid)).toEqual([]);
  });

  it('finds nothing under a /proc that cannot be listed', async () => {
    expect(await findForwarders(join(tempDir('cp-noproc-'), 'missing'))).toEqual([]);
  });
});

describe('ForwarderIndex', () => {
  it('looks at the processes only when the candidate doubles change, never when there is none', async () => {
    const f: Forwarder = { pid: 7, protocol: 'tcp', hostAddress: '0.0.0.0', hostPort: 12082, containerAddress: '10.0.0.2', containerPort: 12082 };
    let looks = 0;
    const index = new ForwarderIndex('/proc', async () => {
      looks++;
      return [f];
    });
    expect(await index.lookup([])).toEqual([]);
    expect(looks).toBe(0);
    const one = [{ port: 12082, protocol: 'tcp' as const, inodes: ['11', '12'] }];
    expect(await index.lookup(one)).toEqual([f]);
    // The same sockets, listed in another order: no new look.
    expect(await index.lookup([{ port: 12082, protocol: 'tcp', inodes: ['12', '11'] }])).toEqual([f]);
    expect(looks).toBe(1);
    // A new process on the port (new inodes): looked at again.
    await index.lookup([{ port: 12082, protocol: 'tcp', inodes: ['13'] }]);
    expect(looks).toBe(2);
    // The double went: nothing remembered, nothing read.
    expect(await index.lookup([])).toEqual([]);
    expect(looks).toBe(2);
  });
});

describe('which host sockets forward to a published container listener', () => {
  const ns = { label: '3f4e5a6b7c8d', addresses: ['172.17.0.2', '10.0.3.5'], published: '10.0.3.5' };
  const proxy = (to: string, port = 12082, protocol: 'tcp' | 'udp' = 'tcp'): Forwarder => ({ pid: 9, protocol, hostAddress: '0.0.0.0', hostPort: port, containerAddress: to, containerPort: port });
  const sockets = [
    { port: 12082, address: '0.0.0.0', family: 'tcp' as const, inodes: ['1'] },
    { port: 12082, address: '::', family: 'tcp6' as const, inodes: ['2'] },
    { port: 12082, address: '0.0.0.0', family: 'udp' as const, inodes: ['3'] },
    { port: 12083, address: '0.0.0.0', family: 'tcp' as const, inodes: ['4'] },
    { port: 12082, address: '0.0.0.0', family: 'tcp' as const, inodes: ['5'], namespace: ns },
  ];

  it('looks only at host sockets on the port and protocol of a published container listener', () => {
    expect(forwardCandidates(sockets)).toEqual([
      { port: 12082, protocol: 'tcp', inodes: ['1'] },
      { port: 12082, protocol: 'tcp', inodes: ['2'] },
    ]);
    // A container not published (a bridge-private address) makes no double.
    expect(forwardCandidates(sockets.map((s) => (s.namespace ? { ...s, namespace: { ...ns, published: undefined } } : s)))).toEqual([]);
  });

  it('marks those a docker-proxy sends to the container, at its published address or another of its addresses; not another port, protocol or container', () => {
    const marked = (f: Forwarder) => markForwarded(sockets, [f]).filter((s) => s.forwardedTo).map((s) => `${s.port}/${s.family}`);
    const to = { address: '10.0.3.5', port: 12082, namespace: '3f4e5a6b7c8d' };
    expect(markForwarded(sockets, [proxy('10.0.3.5')])[0]!.forwardedTo).toEqual(to);
    expect(marked(proxy('10.0.3.5'))).toEqual(['12082/tcp', '12082/tcp6']);
    // Docker's bridge address of a container also on a routed network: the same container, published at the routed one.
    expect(markForwarded(sockets, [proxy('172.17.0.2')])[0]!.forwardedTo).toEqual(to);
    expect(marked(proxy('::ffff:10.0.3.5'))).toEqual(['12082/tcp', '12082/tcp6']);
    expect(marked(proxy('10.0.3.6'))).toEqual([]);
    expect(marked({ ...proxy('10.0.3.5'), containerPort: 80 })).toEqual([]);
    expect(marked(proxy('10.0.3.5', 12082, 'udp'))).toEqual([]);
    expect(marked(proxy('10.0.3.5', 12083))).toEqual([]);
  });
});

describe('a forwarding host port', () => {
  const base = { address: '0.0.0.0', family: 'tcp' as const, services: ['web'], version: '', versionSource: '' as const, scheme: 'base32' };
  const container: InventoryListener = { ...base, port: 31517, namespace: { label: '3f4e5a6b7c8d', addresses: ['10.0.3.5'], published: '10.0.3.5' } };
  const forwarder: InventoryListener = { ...base, port: 31517, forwardedTo: { address: '10.0.3.5', port: 31517, namespace: '3f4e5a6b7c8d' } };
  const plain: InventoryListener = { ...base, port: 12082, services: ['api'] };

  it('is not published (the container listener it forwards to is, once); a plain host listener still is', () => {
    expect(reachableListeners([container, forwarder, plain])).toEqual([container, plain]);
  });

  it('is listed by `canonport inventory`, saying where it forwards and that it is published there', () => {
    const text = formatInventory({ host: 'h', collectedAtMs: 0, listeners: [container, forwarder, plain] });
    const row = text.split('\n').find((l) => l.startsWith('31517 ') && l.includes('forwards to'));
    expect(row).toMatch(/0\.0\.0\.0; forwards to 10\.0\.3\.5:31517 in 3f4e5a6b7c8d, published there instead/);
  });
});
