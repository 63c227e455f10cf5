import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCanonportClient } from '../src/grpc/canonport-client.js';
import { FakeUpstream } from '../test/helpers/fake-upstream.js';
import { T, tcpAsk } from '../test/helpers/dns-wire.js';
import { canonportFrom, curlStatus, flood, grpcFlood, openDescriptors, probeDns } from '../test/helpers/hostile.js';
import { createHostNet, type Host, type HostNet } from '../test/helpers/netns.js';
import { SYSTEM_PYTHON } from '../test/helpers/python.js';
import { REPO, rssOf, startServe, type ServeProcess } from '../test/helpers/serve-process.js';
import { parseRepoCases, runRepoCases, type Figures } from './repos.js';

/**
 * `npm run bench:hostile`: issue 21's attacks, run against real `canonport
 * serve` processes in the namespace lab (root, iproute2, curl, dig,
 * python3-dnspython), printing per case the figures the closing note asks
 * for: RSS, the longest wait for a DNS answer (the event loop's stall, as
 * a client sees it), failed queries, and what the attacker got.
 *
 *   npm run bench:hostile -- [--repo DIR]… [--only CASE[,CASE…]]
 *
 * `--repo` names checkouts to attack, each with bin/canonport.js and a
 * built dist/ (default: this one). Give main's and the branch's to compare
 * them in one run, on one machine, at the same time:
 *
 *   git worktree add /tmp/canonport-main main && (cd /tmp/canonport-main && npm ci && npm run build)
 *   npm run bench:hostile -- --repo /tmp/canonport-main --repo .
 *
 * Only flags both have are used, so an older daemon runs the same attack.
 * A case whose daemon dies or hangs says so instead of a figure. Figures,
 * never assertions: test/hostile-*.test.ts asserts the bounds.
 */

const CASES = ['connections', 'starve', 'xds', 'watch', 'registry', 'wire'] as const;
type Case = (typeof CASES)[number];
const ZONE = 'hostile.example';



let net: HostNet;
let inside: Host;
let outside: Host;
const running = new Set<ServeProcess>();

/** `canonport serve` from `repo`, with the lab's listen addresses, optionally under a descriptor limit. */
async function serveFrom(repo: string, args: string[], opts: { nofile?: number; dns?: string; grpc?: string; http?: string } = {}): Promise<ServeProcess> {
  // Bound beyond loopback, gRPC and HTTP need an allow-list to start: the lab's subnet unless the case names one.
  const allow = (flag: string) => (args.includes(flag) ? [] : [flag, `${net.subnet}.0/24`]);
  args = [...args, ...allow('--grpc-allow'), ...allow('--http-allow')];
  const s = await startServe(args, {
    listen: ['--dns', opts.dns ?? '127.0.0.1:0', '--grpc', opts.grpc ?? `${net.gateway}:0`, '--http', opts.http ?? `${net.gateway}:0`],
    spawn: (cmd, argv, o) => {
      const a = [`${repo}bin/canonport.js`, ...argv.slice(1)];
      return opts.nofile ? spawn('prlimit', [`--nofile=${opts.nofile}:${opts.nofile}`, '--', cmd, ...a], o) : spawn(cmd, a, o);
    },
  });
  running.add(s);
  return s;
}

async function stop(s: ServeProcess): Promise<void> {
  running.delete(s);
  await s.stop();
}

const alive = (s: ServeProcess) => s.proc.exitCode === null && s.proc.signalCode === null;
const mb = (bytes: number) => Math.round(bytes / 1e6);

/** RSS sampled every 250 ms until `until` settles: the peak. */
async function peakRss(s: ServeProcess, until: Promise<unknown>): Promise<number> {
  let over = false;
  void until.finally(() => (over = true));
  let peak = 0;
  while (!over && alive(s)) {
    peak = Math.max(peak, await rssOf(s.pid).catch(() => 0));
    await new Promise((r) => setTimeout(r, 250));
  }
  return peak;
}

/** SIGTERM, and how long until the process was gone (null: not within 60 s, then killed). */
async function sigtermMs(s: ServeProcess): Promise<number | null> {
  running.delete(s);
  if (!alive(s)) return 0;
  const t0 = performance.now();
  s.proc.kill('SIGTERM');
  const done = await Promise.race([s.exited.then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 60_000))]);
  if (!done) {
    s.proc.kill('SIGKILL');
    return null;
  }
  return Math.round(performance.now() - t0);
}

