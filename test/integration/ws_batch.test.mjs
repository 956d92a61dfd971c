// The worker runs queued requests in batches, one transaction per batch; the
// path locks of a batch's jobs are held until it commits.  No job of a batch
// waits for a lock another session holds: it is parked and tried again,
// while the rest of the batch commits.  Waiting there, with the earlier
// jobs' locks held, could close a cycle with an application transaction (a
// deadlock), and would stop every other client of the worker meanwhile.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { newUser, connect, emitAck, ok, createDocument, q, ref, teardown, eventually, metric } from './helpers.mjs';

after(teardown);

test('a batch that meets an application transaction on two paths parks the blocked request and does not deadlock', async () => {
  const doc = await createDocument(['a', 'b']);
  const anna = newUser('Anna');
  const app = new pg.Client({ database: 'postgres' });
  await app.connect();
  try {
    // the application holds tab:b (and so a share lock on the document's path) in an open transaction
    await app.query('BEGIN');
    const [held] = (await app.query(
      "SELECT granted FROM collab.acquire($1, 'u-app', 'App', 'h-app')", [doc.tab('b')])).rows;
    assert.equal(held.granted, true);

    // two requests in one frame burst, so in one batch: tab:a is free; the
    // document needs an exclusive lock on its path, which the application holds
    const a = await connect(anna);
    const tabJoin = emitAck(a, 'presence:join', { resourceId: doc.tab('a'), mode: 'editor' }, 15000);
    const docJoin = emitAck(a, 'presence:join', { resourceId: doc.id, mode: 'editor' }, 15000);
    // the document's join is parked; when both requests came in one batch
    // (as long-polling sends them, in one POST), the tab's follow-up read
    // of its ancestors' permissions waits behind it, in the connection's order
    await eventually(async () => [1, 2].includes(await metric('collab_requests_waiting')),
      'the worker parks the document\'s join');
    assert.deepEqual(await q(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity s USING (pid)
        WHERE s.backend_type = 'collab worker' AND NOT l.granted`), [{ n: 0 }], 'the worker waits for no lock');

    // the application now asks for tab:a: it must get an answer, not a deadlock
    const [other] = (await app.query(
      "SELECT granted, holder_user_id FROM collab.acquire($1, 'u-app', 'App', 'h-app')", [doc.tab('a')])).rows;
    assert.deepEqual(other, { granted: false, holder_user_id: anna.sub }, 'tab:a went to Anna first');
    await app.query('COMMIT');

    const tj = ok(await tabJoin, 'join tab:a');
    assert.equal(tj.role, 'editor');
    const dj = ok(await docJoin, 'join the document');
    assert.equal(dj.role, 'viewer', 'the document is not free: tab:b is held (and tab:a is Anna\'s own)');
    assert.deepEqual(dj.lock?.holder, ref(anna), "the denial names the conflicting lock with the smallest id, Anna's tab:a");
    assert.deepEqual(tj.lock.holder, ref(anna));
    a.close();
  } finally {
    await app.query('ROLLBACK').catch(() => {});
    await app.end();
  }
});
