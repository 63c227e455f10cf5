import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import { join } from 'node:path';
import { stopChild } from '../test/helpers/child.js';

/**
 * Every process the bench starts, so all of them die with it: on normal
 * exit, on an error, on Ctrl-C. Servers log to files in the work directory
 * (no pipe to drain, nothing lost when they crash).
 */

export interface Server {
  name: string;
  proc: ChildProcess;
  pid: number;
  port: number;
  logFile: string;
  startedAt: number;
  /** Resolves with the exit code (or signal) once the process has gone. */
  exited: Promise<string>;
}

export class Children {
  private readonly live = new Map<ChildProcess, string>();
  private readonly usedPorts = new Set<number>();

  constructor(private readonly logDir: string) {}

  /** Tracks a process started elsewhere; call the returned function once it has exited. */
  track(name: string, proc: ChildProcess): () => void {
    this.live.set(proc, name);
    return () => this.live.delete(proc);
  }

  /** Starts a long-running server, its stdout and stderr going to `<logDir>/<name>.log`. */
  spawnServer(name: string, command: string, args: string[], port: number, env?: NodeJS.ProcessEnv): Server {
    const logFile = join(this.logDir, `${name}.log`);
    const fd = openSync(logFile, 'w');
    const startedAt = performance.now();
    const proc = spawn(command, args, { stdio: ['ignore', fd, fd], env: env ?? process.env });
    closeSync(fd);
    const untrack = this.track(name, proc);
    const exited = new Promise<string>((resolve) => {
      proc.on('error', (err) => {
        untrack();
        resolve(`failed to start: ${err.message}`);
      });
      proc.on('exit', (code, signal) => {
        untrack();
        resolve(signal ? `killed by ${signal}` : `exited with code ${code}`);
      });
    });
    return { name, proc, pid: proc.pid ?? -1, port, logFile, startedAt, exited };
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  async stop(server: Server, graceMs = 1500): Promise<void> {
    await stopChild(server.proc, { killAfterMs: graceMs });
  }

  /** Stops every tracked process (servers and load generators), in parallel. */
  async stopAll(graceMs = 1500): Promise<void> {
    const procs = [...this.live.keys()];
    await Promise.all(procs.map((p) => stopChild(p, { killAfterMs: graceMs })));
    this.live.clear();
  }

  /** Last resort from process 'exit' (synchronous): SIGKILL whatever is left. */
  killAllSync(): void {
    for (const p of this.live.keys()) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    this.live.clear();
  }

  /**
   * A loopback port free for both UDP and TCP right now, never handed out
   * twice in this run (DNS servers bind both).
   */
  async freePort(): Promise<number> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = await new Promise<number>((resolve, reject) => {
        const srv = net.createServer();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
          const p = (srv.address() as net.AddressInfo).port;
          srv.close(() => resolve(p));
        });
      });
      if (this.usedPorts.has(port)) continue;
      const udpFree = await new Promise<boolean>((resolve) => {
        const s = dgram.createSocket('udp4');
        s.once('error', () => resolve(false));
        s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
      });
      if (!udpFree) continue;
      this.usedPorts.add(port);
      return port;
    }
    throw new Error('no free loopback port found in 50 attempts');
  }
}

/** The last lines of a server's log, for error messages. */
export function logTail(server: Server, lines = 15): string {
  try {
    const text = readFileSync(server.logFile, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}
