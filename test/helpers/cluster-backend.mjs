// A service for the cluster end-to-end tests, run inside a test host's
// network namespace: what a real program on that host would be.
//
// argv: MODE PORT NAME [VERSION [BIND]]   (BIND: 0.0.0.0 unless given, `::` for dual stack)
//   grpc  a grpc-js server on BIND:PORT whose one unary method
//         /canonport.test.Who/Name answers NAME (so a client can tell which
//         host answered)
//   http  an HTTP server on BIND:PORT answering GET /version with VERSION
//         (the inventory's version probe) and anything else with NAME
// stdout: "listening" once bound. SIGTERM: close and exit 0.
import { createServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';

const [mode, portText, name, version = '', bind = '0.0.0.0'] = process.argv.slice(2);
const port = Number(portText);
const bytes = { serialize: (b) => b, deserialize: (b) => b };

if (mode === 'grpc') {
  const server = new grpc.Server();
  server.addService(
    { Name: { path: '/canonport.test.Who/Name', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize } },
    { Name: (_call, callback) => callback(null, Buffer.from(name)) },
  );
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
    res.end(req.url === '/version' ? `${version}\n` : `${name}\n`);
  });
  server.on('error', (e) => {
    console.error(e.message);
    process.exit(3);
  });
  server.listen({ port, host: bind }, () => console.log('listening'));
  process.on('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
