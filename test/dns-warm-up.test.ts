import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { WARM_UP_QUERIES, warmUpQueries } from '../src/dns/warm-up.js';
import { parseQuery } from '../src/dns/wire.js';
import { startDaemon, writeRegistry } from './helpers/daemon.js';
import { T, UdpClient } from './helpers/dns-wire.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { REPO } from './helpers/serve-process.js';

/**
 * Ready means warm (issue 24): before it reports ready the daemon answers
 * queries to itself over loopback, so the first real queries do not wait on
 * V8 compiling the path. Those queries must leave no trace: nothing sent to
 * the upstreams, nothing counted, nothing kept.
 */

const ZONE = 'cluster-1.example.com';
const daemons: Daemon[] = [];
const upstreams: FakeUpstream[] = [];

afterEach(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.close(0)));
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

describe('warmUpQueries', () => {
  it('asks only what a daemon answers from memory, in every zone, every name a new one', () => {
    const zones = ['localhost', ZONE];
    const qs = warmUpQueries(zones);
    expect(qs).toHaveLength(WARM_UP_QUERIES);
    const parsed = qs.map((b) => parseQuery(b)!);
    const types = new Set(parsed.map((q) => q.qtype));
    // Never A or AAAA: an address the registry lacks would be asked of the upstreams.
    expect([...types].sort((a, b) => a - b)).toEqual([T.NS, T.SOA, T.TXT, T.SRV].sort((a, b) => a - b));
    for (const zone of zones) expect(parsed.filter((q) => q.lname === zone || q.lname.endsWith(`.${zone}`)).length).toBeGreaterThan(WARM_UP_QUERIES / 3);
    expect(parsed.some((q) => q.edns !== null)).toBe(true);
    expect(parsed.some((q) => q.edns === null)).toBe(true);
    const names = parsed.filter((q) => q.qtype === T.SRV).map((q) => `${q.lname} ${q.qtype} ${q.edns === null}`);
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('a daemon warms up before it is ready', () => {
  it('sends nothing upstream, counts nothing, keeps nothing, and leaves the event-loop sampler asleep', async () => {
    const up = await FakeUpstream.start();
    upstreams.push(up);
    // The full warm-up, as `canonport serve` runs it (the helper's default is a short one).
    const d = await startDaemon({ upstreams: [`127.0.0.1:${up.port}`], registry: writeRegistry(`zones: [${ZONE}]\n`) }, { warmUpQueries: WARM_UP_QUERIES });
    daemons.push(d);
    expect(up.count()).toBe(0);
    const text = await d.metrics.registry.metrics();
    expect(text).not.toMatch(/^canonport_dns_queries_total\{/m);
    expect(text).not.toMatch(/^canonport_dns_query_duration_seconds_count\{/m);
    expect(d.metrics.eventLoop!.isSampling).toBe(false);

    // The first real query is counted as one, and wakes the sampler.
    const c = await UdpClient.open();
    try {
      const r = await c.ask(d.addresses.dns, { name: `_api._tcp.${ZONE}`, type: T.SRV });
      expect(r.msg?.answers[0]).toMatchObject({ type: T.SRV });
    } finally {
      c.close();
    }
    const after = await d.metrics.registry.metrics();
    expect(after).toMatch(/^canonport_dns_queries_total\{type="SRV",rcode="NOERROR",source="canonical",transport="udp"\} 1$/m);
    expect(after).toMatch(/^canonport_dns_query_duration_seconds_count\{source="canonical"\} 1$/m);
    expect(d.metrics.eventLoop!.isSampling).toBe(true);
  });

  it('asks as many queries a round as it is told (DaemonOptions.warmUpQueries, the tests\' short warm-up), still two rounds', async () => {
    const lines: { event?: string; queries?: number }[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as { event?: string; queries?: number });
        cb();
      },
    });
    const d = await startDaemon({ registry: writeRegistry(`zones: [${ZONE}]\n`), logLevel: 'debug' }, { warmUpQueries: 12, logger: pino({ level: 'debug' }, sink) });
    daemons.push(d);
    expect(lines.filter((l) => l.event === 'warm-up').map((l) => l.queries)).toEqual([24]);
  });

  it('honours a SIGTERM that arrives while it starts: it drains and exits 0', async () => {
    const child = spawn(process.execPath, [`${REPO}bin/canonport.js`, 'serve', '--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--log-level', 'debug'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr!.setEncoding('utf8');
    // As soon as DNS is bound, before the warm-up has run and before ready, stop it.
    await new Promise<void>((resolve, reject) => {
      child.stderr!.on('data', (d: string) => {
        log += d;
        if (log.includes('"event":"dns-bound"')) resolve();
      });
      child.once('exit', (code) => reject(new Error(`exited ${code} before DNS was up: ${log}`)));
    });
    child.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(code).toBe(0);
    expect(log).toMatch(/"event":"stopped"/);
  });
});
