import { normaliseName } from './names.js';
import { isIP } from 'node:net';
import { tryParseEtcdUrl } from './etcd-url.js';
import { formatHostPort, tryParseHostPort, type HostPort } from './address.js';
import { tryParseCidr, type Cidr } from './cidr.js';

/**
 * The kinds of value a daemon setting can hold: how a flag's or an env
 * var's text becomes a value, how any value (text, or the registry file's
 * YAML) is checked, and how it is shown. One kind serves every setting of
 * its shape, so the same value gets the same check and the same error
 * wherever it was given. A reason names the value and what is accepted; the
 * caller prefixes the flag, variable or file key.
 */

/** What print-config and the docs show for a value. */
export type Shown = string | number | boolean | string[] | null;

/** A checked value: the raw form kept in the registry file's data, and the value the daemon uses. */
export type Checked<Raw, T> = { ok: true; raw: Raw; value: T } | { ok: false; reason: string; index?: number | undefined };

/** What a caller may hand in for one setting: text (flags, env), or a typed value (the file, tests). */
export type SettingInput = string | number | boolean | readonly string[] | null;

export interface Kind<Raw, T> {
  /** The accepted form, for help and the docs: `ADDR:PORT`, `integer 10–30000`. */
  readonly accepts: string;
  /** A list: the flag repeats, and env text holds several values separated by commas or spaces. */
  readonly list: boolean;
  /** A flag or env value (text, or repeated texts) → a candidate for check(); not yet checked. */
  fromInput(input: SettingInput): unknown;
  /** Checks a candidate; a list's failure carries the bad element's index. */
  check(input: unknown): Checked<Raw, T>;
  show(value: T): Shown;
}

/** A value as an error message quotes it. */
export function quote(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : v === undefined ? 'nothing' : JSON.stringify(v) ?? String(v);
}

const text = (input: SettingInput): unknown => (typeof input === 'string' ? input.trim() : input);

function numeric(input: SettingInput): unknown {
  if (typeof input !== 'string') return input;
  const s = input.trim();
  const n = Number(s);
  return s !== '' && Number.isFinite(n) ? n : input;
}

/** `ADDR:PORT` (or a bare address, when defaultPort is given); port 0 only where allowZero (listen: any free port). */
export function hostPort(opts: { defaultPort?: number; allowZero?: boolean } = {}): Kind<string, HostPort> {
  const accepts = opts.defaultPort === undefined ? 'ADDR:PORT' : 'ADDR[:PORT]';
  return {
    accepts,
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input !== 'string') return { ok: false, reason: `${quote(input)} is not an address such as 127.0.0.1:53 (want ${accepts})` };
      const r = tryParseHostPort(input, opts.defaultPort);
      if (!r.ok) return r;
      if (r.value.port === 0 && !opts.allowZero) return { ok: false, reason: `${quote(input)}: port 0 is not a port to send to (want 1–65535)` };
      return { ok: true, raw: input.trim(), value: r.value };
    },
    show: formatHostPort,
  };
}

/** `ADDR/PREFIX` or a bare address. */
export function cidr(): Kind<string, Cidr> {
  return {
    accepts: 'CIDR',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input !== 'string') return { ok: false, reason: `${quote(input)} is not an address or CIDR such as 10.0.0.0/8` };
      const r = tryParseCidr(input);
      return r.ok ? { ok: true, raw: input.trim(), value: r.value } : r;
    },
    show: (c) => c.text,
  };
}

/** A DNS zone, checked as every name is (normaliseName): lowercase, no trailing dot. */
export function zone(): Kind<string, string> {
  return {
    accepts: 'ZONE',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input !== 'string') return { ok: false, reason: `${quote(input)} is not a DNS name such as cluster-1.example.com` };
      try {
        const name = normaliseName(input.trim());
        return { ok: true, raw: name, value: name };
      } catch (err) {
        return { ok: false, reason: `${quote(input)} is not a DNS name such as cluster-1.example.com (${(err as Error).message})` };
      }
    },
    show: (z) => z,
  };
}

/** A whole number in min–max. */
export function int(min: number, max: number): Kind<number, number> {
  return {
    accepts: `integer ${min}–${max}`,
    list: false,
    fromInput: numeric,
    check(input) {
      if (typeof input === 'number' && Number.isInteger(input) && input >= min && input <= max) return { ok: true, raw: input, value: input };
      return { ok: false, reason: `${quote(input)} is not an integer in ${min}–${max}` };
    },
    show: (n) => n,
  };
}

/** Any number in min–max (fractions too). */
export function decimal(min: number, max: number): Kind<number, number> {
  return {
    accepts: `number ${min}–${max}`,
    list: false,
    fromInput: numeric,
    check(input) {
      if (typeof input === 'number' && Number.isFinite(input) && input >= min && input <= max) return { ok: true, raw: input, value: input };
      return { ok: false, reason: `${quote(input)} is not a number in ${min}–${max}` };
    },
    show: (n) => n,
  };
}

