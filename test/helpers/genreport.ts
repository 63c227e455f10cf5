import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * ISC's DNS compliance tool (`genreport`, the tool behind ednscomp) as a
 * test oracle. It is a tool, not part of canonport: nothing of it lives in
 * this repository. `test/preflight.sh` (npm's pretest, and `.ci/run`)
 * builds it from its own source into $TMPDIR/canonport-genreport;
 * CANONPORT_GENREPORT names another binary. Without one, the genreport tests
 * fail saying how to get it: they are never skipped nor passed.
 *
 * Its text report is one line per (zone, server address):
 *
 *   <zone>. @<address> (<server>.): <test>=<result> <test>=<result> …
 *
 * where <result> is a comma-separated list of tags: `ok` first when the
 * test passed (`ok,nsid`, `ok,cookie` …), otherwise what was wrong
 * (`formerr,ra`, `aa`, `timeout`, `skipped` …). See genreport.c
 * printandfree() and process(). Other lines can appear (a stray SOA owner,
 * `<zone>. <server>: NS lookup failed`), so the parser looks for the one
 * report line and keeps the rest for the failure message.
 */

export const GENREPORT_ENV = 'CANONPORT_GENREPORT';

/** Where test/preflight.sh builds genreport. */
export function defaultGenreportPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.TMPDIR || tmpdir(), 'canonport-genreport', 'genreport');
}

/** How to get genreport, for failure messages. */
export const GENREPORT_HOWTO =
  'genreport (ISC\'s DNS compliance tool) is not built: `bash test/preflight.sh` builds it from ../shared/tools/genreport ' +
  '(or GENREPORT_SRC) into $TMPDIR/canonport-genreport (needs the Debian packages gcc, libc6-dev, libssl-dev; ' +
  `as root it installs them), or set ${GENREPORT_ENV} to a built binary; .ci/run does this before the tests`;

/**
 * The genreport binary: the one CANONPORT_GENREPORT names, else the one
 * test/preflight.sh built; null when there is neither (the tests then fail
 * with GENREPORT_HOWTO). A variable that names something that is not an
 * executable file is a broken setup: that throws.
 */
export function genreportBinary(env: NodeJS.ProcessEnv = process.env): string | null {
  const path = env[GENREPORT_ENV];
  if (path === undefined || path === '') {
    const built = defaultGenreportPath(env);
    return isExecutable(built) ? built : null;
  }
  if (!isExecutable(path)) throw new Error(`${GENREPORT_ENV}=${path} is not an executable file. ${GENREPORT_HOWTO}`);
  return path;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export interface GenreportTarget {
  /** The zone under test, without the trailing dot. */
  zone: string;
  /** Server name printed in the report (genreport does not resolve it when an address is given). */
  server: string;
  /** IPv4 address of the server. */
  address: string;
  port: number;
}

export interface GenreportRun {
  /** The command, for messages. */
  argv: string[];
  /** The report line exactly as genreport printed it. */
  line: string;
  /** Test name → its tags, in report order (`signed` included). */
  results: Map<string, string[]>;
  /** Everything genreport printed, for failure messages. */
  output: string;
}

/** A test passed when its first tag is `ok` (later tags such as `nsid` or `cookie` are notes). */
export function passed(tags: readonly string[] | undefined): boolean {
  return tags !== undefined && tags[0] === 'ok';
}

function run(bin: string, args: string[], stdin: string, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(bin, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && (err as { killed?: boolean }).killed) {
        reject(new Error(`${bin} ${args.join(' ')} did not finish within ${timeoutMs} ms:\n${stdout}${stderr}`));
        return;
      }
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
    // A run that exits before reading its input (genreport -L never reads it) closes the pipe:
    // that EPIPE says nothing the exit code and output do not, so it must not escape as an uncaught error.
    child.stdin!.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    child.stdin!.end(stdin);
  });
}

/**
 * The tests genreport runs for `flags`, from its own list (`-L`): with
 * `-t` the TYPE group, otherwise EDNS and, with `-f`, FULL and, with `-c`,
 * COMM. Asking the binary keeps the list right for whichever version CI built.
 */
