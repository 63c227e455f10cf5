import type etcd3 from 'etcd3';
import { base32Port } from '../src/scheme/index.js';
import { scaleNode, servicesOf, type ScaleOptions } from '../test/helpers/scale-fleet.js';

/**
 * Listeners opening and closing across a synthetic cluster written by the
 * scale generator (test/helpers/scale-fleet.ts), at `perSecond`: every
 * tick one listener of a random node is deleted, or put back (under that
 * node's lease) if it was gone, as its host's publisher would. Each change
 * is a watch event at every daemon. Deterministic: every run changes the
 * same listeners in the same order. Used by the latency bench (issue 24:
 * answers while 10 listeners a second change).
 */
export class ListenerChurn {
  private timer: NodeJS.Timeout | undefined;
  /** Keys deleted and not yet put back; at most one per listener of the fleet. */
  private readonly gone = new Set<string>();
  private inFlight = 0;
  changes = 0;
  errors = 0;
  private readonly rng: () => number;

  constructor(
    private readonly client: etcd3.Etcd3,
    private readonly prefix: string,
    private readonly fleet: ScaleOptions,
    /** Node i's lease, as writeScaleFleet returns them (index i). */
    private readonly leases: readonly (etcd3.Lease | undefined)[],
    private readonly perSecond: number,
    seed = 24,
  ) {
    // mulberry32
    let a = seed >>> 0;
    this.rng = () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), 1000 / this.perSecond);
  }

  private async tick(): Promise<void> {
    // Bounded: a slow etcd must not pile writes up.
    if (this.inFlight > 50) return;
    const i = Math.floor(this.rng() * this.fleet.nodes);
    const mine = servicesOf(i, this.fleet);
    const service = mine[Math.floor(this.rng() * mine.length)]!;
    const [key, value] = scaleNode(this.prefix, i, this.fleet).puts.find(([k]) => k.endsWith(`/${base32Port(service)}`))!;
    this.inFlight++;
    try {
      if (this.gone.delete(key)) {
        const lease = await this.leases[i]?.grant();
        await this.client.kv.put({ key: Buffer.from(key), value: Buffer.from(value), ...(lease ? { lease } : {}) });
      } else {
        this.gone.add(key);
        await this.client.kv.deleteRange({ key: Buffer.from(key) });
      }
      this.changes++;
    } catch {
      this.errors++;
    } finally {
      this.inFlight--;
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    while (this.inFlight > 0) await new Promise((r) => setTimeout(r, 20));
  }
}
