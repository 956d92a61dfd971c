// The holder's grace: a lock holder whose connection is lost uncleanly keeps
// the lock for collab.disconnect_grace (lock:suspended to the room); nobody
// else takes it or saves meanwhile; the same user joining again as editor
// from a new connection takes it over (lock:resumed, a new token); a holder
// who does not come back loses it at the end of the grace (lock:released,
// reason "disconnected") and a queued lock:request is served then.  A clean
// end (socket.disconnect(), a close packet, a DISCONNECT) releases at once,
// as does every loss with collab.disconnect_grace = 0.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ISO_RE, eventually, newUser, connect, tokenFor, join, acquire, save, ok, fails, emitAck, createDocument, q,
  waitFor, received, mark, ref, killSocket, killed, rawConnect, teardown, resourceRow, locksOn, setConf,
  resetConf, setGrace, waitForLockTtl, sleep, setWorkerConf, resetWorkerConf,
} from './helpers.mjs';

const GRACE_MS = 2000;
// how late the sweep may end a grace (collab.sweep_interval = 200ms, and a
// loaded machine)
const SWEEP_SLACK_MS = 1500;

before(() => setGrace(GRACE_MS));
after(async () => {
  await resetWorkerConf('collab.disconnect_grace', 'collab.lock_ttl');
  await teardown();
});

const request = (s, resourceId) => emitAck(s, 'lock:request', { resourceId });

/** Anna holds the one tab of a new document (and has saved v1); Ben watches. */
async function heldTab() {
  const doc = await createDocument(['notes']);
  const rid = doc.tab('notes');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  const held = ok(await join(a, rid, 'editor'));
  assert.equal(held.role, 'editor');
  assert.equal(ok(await save(a, rid, 'by Anna')).version, 1);
  ok(await join(b, rid, 'viewer'));
  return { doc, rid, anna, ben, a, b, token: held.lock.token };
}

/** The lock:suspended the watcher gets when the holder's connection goes. */
async function suspendedFor(watcher, rid, holder, since) {
  const e = await waitFor(watcher, 'lock:suspended', (x) => x.resourceId === rid, { since, timeout: 5000 });
  const at = Date.now();
  assert.deepEqual(Object.keys(e).sort(), ['expiresAt', 'holder', 'resourceId', 'until']);
  assert.deepEqual(e.holder, ref(holder));
  assert.match(e.until, ISO_RE);
  assert.match(e.expiresAt, ISO_RE);
  const left = Date.parse(e.until) - at;
  assert.ok(left > GRACE_MS - 1000 && left <= GRACE_MS, `until is collab.disconnect_grace from now: ${left} ms left`);
  return e;
}

test('a cut connection: lock:suspended to the room; the lock stays the holder\'s; nobody else saves', async () => {
  const { rid, anna, ben, a, b, token } = await heldTab();
  const aid = a.id;
  const since = mark(b);
  await killSocket(a);
  const sus = await suspendedFor(b, rid, anna, since);
  const left = await waitFor(b, 'presence:left', (e) => e.resourceId === rid && e.user.connectionId === aid, { since });
  assert.equal(killed(left.reason), 'disconnected');
  // still Anna's, suspended, her connection detached
  const [lock] = await q('SELECT holder_id, user_id, suspended_until FROM collab.locks WHERE resource_id = $1', [rid]);
  assert.deepEqual({ holder: lock.holder_id, user: lock.user_id }, { holder: aid, user: anna.sub });
  assert.ok(Math.abs(lock.suspended_until.getTime() - Date.parse(sus.until)) <= 1, 'collab.locks shows the same end');
  const [conn] = await q('SELECT detached_at IS NOT NULL AS detached, rooms FROM collab.connections WHERE connection_id = $1', [aid]);
  assert.deepEqual(conn, { detached: true, rooms: [] });
  assert.deepEqual(await q('SELECT token FROM collab.leases WHERE resource_id = $1', [rid]), [{ token: String(token) }]);

  // Ben can neither take it nor save; a join as editor makes him a viewer
  const denied = fails(await acquire(b, rid), 'LOCK_HELD');
  assert.deepEqual(denied.lock.holder, ref(anna));
  assert.equal(denied.lock.suspendedUntil, sus.until);
  assert.equal('token' in denied.lock, false);
  fails(await save(b, rid, 'by Ben'), 'LOCK_NOT_HELD');
  fails(await save(b, rid, 'by Ben', { token }), 'LOCK_NOT_HELD');
  const rejoin = ok(await join(b, rid, 'editor'));
  assert.equal(rejoin.role, 'viewer');
  assert.equal(rejoin.lock.suspendedUntil, sus.until);
  assert.deepEqual(await resourceRow(rid), { content: 'by Anna', version: '1', saved_by: anna.sub, saved_by_name: 'Anna' });
  assert.equal(received(b, 'lock:released', (e) => e.resourceId === rid, since).length, 0);
  b.close();
});

