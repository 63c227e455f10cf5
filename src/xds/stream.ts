import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/metrics.js';
import { CanonportError, ErrorCodes, errorToGrpcStatus, type ErrorCode } from '../errors.js';
import { ERROR_CODE_METADATA } from '../grpc/proto.js';
import type { AnswerCache, AnswerChange, AnswerSubscriber } from './answers.js';
import { RESOURCE_TYPES, TypeUrl, resourceTypeOf, type ResourceType } from './protos.js';
import { lookupKey } from './resources.js';

/**
 * One ADS stream, state of the world (xDS protocol, "ACK/NACK and
 * resource type instance version"; gRFC A27 for what gRPC clients expect).
 *
 * Per resource type the stream keeps the subscribed names, the last nonce
 * and version it sent, whether that response still awaits its ACK/NACK, and
 * the content token of what the client was last sent for each name. Rules:
 *
 * - A request without a nonce (the first for a type on this stream, also a
 *   client reconnecting with an old version_info) gets the full current
 *   state: the client's cache may be from another daemon or another life.
 * - A request whose nonce is not the last one sent for its type is stale
 *   and ignored: a newer response is on its way and its ACK will carry the
 *   client's full subscription.
 * - At most one response per type awaits an ACK/NACK; changes meanwhile are
 *   collected and sent when it is answered (a slow client gets the latest
 *   state, not a backlog).
 * - A resource is sent only when its content differs from what this client
 *   was last sent, ACKed or NACKed: unchanged resources are never re-sent,
 *   and a NACKed one not until it changes.
 * - Listener and Cluster are "state of the world" types: a response holds
 *   every subscribed resource that exists, and leaving one out tells the
 *   client it does not exist. RouteConfiguration and ClusterLoadAssignment
 *   responses hold only what changed; their absence cannot be expressed.
 * - Types canonport does not serve are ignored (no response): gRPC clients
 *   only ask for the four above, and drop responses of types they do not
 *   know (grpc-js-xds: "Unexpected type URL"; C-core: "unknown resource
 *   type -- ignoring"), so an answer would carry nothing either side uses.
 */

/** Marks a name the client was told does not exist (left out of a Listener or Cluster response). */
const ABSENT = '-';

/** The wire shape of envoy.service.discovery.v3.DiscoveryRequest (XDS_LOADER_OPTIONS). */
export interface DiscoveryRequest {
  version_info?: string;
  node?: { id?: string; cluster?: string; user_agent_name?: string; user_agent_version?: string } | null;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: { code?: number; message?: string } | null;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: Array<{ type_url: string; value: Buffer }>;
  type_url: string;
  nonce: string;
  control_plane: { identifier: string };
}

export interface StreamLimits {
  /** Resource names one stream may subscribe to, all types together. */
  maxSubscriptionsPerStream: number;
}

interface TypeState {
  /** Subscribed names (as the client spells them) → discovery key, null when no key can exist. At most maxSubscriptionsPerStream over all types. */
  names: Map<string, string | null>;
  /** Discovery key → the subscribed names that map to it. */
  byKey: Map<string, Set<string>>;
  /** Names whose answer changed since the last response (or were just subscribed), their answer known. */
  dirty: Set<string>;
  /**
   * Subscribed names whose answer is still being looked up: kept out of
   * `dirty` until it arrives (answerChanged), so a response waits for them
   * without walking every name each time one more answer comes in.
   */
  pending: Set<string>;
  /** The next response must go out even if nothing changed (a request without nonce). */
  force: boolean;
  /** Last nonce sent for this type, null before the first response. */
  nonce: string | null;
  version: number;
  /** A response was sent and neither ACKed nor NACKed yet. */
  awaiting: boolean;
  /** Name → token of what the client was last sent (ABSENT: told it does not exist). */
  sent: Map<string, string>;
  /** Names in the last response, for the NACK log. */
  lastNames: string[];
}

export interface AdsStreamDeps {
  cache: AnswerCache;
  metrics: Metrics;
  logger: Logger;
  limits: StreamLimits;
  /**
   * The names this stream's client and every client hold together
   * (server.ts): acquire(n) takes n more, answering null, or why not (the
   * stream then ends RESOURCE_EXHAUSTED); release(n) gives them back.
   */
  names: { acquire(n: number): string | null; release(n: number): void };
  /** Queues flushNow() for a later turn of the event loop (server.ts runs them in slices). */
  flush(stream: AdsStream): void;
  /** Called once when the stream is over, however it ended. */
  onEnd(stream: AdsStream): void;
}

