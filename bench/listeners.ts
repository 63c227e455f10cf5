import { createServer, type Server } from 'node:http';

/**
 * The services of a bench "host": one process holding an HTTP listener on
 * each port given, each answering `GET /version` with VERSION (the
 * inventory's version probe), `GET /readyz` with 200 (cluster mode's
 * readiness probe, as a real service would) and anything else with 404. One process for
 * all of them, so twenty services cost one Node, not twenty. Prints
 * "listening N" once every port is bound; SIGTERM closes them and exits 0.
 *
 *   node dist-bench/bench/listeners.js BIND VERSION PORT [PORT…]
 */

const [bind = '0.0.0.0', version = '1.0.0', ...portArgs] = process.argv.slice(2);
const ports = portArgs.map(Number);
if (ports.length === 0 || ports.length > 200 || ports.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
  console.error('usage: listeners.js BIND VERSION PORT [PORT…] (1 to 200 ports)');
  process.exit(2);
}

const servers: Server[] = [];
for (const port of ports) {
  const server = createServer((req, res) => {
    if (req.url === '/version') {
      res.setHeader('content-type', 'text/plain');
      res.end(`${version}\n`);
    } else if (req.url === '/readyz') {
      res.end('ok\n');
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  server.on('error', (e) => {
    console.error(`port ${port}: ${e.message}`);
    process.exit(3);
  });
  await new Promise<void>((resolve) => server.listen({ port, host: bind }, resolve));
  servers.push(server);
}
console.log(`listening ${servers.length}`);
process.on('SIGTERM', () => {
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  process.exit(0);
});
