import { CoalescingQueue } from '../concurrency.js';
import type { Logger } from '../log.js';
import { ErrorCodes, isCanonportError } from '../errors.js';
import { FollowedName } from '../discovery/follow.js';
import type { DiscoveryReader, Lookup } from '../discovery/model.js';
import { canonicalEndpoints, encodeResource, sameEndpoints, type EncodedResource, type SocketEndpoint, type XdsAnswer } from './resources.js';
import type { ResourceType, XdsProtos } from './protos.js';

/**
 * The discovery's answer for every name some xDS stream subscribes to,
 * looked up once however many streams share the name, and looked up again
 * when the discovery says answers may have changed (onChange), when an
 * answer from the upstream resolvers reaches its TTL, or after a failure.
 * Subscribers hear which names changed and how (existence or endpoints
 * only), so a stream sends only the types and resources that changed.
 */

/** What changed about a name's answer. */
export interface AnswerChange {
  /** The resources appeared, disappeared, or were looked up for the first time: every type. */
  existence: boolean;
  /** Only the endpoints changed: the ClusterLoadAssignment alone. */
  endpoints: boolean;
}

export interface AnswerSubscriber {
  /** Called after the answer for `key` changed; never synchronously from subscribe(). */
  answerChanged(key: string, change: AnswerChange): void;
}

export interface AnswerCacheOptions {
  discovery: DiscoveryReader;
  protos: XdsProtos;
  logger: Logger;
  /** A lookup that has not settled by then counts as failed (the answer keeps its last state). */
  lookupTimeoutMs: number;
  /** Lookups in flight at once, so a reload with thousands of subscribed names cannot flood the sources (read as they start). */
  lookupConcurrency: () => number;
  /** How soon a failed lookup is tried again. */
  retryMs: number;
  /** Floor of the re-lookup period of answers from the upstream resolvers, whatever their TTL says. */
  refreshFloorMs: number;
}

/** Ceiling of the re-lookup period of upstream answers: a long TTL still gets looked at. */
const MAX_REFRESH_MS = 300_000;

interface Entry {
  key: string;
  answer: XdsAnswer;
  subscribers: Set<AnswerSubscriber>;
  /** Encoded resources by type and requested name; emptied whenever the answer changes. */
  encoded: Map<string, EncodedResource>;
  /** Bumped per lookup started; a result whose number is not current is dropped. */
  seq: number;
  timer: NodeJS.Timeout | undefined;
  /**
   * The last answer's endpoints that did not come from the cluster view:
   * what a failed lookup keeps. Observed endpoints are not kept: the view
   * withdrew them on purpose (the listener closed, the host's lease
   * expired), which is why the lookup fell through to a source that failed.
   */
  unobserved: SocketEndpoint[];
  /** What its last answer was built from: a change of the discovery that left it looks nothing up (issue 24). */
  followed: FollowedName;
}

export class AnswerCache {
  /** Names some stream subscribes to: at most the xDS name bound (xdsMaxNames, server.ts), as each holds a subscriber. */
  private readonly entries = new Map<string, Entry>();
  /** Entries waiting for a lookup or being looked up, each once: no more than `entries`. */
  private readonly lookups: CoalescingQueue<Entry>;
  private closed = false;
  /**
   * Set while any name is kept: the discovery's change feed (and the hosts
   * file poll behind it) runs only while an xDS client subscribes to
   * something, so a daemon without xDS clients is not woken for it.
   */
  private stopListening: (() => void) | undefined;

  constructor(private readonly opts: AnswerCacheOptions) {
    this.lookups = new CoalescingQueue((entry) => this.lookup(entry), {
      concurrency: opts.lookupConcurrency,
      live: (entry) => this.entries.get(entry.key) === entry,
      onError: (err, entry) => opts.logger.error({ code: ErrorCodes.XDS_INTERNAL, name: entry.key, err }, 'xDS answer update failed; the name keeps its last answer'),
    });
  }

  /** Distinct names looked up and kept. */
  get size(): number {
    return this.entries.size;
  }

  /** The current answer (pending until the first lookup settles). */
  answer(key: string): XdsAnswer {
    return this.entries.get(key)?.answer ?? { kind: 'pending' };
  }

  /**
   * The resource of `type` named `name` under `key`: the encoded bytes when
   * the service is present, else 'absent' or 'pending'. Encoded once per
   * answer, whatever the number of streams asking.
   */
  resource(type: ResourceType, name: string, key: string): EncodedResource | 'absent' | 'pending' {
    const entry = this.entries.get(key);
    if (!entry || entry.answer.kind === 'pending') return 'pending';
    if (entry.answer.kind === 'absent') return 'absent';
    const memo = `${type}\0${name}`;
    let r = entry.encoded.get(memo);
    if (!r) {
      r = encodeResource(this.opts.protos, type, name, key, entry.answer.endpoints);
      entry.encoded.set(memo, r);
    }
    return r;
  }

  /** `sub` hears about `key` from now on; the first subscriber starts its lookup. */
  subscribe(key: string, sub: AnswerSubscriber): void {
    let entry = this.entries.get(key);
    if (!entry) {
      entry = { key, answer: { kind: 'pending' }, subscribers: new Set(), encoded: new Map(), seq: 0, timer: undefined, unobserved: [], followed: new FollowedName(this.opts.discovery) };
      this.entries.set(key, entry);
      if (!this.closed) this.stopListening ??= this.opts.discovery.onChange(() => this.refreshAll());
      this.enqueue(entry);
    }
    entry.subscribers.add(sub);
  }

