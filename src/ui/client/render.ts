import type { FleetSource, InstanceState } from '../../fleet/fleet.js';
import {
  commandsFor,
  countsText,
  filtersListeners,
  formatRoute,
  HOSTS_PER_PAGE,
  listenerMatches,
  matrixOf,
  namesOf,
  NAME_SOURCE_TEXT,
  protocolOfListener,
  splitKey,
  STATE_TEXT,
  stateOf,
  timeText,
  versionText,
  type Cell,
  type FleetIndex,
  type PageInfo,
  type Route,
  type ServiceSummary,
} from './model.js';

/**
 * The three views as HTML text: pure functions of the indexed document,
 * the route and the page info. Everything from the document is escaped
 * (versions come from the services' own answers to a probe: any printable
 * text). Built as one string per view and set at once: at 20 × 100 cells
 * that is faster than building nodes one by one.
 */

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The glyph beside each state: with its words for screen readers, and a colour, never the colour alone. */
const GLYPH: Readonly<Record<InstanceState, string>> = { ready: '✓', 'not-ready': '✗', draining: '↓', listening: '●', unknown: '?' };

export function stateBadge(state: InstanceState): string {
  return `<span class="st st-${state}" title="${esc(STATE_TEXT[state])}"><span aria-hidden="true">${GLYPH[state]}</span> <span class="st-text">${esc(STATE_TEXT[state])}</span></span>`;
}

/**
 * The state in a matrix cell: the glyph (coloured by the cell's `st-` class), and its word for screen readers (the
 * legend says the rest). 2,000 cells a page, and the browser styles, lays out and paints every element of them
 * before the first frame: two elements, no wrapper (issue 25).
 */
function cellState(state: InstanceState): string {
  return `<span aria-hidden="true">${GLYPH[state]}</span><span class="sr"> ${state === 'not-ready' ? 'not ready' : state}</span>`;
}

const link = (route: Route, text: string, extra = '') => `<a href="${esc(formatRoute(route))}"${extra}>${text}</a>`;
const serviceRoute = (name: string, filters: Route['filters'], host = ''): Route => ({ view: { kind: 'service', name }, filters: { ...filters, host: host || filters.host, page: 1 } });
const hostRoute = (name: string, filters: Route['filters']): Route => ({ view: { kind: 'host', name }, filters: { ...filters, page: 1 } });

/** What the source says about the view, when the page must warn: a stale or missing view is never shown as an empty fleet. */
export function viewBanner(source: FleetSource | undefined): string {
  if (source?.kind !== 'cluster') return '';
  if (source.view === 'missing') {
    return `<div class="banner banner-missing"><strong>No cluster view.</strong> This daemon has not read the cluster from etcd (${esc(source.endpoints)}) since ${esc(timeText(source.viewSince))}, or dropped the view it had. What runs in the fleet is unknown here: this is not an empty fleet.</div>`;
  }
  if (source.view === 'stale') {
    return `<div class="banner banner-stale"><strong>Cluster view stale</strong> since ${esc(timeText(source.viewSince))}: this daemon cannot reach etcd (${esc(source.endpoints)}). Shown is the last view it read (revision ${source.revision}); hosts and listeners may have changed since.</div>`;
  }
  return '';
}

/** One line on where the data comes from. */
export function sourceLine(source: FleetSource | undefined, info: PageInfo): string {
  if (source?.kind === 'cluster') {
    return `Cluster view of ${esc(source.endpoints)} (prefix ${esc(source.prefix)}, revision ${source.revision}, ${esc(source.view)}) as daemon <strong>${esc(info.node)}</strong> sees it`;
  }
  if (source?.kind === 'local') return `This host's own inventory (<strong>${esc(source.host)}</strong>): the daemon runs without cluster mode`;
  return '';
}

