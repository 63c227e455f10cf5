// Compiles src/ into dist/ (tsc -p tsconfig.json), from scratch, unless
// dist/ is already the build of these sources. `npm install` runs it as
// `prepare`, and so does the first `npx canonport` in a checkout: npx
// installs the checkout into its own cache as a link, which runs `prepare`
// again. Deleting and recompiling dist/ there cost the README's first
// command about 10 s before the daemon answered; now an unchanged checkout
// costs a digest (~30 ms). `npm run build` passes --force.
//
// dist/ is current when dist/.source-digest holds the digest of what tsc
// reads: every file under src/, tsconfig.json, and the TypeScript version
// (and the bundler scripts, scripts/bundle-ui.mjs and scripts/bundle-zod.mjs).
// A content digest, not mtimes: a fresh clone or checkout gives every file
// a new mtime.
//
// The JavaScript is emitted lean for the daemon's idle memory (issue 24):
// V8 keeps every module's source text in the heap for as long as it runs,
// and a source with one character outside Latin-1 (a dash or an arrow in a
// comment) is kept at two bytes a character. So the emit drops comments
// from the JavaScript (the declarations keep them: editors show them) and
// writes the string and template literals that hold such characters with
// \u escapes (the same values), through TypeScript's own emitter: what was
// 1.47 MB of canonport's source text in an idle daemon's heap is ~0.5 MB.
// `--incremental FILE` (the test run's global setup) compiles the same way
// into the existing dist/, with tsc's notes in FILE, and leaves the digest.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleUi } from './bundle-ui.mjs';
import { bundleZod } from './bundle-zod.mjs';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.source-digest');

function files(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

export function sourceDigest() {
  const h = createHash('sha256');
  const tsc = JSON.parse(readFileSync(join(ROOT, 'node_modules/typescript/package.json'), 'utf8')).version;
  h.update(`typescript ${tsc}\n`);
  for (const f of [join(ROOT, 'tsconfig.json'), join(ROOT, 'scripts/bundle-ui.mjs'), join(ROOT, 'scripts/bundle-zod.mjs'), ...files(join(ROOT, 'src'))]) {
    h.update(`${relative(ROOT, f)}\n`);
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}

/** Outside Latin-1: V8 keeps a source with one such character at two bytes a character. */
const WIDE = /[^\u0000-\u00ff]/;

/**
 * A transformer for the JavaScript emit: every string or template literal
 * holding a character outside Latin-1 made anew, which TypeScript's printer
 * writes with \u escapes (a parsed literal it copies as written). A tagged
 * template is left alone: its tag sees the raw text.
 */
function latin1(ts) {
  return (ctx) => (sf) => {
    const f = ctx.factory;
    const visit = (node) => {
      let out;
      if (ts.isTaggedTemplateExpression(node)) return node;
      if (ts.isStringLiteral(node) && WIDE.test(node.text)) {
        out = f.createStringLiteral(node.text, sf.text[node.getStart(sf)] === "'");
      } else if (ts.isNoSubstitutionTemplateLiteral(node) && WIDE.test(node.text)) {
        out = f.createNoSubstitutionTemplateLiteral(node.text);
      } else if (ts.isTemplateExpression(node) && [node.head, ...node.templateSpans.map((sp) => sp.literal)].some((p) => WIDE.test(p.text))) {
        const spans = node.templateSpans.map((sp, i) => {
          const lit = i === node.templateSpans.length - 1 ? f.createTemplateTail(sp.literal.text) : f.createTemplateMiddle(sp.literal.text);
          return f.createTemplateSpan(ts.visitNode(sp.expression, visit), ts.setTextRange(lit, sp.literal));
        });
        out = f.createTemplateExpression(ts.setTextRange(f.createTemplateHead(node.head.text), node.head), spans);
      }
      return out ? ts.setTextRange(out, node) : ts.visitEachChild(node, visit, ctx);
    };
    return ts.visitNode(sf, visit);
  };
}

/**
 * A transformer for the JavaScript emit: no comment written for any node.
 * (A comment between two tokens of one statement, such as before an
 * `else`, belongs to no node and stays: a handful in dist/.)
 */
function uncommented(ts) {
  return (ctx) => (sf) => {
    const visit = (node) => {
      ts.setEmitFlags(node, ts.getEmitFlags(node) | ts.EmitFlags.NoComments);
      return ts.visitEachChild(node, visit, ctx);
    };
    return ts.visitNode(sf, visit);
  };
}

/** tsc -p tsconfig.json with the lean JavaScript emit; false when it reported errors. */
export function compile(buildInfo) {
  const ts = createRequire(join(ROOT, 'package.json'))('typescript');
  const host = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => report([d]) };
  const cfg = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, host);
  if (!cfg) return false;
  const options = buildInfo ? { ...cfg.options, incremental: true, tsBuildInfoFile: buildInfo } : cfg.options;
  const program = buildInfo
    ? ts.createIncrementalProgram({ rootNames: cfg.fileNames, options, projectReferences: cfg.projectReferences })
    : ts.createProgram({ rootNames: cfg.fileNames, options, projectReferences: cfg.projectReferences });
  const diagnostics = [...cfg.errors, ...program.getConfigFileParsingDiagnostics(), ...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics(), ...program.getSyntacticDiagnostics(), ...program.getSemanticDiagnostics()];
  // One emit: the declarations keep their comments; the JavaScript drops them (a printer's flag on every node:
  // tsc's removeComments would take them from the declarations too, and a second program to emit without
  // them doubled the build's CPU time).
  diagnostics.push(...program.emit(undefined, undefined, undefined, false, { before: [latin1(ts), uncommented(ts)] }).diagnostics);
  if (diagnostics.length > 0) report(diagnostics);
  return !diagnostics.some((d) => d.category === ts.DiagnosticCategory.Error);

  function report(ds) {
    const fmt = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => ROOT, getNewLine: () => '\n' };
    process.stdout.write(ts.formatDiagnostics(ds, fmt));
  }
}

/**
 * compile(), then the part of zod dist/ calls as one module of its own (scripts/bundle-zod.mjs), then the fleet page's scripts as the one script the daemon inlines into the page (when the
 * sources have the page: test/first-run.test.ts builds a tiny project with this script).
 */
async function compileAndBundle(buildInfo) {
  if (!compile(buildInfo)) return false;
  await bundleZod(DIST);
  if (existsSync(join(DIST, 'ui/client/app.js'))) await bundleUi(DIST);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const at = process.argv.indexOf('--incremental');
  if (at >= 0) {
    process.exitCode = (await compileAndBundle(process.argv[at + 1])) ? 0 : 1;
  } else {
    const force = process.argv.includes('--force');
    const digest = sourceDigest();
    const current = existsSync(join(DIST, 'cli/main.js')) && existsSync(STAMP) && readFileSync(STAMP, 'utf8').trim() === digest;
    if (current && !force) {
      console.log('dist/ is the build of these sources: not compiling again (npm run build forces it)');
    } else {
      rmSync(DIST, { recursive: true, force: true });
      if (await compileAndBundle()) writeFileSync(STAMP, `${digest}\n`);
      else process.exitCode = 1;
    }
  }
}
