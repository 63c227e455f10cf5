import dns2 from 'dns2';
import { base32Port } from '../src/scheme/base32.js';
import { BENCH_TTL } from './fixtures.js';

const { Packet } = dns2;

/**
 * Reference "dns2 plain", run as its own process: `node ref-dns2.js HOST PORT`.
 * What a straightforward dns2.createServer handler costs: dns2 parses every
 * query and builds every answer. Same answers as the "dgram bare" reference:
 * SRV `_svc._tcp.rest` → `0 0 <base32 port> svc.rest.`, A → 127.0.0.1.
 */
const [host = '127.0.0.1', portText = '0'] = process.argv.slice(2);

const server = dns2.createServer({
  udp: true,
  handle: (request, send) => {
    try {
      const response = Packet.createResponseFromRequest(request);
      response.header.aa = 1;
      const q = request.questions[0];
      if (request.questions.length === 1 && q && q.class === Packet.CLASS.IN) {
        if (q.type === Packet.TYPE.SRV) {
          const labels = q.name.split('.');
          const service = /^_(tcp|udp)$/i.test(labels[1] ?? '') && labels[0]!.startsWith('_') ? labels[0]!.slice(1) : labels[0]!;
          const rest = labels.slice(labels[0] === `_${service}` ? 2 : 1).join('.');
          response.answers.push({
            name: q.name,
            type: Packet.TYPE.SRV,
            class: Packet.CLASS.IN,
            ttl: BENCH_TTL,
            priority: 0,
            weight: 0,
            port: base32Port(service),
            target: rest ? `${service}.${rest}` : service,
          } as never);
        } else if (q.type === Packet.TYPE.A) {
          response.answers.push({ name: q.name, type: Packet.TYPE.A, class: Packet.CLASS.IN, ttl: BENCH_TTL, address: '127.0.0.1' } as never);
        }
      }
      void send(response).catch(() => undefined);
    } catch (err) {
      console.error(`ref-dns2: ${(err as Error).message}`);
    }
  },
});
server.on('error', (err) => {
  console.error(`ref-dns2: ${err.message}`);
  process.exit(1);
});
await server.listen({ udp: { port: Number(portText), address: host } });
process.on('SIGTERM', () => void server.close().finally(() => process.exit(0)));
