import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { registerCanonResolver } from '../../src/grpc/canon-resolver.js';
import { GRPC_PORT, ZONE } from './cluster-lab.js';
import type { Host } from './netns.js';
import { SYSTEM_PYTHON } from './python.js';
import { REPO } from './serve-process.js';
import { tempDir } from './temp.js';

/**
 * The clients of a rolling deploy (issue 20), each knowing only a name:
 * Python urllib through glibc and the client host's resolv.conf, curl the
 * same way, a grpc-js channel on `canon:` with round_robin, and a stock
 * Python grpcio client on `xds:///`. Shared by test/rollout-netns.test.ts
 * and the bench (bench/rollout.ts): each loops until stopped and returns
 * its tally of answered and failed requests.
 */

export interface Tally {
  ok: number;
  failed: number;
  errors: Record<string, number>;
}

/** A client process that loops until its stdin closes, then prints one JSON tally. */
export function pythonLoop(script: string, args: string[], env: NodeJS.ProcessEnv, where?: Host): { stop(): Promise<Tally>; child: ChildProcess } {
  const argv = ['-c', script, ...args];
  const child = where ? where.spawn(SYSTEM_PYTHON, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] }) : spawn(SYSTEM_PYTHON, argv, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  return {
    child,
    stop: () =>
      new Promise((resolve, reject) => {
        child.once('exit', () => {
          try {
            resolve(JSON.parse(out.trim().split('\n').at(-1)!) as Tally);
          } catch {
            reject(new Error(`client printed no tally: ${out} ${err}`));
          }
        });
        child.stdin!.end();
      }),
  };
}

const URLLIB = `
import json, sys, threading, urllib.request
url = sys.argv[1]
tally = {"ok": 0, "failed": 0, "errors": {}}
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
while not stop.is_set():
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            r.read()
        tally["ok"] += 1
        stop.wait(0.005)
    except Exception as e:
        tally["failed"] += 1
        key = type(e).__name__ + ": " + str(e)[:80]
        tally["errors"][key] = tally["errors"].get(key, 0) + 1
print(json.dumps(tally), flush=True)
`;

const GRPCIO = `
import json, sys, threading, grpc
tally = {"ok": 0, "failed": 0, "errors": {}}
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
channel = grpc.insecure_channel(sys.argv[1])
name = channel.unary_unary("/canonport.test.Who/Name")
# Connected once before counting: the xDS resources' first fetch is setup, not the deploy.
name(b"", timeout=15, wait_for_ready=True)
while not stop.is_set():
    try:
        name(b"", timeout=3)
        tally["ok"] += 1
        stop.wait(0.005)
    except grpc.RpcError as e:
        tally["failed"] += 1
        key = str(e.code()) + ": " + (e.details() or "")[:80]
        tally["errors"][key] = tally["errors"].get(key, 0) + 1
print(json.dumps(tally), flush=True)
`;

/** curl inside the client host, one request after another (each a new resolution through glibc). */
export function curlLoop(client: Host, url: string): { stop(): Promise<Tally> } {
  const tally: Tally = { ok: 0, failed: 0, errors: {} };
  let running = true;
  const loop = (async () => {
    while (running) {
      const code = await new Promise<number>((resolve) => {
        const c = client.spawn('curl', ['-sS', '-f', '-o', '/dev/null', '--max-time', '3', url]);
        let err = '';
        c.stderr!.on('data', (d) => (err += d));
        c.once('exit', (code) => {
          if (code !== 0) tally.errors[err.trim().slice(0, 80)] = (tally.errors[err.trim().slice(0, 80)] ?? 0) + 1;
          resolve(code ?? 1);
        });
      });
      if (code === 0) tally.ok++;
      else tally.failed++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return tally;
    },
  };
}

/** A grpc-js channel on canon: with round_robin, calling in a loop. */
export function canonLoop(client: Host): { stop(): Promise<Tally> } {
  registerCanonResolver({ grpc, daemon: `${client.address}:${GRPC_PORT}` });
  const Who = grpc.makeGenericClientConstructor(
    { Name: { path: '/canonport.test.Who/Name', requestStream: false, responseStream: false, requestSerialize: (x: Buffer) => x, requestDeserialize: (x: Buffer) => x, responseSerialize: (x: Buffer) => x, responseDeserialize: (x: Buffer) => x } },
    'Who',
  );
  const c = new Who(`canon:///rpc.${ZONE}`, grpc.credentials.createInsecure(), { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) }) as unknown as grpc.Client & {
    Name: (req: Buffer, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null) => void) => void;
  };
  const tally: Tally = { ok: 0, failed: 0, errors: {} };
  let running = true;
  const loop = (async () => {
    while (running) {
      const err = await new Promise<grpc.ServiceError | null>((resolve) => c.Name(Buffer.alloc(0), { deadline: Date.now() + 3000 }, resolve));
      if (!err) tally.ok++;
      else {
        tally.failed++;
        tally.errors[`${err.code} ${err.details}`.slice(0, 80)] = (tally.errors[`${err.code} ${err.details}`.slice(0, 80)] ?? 0) + 1;
      }
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      c.close();
      return tally;
    },
  };
}

/** Starts every client kind; stop() returns each one's tally. */
export async function clients(client: Host, ports: { api: number }): Promise<{ stop(): Promise<Record<string, Tally>> }> {
  const url = `http://api.${ZONE}:${ports.api}/`;
  const urllib = pythonLoop(URLLIB, [url], { PATH: process.env.PATH }, client);
  const bootstrap = xdsBootstrapFile(`${client.address}:${GRPC_PORT}`);
  const xds = pythonLoop(GRPCIO, [`xds:///rpc.${ZONE}`], { PATH: process.env.PATH, GRPC_XDS_BOOTSTRAP: bootstrap });
  const curl = curlLoop(client, url);
  const canon = canonLoop(client);
  // Every client has answers before the deploy starts (the first xDS fetch, the first resolution).
  await new Promise((r) => setTimeout(r, 2_000));
  return {
    stop: async () => {
      const [u, x, c, g] = await Promise.all([urllib.stop(), xds.stop(), curl.stop(), canon.stop()]);
      return { 'python urllib (glibc)': u, curl: c, 'grpc-js canon: round_robin': g, 'python grpcio xds:///': x };
    },
  };
}


/** `canonport xds-bootstrap --server SERVER` written to a file (the CLI as installed: the bench cannot load the CLI's modules). */
function xdsBootstrapFile(server: string): string {
  const text = execFileSync(process.execPath, [join(REPO, 'bin', 'canonport.js'), 'xds-bootstrap', '--server', server, '--node-id', 'canonport-rollout'], { encoding: 'utf8' });
  JSON.parse(text);
  const path = join(tempDir('canonport-xds-'), 'bootstrap.json');
  writeFileSync(path, text);
  return path;
}