test('the holder does not come back: lock:released "disconnected" at the end of the grace, a queued request served then', async () => {
  const { rid, anna, ben, a, b } = await heldTab();
  const since = mark(b);
  await killSocket(a);
  const sus = await suspendedFor(b, rid, anna, since);
  // asked during the grace: queued for the holder, who is not there to answer
  const asked = ok(await request(b, rid));
  assert.equal(asked.requested, true);
  assert.deepEqual(asked.lock.holder, ref(anna));
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since, timeout: GRACE_MS + 5000 });
  const releasedAt = Date.now();
  assert.deepEqual(rel.previousHolder, ref(anna));
  assert.equal(rel.reason, 'disconnected');
  assert.ok(Date.parse(rel.releasedAt) >= Date.parse(sus.until), `released (${rel.releasedAt}) not before the grace ended (${sus.until})`);
  assert.ok(releasedAt <= Date.parse(sus.until) + SWEEP_SLACK_MS, 'released once the grace ended');
  // the hand-off: Ben's own copy carries the token
  const mine = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid, { since });
  assert.deepEqual(mine.holder, ref(ben));
  assert.equal(typeof mine.token, 'number');
  assert.deepEqual((await locksOn(rid)).map((l) => [l.user_id, l.holder_id]), [[ben.sub, b.id]]);
  assert.deepEqual(ok(await save(b, rid, 'by Ben', { token: mine.token, baseVersion: 1 })), { ok: true, version: 2 });
  assert.deepEqual((await q(`SELECT action, reason FROM collab.audit_log WHERE resource_id = $1 AND user_id = $2
                             AND action IN ('grant', 'suspend', 'release') ORDER BY id`, [rid, anna.sub]))
    .map((r) => (r.action === 'suspend' ? { ...r, reason: killed(r.reason) } : r)),
  [{ action: 'grant', reason: null }, { action: 'suspend', reason: 'disconnected' }, { action: 'release', reason: 'disconnected' }]);
  b.close();
});

test('the same user joins again as editor from a new connection: takes the lock over with a new token, lock:resumed', async () => {
  const { rid, anna, a, b, token } = await heldTab();
  const aid = a.id;
  const since = mark(b);
  await killSocket(a);
  const sus = await suspendedFor(b, rid, anna, since);
  const a2 = await connect(anna, { label: 'Anna again' });
  const back = ok(await join(a2, rid, 'editor'));
  assert.equal(back.role, 'editor');
  assert.deepEqual(back.lock.holder, ref(anna));
  assert.equal(typeof back.lock.token, 'number');
  assert.ok(back.lock.token > token, `a new token (${back.lock.token}) above the old one (${token})`);
  assert.equal('suspendedUntil' in back.lock, false);
  assert.equal(back.resource.content, 'by Anna');
  const resumed = await waitFor(b, 'lock:resumed', (e) => e.resourceId === rid, { since });
  assert.deepEqual(Object.keys(resumed).sort(), ['expiresAt', 'holder', 'resourceId']);
  assert.deepEqual(resumed.holder, ref(anna));
  assert.equal(resumed.expiresAt, back.lock.expiresAt);
  assert.equal(received(b, 'lock:acquired', (e) => e.resourceId === rid, since).length, 0, 'no lock:acquired for a takeover');
  assert.deepEqual((await locksOn(rid)).map((l) => l.holder_id), [a2.id]);
  assert.deepEqual(await q('SELECT suspended_until FROM collab.locks WHERE resource_id = $1', [rid]), [{ suspended_until: null }]);
  // the new connection saves; the old token is dead
  fails(await save(a2, rid, 'with the old token', { token }), 'LOCK_NOT_HELD');
  assert.deepEqual(ok(await save(a2, rid, 'by Anna, back', { baseVersion: 1 })), { ok: true, version: 2 });
  assert.deepEqual((await q(`SELECT action, holder_id, reason FROM collab.audit_log WHERE resource_id = $1
                             AND action IN ('grant', 'suspend', 'release') ORDER BY id`, [rid]))
    .map((r) => (r.action === 'suspend' ? { ...r, reason: killed(r.reason) } : r)), [
    { action: 'grant', holder_id: aid, reason: null },
    { action: 'suspend', holder_id: aid, reason: 'disconnected' },
    { action: 'release', holder_id: aid, reason: 'takeover' },
    { action: 'grant', holder_id: a2.id, reason: 'takeover' },
  ]);
  // the end of the old grace changes nothing
  await sleep(Math.max(0, Date.parse(sus.until) - Date.now()) + SWEEP_SLACK_MS);
  assert.equal(received(b, 'lock:released', (e) => e.resourceId === rid, since).length, 0);
  assert.deepEqual((await locksOn(rid)).map((l) => l.holder_id), [a2.id]);
  a2.close();
  b.close();
});

