import { createHash } from 'node:crypto';
import type { FleetDocument } from '../fleet/document.js';
import { FIRST_SCREEN_HOSTS, indexFleet, NO_FILTERS, type PageInfo } from './client/model.js';
import { renderMatrix, sourceLine, viewBanner } from './client/render.js';

/**
 * The page's HTML and CSS, hand-written: no framework, nothing from the
 * internet. The scripts (src/ui/client/*.ts) are compiled by tsc and
 * bundled by the build into one (scripts/bundle-ui.mjs): the page carries
 * its style, its script and the first screen's document inline, so a first
 * visit draws the matrix from the one answer, with no other request on the
 * way (issue 25). The Content-Security-Policy allows exactly that style and
 * that script, by their digests (inlineHash).
 */

/** The bundled script, in dist/ui/client/ (scripts/bundle-ui.mjs). */
export const CLIENT_SCRIPT = 'page.js';

/** The document the page draws first, inlined: its id, and whether it is the first screen's (live.ts reads both). */
export interface InlineDocument {
  id: string;
  /** The document's JSON (diff.ts firstScreenJson when `firstScreen`). */
  json: string;
  firstScreen: boolean;
}

/**
 * The matrix's first screen as the page's script would draw it (render.ts,
 * the same functions), unfiltered, from the inline document: the page comes
 * with it drawn, so the browser paints it without waiting for the script to
 * parse, index and render the document (issue 25). The script takes it over
 * after that paint (app.ts), or draws another view over it at once when the
 * address names one.
 */
export function firstScreenHtml(info: PageInfo, doc: InlineDocument): { view: string; banner: string; source: string } {
  const first = JSON.parse(doc.json) as FleetDocument;
  const index = indexFleet(first);
  return {
    view: renderMatrix(index, { view: { kind: 'matrix' }, filters: NO_FILTERS }, doc.firstScreen ? FIRST_SCREEN_HOSTS : Infinity),
    banner: viewBanner(first.source),
    source: sourceLine(first.source, info),
  };
}

/** `'sha256-…'`, what a Content-Security-Policy names an inline script or style by. */
export function inlineHash(text: string): string {
  return `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
}

/** JSON inside a script element: `<` escaped (JSON has it only inside strings), so it cannot close the element. */
function inlineJson(json: string): string {
  return json.replace(/</g, '\\u003c');
}

/** The page, with what the daemon says about itself, the first document, the matrix's first screen drawn, its style and its script inlined. */
export function indexHtml(info: PageInfo, doc: InlineDocument, script: string): string {
  const drawn = firstScreenHtml(info, doc);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleet · canonport</title>
<link rel="icon" href="data:,">
<style>${STYLE_CSS}</style>
<script id="cp-info" type="application/json">${inlineJson(JSON.stringify(info))}</script>
<script id="cp-doc" type="application/json" data-id="${doc.id}"${doc.firstScreen ? ' data-first-screen=""' : ''}>${inlineJson(doc.json)}</script>
</head>
<body>
<header>
<h1><a href="#/">canonport fleet</a></h1>
<p id="source" class="source">${drawn.source}</p>
<p id="live" class="live" role="status" aria-live="polite" data-state="connecting">Loading…</p>
</header>
<div id="banner" role="alert">${drawn.banner}</div>
<form id="filters" role="search" aria-label="Filter the fleet">
<label>Service <input name="service" list="services-list" autocomplete="off" spellcheck="false"></label>
<label>Host <input name="host" list="hosts-list" autocomplete="off" spellcheck="false"></label>
<label>Version <input name="version" list="versions-list" autocomplete="off" spellcheck="false" placeholder="? for unknown"></label>
<label>State <select name="state"><option value="">any</option></select></label>
<button type="reset">Clear filters</button>
<datalist id="services-list"></datalist><datalist id="hosts-list"></datalist><datalist id="versions-list"></datalist>
</form>
<main id="view" aria-live="off" data-drawn="${doc.id}">${drawn.view}</main>
<footer>
<h2 class="sr">Legend</h2>
<ul class="legend">
<li><span class="st st-ready"><span aria-hidden="true">✓</span> ready</span></li>
<li><span class="st st-not-ready"><span aria-hidden="true">✗</span> not ready</span></li>
<li><span class="st st-draining"><span aria-hidden="true">↓</span> draining</span></li>
<li><span class="st st-listening"><span aria-hidden="true">●</span> listening (readiness not probed)</span></li>
<li><span class="st st-unknown"><span aria-hidden="true">?</span> unknown</span></li>
<li><span class="mark" aria-hidden="true">≠</span> not the service's majority version</li>
<li><span class="flag flag-mixed">mixed</span> more than one version</li>
<li><span class="flag flag-registry">registry differs</span> from the majority's</li>
</ul>
<p>Version <code>?</code>: unknown. Keys: arrows move in the matrix, Enter opens a cell, <kbd>/</kbd> goes to the filters. Every view has its own address: copy it into a runbook.</p>
</footer>
<script>${script}</script>
</body>
</html>
`;
}