async function resolves(host: Host, s: ServeProcess): Promise<boolean> {
  const r = await canonportFrom(host, ['resolve', '--daemon', `${net.gateway}:${s.grpc.port}`, 'api.localhost']);
  return r.code === 0 && r.stdout.includes('port 12082');
}

/** Finding 1: 2,000 idle gRPC connections from a refused address, the daemon at 384 descriptors. */
async function connections(repo: string): Promise<Figures> {
  const s = await serveFrom(repo, ['--zone', ZONE, '--grpc-allow', inside.address, '--grpc-allow', net.gateway, '--http-allow', inside.address], { nofile: 384, dns: '0.0.0.0:0' });
  const c = createCanonportClient(`${net.gateway}:${s.grpc.port}`, { tls: false });
  const w = c.watch(`api.${ZONE}`);
  void (async () => {
    try {
      for await (const _ of w) {
        // keeps the discovery's timers busy, as in the issue
      }
    } catch {
      // the daemon went away
    }
  })();
  const rssBefore = await rssOf(s.pid);
  const attack = flood(outside, 'idle', { host: net.gateway, port: s.grpc.port }, 2000, 8000);
  const dns = probeDns({ host: '127.0.0.1', port: s.dns.port }, `api.${ZONE}`, attack, { everyMs: 200 });
  const peak = peakRss(s, attack);
  await new Promise((r) => setTimeout(r, 2000));
  const fds = alive(s) ? openDescriptors(s.pid) : 'exited';
  const resolved = alive(s) && (await resolves(inside, s));
  const r = await attack;
  const probe = await dns;
  const figures = {
    alive: alive(s),
    descriptorsDuring: fds,
    attackerHeldAtEnd: r.openAtEnd,
    insideResolveDuring: resolved,
    dnsFailed: `${probe.failed}/${probe.sent}`,
    dnsMaxMs: probe.maxMs,
    rssMb: `${mb(rssBefore)} → ${mb(await peak)}`,
  };
  c.close();
  await stop(s);
  return figures;
}

/** Finding 8: 500 half-open HTTP and 300 DNS-over-TCP connections from a refused address. */
async function starve(repo: string): Promise<Figures> {
  const s = await serveFrom(repo, ['--zone', ZONE, '--grpc-allow', inside.address, '--http-allow', inside.address], { dns: '0.0.0.0:0' });
  const http = flood(outside, 'http-half', { host: net.gateway, port: s.http.port }, 500, 10_000);
  const dns = flood(outside, 'dns-half', { host: net.gateway, port: s.dns.port }, 300, 10_000);
  await new Promise((r) => setTimeout(r, 2000));
  let metrics = 0;
  let tcp = 0;
  for (let i = 0; i < 10; i++) {
    if ((await curlStatus(inside, `http://${net.gateway}:${s.http.port}/metrics`)) === '200') metrics++;
    if ((await tcpAsk({ host: '127.0.0.1', port: s.dns.port }, { name: `api.${ZONE}`, type: T.SRV }, 2000))?.answers.length === 1) tcp++;
  }
  const [h, d] = await Promise.all([http, dns]);
  const figures = { metricsForAllowed: `${metrics}/10`, loopbackTcpDns: `${tcp}/10`, attackerHttpHeld: h.openAtEnd, attackerDnsHeld: d.openAtEnd };
  await stop(s);
  return figures;
}

