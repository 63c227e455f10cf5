import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readListeningSockets } from '../src/inventory/procnet.js';
import { findInodes, parseCgroup, SocketOwners, WALK_SLICE_ENTRIES } from '../src/inventory/socket-owner.js';
import { stopChild } from './helpers/child.js';
import { countLoopTurns } from './helpers/loop-turns.js';

/**
 * Socket inode → process → unit, container, executable
 * (src/inventory/socket-owner.ts), against the real /proc: real processes
 * that bind real sockets, found by the inode /proc/net prints for them. And
 * the cgroup paths the runtimes write, as a table.
 */

const PYTHON = '/usr/bin/python3';
const children: ChildProcess[] = [];
const dirs: string[] = [];

afterAll(async () => {
  await Promise.all(children.map((c) => stopChild(c)));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** A Python process (started as `argv0`, a symlink name) that binds a TCP or UDP socket on 127.0.0.1:0 and prints its port. */
async function listener(proto: 'tcp' | 'udp', argv0 = PYTHON): Promise<{ child: ChildProcess; port: number }> {
  const code = `import socket,sys,time
s=socket.socket(socket.AF_INET, socket.SOCK_STREAM if sys.argv[1]=='tcp' else socket.SOCK_DGRAM)
s.bind(('127.0.0.1',0))
${proto === 'tcp' ? 's.listen()' : ''}
print(s.getsockname()[1], flush=True)
time.sleep(600)`;
  const child = spawn(argv0, ['-c', code, proto], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
    child.once('exit', (c) => reject(new Error(`python exited (${c})`)));
  });
  return { child, port };
}

async function inodeOf(port: number, family: 'tcp' | 'udp'): Promise<string> {
  const s = (await readListeningSockets()).sockets.find((x) => x.port === port && x.family === family);
  if (!s) throw new Error(`no ${family} socket on ${port} in /proc/net`);
  return s.inodes[0]!;
}

describe('SocketOwners against the real /proc', () => {
  it('finds the process holding a TCP and a UDP socket: its pid, comm, executable and arguments', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cp-owner-'));
    dirs.push(dir);
    // Started through a link named `db`: the kernel's comm is the link's name, the executable is Python.
    const link = join(dir, 'db');
    await symlink(PYTHON, link);
    const tcp = await listener('tcp', link);
    const udp = await listener('udp');
    const owners = new SocketOwners();
    const [t, u] = [await inodeOf(tcp.port, 'tcp'), await inodeOf(udp.port, 'udp')];
    const found = await owners.lookup([t, u]);
    expect(found.get(t)).toMatchObject({ pid: tcp.child.pid, comm: 'db', exe: expect.stringMatching(/^python3/) });
    expect(found.get(t)!.args[0]).toBe(link);
    expect(found.get(u)).toMatchObject({ pid: udp.child.pid, comm: expect.stringMatching(/^python3/) });
    expect(owners.walks).toBe(1);
    expect(owners.lastWalk).toMatchObject({ found: 2, truncated: false });
  });

  it('walks /proc only for an inode never looked up: asked again, it answers from memory; a closed socket is forgotten', async () => {
    const a = await listener('tcp');
    const owners = new SocketOwners();
    const inode = await inodeOf(a.port, 'tcp');
    await owners.lookup([inode]);
    await owners.lookup([inode]);
    expect(owners.peek([inode]).get(inode)).toMatchObject({ pid: a.child.pid });
    expect(owners.walks).toBe(1);
    // An inode no process holds is looked up once, found by nobody, and not walked for again.
    expect((await owners.lookup(['1'])).get('1')).toBeNull();
    await owners.lookup(['1']);
    expect(owners.walks).toBe(2);
    owners.retain(new Set());
    expect(owners.peek([inode]).get(inode)).toBeUndefined();
    await owners.settled();
  });

  it('peek answers at once and walks in the background, then says so (onLearned)', async () => {
    const a = await listener('udp');
    const inode = await inodeOf(a.port, 'udp');
    const owners = new SocketOwners();
    const learned = new Promise<void>((resolve) => (owners.onLearned = resolve));
    expect(owners.peek([inode]).get(inode)).toBeUndefined();
    await learned;
    expect(owners.peek([inode]).get(inode)).toMatchObject({ pid: a.child.pid });
  });

  it('is bounded: a walk stops at maxProcesses (newest first) and says it was cut short; what it did not reach stays unknown', async () => {
    const old = await listener('tcp');
    // Newer processes than `old`: a walk of one process reads the newest pid's fds only.
    await listener('tcp');
    const inode = await inodeOf(old.port, 'tcp');
    const owners = new SocketOwners({ maxProcesses: 1 });
    expect((await owners.lookup([inode])).get(inode)).toBeNull();
    expect(owners.lastWalk).toMatchObject({ processes: 1, truncated: true });
    const fds = new SocketOwners({ maxFds: 3 });
    expect((await fds.lookup([inode])).get(inode)).toBeNull();
    expect(fds.lastWalk).toMatchObject({ fds: 3, truncated: true });
  });

  it('holds the event loop for one slice at a time: a walk of every process takes a turn per WALK_SLICE_ENTRIES entries, and what waits on the loop runs between them', async () => {
    const a = await listener('tcp');
    const inode = await inodeOf(a.port, 'tcp');
    // A chain of immediates stands for the DNS socket's callbacks: each turn the walk gives the loop runs one.
    const loop = countLoopTurns();
    // An inode nobody holds beside a real one: the walk reads every process's fds.
    const found = await findInodes('/proc', new Set([inode, '1']), { maxProcesses: 1_000_000, maxFds: 1_000_000 });
    const turns = loop.stop();
    expect(found.holders.get(inode)).toEqual([a.child.pid]);
    const entries = found.processes + found.fds;
    expect(entries).toBeGreaterThan(4 * WALK_SLICE_ENTRIES);
    // One slice per WALK_SLICE_ENTRIES entries (a process's directory counts as one), and the loop's turn between slices.
    expect(found.slices).toBe(Math.max(1, Math.ceil(entries / WALK_SLICE_ENTRIES)));
    expect(turns).toBeGreaterThanOrEqual(found.slices - 1);
  });
});