/** What a stream end reports in logs and metrics. */
export type EndReason = 'client' | 'shutdown' | 'subscription_limit' | 'stream_limit' | 'error';

const CONTROL_PLANE = { identifier: 'canonport' };

export class AdsStream implements AnswerSubscriber {
  /** State per resource type: the four types served, at most. */
  private readonly types = new Map<ResourceType, TypeState>();
  /** Subscriptions per discovery key, all types together: the cache is subscribed while > 0. At most maxSubscriptionsPerStream keys. */
  private readonly keyRefs = new Map<string, number>();
  private subscriptions = 0;
  private nonces = 0;
  private flushQueued = false;
  private ended = false;
  private nodeId: string | undefined;
  /** Unknown type URLs already logged: at most 16 (then no more are logged). */
  private readonly ignoredTypes = new Set<string>();
  readonly log: Logger;

  constructor(
    readonly id: number,
    private readonly call: grpc.ServerDuplexStream<DiscoveryRequest, DiscoveryResponse>,
    private readonly deps: AdsStreamDeps,
  ) {
    this.log = deps.logger.child({ stream: id, peer: call.getPeer() });
    call.on('data', (req: DiscoveryRequest) => this.guard(() => this.onRequest(req)));
    // The client half-closed: finish with OK, as a server with nothing more to say.
    call.on('end', () => this.end('client', null));
    call.on('cancelled', () => this.end('client', null));
    call.on('error', () => this.end('client', null));
  }

  /** Names subscribed, all types together. */
  get subscriptionCount(): number {
    return this.subscriptions;
  }

  /** Ends the stream with `status` (null: OK, or already over) and releases everything it held. */
  end(reason: EndReason, status: grpc.StatusObject | null): void {
    if (this.ended) return;
    this.ended = true;
    for (const key of this.keyRefs.keys()) this.deps.cache.unsubscribe(key, this);
    this.keyRefs.clear();
    this.deps.names.release(this.subscriptions);
    this.subscriptions = 0;
    for (const [type, st] of this.types) this.deps.metrics.xdsSubscriptions.dec({ type }, st.names.size);
    this.types.clear();
    if (reason !== 'client') this.deps.metrics.xdsStreamsEnded.inc({ reason });
    this.log.debug({ reason, node: this.nodeId }, 'xDS stream ended');
    try {
      if (status) this.call.emit('error', status);
      else if (reason !== 'client' || this.call.writable) this.call.end();
    } catch {
      // The transport is already gone.
    }
    this.deps.onEnd(this);
  }

  /** AnswerSubscriber: mark the names under `key` dirty in the types the change touches. */
  answerChanged(key: string, change: AnswerChange): void {
    if (this.ended) return;
    const known = this.deps.cache.answer(key).kind !== 'pending';
    for (const type of RESOURCE_TYPES) {
      const st = this.types.get(type);
      const names = st?.byKey.get(key);
      if (!st || !names) continue;
      const touched = change.existence || type === 'endpoint';
      for (const name of names) {
        // A first answer makes the name ready in every type; a later change only in the types it touches.
        if (known && st.pending.delete(name)) st.dirty.add(name);
        else if (touched && !st.pending.has(name)) st.dirty.add(name);
      }
    }
    this.scheduleFlush();
  }

