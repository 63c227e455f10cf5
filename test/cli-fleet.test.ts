import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetFinding, FleetHost, FleetService } from '../src/fleet/fleet.js';
import { HostInventory } from '../src/inventory/inventory.js';
import { Metrics } from '../src/metrics/metrics.js';
import { parseRegistry } from '../src/registry/load.js';
import { versionedPort } from '../src/scheme/index.js';
import { closedPort, runCli, startFleetWorld, startInventoryDaemon, stopDaemon, VERSIONED_IDS, type FleetWorld } from './inventory-support.js';

let world: FleetWorld;
let dir: string;

beforeAll(async () => {
  world = await startFleetWorld();
  dir = await mkdtemp(join(tmpdir(), 'canonport-cli-fleet-'));
});

afterAll(async () => {
  await world?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('canonport fleet (real process, two real daemons, one unreachable host)', () => {
  it('prints service × version × hosts, mixed versions and the unreachable host; a view exits 0', async () => {
    const r = await runCli(['fleet', world.a, world.b, world.closed]);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(''); // 3 hosts, not a terminal: no progress
    expect(r.stdout).toMatch(/^SERVICE\s+VERSION\s+PORTS\s+HOSTS\s+ON$/m);
    expect(r.stdout).toMatch(new RegExp(`^user\\s+2\\s+${world.userPort}\\s+2/2\\s+${esc(world.a)}, ${esc(world.b)}$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${esc(world.httpName)}\\s+1\\.4\\.1\\s+${world.httpPort}\\s+1/2\\s+${esc(world.b)}$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^\\s+1\\.4\\.2\\s+${world.httpPort}\\s+1/2\\s+${esc(world.a)}$`, 'm'));
    expect(r.stdout).toContain(`  ${world.httpName}: 1.4.1 on 1 host, 1.4.2 on 1 host`);
    expect(r.stdout).toContain('2/3 hosts answered; unreachable (1):');
    expect(r.stdout).toContain(`  ${world.closed}  cannot reach the canonport daemon at ${world.closed}`);
  });

  it('--json carries hosts, services and findings', async () => {
    const r = await runCli(['fleet', '--json', world.a, world.b, world.closed, '--expect', `${world.httpName}=1.4.2`]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { hosts: FleetHost[]; services: FleetService[]; findings: FleetFinding[] };
    expect(out.hosts.map((h) => [h.host, h.reachable])).toEqual([
      [world.a, true],
      [world.b, true],
      [world.closed, false],
    ]);
    expect(out.hosts[0]!.inventory!.host).toBe('host-a');
    expect(out.services.find((s) => s.service === world.httpName)!.mixed).toBe(true);
    expect(out.findings.map((f) => [f.kind, f.host])).toEqual([
      ['mismatch', world.b],
      ['unreachable', world.closed],
    ]);
  });

  it('--expect: 0 when every reachable host runs it, 1 on another version, a missing service, or an unreachable host', async () => {
    expect((await runCli(['fleet', world.a, world.b, '--expect', 'user=2'])).code).toBe(0);
    const down = await runCli(['fleet', world.a, world.b, world.closed, '--expect', 'user=2']);
    expect(down.code).toBe(1);
    const other = await runCli(['fleet', world.a, world.b, '--expect', `${world.httpName}=1.4.2`]);
    expect(other.code).toBe(1);
    expect(other.stdout).toContain('expectations not met (1):');
    expect(other.stdout).toContain(`${world.b}: ${world.httpName} runs 1.4.1 on port ${world.httpPort}, expected 1.4.2`);
    const missing = await runCli(['fleet', world.a, world.b, '--expect', 'ghost=1', '--expect', 'user=2']);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain(`${world.a}: ghost is not listening`);
    expect(missing.stdout).toContain(`${world.b}: ghost is not listening`);
  });

  it('--strict: 1 on mixed versions or an unreachable host', async () => {
    expect((await runCli(['fleet', world.a, '--strict'])).code).toBe(0);
    expect((await runCli(['fleet', world.a, world.b, '--strict'])).code).toBe(1); // mixed
    expect((await runCli(['fleet', world.a, world.closed, '--strict'])).code).toBe(1); // unreachable
  });

  it('--strict: 1 on a known version beside an unknown one (1.4.2 and ?), shown as mixed', async () => {
    // A third daemon whose registry names the services alike but does not ask the HTTP one for a version.
    const userId = VERSIONED_IDS.find((id) => versionedPort(id, 2) === world.userPort)!;
    const registry = parseRegistry(`services:\n  user: { id: ${userId}, version: 2 }\n  ${world.httpName}: {}\n`, 'no-probe.yaml');
    const inventory = new HostInventory({ state: () => ({ registry, zones: [] }), metrics: new Metrics({ defaultMetrics: false }), hostname: 'host-c', probeTimeoutMs: 1000 });
    const c = await startInventoryDaemon(inventory);
    try {
      const view = await runCli(['fleet', world.a, c.address]);
      expect(view.code).toBe(0);
      expect(view.stdout).toMatch(new RegExp(`^${esc(world.httpName)}\\s+\\?\\s+${world.httpPort}\\s+1/2\\s+${esc(c.address)}$`, 'm'));
      expect(view.stdout).toContain(`mixed versions:\n  ${world.httpName}: unknown version on 1 host, 1.4.2 on 1 host`);
      // The mix is all that differs: no other finding.
      const json = JSON.parse((await runCli(['fleet', '--json', world.a, c.address])).stdout) as { services: FleetService[]; findings: FleetFinding[] };
      expect(json.findings).toEqual([]);
      expect(json.services.filter((s) => s.mixed).map((s) => s.service)).toEqual([world.httpName]);
      expect((await runCli(['fleet', world.a, c.address, '--strict'])).code).toBe(1);
      // Without the unknown version --strict passes.
      expect((await runCli(['fleet', world.a, '--strict'])).code).toBe(0);
    } finally {
      stopDaemon(c.server);
    }
  });

  it('--hosts-file, and progress on stderr for more than 20 hosts', async () => {
    const closed: string[] = [];
    for (let i = 0; i < 20; i++) closed.push(`127.0.0.1:${await closedPort()}`);
    const file = join(dir, 'hosts');
    await writeFile(file, `# the fleet\n${world.a}\n${world.b}  # the other one\n${closed.join('\n')}\n`);
    const r = await runCli(['fleet', '--hosts-file', file, '--timeout', '5000']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('2/22 hosts answered; unreachable (20):');
    const progress = r.stderr.trim().split('\n');
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.every((l) => /^asked \d+\/22 hosts…$/.test(l))).toBe(true);
    expect(progress.at(-1)).toBe('asked 22/22 hosts…');
  });

  it('usage errors exit 2', async () => {
    for (const args of [
      ['fleet'],
      ['fleet', world.a, '--expect', 'user'],
      ['fleet', world.a, '--expect', '=2'],
      ['fleet', 'http://web-1'],
      ['fleet', world.a, '--timeout', '0'],
      ['fleet', world.a, '--concurrency', 'many'],
      ['fleet', '--hosts-file', join(dir, 'no-such-file')],
      ['fleet', '--cluster', 'etcd://127.0.0.1:2379', world.a],
    ]) {
      const r = await runCli(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).not.toBe('');
    }
  });
});

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

describe('the fleet world itself', () => {
  it('closes while someone else holds connections to its servers (a concurrent inventory probe)', async () => {
    const { connect } = await import('node:net');
    const other = await startFleetWorld();
    // What another test file's inventory does: connect to each claimed port, and wait for an answer.
    const held = [other.userPort, other.httpPort].map(
      (port) => new Promise<void>((resolve) => connect({ host: '127.0.0.1', port }).on('connect', () => resolve()).on('error', () => resolve())),
    );
    await Promise.all(held);
    const started = Date.now();
    await other.close();
    expect(Date.now() - started).toBeLessThan(5_000); // close() must not wait on the prober (it used to, past the hook timeout)
  });
});
