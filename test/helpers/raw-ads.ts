import * as grpc from '@grpc/grpc-js';
import { TypeUrl, xdsProtos, type ResourceType } from '../../src/xds/protos.js';
import type { DiscoveryRequest } from '../../src/xds/stream.js';
import { untilWokenOr } from './wake.js';

/**
 * The raw ADS client of the xDS tests, in a module of its own: it imports
 * nothing but grpc-js and the protos, so the bench (bench/cluster-bench.ts)
 * can use it too without loading the CLI.
 */

export interface DecodedResponse {
  version_info: string;
  nonce: string;
  type_url: string;
  /** Resource names in order. */
  names: string[];
  /** The resources, decoded as plain objects (snake_case). */
  resources: Array<Record<string, unknown>>;
}

const MESSAGE_OF: Record<string, string> = Object.fromEntries(Object.entries(TypeUrl).map(([, url]) => [url, url.slice(url.indexOf('/') + 1)]));

export function decodeResource(typeUrl: string, value: Buffer): Record<string, unknown> {
  return xdsProtos().decode(MESSAGE_OF[typeUrl]!, value);
}

function resourceName(typeUrl: string, r: Record<string, unknown>): string {
  return String(typeUrl === TypeUrl.endpoint ? r.cluster_name : r.name);
}

/**
 * A bare ADS stream, as a protocol test needs it: every request written by
 * hand, every response kept in arrival order.
 */
export class RawAds {
  private readonly call: grpc.ClientDuplexStream<DiscoveryRequest, Record<string, unknown>>;
  private readonly queue: DecodedResponse[] = [];
  private waiter: (() => void) | undefined;
  readonly client: grpc.Client;
  /** The stream's final status, once it ended. */
  status: grpc.StatusObject | undefined;
  readonly ended: Promise<grpc.StatusObject>;

  /** `options`: channel options; `{ 'grpc.use_local_subchannel_pool': 1 }` gives the stream a connection of its own (another client). */
  constructor(address: string, creds: grpc.ChannelCredentials = grpc.credentials.createInsecure(), options: grpc.ChannelOptions = {}) {
    const Ctor = grpc.makeClientConstructor(xdsProtos().ads, 'AggregatedDiscoveryService');
    this.client = new Ctor(address, creds, options);
    this.call = (this.client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<DiscoveryRequest, Record<string, unknown>> }).StreamAggregatedResources();
    this.call.on('data', (m: Record<string, unknown>) => {
      const typeUrl = String(m.type_url);
      const resources = (m.resources as Array<{ type_url: string; value: Buffer }>).map((a) => decodeResource(a.type_url, a.value));
      this.queue.push({ version_info: String(m.version_info), nonce: String(m.nonce), type_url: typeUrl, names: resources.map((r) => resourceName(typeUrl, r)), resources });
      this.waiter?.();
    });
    this.call.on('error', () => {});
    this.ended = new Promise((resolve) =>
      this.call.on('status', (s: grpc.StatusObject) => {
        this.status = s;
        this.waiter?.();
        resolve(s);
      }),
    );
  }

  send(type: ResourceType | string, names: string[], opts: { nonce?: string; version?: string; error?: string; node?: boolean } = {}): void {
    this.call.write({
      type_url: type in TypeUrl ? TypeUrl[type as ResourceType] : type,
      resource_names: names,
      response_nonce: opts.nonce ?? '',
      version_info: opts.version ?? '',
      node: opts.node === false ? null : { id: 'raw-ads-test', user_agent_name: 'raw-ads' },
      error_detail: opts.error ? { code: 3, message: opts.error } : null,
    });
  }

  /** ACKs (or, with `error`, NACKs) a response, keeping `names` subscribed. */
  ack(r: DecodedResponse, names: string[], error?: string): void {
    this.send(r.type_url, names, { nonce: r.nonce, version: error ? '' : r.version_info, error });
  }

  /** The next response; fails after `ms` (a wide bound: the server answers in microseconds). */
  async next(ms = 5000): Promise<DecodedResponse> {
    const deadline = Date.now() + ms;
    while (this.queue.length === 0) {
      if (this.status) throw new Error(`ADS stream ended: ${grpc.status[this.status.code]} ${this.status.details}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ADS response within ${ms} ms`);
      await untilWokenOr(left, (wake) => (this.waiter = wake));
    }
    return this.queue.shift()!;
  }

  /** Responses received and not yet taken. */
  pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.call.end();
    this.client.close();
  }

  cancel(): void {
    this.call.cancel();
    this.client.close();
  }
}
