import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCidr } from '../src/config/cidr.js';
import { containerOfCgroup as parseCgroup, parsePodDirectoryEntry, PodDirectory } from '../src/inventory/container.js';
import { currEstab, EAGER_MS, NamespaceWatcher, processSignal, publishedAddress, startTime, threadCount, usedSockets, type ReadTrigger } from '../src/inventory/namespaces.js';
import { parseFibTrie, parseIfInet6 } from '../src/inventory/netns-addresses.js';
import { HostInventory } from '../src/inventory/inventory.js';
import { Metrics } from '../src/metrics/metrics.js';
import { parseRegistry } from '../src/registry/load.js';
import { base32Port } from '../src/scheme/index.js';
import { createHostNet, type Container, type Host, type HostNet } from './helpers/netns.js';
import { requireTool } from './helpers/tools.js';

/**
 * The parts of src/inventory/namespaces.ts, container.ts and
 * netns-addresses.ts: the pure readings on the kernel's and runtimes' own
 * texts (as this machine and the runtimes print them), and the watcher on
 * real namespaces in a lab host with a PID namespace of its own, counting
 * what it reads (the cost discipline: a namespace that did not change is
 * not read again).
 */

const ID = 'a'.repeat(64);

describe('a process\'s container, from its cgroup path', () => {
  it('reads each runtime\'s layout, cgroup v1 and v2, inside a cgroup namespace too', () => {
    expect(parseCgroup(`0::/system.slice/docker-${ID}.scope\n`)).toEqual({ id: ID, runtime: 'docker' });
    expect(parseCgroup(`12:pids:/docker/${ID}\n0::/docker/${ID}\n`)).toEqual({ id: ID, runtime: 'docker' });
    expect(parseCgroup(`0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b1f6a52_6a0e_4a55_9d55_3a1c1c000001.slice/cri-containerd-${ID}.scope`)).toEqual({
      id: ID,
      runtime: 'containerd',
      podUid: '0b1f6a52-6a0e-4a55-9d55-3a1c1c000001',
    });
    expect(parseCgroup(`0::/kubepods/besteffort/pod0b1f6a52-6a0e-4a55-9d55-3a1c1c000001/${ID}`)).toEqual({ id: ID, runtime: 'kubernetes', podUid: '0b1f6a52-6a0e-4a55-9d55-3a1c1c000001' });
    expect(parseCgroup(`0::/kubepods.slice/kubepods-pod0b1f6a52_6a0e_4a55_9d55_3a1c1c000001.slice/crio-${ID}.scope`)).toMatchObject({ runtime: 'cri-o' });
    expect(parseCgroup(`0::/machine.slice/libpod-${ID}.scope/container`)).toMatchObject({ id: ID, runtime: 'podman' });
    // A cgroup namespace shows the path from its root up (`/..`): the segments still say it.
    expect(parseCgroup(`0::/../../kubepods-besteffort-pod0b1f6a52_6a0e_4a55_9d55_3a1c1c000001.slice/cri-containerd-${ID}.scope`)).toMatchObject({ id: ID, podUid: '0b1f6a52-6a0e-4a55-9d55-3a1c1c000001' });
  });

  it('finds no container where there is none: a host process, a systemd unit, CRI-O\'s monitor, this sandbox\'s own 32-hex cgroup', () => {
    expect(parseCgroup('0::/\n')).toBeUndefined();
    expect(parseCgroup('0::/system.slice/nginx.service\n1:name=systemd:/user.slice/user-1000.slice/session-2.scope\n')).toBeUndefined();
    expect(parseCgroup(`0::/system.slice/crio-conmon-${ID}.scope`)).toBeUndefined();
    expect(parseCgroup('4:memory:/process_api/2d525c18d22018d2e5e49fc184d2c056\n0::/\n')).toBeUndefined();
    expect(parseCgroup('')).toBeUndefined();
  });

  it('names pods from the kubelet\'s pod log directory, listing it again only for a UID it has not seen (at most once a second)', () => {
    expect(parsePodDirectoryEntry('shop_cab-7d9f-1_0b1f6a52-6a0e-4a55-9d55-3a1c1c000001')).toEqual({ namespace: 'shop', name: 'cab-7d9f-1', uid: '0b1f6a52-6a0e-4a55-9d55-3a1c1c000001' });
    expect(parsePodDirectoryEntry('not-a-pod')).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'cp-pods-'));
    try {
      let now = 0;
      const pods = new PodDirectory(dir, () => now);
      const uid = '0b1f6a52-6a0e-4a55-9d55-3a1c1c000001';
      expect(pods.lookup(uid)).toBeUndefined();
      mkdirSync(join(dir, `kube-system_coredns-1_${uid}`));
      // Asked again within the second: the listing is not read again.
      expect(pods.lookup(uid)).toBeUndefined();
      now += 1000;
      expect(pods.lookup(uid)).toEqual({ namespace: 'kube-system', name: 'coredns-1' });
      rmSync(join(dir, `kube-system_coredns-1_${uid}`), { recursive: true });
      // Known: answered from memory.
      expect(pods.lookup(uid)).toEqual({ namespace: 'kube-system', name: 'coredns-1' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a namespace\'s addresses, from /proc', () => {
  it('takes the /32 host LOCAL leaves of fib_trie (as Linux 6 prints it), loopback left out', () => {
    const fib = [
      'Main:',
      '  +-- 0.0.0.0/0 3 0 5',
      '     |-- 0.0.0.0',
      '        /0 universe UNICAST',
      '     +-- 10.244.1.0/24 2 0 2',
      '        |-- 10.244.1.7',
      '           /32 host LOCAL',
      '        |-- 10.244.1.255',
      '           /32 link BROADCAST',
      '     +-- 127.0.0.0/8 2 0 2',
      '        |-- 127.0.0.1',
      '           /32 host LOCAL',
      'Local:',
      '  +-- 10.244.1.0/24 2 0 2',
      '     |-- 10.244.1.7',
      '        /32 host LOCAL',
    ].join('\n');
    expect(parseFibTrie(fib)).toEqual(['10.244.1.7']);
  });

  it('takes global, usable addresses of if_inet6: not loopback, link-local or tentative', () => {
    const text = [
      '00000000000000000000000000000001 01 80 10 80       lo',
      'fd00004200000000000000000000000a 02 40 00 80     eth0',
      'fe80000000000000b0a1c2fffed3e4f5 02 40 20 80     eth0',
      'fd000042000000000000000000000bad 02 40 00 40     eth0',
    ].join('\n');
    expect(parseIfInet6(text)).toEqual(['fd00:42::a']);
  });
});

describe('which address of a container is published', () => {
  const ns = { addresses: ['172.17.0.2', '10.244.1.7', 'fd00:42::a'] };
  it('its own address inside a --container-network, IPv4 for an IPv4 bind, either for a dual-stack one; nothing outside every network', () => {
    expect(publishedAddress(ns, '0.0.0.0', [parseCidr('10.244.0.0/16', 't')])).toBe('10.244.1.7');
    expect(publishedAddress(ns, '::', [parseCidr('fd00:42::/64', 't')])).toBe('fd00:42::a');
    expect(publishedAddress(ns, '0.0.0.0', [parseCidr('fd00:42::/64', 't')])).toBeUndefined();
    expect(publishedAddress(ns, '0.0.0.0', [])).toBeUndefined();
    expect(publishedAddress({ addresses: ['172.17.0.2'] }, '0.0.0.0', [parseCidr('10.244.0.0/16', 't')])).toBeUndefined();
  });
  it('a concrete bind only at that address, and only inside a network', () => {
    expect(publishedAddress(ns, '172.17.0.2', [parseCidr('10.244.0.0/16', 't')])).toBeUndefined();
    expect(publishedAddress(ns, '::ffff:10.244.1.7', [parseCidr('10.244.0.0/16', 't')])).toBe('10.244.1.7');
  });
});

describe('the kernel\'s texts the watcher reads', () => {
  it('CurrEstab from net/snmp, and a process\'s start time from a stat line whose name holds spaces', () => {
    const snmp = 'Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs\nTcp: 1 200 120000 -1 10 20 0 0 7 100\n';
    expect(currEstab(snmp)).toBe(7);
    expect(currEstab('')).toBe(0);
    expect(startTime('123 (a b) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10')).toBe(98765);
  });

  it('a namespace\'s count of all its sockets from sockstat\'s first line; per namespace (a new one has none)', () => {
    expect(usedSockets('sockets: used 251\nTCP: inuse 68 orphan 15 tw 41 alloc 260 mem 0\n')).toBe('251');
    expect(usedSockets('TCP: inuse 68 orphan 15 tw 41 alloc 260 mem 0\n')).toBeUndefined();
    expect(Number(usedSockets(readFileSync('/proc/self/net/sockstat', 'latin1')))).toBeGreaterThan(0);
    requireTool('ip', 'iproute2');
    const ns = `cp-used-${process.pid}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      expect(usedSockets(execFileSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/sockstat'], { encoding: 'latin1' }))).toBe('0');
    } finally {
      execFileSync('ip', ['netns', 'del', ns]);
    }
  });

  it('the last PID and the host\'s thread count from /proc/loadavg, as the kernel prints it', () => {
    expect(processSignal('0.52 0.58 0.59 2/523 12345\n')).toBe('12345');
    expect(threadCount('0.52 0.58 0.59 2/523 12345\n')).toBe('523');
    expect(processSignal(undefined)).toBeUndefined();
    expect(threadCount(undefined)).toBeUndefined();
    // This machine's own: five fields, the fourth running/total.
    const text = readFileSync('/proc/loadavg', 'latin1');
    expect(Number(threadCount(text))).toBeGreaterThan(0);
    expect(Number(processSignal(text))).toBeGreaterThan(0);
  });
});

describe('the watcher on real namespaces (a lab host with a PID namespace of its own)', () => {
  let net: HostNet;
  let host: Host;
  let c: Container;
  const reads: ReadTrigger[] = [];
  let watcher: NamespaceWatcher;

  beforeAll(async () => {
    net = await createHostNet({ hosts: 1, pid: true });
    host = net.hosts[0]!;
    c = await host.addContainer!();
    // The host's /proc: the daemon's view with hostPID (its PID namespace's init is a child of the holder).
    watcher = new NamespaceWatcher({ procRoot: `${host.procRoot}/root/proc`, mode: () => 'all', countRead: (t) => reads.push(t), netnsDirs: [] });
  }, 60_000);

  afterAll(() => {
    watcher?.close();
    net?.cleanup();
  });

  it('finds the container\'s namespace and its listeners; reads it again only when something in it changed', async () => {
    // The test process is not in the host's PID namespace, so that /proc's `self` (the watcher's own namespace) does not
    // resolve for it: the host's namespace (its init's) is listed too. The container's is the one holding its address.
    const mine = (r: Awaited<ReturnType<NamespaceWatcher['scan']>>) => r.namespaces.find((n) => n.addresses.includes(c.address));
    const first = await watcher.scan();
    expect(mine(first)?.sockets).toEqual([]);
    expect(reads.every((t) => t === 'new')).toBe(true);
    const afterFirst = reads.length;
    // Nothing changed: scans read no namespace (only the counters).
    for (let i = 0; i < 6; i++) expect((await watcher.scan()).changed).toBe(false);
    expect(reads.length).toBe(afterFirst);
    // A listener starts (a new process in it): read again, and seen.
    const l = await c.listen(12082);
    const seen = await scanUntil(watcher, (r) => mine(r)?.sockets.some((s) => s.port === 12082));
    expect(seen.changed).toBe(true);
    expect(reads.length).toBeGreaterThan(afterFirst);
    const before = reads.length;
    for (let i = 0; i < 6; i++) await watcher.scan();
    expect(reads.length).toBe(before);
    // It stops: its socket counters move, read again, gone.
    await l.stop();
    await scanUntil(watcher, (r) => mine(r)?.sockets.length === 0);
    expect(reads.slice(before)).toContain('counters');
    // The container goes: the namespace with it.
    await c.stop();
    await scanUntil(watcher, (r) => mine(r) === undefined);
  });
});

describe('the watcher between scans (a namespace where a process just started)', () => {
  const lab = pidHost();

  it('a listener a new process opens after the scan that saw the process asks for a scan at once (onHint), not at the next interval', async () => {
    const hints: number[] = [];
    const reads: ReadTrigger[] = [];
    // The watcher's clock, which the test moves past the watch a new namespace gets instead of waiting it out.
    let skew = 0;
    const now = () => Date.now() + skew;
    const w = new NamespaceWatcher({ procRoot: `${lab().procRoot}/root/proc`, mode: () => 'all', netnsDirs: [], now, countRead: (t) => reads.push(t), onHint: () => hints.push(now()) });
    try {
      const c = await lab().addContainer!();
      const mine = (r: Awaited<ReturnType<NamespaceWatcher['scan']>>) => r.namespaces.find((n) => n.addresses.includes(c.address));
      await scanUntil(w, (r) => mine(r) !== undefined);
      // Past the watch a new namespace gets: only the process below starts one.
      skew += EAGER_MS + 200;
      await w.scan();
      hints.length = 0;
      // A process starts, and listens 1.5 s later: the scans until it is seen find no listener.
      c.spawn(process.execPath, ['-e', "setTimeout(() => require('node:net').createServer().listen(12090), 1500)"]);
      const seen = await scanUntil(w, () => reads.at(-1) === 'process');
      expect(mine(seen)?.sockets).toEqual([]);
      expect(hints).toEqual([]);
      // No scan meanwhile: the watcher asks for one when the counters move (a wide bound; the watch lasts EAGER_MS).
      const deadline = Date.now() + EAGER_MS;
      while (hints.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(hints.length).toBe(1);
      const after = await w.scan();
      expect(mine(after)?.sockets.map((s) => s.port)).toEqual([12090]);
    } finally {
      w.close();
    }
  }, 30_000);
});

describe('the watcher\'s cost when nothing changed, and what the counters cannot show (issue 24, issue 26)', () => {
  const lab = pidHost();

  it('stable namespaces: no read, each one\'s counters looked at every scan; a running process binding late in a namespace stable for a minute is read at the next scan, alone', async () => {
    // The clock is the test's: "stable for a minute" is a number, not a wait.
    let t = 1_000_000;
    const reads: { trigger: ReadTrigger; label: string }[] = [];
    const w = new NamespaceWatcher({ procRoot: `${lab().procRoot}/root/proc`, mode: () => 'all', netnsDirs: [], now: () => t, countRead: (trigger, label) => reads.push({ trigger, label }) });
    try {
      const containers = [await lab().addContainer!(), await lab().addContainer!(), await lab().addContainer!()];
      // A process that has run for a while and binds only when told (a server that listens after its warm-up).
      const c = containers[1]!;
      const late = c.spawn(process.execPath, ['-e', LATE_BINDER, '12084'], { stdio: ['pipe', 'pipe', 'pipe'] });
      await lineFrom(late.stdout!, 'started');
      const all = await scanUntil(w, (r) => containers.every((x) => r.namespaces.some((n) => n.addresses.includes(x.address))));
      const label = all.namespaces.find((n) => n.addresses.includes(c.address))!.label;
      // Until a scan reads nothing (what the processes' starts asked for is done).
      let n = w.work.reads;
      for (let i = 0; i < 50; i++) {
        await w.scan();
        if (w.work.reads === n) break;
        n = w.work.reads;
      }
      // Every namespace's counters stood still for a minute (past the watch a new process gets, and past any back-off).
      t += 59_000;
      await w.scan();
      const checks = w.work.counterChecks;
      const read = w.work.reads;
      // Every scan looks at every namespace's counters (no gate on the host's TCP allocation count any more; see the
      // fixture test below for what that gate missed).
      const scans = 4;
      for (let i = 0; i < scans; i++) {
        t += 1_000;
        expect((await w.scan()).changed).toBe(false);
      }
      expect(w.work.reads).toBe(read);
      // Each namespace's counters once a scan (a back-off of stable namespaces looked at a quarter of them).
      expect(w.work.counterChecks - checks).toBe(scans * all.namespaces.length);
      // The running process listens: the next scan reads that namespace, once, for its counters, and no other.
      const before = reads.length;
      late.stdin!.write('bind\n');
      await lineFrom(late.stdout!, 'listening');
      t += 1_000;
      const seen = await w.scan();
      expect(seen.namespaces.find((x) => x.label === label)?.sockets.map((x) => x.port)).toEqual([12084]);
      expect(reads.slice(before)).toEqual([{ trigger: 'counters', label }]);
      late.kill();
    } finally {
      w.close();
    }
  }, 60_000);

  it('a container\'s service restarted in place (same counters, a new socket) is read again at the next scan once invalidated, and not before', async () => {
    const reads: ReadTrigger[] = [];
    const w = new NamespaceWatcher({ procRoot: `${lab().procRoot}/root/proc`, mode: () => 'all', netnsDirs: [], countRead: (trigger) => reads.push(trigger) });
    try {
      const c = await lab().addContainer!();
      // One process that closes its listener and opens another on the same port when told (a server's in-place restart).
      const child = c.spawn(process.execPath, ['-e', RESTARTABLE, '12085'], { stdio: ['pipe', 'pipe', 'pipe'] });
      await lineFrom(child.stdout!, 'listening');
      const socketOf = (r: Awaited<ReturnType<NamespaceWatcher['scan']>>) => r.namespaces.find((n) => n.addresses.includes(c.address))?.sockets.find((s) => s.port === 12085);
      const first = await scanUntil(w, (r) => socketOf(r) !== undefined);
      const label = first.namespaces.find((n) => n.addresses.includes(c.address))!.label;
      const old = socketOf(first)!.inodes;
      // Until a scan reads nothing (what the process's start asked for is done).
      let n = w.work.reads;
      for (let i = 0; i < 50; i++) {
        await w.scan();
        if (w.work.reads === n) break;
        n = w.work.reads;
      }
      child.stdin!.write('restart\n');
      await lineFrom(child.stdout!, 'again');
      // The counters cannot show it: scans keep the old socket and read nothing.
      const quiet = w.work.reads;
      for (let i = 0; i < 3; i++) expect(socketOf(await w.scan())?.inodes).toEqual(old);
      expect(w.work.reads).toBe(quiet);
      // Told (a probe's connection to it lost): the next scan reads that namespace, and sees the new socket.
      w.invalidate(label);
      const after = await w.scan();
      expect(w.work.reads).toBe(quiet + 1);
      expect(reads.at(-1)).toBe('invalidated');
      expect(socketOf(after)?.inodes).toHaveLength(1);
      expect(socketOf(after)?.inodes).not.toEqual(old);
      expect(after.changed).toBe(true);
      child.kill();
    } finally {
      w.close();
    }
  }, 60_000);
});

/**
 * A /proc of files in the kernel's formats, not the real one, for what cannot be made to happen on cue on a real
 * host: the host's count of TCP sockets (sockstat's global `alloc`) standing still across a listen() because a
 * socket was freed elsewhere in the same second (measured: the late binds' slow trials, 1.8–2.8 s, each had a first
 * scan after the bind with `alloc` unchanged), connections coming and going at will. (Under a lab host's /proc,
 * another PID namespace's, `net/sockstat` does not resolve for this process, so the count was never read there.)
 * One container, its process 4242, nothing listening yet.
 */
const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n';
const listenLine = (port: number, inode: number) =>
  `   0: 00000000:${port.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0000000000000000 100 0 0 10 0\n`;
const sockstatText = (used: number, tcp: number, alloc: number) =>
  `sockets: used ${used}\nTCP: inuse ${tcp} orphan 0 tw 0 alloc ${alloc} mem 1\nUDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n`;

function fakeProc(): { root: string; put: (path: string, text: string) => void } {
  const root = mkdtempSync(join(tmpdir(), 'cp-fakeproc-'));
  const put = (path: string, text: string) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    // Written in place (same inode): the watcher keeps the sockstat descriptors open, as it does the kernel's.
    writeFileSync(join(root, path), text);
  };
  put('loadavg', '0.00 0.00 0.00 1/100 4242\n');
  put('net/tcp', TCP_HEADER);
  put('net/sockstat', sockstatText(10, 3, 17));
  put('4242/net/tcp', TCP_HEADER);
  for (const f of ['tcp6', 'udp', 'udp6']) put(`4242/net/${f}`, TCP_HEADER);
  put('4242/net/sockstat', sockstatText(1, 0, 17));
  put('4242/net/sockstat6', 'TCP6: inuse 0\nUDP6: inuse 0\nUDPLITE6: inuse 0\nRAW6: inuse 0\nFRAG6: inuse 0 memory 0\n');
  put('4242/net/snmp', 'Tcp: RtoAlgorithm CurrEstab\nTcp: 1 0\n');
  put('4242/net/fib_trie', '');
  put('4242/net/if_inet6', '');
  put('4242/cgroup', '0::/\n');
  put('4242/stat', '4242 (node) S 1 4242 4242 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 100 0 0\n');
  return { root, put };
}

/** A watcher on a fresh fake /proc, its clock in the test's hands and its reads counted; `close` removes both. */
function fakeWatcher() {
  const { root, put } = fakeProc();
  const reads: ReadTrigger[] = [];
  const clock = { t: 1_000_000 };
  const w = new NamespaceWatcher({ procRoot: root, mode: () => 'all', netnsDirs: [], now: () => clock.t, countRead: (trigger) => reads.push(trigger) });
  const close = () => {
    w.close();
    rmSync(root, { recursive: true, force: true });
  };
  return { root, put, reads, clock, w, close };
}

describe('the watcher on what counters that are levels hide (issue 26)', () => {
  it('a listener opened in a stable namespace is read at the next scan though the host\'s TCP allocation count is where it was', async () => {
    const { put, reads, clock, w, close } = fakeWatcher();
    try {
      expect((await w.scan()).namespaces.map((n) => n.sockets)).toEqual([[]]);
      expect(reads).toEqual(['new']);
      // Stable: a scan later nothing is read (the cost discipline holds).
      clock.t += 1_000;
      await w.scan();
      expect(reads).toEqual(['new']);
      // The process listens (its namespace's counters move); elsewhere on the host a TCP socket is freed in the same
      // second, so the host's allocation count reads as it did (17).
      put('4242/net/tcp', TCP_HEADER + listenLine(12086, 777));
      put('4242/net/sockstat', sockstatText(2, 1, 17));
      clock.t += 1_000;
      const seen = await w.scan();
      // Not the fifth scan (every UNGATED_EVERY): the old gate on the allocation count left it to that one.
      expect(seen.namespaces[0]?.sockets.map((s) => s.port)).toEqual([12086]);
      expect(seen.changed).toBe(true);
      expect(reads).toEqual(['new', 'counters']);
    } finally {
      close();
    }
  });

  it('a new process in a namespace its connections backed off (a container restarted in its pod) is read at the next scan, whatever the back-off says', async () => {
    const { root, put, reads, clock, w, close } = fakeWatcher();
    try {
      await w.scan();
      // Past the first seconds, when a namespace where a process started is watched closely and never backed off.
      clock.t += EAGER_MS;
      // A busy pod: connections half-open or closing move the counters (TCP in use, not established), each read finds
      // the same listeners, and the wait before the next read doubles: 1, 2, 4 s.
      for (let i = 1; i <= 3; i++) {
        put('4242/net/sockstat', sockstatText(1 + (i % 2), i % 2, 17));
        clock.t += 2 ** (i - 1) * 1_000;
        await w.scan();
      }
      // …and the next read would wait 4 s:
      expect(reads).toEqual(['new', 'counters', 'counters', 'counters']);
      // A new process in that namespace (PID 4343, its /proc/PID/net the same namespace's): a container restarted
      // in its pod, not listening yet.
      clock.t += 1_000;
      mkdirSync(join(root, '4343'));
      symlinkSync(join(root, '4242', 'net'), join(root, '4343', 'net'));
      put('loadavg', '0.00 0.00 0.00 1/101 4343\n');
      await w.scan();
      // Read now, 1 s after the last read, not once the 4 s the back-off had reached are over.
      expect(reads.at(-1)).toBe('process');
      // Watched closely now (scans asked for between the scans, as onHint does): its first connections move the
      // counters and a read finds the same listeners, which takes no back-off; so its listener, 200 ms later, is read
      // at once.
      clock.t += 200;
      put('4242/net/sockstat', sockstatText(3, 2, 17));
      await w.scan();
      expect(reads.at(-1)).toBe('counters');
      clock.t += 200;
      put('4242/net/tcp', TCP_HEADER + listenLine(12086, 778));
      put('4242/net/sockstat', sockstatText(4, 3, 17));
      const seen = await w.scan();
      expect(reads.at(-1)).toBe('counters');
      expect(seen.namespaces[0]?.sockets.map((s) => s.port)).toEqual([12086]);
    } finally {
      close();
    }
  });
});

describe('the inventory: a container\'s service restarted in place, told by its readiness probe (issue 26)', () => {
  const lab = pidHost();

  it('a probe\'s kept connection lost reads that container\'s namespace at the next scan, though its counters did not move', async () => {
    const host = lab();
    const c = await host.addContainer!();
    const port = base32Port('api');
    // An HTTP service answering /readyz over kept connections; told so, it drops them and listens again on its port.
    const child = c.spawn(process.execPath, ['-e', RESTARTABLE_HTTP, String(port)], { stdio: ['pipe', 'pipe', 'pipe'] });
    await lineFrom(child.stdout!, 'listening');
    const metrics = new Metrics({ defaultMetrics: false });
    const registry = parseRegistry('services: {}\n', 'test.yaml');
    const networks = [parseCidr(`${host.podSubnet}.0/24`, 'test')];
    const inv = new HostInventory({
      state: () => ({ registry, zones: ['localhost'] }),
      metrics,
      probe: false,
      procRoot: `${host.procRoot}/root/proc`,
      namespaces: { mode: () => 'all', containerNetworks: () => networks },
      readiness: { intervalMs: () => 100, reachable: () => true },
    });
    const invalidated = async () => (await metrics.namespaceReads.get()).values.find((v) => v.labels.trigger === 'invalidated')?.value ?? 0;
    const mine = (snap: Awaited<ReturnType<HostInventory['refresh']>>) => snap.listeners.find((l) => l.port === port && l.namespace?.published === c.address);
    try {
      // Probed through its published address until ready (the probe's connection is kept).
      for (let i = 0; i < 100 && mine(await inv.refresh())?.readiness?.state !== 'ready'; i++) await new Promise((r) => setTimeout(r, 100));
      expect(mine(await inv.refresh())?.readiness?.state).toBe('ready');
      expect(await invalidated()).toBe(0);
      child.stdin!.write('restart\n');
      await lineFrom(child.stdout!, 'again');
      // The probe's connection went with the old server: the scans read the namespace again ('invalidated').
      for (let i = 0; i < 100 && (await invalidated()) === 0; i++) {
        await inv.refresh();
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(await invalidated()).toBeGreaterThanOrEqual(1);
    } finally {
      await inv.stop();
      child.kill();
      await c.stop();
    }
  }, 60_000);
});

/** A lab host with a PID namespace of its own (the node as a hostPID daemon sees it), made before the describe's tests and removed after. */
function pidHost(): () => Host {
  let net: HostNet | undefined;
  beforeAll(async () => {
    net = await createHostNet({ hosts: 1, pid: true });
  }, 60_000);
  afterAll(() => net?.cleanup());
  return () => net!.hosts[0]!;
}

/** Starts, and opens a listener only when told (a line on stdin). */
const LATE_BINDER = `
const net = require('node:net');
const port = Number(process.argv[1]);
console.log('started');
require('node:readline').createInterface({ input: process.stdin }).once('line', () => {
  net.createServer().listen(port, '0.0.0.0', () => console.log('listening'));
});
`;

const RESTARTABLE = `
const net = require('node:net');
const port = Number(process.argv[1]);
let server = net.createServer().listen(port, '0.0.0.0', () => console.log('listening'));
require('node:readline').createInterface({ input: process.stdin }).on('line', () => {
  server.close(() => (server = net.createServer().listen(port, '0.0.0.0', () => console.log('again'))));
});
`;

const RESTARTABLE_HTTP = `
const http = require('node:http');
const port = Number(process.argv[1]);
const serve = () => http.createServer((req, res) => res.end('ok')).listen(port, '0.0.0.0');
let server = serve().once('listening', () => console.log('listening'));
require('node:readline').createInterface({ input: process.stdin }).on('line', () => {
  server.close(() => (server = serve().once('listening', () => console.log('again'))));
  server.closeAllConnections();
});
`;

function lineFrom(stream: NodeJS.ReadableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer | string) => {
      seen += String(d);
      if (!seen.includes(text)) return;
      stream.off('data', onData);
      resolve();
    };
    stream.on('data', onData);
    stream.once('end', () => reject(new Error(`the process ended before printing "${text}"`)));
  });
}

async function scanUntil(w: NamespaceWatcher, ok: (r: Awaited<ReturnType<NamespaceWatcher['scan']>>) => boolean | undefined): Promise<Awaited<ReturnType<NamespaceWatcher['scan']>>> {
  for (let i = 0; i < 100; i++) {
    const r = await w.scan();
    if (ok(r)) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('the watcher never saw it');
}
