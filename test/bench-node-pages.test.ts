import { describe, expect, it } from 'vitest';
import { familyOf, loadBinary, residentByFamily } from '../bench/node-pages.js';
import { requireTool } from './helpers/tools.js';

/**
 * bench/node-pages.ts names the resident pages of the node binary in a
 * process (issue 24: the file pages that are half an idle daemon's RSS). On
 * this very process: /proc/self/pagemap, the node binary's own symbols.
 */
describe('node-pages', () => {
  it('names a symbol by the part of node it belongs to', () => {
    expect(familyOf('v8::internal::compiler::CodeGenerator::AssembleArchInstruction(v8::internal::compiler::Instruction*)')).toBe('V8 TurboFan (optimizing compiler)');
    expect(familyOf('v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace)')).toBe('V8 other (runtime, GC, builtins)');
    expect(familyOf('node::Environment::RunTimers(uv_timer_s*)')).toBe("Node's C++ (node::)");
    expect(familyOf('icudt78_dat')).toBe('ICU data');
    expect(familyOf('uv_run')).toBe('libuv');
  });

  it("finds this process's resident node pages and names most of them", () => {
    requireTool('nm', 'binutils');
    requireTool('readelf', 'binutils');
    const bin = loadBinary(process.execPath);
    expect(bin.syms.length).toBeGreaterThan(10_000);
    const byFamily = residentByFamily(process.pid, bin);
    const total = [...byFamily.values()].reduce((a, b) => a + b, 0);
    // A running node touches tens of MB of its binary: V8's runtime and builtins, Node's C++.
    expect(total).toBeGreaterThan(10e6);
    expect(byFamily.get('V8 other (runtime, GC, builtins)')).toBeGreaterThan(1e6);
    expect(byFamily.get("Node's C++ (node::)")).toBeGreaterThan(0);
    // Pages named by a symbol, not only by a section.
    const named = [...byFamily].filter(([k]) => !k.startsWith('no symbol')).reduce((a, [, v]) => a + v, 0);
    expect(named / total).toBeGreaterThan(0.5);
  });
});
