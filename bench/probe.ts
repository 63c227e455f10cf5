import dgram from 'node:dgram';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import dns2 from 'dns2';
import { encodeQuery } from './dns-wire.js';
import { logTail, type Server } from './children.js';

const { Packet } = dns2;

/**
 * Asking a server one question: readiness polls, the answer check that makes
 * sure every server gives the same answer, and the daemon's RSS and metrics.
 */

export interface ProbeAnswer {
  rcode: number;
  /** Answer records in presentation-like form: `SRV 0 0 22690 svc0000.bench.test`, `A 127.0.0.1`. */
  answers: string[];
}

function summarise(msg: Buffer): ProbeAnswer {
  const p = Packet.parse(msg);
  const answers = p.answers.map((r) => {
    if (r.type === Packet.TYPE.SRV) return `SRV ${r.priority} ${r.weight} ${r.port} ${String(r.target).toLowerCase().replace(/\.$/, '')}`;
    if (r.type === Packet.TYPE.A) return `A ${r.address}`;
    return `type${r.type}`;
  });
  return { rcode: p.header.rcode, answers };
}

/**
 * Sends the question every `intervalMs` until an answer arrives or `timeoutMs`
 * passes (null). Resends cover a server that is not bound yet.
 */
export function askDns(port: number, name: string, type: number, timeoutMs = 1000, intervalMs = 100, host = '127.0.0.1'): Promise<ProbeAnswer | null> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket('udp4');
    const id = (Math.random() * 0xffff) | 0;
    const query = encodeQuery(id, name, type);
    let done = false;
    const finish = (v: ProbeAnswer | null) => {
      if (done) return;
      done = true;
      clearInterval(resend);
      clearTimeout(timer);
      socket.close();
      resolve(v);
    };
    socket.on('message', (msg) => {
      if (msg.length < 12 || msg.readUInt16BE(0) !== id) return;
      try {
        finish(summarise(msg));
      } catch {
        // unparsable reply: keep waiting for a good one
      }
    });
    socket.on('error', () => undefined); // ICMP port unreachable while the server starts
    const send = () => socket.send(query, port, host);
    const resend = setInterval(send, intervalMs);
    const timer = setTimeout(() => finish(null), timeoutMs);
    socket.bind(0, host.startsWith('127.') ? '127.0.0.1' : '0.0.0.0', send);
  });
}

/**
 * Waits until `server` answers `name` with NOERROR and at least one record.
 * Returns milliseconds since the server was spawned. Throws with the log's
 * tail if it exits or `timeoutMs` passes.
 */
export async function waitForDnsAnswer(server: Server, name: string, type: number, timeoutMs = 15_000, intervalMs = 5): Promise<number> {
  let gone: string | null = null;
  void server.exited.then((why) => (gone = why));
  const deadline = performance.now() + timeoutMs;
  for (let i = 0; performance.now() < deadline && i < 100_000; i++) {
    if (gone) throw new Error(`${server.name} ${gone} before answering:\n${logTail(server)}`);
    const a = await askDns(server.port, name, type, Math.min(250, Math.max(1, deadline - performance.now())), intervalMs);
    if (a && a.rcode === 0 && a.answers.length > 0) return performance.now() - server.startedAt;
  }
  throw new Error(`${server.name} did not answer ${name} within ${timeoutMs} ms:\n${logTail(server)}`);
}

/** GET http://127.0.0.1:port/path → status and body (short timeout). */
export function httpGet(port: number, path: string, timeoutMs = 1000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/** Polls /readyz until 200; milliseconds since spawn, or throws. */
export async function waitForReadyz(server: Server, httpPort: number, timeoutMs = 15_000, intervalMs = 5): Promise<number> {
  const deadline = performance.now() + timeoutMs;
  for (let i = 0; performance.now() < deadline && i < 100_000; i++) {
    if (server.proc.exitCode !== null || server.proc.signalCode !== null) {
      throw new Error(`${server.name} exited before /readyz answered 200:\n${logTail(server)}`);
    }
    try {
      const r = await httpGet(httpPort, '/readyz', 250);
      if (r.status === 200) return performance.now() - server.startedAt;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${server.name}: /readyz not 200 within ${timeoutMs} ms:\n${logTail(server)}`);
}

/** VmRSS and VmHWM of a process, in MiB (from /proc/PID/status). */
export function readRss(pid: number): { rssMiB: number; hwmMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMiB: kb('VmRSS') / 1024, hwmMiB: kb('VmHWM') / 1024 };
}

/** The value of one unlabelled Prometheus series in a /metrics body, or null. */
export function metricValue(body: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{\\})? ([0-9.eE+-]+)$`, 'm').exec(body);
  return m ? Number(m[1]) : null;
}
