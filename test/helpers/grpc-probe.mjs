// A bare grpc-js client for tests that must call from another network
// namespace (`ip netns exec NS node grpc-probe.mjs …`): one call on any
// method path with an empty request, and one JSON line on stdout with the
// outcome. Usage:
//   node grpc-probe.mjs TARGET PATH unary|bidi [CA_FILE [CERT_FILE KEY_FILE]]
// Prints {"code": "OK"|status name, "details": …, "canonportCode": …}; a bidi
// stream the server keeps open for 1.5 s without ending prints code "OPEN".
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';

const [target, path, kind, ca, cert, key] = process.argv.slice(2);
const creds = ca ? grpc.credentials.createSsl(readFileSync(ca), key ? readFileSync(key) : null, cert ? readFileSync(cert) : null) : grpc.credentials.createInsecure();
const client = new grpc.Client(target, creds);
const raw = (x) => x;
const done = (err) => {
  const out = err
    ? { code: grpc.status[err.code] ?? String(err.code), details: err.details, canonportCode: err.metadata?.get('canonport-code')[0] ?? null }
    : { code: 'OK', details: '', canonportCode: null };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  client.close();
  process.exit(0);
};
const deadline = Date.now() + 5000;
if (kind === 'bidi') {
  const call = client.makeBidiStreamRequest(path, raw, raw, new grpc.Metadata(), { deadline });
  call.on('data', () => done(null));
  call.on('error', (err) => done(err));
  call.on('end', () => done(null));
  // An empty DiscoveryRequest is a valid first message of an ADS stream.
  call.write(Buffer.alloc(0));
  setTimeout(() => {
    process.stdout.write(`${JSON.stringify({ code: 'OPEN', details: '', canonportCode: null })}\n`);
    call.cancel();
    client.close();
    process.exit(0);
  }, 1500);
} else {
  client.makeUnaryRequest(path, raw, raw, Buffer.alloc(0), { deadline }, (err) => done(err));
}