  /** Runs a handler so that no bug in it escapes into grpc-js: the stream ends with INTERNAL instead. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ code: ErrorCodes.XDS_INTERNAL, err }, 'xDS stream failed');
      this.end('error', errorStatus(ErrorCodes.XDS_INTERNAL, 'canonport: internal error in the xDS stream'));
    }
  }

  private onRequest(req: DiscoveryRequest): void {
    if (this.ended) return;
    if (req.node?.id && this.nodeId === undefined) {
      this.nodeId = req.node.id.slice(0, 200);
      this.log.debug(
        { node: this.nodeId, agent: `${req.node.user_agent_name ?? ''} ${req.node.user_agent_version ?? ''}`.trim().slice(0, 100) },
        'xDS client connected',
      );
    }
    const typeUrl = req.type_url ?? '';
    const type = resourceTypeOf(typeUrl);
    if (!type) {
      this.deps.metrics.xdsRequestsIgnored.inc({ reason: 'unknown_type' });
      if (!this.ignoredTypes.has(typeUrl) && this.ignoredTypes.size < 16) {
        this.ignoredTypes.add(typeUrl);
        this.log.info({ typeUrl: typeUrl.slice(0, 200), node: this.nodeId }, 'xDS request for a type canonport does not serve: ignored');
      }
      return;
    }
    let st = this.types.get(type);
    if (!st) {
      st = { names: new Map(), byKey: new Map(), dirty: new Set(), pending: new Set(), force: false, nonce: null, version: 0, awaiting: false, sent: new Map(), lastNames: [] };
      this.types.set(type, st);
    }
    const nonce = req.response_nonce ?? '';
    if (nonce === '' || st.nonce === null) {
      // A fresh start for this type: whatever the client holds, send the current state.
      st.sent.clear();
      st.awaiting = false;
      st.force = true;
    } else if (nonce !== st.nonce) {
      this.deps.metrics.xdsRequestsIgnored.inc({ reason: 'stale_nonce' });
      return;
    } else if (st.awaiting) {
      st.awaiting = false;
      if (req.error_detail) {
        this.deps.metrics.xdsNacks.inc({ type });
        this.log.warn(
          {
            code: ErrorCodes.XDS_NACK,
            node: this.nodeId,
            type,
            version: st.version,
            resources: st.lastNames.slice(0, 20),
            detail: String(req.error_detail.message ?? '').slice(0, 2000),
          },
          'xDS client rejected resources (NACK); they are not sent again until they change',
        );
      } else {
        this.deps.metrics.xdsAcks.inc({ type });
      }
    }
    if (!this.updateNames(type, st, req.resource_names ?? [])) return;
    this.scheduleFlush();
  }

  /** Applies the request's subscription set (SotW: every request carries all of it). False when the stream ended. */
  private updateNames(type: ResourceType, st: TypeState, requested: readonly string[]): boolean {
    const wanted = new Set(requested);
    const added = [...wanted].filter((n) => !st.names.has(n));
    const removed = [...st.names.keys()].filter((n) => !wanted.has(n));
    if (this.subscriptions + added.length - removed.length > this.deps.limits.maxSubscriptionsPerStream) {
      const max = this.deps.limits.maxSubscriptionsPerStream;
      this.log.warn({ code: ErrorCodes.XDS_LIMIT, node: this.nodeId, type, requested: this.subscriptions + added.length - removed.length, max }, 'xDS stream over its subscription limit: ended');
      this.end('subscription_limit', errorStatus(ErrorCodes.XDS_LIMIT, `canonport: more than ${max} xDS subscriptions on one stream`));
      return false;
    }
    // The client's and the daemon's totals (server.ts): checked before anything changes, released after removal.
    const growth = added.length - removed.length;
    if (growth > 0) {
      const refused = this.deps.names.acquire(growth);
      if (refused !== null) {
        this.log.debug({ code: ErrorCodes.XDS_LIMIT, node: this.nodeId, type, growth, refused }, 'xDS stream over a name limit: ended');
        this.end('subscription_limit', errorStatus(ErrorCodes.XDS_LIMIT, `canonport: ${refused}`));
        return false;
      }
    }
    for (const name of removed) {
      const key = st.names.get(name)!;
      st.names.delete(name);
      st.sent.delete(name);
      st.dirty.delete(name);
      st.pending.delete(name);
      if (key !== null) {
        const set = st.byKey.get(key)!;
        set.delete(name);
        if (set.size === 0) st.byKey.delete(key);
        this.unref(key);
      }
    }
    for (const name of added) {
      const key = lookupKey(name);
      st.names.set(name, key);
      if (key !== null) {
        let set = st.byKey.get(key);
        if (!set) st.byKey.set(key, (set = new Set()));
        set.add(name);
        this.ref(key);
      }
      if (key !== null && this.deps.cache.answer(key).kind === 'pending') st.pending.add(name);
      else st.dirty.add(name);
    }
    this.subscriptions += growth;
    if (growth < 0) this.deps.names.release(-growth);
    this.deps.metrics.xdsSubscriptions.inc({ type }, growth);
    if (st.force) for (const name of st.names.keys()) if (!st.pending.has(name)) st.dirty.add(name);
    return true;
  }

  private ref(key: string): void {
    const n = this.keyRefs.get(key) ?? 0;
    this.keyRefs.set(key, n + 1);
    if (n === 0) this.deps.cache.subscribe(key, this);
  }

