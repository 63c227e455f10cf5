import etcd3 from 'etcd3';
import type { Etcd3 } from 'etcd3';
import { encodeInstance, encodeNode, instanceKey, nodeKey, type InstanceRecord, type NodeRecord } from '../../src/cluster/keys.js';

/**
 * A writer of the cluster prefix that is not a daemon: what a host with
 * write access to etcd (its own node's prefix, or more) can put there by
 * hand (issue 21's hostile etcd writer). Values go through a real etcd3
 * client, under a lease of their own when `live` (as a daemon's keys are)
 * or without one; `put` takes any bytes, so values too large to be ours
 * can be written too.
 */
export interface EtcdWriter {
  client: Etcd3;
  /** A lease for keys that should look live (granted once, kept alive while the writer is open). */
  lease(): Promise<string>;
  put(key: string, value: string | Buffer, opts?: { live?: boolean }): Promise<void>;
  /** Many puts, `concurrency` at a time. */
  putAll(entries: Iterable<[string, string | Buffer]>, opts?: { live?: boolean; concurrency?: number }): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  delete(key: string): Promise<void>;
  close(): void;
}

/** `etcd://HOST:PORT[,…]` or `HOST:PORT`: a client for it. */
export function etcdWriter(url: string): EtcdWriter {
  const hosts = url
    .replace(/^etcd:\/\//, '')
    .split(',')
    .map((h) => `http://${h}`);
  // Large enough for any reply this writer asks for (it reads nothing big).
  const client = new etcd3.Etcd3({ hosts, grpcOptions: { 'grpc.max_receive_message_length': 64 * 1024 * 1024 } });
  let leased: Promise<{ id: string; lease: ReturnType<Etcd3['lease']> }> | undefined;
  const lease = async () => {
    leased ??= (async () => {
      const l = client.lease(30, { autoKeepAlive: true });
      l.on('lost', () => undefined);
      return { id: await l.grant(), lease: l };
    })();
    return (await leased).id;
  };
  const put = async (key: string, value: string | Buffer, opts: { live?: boolean } = {}) => {
    const b = client.put(key).value(value);
    if (opts.live) await b.lease(await lease());
    else await b;
  };
  return {
    client,
    lease,
    put,
    async putAll(entries, opts = {}) {
      const list = [...entries];
      const concurrency = opts.concurrency ?? 16;
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(concurrency, list.length) }, async () => {
          while (next < list.length) {
            const [k, v] = list[next++]!;
            await put(k, v, opts);
          }
        }),
      );
    },
    async deletePrefix(prefix) {
      await client.delete().prefix(prefix);
    },
    async delete(key) {
      await client.delete().key(key);
    },
    close() {
      void leased?.then(({ lease: l }) => l.release()).catch(() => undefined);
      client.close();
    },
  };
}

/** A node record as a daemon would publish it. */
export function nodeValue(name: string, addresses: string[]): string {
  const r: NodeRecord = { name, addresses, canonportVersion: '0.0.0-hostile', registryDigest: '', started: new Date().toISOString() };
  return encodeNode(r);
}

/** An instance record, ready, on `port`, for `services`, bound to every address (its node's addresses answer). */
export function instanceValue(port: number, services: string[], over: Partial<InstanceRecord> = {}): string {
  const now = new Date().toISOString();
  return encodeInstance({
    port,
    services,
    scheme: 'base32',
    version: '',
    versionSource: '',
    since: now,
    bind: [{ family: 'tcp6', address: '::' }],
    protocol: 'tcp',
    namespace: 'host',
    readiness: { state: 'ready', since: now, by: 'tcp' },
    ...over,
  });
}

export { instanceKey, nodeKey };
