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

/**
 * Parses `ADDR:PORT`, `[V6]:PORT`, or (when defaultPort is given) a bare
 * address. IPv6 must be bracketed when a port follows. Throws CP_CONFIG_INVALID.
 */
export function parseHostPort(text: string, what: string, defaultPort?: number): HostPort {
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
  if (isIP(host) === 0 && host !== 'localhost') {
    throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${what}: "${text}" is not an IP address (want ADDR:PORT or [V6]:PORT)`);
  }
  if (host === 'localhost') host = '127.0.0.1';
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${what}: "${text}" has no port (want ADDR:PORT)`);
    port = defaultPort;
  } else {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || port > 65535) throw new CanonportError(ErrorCodes.CONFIG_INVALID, `${what}: port "${portText}" is not 0–65535`);
  }
  return { host, port };
}

export function formatHostPort(hp: HostPort): string {
  return isIP(hp.host) === 6 ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