function findingsList(index: FleetIndex, route: Route): string {
  const items: string[] = [];
  for (const s of index.services) {
    if (!s.service.mixed) continue;
    const parts = s.service.versions.map((v) => `${esc(versionText(v.version))} on ${v.hosts.length}`).join(', ');
    items.push(`<li><span class="flag flag-mixed">mixed versions</span> ${link(serviceRoute(s.key, route.filters), esc(s.key))}: ${parts}</li>`);
  }
  for (const o of index.registryOutliers.values()) {
    items.push(`<li><span class="flag flag-registry">registry differs</span> ${link(hostRoute(o.host, route.filters), esc(o.host))}: ${esc(o.digest.slice(0, 12))}${o.majority ? `, the majority's is ${esc(o.majority.slice(0, 12))}` : ', no registry is on a majority of hosts'}</li>`);
  }
  for (const f of index.portNames) {
    const groups = (f.groups ?? []).map((g) => `${esc(g.value)} on ${g.hosts.map((h) => link(hostRoute(h, route.filters), esc(h))).join(', ')}`).join('; ');
    items.push(`<li><span class="flag flag-ports">port named twice</span> ${f.port}: ${groups}</li>`);
  }
  for (const f of index.collisions) items.push(`<li><span class="flag flag-ports">names share a port</span> ${esc(f.message)}</li>`);
  if (items.length === 0) return '';
  return `<section class="findings" aria-labelledby="findings-h"><h3 id="findings-h">What the hosts disagree on (${items.length})</h3><ul>${items.join('')}</ul></section>`;
}

function pager(route: Route, page: number, pages: number, total: number, shown: number): string {
  if (pages <= 1) return '';
  const to = (p: number) => ({ ...route, filters: { ...route.filters, page: p } });
  const prev = page > 1 ? link(to(page - 1), '← previous hosts') : '<span aria-disabled="true">← previous hosts</span>';
  const next = page < pages ? link(to(page + 1), 'next hosts →') : '<span aria-disabled="true">next hosts →</span>';
  return `<nav class="pager" aria-label="Pages of hosts">${prev} <span>hosts ${(page - 1) * HOSTS_PER_PAGE + 1}–${(page - 1) * HOSTS_PER_PAGE + shown} of ${total} (page ${page} of ${pages})</span> ${next}</nav>`;
}

function cellHtml(cell: Cell | undefined, s: ServiceSummary, host: string, route: Route, r: number, c: number): string {
  const at = `data-r="${r}" data-c="${c}" tabindex="-1"`;
  const f = route.filters;
  const shown = cell && (!filtersListeners(f) || cell.listeners.some((l) => listenerMatches(l, f)));
  if (!cell || !shown) return `<td class="cell empty" ${at}><span class="sr">${cell ? 'filtered out' : 'not running'}</span></td>`;
  const versions = cell.versions.map((v) => esc(versionText(v))).join(', ');
  const why = cell.outlier ? `<span class="mark" title="not the majority version (${esc(versionText(s.majority ?? ''))})"><span aria-hidden="true">≠</span><span class="sr">, not the majority version ${esc(versionText(s.majority ?? ''))}</span></span>` : '';
  const target = formatRoute(serviceRoute(s.key, f, host));
  // The version is the link's own text (the link's style makes it monospace): one element fewer per cell.
  return `<td class="cell st-${cell.state}${cell.outlier ? ' outlier' : ''}" ${at}><a href="${esc(target)}" tabindex="-1">${versions} ${cellState(cell.state)}${why}</a></td>`;
}

/** The matrix's Element Timing name (its corner cell): the browser reports when the matrix is on the screen (live.ts, the bench). */
export const MATRIX_TIMING = 'cp-matrix';

/** `columns`: draw at most this many host columns (the first screen, drawn before the whole document is there). */
export function renderMatrix(index: FleetIndex, route: Route, columns = Infinity): string {
  const whole = matrixOf(index, route.filters);
  const m = whole.columns.length > columns ? { ...whole, columns: whole.columns.slice(0, columns) } : whole;
  const total = index.hosts.length;
  const mixed = index.services.filter((s) => s.service.mixed).length;
  const summary = `${index.services.length} service${index.services.length === 1 ? '' : 's'} on ${total} host${total === 1 ? '' : 's'}${mixed ? `, ${mixed} with mixed versions` : ''}${index.registryOutliers.size ? `, ${index.registryOutliers.size} host${index.registryOutliers.size === 1 ? '' : 's'} whose registry differs` : ''}`;
  const head = `<h2 id="view-h">Services × hosts</h2><p class="summary">${summary}</p>${findingsList(index, route)}`;
  if (total === 0) {
    const none = index.doc.source?.kind === 'cluster' && index.doc.source.view === 'missing' ? 'No hosts to show: there is no cluster view (above).' : 'No host is in the view.';
    return `${head}<p class="empty-note">${none}</p>`;
  }
  const apart = unnamedTable(index, route);
  if (m.rows.length === 0 || m.columns.length === 0) return `${head}<p class="empty-note">Nothing matches the filters.</p>${apart}`;
  const hostHeaders = m.columns
    .map((h, i) => {
      const o = index.registryOutliers.get(h.host);
      const flag = o ? ` <span class="flag flag-registry" title="${esc(o.message)}"><span aria-hidden="true">⚠</span> registry differs</span>` : '';
      return `<th scope="col" class="host${o ? ' outlier' : ''}" data-r="0" data-c="${i + 1}" tabindex="-1">${link(hostRoute(h.host, route.filters), esc(h.host), ' tabindex="-1"')}${flag}</th>`;
    })
    .join('');
  const rows = m.rows
    .map((s, r) => {
      const name = s.key;
      const mixedFlag = s.service.mixed ? ` <span class="flag flag-mixed">mixed</span>` : '';
      const named = NAME_SOURCE_TEXT[s.service.nameSource] ?? '';
      const rowHead = `<th scope="row" class="svc${s.service.mixed ? ' mixed' : ''}" data-r="${r + 1}" data-c="0" tabindex="-1">${link(serviceRoute(name, route.filters), esc(s.service.service), ' tabindex="-1"')}${mixedFlag}<span class="meta">${esc(s.ports.join(', '))}/${esc(s.service.protocol ?? 'tcp')} · ${esc(s.service.scheme)}${named ? ` · <span class="src" title="${esc(named)}">${esc(named)}</span>` : ''}</span><span class="counts">${esc(countsText(s.service, total))}</span></th>`;
      return `<tr>${rowHead}${m.columns.map((h, c) => cellHtml(index.cell(name, h.host), s, h.host, route, r + 1, c + 1)).join('')}</tr>`;
    })
    .join('');
  const help = `<p id="matrix-help" class="help">Each cell is the version running on that host and its state; ≠ marks a version other than the service's majority. Arrow keys move between cells, Enter opens one.</p>`;
  const table = `${help}<div class="scroll"><table class="matrix" role="grid" aria-labelledby="view-h" aria-describedby="matrix-help" aria-rowcount="${m.rows.length + 1}" aria-colcount="${m.columns.length + 1}"><caption class="sr">Services × hosts</caption><thead><tr><th scope="col" class="corner" data-r="0" data-c="0" tabindex="0" elementtiming="${MATRIX_TIMING}">Service</th>${hostHeaders}</tr></thead><tbody>${rows}</tbody></table></div>`;
  return `${head}${pager(route, m.page, m.pages, m.allColumns.length, m.columns.length)}${table}${apart}`;
}

/** The ports no source names, apart from the services (they still answer their canonical names). */
function unnamedTable(index: FleetIndex, route: Route): string {
  const f = route.filters;
  const list = index.unnamed.filter((u) => (f.host === '' || u.hosts.some((h) => h.toLowerCase().includes(f.host.toLowerCase()))) && (f.service === '' || u.services.some((s) => s.includes(f.service.toLowerCase()))));
  if (list.length === 0) return '';
  const rows = list
    .map((u) => `<tr><td>${u.port}</td><td>${esc(u.protocol)}</td><th scope="row">${esc(u.services.join(', '))}</th><td>${u.hosts.map((h) => link(hostRoute(h, f), esc(h))).join(', ')}</td></tr>`)
    .join('');
  return `<section class="unnamed" aria-labelledby="unnamed-h"><h3 id="unnamed-h">Unnamed ports (${list.length})</h3><p class="help">Listening on a claimed port, but no registry entry, no name a client asked for and no process name says what they are: they answer their canonical names and are left out of DNS-SD browsing and Prometheus discovery.</p><table class="list"><caption class="sr">Unnamed ports</caption><thead><tr><th scope="col">Port</th><th scope="col">Protocol</th><th scope="col">Answers to</th><th scope="col">Hosts</th></tr></thead><tbody>${rows}</tbody></table></section>`;
}

function breadcrumb(route: Route, here: string): string {
  return `<nav class="crumbs" aria-label="Breadcrumb">${link({ view: { kind: 'matrix' }, filters: { ...route.filters, page: 1 } }, 'Fleet')} › <span aria-current="page">${here}</span></nav>`;
}

export function renderService(index: FleetIndex, route: Route, info: PageInfo, pageHost: string): string {
  const name = route.view.kind === 'service' ? route.view.name : '';
  const s = index.service(name);
  const crumbs = breadcrumb(route, `service ${esc(name)}`);
  if (!s) return `${crumbs}<h2 id="view-h">${esc(name)}</h2><p class="empty-note">No host in this view runs a service named ${esc(splitKey(name).name)}${splitKey(name).protocol === 'udp' ? ' over UDP' : ''}.</p>${namesAndCommands(name, info, pageHost)}`;
  const total = index.hosts.length;
  const versions = s.service.versions
    .map((v) => `<li>${esc(versionText(v.version))} on ${v.hosts.length} host${v.hosts.length === 1 ? '' : 's'}${v.version === s.majority && s.service.mixed ? ' (the majority)' : ''}</li>`)
    .join('');
  const named = NAME_SOURCE_TEXT[s.service.nameSource] ?? '';
  const facts = `<dl class="facts"><dt>Port</dt><dd>${esc(s.ports.join(', '))}</dd><dt>Protocol</dt><dd>${esc(s.service.protocol ?? 'tcp')}</dd><dt>Name</dt><dd>${esc(named || 'named')}</dd><dt>Scheme</dt><dd>${esc(s.service.scheme)}</dd><dt>Hosts</dt><dd>${esc(countsText(s.service, total))}${s.service.mixed ? ' <span class="flag flag-mixed">mixed versions</span>' : ''}</dd><dt>Versions</dt><dd><ul class="plain">${versions}</ul></dd></dl>`;
  const f = route.filters;
  const rows: string[] = [];
  for (const h of index.hosts) {
    if (f.host && !h.host.toLowerCase().includes(f.host.toLowerCase())) continue;
    const cell = index.cell(name, h.host);
    if (!cell) continue;
    for (const l of cell.listeners) {
      if (!listenerMatches(l, f)) continue;
      const outlier = s.service.mixed && s.majority !== null && l.version !== s.majority;
      const o = index.registryOutliers.get(h.host);
      rows.push(
        `<tr${outlier ? ' class="outlier"' : ''}><th scope="row">${link(hostRoute(h.host, { ...f, host: '' }), esc(h.host))}${o ? ' <span class="flag flag-registry">registry differs</span>' : ''}</th><td>${esc(l.address || '(none of its family)')}</td><td>${l.port}</td><td>${esc(versionText(l.version))}${outlier ? ` <span class="mark" title="not the majority version"><span aria-hidden="true">≠</span><span class="sr"> not the majority version</span></span>` : ''}</td><td>${esc(timeText(l.since))}</td><td>${stateBadge(stateOf(l))}</td></tr>`,
      );
    }
  }
  const filtered = f.host || f.version || f.state ? ` (filtered: ${rows.length} shown)` : '';
  const endpoints = rows.length
    ? `<table class="list"><caption>Endpoints of ${esc(name)}${filtered}: one row per host and address</caption><thead><tr><th scope="col">Host</th><th scope="col">Address</th><th scope="col">Port</th><th scope="col">Version</th><th scope="col">Listening since</th><th scope="col">State</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : '<p class="empty-note">No endpoint matches the filters.</p>';
  return `${crumbs}<h2 id="view-h">${esc(s.service.service)}${s.service.protocol === 'udp' ? ' <span class="flag">UDP</span>' : ''}</h2>${facts}<h3>Endpoints</h3>${endpoints}${namesAndCommands(name, info, pageHost)}`;
}

function namesAndCommands(name: string, info: PageInfo, pageHost: string): string {
  const names = namesOf(name, info)
    .map((z) => `<tr><th scope="row">${esc(z.zone)}</th><td>${z.names.map((n) => `<code>${esc(n)}</code>`).join('<br>')}</td></tr>`)
    .join('');
  const table = `<table class="list"><caption>Names that reach ${esc(splitKey(name).name)}, per zone this daemon answers</caption><thead><tr><th scope="col">Zone</th><th scope="col">Names</th></tr></thead><tbody>${names}</tbody></table>`;
  const commands = commandsFor(name, info, pageHost).map((c) => esc(c)).join('\n');
  return `<h3>Names</h3>${table}<h3>Try it</h3><pre class="commands"><code>${commands}</code></pre>`;
}

export function renderHost(index: FleetIndex, route: Route, info: PageInfo): string {
  const name = route.view.kind === 'host' ? route.view.name : '';
  const h = index.host(name);
  const crumbs = breadcrumb(route, `host ${esc(name)}`);
  if (!h) return `${crumbs}<h2 id="view-h">${esc(name)}</h2><p class="empty-note">No host named ${esc(name)} is in this view${index.doc.source?.kind === 'cluster' ? ' (a host whose daemon stopped leaves the view when its lease expires)' : ''}.</p>`;
  const source = index.doc.source;
  const o = index.registryOutliers.get(h.host);
  const digest = h.node?.registryDigest ?? h.inventory?.registryDigest ?? '';
  const digestText = `${digest ? `<code>${esc(digest)}</code>` : 'none (no registry file)'}${o ? ` <span class="flag flag-registry"><span aria-hidden="true">⚠</span> differs from the majority${o.majority ? `'s <code>${esc(o.majority.slice(0, 12))}</code>` : ' (there is none)'}</span>` : ''}`;
  const lastSeen =
    source?.kind === 'cluster'
      ? source.view === 'synced'
        ? 'now: its lease is alive in the view'
        : source.view === 'stale'
          ? `at ${esc(timeText(source.viewSince))} or later: the view is stale since then`
          : 'unknown: there is no view'
      : `${esc(timeText(h.inventory ? new Date(h.inventory.collectedAtMs).toISOString() : undefined))} (the last inventory scan)`;
  const me = h.host === info.node ? ' <span class="flag flag-me">this daemon</span>' : '';
  const facts = `<dl class="facts"><dt>Addresses</dt><dd>${esc((h.node?.addresses ?? []).join(', ') || (source?.kind === 'local' ? 'this host' : ''))}</dd><dt>canonport</dt><dd>${esc(h.node?.canonportVersion ?? (h.host === info.node ? info.version : ''))}</dd><dt>Registry digest</dt><dd>${digestText}</dd><dt>Started</dt><dd>${esc(timeText(h.node?.started))}</dd><dt>Last seen</dt><dd>${lastSeen}</dd></dl>`;
  const f = route.filters;
  const rows = (h.inventory?.listeners ?? [])
    .filter((l) => listenerMatches(l, f) && (f.service === '' || l.services.some((s) => s.toLowerCase().includes(f.service.toLowerCase())) || (l.names ?? []).some((n) => n.name.includes(f.service.toLowerCase()))))
    .map((l) => {
      const udp = protocolOfListener(l) === 'udp';
      const keyOf = (n: string) => (udp ? `${n}/udp` : n);
      const names = l.names ?? l.services.map((name) => ({ name, source: 'registry' as const }));
      const services = names.length
        ? names.map((n) => `${link(serviceRoute(keyOf(n.name), { ...f, service: '' }), esc(n.name))} <span class="src">(${esc(n.source)})</span>`).join(', ')
        : l.services.length
          ? `<span class="muted">unnamed; answers ${esc(l.services.join(', '))}</span>`
          : '<span class="muted">none claims it</span>';
      const outlier = names.some((n) => index.cell(keyOf(n.name), h.host)?.outlier);
      return `<tr${outlier ? ' class="outlier"' : ''}><td>${l.port}${udp ? '/udp' : ''}</td><th scope="row">${services}</th><td>${esc(versionText(l.version))}${outlier ? ` <span class="mark" title="not the majority version"><span aria-hidden="true">≠</span><span class="sr"> not the majority version</span></span>` : ''}</td><td>${esc(timeText(l.since))}</td><td>${stateBadge(stateOf(l))}</td><td>${esc(l.address || '(none of its family)')}</td><td>${esc(l.scheme)}</td></tr>`;
    });
  const listeners = rows.length
    ? `<table class="list"><caption>Listeners on ${esc(h.host)}: one row per port and address</caption><thead><tr><th scope="col">Port</th><th scope="col">Services</th><th scope="col">Version</th><th scope="col">Listening since</th><th scope="col">State</th><th scope="col">Address</th><th scope="col">Scheme</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
    : '<p class="empty-note">No listener matches.</p>';
  return `${crumbs}<h2 id="view-h">${esc(h.host)}${me}${o ? ' <span class="flag flag-registry">registry differs</span>' : ''}</h2>${facts}<h3>Listeners</h3>${listeners}`;
}
