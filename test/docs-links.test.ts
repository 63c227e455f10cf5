import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import GithubSlugger from 'github-slugger';
import { Lexer, type Token, type Tokens } from 'marked';
import { describe, expect, it } from 'vitest';

/**
 * The manual is README.md plus one file per topic in docs/, and the DNS
 * plugins' READMEs: every relative link and every `#anchor` in them must
 * land. Anchors are made as GitHub makes them (github-slugger over the
 * heading's text, `-1`, `-2` for repeats); links are read by a Markdown
 * lexer (marked), so code blocks and inline code are not links. Web links
 * (`https:`) are not fetched.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));

export function markdownFiles(): string[] {
  const docs = join(ROOT, 'docs');
  const plugins = join(ROOT, 'src/dns/plugins');
  return [
    join(ROOT, 'README.md'),
    ...readdirSync(docs).filter((f) => f.endsWith('.md')).map((f) => join(docs, f)),
    ...readdirSync(plugins).map((d) => join(plugins, d, 'README.md')).filter((f) => existsSync(f)),
  ];
}

/** Every token, nested ones included (links sit inside paragraphs, list items, table cells). */
function* walk(tokens: readonly Token[]): Generator<Token> {
  for (const t of tokens) {
    yield t;
    const withChildren = t as { tokens?: Token[]; items?: Tokens.ListItem[]; header?: Tokens.TableCell[]; rows?: Tokens.TableCell[][] };
    if (withChildren.tokens) yield* walk(withChildren.tokens);
    if (withChildren.items) yield* walk(withChildren.items);
    if (withChildren.header) for (const cell of withChildren.header) yield* walk(cell.tokens);
    if (withChildren.rows) for (const row of withChildren.rows) for (const cell of row) yield* walk(cell.tokens);
  }
}

/** The text GitHub slugs: what the heading renders as, markup removed. */
function plainText(tokens: readonly Token[]): string {
  return tokens
    .map((t) => {
      const c = t as { tokens?: Token[]; text?: string };
      if (c.tokens && c.tokens.length > 0) return plainText(c.tokens);
      return t.type === 'html' ? '' : (c.text ?? '');
    })
    .join('');
}

export interface Doc {
  anchors: Set<string>;
  links: string[];
}

export function readDoc(text: string): Doc {
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  const links: string[] = [];
  for (const t of walk(new Lexer().lex(text))) {
    if (t.type === 'heading') anchors.add(slugger.slug(plainText((t as Tokens.Heading).tokens)));
    if (t.type === 'link' || t.type === 'image') links.push((t as Tokens.Link).href);
    // Explicit anchors (<a id="…">) count as targets too.
    if (t.type === 'html') for (const m of t.raw.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]!);
  }
  return { anchors, links };
}

/** The links of `file` that do not land, each with why. */
export function brokenLinks(file: string, docOf: (path: string) => Doc): string[] {
  const broken: string[] = [];
  for (const href of docOf(file).links) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto:: not fetched
    const hash = href.indexOf('#');
    const path = hash === -1 ? href : href.slice(0, hash);
    const anchor = hash === -1 ? undefined : decodeURIComponent(href.slice(hash + 1));
    const target = path === '' ? file : resolve(dirname(file), decodeURIComponent(path));
    if (!target.startsWith(ROOT)) broken.push(`${href}: outside the repository`);
    else if (path !== '' && !existsSync(target)) broken.push(`${href}: no such file ${relative(ROOT, target)}`);
    else if (anchor !== undefined) {
      if (!target.endsWith('.md') || (path !== '' && statSync(target).isDirectory())) broken.push(`${href}: an anchor into a file that is not Markdown`);
      else if (!docOf(target).anchors.has(anchor)) broken.push(`${href}: ${relative(ROOT, target)} has no heading #${anchor}`);
    }
  }
  return broken;
}

const cache = new Map<string, Doc>();
const docOf = (path: string): Doc => {
  let d = cache.get(path);
  if (!d) cache.set(path, (d = readDoc(readFileSync(path, 'utf8'))));
  return d;
};

describe('links in README.md and docs/', () => {
  const files = markdownFiles();

  it('finds the manual: README.md, docs/*.md and the plugin READMEs', () => {
    const rel = files.map((f) => relative(ROOT, f));
    expect(rel).toContain('README.md');
    expect(rel).toContain('docs/configuration.md');
    expect(rel).toContain('src/dns/plugins/local/README.md');
  });

  it.each(files.map((f) => [relative(ROOT, f), f]))('every relative link and #anchor in %s resolves', (_, file) => {
    expect(docOf(file).links.length + docOf(file).anchors.size).toBeGreaterThan(0);
    expect(brokenLinks(file, docOf)).toEqual([]);
  });

  it('every docs/ file is linked from README.md', () => {
    const linked = new Set(docOf(join(ROOT, 'README.md')).links.map((l) => resolve(ROOT, l.split('#')[0]!)));
    const unlinked = files.filter((f) => f.startsWith(join(ROOT, 'docs')) && !linked.has(f)).map((f) => relative(ROOT, f));
    expect(unlinked).toEqual([]);
  });

  it('slugs headings as GitHub does, code and punctuation included, repeats numbered', () => {
    const d = readDoc('# The DNS daemon: `canonport serve`\n\n## Figures\n\n## Figures\n\n### TLS and allow-lists: gRPC and HTTP beyond loopback\n');
    expect([...d.anchors]).toEqual(['the-dns-daemon-canonport-serve', 'figures', 'figures-1', 'tls-and-allow-lists-grpc-and-http-beyond-loopback']);
  });

  it('catches a link to a missing file, a missing anchor, and an anchor in another file; not links inside code', () => {
    const page = join(ROOT, 'docs/__probe__.md');
    const docs = new Map<string, Doc>([
      [page, readDoc('# Probe\n\n[a](dns.md#no-such-heading) [b](nosuch.md) [c](#probe) [d](#nope) [e](dns.md#what-it-answers) `[f](#in-code)`\n\n```\n[g](#in-fence)\n```\n')],
    ]);
    const probeDocOf = (p: string) => docs.get(p) ?? docOf(p);
    expect(brokenLinks(page, probeDocOf)).toEqual([
      'dns.md#no-such-heading: docs/dns.md has no heading #no-such-heading',
      'nosuch.md: no such file docs/nosuch.md',
      '#nope: docs/__probe__.md has no heading #nope',
    ]);
  });
});

describe('what the npm package ships of the docs', () => {
  it('README.md, LICENSE (MIT, as package.json says) and every docs/ page, so the README\'s links work from the package', () => {
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' })) as [{ files: { path: string }[] }];
    const paths = new Set(packed[0].files.map((f) => f.path));
    const docs = markdownFiles().filter((f) => f.startsWith(join(ROOT, 'docs'))).map((f) => relative(ROOT, f));
    expect(docs.filter((d) => !paths.has(d))).toEqual([]);
    expect(paths.has('README.md') && paths.has('LICENSE')).toBe(true);
    expect([...paths].filter((p) => p.startsWith('test/') || p.startsWith('bench/'))).toEqual([]);
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { license: string };
    expect(pkg.license).toBe('MIT');
    expect(readFileSync(join(ROOT, 'LICENSE'), 'utf8')).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} canonport contributors\n/);
  });
});