export async function selectedTests(bin: string, flags: readonly string[]): Promise<string[]> {
  const { stdout } = await run(bin, ['-L'], '', 10_000);
  const groups = flags.includes('-t') ? ['TYPE'] : ['EDNS', ...(flags.includes('-f') ? ['FULL'] : []), ...(flags.includes('-c') ? ['COMM'] : [])];
  const names: string[] = [];
  for (const line of stdout.split('\n')) {
    const [name, ...tags] = line.trim().split(/\s+/);
    if (name && tags.some((t) => groups.includes(t))) names.push(name);
  }
  if (names.length === 0) throw new Error(`genreport -L listed no tests for ${groups.join('/')}:\n${stdout}`);
  return names;
}

/** Parses the report line for `target` out of genreport's output. */
export function parseReport(output: string, target: Pick<GenreportTarget, 'zone' | 'address' | 'server'>): { line: string; results: Map<string, string[]> } {
  const prefix = `${target.zone}. @${target.address} (${target.server}.):`;
  const line = output.split('\n').find((l) => l.startsWith(prefix));
  if (line === undefined) throw new Error(`no genreport line starting "${prefix}" in:\n${output}`);
  const results = new Map<string, string[]>();
  for (const field of line.slice(prefix.length).trim().split(/\s+/)) {
    if (field === '') continue;
    // Test names hold letters, digits, '@' and '-' (edns@512, NSAP-PTR); results never hold '='.
    const eq = field.lastIndexOf('=');
    if (eq <= 0) throw new Error(`unreadable field "${field}" in genreport line:\n${line}`);
    results.set(field.slice(0, eq), field.slice(eq + 1).split(','));
  }
  return { line, results };
}

/**
 * Runs genreport with `flags` (e.g. ['-f', '-c'], ['-t'], ['-R', '-f', '-c'])
 * against one server and parses its report line.
 */
export async function runGenreport(bin: string, target: GenreportTarget, flags: readonly string[], timeoutMs = 120_000): Promise<GenreportRun> {
  // -P comes first: genreport's options are order dependent, and -t resets the test groups chosen before it.
  const args = ['-P', String(target.port), ...flags];
  const { code, stdout, stderr } = await run(bin, args, `${target.zone} ${target.server} ${target.address}\n`, timeoutMs);
  const output = `${stdout}${stderr ? `\n[stderr]\n${stderr}` : ''}`;
  if (code !== 0) throw new Error(`genreport ${args.join(' ')} exited with ${code}:\n${output}`);
  return { argv: [bin, ...args], ...parseReport(stdout, target), output };
}

/** A test that the reference server fails too, excused with the RFC reason. */
export interface Exception {
  test: string;
  reason: string;
}

export interface Verdict {
  /** What makes the subject fail: empty when it is clean. */
  problems: string[];
  /** Tests the subject failed, but no worse than the reference, under a named exception. */
  excused: string[];
}

/**
 * Judges `subject` (canonport) against `reference` (unbound, same flags,
 * same zone, same run): every test in `expected` must be `ok`, except a
 * test named in `exceptions` that the reference fails in this very run, and
 * then the subject may not be worse: its tags must be a subset of the
 * reference's. A reference failure not named is reported too, so the list
 * of exceptions stays written down rather than inferred.
 */
export function judge(subject: GenreportRun, reference: GenreportRun, expected: readonly string[], exceptions: readonly Exception[]): Verdict {
  const problems: string[] = [];
  const excused: string[] = [];
  for (const test of expected) {
    const s = subject.results.get(test);
    const r = reference.results.get(test);
    if (passed(s)) continue;
    const shown = s ? s.join(',') : '(missing from the report)';
    if (!r) {
      problems.push(`${test}=${shown}; the reference did not report this test`);
      continue;
    }
    if (passed(r)) {
      problems.push(`${test}=${shown}; unbound: ${r.join(',')}`);
      continue;
    }
    const named = exceptions.find((e) => e.test === test);
    if (!named) {
      problems.push(`${test}=${shown}; unbound fails it too (${r.join(',')}), but it is not a named exception`);
      continue;
    }
    const worse = (s ?? ['missing']).filter((t) => !r.includes(t));
    if (worse.length > 0) problems.push(`${test}=${shown}; unbound: ${r.join(',')}; worse than unbound by ${worse.join(',')}`);
    else excused.push(`${test}=${shown} (unbound: ${r.join(',')}): ${named.reason}`);
  }
  return { problems, excused };
}