  /** The last subscriber leaving drops the name: nothing is kept or looked up for nobody. */
  unsubscribe(key: string, sub: AnswerSubscriber): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.subscribers.delete(sub);
    if (entry.subscribers.size === 0) {
      clearTimeout(entry.timer);
      entry.seq++;
      this.entries.delete(key);
      // Nothing left to look up: let go of the queue's references now, not at the next lookup,
      // and stop following the discovery until a name is kept again.
      if (this.entries.size === 0) {
        this.lookups.clear();
        this.stopListening?.();
        this.stopListening = undefined;
      }
    }
  }

  /** Stops listening to the discovery; later lookups' results are dropped. */
  close(): void {
    this.closed = true;
    this.stopListening?.();
    this.stopListening = undefined;
    for (const entry of this.entries.values()) clearTimeout(entry.timer);
    this.entries.clear();
    this.lookups.close();
  }

  /** The discovery's answers may have changed: look up again every kept name whose answer may have. */
  private refreshAll(): void {
    if (this.closed) return;
    for (const entry of this.entries.values()) if (!entry.followed.unchanged()) this.enqueue(entry);
  }

  private enqueue(entry: Entry): void {
    clearTimeout(entry.timer);
    entry.timer = undefined;
    this.lookups.enqueue(entry);
  }

  private async lookup(entry: Entry): Promise<void> {
    const seq = ++entry.seq;
    const begun = entry.followed.begin();
    let result: Lookup | 'failed';
    let timeout: NodeJS.Timeout | undefined;
    try {
      result = await Promise.race([
        // gRPC dials TCP: a host where the name listens only on UDP is no endpoint of it.
        this.opts.discovery.lookup(entry.key, { protocol: 'tcp' }),
        new Promise<'failed'>((resolve) => {
          timeout = setTimeout(() => {
            this.opts.logger.warn({ code: ErrorCodes.XDS_LOOKUP_FAILED, name: entry.key, timeoutMs: this.opts.lookupTimeoutMs }, 'xDS lookup timed out; the name keeps its last answer');
            resolve('failed');
          }, this.opts.lookupTimeoutMs);
        }),
      ]);
    } catch (err) {
      if (isCanonportError(err, ErrorCodes.BAD_NAME)) {
        result = { ok: false, failure: 'no-such-name', code: err.code, message: err.message };
      } else {
        this.opts.logger.warn({ code: ErrorCodes.XDS_LOOKUP_FAILED, name: entry.key, err }, 'xDS lookup failed; the name keeps its last answer');
        result = 'failed';
      }
    } finally {
      clearTimeout(timeout);
    }
    if (this.closed || seq !== entry.seq || this.entries.get(entry.key) !== entry) return;
    // Asked again meanwhile: the answer may already be out of date; the queue looks it up once more.
    if (this.lookups.askedAgain(entry)) return;
    entry.followed.settle(begun, result === 'failed' ? undefined : result.ok ? result.instances.port : result.description?.port);
    this.apply(entry, result);
  }

  private apply(entry: Entry, result: Lookup | 'failed'): void {
    const previous = entry.answer;
    let next: XdsAnswer;
    let refreshMs: number | undefined;
    if (result === 'failed' || (!result.ok && result.failure === 'unavailable')) {
      // A source failed: keep what clients have, less what the cluster view withdrew (Entry.unobserved);
      // a service known to exist keeps its resources.
      if (previous.kind === 'present') next = { kind: 'present', endpoints: entry.unobserved };
      else if (previous.kind === 'absent') next = previous;
      else next = result !== 'failed' && result.description !== undefined ? { kind: 'present', endpoints: [] } : { kind: 'absent' };
      refreshMs = this.opts.retryMs;
    } else if (!result.ok) {
      next = result.failure === 'no-address' ? { kind: 'present', endpoints: [] } : { kind: 'absent' };
      entry.unobserved = [];
    } else {
      next = { kind: 'present', endpoints: canonicalEndpoints(result.instances.endpoints) };
      entry.unobserved = canonicalEndpoints(result.instances.endpoints.filter((e) => e.source !== 'observed'));
      // Upstream A/AAAA answers change without the discovery hearing of it: look again at their TTL.
      if (result.instances.endpoints.some((e) => e.source === 'upstream')) {
        refreshMs = Math.min(MAX_REFRESH_MS, Math.max(this.opts.refreshFloorMs, result.instances.ttl * 1000));
      }
    }
    if (refreshMs !== undefined) {
      entry.timer = setTimeout(() => this.enqueue(entry), refreshMs);
      entry.timer.unref();
    }
    const change: AnswerChange = {
      existence: previous.kind !== next.kind,
      endpoints: previous.kind === 'present' && next.kind === 'present' && !sameEndpoints(previous.endpoints, next.endpoints),
    };
    if (!change.existence && !change.endpoints) return;
    entry.answer = next;
    entry.encoded.clear();
    for (const sub of [...entry.subscribers]) sub.answerChanged(entry.key, change);
  }
}
