// What wakes a Node process, by kind and by the line that asked for it: a
// preload for the daemon (node --require bench/timer-census.cjs, or
// NODE_OPTIONS=--require=…). Every callback the event loop runs (timers,
// immediates, file system and socket completions, HTTP/2 and gRPC
// streams…) is counted under its async resource type and the first stack
// frame outside Node's internals and node_modules that created it (or the
// first module frame when no own frame exists). On SIGUSR2 the counts so
// far go to $CANONPORT_CENSUS_FILE as JSON and start again from zero, so a
// bench takes one window's census: signal, wait, signal.
//
// Diagnostic only: async_hooks and a stack trace per resource cost far
// more than the work counted, so CPU figures of a process running this
// mean nothing. (issue 24)
'use strict';
const { createHook } = require('node:async_hooks');
const { writeFileSync } = require('node:fs');

const OUT = process.env.CANONPORT_CENSUS_FILE || `/tmp/canonport-census-${process.pid}.json`;
/** asyncId → "TYPE at site"; bounded: ids of resources that never run again are dropped past the cap. */
const sites = new Map();
const MAX_SITES = 200_000;
let counts = new Map();
let since = Date.now();

function siteOf() {
  const stack = new Error().stack.split('\n').slice(3);
  const own = stack.find((l) => l.includes('/dist/') && !l.includes('node_modules'));
  const mod = stack.find((l) => l.includes('node_modules'));
  const line = own || mod || stack.find((l) => !l.includes('node:internal') && !l.includes('timer-census')) || stack[0] || '';
  return line.trim().replace(/^at /, '').replace(/file:\/\/\S*?\/(dist|node_modules)\//, '$1/');
}

createHook({
  init(asyncId, type) {
    if (type === 'PROMISE') return;
    if (sites.size >= MAX_SITES) sites.delete(sites.keys().next().value);
    sites.set(asyncId, `${type} ${siteOf()}`);
  },
  before(asyncId) {
    const key = sites.get(asyncId);
    if (key !== undefined) counts.set(key, (counts.get(key) || 0) + 1);
  },
  destroy(asyncId) {
    sites.delete(asyncId);
  },
}).enable();

process.on('SIGUSR2', () => {
  const seconds = (Date.now() - since) / 1000;
  const rows = [...counts].sort((a, b) => b[1] - a[1]).map(([site, n]) => ({ site, n, perSecond: Number((n / seconds).toFixed(3)) }));
  writeFileSync(OUT, `${JSON.stringify({ pid: process.pid, seconds, rows }, null, 1)}\n`);
  counts = new Map();
  since = Date.now();
});
