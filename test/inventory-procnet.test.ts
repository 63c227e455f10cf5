import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { createSocket, type Socket } from 'node:dgram';
import { formatIPv6, ListenerScanner, parseProcNetTcp, parseProcNetUdp, readListeningSockets, readProcNetTcp, socketFingerprint } from '../src/inventory/procnet.js';
import { createHostNet } from './helpers/netns.js';
import { closeServer } from './inventory-support.js';

const TCP_HEADER = '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const TCP6_HEADER =
  '  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const tail = ' 00000000:00000000 00:00000000 00000000     0        0 1060 1 00000000e9b27b22 100 0 0 10 0';

// As a little-endian kernel prints them (x86_64, arm64).
const TCP = [
  TCP_HEADER,
  `   0: 00000000:07E8 00000000:0000 0A${tail}`, // 0.0.0.0:2024 LISTEN
  `   1: 0100007F:2F32 00000000:0000 0A${tail}`, // 127.0.0.1:12082 LISTEN
  `   2: 0100007F:2F32 00000000:0000 0A${tail}`, // same again (SO_REUSEPORT): listed once
  `   3: 020200C0:85C0 507100CB:0050 01${tail}`, // ESTABLISHED: ignored
  `   4: 0B02A8C0:1FA6 00000000:0000 0A${tail}`, // 192.168.2.11:8102 LISTEN
  `   5: 0100007F:1FA6 0100007F:D431 06${tail}`, // TIME_WAIT: ignored
  '   garbage line',
  '',
].join('\n');

const TCP6 = [
  TCP6_HEADER,
  `   0: 00000000000000000000000000000000:07E8 00000000000000000000000000000000:0000 0A${tail}`, // [::]:2024
  `   1: 00000000000000000000000001000000:2F32 00000000000000000000000000000000:0000 0A${tail}`, // [::1]:12082
  `   2: 0000000000000000FFFF00000100007F:3A98 00000000000000000000000000000000:0000 0A${tail}`, // [::ffff:127.0.0.1]:15000
  `   3: B80D0120000000000000000042000000:0050 00000000000000000000000000000000:0000 0A${tail}`, // [2001:db8::42]:80
  `   4: 000080FE00000000FF0000025634121E:0016 00000000000000000000000000000000:0000 0A${tail}`, // [fe80::200:ff:1e12:3456]:22
  `   5: 00000000000000000000000001000000:2F33 00000000000000000000000001000000:D431 01${tail}`, // ESTABLISHED
].join('\n');

// TCP in the kernel's order: the listening hash, then the established hash.
const KERNEL_ORDER = [
  TCP_HEADER,
  `   0: 00000000:07E8 00000000:0000 0A${tail}`, // 0.0.0.0:2024
  `   1: 0100007F:2F32 00000000:0000 0A${tail}`, // 127.0.0.1:12082
  `   2: 0B02A8C0:1FA6 00000000:0000 0A${tail}`, // 192.168.2.11:8102
  `   3: 020200C0:85C0 507100CB:0050 01${tail}`, // ESTABLISHED
  `   4: 0100007F:1FA6 0100007F:D431 06${tail}`, // TIME_WAIT
  '',
].join('\n');

describe('parseProcNetTcp', () => {
  it('lists IPv4 LISTEN sockets, little-endian words, deduplicated, sorted', () => {
    expect(parseProcNetTcp(TCP, 'tcp', true)).toEqual([
      { port: 2024, address: '0.0.0.0', family: 'tcp', inodes: ['1060'] },
      { port: 8102, address: '192.168.2.11', family: 'tcp', inodes: ['1060'] },
      { port: 12082, address: '127.0.0.1', family: 'tcp', inodes: ['1060'] },
    ]);
  });

  it('lists IPv6 LISTEN sockets: wildcard, loopback, IPv4-mapped, global, link-local', () => {
    const got = parseProcNetTcp(TCP6, 'tcp6', true);
    expect(got.map((s) => [s.port, s.address])).toEqual([
      [22, 'fe80::200:ff:1e12:3456'],
      [80, '2001:db8::42'],
      [2024, '::'],
      [12082, '::1'],
      [15000, '::ffff:127.0.0.1'],
    ]);
    expect(got.every((s) => s.family === 'tcp6')).toBe(true);
  });

  it('reads big-endian words as printed', () => {
    const be = `${TCP_HEADER}\n   0: 7F000001:2F32 00000000:0000 0A${tail}\n`;
    expect(parseProcNetTcp(be, 'tcp', false)).toEqual([{ port: 12082, address: '127.0.0.1', family: 'tcp', inodes: ['1060'] }]);
    const be6 = `${TCP6_HEADER}\n   0: 20010DB8000000000000000000000042:0050 00000000000000000000000000000000:0000 0A${tail}\n`;
    expect(parseProcNetTcp(be6, 'tcp6', false)).toEqual([{ port: 80, address: '2001:db8::42', family: 'tcp6', inodes: ['1060'] }]);
  });

  it('skips lines whose address has the wrong width for the family', () => {
    expect(parseProcNetTcp(TCP6, 'tcp', true)).toEqual([]);
    expect(parseProcNetTcp(TCP, 'tcp6', true)).toEqual([]);
    expect(parseProcNetTcp('', 'tcp')).toEqual([]);
  });
});

