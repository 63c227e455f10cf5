/**
 * End to end with the real daemon (`Daemon`, as `canonport serve` runs it):
 * its Inventory over gRPC, its /metrics series, and `canonport fleet` as a
 * process across two daemons plus an unreachable host.
 */
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { formatHostPort } from '../src/config/address.js';
import { checkConsistency } from '../src/fleet/consistency.js';
import { collectFleet } from '../src/fleet/fleet.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { bindCanonical, CANDIDATES, closedPort, closeServer, runCli, bindVersioned, versionServer, type Bound } from './inventory-support.js';

let http: Bound<HttpServer>;
let userPort = 0;
const open: (Server | HttpServer)[] = [];
const daemons: Daemon[] = [];
let a = '';
let b = '';
let closed = '';

beforeAll(async () => {
  http = await bindCanonical(CANDIDATES.http, () => versionServer({ '/version': { body: '3.0.0\n' }, '/version-old': { body: '{"version":"2.9.9"}', type: 'application/json' } }));
  open.push(...http.servers);
  const user = await bindVersioned();
  open.push(...user.servers);
  const id = user.id;
  userPort = user.port;
  const registry = (path: string) => `services:\n  user: { id: ${id}, version: 2 }\n  ${http.name}: { versionPath: ${path} }\n`;
  daemons.push(await startDaemon({ registry: writeRegistry(registry('/version')) }, { inventory: true }));
  daemons.push(await startDaemon({ registry: writeRegistry(registry('/version-old')), grpc: '[::1]:0' }, { inventory: true }));
  a = formatHostPort(daemons[0]!.addresses.grpc);
  b = formatHostPort(daemons[1]!.addresses.grpc);
  closed = `127.0.0.1:${await closedPort()}`;
});

afterAll(async () => {
  await Promise.all(daemons.map((d) => d.close(0)));
  await Promise.all(open.map(closeServer));
});

describe('the real daemon serves the inventory', () => {
  it('over gRPC Inventory, to collectFleet', async () => {
    const report = await collectFleet([a, b, closed], { timeoutMs: 5000 });
    expect(report.hosts.map((h) => h.reachable)).toEqual([true, true, false]);
    const svc = report.services.find((s) => s.service === http.name)!;
    expect(svc.versions.map((v) => [v.version, v.hosts])).toEqual([
      ['2.9.9', [b]],
      ['3.0.0', [a]],
    ]);
    expect(svc.mixed).toBe(true);
    expect(report.services.find((s) => s.service === 'user')!.versions).toEqual([{ version: '2', ports: [userPort], hosts: [a, b] }]);
  });

  it('as canonport_service_listening on /metrics', async () => {
    const { host, port } = daemons[0]!.addresses.http;
    await daemons[0]!.ctx.inventory.snapshot();
    const text = await (await fetch(`http://${host}:${port}/metrics`)).text();
    expect(text).toContain(`canonport_service_listening{service="user",port="${userPort}",version="2"} 1`);
    expect(text).toContain(`canonport_service_listening{service="${http.name}",port="${http.port}",version="3.0.0"} 1`);
    expect(text).toMatch(/^canonport_inventory_probes_total\{result="ok"\} [1-9]\d*$/m);
  });

  it('to `canonport fleet` run as a process', async () => {
    const view = await runCli(['fleet', a, b, closed]);
    expect(view.code).toBe(0);
    expect(view.stdout).toMatch(new RegExp(`^user\\s+2\\s+${userPort}\\s+2/2\\s+`, 'm'));
    expect(view.stdout).toContain(`  ${http.name}: 2.9.9 on 1 host, 3.0.0 on 1 host`);
    expect(view.stdout).toContain('2/3 hosts answered; unreachable (1):');
    expect((await runCli(['fleet', a, b, '--expect', 'user=2'])).code).toBe(0);
    const mismatch = await runCli(['fleet', a, b, '--expect', `${http.name}=3.0.0`]);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stdout).toContain(`${b}: ${http.name} runs 2.9.9 on port ${http.port}, expected 3.0.0`);
  });
});

describe('registries that disagree, host by host (the daemons\' Inventory carries their registry digest)', () => {
  const more: Daemon[] = [];
  let listener: Server | undefined;
  afterAll(async () => {
    await Promise.all(more.map((d) => d.close(0)));
    if (listener) await closeServer(listener);
  });

  it('names the host whose registry differs from the majority, and the port two registries name differently', async () => {
    const { createServer } = await import('node:net');
    const port = await closedPort();
    listener = createServer();
    await new Promise<void>((resolve) => listener!.listen(port, '127.0.0.1', resolve));
    const x = `services:\n  alpha: { port: ${port} }\n`;
    const y = `services:\n  beta: { port: ${port} }\n`;
    for (const text of [x, x, y]) more.push(await startDaemon({ registry: writeRegistry(text) }));
    const [h1, h2, h3] = more.map((d) => formatHostPort(d.addresses.grpc));
    const digests = more.map((d) => d.ctx.state().registry.digest);
    expect(digests[0]).toBe(digests[1]);
    expect(digests[2]).not.toBe(digests[0]);

    const report = await collectFleet([h1!, h2!, h3!], { timeoutMs: 5000 });
    expect(report.hosts.map((h) => h.inventory?.registryDigest)).toEqual(digests);
    expect(checkConsistency(report).map((f) => [f.kind, f.host, f.found])).toEqual([
      ['registry', h3, [digests[2]]],
      ['port-names', '', ['alpha', 'beta']],
    ]);

    const view = await runCli(['fleet', h1!, h2!, h3!]);
    expect(view.code).toBe(0);
    expect(view.stdout).toContain(`registries that differ from the majority (${digests[0]!.slice(0, 12)} on 2 of 3 hosts):`);
    expect(view.stdout).toMatch(new RegExp(`^  ${h3!.replace(/[.[\]]/g, '\\$&')}\\s+${digests[2]!.slice(0, 12)}$`, 'm'));
    expect(view.stdout).toContain(`ports named as different services:\n  ${port}: alpha on ${h1}, ${h2}; beta on ${h3}`);
    expect((await runCli(['fleet', h1!, h2!, h3!, '--strict'])).code).toBe(1);
    // Two hosts that agree: nothing to say, --strict passes.
    const agree = await runCli(['fleet', h1!, h2!, '--strict']);
    expect(agree.stdout).not.toContain('registries');
    expect(agree.stdout).not.toContain('ports named');
    expect(agree.code).toBe(0);
  });
});
