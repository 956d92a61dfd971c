// The measuring side of a room-member child process, whatever its
// transport (members.mjs on WebSocket, ../ab/members-poll.mjs on
// long-polling): it holds a share of the passive room members, joined as
// viewers to one room, and reports per round when each of them received
// the presence event the parent armed it for.
//
// IPC (the parent forks with serialization 'advanced', so hrtime bigints
// cross): grow -> grown, arm -> armed, disarm -> disarmed, cpu, close.
// process.hrtime.bigint() is CLOCK_MONOTONIC, the same clock in every
// process of the machine, so the parent subtracts its own send time from
// the receive times reported here.
//
// connect(token, onEvent) makes one member's client: an object with
// connect(), emit(event, payload) -> the raw ack, and close(), calling
// onEvent(raw, t) for every event packet with its receipt time.
import { performance } from 'node:perf_hooks';
import { makeToken } from './token.mjs';

export function serveMembers({ secret, childNo, sub, name, connect, closeDelayMs }) {
  const members = [];
  let armed = null;   // { seq, round, kind, prefix, connId, count, first, last, cpu0, elu0, tArm, dupes }
  let stray = 0;      // presence events for our room not matching an armed round
  let seqNo = 0;

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

  function onEvent(m, raw, t) {
    const a = armed;
    if (a === null || !raw.startsWith(a.prefix)) return;
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

  async function grow(total, resourceId, concurrency, offset) {
    const t0 = process.hrtime.bigint();
    const todo = [];
    for (let i = members.length; i < total; i++) todo.push(offset + i);
    let next = 0;
    async function one() {
      while (next < todo.length) {
        const n = todo[next++];
        const token = makeToken(secret, { sub: `${sub}-${childNo}-${n}`, name: `${name} ${childNo}.${n}` });
        const m = { seen: -1 };
        m.client = connect(token, (raw, t) => onEvent(m, raw, t));
        await m.client.connect();
        if (resourceId) {   // null: an idle connection, in no room
          const ack = await m.client.emit('presence:join', { resourceId, mode: 'viewer' });
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
        case 'arm':
          seqNo++;
          armed = {
            seq: seqNo, round: msg.round, kind: msg.kind, connId: msg.connId,
            prefix: `42["presence:${msg.kind}"`, count: 0, dupes: 0, first: null, last: null,
            cpu0: process.cpuUsage(), elu0: performance.eventLoopUtilization(), tArm: process.hrtime.bigint(),
          };
          process.send({ cmd: 'armed', round: msg.round, kind: msg.kind });
          break;
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
        case 'close':
          for (const m of members) m.client.close();
          setTimeout(() => process.exit(0), closeDelayMs);
          break;
        default:
          throw new Error('unknown command ' + msg.cmd);
      }
    } catch (e) {
      process.send({ cmd: 'error', message: String(e && e.stack || e) });
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send({ cmd: 'ready' });
}
