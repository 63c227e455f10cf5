#!/usr/bin/env node
// @ts-check
/**
 * `node test/sandbox.mjs COMMAND [ARGS…]` runs COMMAND (vitest, from the npm
 * scripts) in a network and mount namespace of its own, and for a user who
 * is not root also in a user namespace where they are root:
 *
 *   unshare --user --map-root-user [--map-auto] --net --mount   (not root)
 *   unshare --net --mount                                        (root, as CI)
 *
 * Why the whole run and not each lab: the tests' own clients (dig, Node's
 * resolver, grpc-js, fetch) run in the vitest process and must reach the
 * labs' bridges and namespaces (test/helpers/netns.ts), so the namespace the
 * labs are built in has to be the one vitest runs in. And one namespace per
 * run isolates whole runs: a private loopback, so port 53, the cluster labs'
 * fixed ports and the port bands of test/helpers/ports.ts never meet another
 * engineer's run on the same machine. Inside:
 *
 * - loopback is up, and `eth0` (one end of a veth pair) holds the address
 *   SANDBOX_ADDRESS, so the sandbox, like a host, has an address that is not
 *   loopback (tests call the daemon "from another address" with it), and it
 *   comes first among the interfaces, before any lab's bridge. There is no
 *   route out;
 * - names resolve from /etc/hosts, and nothing else does: /etc/resolv.conf
 *   (bound over, in the mount namespace) names a resolver on the sandbox's
 *   loopback that answers NXDOMAIN to everything. Tests then meet the same
 *   "no such host" on every machine, never the host's DNS, and never a
 *   timeout on a resolver they cannot reach;
 * - `/run/netns` and `/etc/netns` are private tmpfs, so `ip netns add` works
 *   (iproute2 keeps its names there, a fixed path), labs can give a host its
 *   own resolv.conf (`ip netns exec` binds /etc/netns/NAME/ in), and all of
 *   it dies with the run; where one does not exist and cannot be made (a
 *   user without root), its parent is rebuilt on a tmpfs with everything of
 *   the real one bound back in;
 * - uid 0 maps to the user; with subordinate ids (/etc/subuid, newuidmap
 *   from the Debian package uidmap) `--map-auto` maps 1–65535 too, so the
 *   deploy tests' `setpriv --reuid=65534` really runs the daemon as another,
 *   unprivileged user (requireUserSwitch in test/helpers/sandbox.ts);
 * - the one way out is the npm registry, for the tests that install
 *   canonport as users do (test/package.test.ts): this process (outside)
 *   keeps an HTTP CONNECT proxy on a Unix socket that tunnels only to the
 *   registry's host and port, and the process inside relays a loopback port
 *   to it and hands npm that port as its proxy (`npm_config_https_proxy`).
 *   slirp4netns or pasta would give the namespace the whole network instead
 *   (needs /dev/net/tun open to users, which this machine does not have), and
 *   a test that reaches anything but loopback, its own namespaces and the
 *   registry is a test that should fail. Node has no CONNECT proxy with an
 *   allow-list over a Unix socket built in, hence the forty lines here.
 *
 * - a cgroup v2 subtree of the run's own, seen as the whole hierarchy (a
 *   cgroup namespace, cgroup2 mounted at $CANONPORT_TEST_CGROUP), so
 *   the labs' containers get real cgroups (runCgroup says where it comes
 *   from, and why a user without a delegated one has none).
 *
 * The run's temporary directories (TMPDIR, and one on /dev/shm for etcd's
 * data) and its cgroup are made here and removed here after the command,
 * even when it was killed before its own clean-up.
 *
 * The command runs with CANONPORT_TEST_SANDBOX=inside. Already inside (or
 * with CANONPORT_TEST_SANDBOX=off, to debug without it), the command just
 * runs. Exit code: the command's.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer } from 'node:net';
import { constants, tmpdir, userInfo } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import dns2 from 'dns2';

const ENV = 'CANONPORT_TEST_SANDBOX';
/** The sandbox's own address on eth0 (10.199/16: not the labs' 10.200–249, nor acl-netns's 10.77). */
const SANDBOX_ADDRESS = '10.199.0.2/24';
/** Where its resolver listens (port 53; /etc/resolv.conf has no port syntax): no test binds it. */
const RESOLVER = '127.0.0.53';
const SOCKET_ENV = 'CANONPORT_TEST_REGISTRY_SOCKET';
/** Inside: where the run's cgroup v2 subtree is mounted (test/helpers/netns.ts reads it); else why there is none. */
const CGROUP_ENV = 'CANONPORT_TEST_CGROUP';
const CGROUP_MISSING_ENV = 'CANONPORT_TEST_CGROUP_MISSING';
const REPO = fileURLToPath(new URL('..', import.meta.url));

