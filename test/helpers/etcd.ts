import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stopChild } from './child.js';
import { freePort } from './ports.js';
import { requireTool } from './tools.js';

/**
 * Real etcd (Debian's etcd-server 3.4) for the cluster tests: one member or
 * a three-member cluster on explicit ports, temporary data directories,
 * optional TLS (certificates made here with openssl) and optional auth
 * (a root user plus users with roles limited to key prefixes).
 *
 * Members are stopped by PID (SIGTERM, then SIGKILL), never by name: other
 * engineers' tests run etcd on the same machine.
 */

const run = promisify(execFile);

export interface EtcdTls {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

export interface EtcdMemberSpec {
  name: string;
  clientPort: number;
  peerPort: number;
  metricsPort: number;
  dataDir: string;
}

export interface EtcdMember extends EtcdMemberSpec {
  proc: ChildProcess | undefined;
  /** The last lines etcd wrote, for failure messages. */
  log: string[];
}

export interface EtcdAuth {
  rootPassword: string;
}

export interface EtcdCluster {
  members: EtcdMember[];
  /** HOST:PORT of every member's client listener on `host`. */
  endpoints: string[];
  /** etcd://HOST:PORT,… as canonport's --cluster takes it. */
  url: string;
  /** Every host the client listeners are bound to (127.0.0.1 plus `extraHosts`). */
  hosts: string[];
  tls: EtcdTls | undefined;
  auth: EtcdAuth | undefined;
  /** Runs etcdctl against the live members as root (when auth is on) with the TLS files. */
  etcdctl(args: string[], opts?: { user?: string; endpoints?: string[] }): Promise<string>;
  /** SIGKILL (default) or SIGTERM one member; resolves when it has exited. */
  kill(index: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts a stopped member again on the same ports and data. Resolves when it is healthy. */
  restart(index: number): Promise<void>;
  /** Kills every member (SIGKILL), keeping their data for restartAll. */
  killAll(): Promise<void>;
  restartAll(): Promise<void>;
  /** The sum of a Prometheus series over the live members' /metrics. */
  metric(name: string): Promise<number>;
  /** The store's current revision, read through a live member. */
  revision(): Promise<number>;
  /**
   * Resolves when every live member names the same live leader. A write sent
   * while a killed leader is being replaced can hang until etcd's request
   * timeout (longer than etcdctl's): wait for this first.
   */
  waitForLeader(timeoutMs?: number): Promise<void>;
  /** Stops every member (SIGTERM, then SIGKILL) and removes the data. */
  stop(): Promise<void>;
}

export interface StartEtcdOptions {
  members?: 1 | 3;
  /** Extra addresses the client listeners bind to (a bridge address that network namespaces reach). */
  extraHosts?: string[];
  tls?: boolean;
  auth?: boolean;
  /** Extra etcd flags for every member. */
  flags?: string[];
}

/** Every etcd process started by this module in this process, killed on exit if a test did not stop it. */
const live = new Set<ChildProcess>();
/** Data directories not yet removed (on tmpfs they hold memory): removed on exit too. */
const roots = new Set<string>();
process.once('exit', () => {
  for (const p of live) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

/** The run's own directory on /dev/shm (test/global-setup.ts), read once: runCli hides CANONPORT_* variables while a command runs. */
const RUN_SHM = process.env.CANONPORT_TEST_SHM;

/** A directory for etcd's data: on tmpfs when there is one, since etcd fsyncs every write; the run's own there (the bench has none). */
function dataRoot(): string {
  return RUN_SHM ?? (existsSync('/dev/shm') ? '/dev/shm' : tmpdir());
}

export async function startEtcd(opts: StartEtcdOptions = {}): Promise<EtcdCluster> {
  const etcdBin = requireTool('etcd', 'etcd-server');
  const etcdctlBin = requireTool('etcdctl', 'etcd-client');
  const n = opts.members ?? 1;
  const hosts = ['127.0.0.1', ...(opts.extraHosts ?? [])];
  const root = mkdtempSync(join(dataRoot(), 'canonport-etcd-'));
  roots.add(root);
  const tls = opts.tls ? makeTls(join(root, 'tls'), hosts) : undefined;
  const scheme = tls ? 'https' : 'http';
  const specs: EtcdMemberSpec[] = [];
  for (let i = 0; i < n; i++) {
    specs.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort(), metricsPort: await freePort(), dataDir: join(root, `m${i}`) });
  }
  const token = `cp-${process.pid}-${specs[0]!.clientPort}`;
  const initialCluster = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peerPort}`).join(',');
  const argsOf = (s: EtcdMemberSpec): string[] => [
    '--name', s.name,
    '--data-dir', s.dataDir,
    '--listen-client-urls', hosts.map((h) => `${scheme}://${h}:${s.clientPort}`).join(','),
    '--advertise-client-urls', `${scheme}://127.0.0.1:${s.clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${s.peerPort}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${s.peerPort}`,
    '--initial-cluster', initialCluster,
    '--initial-cluster-token', token,
    '--initial-cluster-state', 'new',
    // A plain-HTTP metrics listener, so the tests read counters without client certificates.
    '--listen-metrics-urls', `http://127.0.0.1:${s.metricsPort}`,
    '--logger', 'zap',
    '--log-level', 'warn',
    ...(tls ? ['--cert-file', tls.serverCert, '--key-file', tls.serverKey, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : []),
    ...(opts.flags ?? []),
  ];
  const members: EtcdMember[] = specs.map((s) => ({ ...s, proc: undefined, log: [] }));

