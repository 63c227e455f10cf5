import etcd3 from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { etcdClientOptions } from '../src/cluster/cluster.js';
import { etcdReason } from '../src/cluster/etcd-errors.js';
import { addNodeUser, startEtcd, type EtcdCluster } from './helpers/etcd.js';
import { closedPort } from './helpers/ports.js';
import { startServe, type LogLine } from './helpers/serve-process.js';

/**
 * etcd's failures in canonport's words (src/cluster/etcd-errors.ts), from
 * real errors of the real etcd client: a closed port, its circuit breaker
 * opening after that, a wrong password, a write outside the node's role,
 * and TLS the client does not trust; then through a real `canonport serve`
 * whose etcd is not there.
 */

const { Etcd3 } = etcd3;
/** The library's own text the translation must keep out of canonport's logs. */
const LIBRARY_TEXT = /circuit breaker|Resolution note|UNAVAILABLE|Execution prevented|etcdserver:/;

/** The error of one call through a client, or a failure if the call succeeds. */
async function errorOf(client: InstanceType<typeof Etcd3>, call: (c: InstanceType<typeof Etcd3>) => Promise<unknown>): Promise<unknown> {
  try {
    await call(client);
  } catch (err) {
    return err;
  }
  throw new Error('the call succeeded; a failure was expected');
}

describe('etcdReason, on the etcd client’s real errors', () => {
  it('a closed port: which etcd refused; then the breaker’s errors keep that client’s reason, and say something of their own without one', async () => {
    const at = `127.0.0.1:${await closedPort()}`;
    const client = new Etcd3({ hosts: `http://${at}`, dialTimeout: 1000 });
    try {
      const first = await errorOf(client, (c) => c.get('x').string());
      const refused = etcdReason(first, client);
      expect(refused).toBe(`etcd at ${at} refused the connection (is etcd running and listening there?)`);
      // The client's circuit breaker opens after a failure: its error says only that.
      const breaker = await errorOf(client, (c) => c.get('x').string());
      expect(String(breaker)).toMatch(/circuit breaker is open/);
      expect(etcdReason(breaker, client)).toBe(refused);
      expect(etcdReason(breaker, {})).toBe('etcd failed several calls in a row; the client waits a few seconds before it calls again');
      expect(etcdReason(breaker)).toBe('etcd failed several calls in a row; the client waits a few seconds before it calls again');
    } finally {
      client.close();
    }
  });

  describe('against a real etcd with TLS and users', () => {
    let etcd: EtcdCluster;
    beforeAll(async () => {
      etcd = await startEtcd({ tls: true, auth: true });
      await addNodeUser(etcd, { user: 'web-1', password: 'right', prefix: '/canonport', node: 'web-1' });
    }, 60_000);
    afterAll(() => etcd?.stop());

    /** A client made as the daemon makes it (etcdClientOptions), as user web-1; `trust: false` leaves etcd's CA out. */
    const client = (opts: { password?: string; trust?: boolean }) =>
      new Etcd3(
        etcdClientOptions({
          endpoints: etcd.url,
          tls: { caFile: opts.trust === false ? undefined : etcd.tls!.ca, certFile: etcd.tls!.clientCert, keyFile: etcd.tls!.clientKey },
          auth: { username: 'web-1', password: opts.password ?? 'right' },
        } as Parameters<typeof etcdClientOptions>[0]),
      );

    it('a wrong password: which settings to look at', async () => {
      const c = client({ password: 'wrong' });
      try {
        expect(etcdReason(await errorOf(c, (x) => x.get('/canonport/v1/nodes/web-1').string()))).toBe('etcd refused the user name or password (--cluster-user, --cluster-password-file)');
      } finally {
        c.close();
      }
    });

    it('a write outside the node’s role: permission, not “unreachable”', async () => {
      const c = client({});
      try {
        expect(etcdReason(await errorOf(c, async (x) => x.put('/canonport/v1/nodes/web-2').value('{}')))).toBe("etcd refused: this node's etcd user has no permission for the key (see its role)");
      } finally {
        c.close();
      }
    });

    it('a certificate the client does not trust (the client says only "Last error: null"): the TLS flags to check', async () => {
      const c = client({ trust: false });
      try {
        const reason = etcdReason(await errorOf(c, (x) => x.get('x').string()));
        expect(reason).toBe("no connection to etcd could be made and the etcd client gave no reason; with TLS, check that --cluster-ca signed etcd's certificate and that etcd accepts --cluster-cert");
        expect(reason).not.toMatch(LIBRARY_TEXT);
      } finally {
        c.close();
      }
    });
  });
});

