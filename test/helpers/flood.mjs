#!/usr/bin/env node
// A hostile client, run as its own process (inside a network namespace in
// the hostile suite, test/hostile-*.test.ts, and by bench/hostile.ts):
//
//   node flood.mjs MODE HOST PORT COUNT HOLD_MS [CONCURRENCY]
//
// MODE   idle       connect and send nothing
//        http-half  connect and send half an HTTP request, never the end of its headers
//        dns-half   connect and send one octet of a DNS-over-TCP length, never the rest
// It opens COUNT connections (CONCURRENCY at a time, default 200), holds
// each for HOLD_MS from the last one opened, then prints one JSON line:
//   { opened, failed, closedByPeer, openAtEnd, firstCloseMs }
// closedByPeer: connections the daemon closed while we held them (the
// defence at work); openAtEnd: still open when the hold ended.
import net from 'node:net';

const [mode, host, portText, countText, holdText, concText] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const holdMs = Number(holdText);
const concurrency = Number(concText ?? 200);
if (!['idle', 'http-half', 'dns-half'].includes(mode) || !host || !port || !count || Number.isNaN(holdMs)) {
  console.error('usage: flood.mjs idle|http-half|dns-half HOST PORT COUNT HOLD_MS [CONCURRENCY]');
  process.exit(2);
}

const started = performance.now();
let opened = 0;
let failed = 0;
let closedByPeer = 0;
let firstCloseMs = null;
const sockets = new Set();
let holding = true;

function openOne() {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setNoDelay(true);
    let connected = false;
    s.once('connect', () => {
      connected = true;
      opened++;
      sockets.add(s);
      if (mode === 'http-half') s.write('GET /metrics HTTP/1.1\r\nHost: canonport\r\nX-Slow: ');
      else if (mode === 'dns-half') s.write(Buffer.from([0]));
      resolve();
    });
    s.on('data', () => undefined);
    s.on('error', () => undefined);
    s.once('close', () => {
      if (!connected) {
        failed++;
        resolve();
        return;
      }
      if (holding && sockets.delete(s)) {
        closedByPeer++;
        firstCloseMs ??= Math.round(performance.now() - started);
      }
    });
  });
}

let next = 0;
async function worker() {
  while (next < count) {
    next++;
    await openOne();
  }
}
await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
await new Promise((r) => setTimeout(r, holdMs));
holding = false;
const openAtEnd = sockets.size;
for (const s of sockets) s.destroy();
console.log(JSON.stringify({ opened, failed, closedByPeer, openAtEnd, firstCloseMs }));
process.exit(0);
