import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { DiscoveryReader } from '../../src/discovery/model.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { Metrics } from '../../src/metrics/metrics.js';
import { addXdsService, type XdsHandle, type XdsLimits } from '../../src/xds/server.js';
import { runCli } from './cli.js';
import { tempDir } from './temp.js';

export * from './xds-backend.js';
export * from './xds-python.js';

/**
 * Real parts for the xDS tests: the control plane on a real grpc.Server on
 * loopback and a raw ADS client for protocol edge cases; backends that
 * answer "who am I" (xds-backend.ts) and the stock Python client
 * (xds-python.ts) are re-exported.
 */

export interface XdsServer {
  /** `127.0.0.1:PORT`, what goes in the bootstrap. */
  address: string;
  handle: XdsHandle;
  metrics: Metrics;
  server: grpc.Server;
  close(): Promise<void>;
}

export async function startXdsServer(discovery: DiscoveryReader, opts: { limits?: Partial<XdsLimits>; logger?: Logger } = {}): Promise<XdsServer> {
  const server = new grpc.Server();
  const metrics = new Metrics({ defaultMetrics: false });
  const handle = addXdsService(server, { discovery, metrics, logger: opts.logger ?? silentLogger, limits: opts.limits });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    address: `127.0.0.1:${port}`,
    handle,
    metrics,
    server,
    async close() {
      handle.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}

/** Writes the bootstrap printed by `canonport xds-bootstrap --server ADDR` to a temporary file; returns its path. */
export async function bootstrapFile(server: string): Promise<string> {
  const r = await runCli(['xds-bootstrap', '--server', server, '--node-id', 'canonport-test']);
  if (r.code !== 0) throw new Error(`canonport xds-bootstrap failed (${r.code}): ${r.stderr}`);
  JSON.parse(r.stdout);
  const path = join(tempDir('canonport-xds-'), 'bootstrap.json');
  writeFileSync(path, r.stdout);
  return path;
}

export { RawAds, decodeResource, type DecodedResponse } from './raw-ads.js';
