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
  leaf(name: string, opts?: { ips?: string[]; dns?: string[]; usage?: 'server' | 'client'; days?: number; cn?: string; notBefore?: Date }): TestLeaf;
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
      if (opts.notBefore) signFrom(opts.notBefore, opts.days ?? 2, { csr: `${base}.csr`, ext: `${base}.ext`, out: `${base}.pem`, caCert: cert, caKey: key, dir: `${base}-ca` });
      else ssl('x509', '-req', '-in', `${base}.csr`, '-CA', cert, '-CAkey', key, '-CAcreateserial', '-days', String(opts.days ?? 2), '-extfile', `${base}.ext`, '-out', `${base}.pem`);
      return { cert: `${base}.pem`, key: `${base}.key` };
    },
  };
}

/**
 * Signs a CSR valid from `notBefore` (a certificate issued for later):
 * OpenSSL 3.0's `x509 -req` has no start date, `openssl ca` does, with a
 * minimal CA database of its own in `dir`.
 */
function signFrom(notBefore: Date, days: number, f: { csr: string; ext: string; out: string; caCert: string; caKey: string; dir: string }): void {
  mkdirSync(f.dir, { recursive: true });
  writeFileSync(join(f.dir, 'index.txt'), '');
  writeFileSync(join(f.dir, 'serial'), '01\n');
  const cnf = join(f.dir, 'ca.cnf');
  writeFileSync(
    cnf,
    ['[ca]', 'default_ca = c', '[c]', `database = ${f.dir}/index.txt`, `new_certs_dir = ${f.dir}`, `serial = ${f.dir}/serial`, `certificate = ${f.caCert}`, `private_key = ${f.caKey}`, 'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', ''].join('\n'),
  );
  const stamp = (d: Date) => `${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;
  ssl('ca', '-batch', '-config', cnf, '-in', f.csr, '-out', f.out, '-startdate', stamp(notBefore), '-enddate', stamp(new Date(notBefore.getTime() + days * 86_400_000)), '-extfile', f.ext);
}
