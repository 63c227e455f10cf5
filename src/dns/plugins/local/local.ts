import type { ServingState } from '../../../core/state.js';
import { classifyName, specialUseZone } from '../../../core/service-name.js';
import type { Discovery } from '../../../discovery/discovery.js';
import type { Lookup, ServiceDescription } from '../../../discovery/model.js';
import { spreadLookup, turnsOf } from '../../../discovery/spread.js';
import { clusterName, instancesPtr, observedHosts, observedSrv, observedTxt } from './cluster.js';
import { Rcode } from '../../../errors.js';
import type { Forwarder } from '../../forwarder.js';
import { encodeAnswer, type Rr } from '../../message.js';
import type { MaybePromise, Next, Plugin, PluginStage } from '../../pipeline.js';
import { errorReply } from '../../reply.js';
import type { DnsReply, DnsRequest, Source } from '../../request.js';
import { questionRcode } from '../../question-policy.js';
import { HEADER_SIZE, TYPE } from '../../wire.js';
import { nameServerHost, specialZoneSoa, zoneNs, zoneSoa } from '../../zone-apex.js';
import { setup, type LocalOptions } from './setup.js';

/** Entries in the encoded-answer map before it is cleared; canonical answers are cheap to rebuild. */
const MAX_ENCODED = 50_000;
/**
 * An answer holding addresses learned from the upstreams is kept encoded
 * for at most this long, so the TTLs it carries are at most this stale and
 * it goes when the addresses expire.
 */
const LEARNED_KEEP_MS = 1000;

interface Encoded {
  reply: DnsReply;
  /** A service name a client asked for: marks it asked again on every hit (discovery/asked-names.ts). */
  asked: (() => void) | undefined;
  /** Cluster mode: the same answer with the other hosts turned (spread.ts), handed out in rotation after `reply`. */
  turns: DnsReply[] | undefined;
  next: number;
  /** Valid until this time (ms); Infinity until the state or the discovery core changes. */
  until: number;
  /** Cluster mode: the part of the view it was built from (see Answered.dep). */
  dep: ViewDependency | undefined;
}

/**
 * What a cluster-mode answer was built from: the view's hosts on one port
 * (a service name: compared by identity, see Discovery.observedOn), or the
 * whole view (node names, DNS-SD lists, anything else) by its generation.
 */
type ViewDependency = { port: number; hosts: unknown } | { view: number };

/**
 * Every zone the daemon answers itself. The served zones (and `localhost`):
 * SRV, TXT, A/AAAA and negative answers for every name under them,
 * formatted from the discovery core. The special-use zones (`invalid`,
 * `onion`, `_` TLDs: service-name.ts says why): empty, NXDOMAIN below the
 * apex, never forwarded. Answers known without I/O are encoded once and
 * kept as bytes (the hot path: a hit is a map read) until the state or the
 * core's local generation changes, or in cluster mode until what the view
 * holds for the answer's port changes (one listener starting somewhere
 * re-encodes that service's answers, not all of them); an address only the
 * upstreams know is asked through the core.
 */
export class LocalZonesStage implements PluginStage<LocalOptions> {
  readonly name = 'local';
  /** Encoded answers by query key: at most MAX_ENCODED (then all go). */
  private encoded = new Map<string, Encoded>();
  private encodedFor: ServingState | null = null;
  private encodedGen = -1;
  private opts: LocalOptions = { sdUnnamed: false };

  constructor(
    private readonly state: () => ServingState,
    private readonly discovery: Discovery,
    private readonly forwarder: Forwarder,
    private readonly now: () => number,
  ) {}

  /** New options from the next query on; answers encoded under the old config go. */
  configure(opts: LocalOptions): void {
    this.opts = opts;
    this.encoded = new Map();
  }

