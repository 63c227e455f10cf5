import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from './tools.js';

/**
 * Certificates made by the test with openssl (EC P-256, quick to make):
 * a CA, server certificates for given IP addresses and names, client
 * certificates. Every file is PEM under `dir`.
 */

export interface TestCa {
  name: string;
  /** The CA certificate (what a client or server trusts). */
  cert: string;
  key: string;
  /** A leaf certificate signed by this CA; `usage` picks the extended key usage. */
  leaf(name: string, opts?: { ips?: string[]; dns?: string[]; usage?: 'server' | 'client'; days?: number; cn?: string }): TestLeaf;
}

export interface TestLeaf {
  cert: string;
  key: string;
}

const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });

/** A new CA in `dir` (created if needed); its files are `<name>-ca.pem` and `<name>-ca.key`. */
export function makeCa(dir: string, name = 'test'): TestCa {
  requireTool('openssl', 'openssl');
  mkdirSync(dir, { recursive: true });
  const f = (file: string) => join(dir, file);
  const cert = f(`${name}-ca.pem`);
  const key = f(`${name}-ca.key`);
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=canonport ${name} CA`, '-keyout', key, '-out', cert);
  return {
    name,
    cert,
    key,
    leaf(leafName, opts = {}) {
      const usage = opts.usage ?? 'server';
      const sans = [...(opts.dns ?? (usage === 'server' ? ['localhost'] : [])).map((d) => `DNS:${d}`), ...(opts.ips ?? (usage === 'server' ? ['127.0.0.1', '::1'] : [])).map((i) => `IP:${i}`)];
      const ext = [sans.length > 0 ? `subjectAltName=${sans.join(',')}` : '', `extendedKeyUsage=${usage === 'server' ? 'serverAuth' : 'clientAuth'}`].filter(Boolean).join('\n');
      const base = f(`${name}-${leafName}`);
      writeFileSync(`${base}.ext`, `${ext}\n`);
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${opts.cn ?? leafName}`, '-keyout', `${base}.key`, '-out', `${base}.csr`);
      ssl('x509', '-req', '-in', `${base}.csr`, '-CA', cert, '-CAkey', key, '-CAcreateserial', '-days', String(opts.days ?? 2), '-extfile', `${base}.ext`, '-out', `${base}.pem`);
      return { cert: `${base}.pem`, key: `${base}.key` };
    },
  };
}
