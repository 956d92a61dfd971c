// Requests never wait in the worker's event loop (docs/design.md, "Requests
// never wait in the event loop"): a database session that holds what a
// request needs delays that request only; one still waiting after
// collab.request_timeout is answered BUSY and changed nothing, and a
// connection's later requests wait behind it.  Nobody else notices: in
// each case a bystander on a document of its own keeps renewing its lock
// and must be answered within 500 ms every time (its figures are printed).
//
// collab.request_timeout is 2 s here, to keep the file short.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import {
  newUser, connect, emitAck, ok, fails, join, save, createDocument, q, teardown, uniq,
  locksOn, setWorkerConf, resetWorkerConf, startTimedBystander, eventually, ref, metric, acquire,
} from './helpers.mjs';

const REQUEST_TIMEOUT_MS = 2000;
let bystander;
const roles = [];
const clients = [];

before(async () => {
  await setWorkerConf('collab.request_timeout', `${REQUEST_TIMEOUT_MS}ms`);
  bystander = await startTimedBystander('stall');
});
after(async () => {
  for (const c of clients) await c.end().catch(() => {});
  await resetWorkerConf('collab.request_timeout');
  for (const r of roles) await q(`DROP ROLE IF EXISTS ${r}`).catch(() => {});
  await teardown();
});

/** A database session of a login role of its own, with the given roles granted. */
async function session(grants = []) {
  const role = uniq('hostile').replace(/-/g, '_');
  await q(`CREATE ROLE ${role} LOGIN`);
  roles.push(role);
  for (const g of grants) await q(`GRANT ${g} TO ${role}`);
  const c = new pg.Client({ database: 'postgres', user: role });
  await c.connect();
  clients.push(c);
  return c;
}

const since = (t0) => performance.now() - t0;

test('a backend transaction holds a document for 10 s: requests on it wait, then BUSY; the same connection\'s next request waits behind; everyone else is served', { timeout: 60000 }, async () => {
  const doc = await createDocument(['a', 'b']);
  const other = await createDocument(['x']);
  const app = await session(['collab_app']);
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  const a = await connect(anna);
  const b = await connect(ben);

  await bystander.measure('a backend transaction holding a document for 10 s', async () => {
    await app.query('BEGIN');
    const [held] = (await app.query("SELECT granted FROM collab.acquire($1, 'u-app', 'App', 'h-app')", [doc.id])).rows;
    assert.equal(held.granted, true, 'the backend holds the document');
    const t0 = performance.now();
    const sleeping = app.query('SELECT pg_sleep(10)');

    // Anna asks for a tab of the held document, then for something else
    const blocked = emitAck(a, 'presence:join', { resourceId: doc.tab('a'), mode: 'editor' }, 10000)
      .then((ack) => ({ ack, ms: since(t0) }));
    const behind = emitAck(a, 'presence:join', { resourceId: other.tab('x'), mode: 'viewer' }, 10000)
      .then((ack) => ({ ack, ms: since(t0) }));
    // Ben, on another document, is served at once
    const tb = performance.now();
    assert.equal(ok(await join(b, other.tab('x'), 'editor')).role, 'editor');
    const benMs = since(tb);
    console.log(`# Ben's join of another document while the backend holds this one: ${benMs.toFixed(1)} ms`);
    assert.ok(benMs < 500, `Ben is served at once: ${benMs} ms`);

    const first = await blocked;
    fails(first.ack, 'BUSY', 'the join of a tab of the held document');
    console.log(`# the blocked join was answered BUSY after ${first.ms.toFixed(0)} ms`);
    assert.ok(first.ms >= REQUEST_TIMEOUT_MS - 100 && first.ms < REQUEST_TIMEOUT_MS + 2000,
      `BUSY after collab.request_timeout (${REQUEST_TIMEOUT_MS} ms): ${first.ms} ms`);
    const second = await behind;
    ok(second.ack, 'the request behind it, tried when its turn came');
    assert.ok(second.ms >= first.ms, `Anna's next request was answered after the blocked one (${second.ms} >= ${first.ms} ms)`);
    // the BUSY join changed nothing
    assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.presence WHERE resource_id = $1', [doc.tab('a')]), [{ n: 0 }]);
    assert.deepEqual(await locksOn(doc.tab('a')), []);

    // a lock request on the held document waits until the backend commits, then is answered
    await sleeping;
    const late = emitAck(a, 'presence:join', { resourceId: doc.tab('b'), mode: 'editor' }, 10000);
    await eventually(async () => (await metric('collab_requests_waiting')) >= 1, 'the late join is parked', 3000, 20);
    await app.query('COMMIT');
    const tc = performance.now();
    const lateAck = ok(await late, 'the join parked until the commit');
    const afterCommitMs = since(tc);
    console.log(`# the parked join was answered ${afterCommitMs.toFixed(1)} ms after the backend's commit; document held ${since(t0).toFixed(0)} ms`);
    assert.equal(lateAck.role, 'viewer', 'the document lock (now committed) covers the tab');
    assert.deepEqual(lateAck.lock.holder, { userId: 'u-app', username: 'App' });
    assert.equal(lateAck.lock.resourceId, doc.id);
    assert.ok(afterCommitMs < 500, `answered soon after the commit: ${afterCommitMs} ms`);
  });
  assert.ok(a.connected && b.connected);
  await q("SELECT collab.release_holder('h-app')").catch(() => {});
  await q('SELECT collab.force_release($1, $2)', [doc.id, 'test over']).catch(() => {});
});

