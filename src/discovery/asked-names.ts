/**
 * The names clients ask for (issue 22): a query for `db.<zone>` or
 * `_db._tcp.<zone>`, or a gRPC Resolve of it, tells the cluster that 14688
 * (db's canonical port) is called `db`. This host remembers what it was
 * asked, and in cluster mode publishes it in its node record
 * (`askedNames`, under its own lease), so every host names that port `db`.
 *
 * Bounded and cheap, because anyone who can send a query can grow it:
 * - a name is learned only while some host listens on its canonical port
 *   (`listening`), never for a port the registry names (the registry is
 *   the authority there), and only in a served zone (not `localhost`);
 * - at most MAX_NAMES_PER_PORT names per port and MAX_ASKED_NAMES in all;
 *   past either, the name asked least recently goes;
 * - a name not asked for `ttlMs` (the learned-name TTL), or whose port no
 *   host listens on any more, is forgotten at the next sweep;
 * - what is published changes at most once per `minPublishMs`, whatever
 *   the query rate, so a flood of made-up names becomes at most one etcd
 *   write per interval (and each write at most MAX_ASKED_NAMES entries).
 * Asking again for a known name costs a map lookup: DNS answers kept
 * encoded carry a `touch` that refreshes it without a lookup.
 */

/** Names remembered per port at most. */
export const MAX_NAMES_PER_PORT = 4;
/** Names remembered in all at most (one node record carries them all: ~40 bytes each). */
export const MAX_ASKED_NAMES = 256;
/** The default time a name is kept without being asked again. */
export const DEFAULT_ASKED_NAME_TTL_MS = 24 * 3600_000;
/** Published set changes at most this often. */
export const DEFAULT_MIN_PUBLISH_MS = 5_000;
/** How often expired names are looked for. */
const SWEEP_MS = 60_000;

/** A name asked for, and its canonical port. */
export interface AskedName {
  port: number;
  name: string;
}

/** A learned name's refresh, kept beside an answer encoded once and served many times. */
export type Touch = () => void;

export interface AskedNamesOptions {
  /** Whether some host listens on `port` now (the cluster view, or this host's inventory). */
  listening: (port: number) => boolean;
  /** Whether the registry lists `port` (its names stand; nothing is learned for it). */
  registryNames: (port: number) => boolean;
  /** Called with the whole set when it changed, at most once per minPublishMs. */
  onChange?: ((names: readonly AskedName[]) => void) | undefined;
  /** Time a name is kept without being asked (default 24 h); read at every sweep, so a reload applies. */
  ttlMs?: (() => number) | undefined;
  /** Whether names are learned at all (default: yes); read at every ask. */
  enabled?: (() => boolean) | undefined;
  minPublishMs?: number | undefined;
  now?: (() => number) | undefined;
}

interface Entry {
  port: number;
  name: string;
  lastMs: number;
  /** Set when the entry was forgotten: a touch then asks anew. */
  gone: boolean;
}

