/**
 * Names people recognise for an observed listener (issue 22), and where
 * each comes from. A port always has its canonical names (the registry's,
 * or the base32 prefix it decodes to: `db0` for 14688), which answer DNS,
 * gRPC and xDS as they always did; these are something else: the names a
 * person would call the service by, or none. Sources, best first:
 *
 *   registry  the registry lists the port (a pin, a block role, a versioned
 *             port, a listed base32 service): its names, and only those;
 *   query     a client asked for the name (`db.<zone>`, `_db._tcp.<zone>`,
 *             a gRPC Resolve) on any host while some host listened on its
 *             canonical port (discovery/asked-names.ts);
 *   process   the listening process's own name (its systemd unit, its
 *             executable), where the daemon may read it and that name's
 *             canonical port is the port it listens on
 *             (inventory/process-names.ts).
 *
 * A listener none of them names is unnamed: it still answers its canonical
 * names, but browsing (DNS-SD) and Prometheus discovery leave it out unless
 * asked to (`--sd-unnamed`), and `fleet` lists it apart. A name from a query
 * or a process never moves a port: it is only ever a name whose canonical
 * port *is* the listener's.
 */

export const NAME_SOURCES = ['registry', 'query', 'process'] as const;
export type NameSource = (typeof NAME_SOURCES)[number];
/** A listener's source of names as labels and fleets show it: the best one, or `none`. */
export type NameSourceOrNone = NameSource | 'none';

/** One name a listener is known by, and where it comes from. */
export interface ServiceName {
  readonly name: string;
  readonly source: NameSource;
}

/** What each source says about one listener. */
export interface NameInputs {
  /** The registry's names of the port; empty when the registry does not list it. */
  registry: readonly string[];
  /** Names clients asked for whose canonical port this is. */
  query: readonly string[];
  /** Names of the listening process whose canonical port this is. */
  process: readonly string[];
}

/** Names shown for one listener at most (a record's `names` holds 32; one port rarely has two). */
export const MAX_NAMES_PER_LISTENER = 8;

/**
 * A listener's names, in the order the sources rank: the registry's alone
 * when it lists the port (it is the authority; nothing learned adds to it),
 * else the names clients asked for, then the process's own. A name two
 * sources give is listed once, with the better source. Two different names
 * (a collision: `cat` and `caterpillar` both on 13661) are both kept, as
 * `check` reports such pairs.
 */
export function nameListener(inputs: NameInputs): ServiceName[] {
  if (inputs.registry.length > 0) return [...new Set(inputs.registry)].map((name) => ({ name, source: 'registry' as const }));
  const out: ServiceName[] = [];
  const seen = new Set<string>();
  for (const [source, names] of [['query', inputs.query], ['process', inputs.process]] as const) {
    for (const name of [...names].sort()) {
      if (seen.has(name) || out.length >= MAX_NAMES_PER_LISTENER) continue;
      seen.add(name);
      out.push({ name, source });
    }
  }
  return out;
}

/** The best source among a listener's names, `none` for an unnamed one. */
export function nameSourceOf(names: readonly ServiceName[] | undefined): NameSourceOrNone {
  return names?.[0]?.source ?? 'none';
}

/**
 * Whether `name` may be a DNS-SD service type (RFC 6763 §7, which takes
 * RFC 6335 §5.1's service names): 1–15 characters of letters, digits and
 * hyphens, at least one letter, no hyphen at either end and no two in a
 * row. A longer or odd registry name still answers SRV; it is just not
 * offered as a type to browse.
 */
export function isDnsSdServiceName(name: string): boolean {
  return /^[a-z0-9](?:[a-z0-9]|-(?!-)){0,14}$/i.test(name) && !name.endsWith('-') && /[a-z]/i.test(name);
}