test('pg_advisory_lock on a path\'s key, which any login can compute, touches nothing of collab', async () => {
  const doc = await createDocument(['a']);
  const hostile = await session();
  const anna = newUser('Anna');
  const a = await connect(anna);

  await bystander.measure('pg_advisory_lock on the path keys', async () => {
    // collab.lock_key()'s value, in both advisory forms
    for (const rid of [doc.id, doc.tab('a')]) {
      const [{ same }] = await q('SELECT hashtextextended($1, 1668246636) = collab.lock_key($1) AS same', [rid]);
      assert.equal(same, true, 'collab.lock_key() is the public hash');
      await hostile.query('SELECT pg_advisory_lock(hashtextextended($1, 1668246636))', [rid]);
      await hostile.query(`SELECT pg_advisory_lock((k >> 32)::int4, ((k << 32) >> 32)::int4)
                             FROM (SELECT hashtextextended($1, 1668246636) AS k) s`, [rid]);
    }
    const [{ n }] = (await hostile.query(
      "SELECT count(*)::int AS n FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory' AND granted")).rows;
    assert.equal(n, 4, 'the hostile session holds its four advisory locks');

    const t0 = performance.now();
    const joined = ok(await join(a, doc.tab('a'), 'editor'));
    assert.equal(joined.role, 'editor');
    assert.deepEqual(joined.lock.holder, ref(anna));
    assert.deepEqual(await save(a, doc.tab('a'), 'saved under a hostile advisory lock'), { ok: true, version: 1 });
    const ms = since(t0);
    console.log(`# join as editor and a save under the hostile advisory locks: ${ms.toFixed(1)} ms`);
    assert.ok(ms < 500, `served at once: ${ms} ms`);
    await hostile.query('SELECT pg_advisory_unlock_all()');
  });
});

