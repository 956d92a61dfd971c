// Connection state recovery, as socket.io 4.6+ does it, with the real
// socket.io-client: the CONNECT reply carries a pid, session:ready right
// after it an offset, every event of a room its offset as a last argument;
// a client lost uncleanly that comes back within collab.recovery_window
// with {pid, offset} gets socket.recovered === true, the same socket.id, its
// rooms, roles and lock (same token), and the events it missed in order,
// once. The token is verified and access checked again; a pid recovers only
// its own user's session; anything else is a new session, never an error
// for a bad pid.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TRANSPORTS, newUser, connect, tokenFor, makeToken, nowSec, join, save, ok, fails, createDocument, q,
  waitFor, received, mark, ref, killSocket, teardown, locksOn, setGrace, setWorkerConf, resetWorkerConf,
  eventually, waitDisconnect, emitAck,
} from './helpers.mjs';

const GRACE_MS = 20000;

before(() => setGrace(GRACE_MS));
after(async () => {
  await resetWorkerConf('collab.disconnect_grace', 'collab.recovery_window');
  await teardown();
});

/** The offset an event carried (its last argument), or undefined. */
const offsetOf = (entry) => (entry.args.length > 1 && typeof entry.args.at(-1) === 'string' ? entry.args.at(-1) : undefined);

/** Stops socket answering the server's pings (the server times it out). */
function stopPonging(socket) {
  const engine = socket.io.engine;
  const send = engine._sendPacket;
  engine._sendPacket = function sendPacket(type, ...rest) {
    return type === 'pong' ? undefined : send.call(this, type, ...rest);
  };
}

/**
 * Loses socket's connection uncleanly ('kill': the TCP connections cut;
 * 'close': socket.io.engine.close(); 'ping': no more pongs) and waits until
 * the server has seen it (watcher hears presence:left of it, with reason)
 * and the client has too. The network is back afterwards.
 */
async function lose(socket, watcher, how = 'kill') {
  const id = socket.id;
  const since = mark(watcher);
  const own = mark(socket);
  const agent = socket.io.opts.agent;
  if (how === 'kill') await killSocket(socket);
  else if (how === 'close') socket.io.engine.close();
  else stopPonging(socket);
  const left = await waitFor(watcher, 'presence:left', (e) => e.user.connectionId === id, { since, timeout: 8000 });
  await waitDisconnect(socket, 8000, own);
  if (agent) delete agent.addRequest;
  return left;
}

/** Connects socket again (socket.io-client adds its pid and offset); resolves with its mark. */
async function reconnect(socket) {
  const since = mark(socket);
  socket.connect();
  await waitFor(socket, '$connect', () => true, { since, timeout: 8000 });
  return since;
}

/** Anna holds tab notes and watches tab plan, which Ben holds. */
async function twoTabs() {
  const doc = await createDocument(['notes', 'plan']);
  const [notes, plan] = [doc.tab('notes'), doc.tab('plan')];
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  const held = ok(await join(a, notes, 'editor'));
  ok(await join(b, plan, 'editor'));
  ok(await join(a, plan, 'viewer'));
  ok(await join(b, notes, 'viewer'));
  // Anna has heard Ben's last join: no answer to her is under way when her connection goes
  await waitFor(a, 'presence:joined', (e) => e.resourceId === notes && e.user.userId === ben.sub);
  return { doc, notes, plan, anna, ben, a, b, token: held.lock.token };
}

test('the wire format: CONNECT carries a pid, session:ready an offset, room events a growing offset, acks none', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const anna = newUser('Anna');
  const a = await connect(anna);
  assert.equal(typeof a._pid, 'string');
  assert.equal(a._pid.length, 20);
  assert.equal(a.recovered, false);
  await waitFor(a, 'session:ready');
  const ready = a.__log.find((e) => e.event === 'session:ready');
  assert.deepEqual(a.__log.map((e) => e.event).slice(0, 2), ['$connect', 'session:ready'], 'session:ready right after CONNECT');
  assert.deepEqual(ready.payload, { connectionId: a.id, recovered: false });
  assert.match(offsetOf(ready), /^\d+$/);
  const ack = ok(await join(a, rid, 'editor'));
  assert.equal(Object.keys(ack).includes('offset'), false);
  ok(await save(a, rid, 'v1', { token: ack.lock.token }));
  await waitFor(a, 'doc:saved', (e) => e.version === 1);
  const evs = a.__log.filter((e) => ['session:ready', 'presence:state', 'presence:joined', 'lock:acquired', 'doc:saved'].includes(e.event));
  for (const e of evs) assert.match(offsetOf(e) ?? '', /^\d+$/, `${e.event} carries an offset`);
  const joined = a.__log.find((e) => e.event === 'presence:joined');
  const saved = a.__log.find((e) => e.event === 'doc:saved');
  assert.ok(BigInt(offsetOf(saved)) > BigInt(offsetOf(joined)), 'offsets grow');
  assert.ok(BigInt(offsetOf(joined)) > BigInt(offsetOf(ready)), 'events after session:ready have larger offsets');
  assert.equal(a._lastOffset, offsetOf(saved), 'socket.io-client keeps the last offset');
  // the holder's copy with its token carries the offset of the shared event
  const acquired = a.__log.find((e) => e.event === 'lock:acquired');
  assert.equal(acquired.payload.token, ack.lock.token);
  a.close();
});