/** Finding 2 (and 5): 200 ADS streams × 1,000 names from an allowed client, then SIGTERM under a second flood. */
async function xds(repo: string): Promise<Figures> {
  const s = await serveFrom(repo, ['--zone', ZONE, '--grpc-allow', `${net.subnet}.0/24`, '--http-allow', `${net.subnet}.0/24`]);
  const target = `${net.gateway}:${s.grpc.port}`;
  // The protos load at the first xDS message (once per process): not the flood's cost.
  await grpcFlood(outside, 'xds', target, { streams: 1, names: 1, holdMs: 1000, zone: 'localhost' });
  const rssBefore = await rssOf(s.pid);
  const attack = grpcFlood(inside, 'xds', target, { streams: 200, names: 1000, holdMs: 10_000, zone: 'localhost' });
  const dns = probeDns(s.dns, `api.${ZONE}`, attack, { everyMs: 200, timeoutMs: 2000 });
  const peak = peakRss(s, attack);
  const r = await attack;
  const probe = await dns;
  await new Promise((res) => setTimeout(res, 10_000));
  const rssAfter = alive(s) ? await rssOf(s.pid) : 0;
  const again = grpcFlood(inside, 'xds', target, { streams: 200, names: 1000, holdMs: 30_000, zone: 'localhost' });
  await new Promise((res) => setTimeout(res, 5000));
  const stopMs = await sigtermMs(s);
  await again;
  return {
    dnsFailed: `${probe.failed}/${probe.sent}`,
    dnsMaxMs: probe.maxMs,
    rssMb: `${mb(rssBefore)} → ${mb(await peak)} → ${mb(rssAfter)} (10 s after)`,
    streamsRefused: r.ended.RESOURCE_EXHAUSTED ?? 0,
    responses: r.responses,
    sigtermExitMs: stopMs ?? 'over 60 s',
  };
}

/** Finding 9: 3,000 Watch streams over 2,000 names from one client, a slow upstream, a forwarder cap of 64. */
async function watch(repo: string): Promise<Figures> {
  const up = await FakeUpstream.start({ kind: 'delay', ms: 300, address: '192.0.2.9' });
  try {
    // 3 s before an upstream query times out: the upstream's 300 ms on a loaded machine is not mistaken for the cap.
    const s = await serveFrom(repo, ['--zone', ZONE, '--grpc-allow', `${net.subnet}.0/24`, '--upstream', up.address, '--max-inflight', '64', '--upstream-timeout', '3000']);
    const rssBefore = await rssOf(s.pid);
    const attack = grpcFlood(inside, 'watch', `${net.gateway}:${s.grpc.port}`, { streams: 3000, names: 2000, holdMs: 10_000, zone: ZONE });
    const peak = peakRss(s, attack);
    await new Promise((r) => setTimeout(r, 3000));
    const forwarded = await probeDns(s.dns, (i) => `w${i}.example.org`, new Promise((r) => setTimeout(r, 3000)), { everyMs: 100, timeoutMs: 2000, type: 'A' });
    const r = await attack;
    await new Promise((res) => setTimeout(res, 10_000));
    const rssAfter = alive(s) ? await rssOf(s.pid) : 0;
    await stop(s);
    return {
      endedUnavailable: r.ended.UNAVAILABLE ?? 0,
      refused: r.ended.RESOURCE_EXHAUSTED ?? 0,
      heldAtEnd: r.openAtEnd,
      forwardedFailed: `${forwarded.failed}/${forwarded.sent}`,
      rssMb: `${mb(rssBefore)} → ${mb(await peak)} → ${mb(rssAfter)} (10 s after)`,
    };
  } finally {
    await up.close();
  }
}

