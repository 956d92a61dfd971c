// Several worker processes on one port (collab.workers = 2): clients of
// different workers see one another's presence, locks and saves; the SQL
// API reaches both; events reach NOTIFY listeners once; expiry is announced
// once; /metrics sums the workers; a worker that stops detaches only its
// own connections (their locks kept for collab.disconnect_grace) while the
// other keeps serving.
//
// Needs a cluster with collab.workers = 2 (test/integration/workers.sh runs it).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import pg from 'pg';
import {
  WS_URL, newUser, connect, join, leave, acquire, release, save, ok, fails, createDocument, q,
  waitFor, received, mark, ref, teardown, resourceRow, locksOn, eventually, setConf, resetConf,
  emitAck, waitForLockTtl,
} from './helpers.mjs';

after(teardown);

const WORKERS = ['collab worker 1', 'collab worker 2'];

async function workerPids() {
  const rows = await q(`SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker' ORDER BY pid`);
  return rows.map((r) => r.pid);
}

async function workerOf(socket) {
  const rows = await q('SELECT worker, worker_pid FROM collab.connections WHERE connection_id = $1', [socket.id]);
  assert.equal(rows.length, 1, `connection ${socket.id} is registered`);
  return rows[0];
}

/*
 * A connected client of the given worker: the kernel picks the worker, so
 * connect until one lands there (each try lands on either with about even
 * odds) and close the others.
 */
async function connectOn(worker, user) {
  for (let i = 0; i < 64; i++) {
    const s = await connect(user, { label: `${user.name}@${worker}` });
    if ((await workerOf(s)).worker === worker) return s;
    s.close();
  }
  throw new Error(`no connection landed on ${worker} in 64 tries`);
}

before(async () => {
  await eventually(async () => (await workerPids()).length === 2, 'two collab workers run', 15000);
});

test('two worker processes listen on one port and share the clients', async () => {
  const pids = await workerPids();
  assert.equal(pids.length, 2);
  const a = await connectOn(WORKERS[0], newUser('Anna'));
  const b = await connectOn(WORKERS[1], newUser('Ben'));
  const wa = await workerOf(a);
  const wb = await workerOf(b);
  assert.notEqual(wa.worker_pid, wb.worker_pid, 'served by two processes');
  assert.deepEqual([wa.worker_pid, wb.worker_pid].sort((x, y) => x - y), pids);
  a.close();
  b.close();
});

test('presence crosses workers: joins, the user list and leaving', async () => {
  const doc = await createDocument(['diagnosis']);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Ben Ortiz');
  const a = await connectOn(WORKERS[0], anna);
  const b = await connectOn(WORKERS[1], ben);
  const bid = b.id; // socket.io-client forgets it on disconnect

  ok(await join(a, rid, 'viewer'));
  const m = mark(a);
  const bj = ok(await join(b, rid, 'viewer'));
  assert.deepEqual(bj.users.map((u) => u.connectionId).sort(), [a.id, b.id].sort(), 'Ben sees Anna of the other worker');
  const joined = await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user.connectionId === b.id, { since: m });
  assert.deepEqual({ userId: joined.user.userId, username: joined.user.username, role: joined.user.role },
    { userId: ben.sub, username: ben.name, role: 'viewer' });
  // the document room hears of its tab's presence too, across workers
  const c = await connectOn(WORKERS[1], newUser('Cleo'));
  ok(await join(c, doc.id, 'viewer'));
  const mc = mark(c);
  const ml = mark(a);
  ok(await leave(b, rid));
  const left = await waitFor(a, 'presence:left', (e) => e.resourceId === rid && e.user.connectionId === b.id, { since: ml });
  assert.equal(left.user.userId, ben.sub);
  await waitFor(c, 'presence:left', (e) => e.resourceId === rid && e.user.connectionId === b.id, { since: mc });
  // a vanished client of worker 2 is cleaned up and announced on worker 1
  ok(await join(b, rid, 'viewer'));
  await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user.connectionId === b.id, { since: ml });
  const md = mark(a);
  b.io.engine.transport.ws._socket.destroy();
  const gone = await waitFor(a, 'presence:left', (e) => e.resourceId === rid && e.user.connectionId === bid, { since: md, timeout: 8000 });
  assert.equal(gone.user.userId, ben.sub);
  assert.equal(gone.reason, 'disconnected');
  assert.deepEqual(await q('SELECT connection_id FROM collab.ws_presence WHERE resource_id = $1', [rid]),
    [{ connection_id: a.id }]);
});

