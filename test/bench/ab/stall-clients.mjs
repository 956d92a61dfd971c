// Child process of ab.mjs for the stall phase: bystander clients
// (socket.io-client), each joined as a viewer to a tab of its own, looping
// lock:acquire -> ack, doc:save -> ack, lock:release -> ack, then a pause,
// until told to stop.  Every round trip is recorded with its send time, so
// that ab.mjs can split them into the idle window and the stall window it
// marked meanwhile; both times are CLOCK_MONOTONIC (process.hrtime.bigint()
// in every process).
//
// IPC messages (../child.mjs):
//   { cmd: 'open', url, secret, rids: [...], name }  -> { cmd: 'opened', n }
//   { cmd: 'start', pauseMs, contentBytes }          -> { cmd: 'started' }
//   { cmd: 'stop' }   (every loop ends its cycle)    -> { cmd: 'stopped', sentUs, ms, kind, code }
//   { cmd: 'cpu' }                                   -> { cmd: 'cpu', us }
//   { cmd: 'close' }                                 -> { cmd: 'closed' }, then exits
// sentUs: Float64Array of send times (microseconds); ms: Float64Array of
// round-trip times; kind: Uint8Array (0 acquire, 1 save, 2 release); code:
// one entry per round trip, '' when the ack was ok, else its error code
// (TIMEOUT when no ack came within 30 s).
import { io } from 'socket.io-client';
import { makeToken } from '../ws/token.mjs';

const TIMEOUT_MS = 30000;
const hr = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fail = (e) => { process.send({ cmd: 'error', message: String((e && e.stack) || e) }); };

let clients = [];          // { s, rid }
let stop = false;
let loops = null;
let rec = null;

function connect(url, secret, name, rid) {
  const token = makeToken(secret, { sub: `ab-${name}`, name: `AB ${name}` });
  const s = io(url, { transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true, perMessageDeflate: false });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: connect timeout`)), 15000);
    s.on('connect', () => { clearTimeout(timer); resolve(s); });
    s.on('connect_error', (e) => { clearTimeout(timer); reject(new Error(`${name}: connect_error ${e.message} ${JSON.stringify(e.data)}`)); });
  }).then(async (sock) => {
    const j = await sock.timeout(TIMEOUT_MS).emitWithAck('presence:join', { resourceId: rid, mode: 'viewer' });
    if (!j.ok) throw new Error(`${name} join ${rid}: ${JSON.stringify(j).slice(0, 300)}`);
    return { s: sock, rid };
  });
}

/* one timed round trip, recorded; resolves with the ack (or null on timeout) */
function trip(s, kind, event, payload) {
  return new Promise((resolve) => {
    const t0 = hr();
    s.timeout(TIMEOUT_MS).emit(event, payload, (e, ack) => {
      const t1 = hr();
      rec.sentUs.push(Number(t0 / 1000n));
      rec.ms.push(Number(t1 - t0) / 1e6);
      rec.kind.push(kind);
      rec.code.push(e ? 'TIMEOUT' : ack && ack.ok ? '' : String((ack && ack.error && ack.error.code) || 'MALFORMED'));
      resolve(e ? null : ack);
    });
  });
}

async function loop(c, pauseMs, content, no) {
  await sleep(Math.random() * pauseMs);     // spread the clients over the pause
  let seq = 0;
  while (!stop) {
    const a = await trip(c.s, 0, 'lock:acquire', { resourceId: c.rid });
    if (a && a.ok) {
      await trip(c.s, 1, 'doc:save', { resourceId: c.rid, content: `[${no}.${seq++}] ${content}` });
      await trip(c.s, 2, 'lock:release', { resourceId: c.rid });
    }
    if (!stop) await sleep(pauseMs);
  }
}

process.on('message', (m) => {
  (async () => {
    switch (m.cmd) {
      case 'open': {
        const out = [];
        for (let i = 0; i < m.rids.length; i += 10) {
          out.push(...await Promise.all(m.rids.slice(i, i + 10).map((rid, k) => connect(m.url, m.secret, `${m.name}-${i + k}`, rid))));
        }
        clients = out;
        process.send({ cmd: 'opened', n: clients.length });
        break;
      }
      case 'start': {
        stop = false;
        rec = { sentUs: [], ms: [], kind: [], code: [] };
        const content = 'x'.repeat(Math.max(0, m.contentBytes - 16));
        loops = Promise.all(clients.map((c, i) => loop(c, m.pauseMs, content, i)));
        process.send({ cmd: 'started' });
        break;
      }
      case 'stop': {
        stop = true;
        await loops;
        process.send({
          cmd: 'stopped', sentUs: Float64Array.from(rec.sentUs), ms: Float64Array.from(rec.ms),
          kind: Uint8Array.from(rec.kind), code: rec.code,
        });
        break;
      }
      case 'cpu': {
        const u = process.cpuUsage();
        process.send({ cmd: 'cpu', us: u.user + u.system });
        break;
      }
      case 'close':
        for (const c of clients) c.s.close();
        process.send({ cmd: 'closed' });
        setTimeout(() => process.exit(0), 200);
        break;
      default:
        fail(`unknown command ${m.cmd}`);
    }
  })().catch(fail);
});
process.on('disconnect', () => process.exit(0));
process.send({ cmd: 'ready' });
