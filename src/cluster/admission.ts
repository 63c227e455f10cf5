import { endpointAddresses } from './address-policy.js';
import type { InstanceRecord, ListenerRecord, NodeRecord, Protocol } from './keys.js';

/**
 * Which records the cluster view holds when there are more than its caps
 * allow (issue 21, findings 4 and 7). A node, or a flood of made-up nodes,
 * may only ever crowd out its own entries:
 *
 * - **Per node** (a node's v2 records and its v1 mirror each have their
 *   own budget): at most `maxNodeInstances` instance records, at most
 *   `maxNodeAddresses` answer addresses (an instance counts the addresses it
 *   is answered at times its services: what it adds to an SRV, `Resolve`,
 *   xDS or `/sd/prometheus` answer) and at most `maxNodeBytes` bytes of
 *   instance values. Beyond them the node's newest instances are refused;
 *   instances under the node record's lease come before any other (an
 *   earlier daemon's leftovers, an impostor's keys).
 * - **In all**: at most `maxNodes` nodes and `maxEndpoints` instances. Who
 *   is kept is decided by rank, never by key order: this daemon's own node
 *   first, then nodes under a lease (live) before nodes without one, then
 *   the longest known (the node record's etcd create revision: a node that
 *   has been in the cluster for days ranks before one written a second
 *   ago). A better-ranked entry arriving at a full view takes the place of
 *   the worst-ranked one; a worse-ranked one is refused.
 * - **Reconsidered**: refused and displaced records wait (bounded:
 *   WAITING_MAX entries, WAITING_MAX_BYTES, WAITING_MAX_PER_NODE per node)
 *   and are admitted, best rank first, as soon as room appears (a node
 *   leaves, an instance goes). A record that could not even wait
 *   (the waiting room full) is lost until the next full list: when room
 *   appears after such a loss in the node or endpoint caps, the admission
 *   asks for one (`relistWanted`), which the sync loop grants at a bounded
 *   rate. A node's own per-node excess is not worth a list of the whole
 *   prefix: what it loses beyond its waiting share comes back at the next
 *   list.
 *
 * Pure memory: the view (view.ts) hands records in and indexes what this
 * says to hold, through the sink.
 */

export interface AdmissionCaps {
  /** Nodes held at most. */
  maxNodes: number;
  /** Instance and listener records held at most, over every node. */
  maxEndpoints: number;
  /** Instance (or v1 listener) records one node holds at most. */
  maxNodeInstances: number;
  /** Answer addresses (address × service) one node's instances add at most. */
  maxNodeAddresses: number;
  /** Bytes of one node's instance (or listener) values at most. */
  maxNodeBytes: number;
}

interface CandidateBase {
  key: string;
  node: string;
  /** etcd's lease id in decimal; undefined: none. */
  lease: string | undefined;
  /** The key's create revision (0: unknown, a snapshot from an older version). */
  createRevision: number;
  modRevision?: number | undefined;
  /** The value's size as stored in etcd. */
  bytes: number;
}

export interface NodeCandidate extends CandidateBase {
  kind: 'node';
  layout: 'v1' | 'v2';
  record: NodeRecord;
}

export interface InstanceCandidate extends CandidateBase {
  kind: 'instance';
  layout: 'v2';
  port: number;
  protocol: Protocol;
  namespace: string;
  record: InstanceRecord;
}

export interface ListenerCandidate extends CandidateBase {
  kind: 'listener';
  layout: 'v1';
  port: number;
  record: ListenerRecord;
}

export type Candidate = NodeCandidate | InstanceCandidate | ListenerCandidate;
type Endpoint = InstanceCandidate | ListenerCandidate;

/** Which cap refused a record (the `kind` label of canonport_cluster_refused_entries_total). */
export type RefusalKind = 'node' | 'endpoint' | 'node_instances' | 'node_addresses' | 'node_bytes';

/** Where the admission's decisions go: the view indexes what is added and drops what is removed. */
export interface AdmissionSink {
  add(c: Candidate): void;
  remove(c: Candidate): void;
  /** A record refused (or displaced) by `kind`'s cap. */
  refused(c: Candidate, kind: RefusalKind, cap: number): void;
}

/** Records waiting for room, in all. */
export const WAITING_MAX = 10_000;
/** Bytes of waiting values, in all. */
export const WAITING_MAX_BYTES = 16 * 1024 * 1024;
/** Records one node may have waiting: a node over its own caps cannot fill the waiting room for the others. */
export const WAITING_MAX_PER_NODE = 256;