  serve(req: DnsRequest, next: Next): MaybePromise<DnsReply> {
    const state = this.state();
    const gen = this.discovery.localGeneration;
    if (state !== this.encodedFor || gen !== this.encodedGen) {
      this.encoded = new Map();
      this.encodedFor = state;
      this.encodedGen = gen;
    }
    // Keyed like the forwarding cache (name, type, class, DO): the DO bit only splits entries in two.
    // Looked up before the name is classified: only names this stage answers are ever stored.
    const hit = this.encoded.get(req.key);
    if (hit && (hit.until === Infinity || hit.until > this.now()) && (hit.dep === undefined || this.current(hit.dep))) {
      hit.asked?.();
      if (hit.turns === undefined) return hit.reply;
      // Spread: each answer leads with the next host (this host's own instance stays first).
      const i = hit.next++ % (hit.turns.length + 1);
      return i === 0 ? hit.reply : hit.turns[i - 1]!;
    }
    let result: Answered | Promise<DnsReply>;
    if (req.cls.kind === 'outside') {
      const special = specialUseZone(req.query.lname);
      if (special === null) return next(req);
      result = this.specialUse(req, special);
    } else {
      result = this.answer(req);
    }
    if (result instanceof Promise) return result; // waited on the upstreams: the next query finds it without I/O
    const now = this.now();
    const until = result.learned ? now + Math.min(LEARNED_KEEP_MS, result.ttl * 1000) : Infinity;
    if (until > now) {
      if (this.encoded.size >= MAX_ENCODED) this.encoded.clear();
      let turns: DnsReply[] | undefined;
      if (result.turns > 1) {
        turns = [];
        for (let t = 1; t < result.turns; t++) {
          const other = this.answer(req, t);
          if (other instanceof Promise) break; // cannot happen: a spread answer is known without I/O
          turns.push(other.reply);
        }
      }
      this.encoded.set(req.key, { reply: result.reply, asked: result.asked, turns, next: 1, until, dep: result.dep });
    }
    return result.reply;
  }

  /** Whether the view still holds what an answer was built from. */
  private current(dep: ViewDependency): boolean {
    return 'port' in dep ? this.discovery.observedOn(dep.port) === dep.hosts : this.discovery.observedGeneration === dep.view;
  }