/** One of a fixed set of words. `noun` names the set in errors ("log level "x" is not one of …"). */
export function oneOf<const V extends string>(values: readonly V[], noun?: string): Kind<V, V> {
  return {
    accepts: values.join('|'),
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input === 'string' && (values as readonly string[]).includes(input)) return { ok: true, raw: input as V, value: input as V };
      return { ok: false, reason: `${noun ? `${noun} ` : ''}${quote(input)} is not one of ${values.join(', ')}` };
    },
    show: (v) => v,
  };
}

const TRUE = ['true', '1', 'yes', 'on'];
const FALSE = ['false', '0', 'no', 'off'];

/** true or false; as text also 1/0, yes/no, on/off. A flag of this kind takes no value. */
export function boolean(): Kind<boolean, boolean> {
  return {
    accepts: 'true|false',
    list: false,
    fromInput(input) {
      if (typeof input !== 'string') return input;
      const s = input.trim().toLowerCase();
      return TRUE.includes(s) ? true : FALSE.includes(s) ? false : input;
    },
    check(input) {
      if (typeof input === 'boolean') return { ok: true, raw: input, value: input };
      return { ok: false, reason: `${quote(input)} is not true or false (or 1/0, yes/no, on/off)` };
    },
    show: (b) => b,
  };
}

/** A file or directory path. Whether it exists is for its consumer to say (with its own error code). */
export function path(): Kind<string, string> {
  return {
    accepts: 'PATH',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input === 'string' && input.trim() !== '' && !input.includes('\0')) return { ok: true, raw: input.trim(), value: input.trim() };
      return { ok: false, reason: `${quote(input)} is not a file path` };
    },
    show: (p) => p,
  };
}

/**
 * A list of one kind. As text (env, or one flag value) the elements are
 * separated by commas or spaces; a repeated flag adds to the list. Repeats
 * are dropped when `unique` (zones), kept otherwise (order matters).
 */
export function listOf<Raw, T>(element: Kind<Raw, T>, opts: { unique?: boolean } = {}): Kind<Raw[], T[]> {
  const split = (s: string) => s.split(/[\s,]+/).filter(Boolean);
  return {
    accepts: `${element.accepts}…`,
    list: true,
    fromInput(input) {
      if (typeof input === 'string') return split(input).map((e) => element.fromInput(e));
      if (Array.isArray(input)) return input.flatMap((e: unknown) => (typeof e === 'string' ? split(e).map((x) => element.fromInput(x)) : [e]));
      return input;
    },
    check(input) {
      if (!Array.isArray(input)) return { ok: false, reason: `${quote(input)} is not a list of ${element.accepts}` };
      const raw: Raw[] = [];
      const value: T[] = [];
      const seen = new Set<string>();
      for (const [index, e] of input.entries()) {
        const r = element.check(e);
        if (!r.ok) return { ok: false, reason: r.reason, index };
        const key = JSON.stringify(element.show(r.value));
        if (opts.unique && seen.has(key)) continue;
        seen.add(key);
        raw.push(r.raw);
        value.push(r.value);
      }
      return { ok: true, raw, value };
    },
    show: (vs) => vs.map((v) => String(element.show(v))),
  };
}

/** An IPv4 or IPv6 address, no port. */
export function ipAddress(): Kind<string, string> {
  return {
    accepts: 'ADDR',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input === 'string' && isIP(input.trim()) !== 0) return { ok: true, raw: input.trim(), value: input.trim().toLowerCase() };
      return { ok: false, reason: `${quote(input)} is not an IPv4 or IPv6 address` };
    },
    show: (a) => a,
  };
}

/** One DNS label: lowercase letters, digits and `-`, 1–63 characters, not starting or ending with `-`. */
export function label(): Kind<string, string> {
  return {
    accepts: 'LABEL',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input === 'string' && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(input.trim().toLowerCase())) {
        return { ok: true, raw: input.trim(), value: input.trim().toLowerCase() };
      }
      return { ok: false, reason: `${quote(input)} is not a DNS label (letters, digits and "-", 1–63 characters, no "-" at either end)` };
    },
    show: (l) => l,
  };
}

/** `etcd://HOST:PORT[,HOST:PORT…]`: the value is the URL text, checked here, parsed again by its consumer. */
export function etcdUrl(): Kind<string, string> {
  return {
    accepts: 'etcd://HOST:PORT[,…]',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input !== 'string') return { ok: false, reason: `${quote(input)} is not an etcd:// URL` };
      const r = tryParseEtcdUrl(input);
      return r.ok ? { ok: true, raw: input.trim(), value: input.trim() } : r;
    },
    show: (u) => u,
  };
}

/** Printable text without spaces (a user name, a key prefix). */
export function word(): Kind<string, string> {
  return {
    accepts: 'TEXT',
    list: false,
    fromInput: text,
    check(input) {
      if (typeof input === 'string' && /^[\x21-\x7e]{1,256}$/.test(input.trim())) return { ok: true, raw: input.trim(), value: input.trim() };
      return { ok: false, reason: `${quote(input)} is not printable text without spaces (1–256 characters)` };
    },
    show: (w) => w,
  };
}
