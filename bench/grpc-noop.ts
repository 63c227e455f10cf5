import * as grpc from '@grpc/grpc-js';
import { canonportService } from '../src/grpc/proto.js';
import { GRPC_NAME, BENCH_TTL, BENCH_ZONE } from './fixtures.js';
import { base32Port } from '../src/scheme/base32.js';

/**
 * Reference no-op gRPC server, run as its own process: `node grpc-noop.js HOST PORT`.
 * The same proto and service as canonport, Resolve answering a fixed
 * Resolution of the same shape as canonport's, with no lookup at all: the
 * cost of a grpc-js unary call on this machine.
 */
const [host = '127.0.0.1', portText = '0'] = process.argv.slice(2);

const FIXED = Object.freeze({
  name: GRPC_NAME,
  service: 'api',
  port: base32Port('api'),
  scheme: 'base32',
  host: GRPC_NAME,
  addresses: ['127.0.0.1'],
  // Since the discovery core, canonport's Resolution lists its endpoints too
  // (one here: the registry's host), and encoding them is grpc-js's work.
  endpoints: [{ address: '127.0.0.1', port: base32Port('api'), source: 'registry', node: '', version: '', since: '' }],
  ttl: BENCH_TTL,
  prefix: 'api',
  collidesWith: [],
  zone: BENCH_ZONE,
});

const server = new grpc.Server();
server.addService(canonportService().service, {
  resolve: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => callback(null, FIXED),
});
server.bindAsync(`${host}:${portText}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) {
    console.error(`grpc-noop: ${err.message}`);
    process.exit(1);
  }
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