describe('parseCgroup: the unit and the container a cgroup path names', () => {
  const id = 'a'.repeat(64);
  it.each([
    ['0::/system.slice/api.service', 'api', undefined],
    ['0::/system.slice/system-worker.slice/worker@3.service', 'worker@3', undefined],
    ['0::/user.slice/user-1000.slice/user@1000.service/app.slice/db.service', 'db', undefined],
    ['0::/user.slice/user-1000.slice/session-2.scope', undefined, undefined],
    [`0::/system.slice/docker-${id}.scope`, undefined, { id, runtime: 'docker' }],
    [`0::/docker/${id}`, undefined, { id, runtime: 'docker' }],
    [`0::/system.slice/containerd.service/kubepods-burstable-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice:cri-containerd:${id}`, undefined, { id, runtime: 'containerd', podUid: '0a1b2c3d-4e5f-6789-abcd-ef0123456789' }],
    [`0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0a1b2c3d_4e5f_6789_abcd_ef0123456789.slice/cri-containerd-${id}.scope`, undefined, { id, runtime: 'containerd', podUid: '0a1b2c3d-4e5f-6789-abcd-ef0123456789' }],
    [`0::/kubepods/burstable/pod0a1b2c3d-4e5f-6789-abcd-ef0123456789/${id}`, undefined, { id, runtime: 'kubernetes', podUid: '0a1b2c3d-4e5f-6789-abcd-ef0123456789' }],
    [`0::/machine.slice/libpod-${id}.scope/container`, undefined, { id, runtime: 'podman' }],
    [`0::/system.slice/crio-${id}.scope`, undefined, { id, runtime: 'cri-o' }],
    ['0::/lxc.payload.web1/system.slice/nginx.service', 'nginx', { id: 'web1', runtime: 'lxc' }],
    // cgroup v1: the name=systemd hierarchy says the unit.
    ['12:pids:/system.slice/api.service\n1:name=systemd:/system.slice/api.service\n0::/', 'api', undefined],
    ['', undefined, undefined],
  ])('%s', (text, unit, container) => {
    expect(parseCgroup(text)).toEqual({ unit, container });
  });
});
