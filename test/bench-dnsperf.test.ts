import { describe, expect, it } from 'vitest';
import { dnsperfArgs, parseDnsperfOutput, parseVerboseLine, percentile } from '../bench/dnsperf.js';

// Captured from dnsperf 2.10.0 (Debian bookworm) on this machine.
const TIME_LIMIT = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 15353 -d q.txt -c 4 -l 2
[Status] Sending queries (to 127.0.0.1:15353)
[Status] Started at: Tue Nov 24 08:47:02 2026
[Status] Stopping after 2.000000 seconds
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         588471
  Queries completed:    588471 (100.00%)
  Queries lost:         0 (0.00%)

  Response codes:       NOERROR 392314 (66.67%), NXDOMAIN 196157 (33.33%)
  Average packet size:  request 42, response 67
  Run time (s):         2.000060
  Queries per second:   294226.673200

  Average Latency (s):  0.000272 (min 0.000005, max 0.003412)
  Latency StdDev (s):   0.000103

`;

const ALL_LOST = `[Status] Stopping after 1.000000 seconds
[Timeout] Query timed out: msg id 0
[Timeout] Query timed out: msg id 1
[Timeout] Query timed out: msg id 2
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         3
  Queries completed:    0 (0.00%)
  Queries lost:         3 (100.00%)

  Response codes:       
  Average packet size:  request 27, response 0
  Run time (s):         1.002443
  Queries per second:   0.000000

  Average Latency (s):  0.000000 (min 0.000000, max 0.000000)
`;

describe('dnsperf output parsing', () => {
  it('reads the closing statistics of a time-limited run', () => {
    const s = parseDnsperfOutput(TIME_LIMIT);
    expect(s).toMatchObject({ sent: 588471, completed: 588471, lost: 0, runtimeS: 2.00006, stopReason: 'time limit' });
    expect(s.qps).toBeCloseTo(294226.6732, 3);
    expect(s.avgMs).toBeCloseTo(0.272, 6);
    expect(s.minMs).toBeCloseTo(0.005, 6);
    expect(s.maxMs).toBeCloseTo(3.412, 6);
    expect(s.stddevMs).toBeCloseTo(0.103, 6);
    expect(s.rcodes).toEqual({ NOERROR: 392314, NXDOMAIN: 196157 });
  });

  it('reads a run where every query was lost (no rcodes, no stddev line)', () => {
    const s = parseDnsperfOutput(ALL_LOST);
    expect(s).toMatchObject({ sent: 3, completed: 0, lost: 3, qps: 0, rcodes: {} });
    expect(Number.isNaN(s.stddevMs)).toBe(true);
  });

  it('reads the stop reason of a run through the file', () => {
    const text = TIME_LIMIT.replace('Testing complete (time limit)', 'Testing complete (end of file)');
    expect(parseDnsperfOutput(text).stopReason).toBe('end of file');
  });

  it('rejects output without statistics, naming the missing line', () => {
    expect(() => parseDnsperfOutput('Error: could not open datafile\n')).toThrow(/Average Latency/);
    expect(() => parseDnsperfOutput(TIME_LIMIT.replace(/  Queries lost.*\n/, ''))).toThrow(/Queries lost/);
  });

  it('reads -v answer lines and ignores everything else', () => {
    expect(parseVerboseLine('> NOERROR _svc0001._tcp.bench.test SRV 0.000091')).toEqual({
      rcode: 'NOERROR',
      name: '_svc0001._tcp.bench.test',
      type: 'SRV',
      latencyMs: expect.closeTo(0.091, 9) as unknown as number,
    });
    expect(parseVerboseLine('> NXDOMAIN m00003.cold.test A 0.001200\n')?.latencyMs).toBeCloseTo(1.2, 9);
    expect(parseVerboseLine('[Status] Testing complete (time limit)')).toBeNull();
    expect(parseVerboseLine('  Queries sent:         3')).toBeNull();
  });

  it('computes nearest-rank percentiles', () => {
    const values = Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1..1000, unsorted
    expect(percentile(values, 99)).toBe(990);
    expect(percentile(values, 50)).toBe(500);
    expect(percentile(values, 100)).toBe(1000);
    expect(percentile([7], 99)).toBe(7);
    expect(Number.isNaN(percentile([], 99))).toBe(true);
  });

  it('builds the command line: loopback server, 4 clients, time limit, optional pacing and passes', () => {
    expect(dnsperfArgs({ port: 5300, file: 'q.txt', seconds: 10 })).toEqual(['-s', '127.0.0.1', '-p', '5300', '-d', 'q.txt', '-c', '4', '-l', '10', '-t', '2']);
    const paced = dnsperfArgs({ port: 5300, file: 'q.txt', seconds: 3, maxQps: 5000, maxRuns: 1, verbose: true });
    expect(paced.join(' ')).toContain('-Q 5000 -n 1 -v');
  });
});
