import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import dgram from 'node:dgram';
import { freePort } from './ports.js';
import { stopChild } from './child.js';
import { requireTool } from './tools.js';
import { tempDir } from './daemon.js';

export interface Unbound {
  port: number;
  proc: ChildProcess;
  stop(): Promise<void>;
}


/**
 * A real unbound on 127.0.0.1:<free port>, authoritative for `zones` from
 * `localData` lines (unbound local-data syntax), in the foreground, as
 * root without chroot. Resolves once it answers.
 */
export async function startUnbound(opts: { zones: string[]; localData: string[]; extra?: string[] }): Promise<Unbound> {
  const bin = requireTool('unbound', 'unbound');
  const dir = tempDir('canonport-unbound-');
  const port = await freePort();
  const conf = [
    'server:',
    `  interface: 127.0.0.1@${port}`,
    '  do-daemonize: no',
    '  username: ""',
    '  chroot: ""',
    `  directory: "${dir}"`,
    '  pidfile: ""',
    '  use-syslog: no',
    '  logfile: ""',
    '  verbosity: 0',
    '  num-threads: 1',
    '  do-ip6: no',
    '  access-control: 127.0.0.0/8 allow',
    '  module-config: "iterator"',
    '  do-not-query-localhost: no',
    '  harden-glue: no',
    '  minimal-responses: yes',
    ...opts.zones.map((z) => `  local-zone: "${z}." static`),
    ...opts.localData.map((d) => `  local-data: "${d}"`),
    ...(opts.extra ?? []).map((l) => `  ${l}`),
    'remote-control:',
    '  control-enable: no',
  ].join('\n');
  const file = join(dir, 'unbound.conf');
  writeFileSync(file, conf);
  const proc = spawn(bin, ['-d', '-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  await waitForDns(port, () => (proc.exitCode !== null ? `unbound exited: ${stderr}` : null));
  return {
    port,
    proc,
    stop: () => stopChild(proc),
  };
}

/** Polls a DNS server with a root SOA query until it answers anything (bounded). */
export async function waitForDns(port: number, failed: () => string | null, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const query = Buffer.from('abcd01000001000000000000000006' + '0001', 'hex');
  while (Date.now() < deadline) {
    const why = failed();
    if (why) throw new Error(why);
    const ok = await new Promise<boolean>((resolve) => {
      const s = dgram.createSocket('udp4');
      const t = setTimeout(() => {
        s.close();
        resolve(false);
      }, 200);
      s.on('message', () => {
        clearTimeout(t);
        s.close();
        resolve(true);
      });
      s.send(query, port, '127.0.0.1');
    });
    if (ok) return;
  }
  throw new Error(`DNS server on port ${port} did not answer within ${timeoutMs} ms`);
}
