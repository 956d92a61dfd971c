// Presence: join/leave, presence:state/joined/left, routing between a
// document and its tabs, and cleanup when a connection closes, is killed
// or stops answering pings.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ISO_RE, newUser, connect, tokenFor, join, leave, acquire, renew, release, save, ok, fails,
  createDocument, q, waitFor, received, mark, ref, killSocket, rawConnect, teardown,
  assertPresenceUser, eventually, waitDisconnect, DEFAULT_TIMEOUT, setGrace, resetConf,
} from './helpers.mjs';

after(teardown);

const byConn = (users) => Object.fromEntries(users.map((p) => [p.connectionId, p]));

test('join as viewer: ack {ok, role, lock:null, users}, presence:state, collab.presence row', async () => {
  const doc = await createDocument(['diagnosis']);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Anna');
  const a = await connect(anna);
  const ack = ok(await join(a, rid, 'viewer'));
  assert.equal(ack.role, 'viewer');
  assert.equal(ack.lock, null);
  assert.equal(ack.users.length, 1);
  assertPresenceUser(ack.users[0], { user: anna, socket: a, role: 'viewer', resourceId: rid }, 'ack.users[0]');
  const state = await waitFor(a, 'presence:state', (e) => e.resourceId === rid);
  assert.deepEqual(state.users, ack.users);
  const rows = await q('SELECT resource_id, connection_id, user_id, username, role FROM collab.presence WHERE resource_id = $1', [rid]);
  assert.deepEqual(rows, [{ resource_id: rid, connection_id: a.id, user_id: anna.sub, username: 'Anna', role: 'viewer' }]);
  const [conn] = await q('SELECT rooms FROM collab.connections WHERE connection_id = $1', [a.id]);
  assert.deepEqual(conn.rooms, [rid]);
  a.close();
});

test('a second joiner: the room gets presence:joined, the joiner sees both users', async () => {
  const doc = await createDocument(['notes']);
  const rid = doc.tab('notes');
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid, 'viewer'));
  const ack = ok(await join(b, rid, 'viewer'));
  const users = byConn(ack.users);
  assert.equal(ack.users.length, 2);
  assertPresenceUser(users[a.id], { user: anna, socket: a, role: 'viewer', resourceId: rid }, 'Anna in Ben\'s ack');
  assertPresenceUser(users[b.id], { user: ben, socket: b, role: 'viewer', resourceId: rid }, 'Ben in Ben\'s ack');
  const state = await waitFor(b, 'presence:state', (e) => e.resourceId === rid);
  assert.equal(state.users.length, 2);
  const joined = await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user?.connectionId === b.id);
  assertPresenceUser(joined.user, { user: ben, socket: b, role: 'viewer', resourceId: rid }, 'presence:joined.user');
  a.close();
  b.close();
});

/*
 * A batch's replies are held while its events go out to the room, and the
 * requester's own events queue behind its reply: the ack must still come
 * first on the requester's socket.  The ack callback runs when the ack
 * packet is processed, so the log at that moment holds exactly what arrived
 * before it.
 */