test('SELECT ... FOR UPDATE on a resource row delays the saves of that row only: BUSY after collab.request_timeout, nothing saved; a save parked until the commit goes through', { timeout: 30000 }, async () => {
  const doc = await createDocument(['a', 'b']);
  const app = await session(['collab_app']);
  const anna = newUser('Anna');
  const bob = newUser('Bob');
  const a = await connect(anna);
  const b = await connect(bob);
  assert.equal(ok(await join(a, doc.tab('a'), 'editor')).role, 'editor');
  assert.equal(ok(await join(b, doc.tab('b'), 'editor')).role, 'editor');

  await bystander.measure('SELECT ... FOR UPDATE on resource rows', async () => {
    await app.query('BEGIN');
    await app.query('SELECT id FROM collab.resources WHERE id = ANY ($1) FOR UPDATE', [[doc.id, doc.tab('a')]]);

    const t0 = performance.now();
    const blocked = save(a, doc.tab('a'), 'not while the row is locked');
    // Bob's tab is another row: saved at once
    const tb = performance.now();
    assert.deepEqual(await save(b, doc.tab('b'), 'bob saves'), { ok: true, version: 1 });
    assert.ok(since(tb) < 500, `Bob's save is not delayed: ${since(tb)} ms`);
    fails(await blocked, 'BUSY', 'the save of the locked row');
    const ms = since(t0);
    console.log(`# the save of the locked row was answered BUSY after ${ms.toFixed(0)} ms`);
    assert.ok(ms >= REQUEST_TIMEOUT_MS - 100, `after collab.request_timeout: ${ms} ms`);
    assert.deepEqual(await q('SELECT content, version::int AS version FROM collab.resources WHERE id = $1', [doc.tab('a')]),
      [{ content: '', version: 0 }], 'nothing was saved');
    assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.revisions WHERE resource_id = $1', [doc.tab('a')]), [{ n: 0 }]);
    assert.deepEqual((await locksOn(doc.tab('a'))).map((l) => l.user_id), [anna.sub], 'Anna still holds her lock');

    // a save sent while the row is locked goes through once it is free
    const parked = save(a, doc.tab('a'), 'after the commit');
    await eventually(async () => (await metric('collab_requests_waiting')) >= 1, 'the save is parked', 3000, 20);
    await app.query('COMMIT');
    assert.deepEqual(await parked, { ok: true, version: 1 });
  });
  assert.deepEqual(await q('SELECT content FROM collab.resources WHERE id = $1', [doc.tab('a')]), [{ content: 'after the commit' }]);
});

test('a holder that disconnects while a backend transaction holds its document: the release waits past collab.request_timeout, and is never lost', { timeout: 30000 }, async () => {
  const doc = await createDocument(['a']);
  const app = await session(['collab_app']);
  const anna = newUser('Anna');
  const a = await connect(anna);
  assert.equal(ok(await join(a, doc.tab('a'), 'editor')).role, 'editor');

  await bystander.measure('a disconnect whose release waits for a backend transaction', async () => {
    await app.query('BEGIN');
    // denied (Anna holds a tab), but the decision keeps the document's path until the commit
    const [held] = (await app.query("SELECT granted FROM collab.acquire($1, 'u-app', 'App', 'h-app')", [doc.id])).rows;
    assert.equal(held.granted, false);
    const parked0 = await metric('collab_requests_parked_total');
    a.close();
    await eventually(async () => (await metric('collab_requests_parked_total')) > parked0, 'the release is parked', 3000, 20);
    // longer than collab.request_timeout: a request would have been answered BUSY by now
    const t0 = performance.now();
    await eventually(async () => since(t0) > REQUEST_TIMEOUT_MS + 500, 'past collab.request_timeout', REQUEST_TIMEOUT_MS + 2000, 100);
    assert.deepEqual((await locksOn(doc.tab('a'))).map((l) => l.user_id), [anna.sub], 'the lease is still there, its release waiting');
    await app.query('COMMIT');
    await eventually(async () => (await locksOn(doc.tab('a'))).length === 0, 'the lease is released once the transaction ends', 3000, 20);
  });
  assert.deepEqual(await q(`SELECT action, reason FROM collab.audit WHERE resource_id = $1 AND user_id = $2
                             AND action IN ('release', 'expire') ORDER BY id`, [doc.tab('a'), anna.sub]),
  [{ action: 'release', reason: 'disconnected' }]);
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.connections WHERE user_id = $1', [anna.sub]), [{ n: 0 }]);
});