test('one lock per tab across workers; fencing refuses the other worker\'s client', async () => {
  const doc = await createDocument(['diagnosis', 'procedure']);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  const a = await connectOn(WORKERS[0], anna);
  const b = await connectOn(WORKERS[1], ben);
  ok(await join(b, rid, 'viewer'));

  const mb = mark(b);
  const aj = ok(await join(a, rid, 'editor'));
  assert.equal(aj.role, 'editor');
  const acq = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid, { since: mb });
  assert.deepEqual(acq.holder, ref(anna));
  assert.equal('token' in acq, false, 'the other worker\'s client gets no token');

  const denied = fails(await acquire(b, rid), 'LOCK_HELD');
  assert.deepEqual(denied.lock.holder, ref(anna), 'the denial names the holder of the other worker');
  assert.equal('token' in denied.lock, false);
  fails(await save(b, rid, 'Ben was here'), 'LOCK_NOT_HELD');
  assert.deepEqual(await resourceRow(rid), { content: '', version: '0', saved_by: null, saved_by_name: null },
    'the refused save changed nothing');

  // different tabs: both edit at once, one per worker
  ok(await join(b, doc.tab('procedure'), 'editor'));
  assert.deepEqual(ok(await save(b, doc.tab('procedure'), 'Ben on procedure')), { ok: true, version: 1 });
  const ms = mark(b);
  assert.deepEqual(ok(await save(a, rid, 'Anna on diagnosis')), { ok: true, version: 1 });
  const saved = await waitFor(b, 'doc:saved', (e) => e.resourceId === rid, { since: ms });
  assert.equal(saved.version, 1);
  assert.deepEqual(saved.savedBy, ref(anna));

  // release on worker 1, take-over on worker 2
  const mr = mark(b);
  ok(await release(a, rid));
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since: mr });
  assert.deepEqual(rel.previousHolder, ref(anna));
  assert.equal(rel.reason, 'released');
  const bl = ok(await acquire(b, rid));
  assert.deepEqual(bl.lock.holder, ref(ben));
  assert.equal(typeof bl.lock.token, 'number');
  fails(await save(a, rid, 'Anna after release'), 'LOCK_NOT_HELD');
  assert.deepEqual(ok(await save(b, rid, 'Ben on diagnosis')), { ok: true, version: 2 });
  assert.equal((await resourceRow(rid)).content, 'Ben on diagnosis');
  assert.deepEqual((await locksOn(rid)).map((l) => l.holder_id), [b.id]);
});

test('the SQL API reaches the clients of both workers, and NOTIFY listeners once', async () => {
  const doc = await createDocument(['t']);
  const rid = doc.tab('t');
  const a = await connectOn(WORKERS[0], newUser('Anna'));
  const b = await connectOn(WORKERS[1], newUser('Ben'));
  ok(await join(a, rid, 'viewer'));
  ok(await join(b, rid, 'viewer'));

  const listener = new pg.Client({ database: 'postgres' });
  await listener.connect();
  const heard = [];
  listener.on('notification', (n) => {
    for (const ev of JSON.parse(n.payload).events) if (ev.resourceId === rid) heard.push(ev.event);
  });
  await listener.query('LISTEN collab_events');
  try {
    const ma = mark(a);
    const mb = mark(b);
    const [{ token }] = await q(
      "SELECT (collab.acquire($1, 'u-sql', 'Backend Service', 'h-sql')).token AS token", [rid]);
    for (const s of [a, b]) {
      const ev = await waitFor(s, 'lock:acquired', (e) => e.resourceId === rid, { since: s === a ? ma : mb });
      assert.deepEqual(ev.holder, { userId: 'u-sql', username: 'Backend Service' });
    }
    await q('SELECT collab.release($1)', [token]);
    for (const s of [a, b]) await waitFor(s, 'lock:released', (e) => e.resourceId === rid, { since: s === a ? ma : mb });
    // a later event on the resource is heard after the earlier ones: count then
    await q("SELECT collab.acquire($1, 'u-sql2', 'Second Service', 'h-sql2')", [rid]);
    await eventually(() => heard.filter((e) => e === 'lock:acquired').length >= 2, 'both grants heard by LISTEN');
    assert.deepEqual(heard.filter((e) => e.startsWith('lock:')),
      ['lock:acquired', 'lock:released', 'lock:acquired'], 'each event forwarded exactly once');
  } finally {
    await listener.end();
  }
});

