import { readFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { parseProcNetTcp, readProcNetTcp } from '../src/inventory/procnet.js';

/**
 * What reading /proc/net/tcp costs on a host with many connections: run
 * inside a fresh network namespace (cluster-bench.ts does), it opens N/2
 * loopback connections (N sockets), then times reading the whole file and
 * parsing it against readProcNetTcp, which stops at the first connection.
 * Prints one JSON line. Needs `ulimit -n` above N.
 *
 *   node dist-bench/bench/procnet-cost.js 11500
 */

const sockets = Number(process.argv[2] ?? 11_500);
if (!(sockets >= 2 && sockets <= 50_000)) {
  console.error('want 2 ≤ sockets ≤ 50000');
  process.exit(2);
}

const server = createServer((c) => c.on('error', () => undefined));
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = (server.address() as { port: number }).port;
const clients: Socket[] = [];
for (let i = 0; i < Math.floor(sockets / 2); i += 500) {
  const batch = await Promise.all(
    Array.from({ length: Math.min(500, Math.floor(sockets / 2) - i) }, () => new Promise<Socket>((resolve, reject) => {
      const c = connect(port, '127.0.0.1', () => resolve(c));
      c.once('error', reject);
    })),
  );
  clients.push(...batch);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const whole: number[] = [];
const early: number[] = [];
let wholeBytes = 0;
let earlyBytes = 0;
for (let i = 0; i < 20; i++) {
  const t0 = performance.now();
  const text = await readFile('/proc/self/net/tcp', 'latin1');
  const all = parseProcNetTcp(text, 'tcp');
  whole.push(performance.now() - t0);
  wholeBytes = text.length;
  const t1 = performance.now();
  const r = await readProcNetTcp('/proc/self/net/tcp', 'tcp');
  early.push(performance.now() - t1);
  earlyBytes = r.bytesRead;
  if (r.sockets.length !== all.length) throw new Error(`the early read found ${r.sockets.length} listeners, the whole file ${all.length}`);
}
console.log(JSON.stringify({ sockets: clients.length * 2 + 1, wholeFileMs: median(whole), listenersOnlyMs: median(early), wholeBytes, listenersOnlyBytes: earlyBytes }));
for (const c of clients) c.destroy();
server.close();
process.exit(0);
