import { ErrorCodes } from '../../src/errors.js';
import type { DiscoveryReader, Endpoint, EndpointSource, Lookup } from '../../src/discovery/model.js';

/**
 * A real, in-memory DiscoveryReader: a table of name → port + addresses
 * that a test edits, firing onChange like the discovery core does on a
 * reload or a cluster change. Phase 1 of the xDS work codes against the
 * interface with this; phase 2 puts the daemon's own core behind it.
 *
 * Names are matched as the core matches them (lowercase, no trailing dot).
 * A name not in the table is `no-such-name`; one with no addresses is
 * `no-address` (the service is known, its port too); one marked failing
 * is `unavailable`.
 */
export class MemoryDiscovery implements DiscoveryReader {
  private readonly table = new Map<string, Row | 'failing'>();
  private readonly listeners = new Set<() => void>();
  /** Lookups answered so far, by name: tests check that many streams share one lookup. */
  readonly lookups = new Map<string, number>();

  /** Sets where `name` runs and tells the listeners. */
  set(name: string, port: number, addresses: string[], opts: RowOptions = {}): void {
    this.table.set(norm(name), { port, addresses: [...addresses], ...opts });
    this.changed();
  }

  /**
   * Sets where `name` runs without telling anyone: what happens when the
   * upstream resolvers' A records change, which the core does not watch.
   */
  setQuietly(name: string, port: number, addresses: string[], opts: RowOptions = {}): void {
    this.table.set(norm(name), { port, addresses: [...addresses], ...opts });
  }

  /** Several names at once, one onChange (a reload touching many names). */
  setMany(entries: Array<[string, number, string[]]>): void {
    for (const [name, port, addresses] of entries) this.table.set(norm(name), { port, addresses: [...addresses] });
    this.changed();
  }

  /** The name's lookups answer `unavailable` (a source failed) until set again. */
  fail(name: string): void {
    this.table.set(norm(name), 'failing');
    this.changed();
  }

  delete(name: string): void {
    this.table.delete(norm(name));
    this.changed();
  }

  /** Fires onChange without changing anything (a reload that changed nothing). */
  changed(): void {
    for (const l of [...this.listeners]) l();
  }

  listenerCount(): number {
    return this.listeners.size;
  }

  async lookup(name: string): Promise<Lookup> {
    const key = norm(name);
    this.lookups.set(key, (this.lookups.get(key) ?? 0) + 1);
    const row = this.table.get(key);
    if (row === undefined) return { ok: false, failure: 'no-such-name', code: ErrorCodes.NOT_FOUND, message: `${key} is not a service here` };
    const service = key.replace(/^_/, '').split('.')[0]!;
    if (row === 'failing') return { ok: false, failure: 'unavailable', code: ErrorCodes.UPSTREAM_FAILED, message: 'test: source failing' };
    const description = { name: key, zone: key.split('.').slice(1).join('.'), service, port: row.port, scheme: 'base32', prefix: '', host: key, ttl: row.ttl ?? 30, collidesWith: [] };
    if (row.addresses.length === 0) return { ok: false, failure: 'no-address', code: ErrorCodes.NO_ADDRESS, message: `${key} has no address`, description };
    const endpoints: Endpoint[] = row.addresses.map((address) => ({ address, port: row.port, source: row.source ?? 'registry' }));
    return { ok: true, instances: { ...description, endpoints } };
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}

interface RowOptions {
  /** Where the addresses came from (default registry). */
  source?: EndpointSource;
  /** Seconds the answer may be cached (default 30). */
  ttl?: number;
}

interface Row extends RowOptions {
  port: number;
  addresses: string[];
}

function norm(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}
