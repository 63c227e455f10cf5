import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { attributeProfile, attributionTable, causeOf, profilingLauncher, readProfile, type CpuProfile } from '../bench/tail-attribution.js';
import { REPO_ROOT } from '../bench/servers.js';

/**
 * Issue 24, "attribute the slow 1 %" (bench/tail-attribution.ts): a CPU
 * profile's stretches of main-thread work put down to their causes, and
 * the queries a paced client sent during each; and the launcher that runs
 * a checkout's daemon under the profiler, run for real.
 */

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const frame = (functionName: string, url = '') => ({ functionName, url });

describe('causeOf', () => {
  it('names a sample by the frames it holds: V8 states first, then the deepest canonport folder that says more', () => {
    expect(causeOf([frame('(idle)')])).toBe('idle');
    expect(causeOf([frame('(garbage collector)')])).toBe('garbage collection');
    expect(causeOf([frame('readlinkSync', 'node:fs'), frame('findInodes', 'file:///x/dist/inventory/socket-owner.js'), frame('walk', 'file:///x/dist/inventory/socket-owner.js')])).toBe(
      "inventory: sockets' owners walk (/proc/*/fd)",
    );
    expect(causeOf([frame('parse', 'file:///x/dist/inventory/procnet.js')])).toBe('inventory: scan (/proc/net, namespaces)');
    expect(causeOf([frame('encode', 'file:///x/node_modules/dns2/packet.js'), frame('handlePacket', 'file:///x/dist/dns/server.js')])).toBe('answer path');
    expect(causeOf([frame('x', 'file:///x/dist/cluster/view.js')])).toBe('cluster view and publisher');
    expect(causeOf([frame('x', 'file:///x/node_modules/@grpc/grpc-js/build/src/call.js')])).toBe('etcd client (gRPC)');
  });
});

describe('attributeProfile', () => {
  // root → idle, answer, owners' walk, GC; samples every 100 µs from t = 1,000,000 µs.
  const nodes: CpuProfile['nodes'] = [
    { id: 1, callFrame: frame('(root)'), children: [2, 3, 5, 6] },
    { id: 2, callFrame: frame('(idle)') },
    { id: 3, callFrame: frame('handlePacket', 'file:///x/dist/dns/server.js'), children: [4] },
    { id: 4, callFrame: frame('worker', 'file:///x/dist/inventory/socket-owner.js') },
    { id: 5, callFrame: frame('(garbage collector)') },
    { id: 6, callFrame: frame('(program)') },
  ];
  const I = 2;
  const A = 3;
  const W = 4;
  const G = 5;
  // Stretches: 5 answers (0.5 ms); 3 answers + 2 of the walk (the walk, 0.5 ms); 1 answer (0.1 ms: short);
  // 4 GC (0.4 ms); then, past the window's end, 6 of the walk.
  const samples = [I, A, A, A, A, A, I, A, W, A, W, A, I, A, I, G, G, G, G, I, I, W, W, W, W, W, W, I];
  const profile: CpuProfile = { nodes, startTime: 1_000_000, samples, timeDeltas: samples.map(() => 100) };

  it('puts each stretch of ≥ 0.2 ms down to its cause (a side cause with a quarter of its samples or more), and counts the paced queries it met', () => {
    const to = 1_000_000 + 100 * 20; // after the GC stretch and the idle sample that ends it, before the last walk
    const { causes, busyMs } = attributeProfile(profile, 1_000_000, to, 3000);
    const by = Object.fromEntries(causes.map((c) => [c.cause, c]));
    expect(Object.keys(by).sort()).toEqual(['answer path', 'garbage collection', "inventory: sockets' owners walk (/proc/*/fd)"]);
    // 0.5 ms at 3,000 q/s meets 1.5 queries; those still waiting past the 0.2 ms line: 3,000 × 0.3 ms.
    expect(by['answer path']).toMatchObject({ stretches: 1, queries: 2, overLine: 1 });
    expect(by['answer path']!.ms).toBeCloseTo(0.5, 6);
    expect(by["inventory: sockets' owners walk (/proc/*/fd)"]).toMatchObject({ stretches: 1, queries: 2 });
    expect(by['garbage collection']!.ms).toBeCloseTo(0.4, 6);
    // Every stretch of work in the window, the short one included: 0.5 + 0.5 + 0.1 + 0.4 ms.
    expect(busyMs).toBeCloseTo(1.5, 6);
    // A line below 0.2 ms: the short stretch (0.1 ms) holds queries past it too, without counting as a long stretch.
    const low = attributeProfile(profile, 1_000_000, to, 30_000, 0.05).causes.find((c) => c.cause === 'answer path')!;
    expect(low).toMatchObject({ stretches: 1, overLine: 15 }); // 30,000 q/s × (0.45 + 0.05) ms
    // The walk past the window's end is not counted.
    expect(attributeProfile(profile, 1_000_000, 1_000_000 + 100 * 28, 3000).causes.find((c) => c.cause.startsWith('inventory'))!.stretches).toBe(2);
  });

  it('prints each row with the shares of the answers over the p99 line', () => {
    const { causes, busyMs } = attributeProfile(profile, 1_000_000, 1_000_000 + 100 * 20, 3000);
    const text = attributionTable([
      { scenario: 'canonical', server: 'canonport', rate: 3000, answers: 400, p50Ms: 0.05, p99Ms: 0.3, p999Ms: 2, overP99: 4, windowMs: 2, busyMs, waitedForCpuMs: 1, causes },
    ]);
    expect(text).toContain('canonical, canonport, 3,000 q/s: 400 answers');
    expect(text).toMatch(/answer path\s+1\s+0\.5\s+0\.50\s+2\s+1\s+25 %/);
    expect(text).toContain('waited for a CPU 1 ms (≈ 3 queries)');
  });
});

describe('profilingLauncher', () => {
  it("runs this checkout's CLI under --cpu-prof with its own launcher's flags, and the profile it writes reads back", () => {
    const dir = mkdtempSync(join(tmpdir(), 'cp-tail-attr-'));
    dirs.push(dir);
    const l = profilingLauncher(REPO_ROOT, dir);
    const text = readFileSync(join(l.dir, 'bin', 'canonport.js'), 'utf8');
    const own = readFileSync(join(REPO_ROOT, 'bin', 'canonport.js'), 'utf8').split('\n')[0]!;
    expect(text.split('\n')[0]).toBe(`${own} --cpu-prof --cpu-prof-dir=${l.profiles} --cpu-prof-interval=100`);
    const out = execFileSync(join(l.dir, 'bin', 'canonport.js'), ['--version'], { encoding: 'utf8', timeout: 60_000 });
    expect(out).toMatch(/\d+\.\d+\.\d+/);
    const p = readProfile(l.profiles);
    expect(p.samples.length).toBeGreaterThan(0);
    // Its frames are this checkout's dist.
    expect(p.nodes.some((n) => n.callFrame.url.includes(`${REPO_ROOT.replace(/\/$/, '')}/dist/`))).toBe(true);
  });
});