/** Finding 12: a 50 MB registry, a 100,000-service one, SIGTERM during a load. */
async function registry(repo: string): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), 'canonport-bench-registry-'));
  const text = (n: number) => {
    const lines = [`zones: [${ZONE}]\nservices:\n  api:\n    port: 20001\n`];
    for (let i = 0; i < n; i++) lines.push(`  s${i.toString(36)}x:\n    port: ${1024 + (i % 60_000)}\n`);
    return lines.join('');
  };
  const file = join(dir, 'registry.yaml');
  try {
    writeFileSync(file, text(10));
    const s = await serveFrom(repo, ['--registry', file]);
    const settled = (pred: (l: Record<string, unknown>) => boolean, ms: number) => s.waitForLog(pred, ms).then(() => true, () => false);
    // The daemon watches the file: writing it is the trigger (a SIGHUP on top would queue a second load).
    // 100,000 services (2.7 MB): how long to load, and what DNS saw meanwhile.
    let t0 = performance.now();
    writeFileSync(file, text(100_000));
    const loaded = settled((l) => l.event === 'reload' || l.code === 'CP_REGISTRY_INVALID', 300_000);
    const probe = await probeDns(s.dns, `api.${ZONE}`, loaded, { everyMs: 100, timeoutMs: 2000 });
    const loadMs = (await loaded) ? Math.round(performance.now() - t0) : 'over 300 s';
    // 50 MB: refused, or read; RSS and the time to the outcome.
    await new Promise((r) => setTimeout(r, 2000));
    const rssBefore = await rssOf(s.pid);
    const before = s.logs.length;
    t0 = performance.now();
    writeFileSync(file, text(1_900_000));
    const outcome = s.waitForLog((l) => s.logs.indexOf(l) >= before && (l.event === 'reload' || l.code !== undefined), 60_000).then((l) => String(l.code ?? l.event), () => 'nothing within 60 s');
    const peak = peakRss(s, outcome);
    const big = await outcome;
    const bigMs = Math.round(performance.now() - t0);
    // SIGTERM a second into a 100,000-service load (the watch waits 200 ms for the file to settle).
    await new Promise((r) => setTimeout(r, 2000));
    writeFileSync(file, text(100_001));
    await new Promise((r) => setTimeout(r, 1000));
    const stopMs = await sigtermMs(s);
    return {
      load100kMs: loadMs,
      dnsFailedDuringLoad: `${probe.failed}/${probe.sent}`,
      dnsMaxMs: probe.maxMs,
      fiftyMb: `${big} after ${bigMs} ms`,
      rssMb: `${mb(rssBefore)} → ${mb(await peak)}`,
      sigtermDuringLoadMs: stopMs ?? 'over 60 s',
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Findings 6 and 11: a TXT string over 255 octets through dnspython, and the amplification factor for an outsider. */
async function wire(repo: string): Promise<Figures> {
  const dir = mkdtempSync(join(tmpdir(), 'canonport-bench-wire-'));
  try {
    const long = Array.from({ length: 10 }, (_, i) => `abc${String(i).padStart(2, '0')}${'x'.repeat(58)}`);
    const many = Array.from({ length: 40 }, (_, i) => `2001:db8::${(i + 1).toString(16)}`);
    const file = join(dir, 'registry.yaml');
    writeFileSync(file, [`zones: [${ZONE}]`, 'hosts:', `  many.${ZONE}: [${many.join(', ')}]`, 'services:', ...long.map((n) => `  ${n}:`)].join('\n') + '\n');
    const s = await serveFrom(repo, ['--registry', file, '--allow', inside.address], { dns: `${net.gateway}:0`, grpc: '127.0.0.1:0', http: '127.0.0.1:0' });
    const probe = async (from: Host, name: string, type: string) => {
      const r = await from.exec(SYSTEM_PYTHON, [`${REPO}test/helpers/dns-probe.py`, net.gateway, String(s.dns.port), name, type, 'udp', '4096']);
      return JSON.parse(r.stdout || '{"error":"no output"}') as { error?: string; query_len: number; reply_len: number; tc: boolean };
    };
    const txt = await probe(inside, `${long[0]}.${ZONE}`, 'TXT');
    const amp = await probe(outside, `many.${ZONE}`, 'AAAA');
    await stop(s);
    return {
      txtOver255: txt.error ? `dnspython: ${txt.error.slice(0, 60)}` : 'parsed',
      outsiderFactor: amp.reply_len ? +(amp.reply_len / amp.query_len).toFixed(1) : 'no reply',
      outsiderTc: amp.tc,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const RUN: Record<Case, (repo: string) => Promise<Figures>> = { connections, starve, xds, watch, registry, wire };

async function main(): Promise<number> {
  const { repos, only } = parseRepoCases(CASES);
  if (process.getuid?.() !== 0) throw new Error('the hostile bench uses network namespaces: run it as root');
  net = await createHostNet({ hosts: 2 });
  [inside, outside] = net.hosts as [Host, Host];
  try {
    await runRepoCases('hostile', only, repos, (c, repo) => RUN[c](repo), async () => {
      for (const s of [...running]) await stop(s);
    });
  } finally {
    for (const s of [...running]) await stop(s);
    net.cleanup();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`hostile bench: ${(err as Error).stack ?? String(err)}`);
    process.exit(2);
  },
);
