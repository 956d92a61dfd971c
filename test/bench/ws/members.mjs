// Child process of loadgen.mjs: holds a share of the passive room members
// (LiteClient connections joined as viewers to one room) and reports, per
// round, when each of them received the presence event the parent armed it
// for.  Forked with serialization 'advanced' so hrtime bigints cross IPC.
//
// process.hrtime.bigint() is CLOCK_MONOTONIC, the same clock in every process
// of the machine, so the parent can subtract its own send time from the
// receive times reported here.
import { performance } from 'node:perf_hooks';
import { LiteClient } from './lite-client.mjs';
import { makeToken } from './token.mjs';

const URL_ = process.env.COLLAB_WS_URL;
const SECRET = process.env.COLLAB_JWT_SECRET;
const childNo = Number(process.env.BENCH_CHILD_NO || 0);

const members = [];
let armed = null;   // { round, kind, prefix, connId, count, first, last, cpu0, elu0, tArm, dupes }
let stray = 0;      // presence events for our room not matching an armed round

function onEvent(m, raw, t) {
  const a = armed;
  if (a === null) return;
  if (!raw.startsWith(a.prefix)) return;
  // the payload: 42["presence:joined",{"resourceId":...,"user":{...}}]
  const ev = JSON.parse(raw.slice(2))[1];
  if (ev.user.connectionId !== a.connId) { stray++; return; }
  if (m.seen === a.seq) { a.dupes++; return; }
  m.seen = a.seq;
  a.count++;
  if (a.first === null || t < a.first) a.first = t;
  if (a.last === null || t > a.last) a.last = t;
  if (a.count === members.length) finish(a);
}

function finish(a) {
  const cpu = process.cpuUsage(a.cpu0);
  const elu = performance.eventLoopUtilization(a.elu0);
  armed = null;
  process.send({
    cmd: 'done', round: a.round, kind: a.kind, count: a.count, dupes: a.dupes,
    first: a.first, last: a.last, tArm: a.tArm, tDone: process.hrtime.bigint(),
    cpuUs: cpu.user + cpu.system, elu: elu.utilization,
  });
}

let seqNo = 0;
async function grow(total, resourceId, concurrency, offset) {
  const t0 = process.hrtime.bigint();
  const todo = [];
  for (let i = members.length; i < total; i++) todo.push(offset + i);
  let next = 0;
  async function one() {
    while (next < todo.length) {
      const n = todo[next++];
      const token = makeToken(SECRET, { sub: `member-${childNo}-${n}`, name: `Member ${childNo}.${n}` });
      const m = { seen: -1 };
      const c = new LiteClient(URL_, token, (raw, t) => onEvent(m, raw, t));
      m.client = c;
      await c.connect();
      if (resourceId) {   // null: an idle connection, in no room
        const ack = await c.emit('presence:join', { resourceId, mode: 'viewer' });
        if (!/^\[\{"ok": ?true/.test(ack)) throw new Error('join failed: ' + ack.slice(0, 300));
      }
      members.push(m);
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, todo.length) }, one));
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

process.on('message', async (msg) => {
  try {
    switch (msg.cmd) {
      case 'grow': {
        const ms = await grow(msg.total, msg.resourceId, msg.concurrency, msg.offset);
        process.send({ cmd: 'grown', count: members.length, ms });
        break;
      }
      case 'arm': {
        seqNo++;
        armed = {
          seq: seqNo, round: msg.round, kind: msg.kind, connId: msg.connId,
          prefix: `42["presence:${msg.kind}"`, count: 0, dupes: 0, first: null, last: null,
          cpu0: process.cpuUsage(), elu0: performance.eventLoopUtilization(), tArm: process.hrtime.bigint(),
        };
        process.send({ cmd: 'armed', round: msg.round, kind: msg.kind });
        break;
      }
      case 'disarm': {
        // the parent gave up on a round: report what arrived
        const a = armed;
        armed = null;
        process.send({ cmd: 'disarmed', round: msg.round, count: a ? a.count : -1, members: members.length });
        break;
      }
      case 'cpu': {
        const c = process.cpuUsage();
        process.send({ cmd: 'cpu', us: c.user + c.system, elu: performance.eventLoopUtilization(), stray });
        break;
      }
      case 'close': {
        for (const m of members) m.client.close();
        setTimeout(() => process.exit(0), 200);
        break;
      }
      default:
        throw new Error('unknown command ' + msg.cmd);
    }
  } catch (e) {
    process.send({ cmd: 'error', message: String(e && e.stack || e) });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ cmd: 'ready' });
