import { isIP } from 'node:net';
import { CanonportError, ErrorCodes } from '../errors.js';

/** The daemon's default gRPC port: 13655 is the canonical port of "canonport". */
export const DEFAULT_GRPC_PORT = 13655;
/** Where clients find the daemon, and where it listens for gRPC, by default. */
export const DEFAULT_DAEMON_ADDRESS = `127.0.0.1:${DEFAULT_GRPC_PORT}`;

/** The daemon a client asks when told nothing: CANONPORT_GRPC, else the default. */
export function defaultDaemonAddress(): string {
  return process.env.CANONPORT_GRPC || DEFAULT_DAEMON_ADDRESS;
}

export interface HostPort {
  host: string;
  port: number;
}

/** A parse that says why it failed instead of throwing: settings name the flag, env var or key themselves. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * Parses `ADDR:PORT`, `[V6]:PORT`, or (when defaultPort is given) a bare
 * address. IPv6 must be bracketed when a port follows. `localhost` means 127.0.0.1.
 */
export function tryParseHostPort(text: string, defaultPort?: number): Parsed<HostPort> {
  const s = text.trim();
  let host: string;
  let portText: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(s);
  if (bracket) {
    host = bracket[1]!;
    portText = bracket[2];
  } else if (isIP(s) === 6) {
    host = s;
  } else {
    const i = s.lastIndexOf(':');
    if (i === -1) host = s;
    else {
      host = s.slice(0, i);
      portText = s.slice(i + 1);
    }
  }
  const want = defaultPort === undefined ? 'ADDR:PORT or [V6]:PORT' : 'ADDR, ADDR:PORT or [V6]:PORT';
  if (isIP(host) === 0 && host !== 'localhost') return { ok: false, reason: `"${text}" is not an IP address (want ${want})` };
  if (host === 'localhost') host = '127.0.0.1';
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return { ok: false, reason: `"${text}" has no port (want ${want})` };
    port = defaultPort;
  } else {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65535) return { ok: false, reason: `"${text}": port "${portText}" is not 0–65535` };
  }
  return { ok: true, value: { host, port } };
}

/** tryParseHostPort that throws CP_CONFIG_INVALID, the message starting with `what`. */
export function parseHostPort(text: string, what: string, defaultPort?: number): HostPort {
  const r = tryParseHostPort(text, defaultPort);
  if (!r.ok) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${what}: ${r.reason}`);
  return r.value;
}

export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