export const STYLE_CSS = `:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#5b6570;--line:#d0d7de;--head:#f3f5f7;--ready:#1a7f37;--notready:#cf222e;--draining:#9a6700;--listening:#0969da;--unknown:#6e7781;--outlier:#bc4c00;--outlier-bg:#fff1e5;--registry-bg:#fff8c5;--focus:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;--head:#161b22;--ready:#3fb950;--notready:#f85149;--draining:#d29922;--listening:#58a6ff;--unknown:#9198a1;--outlier:#f0883e;--outlier-bg:#3d1f00;--registry-bg:#3b2e00;--focus:#58a6ff}}
*{box-sizing:border-box}
body{margin:0;padding:0 1rem 2rem;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;background:var(--bg);color:var(--fg)}
a{color:var(--listening)}
code,pre,kbd{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1.5rem;padding:.75rem 0;border-bottom:1px solid var(--line)}
h1{font-size:1.25rem;margin:0}h1 a{color:inherit;text-decoration:none}
h2{font-size:1.15rem;margin:1rem 0 .25rem}h3{font-size:1rem;margin:1.25rem 0 .4rem}
.source,.summary,.help{margin:0;color:var(--muted)}.help{margin:.25rem 0;font-size:12px}
.live{margin:0 0 0 auto;font-weight:600}
.live[data-state=live]{color:var(--ready)}.live[data-state=offline]{color:var(--notready)}.live[data-state=connecting]{color:var(--muted)}
.banner{margin:.75rem 0;padding:.6rem .8rem;border:2px solid var(--draining);border-radius:6px;background:var(--registry-bg)}
.banner-missing{border-color:var(--notready)}
form{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:end;margin:.75rem 0}
label{display:flex;flex-direction:column;font-size:12px;color:var(--muted);gap:2px}
input,select,button{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);border-radius:4px;padding:.25rem .4rem;min-width:9rem}
button{min-width:0;cursor:pointer}
:focus-visible{outline:3px solid var(--focus);outline-offset:1px}
.scroll{overflow:auto;max-height:75vh;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse}
caption{text-align:left;color:var(--muted);padding:.3rem .5rem;caption-side:top}
.matrix th,.matrix td{border:1px solid var(--line);padding:.2rem .4rem;white-space:nowrap;vertical-align:top}
.matrix thead th{position:sticky;top:0;background:var(--head);z-index:2;font-weight:600}
.matrix th.svc,.matrix th.corner{position:sticky;left:0;background:var(--head);z-index:1;text-align:left}
.matrix th.corner{z-index:3}
.matrix th.svc .meta,.matrix th.svc .counts{display:block;font-weight:400;color:var(--muted);font-size:12px}
.matrix td a{color:inherit;text-decoration:none;display:block}
.cell.empty{background:repeating-linear-gradient(45deg,transparent 0 6px,var(--head) 6px 8px)}
.matrix td.cell a{font-family:ui-monospace,Menlo,Consolas,monospace;color:var(--fg)}
.cell.st-ready>a>[aria-hidden]{color:var(--ready)}.cell.st-not-ready>a>[aria-hidden]{color:var(--notready)}.cell.st-draining>a>[aria-hidden]{color:var(--draining)}.cell.st-listening>a>[aria-hidden]{color:var(--listening)}.cell.st-unknown>a>[aria-hidden]{color:var(--unknown)}
.cell .mark{font-family:system-ui,sans-serif}
.cell.outlier{background:var(--outlier-bg);box-shadow:inset 0 0 0 2px var(--outlier)}
th.host.outlier{background:var(--registry-bg)}
tr.outlier td,tr.outlier th{background:var(--outlier-bg)}
.st{white-space:nowrap;font-size:12px}.cell .st-text{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.st-ready{color:var(--ready)}.st-not-ready{color:var(--notready)}.st-draining{color:var(--draining)}.st-listening{color:var(--listening)}.st-unknown{color:var(--unknown)}
.mark{color:var(--outlier);font-weight:700;margin-left:.2rem}
.flag{display:inline-block;font-size:11px;font-weight:600;border-radius:3px;padding:0 .3rem;border:1px solid currentColor;white-space:nowrap}
.flag-mixed{color:var(--outlier)}.flag-registry{color:var(--draining);background:var(--registry-bg)}.flag-ports{color:var(--notready)}.flag-me{color:var(--listening)}
.findings ul{margin:.25rem 0;padding-left:1.2rem}.findings li{margin:.15rem 0}
.list{margin:.25rem 0}.list th,.list td{border-bottom:1px solid var(--line);padding:.25rem .6rem;text-align:left;vertical-align:top}
.list thead th{background:var(--head)}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}.facts dt{color:var(--muted)}.facts dd{margin:0}
ul.plain{list-style:none;margin:0;padding:0}
.commands{background:var(--head);padding:.6rem .8rem;border-radius:6px;overflow:auto}
.crumbs{margin-top:.75rem;color:var(--muted)}
.pager{margin:.5rem 0;display:flex;gap:1rem;align-items:center}
.empty-note,.muted{color:var(--muted)}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
footer{margin-top:1.5rem;border-top:1px solid var(--line);color:var(--muted);font-size:12px}
.legend{display:flex;flex-wrap:wrap;gap:.25rem 1.25rem;list-style:none;padding:0}
`;
