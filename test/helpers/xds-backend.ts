import * as grpc from '@grpc/grpc-js';

/**
 * Backends for the xDS tests and bench: real grpc-js servers answering one
 * method with their own address:port, so a caller sees which one a call
 * reached.
 */

/** The one method every backend serves: replies with its own address:port. */
export const WHOAMI_PATH = '/canonport.test.Echo/WhoAmI';
const identity = (b: Buffer) => b;
const ECHO_SERVICE: grpc.ServiceDefinition = {
  WhoAmI: {
    path: WHOAMI_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: 'whoAmI',
  },
};

export interface Backend {
  /** `ADDRESS:PORT`, also what it answers. */
  id: string;
  /** Stops at once: open connections are closed, so clients see the backend gone. */
  stop(): void;
}

/** A backend on `address:port` (port 0: any free one; `port` tells which). */
export async function startBackend(address: string, port: number): Promise<Backend & { port: number }> {
  const server = new grpc.Server();
  let id = '';
  server.addService(ECHO_SERVICE, {
    WhoAmI: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(id)),
  });
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${address}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  id = `${address}:${bound}`;
  return { id, port: bound, stop: () => server.forceShutdown() };
}

/** One WhoAmI call over `client`: the backend's id, or the error's status code and details. */
export function whoAmI(client: grpc.Client, timeoutMs = 2000): Promise<{ id?: string; error?: string }> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(WHOAMI_PATH, identity, identity, Buffer.alloc(0), { deadline: Date.now() + timeoutMs }, (err, res) => {
      if (err) resolve({ error: `${grpc.status[err.code] ?? err.code}: ${err.details}` });
      else resolve({ id: res!.toString() });
    });
  });
}

/** Counts of answering backends (and errors) over `n` calls. */
export type Tally = Record<string, number>;

/**
 * Calls until `done(tally of the last round)` holds or `withinMs` passes;
 * returns the last round. Rounds are `round` calls each.
 */
export async function pollUntil(call: (n: number) => Promise<Tally>, done: (t: Tally) => boolean, withinMs: number, round = 10): Promise<{ tally: Tally; ok: boolean; elapsedMs: number }> {
  const start = Date.now();
  let tally: Tally = {};
  for (;;) {
    tally = await call(round);
    if (done(tally)) return { tally, ok: true, elapsedMs: Date.now() - start };
    if (Date.now() - start > withinMs) return { tally, ok: false, elapsedMs: Date.now() - start };
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A tally from one backend alone: every call reached `id`. */
export const only = (id: string) => (t: Tally) => Object.keys(t).length === 1 && t[id] !== undefined;

/**
 * What one xDS test file starts (backends, clients), stopped and closed
 * together in its afterAll.
 */
export class XdsTestParts {
  private readonly backends: Backend[] = [];
  private readonly closables: Array<{ close(): void }> = [];

  async backend(address: string, port: number): Promise<Backend & { port: number }> {
    const b = await startBackend(address, port);
    this.backends.push(b);
    return b;
  }

  /** Closed with the rest. */
  track<T extends { close(): void }>(c: T): T {
    this.closables.push(c);
    return c;
  }

  /** A grpc-js channel to `target` (e.g. `xds:///NAME`): `n` WhoAmI calls, tallied by who answered (or `error:CODE`). */
  nodeClient(target: string): (n: number, timeoutMs?: number) => Promise<Tally> {
    const c = this.track(new grpc.Client(target, grpc.credentials.createInsecure()));
    return async (n, timeoutMs = 2000) => {
      const tally: Tally = {};
      for (let i = 0; i < n; i++) {
        const r = await whoAmI(c, timeoutMs);
        const key = r.id ?? `error:${r.error!.split(':')[0]}`;
        tally[key] = (tally[key] ?? 0) + 1;
      }
      return tally;
    };
  }

  close(): void {
    for (const c of this.closables.splice(0)) c.close();
    for (const b of this.backends.splice(0)) b.stop();
  }
}
