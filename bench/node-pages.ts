import { execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { launcherSettings } from '../test/helpers/launcher.js';
import { REPO, startServe } from '../test/helpers/serve-process.js';
import { stopChild } from '../test/helpers/child.js';
import { arg, runScript } from './run-script.js';

/**
 * Which parts of the node binary an idle daemon keeps resident, beside a
 * bare node with the same flags (issue 24): about 46 MB of an idle daemon's
 * ~80 MB RSS are file pages, most of them node's own binary, which no heap
 * snapshot sees. For every page of /usr/bin/node (whatever `node` is) mapped
 * in the process, /proc/PID/pagemap says whether it is resident; the page is
 * named by the binary's symbol at or before it (nm: node ships with its
 * symbols) and counted under a family: V8's optimizing compiler (TurboFan,
 * `v8::internal::compiler::`), the rest of V8, ICU's code and data,
 * OpenSSL, Node's C++ (`node::`), or the ELF section for pages no symbol
 * names (Node's built-in modules' JavaScript sources are there, in
 * .rodata). File pages are shared with every other node process and the
 * kernel can drop them under pressure; RSS counts them all the same.
 *
 *   node dist-bench/bench/node-pages.js [--settle 30] [--pid PID]
 *
 * Needs root (pagemap of another process) and nm and readelf (binutils).
 */

interface Sym {
  addr: number;
  name: string;
}

interface Binary {
  path: string;
  /** Symbols sorted by address. */
  syms: Sym[];
  /** Sections with an address: name, start, end. */
  sections: { name: string; start: number; end: number }[];
  /** The first PT_LOAD's virtual address (0 for a position-independent binary). */
  firstLoad: number;
}

export function loadBinary(path: string): Binary {
  const syms: Sym[] = [];
  // nm -C: demangled; --defined-only: what the binary holds. Big (node: ~200k symbols), read once.
  const nm = execFileSync('nm', ['-C', '--defined-only', path], { encoding: 'utf8', maxBuffer: 1 << 30 });
  for (const line of nm.split('\n')) {
    const m = /^([0-9a-f]+) \S (.*)$/.exec(line);
    if (m) syms.push({ addr: parseInt(m[1]!, 16), name: m[2]! });
  }
  syms.sort((a, b) => a.addr - b.addr);
  const sections: Binary['sections'] = [];
  for (const line of execFileSync('readelf', ['-SW', path], { encoding: 'utf8' }).split('\n')) {
    const m = /\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)/.exec(line);
    if (m && parseInt(m[2]!, 16) > 0) sections.push({ name: m[1]!, start: parseInt(m[2]!, 16), end: parseInt(m[2]!, 16) + parseInt(m[3]!, 16) });
  }
  const load = /^\s+LOAD\s+0x[0-9a-f]+\s+0x([0-9a-f]+)/m.exec(execFileSync('readelf', ['-lW', path], { encoding: 'utf8' }));
  return { path, syms, sections, firstLoad: load ? parseInt(load[1]!, 16) : 0 };
}

/** The family a symbol belongs to, for the table. */
export function familyOf(name: string): string {
  if (name.startsWith('icudt')) return 'ICU data';
  if (name.includes('v8::internal::compiler::')) return 'V8 TurboFan (optimizing compiler)';
  if (name.includes('v8::internal::wasm::')) return 'V8 WebAssembly';
  if (name.includes('v8::internal::baseline::')) return 'V8 Sparkplug';
  if (/v8::internal::(interpreter|parsing)|v8::internal::Parser/.test(name)) return 'V8 parser and interpreter';
  if (name.includes('v8::') || name.startsWith('Builtins_') || name.includes('v8_Default_embedded')) return 'V8 other (runtime, GC, builtins)';
  if (/^(uv_|uv__)/.test(name)) return 'libuv';
  if (/icu_\d+|^u[a-z]*_/.test(name)) return 'ICU code';
  if (name.startsWith('node::')) return "Node's C++ (node::)";
  if (/^(ares_|ares__)/.test(name)) return 'c-ares';
  if (/nghttp2|llhttp|ada::|simdutf|brotli|Brotli|kStaticDictionary|kBrotli|deflate|inflate|zlib/i.test(name)) return 'nghttp2, llhttp, ada, simdutf, zlib, brotli';
  if (/^(EVP_|SSL_|ssl|OPENSSL|ossl_|BN_|bn_|ecp_|X509|x509|ASN1|asn1|CRYPTO_|RSA_|EC_|ec_|aesni|sha\d|SHA|k25519|nid_objs|ERR_|OBJ_|PEM_|BIO_|EVP|ChaCha|Poly1305|param_group)/.test(name)) return 'OpenSSL';
  return 'other';
}