describe('readProcNetTcp: stops after the listeners', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const fileWith = async (text: string) => {
    const root = await mkdtemp(join(tmpdir(), 'canonport-procnet-'));
    dirs.push(root);
    await writeFile(join(root, 'tcp'), text);
    return join(root, 'tcp');
  };
  const hex = (n: number, w: number) => n.toString(16).toUpperCase().padStart(w, '0');
  const listenLine = (i: number, port: number, state = '0A') => `${String(i).padStart(4)}: 0100007F:${hex(port, 4)} 00000000:0000 ${state} 00000000:00000000 00:00000000 00000000     0        0 ${5000 + i} 1 0000000000000000 100 0 0 10 0`;

  it('reads no further than the first connection: a LISTEN line after it (which no kernel prints) is not read', async () => {
    const established = Array.from({ length: 500 }, (_, i) => `${String(i + 3).padStart(4)}: 0100007F:${hex(40000 + i, 4)} 0100007F:2F32 01${tail}`);
    const text = [TCP_HEADER, listenLine(0, 2024), listenLine(1, 12082), ...established, listenLine(503, 9999), ''].join('\n');
    const r = await readProcNetTcp(await fileWith(text), 'tcp', true);
    expect(r.sockets.map((x) => x.port)).toEqual([2024, 12082]);
    expect(r.stoppedEarly).toBe(true);
    // One read of 16 KB at most: the 60 KB of connections behind it were never asked for.
    expect(r.bytesRead).toBeLessThanOrEqual(16 * 1024);
    expect(text.length).toBeGreaterThan(60_000);
  });

  it('reads on across SYN_RECV and CLOSE lines among the listeners (older kernels, a closing listener), and across read boundaries', async () => {
    const lines = [TCP_HEADER];
    // 400 listeners (~60 KB: several reads, lines cut at read boundaries), a pending handshake and a closing listener among them.
    for (let i = 0; i < 400; i++) lines.push(listenLine(i, 20000 + i, i === 10 ? '03' : i === 20 ? '07' : '0A'));
    lines.push(`${' 400'}: 020200C0:85C0 507100CB:0050 01${tail}`, '');
    const r = await readProcNetTcp(await fileWith(lines.join('\n')), 'tcp', true);
    expect(r.sockets).toHaveLength(398);
    expect(r.sockets.map((x) => x.port)).toEqual(Array.from({ length: 400 }, (_, i) => 20000 + i).filter((p) => p !== 20010 && p !== 20020));
    expect(r.sockets[0]!.inodes).toEqual(['5000']);
    expect(r.stoppedEarly).toBe(true);
  });

  it('in the real /proc: a listener opened after hundreds of connections is found, and the connections are not read', async () => {
    const server = createServer((c) => c.on('error', () => undefined));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    const clients = await Promise.all(
      Array.from({ length: 300 }, () => new Promise<import('node:net').Socket>((resolve) => {
        const c = connect(port, '127.0.0.1', () => resolve(c));
        c.on('error', () => undefined);
      })),
    );
    const late = createServer();
    await new Promise<void>((resolve) => late.listen(0, '127.0.0.1', resolve));
    const latePort = (late.address() as { port: number }).port;
    try {
      const whole = await readFile('/proc/self/net/tcp', 'latin1');
      const r = await readProcNetTcp('/proc/self/net/tcp', 'tcp');
      const after = await readFile('/proc/self/net/tcp', 'latin1');
      expect(r.sockets.map((x) => x.port)).toEqual(expect.arrayContaining([port, latePort]));
      // The same listeners as a full parse of the file, read from a fraction of it. Other test files' processes
      // share this network namespace and open and close listeners meanwhile: every listener in a full parse
      // before and after is there, and nothing is there that neither full parse has.
      const listeners = (text: string) => parseProcNetTcp(text, 'tcp').map((x) => `${x.address}:${x.port}`);
      const [before, later] = [listeners(whole), listeners(after)];
      const read = r.sockets.map((x) => `${x.address}:${x.port}`);
      expect(read).toEqual(expect.arrayContaining(before.filter((l) => later.includes(l))));
      expect(read.filter((l) => !before.includes(l) && !later.includes(l))).toEqual([]);
      expect(r.stoppedEarly).toBe(true);
      expect(r.bytesRead).toBeLessThan(whole.length / 4);
    } finally {
      for (const c of clients) c.destroy();
      await closeServer(late);
      await closeServer(server);
    }
  });
});