/** Lexicographic rank: lower is better. */
type Rank = readonly (number | string)[];

function compare(a: Rank, b: Rank): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    return x < y ? -1 : 1;
  }
  return 0;
}

interface Budget {
  /** Held instances (or v1 listeners) by key, with the answer addresses each counts. */
  held: Map<string, { c: Endpoint; addresses: number }>;
  bytes: number;
  addresses: number;
  /** The worst-ranked held entry, cached until the budget changes. */
  worst: Endpoint | null | undefined;
}

interface Ledger {
  node: string;
  /** Holds one of the maxNodes places. Taken with an admitted node record, given back when the node holds nothing. */
  slot: boolean;
  records: { v1?: NodeCandidate | undefined; v2?: NodeCandidate | undefined };
  budgets: { v1: Budget; v2: Budget };
  rank: Rank;
}

const budget = (): Budget => ({ held: new Map(), bytes: 0, addresses: 0, worst: undefined });

export class Admission {
  private readonly ledgers = new Map<string, Ledger>();
  private slots = 0;
  private endpoints = 0;
  /** key → what is held under it. */
  private readonly held = new Map<string, Candidate>();
  /** key → a record refused or displaced, waiting for room. Bounded: WAITING_MAX, WAITING_MAX_BYTES, WAITING_MAX_PER_NODE. */
  private readonly waiting = new Map<string, { c: Candidate; kind: RefusalKind | 'no_node' }>();
  private waitingBytes = 0;
  /** node → its waiting keys (at most WAITING_MAX_PER_NODE). */
  private readonly waitingByNode = new Map<string, Set<string>>();
  /** Waiting node records, and records waiting for the endpoint cap: what room in the node or endpoint cap can take in. */
  private readonly waitingNodes = new Set<string>();
  private readonly waitingForEndpoints = new Set<string>();
  /** A record refused by the node (or the endpoint) cap could not wait: a full list is the only way to find it again. */
  private lostNodes = false;
  private lostEndpoints = false;
  private worstSlot: Ledger | null | undefined;
  private worstEndpoint: { ledger: Ledger; c: Endpoint } | null | undefined;
  /**
   * Where room appeared since the waiting records were last reconsidered:
   * a node place, an instance place in all, or within these nodes. Only
   * the records that room could take are looked at (a writer churning its
   * own keys costs the size of its own waiting share, not everyone's).
   */
  private roomSlot = false;
  private roomEndpoint = false;
  private readonly roomNodes = new Set<string>();

  constructor(
    private caps: AdmissionCaps,
    private readonly self: string | undefined,
    private readonly sink: AdmissionSink,
  ) {}

  /** Records held, in all (nodes, instances, listeners). */
  get heldCount(): number {
    return this.held.size;
  }

