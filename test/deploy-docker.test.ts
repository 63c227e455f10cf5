import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer } from '../src/http/server.js';
import { requireUserSwitch } from './helpers/sandbox.js';
import { testDaemon } from './grpc-fixtures.js';

/**
 * deploy/docker/Dockerfile without Docker: its instructions are parsed and
 * its COPY and RUN steps executed as plain shell steps, one directory per
 * stage standing in for that stage's filesystem. Two RUN steps are replaced
 * by equivalents that need no network (listed in SUBSTITUTES, and printed);
 * everything else runs as written. Then the runtime stage's ENTRYPOINT and
 * CMD run, and its HEALTHCHECK is run against the daemon they start.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DOCKERFILE = join(ROOT, 'deploy/docker/Dockerfile');
const DOCKERIGNORE = join(ROOT, 'deploy/docker/Dockerfile.dockerignore');

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  name: string;
  image: string;
  steps: Instruction[];
}

/** Instructions with continuations joined and comments dropped. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const start = i + 1;
    let line = lines[i]!;
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith('\\') && i + 1 < lines.length) {
      line = line.slice(0, -1);
      i++;
      if (/^\s*#/.test(lines[i]!)) continue;
      line += ` ${lines[i]!.trim()}`;
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile line ${start}: cannot parse "${line}"`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.trim();
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args[k!] = v ?? '';
    } else if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`Dockerfile line ${start}: FROM ${rest}`);
      const image = f[1]!.replace(/\$\{(\w+)\}/g, (_, k: string) => args[k] ?? '');
      stages.push({ name: f[2] ?? String(stages.length), image, steps: [] });
    } else {
      if (stages.length === 0) throw new Error(`Dockerfile line ${start}: ${op} before FROM`);
      stages.at(-1)!.steps.push({ op, args: rest, line: start });
    }
  }
  return { args, stages };
}

/** ENV in both forms: `K=V K2="V 2"` and `K V`. */
function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!args.includes('=')) {
    const [k, ...v] = args.split(/\s+/);
    out[k!] = v.join(' ');
    return out;
  }
  for (const m of args.matchAll(/(\w+)=("([^"]*)"|\S*)/g)) out[m[1]!] = m[3] ?? m[2]!;
  return out;
}

/** Exclusion rules of a .dockerignore: last matching pattern wins, `!` re-includes. */
function dockerignore(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pat = (negate ? l.slice(1) : l).replace(/^\/+/, '');
      const re = new RegExp(`^${pat.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*\*/g, '\u0000').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\u0000/g, '.*')}(/.*)?$`);
      return { negate, re };
    });
  return (rel) => {
    let excluded = false;
    for (const r of rules) if (r.re.test(rel)) excluded = !r.negate;
    return excluded;
  };
}

/**
 * RUN commands replaced by offline equivalents. The build stage's full
 * install reuses the repository's node_modules; the deps stage's production
 * install copies it and prunes the dev dependencies with npm itself, from
 * the same lockfile; the npm cache is shared with the machine, so it is not
 * cleaned.
 */
const SUBSTITUTES: Array<{ match: RegExp; run: (cwd: string) => void; why: string }> = [
  {
    match: /^npm ci --ignore-scripts( --no-audit)?( --no-fund)?$/,
    why: 'link the repository node_modules (same lockfile)',
    run: (cwd) => symlinkSync(join(ROOT, 'node_modules'), join(cwd, 'node_modules')),
  },
  {
    match: /^npm ci --omit=dev --ignore-scripts( --no-audit)?( --no-fund)?$/,
    why: 'copy the repository node_modules, then npm prune --omit=dev --offline',
    run: (cwd) => {
      cpSync(join(ROOT, 'node_modules'), join(cwd, 'node_modules'), { recursive: true, verbatimSymlinks: true });
      shell('npm prune --omit=dev --ignore-scripts --offline --no-audit --no-fund', cwd, {});
    },
  },
  { match: /^npm cache clean --force$/, why: 'skipped: the npm cache is the machine\'s', run: () => undefined },
];