// As /proc/net/udp prints them: a bound unconnected socket is state 07 (TCP_CLOSE) with a zero remote; a connected one 01.
const UDP_HEADER = '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops';
const udpTail = (inode: number) => ` 00000000:00000000 00:00000000 00000000     0        0 ${inode} 2 0000000000000000 0`;
const UDP = [
  UDP_HEADER,
  `  101: 00000000:3960 00000000:0000 07${udpTail(2001)}`, // 0.0.0.0:14688, unconnected: a listener
  `  102: 0100007F:3960 00000000:0000 07${udpTail(2002)}`, // 127.0.0.1:14688, unconnected
  `  103: 0100007F:D431 0100007F:0035 01${udpTail(2003)}`, // connected to 127.0.0.1:53: a client, not a listener
  `  104: 0100007F:2F32 0100007F:0035 07${udpTail(2004)}`, // state 07 but a remote set: not a listener
  `  105: 00000000:0000 00000000:0000 07${udpTail(2005)}`, // port 0: never bound
  `  106: 00000000:3960 00000000:0000 07${udpTail(2006)}`, // 0.0.0.0:14688 again (SO_REUSEPORT): one entry, both inodes
  '',
].join('\n');
const UDP6 = [
  UDP_HEADER,
  `  201: 00000000000000000000000000000000:3960 00000000000000000000000000000000:0000 07${udpTail(3001)}`, // [::]:14688
  `  202: 00000000000000000000000001000000:3960 00000000000000000000000001000000:0035 01${udpTail(3002)}`, // connected
].join('\n');

describe('parseProcNetUdp: UDP listeners are the bound, unconnected sockets', () => {
  it('keeps state 07 with a zero remote; leaves out connected sockets, a remote, port 0; folds SO_REUSEPORT groups', () => {
    expect(parseProcNetUdp(UDP, 'udp', true)).toEqual([
      { port: 14688, address: '0.0.0.0', family: 'udp', inodes: ['2001', '2006'] },
      { port: 14688, address: '127.0.0.1', family: 'udp', inodes: ['2002'] },
    ]);
    expect(parseProcNetUdp(UDP6, 'udp6', true)).toEqual([{ port: 14688, address: '::', family: 'udp6', inodes: ['3001'] }]);
  });
});

describe('formatIPv6 (RFC 5952)', () => {
  const bytes = (hex: string) => hex.match(/../g)!.map((b) => parseInt(b, 16));
  it.each([
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['20010db8000000000000000000000001', '2001:db8::1'],
    ['20010db8000000010000000000000001', '2001:db8:0:1::1'], // longest zero run compressed
    ['20010db8000100000001000000000001', '2001:db8:1:0:1::1'], // a single zero group stays
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'], // first of two equal runs
    ['20010db8000000000001000000000000', '2001:db8:0:0:1::'], // the longer run
    ['fe800000000000000000000000000000', 'fe80::'],
    ['00000000000000000000ffffc0a80001', '::ffff:192.168.0.1'],
  ])('%s → %s', (hex, text) => {
    expect(formatIPv6(bytes(hex))).toBe(text);
  });
});