function emitLogged(socket, event, payload) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${socket.__label}: no ack to ${event}`)), 5000);
    const since = mark(socket);
    socket.emit(event, payload, (ack) => {
      clearTimeout(timer);
      resolve({ ack, before: socket.__log.slice(since).map((e) => e.event), since });
    });
  });
}

test('the requester gets its ack before the events of its own request, which follow in order', async () => {
  const doc = await createDocument(['order']);
  const rid = doc.tab('order');
  const a = await connect(newUser('Anna'));
  const b = await connect(newUser('Ben'));
  ok(await join(a, rid, 'viewer'));
  const j = await emitLogged(b, 'presence:join', { resourceId: rid, mode: 'editor' });
  assert.equal(j.ack.ok, true, JSON.stringify(j.ack));
  assert.equal(j.ack.role, 'editor');
  assert.deepEqual(j.before, [], 'nothing for Ben before his join\'s ack');
  await waitFor(b, 'presence:joined', (e) => e.resourceId === rid && e.user?.connectionId === b.id, { since: j.since });
  const acquired = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid, { since: j.since });
  assert.equal(acquired.token, j.ack.lock.token, 'the holder\'s copy carries the ack\'s token');
  const seen = b.__log.slice(j.since).map((e) => e.event).filter((e) => e.startsWith('presence:') || e.startsWith('lock:'));
  assert.deepEqual(seen, ['presence:state', 'lock:acquired', 'presence:joined'], 'Ben\'s events after the ack');
  // the room got the same events
  await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user?.connectionId === b.id);
  const forAnna = await waitFor(a, 'lock:acquired', (e) => e.resourceId === rid);
  assert.equal(forAnna.token, undefined, 'a viewer never sees the token');

  const r = await emitLogged(b, 'lock:release', { resourceId: rid });
  assert.deepEqual(r.ack, { ok: true });
  assert.deepEqual(r.before, [], 'nothing for Ben before his release\'s ack');
  await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since: r.since });
  a.close();
  b.close();
});

test('a join whose user list cannot be read: the joiner is disconnected and cleaned up, the room carries on', async () => {
  const doc = await createDocument(['ul']);
  const rid = doc.tab('ul');
  const a = await connect(newUser('Anna'));
  const b = await connect(newUser('Ben'));
  ok(await join(a, rid, 'viewer'));
  const bId = b.id;
  // the worker reads the room's users after the join's commit; make that read fail
  await q('ALTER FUNCTION collab._room_users(text) RENAME TO _room_users_away');
  let reason;
  try {
    const since = mark(b);
    b.emit('presence:join', { resourceId: rid, mode: 'viewer' }, () => assert.fail('no ack without the user list'));
    reason = await waitDisconnect(b, DEFAULT_TIMEOUT, since);
  } finally {
    await q('ALTER FUNCTION collab._room_users_away(text) RENAME TO _room_users');
  }
  assert.equal(reason, 'transport close');
  assert.equal(received(b, 'presence:state').length, 0, 'no presence:state without the list');
  // the join had committed: the room heard of it, then of the cleanup
  await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user?.connectionId === bId);
  const left = await waitFor(a, 'presence:left', (e) => e.resourceId === rid && e.user?.connectionId === bId);
  assert.equal(left.reason, 'disconnected');
  await eventually(async () => (await q('SELECT connection_id FROM collab.presence WHERE resource_id = $1', [rid]))
    .map((r) => r.connection_id).join() === a.id, 'only Anna left in the room');
  // and the next join works
  const c = await connect(newUser('Cleo'));
  const ack = ok(await join(c, rid, 'viewer'));
  assert.deepEqual(ack.users.map((u) => u.connectionId).sort(), [a.id, c.id].sort());
  a.close();
  c.close();
});

test('leave: {ok:true}, presence:left reason "left" to the room; not joined: NOT_JOINED', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid));
  ok(await join(b, rid));
  assert.deepEqual(await leave(b, rid), { ok: true });
  const left = await waitFor(a, 'presence:left', (e) => e.resourceId === rid && e.user?.connectionId === b.id);
  assert.equal(left.reason, 'left');
  assertPresenceUser(left.user, { user: ben, socket: b, role: 'viewer', resourceId: rid }, 'presence:left.user');
  assert.deepEqual(await q('SELECT connection_id FROM collab.presence WHERE resource_id = $1', [rid]), [{ connection_id: a.id }]);
  fails(await leave(b, rid), 'NOT_JOINED', 'leave twice');
  fails(await acquire(b, rid), 'NOT_JOINED', 'lock:acquire after leaving');
  fails(await renew(b, rid), 'NOT_JOINED', 'lock:renew after leaving');
  fails(await release(b, rid), 'NOT_JOINED', 'lock:release after leaving');
  fails(await save(b, rid, 'x'), 'NOT_JOINED', 'doc:save after leaving');
  a.close();
  b.close();
});

test('presence across a document and its tabs: the parent sees everyone, siblings do not see each other', async () => {
  const doc = await createDocument(['a', 'b']);
  const [pat, tina, tom, quinn] = [newUser('Pat'), newUser('Tina'), newUser('Tom'), newUser('Quinn')];
  const p = await connect(pat);
  const t1 = await connect(tina);
  const t2 = await connect(tom);
  ok(await join(p, doc.id, 'viewer'));

  const a1 = ok(await join(t1, doc.tab('a'), 'editor'));
  assert.equal(a1.role, 'editor');
  assert.deepEqual(a1.users.map((u) => u.connectionId), [t1.id], 'a tab\'s users are those of the tab (and its descendants) only');
  const a2 = ok(await join(t2, doc.tab('b'), 'viewer'));
  assert.deepEqual(a2.users.map((u) => u.connectionId), [t2.id], 'a sibling tab\'s user is not listed');

  // the parent sees joins to its tabs and locks on them
  const j1 = await waitFor(p, 'presence:joined', (e) => e.resourceId === doc.tab('a'));
  assertPresenceUser(j1.user, { user: tina, socket: t1, role: 'editor', resourceId: doc.tab('a') }, 'parent sees tab:a join');
  const j2 = await waitFor(p, 'presence:joined', (e) => e.resourceId === doc.tab('b'));
  assertPresenceUser(j2.user, { user: tom, socket: t2, role: 'viewer', resourceId: doc.tab('b') }, 'parent sees tab:b join');
  const acq = await waitFor(p, 'lock:acquired', (e) => e.resourceId === doc.tab('a'));
  assert.deepEqual(acq.holder, ref(tina));
  assert.equal('token' in acq, false, 'the parent\'s copy has no token');

  // a new joiner of the document is shown everyone in the document and its tabs
  const q1 = await connect(quinn);
  const aq = ok(await join(q1, doc.id, 'viewer'));
  const users = byConn(aq.users);
  assert.equal(aq.users.length, 4, JSON.stringify(aq.users));
  assertPresenceUser(users[p.id], { user: pat, socket: p, role: 'viewer', resourceId: doc.id });
  assertPresenceUser(users[t1.id], { user: tina, socket: t1, role: 'editor', resourceId: doc.tab('a') });
  assertPresenceUser(users[t2.id], { user: tom, socket: t2, role: 'viewer', resourceId: doc.tab('b') });
  assertPresenceUser(users[q1.id], { user: quinn, socket: q1, role: 'viewer', resourceId: doc.id });
  // presence about the document reaches the document's room, not its tabs
  await waitFor(p, 'presence:joined', (e) => e.resourceId === doc.id && e.user?.connectionId === q1.id);

  // Tom (tab:b) takes tab:b's lock: the marker after which nothing about
  // tab:a or the document's presence may have reached him
  ok(await acquire(t2, doc.tab('b')));
  await waitFor(t2, 'lock:acquired', (e) => e.resourceId === doc.tab('b'));
  await waitFor(p, 'lock:acquired', (e) => e.resourceId === doc.tab('b'));
  await waitFor(q1, 'lock:acquired', (e) => e.resourceId === doc.tab('b'));
  assert.deepEqual(received(t2, 'presence:joined', (e) => e.resourceId !== doc.tab('b')), [], 'no presence of others\' rooms for Tom');
  assert.deepEqual(received(t2, 'lock:acquired', (e) => e.resourceId === doc.tab('a')), [], 'no lock event of a sibling for Tom');
  // and Tina got nothing about tab:b
  ok(await save(t1, doc.tab('a'), 'marker'));
  await waitFor(t1, 'doc:saved', (e) => e.resourceId === doc.tab('a'));
  assert.deepEqual(received(t1, 'presence:joined', (e) => e.resourceId !== doc.tab('a')), [], 'no presence of others\' rooms for Tina');
  assert.deepEqual(received(t1, 'lock:acquired', (e) => e.resourceId === doc.tab('b')), [], 'no lock event of a sibling for Tina');

  // Tina leaves tab:a: the document's room hears presence:left and lock:released
  ok(await leave(t1, doc.tab('a')));
  for (const s of [p, q1]) {
    const left = await waitFor(s, 'presence:left', (e) => e.resourceId === doc.tab('a'));
    assert.equal(left.reason, 'left');
    assert.equal(left.user.connectionId, t1.id);
    const rel = await waitFor(s, 'lock:released', (e) => e.resourceId === doc.tab('a'));
    assert.deepEqual(rel.previousHolder, ref(tina));
    assert.equal(rel.reason, 'left');
  }
  const rows = await q(`SELECT resource_id, connection_id, role FROM collab.presence
    WHERE resource_id = $1 OR resource_id LIKE $1 || '/%' ORDER BY resource_id, connection_id`, [doc.id]);
  assert.deepEqual(rows, [
    { resource_id: doc.id, connection_id: p.id, role: 'viewer' },
    { resource_id: doc.id, connection_id: q1.id, role: 'viewer' },
    { resource_id: doc.tab('b'), connection_id: t2.id, role: 'editor' },
  ].sort((x, y) => (x.resource_id === y.resource_id
    ? (x.connection_id < y.connection_id ? -1 : 1)
    : (x.resource_id < y.resource_id ? -1 : 1))));
  for (const s of [p, t1, t2, q1]) s.close();
});

test('a connection in a document and one of its tabs gets each event once', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben, cleo] = [newUser('Anna'), newUser('Ben'), newUser('Cleo')];
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, doc.id));
  ok(await join(a, rid));
  ok(await join(b, rid, 'editor'));
  ok(await save(b, rid, 'one'));
  await waitFor(a, 'doc:saved', (e) => e.resourceId === rid);
  ok(await release(b, rid));
  await waitFor(a, 'lock:released', (e) => e.resourceId === rid);
  // a lock on the document reaches the tab's room too (descendant), once
  const c = await connect(cleo);
  const ca = ok(await join(c, doc.id, 'editor'));
  assert.equal(ca.role, 'editor');
  const docAcq = await waitFor(b, 'lock:acquired', (e) => e.resourceId === doc.id);
  assert.deepEqual(docAcq.holder, ref(cleo));
  await waitFor(a, 'lock:acquired', (e) => e.resourceId === doc.id);
  ok(await save(c, doc.id, 'marker'));
  await waitFor(a, 'doc:saved', (e) => e.resourceId === doc.id);
  await waitFor(b, 'doc:saved', (e) => e.resourceId === doc.id);

  const count = (s, ev, r) => received(s, ev, (e) => e.resourceId === r).length;
  assert.equal(count(a, 'lock:acquired', rid), 1, 'lock:acquired on the tab once');
  assert.equal(count(a, 'doc:saved', rid), 1, 'doc:saved on the tab once');
  assert.equal(count(a, 'lock:released', rid), 1, 'lock:released on the tab once');
  assert.equal(received(a, 'presence:joined', (e) => e.resourceId === rid && e.user?.connectionId === b.id).length, 1,
    'presence:joined of Ben on the tab once');
  assert.equal(count(a, 'lock:acquired', doc.id), 1, 'lock:acquired on the document once');
  assert.equal(count(a, 'doc:saved', doc.id), 1, 'doc:saved on the document once');
  assert.equal(count(b, 'lock:acquired', doc.id), 1);
  for (const s of [a, b, c]) s.close();
});

test('one user, two connections: two presence entries, the second editor request is downgraded', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const anna = newUser('Anna');
  const a1 = await connect(anna);
  const a2 = await connect(anna);
  assert.notEqual(a1.id, a2.id);
  assert.equal(ok(await join(a1, rid, 'editor')).role, 'editor');
  const ack = ok(await join(a2, rid, 'editor'));
  assert.equal(ack.role, 'viewer');
  assert.deepEqual(ack.lock.holder, ref(anna));
  assert.equal(ack.users.length, 2);
  const denied = await waitFor(a2, 'lock:denied', (e) => e.resourceId === rid);
  assert.deepEqual(denied.holder, ref(anna));
  a1.close();
  a2.close();
});

async function expectCleanup(watcher, rid, leaver, leaverSocketId, presenceReason) {
  const left = await waitFor(watcher, 'presence:left', (e) => e.resourceId === rid && e.user?.connectionId === leaverSocketId, 8000);
  assert.equal(left.reason, presenceReason, `presence:left reason: ${JSON.stringify(left)}`);
  assert.equal(left.user.userId, leaver.sub);
  const rel = await waitFor(watcher, 'lock:released', (e) => e.resourceId === rid);
  assert.deepEqual(rel.previousHolder, ref(leaver));
  assert.equal(rel.reason, 'disconnected', `lock:released reason: ${JSON.stringify(rel)}`);
  assert.deepEqual(await q('SELECT * FROM collab.locks WHERE resource_id = $1', [rid]), []);
  assert.deepEqual(await q('SELECT * FROM collab.presence WHERE connection_id = $1', [leaverSocketId]), []);
  assert.deepEqual(await q('SELECT * FROM collab.connections WHERE connection_id = $1', [leaverSocketId]), []);
  // the lock is free for the next editor
  const ack = ok(await acquire(watcher, rid));
  assert.equal(typeof ack.lock.token, 'number');
}

test('closing the socket: presence:left and lock:released with reason "disconnected"', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid));
  assert.equal(ok(await join(b, rid, 'editor')).role, 'editor');
  ok(await join(b, doc.id));
  const id = b.id;
  b.disconnect();
  await expectCleanup(a, rid, ben, id, 'disconnected');
  a.close();
});

// An unclean loss keeps the holder's lock for collab.disconnect_grace
// (ws_grace.test.mjs); without a grace it is released at once.
test('a killed socket (no close frame), collab.disconnect_grace = 0: presence:left and lock:released with reason "disconnected"', async () => {
  await setGrace(0);
  try {
    await killedSocket();
  } finally {
    await resetConf('collab.disconnect_grace');
  }
});

async function killedSocket() {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid));
  assert.equal(ok(await join(b, rid, 'editor')).role, 'editor');
  const id = b.id;
  await killSocket(b);
  await expectCleanup(a, rid, ben, id, 'disconnected');
  a.close();
}

test('a peer that stops answering pings, collab.disconnect_grace = 0: closed, presence:left reason "timeout", lock:released "disconnected"', async () => {
  await setGrace(0);
  try {
    await silentPeer();
  } finally {
    await resetConf('collab.disconnect_grace');
  }
});

async function silentPeer() {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ghost] = [newUser('Anna'), newUser('Ghost')];
  const a = await connect(anna);
  ok(await join(a, rid));
  const { client, sid } = await rawConnect(tokenFor(ghost), { autoPong: false });
  const ack = await client.emitAck(1, 'presence:join', { resourceId: rid, mode: 'editor' });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  assert.equal(ack.role, 'editor');
  await client.waitFrame('2', 5000);
  await client.waitClosed(8000);
  await expectCleanup(a, rid, ghost, sid, 'timeout');
  a.close();
}

test('a client that answers pings stays connected through several intervals', async () => {
  const doc = await createDocument(['a']);
  const u = newUser('Alive');
  const { client } = await rawConnect(tokenFor(u), { autoPong: true });
  const since = client.frames.length;
  // three pings at collab.ping_interval = 1s, each answered
  await eventually(() => client.frames.slice(since).filter((f) => f === '2').length >= 3, 'three pings received', 8000, 100);
  assert.equal(client.isClosed, false);
  const ack = await client.emitAck(7, 'presence:join', { resourceId: doc.tab('a'), mode: 'viewer' });
  assert.equal(ack.ok, true, JSON.stringify(ack));
  client.ws.close();
});
