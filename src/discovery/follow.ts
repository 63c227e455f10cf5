import type { DiscoveryReader } from './model.js';

/**
 * A name a stream follows (Watch, xDS), looked up again after a change of
 * the discovery only when what its last answer was built from changed
 * (DiscoveryReader.dependencyOn): a listener changing somewhere in the
 * cluster looks up the names on its port, not every followed name (issue
 * 24: ten changes a second otherwise look every followed name up ten times
 * a second). Timers (TTLs, retries) are the followers' own, untouched.
 */
export class FollowedName {
  /** The port of the last answer; undefined before one, or after a failure. */
  private port: number | undefined;
  /** What the last answer was built from; undefined: unknown (look up at the next change). */
  private dependency: unknown;

  constructor(private readonly discovery: Pick<DiscoveryReader, 'dependencyOn' | 'isCurrent'>) {}

  /** Before a lookup: what it is about to be built from (on the last answer's port, else the whole view). */
  begin(): unknown {
    return this.discovery.dependencyOn?.(this.port);
  }

  /**
   * After it: the port its answer is about (undefined: it failed, or said
   * no port). The dependency begin() took holds when it was on that port;
   * one on the whole view that is still current says the answer was built
   * from what the view holds on that port now.
   */
  settle(begun: unknown, port: number | undefined): void {
    if (this.port !== undefined) this.dependency = this.port === port ? begun : undefined;
    else if (port !== undefined) this.dependency = this.discovery.isCurrent?.(begun) ? this.discovery.dependencyOn?.(port) : undefined;
    else this.dependency = begun;
    this.port = port;
  }

  /** Whether the last answer is still what a lookup would build (a change of the discovery can be skipped). */
  unchanged(): boolean {
    return this.dependency !== undefined && this.discovery.isCurrent?.(this.dependency) === true;
  }
}
