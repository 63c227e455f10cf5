import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Daemon } from '../src/daemon/daemon.js';
import { dig } from './helpers/dig.js';
import { startDaemon } from './helpers/daemon.js';
import { FakeUpstream } from './helpers/fake-upstream.js';
import { requireNetAdmin } from './helpers/sandbox.js';
import { requireTool } from './helpers/tools.js';

/**
 * `--allow` as in production: the daemon listens on a non-loopback address
 * and a real client on another "host" asks it. The other host is a network
 * namespace this test creates, joined to ours by a veth pair; nothing
 * leaves the machine, and everything is removed afterwards.
 */

const tag = `cp${process.pid % 100000}`;
const NS = `${tag}ns`;
const HOST_IF = `${tag}a`;
const PEER_IF = `${tag}b`;
const subnet = `10.77.${process.pid % 250}`;
const DAEMON_ADDR = `${subnet}.1`;
const CLIENT_ADDR = `${subnet}.2`;
const ZONE = 'svc.example';

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
let upstream: FakeUpstream;
const daemons: Daemon[] = [];

/** dig run inside the namespace: the query really comes from CLIENT_ADDR. */
async function digFromOtherHost(d: Daemon, args: string[]) {
  return dig(d.addresses.dns, args, ['ip', 'netns', 'exec', NS]);
}

beforeAll(async () => {
  requireNetAdmin('creating a network namespace');
  requireTool('ip', 'iproute2');
  ip('netns', 'add', NS);
  ip('link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', PEER_IF);
  ip('link', 'set', PEER_IF, 'netns', NS);
  ip('addr', 'add', `${DAEMON_ADDR}/24`, 'dev', HOST_IF);
  ip('link', 'set', HOST_IF, 'up');
  ip('netns', 'exec', NS, 'ip', 'addr', 'add', `${CLIENT_ADDR}/24`, 'dev', PEER_IF);
  ip('netns', 'exec', NS, 'ip', 'link', 'set', PEER_IF, 'up');
  ip('netns', 'exec', NS, 'ip', 'link', 'set', 'lo', 'up');
  upstream = await FakeUpstream.start({ kind: 'answer', address: '192.0.2.7' });
});

afterAll(async () => {
  for (const d of daemons) await d.close(100);
  await upstream?.close();
  try {
    ip('link', 'del', HOST_IF);
  } catch {
    // gone with the namespace
  }
  try {
    ip('netns', 'del', NS);
  } catch {
    // never created
  }
});

async function start(flags: { allow?: string[]; canonicalClients?: string }): Promise<Daemon> {
  const d = await startDaemon({ dns: `${DAEMON_ADDR}:0`, zones: [ZONE], upstreams: [upstream.address], ...flags });
  daemons.push(d);
  return d;
}

describe('a daemon on a non-loopback address, asked from another host', () => {
  it('answers canonical names but refuses recursion to networks outside --allow', async () => {
    const d = await start({});
    expect((await digFromOtherHost(d, ['SRV', `api.${ZONE}`])).answer[0]![6]).toBe('12082');
    const r = await digFromOtherHost(d, ['A', 'www.example.org']);
    expect(r.status).toBe('REFUSED');
    expect(r.answer).toHaveLength(0);
  });

  it('forwards for a network in --allow', async () => {
    const d = await start({ allow: [`${subnet}.0/24`] });
    const r = await digFromOtherHost(d, ['A', 'www.example.org']);
    expect(r.status).toBe('NOERROR');
    expect(r.answer[0]![4]).toBe('192.0.2.7');
  });

  it('refuses canonical names too with --canonical-clients allowed', async () => {
    const d = await start({ canonicalClients: 'allowed' });
    expect((await digFromOtherHost(d, ['SRV', `api.${ZONE}`])).status).toBe('REFUSED');
  });
});