describe('canonport serve with its etcd not there', () => {
  it('logs CP_CLUSTER_UNREACHABLE warnings in canonport’s words, once per reason, never the client’s breaker or grpc-js text', async () => {
    const at = `127.0.0.1:${await closedPort()}`;
    const d = await startServe(['--cluster', `etcd://${at}`, '--node', 'web-1']);
    try {
      const unreachable = (l: LogLine) => l.code === 'CP_CLUSTER_UNREACHABLE';
      await d.waitForLog((l) => unreachable(l) && /list/.test(String(l.op)));
      await d.waitForLog((l) => unreachable(l) && /publish/.test(String(l.msg)));
      // Several retries later (backoff from 0.5 s): the breaker has opened, and nothing new was said.
      await new Promise((r) => setTimeout(r, 3000));
      const lines = d.logs.filter(unreachable);
      expect(lines.length).toBeGreaterThanOrEqual(2);
      for (const l of lines) {
        expect(l.err).toBe(`etcd at ${at} refused the connection (is etcd running and listening there?)`);
        expect(JSON.stringify(l)).not.toMatch(LIBRARY_TEXT);
      }
      expect(lines.filter((l) => l.op === 'list')).toHaveLength(1);
    } finally {
      await d.stop();
    }
  });
});

describe('canonport serve losing its lease', () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd();
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  /** The daemon's one CP_CLUSTER_LEASE_LOST line, checked free of the client's text. */
  async function leaseLost(d: Awaited<ReturnType<typeof startServe>>, ms: number): Promise<LogLine> {
    const lost = await d.waitForLog((l) => l.code === 'CP_CLUSTER_LEASE_LOST', ms);
    expect(JSON.stringify(lost)).not.toMatch(LIBRARY_TEXT);
    expect(String(lost.why)).not.toMatch(/^Lease \d+|is expired or revoked/);
    return lost;
  }

  it('revoked in etcd: the reason says etcd no longer has the lease, not the client’s "Lease <id> is expired or revoked"', async () => {
    const d = await startServe(['--cluster', etcd.url, '--node', 'web-revoked', '--lease-ttl', '5']);
    try {
      const granted = await d.waitForLog((l) => l.msg === 'cluster lease granted');
      await etcd.etcdctl(['lease', 'revoke', BigInt(String(granted.lease)).toString(16)]);
      const lost = await leaseLost(d, 20_000);
      expect(lost.why).toBe("etcd no longer has this node's lease: it expired (etcd was out of reach longer than the lease TTL) or was revoked");
      // And it publishes again under a new lease.
      const again = await d.waitForLog((l) => l.msg === 'cluster lease granted' && l.lease !== granted.lease, 20_000);
      expect(again.reason).toBe('lost');
    } finally {
      await d.stop();
    }
  });

  it('etcd gone for two TTLs: the reason says how long etcd did not answer, and every warning meanwhile is in canonport’s words', async () => {
    const d = await startServe(['--cluster', etcd.url, '--node', 'web-silent', '--lease-ttl', '2']);
    try {
      await d.waitForLog((l) => l.msg === 'cluster lease granted');
      const from = d.logs.length;
      await etcd.killAll();
      const lost = await leaseLost(d, 30_000);
      expect(lost.why).toBe("etcd answered none of the lease's keepalives for 4 s (two lease TTLs): etcd is down or out of reach");
      await d.waitForLog((l) => l.code === 'CP_CLUSTER_UNREACHABLE', 20_000);
      // Every warning since etcd went: the view's and the publisher's, and the lease's.
      const warnings = d.logs.slice(from).filter((x) => typeof x.level === 'number' && x.level >= 40);
      expect(warnings.map((l) => l.code)).toContain('CP_CLUSTER_UNREACHABLE');
      for (const l of warnings) {
        expect(JSON.stringify(l)).not.toMatch(LIBRARY_TEXT);
        expect(String(l.code), JSON.stringify(l)).toMatch(/^CP_/);
      }
    } finally {
      await d.stop();
      await etcd.restartAll();
    }
  });
});
