import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The Envoy/xDS protos, from @grpc/grpc-js-xds: the package that is Node's
 * own xDS client ships the .proto files it was built against (deps/ beside
 * its package.json), so the server speaks exactly the client's schema and
 * nobody copies Envoy's API by hand.
 */

/** The four resource types a gRPC client asks for (gRFC A27), in the order it asks. */
export const TypeUrl = {
  listener: 'type.googleapis.com/envoy.config.listener.v3.Listener',
  route: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  cluster: 'type.googleapis.com/envoy.config.cluster.v3.Cluster',
  endpoint: 'type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment',
} as const;

export type ResourceType = keyof typeof TypeUrl;
export const RESOURCE_TYPES = Object.keys(TypeUrl) as ResourceType[];

const TYPE_BY_URL = new Map<string, ResourceType>(RESOURCE_TYPES.map((t) => [TypeUrl[t], t]));

/** The resource type a type URL names, or undefined for a type canonport does not serve. */
export function resourceTypeOf(typeUrl: string): ResourceType | undefined {
  return TYPE_BY_URL.get(typeUrl);
}

/** Messages packed into google.protobuf.Any inside the resources. */
export const HTTP_CONNECTION_MANAGER_URL = 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager';
export const ROUTER_URL = 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router';

const FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/config/route/v3/route.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
];

/** Include directories inside the installed @grpc/grpc-js-xds, found at run time. */
export function xdsProtoIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve('@grpc/grpc-js-xds/package.json'));
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(root, 'deps', d));
}

/**
 * Field names as the .proto spells them (snake_case, like Envoy's docs),
 * enums as names, 64-bit integers as strings: what the DiscoveryRequest
 * handler reads and what the resource builders write.
 */
export const XDS_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

export interface XdsProtos {
  /** envoy.service.discovery.v3.AggregatedDiscoveryService, for server.addService. */
  ads: grpc.ServiceDefinition;
  /** Encodes a message of the named type (fully qualified, no leading dot) from a plain object. */
  encode(type: string, value: object): Buffer;
  /** Decodes a message of the named type into a plain object (XDS_LOADER_OPTIONS). */
  decode(type: string, bytes: Buffer): Record<string, unknown>;
}

let loaded: XdsProtos | undefined;

/** The protos, parsed once per process (about 150 ms and 8 MB of heap: Envoy's API is large). */
export function xdsProtos(): XdsProtos {
  if (loaded) return loaded;
  const pkg = protoLoader.loadSync(FILES, { ...XDS_LOADER_OPTIONS, includeDirs: xdsProtoIncludeDirs() });
  const message = (type: string): protoLoader.MessageTypeDefinition<object, Record<string, unknown>> => {
    const def = pkg[type] as protoLoader.MessageTypeDefinition<object, Record<string, unknown>> | undefined;
    if (!def || !('serialize' in def)) throw new Error(`xDS protos: no message type ${type}`);
    return def;
  };
  loaded = {
    ads: pkg['envoy.service.discovery.v3.AggregatedDiscoveryService'] as grpc.ServiceDefinition,
    encode: (type, value) => message(type).serialize(value),
    decode: (type, bytes) => message(type).deserialize(bytes),
  };
  return loaded;
}

const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
const DISCOVERY = 'envoy.service.discovery.v3.';

/**
 * The protos as the daemon holds them: parsed on first use, not at start.
 * Every daemon serves xDS, few are ever asked; parsing Envoy's API at start
 * cost every `serve` about 150 ms before it was ready and 8 MB of heap for
 * good. The ADS service definition is therefore written out here (two
 * bidirectional methods, as ads.proto declares them) with serializers that
 * parse the protos when the first stream sends or receives a message; a
 * test checks it against the one proto-loader makes from ads.proto.
 */
export function lazyXdsProtos(): XdsProtos {
  const method = (name: string, request: string, response: string): grpc.MethodDefinition<object, object> => ({
    path: `/${ADS_SERVICE}/${name}`,
    requestStream: true,
    responseStream: true,
    requestSerialize: (value: object) => xdsProtos().encode(DISCOVERY + request, value),
    requestDeserialize: (bytes: Buffer) => xdsProtos().decode(DISCOVERY + request, bytes),
    responseSerialize: (value: object) => xdsProtos().encode(DISCOVERY + response, value),
    responseDeserialize: (bytes: Buffer) => xdsProtos().decode(DISCOVERY + response, bytes),
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  });
  return {
    ads: {
      StreamAggregatedResources: method('StreamAggregatedResources', 'DiscoveryRequest', 'DiscoveryResponse'),
      DeltaAggregatedResources: method('DeltaAggregatedResources', 'DeltaDiscoveryRequest', 'DeltaDiscoveryResponse'),
    },
    encode: (type, value) => xdsProtos().encode(type, value),
    decode: (type, bytes) => xdsProtos().decode(type, bytes),
  };
}
