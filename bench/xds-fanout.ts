import * as grpc from '@grpc/grpc-js';
import { TypeUrl, xdsProtos, type ResourceType } from '../src/xds/protos.js';

/**
 * Many ADS clients for the fan-out bench: each its own channel (its own TCP
 * connection, as separate processes would have), subscribed to the four
 * resource types for its names the way a gRPC client is, ACKing every
 * response. Each keeps the port of every name's endpoints and when it last
 * changed, so the bench sees when the last client has a change.
 */

interface Response {
  version_info: string;
  nonce: string;
  type_url: string;
  resources: Array<{ type_url: string; value: Buffer }>;
}

const TYPES: ResourceType[] = ['listener', 'route', 'cluster', 'endpoint'];

export class FanClient {
  private readonly client: grpc.Client;
  private readonly call: grpc.ClientDuplexStream<object, Response>;
  /** name → endpoint port, from the latest ClusterLoadAssignment. */
  readonly ports = new Map<string, number>();
  /** name → first endpoint as ADDRESS:PORT, from the latest ClusterLoadAssignment. */
  readonly endpoints = new Map<string, string>();
  /** performance.now() of the latest ClusterLoadAssignment that changed an endpoint. */
  lastChangeAt = 0;
  responses = 0;
  ended = false;

  constructor(address: string, readonly names: string[]) {
    const Ctor = grpc.makeClientConstructor(xdsProtos().ads, 'AggregatedDiscoveryService');
    // A local subchannel pool: otherwise grpc-js shares one connection among all channels to one address.
    this.client = new Ctor(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    this.call = (this.client as unknown as { StreamAggregatedResources(): grpc.ClientDuplexStream<object, Response> }).StreamAggregatedResources();
    this.call.on('data', (r: Response) => this.onResponse(r));
    this.call.on('error', () => {});
    this.call.on('status', () => (this.ended = true));
    for (const type of TYPES) this.request(type, '', '');
  }

  private request(type: ResourceType | string, nonce: string, version: string): void {
    this.call.write({
      type_url: type in TypeUrl ? TypeUrl[type as ResourceType] : type,
      resource_names: this.names,
      response_nonce: nonce,
      version_info: version,
      node: nonce === '' ? { id: 'bench-fanout', user_agent_name: 'bench' } : null,
    });
  }

  private onResponse(r: Response): void {
    this.responses++;
    if (r.type_url === TypeUrl.endpoint) {
      let changed = false;
      for (const a of r.resources) {
        const cla = xdsProtos().decode('envoy.config.endpoint.v3.ClusterLoadAssignment', a.value) as {
          cluster_name: string;
          endpoints: Array<{ lb_endpoints: Array<{ endpoint: { address: { socket_address: { address: string; port_value: number } } } }> }>;
        };
        const socket = cla.endpoints[0]?.lb_endpoints[0]?.endpoint.address.socket_address;
        const port = socket?.port_value ?? 0;
        const endpoint = socket ? `${socket.address}:${port}` : '';
        if (this.endpoints.get(cla.cluster_name) !== endpoint) changed = true;
        this.ports.set(cla.cluster_name, port);
        this.endpoints.set(cla.cluster_name, endpoint);
      }
      if (changed) this.lastChangeAt = performance.now();
    }
    this.request(r.type_url, r.nonce, r.version_info);
  }

  close(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** Resolves once every client has `name` at `port` (polling; wide bound `limitMs`). */
export async function allHave(clients: FanClient[], name: string, port: number, limitMs: number): Promise<boolean> {
  const deadline = performance.now() + limitMs;
  while (performance.now() < deadline) {
    if (clients.every((c) => c.ports.get(name) === port)) return true;
    await new Promise((r) => setTimeout(r, 2));
  }
  return false;
}
