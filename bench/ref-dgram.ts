import dgram from 'node:dgram';
import { bareAnswer, parseQuestion } from './dns-wire.js';

/**
 * Reference "dgram bare", run as its own process: `node ref-dgram.js HOST PORT`.
 * A bare node:dgram socket that parses the question and writes a fixed-shape
 * answer (see bareAnswer): the ceiling for a Node UDP server on this machine.
 * Also the cheap upstream of the RSS fill (it answers A for any name).
 */
const [host = '127.0.0.1', portText = '0'] = process.argv.slice(2);
const socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
socket.on('message', (msg, rinfo) => {
  const q = parseQuestion(msg);
  if (q) socket.send(bareAnswer(msg, q), rinfo.port, rinfo.address);
});
socket.on('error', (err) => {
  console.error(`ref-dgram: ${err.message}`);
  process.exit(1);
});
socket.bind(Number(portText), host);
process.on('SIGTERM', () => socket.close(() => process.exit(0)));