describe('readListeningSockets', () => {
  const dirs: string[] = [];
  const servers: Server[] = [];
  afterAll(async () => {
    await Promise.all(servers.map(closeServer));
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('reads fixture files; a missing tcp6 is not an error, a missing tcp is', async () => {
    const root = await mkdtemp(join(tmpdir(), 'canonport-proc-'));
    dirs.push(root);
    await mkdir(join(root, 'net'));
    // As a kernel prints it: the listeners first (the reader stops at the first connection).
    await writeFile(join(root, 'net', 'tcp'), KERNEL_ORDER);
    const onlyV4 = await readListeningSockets(root);
    expect(onlyV4.errors).toEqual([]);
    expect(onlyV4.sockets.map((s) => s.port)).toEqual([2024, 8102, 12082]);

    await writeFile(join(root, 'net', 'tcp6'), TCP6);
    const both = await readListeningSockets(root);
    // One port on several addresses keeps one entry per address, IPv4 first.
    expect(both.sockets.filter((s) => s.port === 12082)).toEqual([
      { port: 12082, address: '127.0.0.1', family: 'tcp', inodes: ['1060'] },
      { port: 12082, address: '::1', family: 'tcp6', inodes: ['1060'] },
    ]);

    const none = await readListeningSockets(join(root, 'nowhere'));
    expect(none.sockets).toEqual([]);
    expect(none.errors.map((e) => e.file)).toEqual([join(root, 'nowhere', 'net', 'tcp')]);
  });

  it('reads udp and udp6 beside tcp and tcp6 (fixture files); a missing udp is not an error', async () => {
    const root = await mkdtemp(join(tmpdir(), 'canonport-proc-'));
    dirs.push(root);
    await mkdir(join(root, 'net'));
    await writeFile(join(root, 'net', 'tcp'), KERNEL_ORDER);
    expect((await readListeningSockets(root)).errors).toEqual([]);
    await writeFile(join(root, 'net', 'udp'), UDP);
    await writeFile(join(root, 'net', 'udp6'), UDP6);
    const { sockets, errors } = await readListeningSockets(root);
    expect(errors).toEqual([]);
    // Sorted by port, then family: TCP and UDP on one port are separate sockets.
    expect(sockets.filter((s) => s.port === 14688).map((s) => `${s.family} ${s.address}`)).toEqual(['udp 0.0.0.0', 'udp 127.0.0.1', 'udp6 ::']);
  });

  it('sees a real bound UDP socket in the real /proc, and not a connected one', async () => {
    const sockets: Socket[] = [];
    const bind = (type: 'udp4' | 'udp6', address: string) =>
      new Promise<Socket>((resolve, reject) => {
        const s = createSocket(type);
        sockets.push(s);
        s.once('error', reject);
        s.bind({ port: 0, address }, () => resolve(s));
      });
    try {
      const v4 = await bind('udp4', '127.0.0.1');
      const v6 = await bind('udp6', '::1');
      const client = await bind('udp4', '127.0.0.1');
      await new Promise<void>((resolve, reject) => client.connect(v4.address().port, '127.0.0.1', (err?: Error) => (err ? reject(err) : resolve())));
      const found = (await readListeningSockets()).sockets;
      expect(found).toContainEqual({ port: v4.address().port, address: '127.0.0.1', family: 'udp', inodes: [expect.stringMatching(/^[1-9]\d*$/)] });
      expect(found).toContainEqual({ port: v6.address().port, address: '::1', family: 'udp6', inodes: [expect.stringMatching(/^[1-9]\d*$/)] });
      expect(found.some((s) => s.port === client.address().port && s.family === 'udp')).toBe(false);
    } finally {
      for (const s of sockets) s.close();
    }
  });

  it('sees real listeners on 127.0.0.1 and ::1 in the real /proc', async () => {
    const listen = (host: string, port: number) =>
      new Promise<Server>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen({ port, host }, () => resolve(s));
      });
    const v4 = await listen('127.0.0.1', 0);
    const v6 = await listen('::1', 0);
    servers.push(v4, v6);
    const p4 = (v4.address() as { port: number }).port;
    const p6 = (v6.address() as { port: number }).port;
    const { sockets, errors } = await readListeningSockets();
    expect(errors).toEqual([]);
    expect(sockets).toContainEqual({ port: p4, address: '127.0.0.1', family: 'tcp', inodes: [expect.stringMatching(/^[1-9]\d*$/)] });
    expect(sockets).toContainEqual({ port: p6, address: '::1', family: 'tcp6', inodes: [expect.stringMatching(/^[1-9]\d*$/)] });
  });
});

