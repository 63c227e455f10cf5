/// <reference lib="dom" />
import type { FleetDocument } from '../../fleet/document.js';
import { Live, type LiveStatus } from './live.js';
import { FIRST_SCREEN_HOSTS, formatRoute, indexFleet, NO_FILTERS, parseRoute, STATE_TEXT, STATES, timeText, versionText, type FleetIndex, type PageInfo, type Route } from './model.js';
import { esc, renderHost, renderMatrix, renderService, sourceLine, viewBanner } from './render.js';

/**
 * The fleet page in the browser: routes (the URL's hash), filters, the
 * live document, and keyboard navigation of the matrix. Everything it
 * shows is rendered by render.ts from model.ts's index of the document.
 */

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const info = JSON.parse($('cp-info').textContent ?? '{}') as PageInfo;
const view = $<HTMLElement>('view');
const form = $<HTMLFormElement>('filters');
const input = (name: string) => form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement;

let index: FleetIndex | undefined;
/** The index is of the first-screen document (live.ts): only the matrix's first page, unfiltered, is drawn from it. */
let firstScreenOnly = false;
let route: Route = parseRoute(location.hash);
let firstRender = true;
/** The id of the document shown by the view (set by onDocument). */
let shownId = '';
/**
 * The id of the document whose first screen the daemon drew into the page
 * (page.ts firstScreenHtml), until the script draws the view itself: the
 * first render keeps that drawing when it would draw the same.
 */
let serverDrawn = view.dataset.drawn;

/** The view the first-screen document holds everything for: the matrix's first page of hosts, unfiltered. */
function onFirstScreen(r: Route): boolean {
  const f = r.filters;
  return r.view.kind === 'matrix' && f.page === 1 && f.service === '' && f.host === '' && f.version === '' && f.state === '';
}

/**
 * Where focus is inside the view, as something the next render can find
 * again: a live update re-renders the view, and must not take the reader's
 * place away.
 */
function focusKey(): string | null {
  const el = document.activeElement as HTMLElement | null;
  if (!el || !view.contains(el)) return null;
  if (el.dataset.r !== undefined && el.dataset.c !== undefined) return `[data-r="${el.dataset.r}"][data-c="${el.dataset.c}"]`;
  if (el.id) return `#${CSS.escape(el.id)}`;
  const href = el.getAttribute('href');
  return href === null ? null : `a[href="${CSS.escape(href)}"]`;
}

/** Draws the route's view; false when it cannot yet (only the first screen's document is there). */
function render(): boolean {
  // Another view waits for the whole document, a moment behind.
  if (!index || (firstScreenOnly && !onFirstScreen(route))) return false;
  const key = focusKey();
  const host = location.hostname;
  // What the daemon drew is what this render would draw: the same document, the matrix's first screen, unfiltered.
  const kept = serverDrawn === shownId && onFirstScreen(route) && (firstScreenOnly || index.hosts.length <= FIRST_SCREEN_HOSTS);
  serverDrawn = undefined;
  delete view.dataset.drawn;
  if (!kept) {
    view.innerHTML =
      route.view.kind === 'service' ? renderService(index, route, info, host) : route.view.kind === 'host' ? renderHost(index, route, info) : renderMatrix(index, route, firstScreenOnly ? FIRST_SCREEN_HOSTS : Infinity);
  }
  $('banner').innerHTML = viewBanner(index.doc.source);
  $('source').innerHTML = sourceLine(index.doc.source, info);
  document.title = `${route.view.kind === 'matrix' ? 'Fleet' : `${route.view.kind} ${route.view.name}`} · canonport`;
  const again = key === null ? null : view.querySelector<HTMLElement>(key);
  // The grid has one tab stop (the cell focused last, else the corner); arrows move it.
  const grid = view.querySelector<HTMLElement>('table.matrix');
  if (grid) {
    const stop = again?.closest('table.matrix') ? again : grid.querySelector<HTMLElement>('[data-r="0"][data-c="0"]');
    if (stop) {
      grid.querySelector('[tabindex="0"]')?.setAttribute('tabindex', '-1');
      stop.tabIndex = 0;
    }
  }
  if (again) {
    if (again.id === 'view-h') again.tabIndex = -1;
    again.focus({ preventScroll: true });
  }
  if (firstRender) {
    firstRender = false;
    performance.mark('cp-first-render');
  }
  return true;
}

/** The filter form shows the route's filters; datalists offer the document's names. */
function syncForm(): void {
  for (const key of ['service', 'host', 'version', 'state'] as const) {
    const el = input(key);
    if (el !== document.activeElement && el.value !== route.filters[key]) el.value = route.filters[key];
  }
}

function fillLists(doc: FleetDocument): void {
  const options = (values: Iterable<string>) => [...new Set(values)].sort().map((v) => `<option value="${esc(v)}"></option>`).join('');
  $('services-list').innerHTML = options(doc.services.map((s) => s.service));
  $('hosts-list').innerHTML = options(doc.hosts.map((h) => h.host));
  $('versions-list').innerHTML = options(doc.services.flatMap((s) => s.versions.map((v) => versionText(v.version))));
}

/** The view shows the matrix's table (render.ts marks it for Element Timing). */
const matrixShown = () => view.querySelector('table.matrix') !== null;