test('a cut connection recovers: same id, rooms, roles, lock and token; missed events in order, once', async () => {
  const { notes, plan, anna, ben, a, b, token } = await twoTabs();
  const aid = a.id;
  const pid = a._pid;
  ok(await save(b, plan, 'v1'));
  await waitFor(a, 'doc:saved', (e) => e.resourceId === plan && e.version === 1);
  const seen = new Set(a.__log.map(offsetOf).filter(Boolean));

  const sinceB = mark(b);
  const left = await lose(a, b, 'kill');
  assert.equal(left.reason, 'disconnected');
  await waitFor(b, 'lock:suspended', (e) => e.resourceId === notes, { since: sinceB });
  for (const v of [2, 3, 4]) ok(await save(b, plan, `v${v}`));

  const since = await reconnect(a);
  assert.equal(a.recovered, true);
  assert.equal(a.id, aid);
  assert.equal(a._pid, pid);
  const ready = await waitFor(a, 'session:ready', () => true, { since });
  assert.deepEqual(ready, { connectionId: aid, recovered: true });
  // the saves made while it was away, in order, once
  await waitFor(a, 'lock:resumed', (e) => e.resourceId === notes, { since });
  assert.deepEqual(received(a, 'doc:saved', (e) => e.resourceId === plan, since).map((e) => e.version), [2, 3, 4]);
  const replayed = a.__log.slice(since).map(offsetOf).filter(Boolean).slice(1);
  assert.equal(replayed.some((o) => seen.has(o)), false, 'nothing it had seen is sent again');
  assert.equal(new Set(replayed).size, replayed.length, 'no event twice');
  assert.deepEqual([...replayed].sort((x, y) => (BigInt(x) < BigInt(y) ? -1 : 1)), replayed, 'in order');

  // the room saw it come back, with its roles (Ben may be served by another worker: awaited)
  for (const [rid, role] of [[notes, 'editor'], [plan, 'viewer']]) {
    const back = await waitFor(b, 'presence:joined', (e) => e.resourceId === rid && e.user.connectionId === aid, { since: sinceB });
    assert.equal(back.user.role, role, rid);
  }
  assert.equal(received(b, 'presence:joined', (e) => e.user.connectionId === aid, sinceB).length, 2, 'once per room');
  const resumed = await waitFor(b, 'lock:resumed', (e) => e.resourceId === notes, { since: sinceB });
  assert.deepEqual(resumed.holder, ref(anna));
  assert.deepEqual(await q(`SELECT resource_id, role FROM collab.ws_presence WHERE connection_id = $1 ORDER BY 1`, [aid]),
    [{ resource_id: notes, role: 'editor' }, { resource_id: plan, role: 'viewer' }]);
  assert.deepEqual((await locksOn(notes)).map((l) => l.holder_id), [aid]);
  assert.deepEqual(await q('SELECT token, suspended_until FROM collab.leases WHERE resource_id = $1', [notes]),
    [{ token: String(token), suspended_until: null }]);
  // its lock, with the same token, saves; it hears the room live again
  assert.deepEqual(ok(await save(a, notes, 'by Anna', { token })), { ok: true, version: 1 });
  ok(await save(b, plan, 'v5'));
  await waitFor(a, 'doc:saved', (e) => e.resourceId === plan && e.version === 5, { since });
  assert.equal(received(b, 'lock:released', (e) => e.resourceId === notes, sinceB).length, 0);
  void ben;
  a.close();
  b.close();
});