test('another user joining as editor during the grace does not take the lock over', async () => {
  const { rid, anna, ben, a, b } = await heldTab();
  const since = mark(b);
  await killSocket(a);
  await suspendedFor(b, rid, anna, since);
  const b2 = await connect(ben, { label: 'Ben again' });
  const j = ok(await join(b2, rid, 'editor'));
  assert.equal(j.role, 'viewer');
  assert.deepEqual(j.lock.holder, ref(anna));
  assert.equal(received(b, 'lock:resumed', () => true, since).length, 0);
  assert.deepEqual((await locksOn(rid)).map((l) => l.user_id), [anna.sub]);
  b.close();
  b2.close();
});

test('socket.io.engine.close(): on a WebSocket (a close, no close packet) it suspends the lock; on long-polling it sends a close packet, a clean end', async () => {
  const { rid, anna, a, b } = await heldTab();
  const since = mark(b);
  const polling = a.io.engine.transport.name === 'polling';
  a.io.engine.close();
  if (polling) {
    const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since });
    assert.equal(rel.reason, 'disconnected');
    assert.equal(received(b, 'lock:suspended', () => true, since).length, 0);
  } else {
    await suspendedFor(b, rid, anna, since);
  }
  b.close();
});

test('a holder that stops answering pings: presence:left "timeout" and lock:suspended', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ghost] = [newUser('Anna'), newUser('Ghost')];
  const a = await connect(anna);
  ok(await join(a, rid));
  const since = mark(a);
  const { client, sid } = await rawConnect(tokenFor(ghost), { autoPong: false });
  const ack = await client.emitAck(1, 'presence:join', { resourceId: rid, mode: 'editor' });
  assert.equal(ack.role, 'editor', JSON.stringify(ack));
  await client.waitClosed(8000);
  const left = await waitFor(a, 'presence:left', (e) => e.resourceId === rid && e.user.connectionId === sid, { since });
  assert.equal(left.reason, 'timeout');
  await suspendedFor(a, rid, ghost, since);
  assert.deepEqual(await q(`SELECT reason FROM collab.audit_log WHERE resource_id = $1 AND action = 'suspend'`, [rid]),
    [{ reason: 'timeout' }]);
  a.close();
});

test('a clean end releases at once: socket.disconnect(), a close packet, a DISCONNECT', async () => {
  for (const how of ['socket.disconnect()', 'close packet "1"', 'DISCONNECT "41"']) {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const [anna, holder] = [newUser('Anna'), newUser('Holder')];
    const a = await connect(anna);
    ok(await join(a, rid));
    const since = mark(a);
    const t0 = Date.now();
    if (how === 'socket.disconnect()') {
      const h = await connect(holder);
      ok(await join(h, rid, 'editor'));
      h.disconnect();
    } else {
      const { client } = await rawConnect(tokenFor(holder), { autoPong: true });
      const ack = await client.emitAck(1, 'presence:join', { resourceId: rid, mode: 'editor' });
      assert.equal(ack.role, 'editor', JSON.stringify(ack));
      client.send(how.includes('41') ? '41' : '1');
    }
    const rel = await waitFor(a, 'lock:released', (e) => e.resourceId === rid, { since });
    assert.ok(Date.now() - t0 < GRACE_MS, `${how}: released before a grace could end`);
    assert.deepEqual(rel.previousHolder, ref(holder));
    assert.equal(rel.reason, 'disconnected', how);
    assert.equal(received(a, 'lock:suspended', () => true, since).length, 0, `${how}: no lock:suspended`);
    assert.deepEqual(await locksOn(rid), [], how);
    a.close();
  }
});