function shell(cmd: string, cwd: string, env: Record<string, string>): string {
  const r = spawnSync('sh', ['-c', cmd], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 240_000 });
  if (r.status !== 0) throw new Error(`RUN ${cmd} (in ${cwd}) failed with ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

interface Built {
  stages: Map<string, { root: string; workdir: string; env: Record<string, string>; user?: string }>;
  runtime: Stage;
  log: string[];
}

/** Executes every stage's COPY/RUN/WORKDIR/ENV/USER into dir; records the rest for the checks. */
function build(dir: string): Built {
  const { stages } = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
  const ignored = dockerignore(readFileSync(DOCKERIGNORE, 'utf8'));
  const out: Built['stages'] = new Map();
  const log: string[] = [];
  for (const stage of stages) {
    const st = { root: join(dir, stage.name), workdir: '/', env: {} as Record<string, string>, user: undefined as string | undefined };
    mkdirSync(st.root, { recursive: true });
    out.set(stage.name, st);
    const here = () => join(st.root, st.workdir);
    for (const step of stage.steps) {
      switch (step.op) {
        case 'WORKDIR':
          st.workdir = step.args.startsWith('/') ? step.args : join(st.workdir, step.args);
          mkdirSync(here(), { recursive: true });
          break;
        case 'ENV':
          Object.assign(st.env, parseEnv(step.args));
          break;
        case 'USER':
          st.user = step.args;
          break;
        case 'COPY': {
          const parts = step.args.split(/\s+/);
          const from = parts[0]!.startsWith('--from=') ? parts.shift()!.slice('--from='.length) : null;
          const dest = parts.pop()!;
          const destAbs = dest.startsWith('/') ? join(st.root, dest) : join(here(), dest);
          for (const src of parts) {
            let srcAbs: string;
            if (from) {
              const other = out.get(from);
              if (!other) throw new Error(`line ${step.line}: COPY --from=${from}: no such stage`);
              srcAbs = join(other.root, src);
            } else {
              if (ignored(src)) throw new Error(`line ${step.line}: COPY ${src} is excluded by Dockerfile.dockerignore`);
              srcAbs = join(ROOT, src);
            }
            // Docker's rules: a directory's contents go into dest; a file goes to dest, or into it when dest ends in / or there are several sources.
            const isDir = statSync(srcAbs).isDirectory();
            const target = isDir ? destAbs : dest.endsWith('/') || parts.length > 1 ? join(destAbs, basename(src)) : destAbs;
            mkdirSync(isDir ? target : dirname(target), { recursive: true });
            cpSync(srcAbs, target, {
              recursive: true,
              verbatimSymlinks: true,
              // The build context as Docker sends it: .dockerignore applied.
              filter: (p) => from !== null || !ignored(relative(ROOT, p)),
            });
          }
          break;
        }
        case 'RUN':
          for (const part of step.args.split(/\s+&&\s+/)) {
            const sub = SUBSTITUTES.find((s) => s.match.test(part.trim()));
            if (sub) {
              log.push(`${stage.name}: RUN ${part.trim()} → ${sub.why}`);
              sub.run(here());
            } else {
              log.push(`${stage.name}: RUN ${part.trim()} (as written)`);
              shell(part, here(), st.env);
            }
          }
          break;
        case 'EXPOSE':
        case 'HEALTHCHECK':
        case 'ENTRYPOINT':
        case 'CMD':
        case 'STOPSIGNAL':
        case 'ARG':
          break;
        default:
          throw new Error(`line ${step.line}: ${step.op} is not understood by this check; teach it`);
      }
    }
  }
  return { stages: out, runtime: stages.at(-1)!, log };
}

const json = (s: string) => JSON.parse(s) as string[];
const stepOf = (stage: Stage, op: string) => stage.steps.filter((s) => s.op === op).at(-1);

function runNode(argv: string[], env: Record<string, string>, cwd: string): { status: number | null; out: string; err: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function runNodeAsync(argv: string[], env: Record<string, string>, cwd: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

describe('deploy/docker/Dockerfile', () => {
  let dir: string;
  let built: Built;
  let app: string;
  let entrypoint: string[];
  let imageEnv: Record<string, string>;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'canonport-docker-'));
    chmodSync(dir, 0o755);
    built = build(dir);
    console.info(built.log.join('\n'));
    const rt = built.stages.get(built.runtime.name)!;
    app = join(rt.root, rt.workdir);
    imageEnv = rt.env;
    // ENTRYPOINT paths are inside the image: map /opt/canonport onto the stage directory.
    entrypoint = json(stepOf(built.runtime, 'ENTRYPOINT')!.args).map((a) => (a.startsWith('/') && existsSync(join(rt.root, a)) ? join(rt.root, a) : a));
  }, 300_000);

  // The stages hold whole installs (node_modules, twice): removing them is as much file-system work as the build
  // wrote, so the hook gets the build's bound, and runs off the event loop.
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 300_000);

  it('is multi-stage on node:20-bookworm-slim, and the runtime runs as a non-root user', () => {
    const { stages } = parseDockerfile(readFileSync(DOCKERFILE, 'utf8'));
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const s of stages) expect(s.image, s.name).toBe('node:20-bookworm-slim');
    const user = built.stages.get(built.runtime.name)!.user;
    expect(user).toBeDefined();
    expect(['root', '0']).not.toContain(user);
  });

  it('exposes DNS over UDP and TCP, gRPC and HTTP, and declares a health check and a stop signal', () => {
    const exposed = built.runtime.steps.filter((s) => s.op === 'EXPOSE').flatMap((s) => s.args.split(/\s+/));
    expect(exposed.sort()).toEqual(['13655', '13656', '53/tcp', '53/udp']);
    expect(stepOf(built.runtime, 'HEALTHCHECK')?.args).toMatch(/--timeout=\d+s .*CMD \[/);
    expect(stepOf(built.runtime, 'STOPSIGNAL')?.args).toBe('SIGTERM');
  });

  it('ships only what runs: dist, bin, proto, package files and production node_modules', () => {
    expect(readdirSync(app).sort()).toEqual(['bin', 'dist', 'node_modules', 'package-lock.json', 'package.json', 'proto']);
    expect(existsSync(join(app, 'dist/cli/main.js'))).toBe(true);
    // Built by the package's own build (scripts/build.mjs): no comment blocks in the JavaScript, kept in the declarations.
    expect(readFileSync(join(app, 'dist/registry/order.js'), 'utf8')).not.toContain('/**');
    expect(readFileSync(join(app, 'dist/registry/order.d.ts'), 'utf8')).toContain('/**');
    // …and zod as the part dist/ calls, one module (scripts/bundle-zod.mjs, issue 24's idle memory).
    expect(readFileSync(join(app, 'dist/registry/schema.js'), 'utf8')).toMatch(/^import \{ z \} from '\.\.\/vendor\/zod\.js';$/m);
    expect(existsSync(join(app, 'dist/vendor/zod.js'))).toBe(true);
    expect(existsSync(join(app, 'proto/canonport/v1/canonport.proto'))).toBe(true);
    expect(statSync(join(app, 'node_modules')).isDirectory()).toBe(true);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies)) expect(existsSync(join(app, 'node_modules', dep)), `runtime has ${dep}`).toBe(true);
    for (const dev of ['typescript', 'vitest', 'fast-check']) {
      expect(Object.keys(pkg.devDependencies)).toContain(dev);
      expect(existsSync(join(app, 'node_modules', dev)), `runtime lacks dev dependency ${dev}`).toBe(false);
    }
    const size = Number(spawnSync('du', ['-sk', app], { encoding: 'utf8' }).stdout.split(/\s/)[0]);
    console.info(`runtime stage adds ${Math.round(size / 1024)} MiB to node:20-bookworm-slim`);
  });

  it('runs its ENTRYPOINT with --help, --version and `port api`', () => {
    const help = runNode([...entrypoint, '--help'], imageEnv, app);
    expect(help.status, help.err).toBe(0);
    expect(help.out).toMatch(/serve/);
    const version = runNode([...entrypoint, '--version'], imageEnv, app);
    expect(version.out.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    const port = runNode([...entrypoint, 'port', 'api'], imageEnv, app);
    expect(port.status, port.err).toBe(0);
    expect(port.out.trim()).toBe('12082');
  });

  it('prints the xDS bootstrap the way its comment shows (the image ENV\'s wildcard gRPC address read as loopback)', () => {
    const line = readFileSync(DOCKERFILE, 'utf8')
      .split('\n')
      .map((l) => /^#\s+docker run --rm (canonport:\S+) (xds-bootstrap .*)$/.exec(l))
      .find((m) => m !== null);
    expect(line, 'a `docker run --rm IMAGE xds-bootstrap …` line in the comments').toBeDefined();
    const [, image, command] = line!;
    // The image the build line in the same comments tags.
    expect(image).toBe(/docker build .* -t (\S+) /.exec(readFileSync(DOCKERFILE, 'utf8'))?.[1]);
    const out = join(dir, 'xds-bootstrap.json');
    // The documented command with `docker run --rm IMAGE` as the ENTRYPOINT it runs, and the redirect into the test's tree.
    const sh = `${entrypoint.map((a) => `'${a}'`).join(' ')} ${command!.replace(/> \/etc\/canonport\/xds-bootstrap\.json$/, `> '${out}'`)}`;
    expect(sh).toContain(`> '${out}'`);
    shell(sh, app, imageEnv);
    const printed = JSON.parse(readFileSync(out, 'utf8')) as { xds_servers: Array<{ server_uri: string }>; node: { id: string } };
    expect(printed.xds_servers[0]!.server_uri).toBe('127.0.0.1:13655');
    expect(printed.node.id).toMatch(/^canonport~\S+$/);
    // Without --server the image's own CANONPORT_GRPC (0.0.0.0:13655) is read as the loopback address it is reached at.
    expect(imageEnv.CANONPORT_GRPC).toBe('0.0.0.0:13655');
    const bare = runNode([...entrypoint, 'xds-bootstrap'], imageEnv, app);
    expect(bare.status, bare.err).toBe(0);
    expect((JSON.parse(bare.out) as typeof printed).xds_servers[0]!.server_uri).toBe('127.0.0.1:13655');
  });

  it('starts the daemon with its CMD and the image ENV, passes its HEALTHCHECK, stops on STOPSIGNAL', async () => {
    const cmd = json(stepOf(built.runtime, 'CMD')!.args);
    expect(cmd[0]).toBe('serve');
    // The image listens on 0.0.0.0:53 etc.; tests take ephemeral loopback ports instead.
    expect(imageEnv.CANONPORT_DNS).toBe('0.0.0.0:53');
    const env = { ...imageEnv, CANONPORT_DNS: '127.0.0.1:0', CANONPORT_GRPC: '127.0.0.1:0', CANONPORT_HTTP: '127.0.0.1:0', CANONPORT_UPSTREAMS: '192.0.2.53' };
    // USER node is uid 1000 in the node images: the daemon runs as that uid, with no capabilities.
    requireUserSwitch(1000);
    const asUser = ['setpriv', '--reuid=1000', '--regid=1000', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs'];
    const argv = [...asUser, ...entrypoint, ...cmd];
    const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { cwd: app, env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const http = await new Promise<string>((resolve, reject) => {
        let buf = '';
        const timer = setTimeout(() => reject(new Error(`not ready in 20 s:\n${buf}`)), 20_000);
        child.stderr!.on('data', (c: Buffer) => {
          buf += c.toString();
          const m = /"event":"ready".*?"http":"([^"]+)"/.exec(buf);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        child.once('exit', (code) => reject(new Error(`exited ${code} before ready:\n${buf}`)));
      });
      const health = json(/CMD (\[.*\])$/.exec(stepOf(built.runtime, 'HEALTHCHECK')!.args)![1]!);
      expect(runNode(health, { CANONPORT_HTTP: http }, app).status).toBe(0);
      // A wildcard address is probed on loopback (the image binds 0.0.0.0).
      expect(runNode(health, { CANONPORT_HTTP: http.replace('127.0.0.1:', '0.0.0.0:') }, app).status).toBe(0);
      const stop = (stepOf(built.runtime, 'STOPSIGNAL')?.args ?? 'SIGTERM') as NodeJS.Signals;
      const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
      child.kill(stop);
      expect(await exited).toBe(0);
      // Nothing listening: the health check reports unhealthy.
      expect(runNode(health, { CANONPORT_HTTP: http }, app).status).toBe(1);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('has a health check that reports unhealthy on a non-200 answer', async () => {
    // /readyz of a daemon that is not ready answers 503: the same check pointed there must fail.
    // The shared fixture's context (a real config, so the connection gate reads its limits), not ready.
    const { ctx } = testDaemon('zones: [localhost]\n', { ready: false });
    const server = await startHttpServer(ctx, { host: '127.0.0.1', port: 0 });
    try {
      // The server runs in this process: the check must run asynchronously or it would wait on a blocked event loop.
      const health = json(/CMD (\[.*\])$/.exec(stepOf(built.runtime, 'HEALTHCHECK')!.args)![1]!);
      const env = { CANONPORT_HTTP: `127.0.0.1:${server.address.port}` };
      expect(await runNodeAsync(health, env, app)).toBe(0);
      const readyz = health.map((a) => a.replace('/healthz', '/readyz'));
      expect(readyz.join(' ')).toContain('/readyz');
      expect(await runNodeAsync(readyz, env, app)).toBe(1);
    } finally {
      await server.close();
    }
  });

  it('has a .dockerignore that keeps the context to what the build copies', () => {
    const ignored = dockerignore(readFileSync(DOCKERIGNORE, 'utf8'));
    for (const p of ['node_modules/x', 'dist/cli/main.js', '.git/HEAD', 'test/a.test.ts', 'scripts/docs-settings.mjs', 'deploy/docker/Dockerfile', 'bench-results/x']) expect(ignored(p), p).toBe(true);
    for (const p of ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/build.mjs', 'scripts/bundle-ui.mjs', 'scripts/bundle-zod.mjs', 'src/cli/main.ts', 'proto/canonport/v1/canonport.proto', 'bin/canonport.js']) expect(ignored(p), p).toBe(false);
  });
});