test('socket.io.engine.close() on a WebSocket: the client reconnects by itself and recovers', async (t) => {
  if (TRANSPORTS === 'polling') {
    t.skip('over long-polling engine.close() sends a close packet: a clean end (ws_grace)');
    return;
  }
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna, { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  const b = await connect(ben);
  const token = ok(await join(a, rid, 'editor')).lock.token;
  ok(await join(b, rid, 'viewer'));
  await eventually(() => a.io.engine.transport.name === 'websocket', 'Anna is on a WebSocket', 3000, 10);
  const aid = a.id;
  const since = mark(a);
  const sinceB = mark(b);
  a.io.engine.close();
  await waitFor(a, '$connect', () => true, { since, timeout: 8000 });
  assert.equal(a.recovered, true);
  assert.equal(a.id, aid);
  await waitFor(b, 'lock:resumed', (e) => e.resourceId === rid, { since: sinceB });
  assert.deepEqual(ok(await save(a, rid, 'after the blip', { token })), { ok: true, version: 1 });
  a.close();
  b.close();
});

test('a ping timeout: presence:left "timeout", then the client recovers', async () => {
  const { notes, a, b, token } = await twoTabs();
  const aid = a.id;
  const left = await lose(a, b, 'ping');
  assert.equal(left.reason, 'timeout');
  await reconnect(a);
  assert.equal(a.recovered, true);
  assert.equal(a.id, aid);
  assert.deepEqual(ok(await save(a, notes, 'after a timeout', { token })), { ok: true, version: 1 });
  a.close();
  b.close();
});

test('no recovery after a clean disconnect', async () => {
  const { notes, a, b } = await twoTabs();
  const aid = a.id;
  const sinceB = mark(b);
  a.disconnect();
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === notes, { since: sinceB });
  assert.equal(rel.reason, 'disconnected');
  await reconnect(a);
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, aid);
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.ws_presence WHERE connection_id = $1', [a.id]), [{ n: 0 }]);
  a.close();
  b.close();
});

test('refused after collab.recovery_window: a new session, no rooms; the lock still suspended for the grace', async () => {
  await setWorkerConf('collab.recovery_window', '1s');
  try {
    const { notes, a, b } = await twoTabs();
    const aid = a.id;
    await lose(a, b);
    await eventually(async () => (await q(`SELECT clock_timestamp() > detached_at + interval '1.2 s' AS past
      FROM collab.ws_connections WHERE connection_id = $1`, [aid]))[0]?.past, 'the window has passed', 5000, 50);
    await reconnect(a);
    assert.equal(a.recovered, false);
    assert.notEqual(a.id, aid);
    assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.ws_presence WHERE connection_id = $1', [a.id]), [{ n: 0 }]);
    const [lock] = await q('SELECT holder_id, suspended_until IS NOT NULL AS suspended FROM collab.leases WHERE resource_id = $1', [notes]);
    assert.deepEqual(lock, { holder_id: aid, suspended: true });
    a.close();
    b.close();
  } finally {
    await resetWorkerConf('collab.recovery_window');
  }
});

test('another user\'s pid recovers nothing (a new session), and leaves that session recoverable', async () => {
  const { a, b, ben } = await twoTabs();
  const aid = a.id;
  const [pid, offset] = [a._pid, a._lastOffset];
  await lose(a, b);
  const thief = await connect({ auth: { token: tokenFor(ben), pid, offset } }, { label: 'Ben with Anna\'s pid' });
  assert.equal(thief.recovered, false);
  assert.notEqual(thief.id, aid);
  assert.notEqual(thief._pid, pid);
  assert.deepEqual(await q('SELECT user_id FROM collab.ws_connections WHERE connection_id = $1', [thief.id]), [{ user_id: ben.sub }]);
  await reconnect(a);
  assert.equal(a.recovered, true);
  assert.equal(a.id, aid);
  thief.close();
  a.close();
  b.close();
});

test('a revoked token: CONNECT_ERROR AUTH_TOKEN_REVOKED, the session gone with its lock', async () => {
  const { notes, anna, a, b } = await twoTabs();
  await lose(a, b);
  const sinceB = mark(b);
  await q('SELECT collab.revoke_sessions($1, $2)', [anna.sub, 'stolen tablet']);
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === notes, { since: sinceB });
  assert.equal(rel.reason, 'revoked');
  const since = mark(a);
  const err = new Promise((resolve) => a.once('connect_error', resolve));
  a.connect();
  const e = await err;
  assert.equal(e.data?.code, 'AUTH_TOKEN_REVOKED');
  assert.equal(received(a, '$connect', () => true, since).length, 0);
  a.close();
  b.close();
});

test('an expired token: CONNECT_ERROR AUTH_TOKEN_EXPIRED; with a valid one, the session still recovers', async () => {
  const { anna, notes, a, b, token } = await twoTabs();
  const aid = a.id;
  await lose(a, b);
  a.auth = { token: makeToken({ ...anna, exp: nowSec() - 60 }) };
  const err = new Promise((resolve) => a.once('connect_error', resolve));
  a.connect();
  assert.equal((await err).data?.code, 'AUTH_TOKEN_EXPIRED');
  a.auth = { token: tokenFor(anna) };
  await reconnect(a);
  assert.equal(a.recovered, true);
  assert.equal(a.id, aid);
  assert.deepEqual(ok(await save(a, notes, 'fresh token', { token })), { ok: true, version: 1 });
  a.close();
  b.close();
});