  const spawnMember = (m: EtcdMember): void => {
    const proc = spawn(etcdBin, argsOf(m), { stdio: ['ignore', 'ignore', 'pipe'] });
    live.add(proc);
    proc.once('exit', () => live.delete(proc));
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (chunk: string) => {
      m.log.push(...chunk.split('\n').filter(Boolean));
      if (m.log.length > 50) m.log.splice(0, m.log.length - 50);
    });
    m.proc = proc;
  };

  const endpoints = members.map((m) => `127.0.0.1:${m.clientPort}`);
  const tlsArgs = tls ? ['--cacert', tls.ca, '--cert', tls.clientCert, '--key', tls.clientKey] : [];
  let auth: EtcdAuth | undefined;
  const alive = () => members.filter((m) => m.proc && m.proc.exitCode === null && m.proc.signalCode === null);

  const etcdctl = async (args: string[], o: { user?: string; endpoints?: string[] } = {}): Promise<string> => {
    const eps = o.endpoints ?? alive().map((m) => `${scheme}://127.0.0.1:${m.clientPort}`);
    const user = o.user ?? (auth ? `root:${auth.rootPassword}` : undefined);
    const full = [`--endpoints=${eps.join(',')}`, '--dial-timeout=2s', '--command-timeout=5s', ...tlsArgs, ...(user ? [`--user=${user}`] : []), ...args];
    try {
      const { stdout } = await run(etcdctlBin, full, { env: { ...process.env, ETCDCTL_API: '3' } });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`etcdctl ${args.join(' ')} failed: ${e.stderr || e.message}`);
    }
  };

  const waitHealthy = async (ms: EtcdMember[], timeoutMs = 20_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const dead = ms.find((m) => m.proc?.exitCode !== null);
      if (dead) throw new Error(`etcd ${dead.name} exited (${dead.proc?.exitCode}): ${dead.log.slice(-10).join('\n')}`);
      // A plain range through each member proves it serves reads and has a leader (health checks only look at the leader).
      const ok = await Promise.all(
        ms.map((m) => etcdctl(['get', '--consistency=l', 'canonport-health-probe'], { endpoints: [`${scheme}://127.0.0.1:${m.clientPort}`] }).then(() => true, () => false)),
      );
      if (ok.every(Boolean)) return;
      if (Date.now() > deadline) throw new Error(`etcd not healthy within ${timeoutMs} ms: ${ms.map((m) => `${m.name}: ${m.log.slice(-5).join(' | ')}`).join('\n')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const killMember = async (m: EtcdMember, signal: NodeJS.Signals): Promise<void> => {
    if (m.proc) await stopChild(m.proc, { signal, killAfterMs: 5000 });
  };

  for (const m of members) spawnMember(m);
  try {
    await waitHealthy(members);
    if (opts.auth) {
      const rootPassword = `root-${process.pid}`;
      await etcdctl(['user', 'add', `root:${rootPassword}`]);
      await etcdctl(['auth', 'enable']);
      auth = { rootPassword };
    }
  } catch (err) {
    for (const m of members) await killMember(m, 'SIGKILL');
    rmSync(root, { recursive: true, force: true });
    throw err;
  }

  const cluster: EtcdCluster = {
    members,
    endpoints,
    url: `etcd://${endpoints.join(',')}`,
    hosts,
    tls,
    auth,
    etcdctl,
    kill: (i, signal = 'SIGKILL') => killMember(members[i]!, signal),
    async restart(i) {
      const m = members[i]!;
      if (m.proc && m.proc.exitCode === null && m.proc.signalCode === null) return;
      spawnMember(m);
      await waitHealthy([m]);
    },
    async killAll() {
      await Promise.all(members.map((m) => killMember(m, 'SIGKILL')));
    },
    async restartAll() {
      for (const m of members) if (!m.proc || m.proc.exitCode !== null || m.proc.signalCode !== null) spawnMember(m);
      await waitHealthy(members);
    },
    async metric(name) {
      let sum = 0;
      for (const m of alive()) {
        const text = await (await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`)).text();
        for (const line of text.split('\n')) {
          const match = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`).exec(line);
          if (match) sum += Number(match[2]);
        }
      }
      return sum;
    },
    async revision() {
      const out = await etcdctl(['endpoint', 'status', '--write-out=json'], { endpoints: [`${scheme}://127.0.0.1:${alive()[0]!.clientPort}`] });
      return Number((JSON.parse(out) as { Status: { header: { revision: number } } }[])[0]!.Status.header.revision);
    },
    async waitForLeader(timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const live = alive();
        const ids = await etcdctl(['endpoint', 'status', '--write-out=json'], { endpoints: live.map((m) => `${scheme}://127.0.0.1:${m.clientPort}`) })
          .then((out) => (JSON.parse(out.replace(/(_id|leader)":(\d+)/g, '$1":"$2"')) as { Status: { header: { member_id: string }; leader: string } }[]).map((s) => s.Status), () => []);
        const leaders = new Set(ids.map((s) => s.leader));
        const members = new Set(ids.map((s) => s.header.member_id));
        if (ids.length === live.length && leaders.size === 1 && members.has([...leaders][0]!)) return;
        if (Date.now() > deadline) throw new Error(`no leader among ${live.map((m) => m.name).join(', ')} within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    async stop() {
      await Promise.all(members.map((m) => killMember(m, 'SIGTERM')));
      rmSync(root, { recursive: true, force: true });
      roots.delete(root);
    },
  };
  return cluster;
}

/**
 * Adds a user whose role reads the whole `prefix` and writes only the keys
 * one node owns (`<prefix>/v2/nodes/<node>/…`, and for the v1 mirror
 * `<prefix>/v1/nodes/<node>` and `<prefix>/v1/listeners/<node>/…`), the role
 * docs/cluster.md recommends. Needs a cluster started with `auth: true`.
 */
export async function addNodeUser(cluster: EtcdCluster, opts: { user: string; password: string; prefix: string; node: string }): Promise<void> {
  const role = `canonport-${opts.node}`;
  await cluster.etcdctl(['role', 'add', role]);
  await cluster.etcdctl(['role', 'grant-permission', role, '--prefix=true', 'read', `${opts.prefix}/`]);
  await cluster.etcdctl(['role', 'grant-permission', role, '--prefix=true', 'readwrite', `${opts.prefix}/v2/nodes/${opts.node}/`]);
  await cluster.etcdctl(['role', 'grant-permission', role, 'readwrite', `${opts.prefix}/v1/nodes/${opts.node}`]);
  await cluster.etcdctl(['role', 'grant-permission', role, '--prefix=true', 'readwrite', `${opts.prefix}/v1/listeners/${opts.node}/`]);
  await cluster.etcdctl(['user', 'add', `${opts.user}:${opts.password}`]);
  await cluster.etcdctl(['user', 'grant-role', opts.user, role]);
}

/** A CA, a server certificate valid for `hosts` (IP SANs) and a client certificate, made with openssl. */
function makeTls(dir: string, hosts: string[]): EtcdTls {
  requireTool('openssl', 'openssl');
  execFileSync('mkdir', ['-p', dir]);
  const f = (name: string) => join(dir, name);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=canonport test CA', '-keyout', f('ca.key'), '-out', f('ca.pem'));
  const leaf = (name: string, cn: string, ext: string) => {
    writeFileSync(f(`${name}.ext`), ext);
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`));
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', f(`${name}.ext`), '-out', f(`${name}.pem`));
  };
  const sans = ['DNS:localhost', ...hosts.map((h) => `IP:${h}`)].join(',');
  leaf('server', 'etcd', `subjectAltName=${sans}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  leaf('client', 'canonport', 'extendedKeyUsage=clientAuth\n');
  return { dir, ca: f('ca.pem'), serverCert: f('server.pem'), serverKey: f('server.key'), clientCert: f('client.pem'), clientKey: f('client.key') };
}
