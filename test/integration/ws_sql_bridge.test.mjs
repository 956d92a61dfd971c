// What an application backend does through SQL reaches the sockets in the
// room: collab.acquire / collab.save / collab.release / collab.force_release
// from another session arrive as lock:acquired / doc:saved / lock:released.
// The views collab.connections and collab.presence show live sockets.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  ISO_RE, DEFAULT_TTL_MS, newUser, connect, join, acquire, save, ok, fails, createDocument, q, waitFor,
  received, ref, teardown, resourceRow, locksOn, eventually, pool, mark,
} from './helpers.mjs';

after(teardown);

const backend = { userId: 'svc-backend', username: 'Order Service' };

test('collab.acquire, collab.save, collab.release through SQL reach the room', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const anna = newUser('Anna');
  const a = await connect(anna);
  const p = await connect(newUser('Parent'));
  ok(await join(a, rid, 'viewer'));
  ok(await join(p, doc.id, 'viewer'));

  const [g] = await q('SELECT granted, token, expires_at FROM collab.acquire($1, $2, $3, $4)',
    [rid, backend.userId, backend.username, 'backend-conn-1']);
  assert.equal(g.granted, true);
  for (const s of [a, p]) {
    const e = await waitFor(s, 'lock:acquired', (x) => x.resourceId === rid);
    assert.deepEqual(e.holder, backend);
    assert.match(e.acquiredAt, ISO_RE);
    assert.equal(Date.parse(e.expiresAt) - Date.parse(e.acquiredAt), DEFAULT_TTL_MS);
    assert.equal('token' in e, false, `no socket learns a SQL holder's token: ${JSON.stringify(e)}`);
  }

  // the socket cannot take it
  const denied = fails(await acquire(a, rid), 'LOCK_HELD');
  assert.deepEqual(denied.lock.holder, backend);
  const d = await waitFor(a, 'lock:denied', (x) => x.resourceId === rid);
  assert.deepEqual(d.holder, backend);
  assert.deepEqual(d.requester, ref(anna));

  const [{ v }] = await q('SELECT collab.save($1, $2, $3) AS v', [rid, g.token, 'from the backend']);
  assert.equal(v, '1');
  for (const s of [a, p]) {
    const e = await waitFor(s, 'doc:saved', (x) => x.resourceId === rid);
    assert.equal(e.version, 1);
    assert.deepEqual(e.savedBy, backend);
    assert.match(e.savedAt, ISO_RE);
  }

  await q("SELECT collab.release($1, 'released')", [g.token]);
  for (const s of [a, p]) {
    const e = await waitFor(s, 'lock:released', (x) => x.resourceId === rid);
    assert.deepEqual(e.previousHolder, backend);
    assert.equal(e.reason, 'released');
  }
  // free now for the socket
  assert.equal(ok(await acquire(a, rid)).lock.holder.userId, anna.sub);
  assert.deepEqual(await q('SELECT user_id, holder_id FROM collab.locks WHERE resource_id = $1', [rid]),
    [{ user_id: anna.sub, holder_id: a.id }]);
  a.close();
  p.close();
});

test('collab.force_release of a socket\'s lock: lock:released reason "forced"; the socket can no longer save', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  const aj = ok(await join(a, rid, 'editor'));
  ok(await join(b, rid, 'viewer'));
  ok(await save(a, rid, 'Anna v1'));

  const [{ r }] = await q("SELECT collab.force_release($1, 'holder went home') AS r", [rid]);
  assert.equal(r, true);
  for (const s of [a, b]) {
    const e = await waitFor(s, 'lock:released', (x) => x.resourceId === rid);
    assert.deepEqual(e.previousHolder, ref(anna));
    assert.equal(e.reason, 'forced');
  }
  assert.deepEqual(await locksOn(rid), []);
  const before = await resourceRow(rid);
  const s1 = await save(a, rid, 'Anna after the force release');
  assert.equal(s1.ok, false, JSON.stringify(s1));
  assert.equal(s1.error.code, 'LOCK_NOT_HELD');
  const s2 = await save(a, rid, 'Anna with her old token', { token: aj.lock.token });
  assert.equal(s2.ok, false, JSON.stringify(s2));
  assert.ok(['LOCK_NOT_HELD', 'LOCK_EXPIRED'].includes(s2.error.code), JSON.stringify(s2));
  assert.deepEqual(await resourceRow(rid), before);
  // and the audit trail recorded the reason
  const [audit] = await q(`SELECT action, reason, user_id FROM collab.audit_log
    WHERE resource_id = $1 AND action = 'force_release'`, [rid]);
  assert.deepEqual(audit, { action: 'force_release', reason: 'holder went home', user_id: anna.sub });
  // Ben takes over
  assert.equal(ok(await acquire(b, rid)).lock.holder.userId, ben.sub);
  a.close();
  b.close();
});

test('a plain SQL UPDATE without the token is rejected while a socket holds the lock; nothing reaches the room', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid, 'editor'));
  ok(await join(b, rid, 'viewer'));
  const before = await resourceRow(rid);
  await assert.rejects(q("UPDATE collab.resources SET content = 'sneaky' WHERE id = $1", [rid]),
    (e) => /lock token/.test(e.message));
  assert.deepEqual(await resourceRow(rid), before);
  ok(await save(a, rid, 'marker'));
  await waitFor(b, 'doc:saved', (x) => x.resourceId === rid);
  assert.deepEqual(received(b, 'doc:saved', (x) => x.resourceId === rid).map((x) => x.version), [1]);
  a.close();
  b.close();
});

