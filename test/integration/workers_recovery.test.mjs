// Connection state recovery with two worker processes (collab.workers = 2):
// a recovering CONNECT that the kernel hands to the other worker than the
// one that kept the session moves the session over (the relay): the client
// still gets socket.recovered, the same socket.id, its lock with the same
// token and the events it missed, once.
//
// Needs a cluster with collab.workers = 2 (test/integration/workers.sh runs it).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  newUser, connect, join, save, ok, createDocument, q, waitFor, received, mark, killSocket,
  teardown, eventually, setGrace, resetWorkerConf, waitDisconnect,
} from './helpers.mjs';

before(async () => {
  await eventually(async () => (await q(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'collab worker'`))[0].n === 2,
    'two collab workers run', 15000);
  await setGrace(30000);
});
after(async () => {
  await resetWorkerConf('collab.disconnect_grace');
  await teardown();
});

const workerOf = async (id) => (await q('SELECT worker FROM collab.connections WHERE connection_id = $1', [id]))[0]?.worker;

test('recovery on either worker: the session moves to the worker the CONNECT reached', async () => {
  const doc = await createDocument(['notes', 'plan']);
  const [notes, plan] = [doc.tab('notes'), doc.tab('plan')];
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  const token = ok(await join(a, notes, 'editor')).lock.token;
  ok(await join(b, plan, 'editor'));
  ok(await join(a, plan, 'viewer'));
  ok(await join(b, notes, 'viewer'));
  const aid = a.id;
  const workers = new Set([await workerOf(aid)]);
  let version = 0;
  for (let i = 0; i < 16 && workers.size < 2; i++) {
    const sinceB = mark(b);
    const own = mark(a);
    const agent = a.io.opts.agent;
    await killSocket(a);
    await waitFor(b, 'presence:left', (e) => e.user.connectionId === aid, { since: sinceB, timeout: 8000 });
    await waitDisconnect(a, 8000, own);
    if (agent) delete agent.addRequest;
    // missed while away
    version += 1;
    ok(await save(b, plan, `v${version}`));
    const since = mark(a);
    a.connect();
    await waitFor(a, '$connect', () => true, { since, timeout: 8000 });
    assert.equal(a.recovered, true, `recovery ${i + 1}`);
    assert.equal(a.id, aid);
    await waitFor(a, 'lock:resumed', (e) => e.resourceId === notes, { since });
    assert.deepEqual(received(a, 'doc:saved', (e) => e.resourceId === plan, since).map((e) => e.version), [version],
      `recovery ${i + 1}: the save made while away, once`);
    workers.add(await workerOf(aid));
  }
  assert.equal(workers.size, 2, 'a recovery reached the other worker');
  // one connection row, resumed, on the worker that serves it now; its lock and token
  assert.deepEqual(await q(`SELECT detached_at FROM collab.ws_connections WHERE connection_id = $1`, [aid]), [{ detached_at: null }]);
  assert.deepEqual(await q('SELECT token, holder_id, suspended_until FROM collab.leases WHERE resource_id = $1', [notes]),
    [{ token: String(token), holder_id: aid, suspended_until: null }]);
  assert.deepEqual(ok(await save(a, notes, 'after moving', { token })), { ok: true, version: 1 });
  // and it hears the room live on its new worker
  const since = mark(a);
  ok(await save(b, plan, 'live'));
  await waitFor(a, 'doc:saved', (e) => e.resourceId === plan && e.version === version + 1, { since });
  a.close();
  b.close();
});
