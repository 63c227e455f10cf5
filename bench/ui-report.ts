/** The fleet page bench's figures (bench/ui.ts) and their table. */

/** View churn: listener records rewritten per second. */
export const CHURN_PER_S = 10;

export interface PageLoad {
  /** `this`, or `baseline <label>` (--baseline). */
  build: string;
  hosts: number;
  /** Median of `loads` fresh loads: navigation start to the matrix painted (Element Timing). */
  firstRenderMs: number;
  firstRenderMsAll: number[];
  /** Median: navigation start to the matrix's corner cell in the DOM (set by the page's script, or by the parser), before it is painted. */
  drawnMs: number;
  /** Median: the whole document drawn (after the first screen's, at more hosts than it carries). */
  wholeRenderMs: number;
  /** Every response of the load, headers and compressed bodies. */
  transferredBytes: number;
  /** The fleet document alone: on the wire, and as JSON. */
  documentWireBytes: number;
  documentJsonBytes: number;
  /** The first-screen document on the wire (0: the fleet fits in it, the whole document is the first one). */
  firstScreenWireBytes: number;
}

/**
 * The browser's floor, loaded in turn with the fleet pages of `hosts`: a trivial page (one element marked for
 * Element Timing) from a bare node:http server on loopback, navigation start to that element painted.
 */
export interface FloorLoad {
  hosts: number;
  medianMs: number;
  allMs: number[];
}

/** One traced load (bench/ui.ts tracedLoad): the renderer's main thread from navigation start to the matrix painted. */
export interface LoadTrace {
  build: string;
  hosts: number;
  paintedMs: number;
  /** Self time by phase: script (evaluation, events), parse (HTML, including what the script sets), style, layout, paint (pre-paint, paint, commit), other. */
  mainThreadMs: { script: number; parse: number; style: number; layout: number; paint: number; other: number };
  /** The three events that make most of `other` (a task's own time outside any traced phase: on a loaded machine, mostly time the thread waited for a core). */
  otherTop: string[];
  /** The main thread with nothing to do (waiting for the network, a frame, the compositor). */
  idleMs: number;
  /** When the main thread's last paint before the matrix was on the screen ended: the rest is raster and presentation. */
  lastPaintEndMs: number;
}

/** A change in etcd to an open page showing it. */
export interface LiveDelay {
  build: string;
  hosts: number;
  medianMs: number;
  allMs: number[];
}

export interface LivePhase {
  pages: number;
  seconds: number;
  writes: number;
  /** The daemon's CPU over the churn, % of one core. */
  cpuPercent: number;
  rssMiB: number;
  hwmMiB: number;
  /** Pages whose document was the daemon's current one at the end. */
  pagesCurrent: number;
}