/** Resident bytes of `bin` in process `pid`, by family. */
export function residentByFamily(pid: number, bin: Binary): Map<string, number> {
  const real = realpathSync(bin.path);
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .map((l) => l.split(/\s+/))
    .filter((f) => f.length >= 6 && f[5] === real)
    .map((f) => {
      const [lo, hi] = f[0]!.split('-').map((x) => parseInt(x, 16)) as [number, number];
      return { lo, hi, off: parseInt(f[2]!, 16) };
    });
  const base = maps.find((m) => m.off === 0);
  const bias = base ? base.lo - bin.firstLoad : 0;
  const out = new Map<string, number>();
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    for (const m of maps) {
      const pages = (m.hi - m.lo) / 4096;
      const buf = Buffer.alloc(pages * 8);
      readSync(fd, buf, 0, buf.length, (m.lo / 4096) * 8);
      let j = 0;
      for (let p = 0; p < pages; p++) {
        if (!(buf.readBigUInt64LE(p * 8) >> 63n)) continue;
        const addr = m.lo + p * 4096 - bias;
        // The last symbol at or before the page (a page can hold many; the first names it).
        while (j + 1 < bin.syms.length && bin.syms[j + 1]!.addr <= addr) j++;
        while (j > 0 && bin.syms[j]!.addr > addr) j--;
        const sym = bin.syms[j];
        let fam: string;
        if (sym && sym.addr <= addr && addr - sym.addr < 1 << 20) fam = familyOf(sym.name);
        else fam = `no symbol (${bin.sections.find((s) => s.start <= addr && addr < s.end)?.name ?? '?'})`;
        out.set(fam, (out.get(fam) ?? 0) + 4096);
      }
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

const mb = (b: number) => (b / 1e6).toFixed(2);

async function main(): Promise<void> {
  const settle = Number(arg('--settle') ?? 30);
  const only = arg('--pid');
  const bin = loadBinary(process.execPath);
  const { nodeArgs, env } = launcherSettings();
  const columns: { name: string; pid: number }[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    if (only) columns.push({ name: `pid ${only}`, pid: Number(only) });
    else {
      const bare = spawn(process.execPath, [...nodeArgs, '-e', 'setInterval(() => {}, 1 << 30)'], { env: { ...process.env, ...env }, stdio: 'ignore' });
      stops.push(() => stopChild(bare));
      columns.push({ name: 'bare node', pid: bare.pid! });
      const d = await startServe(['--zone', 'pages.test'], { spawn: (_n, argv, o) => spawn(join(REPO, 'bin', 'canonport.js'), argv.slice(1), o), readyMs: 60_000 });
      stops.push(() => d.stop());
      columns.push({ name: 'canonport serve', pid: d.pid });
      process.stderr.write(`idle ${settle} s\n`);
      await new Promise((res) => setTimeout(res, settle * 1000));
    }
    const counts = columns.map((c) => residentByFamily(c.pid, bin));
    const fams = [...new Set(counts.flatMap((c) => [...c.keys()]))];
    const last = counts.length - 1;
    fams.sort((a, b) => (counts[last]!.get(b) ?? 0) - (counts[last]!.get(a) ?? 0));
    console.log(`resident pages of ${bin.path} (MB), launcher's flags${only ? '' : `, ${settle} s after ready`}`);
    console.log(`${'family'.padEnd(44)} ${columns.map((c) => c.name.padStart(16)).join(' ')}${columns.length > 1 ? ' difference'.padStart(12) : ''}`);
    for (const f of fams) {
      const v = counts.map((c) => c.get(f) ?? 0);
      if (Math.max(...v) < 50_000) continue;
      console.log(`${f.padEnd(44)} ${v.map((x) => mb(x).padStart(16)).join(' ')}${v.length > 1 ? mb(v[last]! - v[0]!).padStart(12) : ''}`);
    }
    const tot = counts.map((c) => [...c.values()].reduce((a, b) => a + b, 0));
    console.log(`${'total'.padEnd(44)} ${tot.map((x) => mb(x).padStart(16)).join(' ')}${tot.length > 1 ? mb(tot[last]! - tot[0]!).padStart(12) : ''}`);
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  }
}

if (process.argv[1]?.endsWith('node-pages.js')) runScript(main);
