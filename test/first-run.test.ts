import { spawn, spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startedByNpm } from '../src/daemon/signals.js';
import { stopChild } from './helpers/child.js';
import { runCli } from './helpers/cli.js';
import { closedPort } from './helpers/ports.js';
import { userEnv } from './helpers/scratch-project.js';
import { REPO } from './helpers/serve-process.js';

/**
 * The rough edges of a newcomer's first hour (issue 23), each through the
 * real CLI: in-process through main() where only the output matters, as a
 * process where pipes and signals do. npm and npx are the real ones.
 */

const work = mkdtempSync(join(tmpdir(), 'canonport-first-run-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const LISTEN = ['--dns', '127.0.0.1:0', '--grpc', '127.0.0.1:0', '--http', '127.0.0.1:0'];
const EXAMPLE = join(REPO, 'test/fixtures/registry/example.yaml');

/** Runs `argv` with its stdout (or stderr) read by nobody: the pipe's far end is closed before it writes, as `| head -0` would. */
function withClosedPipe(argv: string[], which: 'stdout' | 'stderr' = 'stdout'): Promise<{ code: number | null; signal: NodeJS.Signals | null; other: string }> {
  return new Promise((resolve) => {
    const p = spawn(argv[0]!, argv.slice(1), { cwd: REPO, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    p[which]!.destroy();
    let other = '';
    p[which === 'stdout' ? 'stderr' : 'stdout']!.on('data', (c: Buffer) => void (other += c.toString('utf8')));
    p.on('exit', (code, signal) => resolve({ code, signal, other }));
  });
}

// Each case is one short process that mostly waits to start: they run side by side.
describe.concurrent('a printing command whose reader has gone (| head -1)', () => {
  const node = (...args: string[]) => [process.execPath, 'bin/canonport.js', ...args];
  // Each with the exit code it has when the output is read: the closed pipe changes nothing but the output.
  const commands: [string, string[], number][] = [
    ['serve --print-config', node('serve', '--print-config'), 0],
    ['serve --print-config --json', node('serve', '--print-config', '--json'), 0],
    ['port', node('port', 'api', 'db', 'zebra'), 0],
    ['decode', node('decode', '12082', '6379'), 0],
    ['check (findings: exit 1)', node('check', 'cat', 'caterpillar', 'zebra'), 1],
    ['order', node('order', '--registry', EXAMPLE), 0],
    ['compose', node('compose', '--registry', EXAMPLE), 0],
    ['inventory', node('inventory'), 0],
    ['inventory --json', node('inventory', '--json'), 0],
    ['xds-bootstrap', node('xds-bootstrap', '--server', '127.0.0.1:13655'), 0],
    ['--help', node('--help'), 0],
    ['serve --help', node('serve', '--help'), 0],
    ['--version', node('--version'), 0],
  ];

  it.each(commands)('%s ends quietly, with its own exit code', async (_, argv, code) => {
    const r = await withClosedPipe(argv);
    expect(r.other).not.toMatch(/EPIPE|Unhandled|internal error|\n\s+at /);
    expect(r).toMatchObject({ code, signal: null });
  });

  it('fleet, whose hosts do not answer, ends quietly too (exit 0: the view, hosts down)', async () => {
    const r = await withClosedPipe(node('fleet', `127.0.0.1:${await closedPort()}`, '--timeout', '500'));
    expect(r.other).not.toMatch(/EPIPE|Unhandled|\n\s+at /);
    expect(r).toMatchObject({ code: 0, signal: null });
  });

  it('an error line to a closed stderr (2>&1 | head) ends quietly with the usage code', async () => {
    expect(await withClosedPipe(node('port', '--', '-api'), 'stderr')).toMatchObject({ code: 2, signal: null, other: '' });
  });
});

describe('stopping what the person started stops the daemon', () => {
  /** Starts `argv` as a person's shell would with `&`; resolves with the launcher's process and the daemon's PID from its ready line. */
  async function launch(argv: string[], cwd: string): Promise<{ launcher: ReturnType<typeof spawn>; daemonPid: number; logs: () => string }> {
    const launcher = spawn(argv[0]!, argv.slice(1), { cwd, env: userEnv(), stdio: ['ignore', 'ignore', 'pipe'] });
    let text = '';
    const daemonPid = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line within 30 s:\n${text}`)), 30_000);
      launcher.stderr!.on('data', (c: Buffer) => {
        text += c.toString('utf8');
        const m = /"pid":(\d+),"event":"ready"/.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
      launcher.on('exit', (code) => reject(new Error(`${argv.join(' ')} exited ${code} before ready:\n${text}`)));
    });
    return { launcher, daemonPid, logs: () => text };
  }

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  /** Sends SIGTERM to the launcher only (`kill $!`), then waits up to `ms` (a correctness bound, not a speed one) for the daemon to be gone. */
  async function killLauncherAndWait(l: Awaited<ReturnType<typeof launch>>, ms = 15_000): Promise<boolean> {
    expect(l.daemonPid).not.toBe(l.launcher.pid);
    l.launcher.kill('SIGTERM');
    for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise((r) => setTimeout(r, 100))) if (!alive(l.daemonPid)) return true;
    // Still there: the test fails; stop the stray by its PID so it holds nothing after the test.
    process.kill(l.daemonPid, 'SIGKILL');
    return false;
  }

  it('npx canonport serve &, then kill $!: the daemon (npx’s grandchild, through sh) stops and drains', async () => {
    // A project with canonport's bin in node_modules/.bin, as an install gives: npx runs it through `sh -c`, the tree the issue saw.
    const dir = join(work, 'npx-project');
    mkdirSync(join(dir, 'node_modules/.bin'), { recursive: true });
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch-launcher', private: true }));
    symlinkSync(join(REPO, 'bin/canonport.js'), join(dir, 'node_modules/.bin/canonport'));
    const l = await launch(['npx', '--no-install', 'canonport', 'serve', ...LISTEN], dir);
    expect(await killLauncherAndWait(l)).toBe(true);
    expect(l.logs()).toMatch(/"reason":"launcher-exited".*draining/);
    expect(l.logs()).toMatch(/"event":"stopped"/);
    await stopChild(l.launcher);
  });

  it('npm start &, then kill $!: the same', async () => {
    const l = await launch(['npm', 'start', '--', ...LISTEN], REPO);
    expect(await killLauncherAndWait(l)).toBe(true);
    expect(l.logs()).toMatch(/"reason":"launcher-exited"/);
    await stopChild(l.launcher);
  });

  it('watches its launcher only when npm started it for a person (npx, npm start, npm run), not under npm test or a service manager', () => {
    const npm = { npm_execpath: '/usr/lib/node_modules/npm/bin/npm-cli.js' };
    expect(startedByNpm({ ...npm, npm_command: 'exec' })).toBe(true);
    expect(startedByNpm({ ...npm, npm_command: 'start' })).toBe(true);
    expect(startedByNpm({ ...npm, npm_command: 'run' })).toBe(true);
    expect(startedByNpm({ ...npm, npm_command: 'test' })).toBe(false);
    expect(startedByNpm({ npm_command: 'exec' })).toBe(false);
    expect(startedByNpm({})).toBe(false);
  });
});

describe('prepare (scripts/build.mjs): dist/ compiled only when the sources changed', () => {
  /** A tiny project with the real script and the repository's TypeScript: what the script decides, not tsc's speed. */
  const tinyProject = (name: string, tsconfig: object = {}) => {
    const dir = join(work, name);
    mkdirSync(join(dir, 'src/cli'), { recursive: true });
    mkdirSync(join(dir, 'scripts'), { recursive: true });
    cpSync(join(REPO, 'scripts/build.mjs'), join(dir, 'scripts/build.mjs'));
    cpSync(join(REPO, 'scripts/bundle-ui.mjs'), join(dir, 'scripts/bundle-ui.mjs'));
    cpSync(join(REPO, 'scripts/bundle-zod.mjs'), join(dir, 'scripts/bundle-zod.mjs'));
    symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { outDir: 'dist', rootDir: 'src', module: 'nodenext', moduleResolution: 'nodenext', types: [], ...tsconfig }, include: ['src'] }));
    const build = () =>
      new Promise<string>((resolve, reject) => {
        const p = spawn(process.execPath, ['scripts/build.mjs'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        p.stdout!.on('data', (c: Buffer) => void (out += c.toString('utf8')));
        p.stderr!.on('data', (c: Buffer) => void (out += c.toString('utf8')));
        p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`build.mjs exited ${code}:\n${out}`))));
      });
    return { dir, build };
  };

  it('compiles a changed source, and leaves a current dist/ alone', async () => {
    const { dir, build } = tinyProject('build');
    writeFileSync(join(dir, 'src/cli/main.ts'), 'export const answer = 1;\n');
    const main = join(dir, 'dist/cli/main.js');

    expect(await build()).not.toMatch(/not compiling/);
    expect(readFileSync(main, 'utf8')).toContain('answer = 1');
    const built = statSync(main).mtimeMs;

    expect(await build()).toMatch(/not compiling again/);
    expect(statSync(main).mtimeMs).toBe(built);

    writeFileSync(join(dir, 'src/cli/main.ts'), 'export const answer = 2;\n');
    expect(await build()).not.toMatch(/not compiling/);
    expect(readFileSync(main, 'utf8')).toContain('answer = 2');

    // npm run build forces it; npm install runs prepare, which decides.
    const scripts = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    expect(scripts).toMatchObject({ build: 'node scripts/build.mjs --force', prepare: 'node scripts/build.mjs', start: 'bin/canonport.js serve' });
  });

  it('emits JavaScript without comments and in Latin-1 (one byte a character in V8\'s heap), with the same values; declarations keep their comments', async () => {
    // Issue 24: V8 keeps every module's source text for as long as the daemon runs, at two bytes a character
    // when one character is outside Latin-1.
    const { dir, build } = tinyProject('lean', { declaration: true });
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(
      join(dir, 'src/cli/main.ts'),
      [
        '/** A dash in a comment — and an arrow → here. */',
        "export const single = 'a → b, café';",
        'export const double = "x — y \\u2014 z";',
        'export const plain = `no substitution … ${"\\u{1F600}"}`;',
        'export const bare = `no substitution → at all`;',
        'const n = 3;',
        'export const parts = `${n} × ${n} → ${n * n}, ok`; // 😀 trailing',
        'export const raw = String.raw`tag \\n → kept`;',
        'export const astral = "😀";',
        '',
      ].join('\n'),
    );
    await build();
    const js = readFileSync(join(dir, 'dist/cli/main.js'), 'utf8');
    // A tagged template is left as written: its tag sees the raw text.
    expect(js.split('\n').filter((l) => /[^\u0000-\u00ff]/.test(l))).toEqual(['export const raw = String.raw `tag \\n → kept`;']);
    expect(js).not.toMatch(/\/\*\*|\/\/ 😀/);
    const out = (await import(pathToFileURL(join(dir, 'dist/cli/main.js')).href)) as Record<string, string>;
    expect({ ...out }).toEqual({
      single: 'a → b, café',
      double: 'x — y — z',
      plain: 'no substitution … 😀',
      bare: 'no substitution → at all',
      parts: '3 × 3 → 9, ok',
      raw: 'tag \\n → kept',
      astral: '😀',
    });
    expect(readFileSync(join(dir, 'dist/cli/main.d.ts'), 'utf8')).toContain('/** A dash in a comment — and an arrow → here. */');
  });

  it("this checkout's dist/ (built by the test run the way npm run build builds it) holds no comment block and nothing outside Latin-1", () => {
    const wide: string[] = [];
    const commented: string[] = [];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const f = join(d, e.name);
        if (e.isDirectory()) walk(f);
        else if (e.name.endsWith('.js')) {
          const text = readFileSync(f, 'utf8');
          if (/[^\u0000-\u00ff]/.test(text)) wide.push(f);
          if (text.includes('/**')) commented.push(f);
        }
      }
    };
    walk(join(REPO, 'dist'));
    expect({ wide, commented }, 'dist/ compiled by a plain tsc -p tsconfig.json? npm run build compiles it the way the package ships').toEqual({ wide: [], commented: [] });
  });
});

describe('scripts/bundle-zod.mjs: zod as the part dist/ calls, one module', () => {
  // Issue 24: zod as published is ~260 ES modules and 40 locales in every daemon's heap. The script on a dist/
  // written the way tsc emits it (scripts/build.mjs runs it after tsc; test/lazy-load.test.ts checks a real daemon).
  const bundle = (dist: string) => spawnSync(process.execPath, [join(REPO, 'scripts/bundle-zod.mjs'), dist], { cwd: work, encoding: 'utf8' });
  const distWith = (name: string, files: Record<string, string>) => {
    const dist = join(work, name, 'dist');
    for (const [f, text] of Object.entries(files)) {
      mkdirSync(join(dist, f, '..'), { recursive: true });
      writeFileSync(join(dist, f), text);
    }
    writeFileSync(join(work, name, 'package.json'), '{ "type": "module" }\n');
    return dist;
  };

  it("points dist/'s imports at dist/vendor/zod.js, ASCII, with the members dist/ names and zod's own checks and messages", async () => {
    const dist = distWith('zod', {
      'cli/main.js': "import { z } from 'zod';\nexport const message = z.object({ n: z.number() }).safeParse({ n: 'x' }).error?.issues[0]?.message;\n",
      'registry/schema.js': "import { z } from 'zod';\nexport const ok = z.enum(['a', 'b']).safeParse('b').success;\n",
      'other.js': 'export const z = { nothing: 1 };\n',
    });
    const r = bundle(dist);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(dist, 'cli/main.js'), 'utf8')).toMatch(/^import \{ z \} from '\.\.\/vendor\/zod\.js';$/m);
    expect(readFileSync(join(dist, 'registry/schema.js'), 'utf8')).toMatch(/^import \{ z \} from '\.\.\/vendor\/zod\.js';$/m);
    const vendor = readFileSync(join(dist, 'vendor/zod.js'), 'utf8');
    expect(vendor).not.toMatch(/[^\u0000-\u007f]/);
    // What dist/ calls, and no more (a module that does not import zod is not read; no locale but English).
    expect(vendor).toMatch(/const z ?= ?Object\.freeze\(\{ ?"enum": ?\w+, ?"number": ?\w+, ?"object": ?\w+ ?\}\)/);
    expect(vendor.length).toBeLessThan(400_000);
    const main = (await import(pathToFileURL(join(dist, 'cli/main.js')).href)) as { message: string };
    expect(main.message).toBe('Invalid input: expected number, received string');
    expect(((await import(pathToFileURL(join(dist, 'registry/schema.js')).href)) as { ok: boolean }).ok).toBe(true);
    // Run again on the result (an incremental build leaves unchanged files rewritten): the same.
    expect(bundle(dist).status).toBe(0);
    expect(readFileSync(join(dist, 'cli/main.js'), 'utf8')).toMatch(/^import \{ z \} from '\.\.\/vendor\/zod\.js';$/m);
  });

  it('refuses any other form of importing zod, naming the file: it would leave the package in the daemon', () => {
    const dist = distWith('zod-star', { 'cli/main.js': "import * as zod from 'zod';\nexport const s = zod.string();\n" });
    const r = bundle(dist);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/cli\/main\.js imports zod other than as `import \{ z \} from 'zod'`/);
  });
});

describe('what the CLI tells a newcomer', () => {
  const registry = (name: string, text: string) => {
    const file = join(work, name);
    writeFileSync(file, text);
    return file;
  };

  it('a YAML indentation error points at the mis-indented item (line 4, column 4), not the start of its line', async () => {
    const file = registry('indent.yaml', 'services:\n  api:\n    port: 4242\n   db: {}\n');
    const r = await runCli(['check', '--registry', file]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`canonport: ${file}:4:4: All mapping items must start at the same column [CP_REGISTRY_INVALID]\n`);
  });

  it('a misspelt key suggests the nearest known one, wherever it is; a key like none gets no guess', async () => {
    const cases: [string, string, string][] = [
      ['services:\n  api:\n    versionpath: /version\n', '3:5 (services.api.versionpath): unknown field "versionpath" (did you mean "versionPath"?)', 'service field'],
      ['daemon:\n  upstream: [192.0.2.53]\n', '2:3 (daemon.upstream): unknown field "upstream" (did you mean "upstreams"?)', 'daemon setting'],
      ['daemon:\n  cache-size: 10\n', '2:3 (daemon.cache-size): unknown field "cache-size" (did you mean "cacheSize"?)', 'daemon setting, dashed'],
      ['service:\n  api: {}\n', '1:1 (service): unknown field "service" (did you mean "services"?)', 'top level'],
      ['inventory:\n  interval: 1000\n', '2:3 (inventory.interval): unknown field "interval" (did you mean "intervalMs"?)', 'inventory'],
      ['services:\n  api:\n    colour: red\n', '3:5 (services.api.colour): unknown field "colour"', 'no near field'],
    ];
    for (const [text, message, what] of cases) {
      const file = registry(`typo-${what.replace(/\W+/g, '-')}.yaml`, text);
      const r = await runCli(['check', '--registry', file]);
      expect(r.stderr, what).toBe(`canonport: ${file}:${message} [CP_REGISTRY_INVALID]\n`);
    }
  });

  it('port refuses a name no DNS label can have ("-api"), like every other malformed name: usage, exit 2, nothing printed', async () => {
    for (const name of ['-api', '_-api._tcp.cluster-1.example.com', 'api.-zone.example']) {
      const r = await runCli(['port', '--', name]);
      expect(r.code, name).toBe(2);
      expect(r.stdout, name).toBe('');
      expect(r.stderr, name).toMatch(/^canonport: bad name ".*": label "-(api|zone)" starts with "-"/);
    }
    // A name with a hyphen inside is a name.
    expect(await runCli(['port', 'foo-bar', 'api-'])).toMatchObject({ code: 0, stdout: '17176\n12082\n' });
  });
});
