import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import type { HostPort } from '../config/address.js';
import { optRecord } from './message.js';
import { HEADER_SIZE, TYPE, messageRecords, questionBytes, readU16, sameQuestion } from './wire.js';

/** Our EDNS buffer size towards upstreams and clients (DNS Flag Day 2020). */
export const EDNS_SIZE = 1232;

export type UpstreamResult =
  | { kind: 'answer'; message: Buffer; rcode: number; transport: 'udp' | 'tcp' }
  | { kind: 'timeout' }
  | { kind: 'error'; reason: string };

export interface UpstreamQuery {
  /** Question section bytes: name, type, class. */
  question: Buffer;
  dnssecOk: boolean;
  checkingDisabled: boolean;
}

/**
 * Called for every reply that fails RFC 5452 matching: wrong source, ID or
 * question, or the question right but not spelled with our letter case
 * (`case`: DNS 0x20, see matchReply).
 */
export type MismatchHook = (upstream: HostPort, why: 'source' | 'id' | 'question' | 'case') => void;

/**
 * Talks to one upstream for one query. Each UDP query gets a fresh socket
 * (a random source port from the kernel) and a random ID from a CSPRNG; a
 * reply counts only if it comes from the upstream's address and port and
 * carries our ID and our question (RFC 5452 §9.1). Anything else is
 * dropped and the wait goes on, so a spoofed packet cannot end the query.
 * A truncated reply is retried over TCP.
 */
export class UpstreamClient {
  /** @param timeoutMs read per query, so a reload applies to the next one. */
  constructor(
    private readonly timeoutMs: () => number,
    private readonly onMismatch: MismatchHook = () => {},
  ) {}

  async query(up: HostPort, q: UpstreamQuery): Promise<UpstreamResult> {
    const id = randomInt(0x10000);
    const packet = buildQuery(id, q);
    const udp = await this.udp(up, id, packet, q.question);
    if (udp.kind === 'answer' && udp.message[2]! & 0x02) return this.tcp(up, id, packet, q.question);
    return udp;
  }

  private udp(up: HostPort, id: number, packet: Buffer, question: Buffer): Promise<UpstreamResult> {
    return settleOnce(this.timeoutMs(), (finish) => {
      const sock = dgram.createSocket(net.isIPv6(up.host) ? 'udp6' : 'udp4');
      sock.on('error', (err) => finish({ kind: 'error', reason: err.message }));
      sock.on('message', (msg, rinfo) => {
        if (!sameHost(rinfo.address, up.host) || rinfo.port !== up.port) return this.onMismatch(up, 'source');
        const why = matchReply(msg, id, question);
        if (why) return this.onMismatch(up, why);
        finish(answer(msg, question.length, 'udp'));
      });
      sock.send(packet, up.port, up.host, (err) => {
        if (err) finish({ kind: 'error', reason: err.message });
      });
      return () => sock.close();
    });
  }

  private tcp(up: HostPort, id: number, packet: Buffer, question: Buffer): Promise<UpstreamResult> {
    return settleOnce(this.timeoutMs(), (finish) => {
      let buf = Buffer.alloc(0);
      const sock = net.connect({ host: up.host, port: up.port });
      sock.on('error', (err) => finish({ kind: 'error', reason: err.message }));
      sock.on('close', () => finish({ kind: 'error', reason: 'connection closed before a reply' }));
      sock.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(packet.length);
        sock.write(Buffer.concat([len, packet]));
      });
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 2 && buf.length >= 2 + readU16(buf, 0)) {
          const msg = buf.subarray(2, 2 + readU16(buf, 0));
          buf = buf.subarray(2 + msg.length);
          const why = matchReply(msg, id, question);
          if (why) {
            this.onMismatch(up, why);
            continue;
          }
          return finish(answer(Buffer.from(msg), question.length, 'tcp'));
        }
      });
      return () => sock.destroy();
    });
  }
}

/**
 * One upstream exchange that settles exactly once: with the first result
 * `start` reports, or as a timeout. The socket `start` opened is released
 * either way (`start` returns how).
 *
 * The timeout is decided after the event loop has read what already came
 * in: each turn of the loop runs expired timers before it reads sockets, so
 * when the loop was busy past the deadline (a loaded host, a long burst),
 * a reply that arrived in time would lose to its own timer and the client
 * get SERVFAIL. setImmediate runs right after that turn's reads.
 */
function settleOnce(timeoutMs: number, start: (finish: (r: UpstreamResult) => void) => () => void): Promise<UpstreamResult> {
  return new Promise((resolve) => {
    let done = false;
    let release: (() => void) | null = null;
    const finish = (r: UpstreamResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      release?.();
      resolve(r);
    };
    const timer = setTimeout(() => setImmediate(() => finish({ kind: 'timeout' })), timeoutMs);
    release = start(finish);
    if (done) release(); // settled before start returned
  });
}

function buildQuery(id: number, q: UpstreamQuery): Buffer {
  const out = Buffer.alloc(HEADER_SIZE + q.question.length + 11);
  out.writeUInt16BE(id, 0);
  out.writeUInt16BE(0x0100 | (q.checkingDisabled ? 0x0010 : 0), 2); // RD, CD
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(1, 10);
  q.question.copy(out, HEADER_SIZE);
  optRecord(EDNS_SIZE, q.dnssecOk).copy(out, HEADER_SIZE + q.question.length);
  return out;
}

/**
 * Why a reply does not answer our query, or null when it does. The question
 * must come back exactly as we spelled it, letter case included: the
 * forwarder sends it in a random mix of cases (DNS 0x20, forwarder.ts
 * mixCase), which an off-path spoofer must guess on top of the ID and the
 * port; accepting any case would throw that entropy away (issue 21,
 * finding 11). Upstreams echo the question as asked (RFC 1035 §7.3 has
 * them copy it); one that does not is treated as not answering.
 */
function matchReply(msg: Buffer, id: number, question: Buffer): 'id' | 'question' | 'case' | null {
  if (msg.length < HEADER_SIZE || readU16(msg, 0) !== id || !(msg[2]! & 0x80)) return 'id';
  const q = questionBytes(msg);
  if (!q || !sameQuestion(q, question)) return 'question';
  return q.equals(question) ? null : 'case';
}

/** A matched reply (its question is `questionLength` octets, as ours), without the upstream's OPT. */
function answer(msg: Buffer, questionLength: number, transport: 'udp' | 'tcp'): UpstreamResult {
  const stripped = stripOpt(msg, questionLength);
  if (!stripped) return { kind: 'error', reason: 'malformed reply' };
  return { kind: 'answer', message: stripped, rcode: msg[3]! & 0x0f, transport };
}

/**
 * Removes the upstream's OPT record: the client gets our own, sized for it.
 * Returns null when the reply's records do not parse (treated as a failure).
 */
function stripOpt(msg: Buffer, questionLength: number): Buffer | null {
  const records = messageRecords(msg, questionLength);
  if (!records) return null;
  const opt = records.find((r) => r.type === TYPE.OPT && r.section === 2);
  if (!opt) return Buffer.from(msg);
  const out = Buffer.concat([msg.subarray(0, opt.start), msg.subarray(opt.end)]);
  out.writeUInt16BE(readU16(msg, 10) - 1, 10);
  return out;
}

function sameHost(a: string, b: string): boolean {
  return a === b || a === `::ffff:${b}` || b === `::ffff:${a}`;
}
