// Worker restart: pg_terminate_backend on the collab worker; the postmaster
// starts a new one, clients with reconnection reconnect by themselves, the
// dead connections are detached, their locks kept for collab.disconnect_grace
// (lock:suspended), a holder who joins again as editor takes the lock over
// (lock:resumed), and the new worker serves join/acquire/save.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  newUser, connect, join, save, ok, createDocument, q, waitFor, mark, ref, teardown, eventually, locksOn,
} from './helpers.mjs';

const listener = new pg.Client({ database: 'postgres' });
after(async () => {
  await listener.end().catch(() => {});
  await teardown();
});

test('terminated worker: restarted, clients reconnect, old locks kept for their holders, new worker serves', { timeout: 60000 }, async () => {
  const doc = await createDocument(['a', 'b']);
  const [ra, rb] = [doc.tab('a'), doc.tab('b')];
  const events = [];
  const waiters = new Set();
  await listener.connect();
  listener.on('notification', (n) => {
    if (n.channel !== 'collab_events') return;
    const body = JSON.parse(n.payload);
    assert.equal(body.v, 1);
    for (const e of body.events) {
      events.push(e);
      for (const w of [...waiters]) w(e);
    }
  });
  await listener.query('LISTEN collab_events');
  const nextEvent = (pred, what, timeout = 15000) => {
    const found = events.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = (e) => { if (pred(e)) { waiters.delete(w); clearTimeout(t); resolve(e); } };
      const t = setTimeout(() => { waiters.delete(w); reject(new Error(`no NOTIFY event ${what} within ${timeout} ms; got ${JSON.stringify(events.slice(-10))}`)); }, timeout);
      waiters.add(w);
    });
  };

  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const reconnecting = { reconnection: true, reconnectionDelay: 200, reconnectionDelayMax: 1000, randomizationFactor: 0 };
  const a = await connect(anna, reconnecting);
  const b = await connect(ben, reconnecting);
  assert.equal(ok(await join(a, ra, 'editor')).role, 'editor');
  assert.equal(ok(await join(b, rb, 'editor')).role, 'editor');
  ok(await save(a, ra, 'before the restart'));
  const oldIds = [a.id, b.id];
  const oldPids = (await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'")).map((r) => r.pid);
  assert.ok(oldPids.length >= 1, 'a collab worker is running');
  const [ma, mb] = [mark(a), mark(b)];

  const terminated = await q("SELECT pg_terminate_backend(pid) AS t FROM pg_stat_activity WHERE backend_type = 'collab worker'");
  assert.ok(terminated.every((r) => r.t === true));

  // the old connections' locks are kept for them: suspended, not released
  for (const [rid, user] of [[ra, anna], [rb, ben]]) {
    const e = await nextEvent((x) => x.event === 'lock:suspended' && x.resourceId === rid, `lock:suspended on ${rid}`);
    assert.deepEqual(e.holder, ref(user));
    assert.equal('holderId' in e, false, 'NOTIFY listeners never learn connection ids');
  }
  const left = await nextEvent((x) => x.event === 'presence:left' && x.resourceId === ra, `presence:left on ${ra}`);
  assert.deepEqual(left.user.userId, anna.sub);
  // NOTIFY listeners never learn connection ids (docs/access-control.md)
  assert.equal('connectionId' in left.user, false);

  // both clients notice and reconnect by themselves
  await waitFor(a, '$disconnect', () => true, { since: ma, timeout: 10000 });
  await waitFor(b, '$disconnect', () => true, { since: mb, timeout: 10000 });
  await waitFor(a, '$connect', () => true, { since: ma, timeout: 20000 });
  await waitFor(b, '$connect', () => true, { since: mb, timeout: 20000 });
  assert.ok(a.connected && b.connected);
  assert.ok(!oldIds.includes(a.id) && !oldIds.includes(b.id), 'new connection ids after reconnecting');

  const newPids = (await q("SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'")).map((r) => r.pid);
  assert.ok(newPids.length >= 1, 'the worker was restarted');
  assert.ok(newPids.every((p) => !oldPids.includes(p)), `new worker pid(s) ${newPids} differ from ${oldPids}`);
  assert.deepEqual((await locksOn(ra)).map((l) => l.holder_id), [oldIds[0]]);
  assert.deepEqual((await locksOn(rb)).map((l) => l.holder_id), [oldIds[1]]);
  assert.deepEqual(await q('SELECT connection_id, detached_at IS NOT NULL AS detached FROM collab.connections WHERE connection_id = ANY ($1) ORDER BY user_id', [oldIds]),
    oldIds.map((id) => ({ connection_id: id, detached: true })));
  assert.deepEqual(await q('SELECT * FROM collab.presence WHERE connection_id = ANY ($1)', [oldIds]), []);
  assert.deepEqual(await q(`SELECT DISTINCT reason FROM collab.audit_log WHERE resource_id IN ($1, $2) AND action <> 'grant'`, [ra, rb]),
    [{ reason: 'disconnected' }], 'suspended, nothing released');
  const rows = await q('SELECT connection_id, user_id, worker_pid FROM collab.connections WHERE connection_id = ANY ($1) ORDER BY user_id', [[a.id, b.id]]);
  assert.equal(rows.length, 2);
  assert.ok(rows.every((r) => newPids.includes(r.worker_pid)), JSON.stringify(rows));

  // the new worker serves: Anna takes tab:a over, Ben is downgraded
  const aj = ok(await join(a, ra, 'editor'));
  assert.equal(aj.role, 'editor');
  const resumed = await nextEvent((x) => x.event === 'lock:resumed' && x.resourceId === ra, `lock:resumed on ${ra}`);
  assert.deepEqual(resumed.holder, ref(anna));
  assert.deepEqual((await locksOn(ra)).map((l) => l.holder_id), [a.id]);
  const bj = ok(await join(b, ra, 'editor'));
  assert.equal(bj.role, 'viewer');
  assert.deepEqual(bj.lock.holder, ref(anna));
  const denied = await waitFor(b, 'lock:denied', (e) => e.resourceId === ra, { since: mb });
  assert.deepEqual(denied.holder, ref(anna));
  assert.deepEqual(await save(a, ra, 'after the restart', { baseVersion: 1 }), { ok: true, version: 2 });
  const saved = await waitFor(b, 'doc:saved', (e) => e.resourceId === ra && e.version === 2);
  assert.deepEqual(saved.savedBy, ref(anna));
  a.close();
  b.close();
});
