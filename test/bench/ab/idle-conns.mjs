// Child process of ab.mjs: holds many idle Socket.IO connections as cheaply as
// Node allows, on raw TCP sockets (no `ws`, no socket.io-client): the HTTP
// upgrade, the CONNECT packet with the token, answers to Engine.IO pings, and
// nothing else.  Source addresses rotate over 127.0.0.x (localAddress) so that
// tens of thousands of connections to one port do not run out of ephemeral
// ports.
//
// Messages from the parent: { cmd: 'open', host, port, count, offset, srcs:
// ['127.0.0.10', ...], concurrency, deadlineMs (no new connection after it) } -> { cmd: 'opened', ok, failed, errors,
// ms }; { cmd: 'cpu' } -> { cmd: 'cpu', us, rss }; { cmd: 'close' }.
import net from 'node:net';
import { makeToken } from '../ws/token.mjs';

const SECRET = process.env.AB_JWT_SECRET;
const childNo = Number(process.env.AB_CHILD_NO || 0);
const socks = [];
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** A masked client text frame (mask key 0: the payload bytes stay as they are). */
function frame(text) {
  const p = Buffer.from(text);
  const head = p.length < 126 ? Buffer.from([0x81, 0x80 | p.length, 0, 0, 0, 0])
    : Buffer.from([0x81, 0x80 | 126, p.length >> 8, p.length & 255, 0, 0, 0, 0]);
  return Buffer.concat([head, p]);
}
const PONG = frame('3');

function openOne(host, port, localAddress, token) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, localAddress });
    let buf = null;
    let upgraded = false;
    let done = false;
    const finish = (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (e) { s.destroy(); reject(e); } else resolve(s);
    };
    const timer = setTimeout(() => finish(new Error('timeout')), 60000);
    s.setNoDelay(true);
    s.on('connect', () => s.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${host}:${port}\r\n` +
      `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    s.on('error', (e) => finish(e));
    s.on('close', () => { s.closedByPeer = true; finish(new Error('closed')); });
    s.on('data', (d) => {
      buf = buf ? Buffer.concat([buf, d]) : d;
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        if (!buf.subarray(0, 13).toString().startsWith('HTTP/1.1 101')) return finish(new Error('no upgrade: ' + buf.subarray(0, 40)));
        upgraded = true;
        buf = buf.subarray(i + 4);
      }
      // server frames are unmasked
      while (buf.length >= 2) {
        let len = buf[1] & 127;
        let off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const op = buf[0] & 15;
        const text = op === 1 ? buf.subarray(off, off + len).toString() : '';
        buf = buf.length === off + len ? null : buf.subarray(off + len);
        if (op === 8) { s.destroy(); return finish(new Error('closed by the server')); }
        if (op === 9) s.write(Buffer.from([0x8a, 0x80, 0, 0, 0, 0]));
        if (text === '2') s.write(PONG);
        else if (text[0] === '0') s.write(frame('40' + JSON.stringify({ token })));
        else if (text.startsWith('40')) finish(null);
        else if (text.startsWith('44')) finish(new Error('connect_error ' + text.slice(2, 200)));
        if (buf === null) return;
      }
    });
  });
}

async function open({ host, port, count, offset, srcs, concurrency, deadlineMs }) {
  const t0 = process.hrtime.bigint();
  const stopAt = Date.now() + (deadlineMs || 1e9);
  let next = 0;
  let ok = 0;
  let failed = 0;
  const errors = {};
  async function worker() {
    while (next < count && Date.now() < stopAt) {
      const n = next++;
      const token = makeToken(SECRET, { sub: `idle-${childNo}-${offset + n}`, name: `Idle ${offset + n}` });
      try {
        socks.push(await openOne(host, port, srcs[n % srcs.length], token));
        ok++;
      } catch (e) {
        failed++;
        const k = String(e.code || e.message).slice(0, 60);
        errors[k] = (errors[k] || 0) + 1;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { ok, failed, errors, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

process.on('message', async (m) => {
  try {
    if (m.cmd === 'open') process.send({ cmd: 'opened', ...(await open(m)) });
    else if (m.cmd === 'cpu') {
      const c = process.cpuUsage();
      process.send({ cmd: 'cpu', us: c.user + c.system, rss: process.memoryUsage().rss, alive: socks.filter((s) => !s.closedByPeer).length });
    } else if (m.cmd === 'close') {
      for (const s of socks) s.destroy();
      socks.length = 0;
      process.send({ cmd: 'closed' });
    }
  } catch (e) {
    process.send({ cmd: 'error', message: String(e && e.stack || e) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ cmd: 'ready' });