  private unref(key: string): void {
    const n = this.keyRefs.get(key)!;
    if (n > 1) this.keyRefs.set(key, n - 1);
    else {
      this.keyRefs.delete(key);
      this.deps.cache.unsubscribe(key, this);
    }
  }

  /**
   * Changes arriving together (a reload touching many names, a burst of
   * requests) go out as one response per type: the stream is queued once
   * (server.ts answers queued streams a few milliseconds per turn of the
   * event loop, so thousands of them never hold it).
   */
  private scheduleFlush(): void {
    if (this.flushQueued || this.ended) return;
    this.flushQueued = true;
    this.deps.flush(this);
  }

  /** Sends what each type has ready (the queue's callback). */
  flushNow(): void {
    this.flushQueued = false;
    if (this.ended) return;
    this.guard(() => {
      for (const type of RESOURCE_TYPES) this.flush(type);
    });
  }

  /** Sends the type's response when something the client should hear about is ready. */
  private flush(type: ResourceType): void {
    const st = this.types.get(type);
    if (this.ended || !st || st.awaiting || (st.dirty.size === 0 && !st.force)) return;
    const cache = this.deps.cache;
    const stateOfTheWorld = type === 'listener' || type === 'cluster';
    // A state-of-the-world response holds every name: it waits until none is still being looked up.
    if (stateOfTheWorld && st.pending.size > 0) return;
    const token = (name: string, key: string | null) => (key === null ? 'absent' : cache.resource(type, name, key));

    let changed = st.force;
    for (const name of st.dirty) {
      const r = token(name, st.names.get(name) ?? null);
      if (r === 'pending') continue;
      const now = r === 'absent' ? ABSENT : r.token;
      if (st.sent.get(name) !== now && (stateOfTheWorld || now !== ABSENT)) changed = true;
      else if (!stateOfTheWorld && now === ABSENT) st.sent.set(name, ABSENT);
    }
    if (!changed) {
      st.dirty.clear();
      return;
    }

    const resources: Array<{ name: string; value: Buffer; token: string }> = [];
    const told = new Map<string, string>();
    if (stateOfTheWorld) {
      // Every subscribed name, present or told absent; wait while any is still being looked up,
      // since leaving it out would read as "does not exist" to a client that had it.
      for (const [name, key] of st.names) {
        const r = token(name, key);
        if (r === 'pending') return;
        if (r === 'absent') told.set(name, ABSENT);
        else {
          told.set(name, r.token);
          resources.push({ name, value: r.bytes, token: r.token });
        }
      }
    } else {
      for (const name of st.dirty) {
        const r = token(name, st.names.get(name) ?? null);
        if (r === 'pending' || r === 'absent') continue;
        if (st.sent.get(name) === r.token && !st.force) continue;
        told.set(name, r.token);
        resources.push({ name, value: r.bytes, token: r.token });
      }
      // Pending names stay dirty until their answer arrives; nothing to say about absent ones.
      if (resources.length === 0) {
        for (const name of [...st.dirty]) if (token(name, st.names.get(name) ?? null) !== 'pending') st.dirty.delete(name);
        st.force = false;
        return;
      }
    }

    const reason = st.force ? 'initial' : 'change';
    st.version++;
    st.nonce = String(++this.nonces);
    st.awaiting = true;
    st.force = false;
    for (const [name, t] of told) {
      st.sent.set(name, t);
      st.dirty.delete(name);
    }
    if (stateOfTheWorld) st.dirty.clear();
    st.lastNames = resources.map((r) => r.name);
    const response: DiscoveryResponse = {
      version_info: String(st.version),
      resources: resources.map((r) => ({ type_url: TypeUrl[type], value: r.value })),
      type_url: TypeUrl[type],
      nonce: st.nonce,
      control_plane: CONTROL_PLANE,
    };
    this.call.write(response);
    this.deps.metrics.xdsPushes.inc({ type, reason });
    if (resources.length > 0) this.deps.metrics.xdsResourcesSent.inc({ type }, resources.length);
    this.log.debug({ type, version: st.version, nonce: st.nonce, resources: resources.length, reason }, 'xDS response sent');
  }
}

/** The status a stream ends with for a catalogue error: its gRPC code, and the canonport code in trailers. */
export function errorStatus(code: ErrorCode, details: string): grpc.StatusObject {
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_METADATA, code);
  return { code: errorToGrpcStatus(new CanonportError(code, details)), details: `${details} [${code}]`, metadata };
}
