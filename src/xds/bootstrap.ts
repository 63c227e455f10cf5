import { hostname } from 'node:os';

/**
 * The xDS bootstrap a gRPC client reads from $GRPC_XDS_BOOTSTRAP (gRFC A27):
 * where the control plane is (this host's daemon, over plain TCP on
 * loopback) and who the client is. The same file serves every service on
 * the host: the node id names the host, not the service.
 */
export interface XdsBootstrap {
  xds_servers: Array<{
    server_uri: string;
    channel_creds: XdsChannelCreds[];
    server_features: string[];
  }>;
  node: { id: string; cluster: string; locality: Record<string, never> };
}

/**
 * How the client reaches the control plane: plaintext, or TLS as gRFC A65
 * puts it in the bootstrap (the file-watcher certificate provider's config
 * of gRFC A29: files re-read every `refresh_interval`; no CA file means the
 * system's roots).
 */
export type XdsChannelCreds =
  | { type: 'insecure' }
  | { type: 'tls'; config: { ca_certificate_file?: string; certificate_file?: string; private_key_file?: string; refresh_interval: string } };

/** TLS files for the bootstrap's channel_creds, as absolute paths. */
export interface XdsBootstrapTls {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

export function xdsBootstrap(opts: { server: string; nodeId?: string | undefined; tls?: XdsBootstrapTls | undefined }): XdsBootstrap {
  return {
    xds_servers: [{ server_uri: connectable(opts.server), channel_creds: [channelCreds(opts.tls)], server_features: ['xds_v3'] }],
    node: {
      id: opts.nodeId ?? `canonport~${hostname()}`,
      cluster: 'canonport',
      // grpc-js-xds 1.14 rejects a node without a locality ("locality field missing").
      locality: {},
    },
  };
}

function channelCreds(tls: XdsBootstrapTls | undefined): XdsChannelCreds {
  if (!tls) return { type: 'insecure' };
  return {
    type: 'tls',
    config: {
      ...(tls.ca ? { ca_certificate_file: tls.ca } : {}),
      ...(tls.cert ? { certificate_file: tls.cert } : {}),
      ...(tls.key ? { private_key_file: tls.key } : {}),
      refresh_interval: '600s',
    },
  };
}

/**
 * A wildcard listen address (the Docker image's CANONPORT_GRPC is
 * 0.0.0.0:13655) is no place to dial: the daemon is reached on loopback,
 * as the image's health check does.
 */
function connectable(server: string): string {
  if (server.startsWith('0.0.0.0:')) return `127.0.0.1:${server.slice('0.0.0.0:'.length)}`;
  if (server.startsWith('[::]:')) return `[::1]:${server.slice('[::]:'.length)}`;
  return server;
}