  /** The answer, with cluster hosts turned by `turn` places (0: the core's order; spread.ts). */
  private answer(req: DnsRequest, turn = 0): Answered | Promise<DnsReply> {
    const { cls, query: q } = req;
    if (cls.kind === 'outside') throw new Error('local: asked about a name outside the zones');
    const zone = cls.zone;
    const state = this.state();
    const ttl = state.registry.ttl;
    const observedTtl = state.cluster?.observedTtl ?? ttl;
    const soa = zoneSoa(state, zone);
    const reply = (rcode: number, answers: Rr[] = [], additionals: Rr[] = []): DnsReply => zoneReply(req, soa, rcode, answers, additionals, 'canonical');
    let turns = 1;
    let asked: (() => void) | undefined;
    // Cluster mode: an answer depends on the whole view, unless it is about one service (its port's hosts, below).
    let dep: ViewDependency | undefined = this.discovery.clustered ? { view: this.discovery.observedGeneration } : undefined;
    const done = (r: DnsReply, learned = false, recordTtl = ttl): Answered => ({ reply: r, learned, ttl: recordTtl, turns, dep, asked });

    // Zone transfers, meta types, other classes: the same answer as for any name (question-policy.ts).
    const refusal = questionRcode(q.qtype, q.qclass);
    if (refusal !== null) return done(errorReply(req, refusal, 'canonical'));
    // A label holding a dot, a backslash or an octet outside printable ASCII (`a\\.b`, `\\200api`) is no name the
    // scheme can hold: NXDOMAIN with the zone's SOA like any name that cannot exist here (RFC 2308 §3).
    if (q.lname.includes('\\')) return done(reply(Rcode.NXDOMAIN));

    switch (cls.kind) {
      case 'apex':
        if (q.qtype === TYPE.SOA || q.qtype === TYPE.ANY) return done(reply(Rcode.NOERROR, [soa]));
        if (q.qtype === TYPE.NS) {
          // The name server host's addresses ride along in the additional section, as a delegation's glue would.
          const host = nameServerHost(zone);
          const known = this.peekHost(state, host);
          const t = known?.ok ? known.instances.ttl : ttl;
          const glue = known?.ok ? [...addressRrs(host, TYPE.A, known, t), ...addressRrs(host, TYPE.AAAA, known, t)] : [];
          return done(reply(Rcode.NOERROR, [zoneNs(state, zone)], glue), known ? learnedFrom(known) : false, Math.min(ttl, t));
        }
        return done(reply(Rcode.NOERROR));
      case 'empty':
        return done(reply(Rcode.NOERROR));
      case 'nxdomain':
        return done(reply(Rcode.NXDOMAIN));
      case 'node':
      case 'dnssd-types':
      case 'instance': {
        // Cluster mode's own names (cluster.ts), kept encoded until the view changes.
        const a = clusterName(cls, q.qtype, this.discovery, observedTtl, registryTxt, this.opts.sdUnnamed)!;
        return done(reply(a.rcode, a.answers, a.additionals), false, observedTtl);
      }
      case 'service':
        break;
    }

    const described = this.discovery.describeClass(q.lname, cls);
    if (!described.ok) return done(reply(Rcode.NXDOMAIN)); // e.g. versioned id 100 v101 → 8100101
    const d = described.description;
    // A client asks for this service by this name (not browsing: PTR explores, it does not use): the name may be learned.
    if (turn === 0 && q.qtype !== TYPE.PTR) asked = this.discovery.asked(d);
    // Read before the answer is built from it: nothing changes the view in between (this is synchronous).
    if (dep) dep = { port: d.port, hosts: this.discovery.observedOn(d.port) };
    // The name's own TTL: the registry's, or in cluster mode the observed TTL when the view decides it (discovery.ts).
    const nameTtl = d.ttl;
    // Cluster mode: where hosts report the service listening, SRV and TXT name them (cluster.ts), turned per answer.
    const seen = this.discovery.peek(d);
    const spreadable = seen?.ok === true && seen.instances.endpoints[0]?.source === 'observed' ? turnsOf(seen.instances.endpoints) : 1;
    const peeked = seen && turn > 0 ? spreadLookup(seen, turn) : seen;
    const hosts = observedHosts(peeked);

    switch (q.qtype) {
      case TYPE.SRV:
      // RFC 8482: ANY gets one RRset, not everything; the SRV set is the useful one.
      case TYPE.ANY: {
        if (hosts) {
          turns = spreadable;
          const a = observedSrv(q.lname, d, hosts, observedTtl);
          return done(reply(a.rcode, a.answers, a.additionals), false, observedTtl);
        }
        const srv: Rr = { type: 'SRV', name: q.lname, ttl: nameTtl, priority: 0, weight: 0, port: d.port, target: d.host };
        // The target's addresses when known without waiting: an SRV answer never waits on the upstreams.
        const known = peeked;
        if (!known?.ok) return done(reply(Rcode.NOERROR, [srv]), false, nameTtl);
        const t = known.instances.ttl;
        return done(reply(Rcode.NOERROR, [srv], [...addressRrs(d.host, TYPE.A, known, t), ...addressRrs(d.host, TYPE.AAAA, known, t)]), learnedFrom(known), t);
      }
      case TYPE.TXT: {
        if (hosts) return done(reply(Rcode.NOERROR, [{ type: 'TXT', name: q.lname, ttl: observedTtl, data: [...registryTxt(d), ...observedTxt(hosts)] }]), false, observedTtl);
        return done(reply(Rcode.NOERROR, [{ type: 'TXT', name: q.lname, ttl: nameTtl, data: registryTxt(d) }]), false, nameTtl);
      }
      case TYPE.PTR: {
        // DNS-SD browsing (RFC 6763): `_svc._tcp.Z` lists the service's instances, one per host.
        if (!this.discovery.clustered || cls.form !== 'srv') return done(reply(Rcode.NOERROR));
        const a = instancesPtr(q.lname, d, this.discovery, observedTtl, registryTxt, this.opts.sdUnnamed);
        return done(reply(a.rcode, a.answers, a.additionals), false, observedTtl);
      }
      case TYPE.A:
      case TYPE.AAAA: {
        if (cls.form === 'srv') return done(reply(Rcode.NOERROR)); // `_svc._tcp` names hold SRV/TXT only
        const addresses = (l: Lookup): DnsReply => {
          if (l.ok) return reply(Rcode.NOERROR, addressRrs(q.lname, q.qtype, l, l.instances.ttl));
          // No address anywhere is NODATA: the name still holds SRV and TXT here.
          return l.failure === 'unavailable' ? errorReply(req, Rcode.SERVFAIL) : reply(Rcode.NOERROR);
        };
        const known = peeked;
        if (known?.ok && hosts) turns = spreadable;
        if (known?.ok) return done(addresses(known), learnedFrom(known), known.instances.ttl);
        if (known) return done(addresses(known));
        // Asking the upstreams is recursion: a client outside --allow gets the zone as this daemon knows it
        // without asking (NODATA here, never kept), and cannot make it send queries.
        if (!req.mayRecurse) return done(reply(Rcode.NOERROR), true, 0);
        // Our own address question, sent back to us by a stub the upstream routes through: answer at
        // once (NXDOMAIN, which the waiting lookup reads as "no address"), never kept.
        if (this.forwarder.isLoop(req.raw.subarray(HEADER_SIZE, q.questionEnd), q.lname, req.client.address)) return done(reply(Rcode.NXDOMAIN), true, 0);
        return this.discovery.resolve(d).then(addresses);
      }
      default:
        return done(reply(Rcode.NOERROR));
    }
  }