test('access lost while away: that room is not restored (access:changed, access:revoked), its events not replayed', async () => {
  const kept = await createDocument(['a']);
  const gone = await createDocument(['a']);
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  await q("SELECT collab.grant($1, 'user:' || $2, 'edit')", [gone.id, ben.sub]);
  const a = await connect(anna);
  const b = await connect(ben);
  const token = ok(await join(a, gone.tab('a'), 'editor')).lock.token;
  ok(await join(a, kept.tab('a'), 'viewer'));
  ok(await join(b, kept.tab('a'), 'editor'));
  ok(await join(b, gone.tab('a'), 'viewer'));
  const aid = a.id;
  await lose(a, b);
  await q("SELECT collab.revoke($1, '*')", [gone.id]);
  ok(await save(b, kept.tab('a'), 'kept v1'));
  const sinceB = mark(b);
  const since = await reconnect(a);
  assert.equal(a.recovered, true);
  assert.equal(a.id, aid);
  const revoked = await waitFor(a, 'access:revoked', () => true, { since });
  assert.deepEqual(revoked, { resourceId: gone.tab('a') });
  assert.deepEqual(received(a, 'access:changed', () => true, since), [{ resourceId: gone.tab('a'), permissions: [] }]);
  await waitFor(a, 'doc:saved', (e) => e.resourceId === kept.tab('a'), { since });
  assert.deepEqual(received(a, 'doc:saved', () => true, since).map((e) => [e.resourceId, e.version]), [[kept.tab('a'), 1]]);
  assert.deepEqual(await q('SELECT resource_id FROM collab.ws_presence WHERE connection_id = $1', [aid]), [{ resource_id: kept.tab('a') }]);
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === gone.tab('a'), { since: sinceB });
  assert.equal(rel.reason, 'revoked');
  fails(await save(a, gone.tab('a'), 'no', { token }), 'NOT_JOINED');
  fails(await join(a, gone.tab('a'), 'viewer'), 'RESOURCE_NOT_FOUND');
  a.close();
  b.close();
});

test('a garbage pid or offset: a new session, recovered false, no error', async () => {
  const anna = newUser('Anna');
  for (const extra of [{ pid: 'garbage', offset: '1' }, { pid: 42, offset: {} }, { pid: null },
    { pid: 'A'.repeat(20), offset: '99999999999999999999999' }, { pid: 'A'.repeat(20), offset: '-1' }]) {
    const s = await connect({ auth: { token: tokenFor(anna), ...extra } }, { label: JSON.stringify(extra) });
    assert.equal(s.recovered, false, JSON.stringify(extra));
    assert.equal(typeof s.id, 'string');
    s.close();
  }
  // its own pid with a bad offset: no recovery, a new session
  const doc = await createDocument(['a']);
  const ben = newUser('Ben');
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, doc.tab('a'), 'viewer'));
  ok(await join(b, doc.tab('a'), 'viewer'));
  const aid = a.id;
  await lose(a, b);
  a._lastOffset = 'not a number';
  await reconnect(a);
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, aid);
  a.close();
  b.close();
});

test('more missed events than a session keeps: no recovery', async () => {
  const { plan, a, b } = await twoTabs();
  const aid = a.id;
  await lose(a, b);
  // 6 x 22 joins and leaves: 264 events for Anna, within each socket's rate limit
  const others = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => connect(newUser(`Visitor ${i}`))));
  await Promise.all(others.map(async (s) => {
    for (let i = 0; i < 22; i++) {
      ok(await join(s, plan, 'viewer'));
      ok(await emitAck(s, 'presence:leave', { resourceId: plan }));
    }
  }));
  for (const s of others) s.close();
  await reconnect(a);
  assert.equal(a.recovered, false);
  assert.notEqual(a.id, aid);
  a.close();
  b.close();
});

test('with collab.disconnect_grace = 0 there is nothing to recover: no pid, a loss ends the session', async () => {
  await setGrace(0);
  try {
    const doc = await createDocument(['a']);
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    await waitFor(a, 'session:ready');
    assert.equal(a._pid, undefined, 'no pid in the CONNECT reply');
    ok(await join(a, doc.tab('a'), 'editor'));
    ok(await join(b, doc.tab('a'), 'viewer'));
    await waitFor(a, 'presence:joined', (e) => e.user.userId === ben.sub);
    const aid = a.id;
    const sinceB = mark(b);
    await lose(a, b);
    const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === doc.tab('a'), { since: sinceB });
    assert.equal(rel.reason, 'disconnected');
    await reconnect(a);
    assert.ok(!a.recovered, 'not recovered');
    assert.notEqual(a.id, aid);
    a.close();
    b.close();
  } finally {
    await setGrace(GRACE_MS);
  }
});