test('a rolled-back SQL transaction reaches no socket', async () => {
  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const a = await connect(newUser('Anna'));
  ok(await join(a, rid, 'viewer'));
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT collab.acquire($1, $2, $3, $4)', [rid, 'ghost', 'Ghost', 'ghost-conn']);
    await client.query('ROLLBACK');
  } finally {
    client.release();
  }
  await q('SELECT collab.acquire($1, $2, $3, $4)', [rid, backend.userId, backend.username, 'backend-2']);
  const e = await waitFor(a, 'lock:acquired', (x) => x.resourceId === rid);
  assert.deepEqual(e.holder, backend, 'the first lock:acquired is the committed one');
  assert.equal(received(a, 'lock:acquired', (x) => x.holder?.userId === 'ghost').length, 0);
  await q("SELECT collab.release_holder('backend-2', 'released')");
  a.close();
});

test('collab.connections and collab.presence show live sockets and their rooms', async () => {
  const doc = await createDocument(['a', 'b']);
  const anna = newUser('Anna');
  const a = await connect(anna, { extraHeaders: { origin: 'https://ui.example.org' } });
  ok(await join(a, doc.tab('a'), 'editor'));
  ok(await join(a, doc.tab('b'), 'viewer'));
  const [c] = await q('SELECT * FROM collab.connections WHERE connection_id = $1', [a.id]);
  assert.equal(c.user_id, anna.sub);
  assert.equal(c.username, anna.name);
  assert.equal(c.origin, 'https://ui.example.org');
  assert.ok(c.connected_at instanceof Date);
  assert.ok(c.worker_pid > 0);
  assert.deepEqual(c.rooms, [doc.tab('a'), doc.tab('b')]);
  const [{ pid }] = await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker' AND pid = $1", [c.worker_pid]);
  assert.equal(pid, c.worker_pid, 'worker_pid is a live collab worker');
  assert.deepEqual(await q(`SELECT resource_id, user_id, username, role FROM collab.presence
    WHERE connection_id = $1 ORDER BY resource_id`, [a.id]), [
    { resource_id: doc.tab('a'), user_id: anna.sub, username: anna.name, role: 'editor' },
    { resource_id: doc.tab('b'), user_id: anna.sub, username: anna.name, role: 'viewer' },
  ]);
  const id = a.id;
  a.close();
  await eventually(async () => (await q('SELECT 1 FROM collab.connections WHERE connection_id = $1', [id])).length === 0,
    'the closed socket leaves collab.connections');
  assert.deepEqual(await q('SELECT * FROM collab.presence WHERE connection_id = $1', [id]), []);
});

test('a stream of SQL saves from four sessions at once reaches the room and NOTIFY listeners whole and in order', async () => {
  // The worker is woken by the first of them and reads the rest on its own
  // (src/event_queue.c): none may be lost, repeated, reordered or left behind.
  const tabs = ['s0', 's1', 's2', 's3'];
  const N = 60;
  const doc = await createDocument(tabs);
  const p = await connect(newUser('Parent'));
  ok(await join(p, doc.id, 'viewer'));
  const listener = new pg.Client({ database: 'postgres' });
  await listener.connect();
  const notified = [];
  listener.on('notification', (n) => {
    for (const e of JSON.parse(n.payload).events) {
      if (e.event === 'doc:saved' && e.resourceId.startsWith(doc.id + '/')) notified.push(e);
    }
  });
  await listener.query('LISTEN collab_events');
  try {
    const leases = [];
    for (const t of tabs) {
      const [g] = await q('SELECT granted, token FROM collab.acquire($1, $2, $3, $4)',
        [doc.tab(t), backend.userId, backend.username, `backend-stream-${t}`]);
      assert.equal(g.granted, true);
      leases.push({ rid: doc.tab(t), token: g.token });
    }
    const since = mark(p);
    // one session per tab (the pool has four), each saving as fast as it can
    await Promise.all(leases.map(async ({ rid, token }) => {
      for (let i = 1; i <= N; i++) {
        const [{ v }] = await q('SELECT collab.save($1, $2, $3) AS v', [rid, token, `version ${i}`]);
        assert.equal(v, String(i));
      }
    }));
    const want = Array.from({ length: N }, (_, i) => i + 1);
    for (const { rid } of leases) {
      await waitFor(p, 'doc:saved', (x) => x.resourceId === rid && x.version === N, { since });
      assert.deepEqual(received(p, 'doc:saved', (x) => x.resourceId === rid, since).map((x) => x.version), want,
        `the room got every save of ${rid} once, in order`);
    }
    await eventually(() => notified.filter((x) => x.version === N).length === tabs.length,
      'the last save of every tab reaches the NOTIFY listener');
    for (const { rid } of leases) {
      assert.deepEqual(notified.filter((x) => x.resourceId === rid).map((x) => x.version), want,
        `the listener got every save of ${rid} once, in order`);
    }
  } finally {
    await listener.end();
    p.close();
  }
});
