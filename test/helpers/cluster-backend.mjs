// A service for the cluster end-to-end tests, run inside a test host's
// network namespace: what a real program on that host would be.
//
// argv: MODE PORT NAME [VERSION [BIND]]   (BIND: 0.0.0.0 unless given, `::` for dual stack)
//   grpc  a grpc-js server on BIND:PORT whose unary methods
//         /canonport.test.Who/Name and /canonport.test.Echo/WhoAmI (the
//         Python xDS client's) answer NAME (so a client can tell which
//         host answered)
//   http  an HTTP server on BIND:PORT answering GET /version with VERSION
//         (the inventory's version probe) and anything else with NAME
// stdout: "listening" once bound. SIGTERM: close and exit 0.
//
// Readiness, like real servers (environment):
//   CP_WARMUP_MS   for this long after binding the server is not ready: http
//                  answers 503 to everything (/readyz included); grpc's
//                  health service (grpc.health.v1, service "") says
//                  NOT_SERVING. Then ready.
//   CP_NEVER_READY http: /readyz is 503 for ever (the service still answers).
//   CP_HEALTH      grpc: "1" adds the health service (default: none).
// SIGUSR2: flips readiness (grpc with CP_HEALTH: the health status; http:
// /readyz between 200 and 503, the service still answering).
import { createServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';

const [mode, portText, name, version = '', bind = '0.0.0.0'] = process.argv.slice(2);
const port = Number(portText);
const bytes = { serialize: (b) => b, deserialize: (b) => b };
const warmupMs = Number(process.env.CP_WARMUP_MS ?? 0);
const neverReady = process.env.CP_NEVER_READY === '1';
let warm = warmupMs === 0;

if (mode === 'grpc') {
  const server = new grpc.Server();
  server.addService(
    { Name: { path: '/canonport.test.Who/Name', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize } },
    { Name: (_call, callback) => callback(null, Buffer.from(name)) },
  );
  // The stock Python xDS client's method (xds-client.py): the same answer.
  server.addService(
    { WhoAmI: { path: '/canonport.test.Echo/WhoAmI', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize } },
    { WhoAmI: (_call, callback) => callback(null, Buffer.from(name)) },
  );
  if (process.env.CP_HEALTH === '1') {
    const health = new HealthImplementation({ '': warm ? 'SERVING' : 'NOT_SERVING' });
    health.addToServer(server);
    let serving = warm;
    if (!warm) setTimeout(() => health.setStatus('', (serving = true) ? 'SERVING' : 'NOT_SERVING'), warmupMs);
    process.on('SIGUSR2', () => {
      serving = !serving;
      health.setStatus('', serving ? 'SERVING' : 'NOT_SERVING');
    });
  }
  server.bindAsync(bind.includes(':') ? `[${bind}]:${port}` : `${bind}:${port}`, grpc.ServerCredentials.createInsecure(), (err) => {
    if (err) {
      console.error(err.message);
      process.exit(3);
    }
    console.log('listening');
  });
  process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
} else if (mode === 'http') {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    if (!warm) {
      res.statusCode = 503;
      res.end('warming up\n');
      return;
    }
    if (req.url === '/readyz' && (neverReady || flipped)) {
      res.statusCode = 503;
      res.end('never ready\n');
      return;
    }
    res.end(req.url === '/version' ? `${version}\n` : req.url === '/readyz' ? 'ok\n' : `${name}\n`);
  });
  server.on('error', (e) => {
    console.error(e.message);
    process.exit(3);
  });
  let flipped = false;
  process.on('SIGUSR2', () => (flipped = !flipped));
  server.listen({ port, host: bind }, () => {
    if (!warm) setTimeout(() => (warm = true), warmupMs);
    console.log('listening');
  });
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
