import type { ListenerRecord, NodeRecord } from '../../src/cluster/keys.js';

/** Records as the cluster tests write them by hand (no etcd): a node at `addresses`, a listener of api on a wildcard bind. */
export const nodeRecord = (name: string, addresses = ['10.0.0.1']): NodeRecord => ({ name, addresses, canonportVersion: '0.1.0', registryDigest: '', started: '2024-01-01T00:00:00.000Z' });

export const listenerRecord = (port: number, over: Partial<ListenerRecord> = {}): ListenerRecord => ({
  port,
  services: ['api'],
  scheme: 'base32',
  version: '',
  versionSource: '',
  since: '2024-01-01T00:00:00.000Z',
  bind: [{ family: 'tcp', address: '0.0.0.0' }],
  ...over,
});