/** Runs `cmd` as a child with `env`, passing on SIGTERM and SIGHUP (SIGINT from a terminal reaches it directly); resolves with its exit code. */
function runChild(cmd, env) {
  return new Promise((resolve) => {
    const child = spawn(cmd[0], cmd.slice(1), { stdio: 'inherit', env });
    for (const sig of /** @type {const} */ (['SIGTERM', 'SIGHUP'])) process.on(sig, () => child.kill(sig));
    // The terminal sends SIGINT to the whole process group: the command decides what it means.
    process.on('SIGINT', () => undefined);
    child.once('error', (err) => {
      console.error(`sandbox: cannot run ${cmd[0]}: ${err.message}`);
      resolve(127);
    });
    child.once('exit', (code, signal) => resolve(code ?? 128 + (signal ? constants.signals[signal] : 0)));
  });
}

/** True when /etc/subuid or /etc/subgid gives the user (by name or number) subordinate ids. */
function hasSubordinateIds(file, name, id) {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .some((line) => {
        const [who, , count] = line.trim().split(':');
        return (who === name || who === String(id)) && Number(count) > 0;
      });
  } catch {
    return false; // no such file
  }
}

function onPath(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** The npm registry's host and port, the one place the proxy tunnels to. */
function registryTarget() {
  let url = process.env.npm_config_registry;
  if (!url) {
    try {
      url = execFileSync('npm', ['config', 'get', 'registry'], { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch {
      url = 'https://registry.npmjs.org/';
    }
  }
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || (u.protocol === 'http:' ? 80 : 443)) };
}

/** An HTTP CONNECT proxy on a Unix socket that tunnels to `target` only. */
function registryProxy(socketPath, target) {
  const server = createHttpServer((_req, res) => res.writeHead(405).end('only CONNECT to the npm registry\n'));
  /** Destinations refused so far, to say each once; at most 20 are said. */
  const refused = new Set();
  server.on('connect', (req, client, head) => {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(req.url ?? '');
    if (!m || m[1] !== target.host || Number(m[2]) !== target.port) {
      if (m && refused.size < 20 && !refused.has(req.url)) {
        refused.add(req.url);
        console.error(`sandbox: refused a connection from the tests to ${req.url} (only the npm registry, ${target.host}:${target.port}, is reachable)`);
      }
      client.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    const upstream = connect(target.port, target.host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on('error', () => (client.writable ? client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n') : client.destroy()));
    client.on('error', () => upstream.destroy());
  });
  server.listen(socketPath);
  return server;
}

async function outside(cmd) {
  const env = { ...process.env, PATH: `${join(REPO, 'node_modules', '.bin')}${delimiter}${process.env.PATH ?? ''}` };
  if (process.env[ENV] || process.platform !== 'linux') return runChild(cmd, env);
  if (!onPath('unshare')) {
    console.error('sandbox: `unshare` (util-linux) is missing; the tests run in namespaces of their own. Set CANONPORT_TEST_SANDBOX=off to run without (then the namespace tests need root).');
    return 1;
  }
  const uid = process.getuid?.() ?? 0;
  const ns = ['--net', '--mount'];
  if (uid !== 0) {
    const { username } = userInfo();
    const mapAuto =
      hasSubordinateIds('/etc/subuid', username, uid) && hasSubordinateIds('/etc/subgid', username, process.getgid?.() ?? uid) && onPath('newuidmap') && onPath('newgidmap');
    if (!mapAuto) {
      console.error(
        `sandbox: ${!onPath('newuidmap') ? 'newuidmap is missing (Debian package uidmap)' : `${username} has no subordinate ids in /etc/subuid and /etc/subgid`}: ` +
          'only uid 0 exists in the tests\' user namespace, so the tests that run the daemon as another user will fail. ' +
          `Once, as root: apt-get install -y uidmap && usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${username}`,
      );
    }
    ns.unshift('--user', '--map-root-user', ...(mapAuto ? ['--map-auto'] : []));
  }
  // Can we? (Ubuntu ≥ 23.10 restricts unprivileged user namespaces by default; so do some hardened kernels.)
  const probe = spawnSync('unshare', [...ns, 'true'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.error(
      `sandbox: cannot create the tests' namespaces (unshare ${ns.join(' ')}): ${probe.stderr.trim() || probe.error?.message}\n` +
        'Unprivileged user namespaces must be allowed (Debian allows them; on Ubuntu: sysctl kernel.apparmor_restrict_unprivileged_userns=0). ' +
        'CANONPORT_TEST_SANDBOX=off runs without the sandbox (then the namespace and port-53 tests need root).',
    );
    return 1;
  }
  // The run's cgroup (see runCgroup): the command starts in it, in a cgroup namespace whose root it is.
  const cgroup = runCgroup(uid, ns);
  if (!cgroup.missing) ns.push('--cgroup');
  // The run's temporary directories, removed here whatever happens inside (a killed vitest never runs its
  // teardown): `tmp` is the command's TMPDIR, `shm` holds etcd's data (test/global-setup.ts makes the
  // run's own directories in both and checks them). Open like /tmp: tests run daemons as other users.
  const dir = mkdtempSync(join(tmpdir(), 'canonport-sandbox-'));
  chmodSync(dir, 0o755);
  const tmp = join(dir, 'tmp');
  mkdirSync(tmp, { mode: 0o1777 });
  chmodSync(tmp, 0o1777);
  const shm = existsSync('/dev/shm') ? mkdtempSync('/dev/shm/canonport-sandbox-') : undefined;
  if (shm) chmodSync(shm, 0o1777);
  // test/preflight.sh builds genreport under the temporary directory it was given: name it before TMPDIR moves.
  const genreport = join(process.env.TMPDIR || '/tmp', 'canonport-genreport', 'genreport');
  const socketPath = join(dir, 'registry.sock');
  const proxy = registryProxy(socketPath, registryTarget());
  try {
    return await runChild([...cgroup.wrap, 'unshare', ...ns, '--', process.execPath, fileURLToPath(import.meta.url), '--inside', ...cmd], {
      ...env,
      [SOCKET_ENV]: socketPath,
      ...(cgroup.missing ? { [CGROUP_MISSING_ENV]: cgroup.missing } : { [CGROUP_ENV]: 'yes' }),
      CANONPORT_TEST_SANDBOX_DIR: dir,
      TMPDIR: tmp,
      ...(shm ? { CANONPORT_TEST_SHM_BASE: shm } : {}),
      ...(!env.CANONPORT_GENREPORT && existsSync(genreport) ? { CANONPORT_GENREPORT: genreport } : {}),
    });
  } finally {
    proxy.close();
    if (cgroup.dir) removeCgroup(cgroup.dir);
    removeAll(uid, [dir, shm].filter((d) => d !== undefined));
  }
}

/**
 * The run's own cgroup v2 subtree, which the containers of test/helpers/netns.ts (`addContainer({ cgroup })`)
 * are made in, so that a daemon reads a container's identity from a real /proc/<pid>/cgroup as in production.
 * The command starts in it, in a cgroup namespace whose root it is (`unshare --cgroup`), and inside() mounts
 * cgroup2 in the run's directory (CANONPORT_TEST_CGROUP): the run sees its subtree as the whole hierarchy (paths read
 * `0::/cx…/system.slice/docker-<id>.scope`, as a host's do), and may write it. Which subtree:
 *
 * - root: a new cgroup at the top of the hierarchy, removed (its processes killed first) after the command;
 * - a user who is not root: one made in the cgroup they are in, if it is theirs to write (delegated to
 *   them: a systemd user scope, a CI runner's container), removed likewise; else a systemd user scope
 *   with `Delegate=yes` (`systemd-run --user --scope`: needs systemd's user manager, as a login session
 *   on a systemd machine has), which systemd removes. cgroups belong to the root of the initial user
 *   namespace unless delegated: no namespace a user makes can write them (the kernel allows mounting
 *   cgroup2 in one, but its directories stay root's, and new hierarchies only in the initial cgroup
 *   namespace), so with neither the run has no cgroup of its own, and `missing` says why.
 *
 * `wrap` is the command prefix that starts the child in it; `dir` what to remove after (none for systemd's
 * scope); `missing` why there is none.
 */
function runCgroup(uid, ns) {
  const none = (missing) => ({ wrap: [], dir: undefined, missing });
  let mountInfo;
  let own;
  try {
    mountInfo = readFileSync('/proc/self/mountinfo', 'utf8');
    own = /^0::(\/.*)$/m.exec(readFileSync('/proc/self/cgroup', 'utf8'))?.[1];
  } catch {
    return none('no /proc/self/mountinfo or /proc/self/cgroup');
  }
  // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER
  const v2 = mountInfo
    .split('\n')
    .map((l) => l.split(' '))
    .find((f) => f[f.indexOf('-') + 1] === 'cgroup2' && f[3] === '/');
  if (!v2 || own === undefined) return none('no cgroup v2 hierarchy is mounted (neither /sys/fs/cgroup nor a hybrid host\'s /sys/fs/cgroup/unified)');
  const mount = v2[4].replace(/\\040/g, ' ');
  const name = `canonport-sandbox-${process.pid}`;
  const wrapIn = (dir) => ['sh', '-c', 'echo 0 > "$0/cgroup.procs" && exec "$@"', dir];
  const parent = uid === 0 ? mount : join(mount, own);
  try {
    const dir = join(parent, name);
    mkdirSync(dir);
    return { wrap: wrapIn(dir), dir, missing: undefined };
  } catch (err) {
    if (uid === 0) return none(`cannot make a cgroup in ${parent}: ${/** @type {Error} */ (err).message}`);
  }
  if (onPath('systemd-run')) {
    // The user manager's bus is found through XDG_RUNTIME_DIR, which runuser and su -c leave unset.
    const runtime = process.env.XDG_RUNTIME_DIR || `/run/user/${uid}`;
    const scope = ['env', `XDG_RUNTIME_DIR=${runtime}`, 'systemd-run', '--user', '--scope', '--quiet', '--collect', '-p', 'Delegate=yes', '--'];
    if (spawnSync(scope[0], [...scope.slice(1), 'unshare', ...ns, '--cgroup', 'true'], { stdio: 'ignore', timeout: 10_000 }).status === 0) {
      return { wrap: scope, dir: undefined, missing: undefined };
    }
  }
  return none(
    `no cgroup v2 subtree is delegated to ${userInfo().username}: the cgroup it runs in (${own === "/" ? mount : join(mount, own)}) is root's, and ` +
      '`systemd-run --user --scope -p Delegate=yes` fails (no systemd user manager: outside a systemd login session, or no systemd). ' +
      'See "What a contributor needs" in docs/tests.md',
  );
}

/** Kills what is left in the run's cgroup (cgroup.kill, Linux 5.14+) and removes it bottom-up. */
function removeCgroup(dir) {
  try {
    writeFileSync(join(dir, 'cgroup.kill'), '1');
  } catch {
    // older kernel: what is left keeps the cgroup busy, and rmdir below says so
  }
  const remove = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) remove(join(d, e.name));
    // Killed processes leave their cgroup a moment later: a few tries, then say what stays.
    for (let i = 0; ; i++) {
      try {
        rmdirSync(d);
        return;
      } catch (err) {
        if (i === 50) return console.error(`sandbox: could not remove the run's cgroup ${d}: ${/** @type {Error} */ (err).message}`);
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
      }
    }
  };
  try {
    remove(dir);
  } catch (err) {
    console.error(`sandbox: could not remove the run's cgroup ${dir}: ${/** @type {Error} */ (err).message}`);
  }
}

/**
 * Removes the run's directories. What a test's other users (subordinate ids) left there after a killed
 * run is not the user's to remove outside the namespace: then again as root of a user namespace.
 */
function removeAll(uid, dirs) {
  try {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  } catch {
    const r = spawnSync('unshare', [...(uid === 0 ? [] : ['--user', '--map-root-user', '--map-auto']), 'rm', '-rf', ...dirs], { encoding: 'utf8' });
    if (r.status !== 0) console.error(`sandbox: could not remove ${dirs.join(' ')}: ${r.stderr.trim()}`);
  }
}

/**
 * `dir` writable and private to the sandbox: a tmpfs on it. Where it does not
 * exist and cannot be made (a user without root may not write the real /run
 * or /etc), its parent is rebuilt on a tmpfs with each entry of the real one
 * bound back, and `dir` made in it.
 */
function privateDir(dir, scratch) {
  const mount = (...args) => execFileSync('mount', args, { stdio: 'pipe' });
  if (!existsSync(dir)) {
    try {
      mkdirSync(dir, { mode: 0o755 });
    } catch {
      const parent = dirname(dir);
      const old = mkdtempSync(join(scratch, 'parent-'));
      mount('--rbind', parent, old);
      mount('-t', 'tmpfs', '-o', 'mode=755', 'tmpfs', parent);
      for (const name of readdirSync(old)) {
        const from = join(old, name);
        const to = join(parent, name);
        const st = lstatSync(from);
        if (st.isSymbolicLink()) symlinkSync(readlinkSync(from), to);
        else {
          if (st.isDirectory()) mkdirSync(to);
          else writeFileSync(to, '');
          mount('--rbind', from, to);
        }
      }
      execFileSync('umount', ['-l', old], { stdio: 'pipe' });
      rmSync(old, { recursive: true, force: true });
      mkdirSync(dir, { mode: 0o755 });
    }
  }
  mount('-t', 'tmpfs', '-o', 'mode=755', 'tmpfs', dir);
}

/**
 * A resolver that knows no name: NXDOMAIN to every query (dns2 builds the
 * reply from the question), over UDP, where the system resolver asks.
 * /etc/resolv.conf (its target, where it is a link) points at it.
 */
async function hermeticResolver(scratch) {
  const { Packet } = dns2;
  const sock = createSocket('udp4');
  sock.on('message', (msg, from) => {
    try {
      const reply = Packet.createResponseFromRequest(Packet.parse(msg));
      reply.header.rcode = 3; // NXDOMAIN
      reply.header.ra = 1;
      sock.send(reply.toBuffer(), from.port, from.address);
    } catch {
      // not a DNS query: no answer
    }
  });
  await new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(53, RESOLVER, () => resolve(undefined));
  });
  const conf = join(scratch, 'resolv.conf');
  writeFileSync(conf, `# test/sandbox.mjs: a resolver that answers NXDOMAIN to every name\nnameserver ${RESOLVER}\n`);
  execFileSync('mount', ['--bind', conf, realpathSync('/etc/resolv.conf')], { stdio: 'pipe' });
  return sock;
}

/** Relays 127.0.0.1:<port> inside to the proxy's Unix socket outside; resolves with the port. */
function registryRelay(socketPath) {
  const server = createServer((c) => {
    const u = connect(socketPath);
    c.pipe(u).pipe(c);
    u.on('error', () => c.destroy());
    c.on('error', () => u.destroy());
  });
  return new Promise((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve({ server, port: /** @type {import('node:net').AddressInfo} */ (server.address()).port })));
}

async function inside(cmd) {
  let resolver;
  try {
    const ip = (...args) => execFileSync('ip', args, { stdio: 'pipe' });
    ip('link', 'set', 'lo', 'up');
    // A veth pair with both ends here: the `dummy` type is a module some kernels lack (this machine's).
    ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0-end');
    ip('addr', 'add', SANDBOX_ADDRESS, 'dev', 'eth0');
    ip('link', 'set', 'eth0-end', 'up');
    ip('link', 'set', 'eth0', 'up');
    // Where iproute2 keeps namespace names, and the per-namespace files `ip netns exec` binds in (labs write
    // a host's own resolv.conf there): fixed paths, made the run's own.
    privateDir('/run/netns', /** @type {string} */ (process.env.CANONPORT_TEST_SANDBOX_DIR));
    privateDir('/etc/netns', /** @type {string} */ (process.env.CANONPORT_TEST_SANDBOX_DIR));
    // The run's cgroup as a whole hierarchy (runCgroup, outside): this cgroup namespace's root, mounted in the run's directory
    // (not over the host's mount point: the kernel refuses a filesystem mounted again on its own mount point).
    if (process.env[CGROUP_ENV]) {
      const at = join(/** @type {string} */ (process.env.CANONPORT_TEST_SANDBOX_DIR), 'cgroup');
      mkdirSync(at);
      execFileSync('mount', ['-t', 'cgroup2', 'cgroup2', at], { stdio: 'pipe' });
      process.env[CGROUP_ENV] = at;
    }
    resolver = await hermeticResolver(/** @type {string} */ (process.env.CANONPORT_TEST_SANDBOX_DIR));
  } catch (err) {
    const e = /** @type {{ stderr?: Buffer, message: string }} */ (err);
    console.error(`sandbox: setting up the namespaces failed: ${e.stderr?.toString().trim() || e.message}`);
    return 1;
  }
  const env = { ...process.env, [ENV]: 'inside' };
  delete env.CANONPORT_TEST_SANDBOX_DIR;
  let relay;
  if (process.env[SOCKET_ENV]) {
    relay = await registryRelay(process.env[SOCKET_ENV]);
    env.npm_config_https_proxy = `http://127.0.0.1:${relay.port}`;
    env.npm_config_proxy = env.npm_config_https_proxy;
  }
  delete env[SOCKET_ENV];
  try {
    return await runChild(cmd, env);
  } finally {
    relay?.server.close();
    resolver?.close();
  }
}

const [first, ...rest] = process.argv.slice(2);
if (!first) {
  console.error('usage: node test/sandbox.mjs COMMAND [ARGS…]');
  process.exit(2);
}
process.exitCode = await (first === '--inside' ? inside(rest) : outside([first, ...rest]));
// The relay's and proxy's idle sockets must not keep the process alive once the command is done.
process.exit();