describe('socketFingerprint and ListenerScanner: /proc/net/tcp read only when the counters moved (issue 24)', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });
  const SNMP = (active: number, passive: number) =>
    [
      'Ip: Forwarding DefaultTTL',
      'Ip: 1 64',
      'Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors',
      `Tcp: 1 200 120000 -1 ${active} ${passive} 0 0 1 100 100 0 0 0 0`,
      '',
    ].join('\n');
  const SOCKSTAT = (inuse: number, udp = 0) => `sockets: used 9\nTCP: inuse ${inuse} orphan 0 tw 0 alloc 9 mem 1\nUDP: inuse ${udp} mem 0\n`;
  const SOCKSTAT6 = (inuse: number) => `TCP6: inuse ${inuse}\nUDP6: inuse 0\n`;

  async function fixture(): Promise<string> {
    const root = await mkdtemp(join(tmpdir(), 'canonport-proc-'));
    dirs.push(root);
    await mkdir(join(root, 'net'));
    await writeFile(join(root, 'net', 'tcp'), KERNEL_ORDER);
    await writeFile(join(root, 'net', 'tcp6'), TCP6);
    await writeFile(join(root, 'net', 'sockstat'), SOCKSTAT(3));
    await writeFile(join(root, 'net', 'sockstat6'), SOCKSTAT6(5));
    await writeFile(join(root, 'net', 'snmp'), SNMP(10, 20));
    return root;
  }

  it('reads the in-use counts and the opens ever made, or null without them', async () => {
    const root = await fixture();
    expect(socketFingerprint(root)).toBe('3/5/10/20/0/0');
    await rm(join(root, 'net', 'sockstat6'));
    expect(socketFingerprint(root)).toBe('3/-/10/20/0/-');
    await rm(join(root, 'net', 'snmp'));
    expect(socketFingerprint(root)).toBeNull();
    expect(socketFingerprint(join(root, 'nowhere'))).toBeNull();
  });

  it('reuses the last list while the counters stand still, reads again when they move or the full-read interval passes', async () => {
    const root = await fixture();
    let t = 1_000_000;
    const scanner = new ListenerScanner(root, { fullEveryMs: 30_000, now: () => t });
    const first = await scanner.read();
    expect(first.sockets.map((s) => s.port)).toContain(12082);
    expect(scanner.fullReads).toBe(1);
    // A listener gone from the file but no counter moved (what a restart on the same port can look like):
    // the last list stands, for at most fullEveryMs.
    await writeFile(join(root, 'net', 'tcp'), TCP_HEADER + '\n');
    t += 1000;
    expect(await scanner.read()).toBe(first);
    expect(scanner.fullReads).toBe(1);
    t += 30_000;
    expect((await scanner.read()).sockets.filter((s) => s.family === 'tcp')).toEqual([]);
    expect(scanner.fullReads).toBe(2);
    // A listener closing moves `inuse`; a connection opened meanwhile moves ActiveOpens: either reads again at once.
    await writeFile(join(root, 'net', 'tcp'), KERNEL_ORDER);
    await writeFile(join(root, 'net', 'sockstat'), SOCKSTAT(4));
    t += 1000;
    expect((await scanner.read()).sockets.map((s) => s.port)).toContain(2024);
    expect(scanner.fullReads).toBe(3);
    await writeFile(join(root, 'net', 'snmp'), SNMP(11, 20));
    t += 1000;
    await scanner.read();
    expect(scanner.fullReads).toBe(4);
    // A UDP socket opening (a UDP listener, issue 22) moves UDP's `inuse`: read again at once.
    await writeFile(join(root, 'net', 'sockstat'), SOCKSTAT(4, 1));
    t += 1000;
    await scanner.read();
    expect(scanner.fullReads).toBe(5);
  });

  it('without counters (a fixture /proc, a kernel without them) reads the files every time', async () => {
    const root = await fixture();
    await rm(join(root, 'net', 'sockstat'));
    const scanner = new ListenerScanner(root, { now: () => 0 });
    await scanner.read();
    await scanner.read();
    expect(scanner.fullReads).toBe(2);
  });

  it('in the real /proc of a network namespace: a new listener is seen at the next read, an idle namespace is not read again', async () => {
    const net = await createHostNet({ hosts: 1 });
    try {
      const host = net.hosts[0]!;
      const scanner = new ListenerScanner(host.procRoot, { fullEveryMs: 60_000 });
      const before = await scanner.read();
      expect(before.errors).toEqual([]);
      for (let i = 0; i < 5; i++) await scanner.read();
      expect(scanner.fullReads).toBe(1);
      const l = await host.listen(23456);
      try {
        const after = await scanner.read();
        expect(after.sockets.map((s) => s.port)).toContain(23456);
        expect(scanner.fullReads).toBe(2);
      } finally {
        await l.stop();
      }
      expect((await scanner.read()).sockets.map((s) => s.port)).not.toContain(23456);
    } finally {
      net.cleanup();
    }
  });
});