test('an expiry is announced once, to the clients of both workers', async () => {
  const doc = await createDocument(['t', 'probe']);
  const rid = doc.tab('t');
  const anna = newUser('Anna');
  const a = await connectOn(WORKERS[0], anna);
  const b = await connectOn(WORKERS[1], newUser('Ben'));
  ok(await join(b, rid, 'viewer'));
  await setConf('collab.lock_ttl', '1s');
  try {
    // worker 1 grants Anna's lock: wait until it has applied the setting
    await waitForLockTtl(a, doc.tab('probe'), 1000);
    const mb = mark(b);
    const ma = mark(a);
    ok(await join(a, rid, 'editor'));
    const exp = await waitFor(b, 'lock:expired', (e) => e.resourceId === rid, { since: mb, timeout: 8000 });
    assert.deepEqual(exp.previousHolder, ref(anna));
    await waitFor(a, 'lock:expired', (e) => e.resourceId === rid, { since: ma, timeout: 8000 });
    // events of one resource arrive in order: once this later grant is
    // heard, a second expiry would have been heard before it
    await q("SELECT collab.acquire($1, 'u-later', 'Later', 'h-later')", [rid]);
    for (const [s, m] of [[a, ma], [b, mb]]) {
      await waitFor(s, 'lock:acquired', (e) => e.resourceId === rid && e.holder.userId === 'u-later', { since: m });
      assert.equal(received(s, 'lock:expired', (e) => e.resourceId === rid, m).length, 1, `${s.__label}: one lock:expired`);
    }
    assert.deepEqual(await q(
      "SELECT count(*)::int AS n FROM collab.audit WHERE resource_id = $1 AND action = 'expire'", [rid]), [{ n: 1 }]);
  } finally {
    await resetConf('collab.lock_ttl');
  }
});

test('/metrics and /healthz count the connections of both workers', async () => {
  const s1 = await connectOn(WORKERS[0], newUser('M1'));
  const s2 = await connectOn(WORKERS[1], newUser('M2'));
  const metric = (text, name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
  // connections lost without a goodbye stay, detached, in no worker's count
  await eventually(async () => {
    const [{ n }] = await q('SELECT count(*)::int AS n FROM collab.connections WHERE detached_at IS NULL');
    const text = await (await fetch(`${WS_URL}/metrics`)).text();
    return metric(text, 'collab_workers') === 2 && metric(text, 'collab_connections') === n && n >= 2;
  }, 'collab_workers 2 and collab_connections equal to the registered connections');
  const health = await (await fetch(`${WS_URL}/healthz`)).json();
  const [{ n }] = await q('SELECT count(*)::int AS n FROM collab.connections WHERE detached_at IS NULL');
  assert.deepEqual(health, { status: 'ok', role: 'primary', worker: 'ok', database: 'ok', connections: n });
  s1.close();
  s2.close();
});

test('/healthz is ok from a worker that has committed nothing for longer than the health horizon', async () => {
  // worker 2 does not sweep (worker 1 does): with no client of its own busy,
  // it commits nothing.  The horizon is max(5 x collab.sweep_interval, 5 s).
  await new Promise((r) => setTimeout(r, 5500));
  const get = () => new Promise((resolve, reject) => {
    // a new connection each time (agent: false), which the kernel gives to either worker
    http.get(`${WS_URL}/healthz`, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: JSON.parse(body) }));
    }).on('error', reject);
  });
  const answers = [];
  for (let i = 0; i < 12; i++) answers.push(await get());
  for (const a of answers) {
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(a.body.database, 'ok');
  }
});