  /** Instance and listener records held. */
  get endpointCount(): number {
    return this.endpoints;
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Nodes holding a place. */
  get nodeCount(): number {
    return this.slots;
  }

  isHeld(key: string): boolean {
    return this.held.has(key);
  }

  /**
   * True when records were lost for want of room to wait and room has
   * appeared since: only a full list can find them. Cleared by reset().
   */
  get relistWanted(): boolean {
    return (this.lostNodes && this.slots < this.caps.maxNodes) || (this.lostEndpoints && this.endpoints < this.caps.maxEndpoints);
  }

  /** Forgets everything (a full list follows, or the view is dropped). Nothing is removed through the sink. */
  reset(): void {
    this.ledgers.clear();
    this.held.clear();
    this.waiting.clear();
    this.waitingByNode.clear();
    this.waitingNodes.clear();
    this.waitingForEndpoints.clear();
    this.waitingBytes = 0;
    this.slots = 0;
    this.endpoints = 0;
    this.lostNodes = false;
    this.lostEndpoints = false;
    this.worstSlot = undefined;
    this.worstEndpoint = undefined;
    this.clearRoom();
  }

  private clearRoom(): void {
    this.roomSlot = false;
    this.roomEndpoint = false;
    this.roomNodes.clear();
  }

  /**
   * A full list: every record at once. Admitted best rank first, so the
   * outcome does not depend on the order etcd returns keys in.
   */
  admitAll(cs: readonly Candidate[]): void {
    const byNode = new Map<string, Candidate[]>();
    for (const c of cs) {
      let at = byNode.get(c.node);
      if (!at) byNode.set(c.node, (at = []));
      at.push(c);
    }
    const order = [...byNode].map(([node, list]) => {
      const records = list.filter((c): c is NodeCandidate => c.kind === 'node');
      return { node, list, rank: this.nodeRankOf(node, records) };
    });
    order.sort((a, b) => compare(a.rank, b.rank));
    for (const { list } of order) {
      const nodes = list.filter((c) => c.kind === 'node');
      const rest = list.filter((c): c is Endpoint => c.kind !== 'node');
      for (const c of nodes) this.place(c, false);
      const ledger = this.ledgers.get(list[0]!.node);
      rest.sort((a, b) => compare(this.endpointRank(a, ledger), this.endpointRank(b, ledger)));
      for (const c of rest) this.place(c, false);
    }
    this.clearRoom();
  }

  /** A put from a watch: an update replaces what the key held; a new record may displace a worse-ranked one. */
  put(c: Candidate): void {
    const old = this.held.get(c.key);
    if (old) this.release(old, true);
    else this.unwait(c.key);
    this.place(c, true);
    // An update that no longer fits leaves its node holding nothing, perhaps.
    const l = this.ledgers.get(c.node);
    if (old && l) this.maybeFreeSlot(l);
  }

  /** A delete (or a value that no longer fits): whatever the key held or waited with is gone. */
  delete(key: string): void {
    if (this.unwait(key)) return;
    const old = this.held.get(key);
    if (old) this.release(old);
  }

  /**
   * Admits waiting records that the room which appeared since the last
   * call can take, best rank first, while they fit; none displaces another
   * here. Returns true when anything was admitted.
   */
  reconsider(): boolean {
    let admitted = false;
    const take = (keys: Iterable<string>, rank: (c: Candidate) => Rank, room: () => number) => {
      for (const c of best([...keys].map((k) => this.waiting.get(k)!.c), rank, room)) {
        const w = this.waiting.get(c.key);
        if (!w) continue;
        const blocked = this.blocker(c);
        if (blocked) {
          // Still waiting, now for what blocks it: filed where that room's appearance will find it.
          this.refile(c.key, w, blocked);
          continue;
        }
        this.unwait(c.key);
        this.place(c, false);
        admitted = true;
      }
    };
    if (this.roomSlot && this.waitingNodes.size > 0) {
      take(this.waitingNodes, (c) => this.nodeRankOf(c.node, [c as NodeCandidate]), () => this.caps.maxNodes - this.slots);
    }
    // Nodes admitted above come in with their waiting instances (placeNode marks their room).
    for (const node of [...this.roomNodes]) {
      const keys = this.waitingByNode.get(node);
      const l = this.ledgers.get(node);
      if (!keys || !l?.slot) continue;
      take(keys, (c) => (c.kind === 'node' ? [0] : [1, ...this.endpointRank(c, l)]), () => Number.MAX_SAFE_INTEGER);
    }
    if (this.roomEndpoint && this.waitingForEndpoints.size > 0) {
      take(this.waitingForEndpoints, (c) => [...(this.ledgers.get(c.node)?.rank ?? []), ...this.endpointRank(c as Endpoint, this.ledgers.get(c.node))], () => this.caps.maxEndpoints - this.endpoints);
    }
    this.clearRoom();
    return admitted;
  }

  /** Caps changed (a test, a reload): applies from the next decision on. */
  setCaps(caps: AdmissionCaps): void {
    this.caps = caps;
  }

  // --- internals ---

  private ledger(node: string): Ledger {
    let l = this.ledgers.get(node);
    if (!l) this.ledgers.set(node, (l = { node, slot: false, records: {}, budgets: { v1: budget(), v2: budget() }, rank: this.nodeRankOf(node, []) }));
    return l;
  }

  /**
   * A node's rank from its records: this daemon's own node first, then live
   * (a lease) before not, then the oldest create revision, then the name.
   */
  private nodeRankOf(node: string, records: readonly NodeCandidate[]): Rank {
    if (node === this.self) return [0, 0, 0, ''];
    if (records.length === 0) return [1, 1, Number.MAX_SAFE_INTEGER, node];
    const live = records.some((r) => r.lease !== undefined);
    const created = Math.min(...records.map((r) => r.createRevision));
    return [1, live ? 0 : 1, created, node];
  }

  private rerank(l: Ledger): void {
    const records = [l.records.v1, l.records.v2].filter((r): r is NodeCandidate => r !== undefined);
    const rank = this.nodeRankOf(l.node, records);
    if (compare(rank, l.rank) !== 0) {
      l.rank = rank;
      this.worstSlot = undefined;
      this.worstEndpoint = undefined;
    }
  }

  /** Within a node: its record's lease first, then the oldest, then the key. */
  private endpointRank(c: Endpoint, ledger: Ledger | undefined): Rank {
    const owner = ledger?.records[c.layout]?.lease;
    return [c.lease !== undefined && c.lease === owner ? 0 : 1, c.createRevision, c.key];
  }

  /** The answer addresses an instance adds: its addresses (its own, else its node's for wildcard binds) times its services. */
  private addressCost(c: Endpoint, ledger: Ledger): number {
    const n = ledger.records[c.layout]?.record;
    const own = c.kind === 'instance' && c.record.address !== undefined;
    const addresses = own ? 1 : n ? endpointAddresses(c.record, n).length : c.record.bind.length;
    return Math.max(1, addresses) * c.record.services.length;
  }

  /** What keeps `c` out now, without displacing anything (reconsider's test); null when it fits. */
  private blocker(c: Candidate): RefusalKind | 'no_node' | null {
    const l = this.ledgers.get(c.node);
    if (c.kind === 'node') return l?.slot || this.slots < this.caps.maxNodes ? null : 'node';
    if (!l?.slot) return 'no_node';
    const b = l.budgets[c.layout];
    if (b.held.size >= this.caps.maxNodeInstances) return 'node_instances';
    if (b.bytes + c.bytes > this.caps.maxNodeBytes) return 'node_bytes';
    if (b.addresses + this.addressCost(c, l) > this.caps.maxNodeAddresses) return 'node_addresses';
    return this.endpoints < this.caps.maxEndpoints ? null : 'endpoint';
  }

  /** A waiting record's reason changed: it moves to the index that room for that reason is looked up in. */
  private refile(key: string, w: { c: Candidate; kind: RefusalKind | 'no_node' }, kind: RefusalKind | 'no_node'): void {
    if (w.kind === kind) return;
    w.kind = kind;
    if (kind === 'endpoint') this.waitingForEndpoints.add(key);
    else this.waitingForEndpoints.delete(key);
  }

  /** Admits `c`, displacing worse-ranked records when `displace`; else it waits. */
  private place(c: Candidate, displace: boolean): void {
    if (c.kind === 'node') this.placeNode(c, displace);
    else this.placeEndpoint(c, displace);
  }

  private placeNode(c: NodeCandidate, displace: boolean): void {
    const l = this.ledger(c.node);
    if (!l.slot) {
      if (this.slots >= this.caps.maxNodes) {
        const worst = displace ? this.worstSlotted() : null;
        if (!worst || compare(this.nodeRankOf(c.node, [c]), worst.rank) >= 0) return this.refuse(c, 'node', this.caps.maxNodes);
        this.evictNode(worst);
      }
      l.slot = true;
      this.slots++;
      this.worstSlot = undefined;
    }
    l.records[c.layout] = c;
    this.held.set(c.key, c);
    this.sink.add(c);
    this.rerank(l);
    // The record's addresses and lease decide what its instances cost and how they rank.
    this.recount(l, c.layout);
    this.roomNodes.add(c.node); // its waiting instances may come in
  }

  private placeEndpoint(c: Endpoint, displace: boolean): void {
    const l = this.ledgers.get(c.node);
    // Without a place for its node (no record yet, or the node refused), an instance waits for its node.
    if (!l?.slot) return this.wait(c, 'no_node');
    const b = l.budgets[c.layout];
    const cost = this.addressCost(c, l);
    const caps = this.caps;
    // What one record alone cannot fit is refused without displacing anything.
    if (c.bytes > caps.maxNodeBytes) return this.refuse(c, 'node_bytes', caps.maxNodeBytes);
    if (cost > caps.maxNodeAddresses) return this.refuse(c, 'node_addresses', caps.maxNodeAddresses);
    const rank = this.endpointRank(c, l);
    for (;;) {
      const over: RefusalKind | null =
        b.held.size + 1 > caps.maxNodeInstances ? 'node_instances' : b.bytes + c.bytes > caps.maxNodeBytes ? 'node_bytes' : b.addresses + cost > caps.maxNodeAddresses ? 'node_addresses' : null;
      if (!over) break;
      const worst = displace ? this.worstIn(l, b) : null;
      if (!worst || compare(rank, this.endpointRank(worst, l)) >= 0) {
        return this.refuse(c, over, over === 'node_instances' ? caps.maxNodeInstances : over === 'node_bytes' ? caps.maxNodeBytes : caps.maxNodeAddresses);
      }
      this.displace(worst, over, over === 'node_instances' ? caps.maxNodeInstances : over === 'node_bytes' ? caps.maxNodeBytes : caps.maxNodeAddresses);
    }
    if (this.endpoints >= caps.maxEndpoints) {
      const worst = displace ? this.worstHeldEndpoint() : null;
      const mine: Rank = [...l.rank, ...rank];
      if (!worst || compare(mine, [...worst.ledger.rank, ...this.endpointRank(worst.c, worst.ledger)]) >= 0) return this.refuse(c, 'endpoint', caps.maxEndpoints);
      this.displace(worst.c, 'endpoint', caps.maxEndpoints);
    }
    b.held.set(c.key, { c, addresses: cost });
    b.bytes += c.bytes;
    b.addresses += cost;
    b.worst = undefined;
    this.endpoints++;
    this.worstEndpoint = undefined;
    this.held.set(c.key, c);
    this.sink.add(c);
  }

  /**
   * A held record goes: out of the index, its room counted free. For an
   * update (`replacing`) the node keeps its place and its instances are
   * counted again only once the new value is in.
   */
  private release(c: Candidate, replacing = false): void {
    const l = this.ledgers.get(c.node)!;
    this.held.delete(c.key);
    this.sink.remove(c);
    this.roomNodes.add(c.node);
    if (c.kind === 'node') {
      if (l.records[c.layout]?.key === c.key) l.records[c.layout] = undefined;
      if (replacing) return;
      this.rerank(l);
      this.recount(l, c.layout);
    } else {
      const b = l.budgets[c.layout];
      const e = b.held.get(c.key);
      if (e) {
        b.held.delete(c.key);
        b.bytes -= c.bytes;
        b.addresses -= e.addresses;
        b.worst = undefined;
        this.endpoints--;
        this.worstEndpoint = undefined;
        this.roomEndpoint = true;
      }
    }
    if (!replacing) this.maybeFreeSlot(l);
  }

  /** A node that holds nothing any more gives its place back. */
  private maybeFreeSlot(l: Ledger): void {
    if (l.records.v1 || l.records.v2 || l.budgets.v1.held.size || l.budgets.v2.held.size) return;
    if (l.slot) {
      l.slot = false;
      this.slots--;
      this.worstSlot = undefined;
      this.worstEndpoint = undefined;
      this.roomSlot = true;
    }
    if (!this.waitingByNode.has(l.node)) this.ledgers.delete(l.node);
  }

  /** A held record makes way for a better-ranked one: it waits. */
  private displace(c: Candidate, kind: RefusalKind, cap: number): void {
    this.release(c);
    this.refuse(c, kind, cap);
  }

  /** A whole node makes way for a better-ranked node: every record it holds waits. */
  private evictNode(l: Ledger): void {
    const all: Candidate[] = [...l.budgets.v1.held.values(), ...l.budgets.v2.held.values()].map((e) => e.c);
    for (const r of [l.records.v1, l.records.v2]) if (r) all.push(r);
    for (const c of all) this.displace(c, 'node', this.caps.maxNodes);
  }

  /**
   * The node record of `layout` changed (or went): what each of its
   * instances costs is counted again, and when the node no longer fits its
   * address cap its worst-ranked instances wait.
   */
  private recount(l: Ledger, layout: 'v1' | 'v2'): void {
    const b = l.budgets[layout];
    if (b.held.size === 0) return;
    let total = 0;
    for (const e of b.held.values()) {
      e.addresses = this.addressCost(e.c, l);
      total += e.addresses;
    }
    b.addresses = total;
    b.worst = undefined;
    while (b.addresses > this.caps.maxNodeAddresses) {
      const worst = this.worstIn(l, b);
      if (!worst) break;
      this.displace(worst, 'node_addresses', this.caps.maxNodeAddresses);
    }
  }

  private worstSlotted(): Ledger | null {
    if (this.worstSlot === undefined) {
      let worst: Ledger | null = null;
      for (const l of this.ledgers.values()) if (l.slot && l.node !== this.self && (!worst || compare(l.rank, worst.rank) > 0)) worst = l;
      this.worstSlot = worst;
    }
    return this.worstSlot;
  }

  private worstIn(l: Ledger, b: Budget): Endpoint | null {
    if (b.worst === undefined) {
      let worst: Endpoint | null = null;
      let worstRank: Rank | null = null;
      for (const { c } of b.held.values()) {
        const r = this.endpointRank(c, l);
        if (!worstRank || compare(r, worstRank) > 0) {
          worst = c;
          worstRank = r;
        }
      }
      b.worst = worst;
    }
    return b.worst;
  }

  private worstHeldEndpoint(): { ledger: Ledger; c: Endpoint } | null {
    if (this.worstEndpoint === undefined) {
      let node: Ledger | null = null;
      for (const l of this.ledgers.values()) {
        if (l.budgets.v1.held.size + l.budgets.v2.held.size === 0) continue;
        if (!node || compare(l.rank, node.rank) > 0) node = l;
      }
      let found: { ledger: Ledger; c: Endpoint } | null = null;
      if (node) {
        const a = this.worstIn(node, node.budgets.v1);
        const b = this.worstIn(node, node.budgets.v2);
        const c = !a ? b : !b ? a : compare(this.endpointRank(a, node), this.endpointRank(b, node)) >= 0 ? a : b;
        if (c) found = { ledger: node, c };
      }
      this.worstEndpoint = found;
    }
    return this.worstEndpoint;
  }

  private refuse(c: Candidate, kind: RefusalKind, cap: number): void {
    this.sink.refused(c, kind, cap);
    this.wait(c, kind);
  }

  /** Keeps `c` until room appears, within the waiting room's bounds; past them it is lost until the next list. */
  private wait(c: Candidate, kind: RefusalKind | 'no_node'): void {
    let mine = this.waitingByNode.get(c.node);
    const full = this.waiting.size >= WAITING_MAX || this.waitingBytes + c.bytes > WAITING_MAX_BYTES || (mine?.size ?? 0) >= WAITING_MAX_PER_NODE;
    if (full) {
      if (kind === 'node') this.lostNodes = true;
      if (kind === 'endpoint') this.lostEndpoints = true;
      return;
    }
    this.waiting.set(c.key, { c, kind });
    this.waitingBytes += c.bytes;
    if (!mine) this.waitingByNode.set(c.node, (mine = new Set()));
    mine.add(c.key);
    if (c.kind === 'node') this.waitingNodes.add(c.key);
    if (kind === 'endpoint') this.waitingForEndpoints.add(c.key);
  }

  private unwait(key: string): boolean {
    const w = this.waiting.get(key);
    if (!w) return false;
    this.waiting.delete(key);
    this.waitingBytes -= w.c.bytes;
    this.waitingNodes.delete(key);
    this.waitingForEndpoints.delete(key);
    const mine = this.waitingByNode.get(w.c.node);
    mine?.delete(key);
    if (mine?.size === 0) {
      this.waitingByNode.delete(w.c.node);
      const l = this.ledgers.get(w.c.node);
      if (l && !l.slot) this.ledgers.delete(w.c.node);
    }
    return true;
  }
}

/**
 * The best-ranked of `cs`, best first, while `room()` says more are
 * wanted: a linear pass per pick for the first few (a place freed now and
 * then costs O(n), not a sort), one sort of the rest when many are wanted
 * or the first picks did not fit.
 */
function* best(cs: Candidate[], rank: (c: Candidate) => Rank, room: () => number): Generator<Candidate> {
  const ranked = cs.map((c) => ({ c, r: rank(c) }));
  for (let picks = 0; picks < 8 && room() * 8 < ranked.length; picks++) {
    if (ranked.length === 0 || room() <= 0) return;
    let at = 0;
    for (let i = 1; i < ranked.length; i++) if (compare(ranked[i]!.r, ranked[at]!.r) < 0) at = i;
    const [pick] = ranked.splice(at, 1);
    yield pick!.c;
  }
  ranked.sort((a, b) => compare(a.r, b.r));
  for (const { c } of ranked) {
    if (room() <= 0) return;
    yield c;
  }
}