test('a statement that runs past its deadline (collab.request_timeout, at most 1 s) is stopped and answered BUSY, having changed nothing', { timeout: 30000 }, async () => {
  // a deployment's access rule that takes 3 s for one document
  const doc = await createDocument(['a']);
  const rule = `public.${uniq('slow_rule').replace(/-/g, '_')}`;
  await q(`CREATE FUNCTION ${rule}(p_user text, p_groups text[], p_resource text, p_permission text)
             RETURNS boolean LANGUAGE plpgsql AS $$
           BEGIN
             IF p_resource LIKE '${doc.id}%' THEN PERFORM pg_sleep(3); END IF;
             RETURN false;
           END $$`);
  await setWorkerConf('collab.access_rule', rule);
  try {
    const a = await connect(newUser('Anna'));
    // the statement runs in the event loop until its deadline: the bystander
    // waits that long once, and no longer
    await bystander.measure('a statement stopped at its deadline', async () => {
      const t0 = performance.now();
      fails(await join(a, doc.tab('a'), 'viewer'), 'BUSY');
      const ms = since(t0);
      console.log(`# the slow join was stopped and answered BUSY after ${ms.toFixed(0)} ms`);
      assert.ok(ms >= 950 && ms < 2500, `stopped at its deadline (1 s): ${ms} ms`);
    }, { maxMs: 1500 });
    assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.presence WHERE resource_id = $1', [doc.tab('a')]), [{ n: 0 }]);
    a.close();
  } finally {
    await resetWorkerConf('collab.access_rule');
    await q(`DROP FUNCTION ${rule}(text, text[], text, text)`);
  }
});

test('100 000 connections detached past their window at once (a worker restart after a mass disconnection): the sweep removes them in short slices, and nobody waits for it', { timeout: 120000 }, async () => {
  const N = 100000;
  const prefix = uniq('gone');
  // as a stopped worker leaves them: detached, their grace and recovery window over
  await q(`INSERT INTO collab.ws_connections (connection_id, worker, worker_pid, user_id, username, detached_at)
           SELECT $1 || '-' || g, $1, 0, $1 || '-u' || (g % 1000), 'Gone', clock_timestamp() - interval '1 day'
             FROM generate_series(1, $2::int) g`, [prefix, N]);
  const left = async () => (await q('SELECT count(*)::int AS n FROM collab.ws_connections WHERE worker = $1', [prefix]))[0].n;
  await bystander.measure(`the sweep of ${N} detached connections`, async () => {
    // one sweep of them all would take the event loop for longer than a
    // statement may run, be stopped at its deadline and start over for ever
    const t0 = performance.now();
    const counts = [];
    await eventually(async () => {
      counts.push(await left());
      return counts[counts.length - 1] === 0;
    }, `the sweep removed all ${N} detached connections`, 90000, 500);
    console.log(`# ${N} detached connections removed by the sweep in ${(since(t0) / 1000).toFixed(1)} s, ` +
      `left at each look: ${counts.join(' ')}`);
    assert.ok(counts.every((n, i) => i === 0 || n <= counts[i - 1]), `the count only went down: ${counts.join(' ')}`);
  }, { maxMs: 500 });
  assert.equal(await left(), 0);
});

test('the worker reports its table statistics as a backend does: autovacuum sees the lease rows it inserts and deletes', async () => {
  const doc = await createDocument(['a']);
  const anna = await connect(newUser('Anna'));
  ok(await join(anna, doc.tab('a'), 'viewer'));
  const stat = async () => (await q(`SELECT n_tup_ins::int AS ins, n_tup_del::int AS del FROM pg_stat_user_tables
                                      WHERE relid = 'collab.leases'::regclass`))[0];
  const before = await stat();
  const N = 20;   // 40 messages, under the rate limit of 50 a second
  for (let i = 0; i < N; i++) {
    ok(await acquire(anna, doc.tab('a')));
    ok(await emitAck(anna, 'lock:release', { resourceId: doc.tab('a') }));
  }
  // reported within about a second of the writes (PGSTAT_MIN_INTERVAL);
  // unreported, the dead rows would wait for a vacuum nobody starts
  await eventually(async () => {
    const now = await stat();
    return now.ins - before.ins >= N && now.del - before.del >= N;
  }, `the worker's ${N} inserts and ${N} deletes of leases in pg_stat_user_tables`, 10000, 200);
  anna.close();
});