test('bursts of saves on both workers are acknowledged in order', async () => {
  // a burst of saves from clients on both workers, each acked in order
  const doc = await createDocument(['x', 'y']);
  const a = await connectOn(WORKERS[0], newUser('Anna'));
  const b = await connectOn(WORKERS[1], newUser('Ben'));
  ok(await join(a, doc.tab('x'), 'editor'));
  ok(await join(b, doc.tab('y'), 'editor'));
  const acks = await Promise.all([
    ...Array.from({ length: 20 }, (_, i) => emitAck(a, 'doc:save', { resourceId: doc.tab('x'), content: `a${i}` })),
    ...Array.from({ length: 20 }, (_, i) => emitAck(b, 'doc:save', { resourceId: doc.tab('y'), content: `b${i}` })),
  ]);
  const versions = Array.from({ length: 20 }, (_, i) => i + 1);
  assert.deepEqual(acks.slice(0, 20).map((x) => x.version), versions);
  assert.deepEqual(acks.slice(20).map((x) => x.version), versions);
  assert.deepEqual(await resourceRow(doc.tab('x')).then((r) => [r.content, r.version]), ['a19', '20']);
  assert.deepEqual(await resourceRow(doc.tab('y')).then((r) => [r.content, r.version]), ['b19', '20']);
});

test('a worker that stops detaches its own clients, their locks kept for the grace; the other keeps serving', async () => {
  const doc = await createDocument(['one', 'two']);
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  const a = await connectOn(WORKERS[0], anna);
  const b = await connectOn(WORKERS[1], ben);
  ok(await join(a, doc.tab('one'), 'editor'));
  ok(await join(b, doc.tab('two'), 'editor'));
  ok(await join(a, doc.tab('two'), 'viewer'));
  const { worker_pid: pid2 } = await workerOf(b);
  const bid = b.id;
  const ma = mark(a);

  assert.deepEqual(await q('SELECT pg_terminate_backend($1) AS ok', [pid2]), [{ ok: true }]);
  const sus = await waitFor(a, 'lock:suspended', (e) => e.resourceId === doc.tab('two'), { since: ma, timeout: 8000 });
  assert.deepEqual(sus.holder, ref(ben));
  await waitFor(b, '$disconnect', () => true, { timeout: 8000 });
  assert.deepEqual((await locksOn(doc.tab('two'))).map((l) => l.holder_id), [bid], 'worker 2\'s lock is kept for Ben');
  assert.deepEqual(await q('SELECT detached_at IS NOT NULL AS detached FROM collab.connections WHERE connection_id = $1', [bid]),
    [{ detached: true }]);
  assert.deepEqual((await locksOn(doc.tab('one'))).map((l) => l.holder_id), [a.id], 'worker 1\'s lock is kept');
  assert.ok(a.connected, 'worker 1\'s client stays connected');
  assert.deepEqual(ok(await save(a, doc.tab('one'), 'still editing')), { ok: true, version: 1 });
  // Ben, back on worker 1, takes his lock over, and leaves
  const bBack = await connectOn(WORKERS[0], ben);
  const back = ok(await join(bBack, doc.tab('two'), 'editor'));
  assert.equal(back.role, 'editor');
  const resumed = await waitFor(a, 'lock:resumed', (e) => e.resourceId === doc.tab('two'), { since: ma });
  assert.deepEqual(resumed.holder, ref(ben));
  assert.deepEqual((await locksOn(doc.tab('two'))).map((l) => l.holder_id), [bBack.id]);
  bBack.close();
  await waitFor(a, 'lock:released', (e) => e.resourceId === doc.tab('two'), { since: ma });

  // worker 2 comes back under a new pid and serves again
  await eventually(async () => {
    const pids = await workerPids();
    return pids.length === 2 && !pids.includes(pid2);
  }, 'worker 2 restarted', 15000);
  const b2 = await connectOn(WORKERS[1], ben);
  const mb2 = mark(b2);
  ok(await join(b2, doc.tab('two'), 'editor'));
  await waitFor(b2, 'lock:acquired', (e) => e.resourceId === doc.tab('two'), { since: mb2 });
  assert.deepEqual((await locksOn(doc.tab('two'))).map((l) => l.holder_id), [b2.id]);
});

