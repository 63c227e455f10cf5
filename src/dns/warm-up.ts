import { HEADER_SIZE, TYPE, encodeQuestion } from './wire.js';
import { optRecord } from './message.js';

/**
 * Queries the daemon asks itself before it reports ready, so the first
 * real queries find the hot path compiled (issue 24: run at 3,000 q/s from
 * the moment a fresh daemon was ready, the first thousands of queries
 * waited on V8 compiling the path: p99 58 ms where a warm daemon gives
 * about 1 ms; traced, about 65 functions were optimized during the first
 * 2,000 real queries, and next to none after 4,000).
 *
 * Only answers the daemon gives from memory: SRV and TXT of names in each
 * served zone (both name forms), the zone apex, names that cannot exist
 * (NXDOMAIN), each with and without EDNS, never an address only the
 * upstreams know (that would send queries out). Pure: packets in memory.
 */

/** Queries asked in one round; a few milliseconds once compiled, tens of milliseconds on a slow machine before. */
export const WARM_UP_QUERIES = 3000;
/**
 * Rounds of the same queries (daemon.ts): the first encodes each answer,
 * the second finds it kept, as every later query for a name does.
 */
export const WARM_UP_ROUNDS = 2;

/** A standard query (RD, one question, optionally an OPT record as stub resolvers send it). */
function query(id: number, name: string, qtype: number, edns: boolean): Buffer {
  const header = Buffer.alloc(HEADER_SIZE);
  header.writeUInt16BE(id & 0xffff, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  if (edns) header.writeUInt16BE(1, 10);
  const parts = [header, encodeQuestion(name, qtype)];
  if (edns) parts.push(optRecord(1232, false));
  return Buffer.concat(parts);
}

/**
 * The warm-up queries for `zones`: a mix of what a resolver on a host is
 * asked, `count` in all, every name a different one (`cpwarmN…` under each
 * zone), so answers are encoded as often as they are looked up: a real
 * daemon meets thousands of names it has not answered yet.
 */
export function warmUpQueries(zones: readonly string[], count = WARM_UP_QUERIES): Buffer[] {
  const out: Buffer[] = [];
  if (zones.length === 0) return out;
  for (let i = 0; out.length < count; i++) {
    const zone = zones[i % zones.length]!;
    const edns = i % 2 === 1;
    switch (Math.floor(i / zones.length) % 6) {
      case 0:
        out.push(query(i, `_cpwarm${i}._tcp.${zone}`, TYPE.SRV, edns));
        break;
      case 1:
        out.push(query(i, `cpwarm${i}.${zone}`, TYPE.SRV, edns));
        break;
      case 2:
        out.push(query(i, `cpwarm${i}.${zone}`, TYPE.TXT, edns));
        break;
      case 3:
        out.push(query(i, `no.such.cpwarm${i}.x.${zone}`, TYPE.SRV, edns));
        break;
      case 4:
        out.push(query(i, `_cpwarm${i}._tcp.${zone}`, TYPE.SRV, !edns));
        break;
      default:
        out.push(query(i, zone, Math.floor(i / zones.length / 6) % 2 === 0 ? TYPE.SOA : TYPE.NS, edns));
    }
  }
  return out;
}
