import { PassThrough } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { CanonportError, ErrorCodes } from '../src/errors.js';
import { Metrics } from '../src/metrics/metrics.js';
import { DnsServer } from '../src/dns/server.js';
import { bareReply } from '../src/dns/message.js';
import type { DnsReply, DnsRequest } from '../src/dns/request.js';
import { buildQuery, rawUdp } from './helpers/dns-wire.js';

const servers: DnsServer[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close(0);
});

/** The real server on a real UDP socket, with a handler that fails as the query name says. */
async function start(): Promise<{ server: DnsServer; port: number; logs: () => Record<string, unknown>[] }> {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (b) => (text += b));
  const handler = (req: DnsRequest): DnsReply | Promise<DnsReply> => {
    switch (req.query.lname) {
      case 'throws.test':
        throw new Error('stage bug');
      case 'rejects.test':
        return Promise.reject(new Error('async stage bug'));
      case 'badname.test':
        throw new CanonportError(ErrorCodes.BAD_NAME, 'not a name');
      default:
        return { message: bareReply(req.raw, req.query.questionEnd, 0), rcode: 0, source: 'canonical' };
    }
  };
  const server = new DnsServer({
    listen: { host: '127.0.0.1', port: 0 },
    handler,
    classify: () => ({ kind: 'outside' }),
    mayRecurse: () => true,
    metrics: new Metrics({ defaultMetrics: false }),
    logger: pino({ level: 'info' }, stream),
    queryLogRate: () => 0,
    tcp: () => ({ idleTimeoutMs: 1000, maxConnections: 10, perSource: 10 }),
  });
  servers.push(server);
  const { port } = await server.start();
  return { server, port, logs: () => text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('DnsServer: a failing stage never takes the daemon down', () => {
  it('answers SERVFAIL for a thrown or rejected error, the catalogue rcode for a coded one, and logs each with CP_HANDLER_FAILED', async () => {
    const { port, logs } = await start();
    const ask = async (name: string) => (await rawUdp({ host: '127.0.0.1', port }, buildQuery({ id: 9, name, type: 1 })))[3]! & 0xf;
    expect(await ask('throws.test')).toBe(2); // SERVFAIL
    expect(await ask('rejects.test')).toBe(2); // SERVFAIL, and no unhandled rejection
    expect(await ask('badname.test')).toBe(1); // FORMERR, through errorToRcode
    expect(await ask('fine.test')).toBe(0); // still serving
    const failures = logs().filter((l) => l.code === 'CP_HANDLER_FAILED');
    expect(failures.map((l) => [l.name, l.rcode])).toEqual([
      ['throws.test', 2],
      ['rejects.test', 2],
      ['badname.test', 1],
    ]);
  });
});
