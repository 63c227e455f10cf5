import { describe, expect, it } from 'vitest';
import { addNodeUser, startEtcd } from './helpers/etcd.js';

/** The etcd the cluster tests stand on: if these fail, nothing else in cluster-*.test.ts means anything. */
describe('test etcd', () => {
  it('starts one member, serves puts, counts them, and stops', async () => {
    const etcd = await startEtcd();
    try {
      const before = await etcd.revision();
      await etcd.etcdctl(['put', 'k', 'v']);
      expect(await etcd.revision()).toBe(before + 1);
      expect(await etcd.etcdctl(['get', '--print-value-only', 'k'])).toBe('v\n');
      expect(await etcd.metric('etcd_debugging_mvcc_put_total')).toBeGreaterThanOrEqual(1);
    } finally {
      await etcd.stop();
    }
    expect(etcd.members[0]!.proc!.exitCode ?? etcd.members[0]!.proc!.signalCode).not.toBeNull();
  });

  it('starts three members that keep serving with one killed, and a killed member rejoins', async () => {
    const etcd = await startEtcd({ members: 3 });
    try {
      await etcd.etcdctl(['put', 'a', '1']);
      await etcd.kill(0);
      await etcd.waitForLeader();
      await etcd.etcdctl(['put', 'b', '2']);
      expect(await etcd.etcdctl(['get', '--print-value-only', 'b'])).toBe('2\n');
      await etcd.restart(0);
      const out = await etcd.etcdctl(['get', '--print-value-only', 'b'], { endpoints: [`http://${etcd.endpoints[0]}`] });
      expect(out).toBe('2\n');
    } finally {
      await etcd.stop();
    }
  });

  it('serves TLS with client certificates, and auth with a role limited to one node\'s keys', async () => {
    const etcd = await startEtcd({ tls: true, auth: true });
    try {
      await addNodeUser(etcd, { user: 'node-a', password: 'pw-a', prefix: '/cp', node: 'a' });
      await etcd.etcdctl(['put', '/cp/v1/listeners/a/12082', 'x'], { user: 'node-a:pw-a' });
      await etcd.etcdctl(['put', '/cp/v1/nodes/a', 'x'], { user: 'node-a:pw-a' });
      await expect(etcd.etcdctl(['put', '/cp/v1/nodes/b', 'x'], { user: 'node-a:pw-a' })).rejects.toThrow(/permission denied/);
      await expect(etcd.etcdctl(['put', '/other', 'x'], { user: 'node-a:pw-a' })).rejects.toThrow(/permission denied/);
      await expect(etcd.etcdctl(['get', 'x'], { user: 'node-a:wrong' })).rejects.toThrow(/authentication failed/);
      expect(await etcd.etcdctl(['get', '--prefix', '--keys-only', '/cp/'], { user: 'node-a:pw-a' })).toContain('/cp/v1/nodes/a');
    } finally {
      await etcd.stop();
    }
  });
});