  /** A special-use zone: an empty zone, its SOA at the apex, NXDOMAIN below it (unbound's local zones answer the same). */
  private specialUse(req: DnsRequest, zone: string): Answered {
    const q = req.query;
    const soa = specialZoneSoa(zone);
    const refusal = questionRcode(q.qtype, q.qclass);
    const reply =
      refusal !== null
        ? errorReply(req, refusal, 'builtin')
        : q.lname !== zone
          ? zoneReply(req, soa, Rcode.NXDOMAIN, [], [], 'builtin')
          : zoneReply(req, soa, Rcode.NOERROR, q.qtype === TYPE.SOA || q.qtype === TYPE.ANY ? [soa] : [], [], 'builtin');
    return { reply, learned: false, ttl: soa.ttl, turns: 1 };
  }

  /** Where an in-zone host name (the name server's) has addresses, when known without I/O. */
  private peekHost(state: ServingState, host: string): Lookup | null {
    const described = this.discovery.describeClass(host, classifyName(host, state.zones, state.registry));
    return described.ok ? this.discovery.peek(described.description) : null;
  }
}

/**
 * An authoritative reply from a zone (AA), with the zone's SOA in the
 * authority section when it has no answer (RFC 2308 §3). A name holding
 * escapes (`\\200api`) has its question written from the query's own
 * bytes: dns2 could not spell it from the text.
 */
function zoneReply(req: DnsRequest, soa: Rr, rcode: number, answers: Rr[], additionals: Rr[], source: Source): DnsReply {
  const q = req.query;
  const message = encodeAnswer({
    qname: q.lname,
    qtype: q.qtype,
    qclass: q.qclass,
    question: q.lname.includes('\\') ? req.raw.subarray(HEADER_SIZE, q.questionEnd) : undefined,
    rcode,
    aa: true,
    answers,
    authorities: answers.length === 0 ? [soa] : [],
    additionals,
  });
  return { message, rcode, source };
}

/** A reply, and whether it holds addresses learned from the upstreams (kept encoded only briefly; a TTL of 0 not at all). */
interface Answered {
  reply: DnsReply;
  learned: boolean;
  /** The least TTL in it, seconds. */
  ttl: number;
  /** Distinct orders of its hosts (spread.ts); 1: one answer. */
  turns: number;
  /** The name was asked for (asked-names.ts): the touch to call on every hit. */
  asked?: (() => void) | undefined;
  /** Cluster mode: the part of the view it was built from. */
  dep?: ViewDependency | undefined;
}

/** The TXT strings every service name carries (port, scheme, prefix, version, collisions). */
function registryTxt(d: ServiceDescription): string[] {
  const data = [`port=${d.port}`, `scheme=${d.scheme}`, `prefix=${d.prefix}`];
  if (d.version !== undefined) data.push(`version=${d.version}`);
  if (d.collidesWith.length > 0) data.push(`collision=shares port ${d.port} with ${d.collidesWith.join(',')}`);
  return data;
}

function learnedFrom(l: Lookup): boolean {
  return l.ok && l.instances.endpoints.some((e) => e.source === 'upstream');
}

function addressRrs(name: string, qtype: number, l: Lookup, ttl: number): Rr[] {
  if (!l.ok) return [];
  const v6 = qtype === TYPE.AAAA;
  return l.instances.endpoints
    .filter((e) => e.address.includes(':') === v6)
    .map((e) => (v6 ? { type: 'AAAA' as const, name, ttl, address: e.address } : { type: 'A' as const, name, ttl, address: e.address }));
}

/** Forwarder is a dependency for loop detection only: asking the upstreams is the discovery core's business. */
export const localPlugin: Plugin<LocalOptions> = {
  name: 'local',
  setup,
  create: (deps) => new LocalZonesStage(deps.state, deps.discovery, deps.forwarder, deps.now),
};
