import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * Ports a test must name before anything listens on them: for a process it
 * starts (unbound, dnsmasq, `canonport serve`), or as a place where nothing
 * listens.
 *
 * The usual trick, bind port 0 and close, hands out a port from the
 * kernel's ephemeral range, and between the close and its use any socket in
 * any test running in parallel (every connect() and bind(0)) may be given
 * the same port: a rare, unreproducible failure. The kernel never hands out
 * ports above the ephemeral range (61000–65535 by default), and no
 * canonical, versioned or block port lives there either, so each vitest
 * worker takes its own band of that space and cycles through it: a port
 * found free there stays free until the test uses it.
 *
 * If the host's ephemeral range reaches 65535 there is no such space, and
 * the helpers fall back to the kernel's choice.
 */

/** Workers sharing the space above the ephemeral range; more wrap around (still checked before use). */
const MAX_WORKERS = 16;

const band = ((): { start: number; size: number } | null => {
  let hi = 60999;
  try {
    hi = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[1]);
  } catch {
    // not Linux: keep the kernel default
  }
  const size = Math.floor((65535 - hi) / MAX_WORKERS);
  if (!(size >= 16)) return null;
  // CANONPORT_TEST_BAND shifts the bands, so two test runs on one machine (two checkouts) stay apart.
  const worker = (Number(process.env.VITEST_POOL_ID ?? 1) - 1 + Number(process.env.CANONPORT_TEST_BAND ?? 0)) % MAX_WORKERS;
  return { start: hi + 1 + worker * size, size };
})();

// Each test file loads this module afresh: start at a random place so files
// in one worker do not all begin with the port the previous file used last.
let cursor = band ? Math.floor(Math.random() * band.size) : 0;

/** True when `port` on `host` can be bound right now for both UDP and TCP (and is released again). */
async function bindable(host: string, port: number): Promise<boolean> {
  const tcp = createServer();
  const tcpOk = await new Promise<boolean>((resolve) => {
    tcp.once('error', () => resolve(false));
    tcp.listen({ host, port, exclusive: true }, () => resolve(true));
  });
  if (!tcpOk) return false;
  const udp = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  const udpOk = await new Promise<boolean>((resolve) => {
    udp.once('error', () => resolve(false));
    udp.bind({ address: host, port, exclusive: true }, () => resolve(true));
  });
  await new Promise<void>((resolve) => tcp.close(() => resolve()));
  if (udpOk) await new Promise<void>((resolve) => udp.close(() => resolve()));
  return udpOk;
}

/** A port free for both UDP and TCP on `host` (default 127.0.0.1), that no other test will be given meanwhile. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  if (band) {
    for (let tries = 0; tries < band.size; tries++) {
      const port = band.start + (cursor++ % band.size);
      if (await bindable(host, port)) return port;
    }
    throw new Error(`no free test port in ${band.start}–${band.start + band.size - 1} on ${host}`);
  }
  for (let tries = 0; tries < 20; tries++) {
    const tcp = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen({ host, port: 0, exclusive: true }, () => resolve((tcp.address() as { port: number }).port));
    });
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
    if (await bindable(host, port)) return port;
  }
  throw new Error(`no port free for both UDP and TCP on ${host} in 20 tries`);
}

/** A port on `host` where nothing listens (connections are refused), and nothing will while the test runs. */
export const closedPort = freePort;