/** What a name may be: a registry name's form (the cluster records hold the same). */
const NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export class AskedNames {
  /** port → name → entry. Bounded: MAX_NAMES_PER_PORT per port, MAX_ASKED_NAMES in all. */
  private readonly byPort = new Map<number, Map<string, Entry>>();
  private count = 0;
  private readonly now: () => number;
  private dirty = false;
  private lastPublishMs = -Infinity;
  private publishTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  /** Names forgotten to make room (a flood, or a fleet asking for more than the bounds). */
  evicted = 0;

  constructor(private readonly o: AskedNamesOptions) {
    this.now = o.now ?? Date.now;
  }

  /**
   * Sweeps every minute until close(), while it holds names: an idle daemon
   * (no name asked) has no timer to wake for (issue 24). The timer never
   * keeps the process alive.
   */
  start(): void {
    this.sweeping = true;
    this.armSweep();
  }

  private armSweep(): void {
    if (!this.sweeping || this.sweepTimer || this.count === 0) return;
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
  }

  close(): void {
    this.sweeping = false;
    clearInterval(this.sweepTimer);
    clearTimeout(this.publishTimer);
    this.sweepTimer = undefined;
    this.publishTimer = undefined;
  }

  /**
   * A client asked for `name`, whose canonical port is `port`. Returns the
   * touch that marks it asked again (for answers served from memory), or
   * undefined when the name is not one to learn (see the module's comment).
   */
  ask(name: string, port: number): Touch | undefined {
    if (this.o.enabled?.() === false || !NAME.test(name)) return undefined;
    const known = this.byPort.get(port)?.get(name);
    if (known) {
      known.lastMs = this.now();
      return this.touchOf(known);
    }
    if (this.o.registryNames(port) || !this.o.listening(port)) return undefined;
    const entry: Entry = { port, name, lastMs: this.now(), gone: false };
    this.add(entry);
    return this.touchOf(entry);
  }

  /**
   * Names another process of this daemon learned (a `--workers` DNS worker
   * tells its primary), with when each was last asked: kept as if asked
   * here then, under the same rules.
   */
  merge(names: readonly (AskedName & { lastMs: number })[]): void {
    for (const n of names) {
      if (!NAME.test(n.name) || !Number.isInteger(n.port) || n.port < 1 || n.port > 65535) continue;
      const known = this.byPort.get(n.port)?.get(n.name);
      if (known) known.lastMs = Math.max(known.lastMs, Math.min(n.lastMs, this.now()));
      else if (this.o.enabled?.() !== false && !this.o.registryNames(n.port) && this.o.listening(n.port)) this.add({ port: n.port, name: n.name, lastMs: Math.min(n.lastMs, this.now()), gone: false });
    }
  }

  /** Every name remembered, by port then name. */
  list(): AskedName[] {
    const out: AskedName[] = [];
    for (const [port, names] of [...this.byPort].sort((a, b) => a[0] - b[0])) for (const name of [...names.keys()].sort()) out.push({ port, name });
    return out;
  }

  /** Every name with when it was last asked (what a worker sends its primary). */
  entries(): (AskedName & { lastMs: number })[] {
    return [...this.byPort.values()].flatMap((m) => [...m.values()].map(({ port, name, lastMs }) => ({ port, name, lastMs })));
  }

  /** The names remembered for `port` (this host's own; the cluster's are in the view). */
  namesOn(port: number): string[] {
    return [...(this.byPort.get(port)?.keys() ?? [])].sort();
  }

  get size(): number {
    return this.count;
  }

  /** Forgets names not asked within the TTL and names whose port no host listens on any more. */
  sweep(): void {
    const ttl = this.o.ttlMs?.() ?? DEFAULT_ASKED_NAME_TTL_MS;
    const now = this.now();
    for (const [port, names] of this.byPort) {
      const listening = this.o.listening(port) && !this.o.registryNames(port);
      for (const e of names.values()) if (!listening || now - e.lastMs > ttl) this.remove(e);
    }
    if (this.count === 0 && this.sweepTimer) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  private touchOf(entry: Entry): Touch {
    return () => {
      if (!entry.gone) entry.lastMs = this.now();
      else this.ask(entry.name, entry.port);
    };
  }

  private add(entry: Entry): void {
    let names = this.byPort.get(entry.port);
    if (names && names.size >= MAX_NAMES_PER_PORT) this.remove(oldest([names])!, true);
    // Walked in place, not copied: with more names asked than kept this runs on every query (issue 24).
    if (this.count >= MAX_ASKED_NAMES) this.remove(oldest(this.byPort.values())!, true);
    names = this.byPort.get(entry.port);
    if (!names) this.byPort.set(entry.port, (names = new Map()));
    names.set(entry.name, entry);
    this.count++;
    this.armSweep();
    this.changed();
  }

  private remove(entry: Entry, evicted = false): void {
    const names = this.byPort.get(entry.port);
    if (!names?.delete(entry.name)) return;
    entry.gone = true;
    this.count--;
    if (evicted) this.evicted++;
    if (names.size === 0) this.byPort.delete(entry.port);
    this.changed();
  }

  /** The set changed: published now, or when minPublishMs since the last publication has passed. */
  private changed(): void {
    this.dirty = true;
    if (this.publishTimer) return;
    const wait = this.lastPublishMs + (this.o.minPublishMs ?? DEFAULT_MIN_PUBLISH_MS) - this.now();
    if (wait <= 0) {
      // Not synchronously inside ask(): a DNS answer is being built; the publication goes a tick later.
      this.publishTimer = setTimeout(() => this.publish(), 0);
    } else {
      this.publishTimer = setTimeout(() => this.publish(), wait);
    }
    this.publishTimer.unref();
  }

  private publish(): void {
    this.publishTimer = undefined;
    if (!this.dirty) return;
    this.dirty = false;
    this.lastPublishMs = this.now();
    this.o.onChange?.(this.list());
  }
}

/** The entry asked least recently among some ports' names. */
function oldest(perPort: Iterable<Map<string, Entry>>): Entry | undefined {
  let out: Entry | undefined;
  for (const names of perPort) for (const e of names.values()) if (!out || e.lastMs < out.lastMs) out = e;
  return out;
}
