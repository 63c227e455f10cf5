#!/usr/bin/env node
// A flooding gRPC client, run as its own process (in a network namespace in
// the hostile suite, test/hostile-*.test.ts, and by bench/hostile.ts):
//
//   node grpc-flood.mjs MODE HOST:PORT STREAMS NAMES HOLD_MS ZONE [CONNECTIONS] [RESPONSES]
//
// MODE   xds    STREAMS ADS streams, each subscribing to NAMES distinct
//               Listener names (s<i>n<j>.ZONE) and never ACKing
//        watch  STREAMS Watch streams over NAMES distinct names (w<k>.ZONE)
// Streams are spread over CONNECTIONS channels (default 1). It holds them
// HOLD_MS after the last one opened (and then, with RESPONSES, until that many
// responses came, for at most RESPONSES_WAIT_MS more: a condition to wait for,
// not a time to hope it is met by), then cancels them and prints one JSON
// line: { streams, responses, ended: { <status code name>: n }, openAtEnd,
// firstEndMs }. Requests are encoded by hand (a few protobuf fields), so
// the flooder needs nothing but grpc-js.
import * as grpc from '@grpc/grpc-js';

const [mode, target, streamsText, namesText, holdText, zone, connText, wantText] = process.argv.slice(2);
const streams = Number(streamsText);
const names = Number(namesText);
const holdMs = Number(holdText);
const connections = Number(connText ?? 1);
const wantResponses = Number(wantText ?? 0);
/** The most RESPONSES adds to the hold: wide, so a loaded machine still gets there, and bounded, so it never hangs. */
const RESPONSES_WAIT_MS = 30_000;
if (!['xds', 'watch'].includes(mode) || !target || !streams || !names || Number.isNaN(holdMs) || !zone || Number.isNaN(wantResponses)) {
  console.error('usage: grpc-flood.mjs xds|watch HOST:PORT STREAMS NAMES HOLD_MS ZONE [CONNECTIONS] [RESPONSES]');
  process.exit(2);
}

function varint(n) {
  const out = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
function field(num, bytes) {
  return Buffer.concat([varint((num << 3) | 2), varint(bytes.length), bytes]);
}
const text = (s) => Buffer.from(s, 'utf8');

const LISTENER = 'type.googleapis.com/envoy.config.listener.v3.Listener';
function discoveryRequest(i) {
  const parts = [field(2, field(1, text(`flood-${process.pid}`)))];
  for (let j = 0; j < names; j++) parts.push(field(3, text(`s${i}n${j}.${zone}`)));
  parts.push(field(4, text(LISTENER)));
  return Buffer.concat(parts);
}

const clients = Array.from({ length: connections }, () => new grpc.Client(target, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 64 * 1024 * 1024 }));
const started = performance.now();
let responses = 0;
let firstEndMs = null;
const ended = {};
const open = new Set();
let holding = true;
/** Called once `wantResponses` responses came, while the hold waits for them. */
let enough = null;

for (let i = 0; i < streams; i++) {
  const client = clients[i % connections];
  const call =
    mode === 'xds'
      ? client.makeBidiStreamRequest('/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources', (b) => b, (b) => b)
      : client.makeServerStreamRequest('/canonport.v1.Canonport/Watch', (b) => b, (b) => b, field(1, text(`w${i % names}.${zone}`)));
  open.add(call);
  call.on('data', () => {
    responses++;
    if (responses >= wantResponses) enough?.();
  });
  call.on('error', () => undefined);
  call.on('status', (s) => {
    if (!holding) return;
    open.delete(call);
    const code = grpc.status[s.code] ?? String(s.code);
    ended[code] = (ended[code] ?? 0) + 1;
    firstEndMs ??= Math.round(performance.now() - started);
  });
  if (mode === 'xds') call.write(discoveryRequest(i));
  // Let the channel breathe every so often: thousands of streams opened in one tick all queue on one socket.
  if (i % 100 === 99) await new Promise((r) => setImmediate(r));
}
await new Promise((r) => setTimeout(r, holdMs));
if (responses < wantResponses) {
  await new Promise((r) => {
    const t = setTimeout(r, RESPONSES_WAIT_MS);
    enough = () => {
      clearTimeout(t);
      r();
    };
  });
}
holding = false;
const openAtEnd = open.size;
for (const c of open) c.cancel();
console.log(JSON.stringify({ streams, responses, ended, openAtEnd, firstEndMs }));
for (const c of clients) c.close();
process.exit(0);