/** A new document: drawn; true when the matrix's table was. */
function onDocument(doc: FleetDocument, id: string, firstScreen = false): boolean {
  index = indexFleet(doc);
  if (firstRender) performance.mark('cp-indexed');
  firstScreenOnly = firstScreen;
  shownId = id;
  if (firstScreen) {
    document.documentElement.dataset.firstScreen = id;
    return render() && matrixShown();
  }
  document.documentElement.dataset.fleetId = id;
  fillLists(doc);
  const drawn = render() && matrixShown();
  // For the bench: the whole document drawn (the first render may have been the first screen's).
  if (performance.getEntriesByName('cp-whole-render').length === 0) performance.mark('cp-whole-render');
  return drawn;
}

function onStatus(s: LiveStatus): void {
  const el = $('live');
  el.dataset.state = s.kind;
  if (s.kind === 'live') el.textContent = 'Live: following the daemon’s view';
  else if (s.kind === 'connecting') el.textContent = 'Connecting…';
  else {
    const at = timeText(new Date(s.since).toISOString());
    el.textContent = `Not live since ${at}: ${s.reason}. Retrying at ${timeText(new Date(s.retryAt).toISOString())}; shown is the last data received.`;
  }
}

// --- routes and filters ---

window.addEventListener('hashchange', () => {
  const before = route.view;
  route = parseRoute(location.hash);
  syncForm();
  render();
  // A new view (not just new filters): take focus to its heading, as a page load would.
  if (before.kind !== route.view.kind || ('name' in before && 'name' in route.view && before.name !== route.view.name)) {
    const h = view.querySelector<HTMLElement>('#view-h');
    if (h) {
      h.tabIndex = -1;
      h.focus();
    }
  }
});

let typing: number | undefined;
function filtersChanged(): void {
  window.clearTimeout(typing);
  typing = window.setTimeout(() => {
    const state = input('state').value;
    route = {
      view: route.view,
      filters: {
        service: input('service').value.trim(),
        host: input('host').value.trim(),
        version: input('version').value.trim(),
        state: (STATES as readonly string[]).includes(state) ? (state as Route['filters']['state']) : '',
        page: 1,
      },
    };
    // The URL follows the filters without a history entry per keystroke.
    history.replaceState(null, '', formatRoute(route));
    render();
  }, 150);
}
form.addEventListener('input', filtersChanged);
form.addEventListener('submit', (e) => e.preventDefault());
form.addEventListener('reset', () => {
  route = { view: route.view, filters: NO_FILTERS };
  history.replaceState(null, '', formatRoute(route));
  window.setTimeout(() => {
    syncForm();
    render();
  });
});

// --- keyboard: the matrix is a grid (arrows, Home/End, Ctrl+Home/End, Enter); "/" goes to the filters ---

view.addEventListener('keydown', (e) => {
  const cell = (e.target as HTMLElement).closest<HTMLElement>('[data-r][data-c]');
  const grid = cell?.closest<HTMLTableElement>('table.matrix');
  if (!cell || !grid) return;
  const r = Number(cell.dataset.r);
  const c = Number(cell.dataset.c);
  const rows = grid.rows.length - 1;
  const cols = grid.rows[0]!.cells.length - 1;
  let to: [number, number] | null = null;
  switch (e.key) {
    case 'ArrowRight': to = [r, Math.min(cols, c + 1)]; break;
    case 'ArrowLeft': to = [r, Math.max(0, c - 1)]; break;
    case 'ArrowDown': to = [Math.min(rows, r + 1), c]; break;
    case 'ArrowUp': to = [Math.max(0, r - 1), c]; break;
    case 'Home': to = e.ctrlKey ? [0, 0] : [r, 0]; break;
    case 'End': to = e.ctrlKey ? [rows, cols] : [r, cols]; break;
    case 'Enter':
    case ' ': {
      const a = cell.querySelector('a');
      if (a) {
        e.preventDefault();
        a.click();
      }
      return;
    }
    default:
      return;
  }
  e.preventDefault();
  const next = grid.querySelector<HTMLElement>(`[data-r="${to[0]}"][data-c="${to[1]}"]`);
  if (next) {
    cell.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
  }
});

document.addEventListener('keydown', (e) => {
  const t = e.target as HTMLElement;
  if (e.key === '/' && !(t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement)) {
    e.preventDefault();
    input('service').focus();
  }
});

// The state choices, in words.
input('state').innerHTML = `<option value="">any</option>${STATES.map((s) => `<option value="${s}">${STATE_TEXT[s]}</option>`).join('')}`;
syncForm();
// The document the page came with (page.ts): drawn before anything else is asked of the daemon.
const inline = $('cp-doc');
const start = () =>
  new Live(new URL('.', location.href).pathname, { document: onDocument, status: onStatus }).start({
    doc: JSON.parse(inline.textContent ?? '{}') as FleetDocument,
    id: inline.dataset.id ?? '',
    firstScreen: inline.dataset.firstScreen !== undefined,
  });
// The daemon drew the view this address shows: let the browser paint it first, then parse and index the document
// (at 1,000 hosts tens of milliseconds on the one thread that paints), after the frame (issue 25).
if (serverDrawn !== undefined && onFirstScreen(route)) requestAnimationFrame(() => window.setTimeout(start, 0));
else {
  // The address names another view: the matrix the daemon drew is not it.
  serverDrawn = undefined;
  delete view.dataset.drawn;
  view.innerHTML = '<p class="empty-note">Loading the fleet…</p>';
  start();
}