export interface UiBenchResult {
  document: {
    hosts: number;
    services: number;
    buildMs: number;
    jsonBytes: number;
    gzipBytes: number;
    /** One listener's version changes: the whole document again, per page. */
    snapshot: { ms: number; bytes: number; gzipMs: number; gzipBytes: number };
    /** The same change as a diff, per page. */
    diff: { ms: number; bytes: number };
    /** The same change rebuilt whole (a fresh build and encoding) and as the daemon's page now does, incrementally. */
    rebuild: { wholeMs: number; hosts: number; ms: number; hostsRebuilt: number; servicesRebuilt: number };
  };
  pages: PageLoad[];
  /** The floor measured beside each size's page loads. */
  floors: FloorLoad[];
  traces: LoadTrace[];
  delay: LiveDelay[];
  live: LivePhase[];
  notes: string[];
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} kB`;

export function renderUi(r: UiBenchResult): string {
  const d = r.document;
  const lines = [
    `fleet page (issue 25)`,
    `  document at ${d.hosts} hosts × ${d.services} services: built in ${d.buildMs} ms, ${kb(d.jsonBytes)} JSON, ${kb(d.gzipBytes)} gzip`,
    `  one listener changes, per open page: whole document ${kb(d.snapshot.bytes)} (${d.snapshot.ms} ms to serialise; gzip ${kb(d.snapshot.gzipBytes)} in ${d.snapshot.gzipMs} ms more, per page)` +
      ` vs diff ${kb(d.diff.bytes)} (${d.diff.ms} ms, once for every page): ${(d.snapshot.bytes / d.diff.bytes).toFixed(0)}× fewer bytes`,
    `  one listener changes, rebuilt: whole ${d.rebuild.wholeMs} ms (${d.rebuild.hosts} hosts) vs incrementally ${d.rebuild.ms} ms (${d.rebuild.hostsRebuilt} host, ${d.rebuild.servicesRebuilt} service row rebuilt): ${(d.rebuild.wholeMs / Math.max(0.1, d.rebuild.ms)).toFixed(1)}×`,
    `  page loads (median of fresh loads; first render: navigation start to the matrix painted; targets: < 200 ms, < 1 MB transferred at 1,000 hosts):`,
  ];
  for (const p of r.pages) {
    const floor = r.floors.find((f) => f.hosts === p.hosts);
    const aboveFloor = floor ? `; ${(p.firstRenderMs - floor.medianMs).toFixed(0)} ms above the floor` : '';
    if (floor && p === r.pages.find((q) => q.hosts === p.hosts)) {
      lines.push(`    ${String(p.hosts).padStart(5)} hosts, floor: a trivial page (one element) from a bare node:http server, loaded in turn with these: painted ${floor.medianMs} ms (${floor.allMs.join(', ')})`);
    }
    lines.push(
      `    ${String(p.hosts).padStart(5)} hosts, ${p.build}: first render ${p.firstRenderMs} ms (target < 200${aboveFloor}; ${p.firstRenderMsAll.join(', ')}; in the DOM at ${p.drawnMs} ms), whole document drawn ${p.wholeRenderMs} ms, ${kb(p.transferredBytes)} transferred (target < 1 MB; document ${kb(p.documentWireBytes)} on the wire, ${kb(p.documentJsonBytes)} as JSON${p.firstScreenWireBytes ? `, page with its first screen ${kb(p.firstScreenWireBytes)}` : ''})`,
    );
  }
  for (const t of r.traces) {
    const m = t.mainThreadMs;
    lines.push(
      `    trace of one load, ${t.hosts} hosts, ${t.build}: painted ${t.paintedMs} ms; main thread: script ${m.script}, HTML parse ${m.parse}, style ${m.style}, layout ${m.layout}, paint ${m.paint}, other ${m.other} (${t.otherTop.join(', ')}), idle ${t.idleMs} ms; last paint ended ${t.lastPaintEndMs} ms (then raster and presentation: ${(t.paintedMs - t.lastPaintEndMs).toFixed(1)} ms)`,
    );
  }
  const mine = r.pages.filter((p) => p.build === 'this');
  if (mine.length === 2) lines.push(`    ratio ${mine[1]!.hosts}/${mine[0]!.hosts} hosts: first render ${(mine[1]!.firstRenderMs / mine[0]!.firstRenderMs).toFixed(2)}×, bytes ${(mine[1]!.transferredBytes / mine[0]!.transferredBytes).toFixed(1)}×`);
  for (const p of mine) {
    const base = r.pages.find((b) => b.build !== 'this' && b.hosts === p.hosts);
    if (base) lines.push(`    ${p.hosts} hosts, this build / ${base.build}: first render ${(p.firstRenderMs / base.firstRenderMs).toFixed(2)}×, bytes ${(p.transferredBytes / base.transferredBytes).toFixed(2)}×`);
  }
  for (const l of r.delay) lines.push(`  a change in etcd to an open page, ${l.hosts} hosts, ${l.build}: median ${l.medianMs} ms (${l.allMs.join(', ')})`);
  lines.push(`  the daemon during churn (${CHURN_PER_S} writes/s in etcd), ${d.hosts} hosts:`);
  for (const l of r.live) {
    lines.push(`    ${String(l.pages).padStart(2)} live pages: CPU ${l.cpuPercent} % of a core over ${l.seconds} s (${l.writes} writes), RSS ${l.rssMiB} MiB (peak ${l.hwmMiB}), pages current at the end ${l.pagesCurrent}/${l.pages}`);
  }
  const none = r.live.find((l) => l.pages === 0);
  const one = r.live.find((l) => l.pages === 1);
  const many = r.live.find((l) => l.pages > 1);
  if (none && many) lines.push(`    ${many.pages} pages vs none: CPU +${(many.cpuPercent - none.cpuPercent).toFixed(1)} points, RSS +${(many.rssMiB - none.rssMiB).toFixed(1)} MiB`);
  if (one && many) {
    const n = many.pages - 1;
    lines.push(`    each page past the first: CPU +${((many.cpuPercent - one.cpuPercent) / n).toFixed(2)} points, RSS +${((many.rssMiB - one.rssMiB) / n).toFixed(2)} MiB (${many.pages} pages vs 1; the first page's cost is the view's rebuilds, shared by every page)`);
  }
  for (const n of r.notes) lines.push(`  note: ${n}`);
  return lines.join('\n');
}
