import dgram from 'node:dgram';
import net from 'node:net';

/** Raw DNS wire helpers for tests that need exact bytes. */

export function buildQuery(id: number, name: string, qtype: number): Buffer {
  const labels = name.split('.').filter(Boolean);
  const q = Buffer.alloc(12 + labels.reduce((n, l) => n + l.length + 1, 0) + 5);
  q.writeUInt16BE(id, 0);
  q.writeUInt16BE(0x0100, 2);
  q.writeUInt16BE(1, 4);
  let off = 12;
  for (const l of labels) {
    q[off++] = l.length;
    off += q.write(l, off, 'latin1');
  }
  q[off++] = 0;
  q.writeUInt16BE(qtype, off);
  q.writeUInt16BE(1, off + 2);
  return q;
}

export function frame(msg: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(msg.length);
  return Buffer.concat([len, msg]);
}

export function rawUdp(to: { host: string; port: number }, msg: Buffer, timeoutMs = 2000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(net.isIPv6(to.host) ? 'udp6' : 'udp4');
    const t = setTimeout(() => {
      s.close();
      reject(new Error('no UDP reply'));
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(t);
      s.close();
      resolve(m);
    });
    s.send(msg, to.port, to.host);
  });
}

export function tcpExchange(to: { host: string; port: number }, data: Buffer, expect: number, timeoutMs = 3000): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let buf = Buffer.alloc(0);
    const s = net.connect(to.port, to.host, () => s.write(data));
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`got ${out.length} of ${expect} TCP replies`));
    }, timeoutMs);
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length >= expect) {
        clearTimeout(t);
        s.destroy();
        resolve(out);
      }
    });
    s.on('error', reject);
  });
}
