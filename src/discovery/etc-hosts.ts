import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';

export interface HostAddresses {
  v4: string[];
  v6: string[];
}

/**
 * /etc/hosts, re-read when its mtime changes (checked at most every
 * `checkEveryMs`, so lookups stay map reads). A missing file is empty.
 */
export class EtcHosts {
  private map = new Map<string, HostAddresses>();
  private mtimeMs = -1;
  private checkedAt = -Infinity;
  private gen = 0;

  constructor(
    private readonly path = '/etc/hosts',
    private readonly now: () => number = Date.now,
    private readonly checkEveryMs = 5000,
  ) {
    this.refresh();
  }

  /**
   * Bumped whenever the content changes, so answer caches can invalidate.
   * Reading it checks the file like a lookup does: a cache that answers
   * every query itself never calls lookup(), and must still see an edit.
   */
  get generation(): number {
    this.checkIfDue();
    return this.gen;
  }

  lookup(name: string): HostAddresses | null {
    this.checkIfDue();
    return this.map.get(name) ?? null;
  }

  private checkIfDue(): void {
    if (this.now() - this.checkedAt >= this.checkEveryMs) this.refresh();
  }

  /** Re-reads the file if it changed. */
  refresh(): void {
    this.checkedAt = this.now();
    let mtime: number;
    try {
      mtime = statSync(this.path).mtimeMs;
    } catch {
      if (this.map.size > 0) this.gen++;
      this.map = new Map();
      this.mtimeMs = -1;
      return;
    }
    if (mtime === this.mtimeMs) return;
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch {
      // Unreadable for now (out of descriptors, a permission being changed): keep what we had and try
      // again at the next check, rather than answer as if the file were empty.
      return;
    }
    this.mtimeMs = mtime;
    this.map = parseHosts(text);
    this.gen++;
  }
}

/** Parses hosts(5) text: `ADDRESS NAME [ALIAS…]`, `#` comments. Names lowercased. */
export function parseHosts(text: string): Map<string, HostAddresses> {
  const map = new Map<string, HostAddresses>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) continue;
    const [addr, ...names] = line.split(/\s+/);
    const fam = isIP(addr!.replace(/%.*$/, ''));
    if (!fam) continue;
    for (const n of names) {
      const name = n.toLowerCase().replace(/\.$/, '');
      const entry = map.get(name) ?? { v4: [], v6: [] };
      const list = fam === 4 ? entry.v4 : entry.v6;
      if (!list.includes(addr!)) list.push(addr!);
      map.set(name, entry);
    }
  }
  return map;
}