test('the TTL keeps running during the grace: a lease that passes it expires (lock:expired), not released', async () => {
  const ttl = 1500;
  await setConf('collab.lock_ttl', `${ttl}ms`);
  await setGrace(4000);
  try {
    const doc = await createDocument(['a', 'probe']);
    const rid = doc.tab('a');
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    await waitForLockTtl(a, doc.tab('probe'), ttl);
    const held = ok(await join(a, rid, 'editor'));
    ok(await join(b, rid));
    const since = mark(b);
    await killSocket(a);
    const sus = await waitFor(b, 'lock:suspended', (e) => e.resourceId === rid, { since });
    assert.equal(sus.expiresAt, held.lock.expiresAt);
    assert.ok(Date.parse(sus.expiresAt) < Date.parse(sus.until), 'the lease expires before its grace would end');
    const exp = await waitFor(b, 'lock:expired', (e) => e.resourceId === rid, { since, timeout: 5000 });
    assert.deepEqual(exp.previousHolder, ref(anna));
    assert.equal(exp.expiredAt, held.lock.expiresAt);
    assert.ok(Date.now() < Date.parse(sus.until), 'expired before the grace ended');
    assert.deepEqual(await locksOn(rid), []);
    assert.equal(received(b, 'lock:released', (e) => e.resourceId === rid, since).length, 0);
    b.close();
  } finally {
    await resetConf('collab.lock_ttl');
    await setGrace(GRACE_MS);
  }
});

test('with collab.disconnect_grace = 0 a lost connection releases at once', async () => {
  await setGrace(0);
  try {
    const { rid, anna, a, b } = await heldTab();
    const aid = a.id;
    const since = mark(b);
    await killSocket(a);
    const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since });
    assert.deepEqual(rel.previousHolder, ref(anna));
    assert.equal(rel.reason, 'disconnected');
    assert.equal(received(b, 'lock:suspended', () => true, since).length, 0);
    assert.deepEqual(await locksOn(rid), []);
    assert.deepEqual(await q('SELECT * FROM collab.connections WHERE connection_id = $1', [aid]), []);
    b.close();
  } finally {
    await setGrace(GRACE_MS);
  }
});

test('at collab.max_connections_per_user, a new connection ends the user\'s oldest lost one instead of being refused', async () => {
  await setWorkerConf('collab.max_connections_per_user', '2');
  try {
    const { rid, anna, a, b } = await heldTab();
    const a2 = await connect(anna, { label: 'Anna, second tab' });
    const since = mark(b);
    await killSocket(a);
    await killSocket(a2);
    await suspendedFor(b, rid, anna, since);
    const lost = await eventually(async () => {
      const rows = await q('SELECT connection_id FROM collab.connections WHERE user_id = $1 AND detached_at IS NOT NULL ORDER BY detached_at', [anna.sub]);
      return rows.length === 2 && rows.map((r) => r.connection_id);
    }, 'both of Anna\'s connections are detached');
    const ids = async () => (await q('SELECT connection_id FROM collab.connections WHERE user_id = $1 ORDER BY connected_at', [anna.sub]))
      .map((r) => r.connection_id);
    // a third ends the oldest lost one, a fourth the other; Anna's lock goes with hers
    const a3 = await connect(anna, { label: 'Anna, back' });
    assert.deepEqual(await ids(), [lost[1], a3.id], `${lost[0]} was ended`);
    const a4 = await connect(anna, { label: 'Anna, in a second tab again' });
    assert.deepEqual(await ids(), [a3.id, a4.id], `${lost[1]} was ended`);
    const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since });
    assert.equal(rel.reason, 'disconnected');
    assert.deepEqual(await locksOn(rid), []);
    // with the limit reached by connections that are there, one more is refused
    const err = await connect(anna, { label: 'Anna, one too many' }).catch((e) => e);
    assert.equal(err.connectError?.data?.code, 'RATE_LIMITED', String(err));
    a3.close();
    a4.close();
    b.close();
  } finally {
    await resetWorkerConf('collab.max_connections_per_user');
  }
});
