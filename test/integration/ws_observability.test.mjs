// Observability: /healthz and /metrics on the worker port move with a
// scenario, and the views show live sockets and their rooms (never a token).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  WS_URL, newUser, connect, join, acquire, save, ok, fails, createDocument, q, teardown,
  tryConnect, refusalCode,
} from './helpers.mjs';

after(teardown);

async function metrics() {
  const res = await fetch(`${WS_URL}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain/);
  const values = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-z_]+(?:\{[^}]*\})?) (\S+)$/);
    assert.ok(m, `a well-formed sample line: ${line}`);
    values[m[1]] = Number(m[2]);
  }
  return values;
}

test('/healthz reports the worker and the database', async () => {
  const res = await fetch(`${WS_URL}/healthz`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^application\/json/);
  const body = await res.json();
  assert.deepEqual(Object.keys(body), ['status', 'role', 'worker', 'database', 'connections']);
  assert.equal(body.status, 'ok');
  assert.equal(body.role, 'primary');
  assert.equal(body.worker, 'ok');
  assert.equal(body.database, 'ok');
  assert.equal(typeof body.connections, 'number');
});

test('/metrics counters move with a scenario', async () => {
  const before = await metrics();
  for (const name of ['collab_connections', 'collab_rooms', 'collab_messages_in_total',
    'collab_messages_out_total', 'collab_lock_grants_total', 'collab_lock_denials_total',
    'collab_lock_expiries_total', 'collab_saves_accepted_total', 'collab_saves_rejected_total',
    'collab_sql_duration_ms_count', 'collab_sql_duration_ms_sum', 'collab_database_up'])
    assert.ok(name in before, `${name} is exported`);
  assert.equal(before.collab_database_up, 1);

  const doc = await createDocument(['a']);
  const rid = doc.tab('a');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid, 'editor'));            // a grant
  ok(await join(b, rid, 'editor'));            // a denial
  ok(await save(a, rid, 'saved'));             // an accepted save
  fails(await save(b, rid, 'rejected'), 'LOCK_NOT_HELD');  // a rejected save
  assert.equal(await refusalCode({ token: 'not.a.jwt' }), 'AUTH_TOKEN_INVALID');

  const after_ = await metrics();
  const delta = (n) => after_[n] - before[n];
  assert.ok(after_.collab_connections >= 2, 'the two sockets are counted');
  assert.ok(after_.collab_rooms >= 1);
  assert.ok(delta('collab_connections_total') >= 3);
  assert.ok(delta('collab_lock_grants_total') >= 1);
  assert.ok(delta('collab_lock_denials_total') >= 1);
  assert.ok(delta('collab_saves_accepted_total') >= 1);
  assert.ok(delta('collab_saves_rejected_total') >= 1);
  assert.ok(delta('collab_auth_failures_total') >= 1);
  assert.ok(delta('collab_messages_in_total') >= 6);
  assert.ok(delta('collab_messages_out_total') >= 6);
  assert.ok(delta('collab_sql_duration_ms_count') >= 4, 'each request is timed');
  // the histogram is cumulative and ends with +Inf = count
  const buckets = Object.entries(after_).filter(([k]) => k.startsWith('collab_sql_duration_ms_bucket'));
  assert.ok(buckets.length >= 2);
  for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i][1] >= buckets[i - 1][1]);
  assert.equal(after_['collab_sql_duration_ms_bucket{le="+Inf"}'], after_.collab_sql_duration_ms_count);

  // the views during the scenario: who is connected where, and no token anywhere
  const rows = await q(
    `SELECT c.username, c.rooms, p.role
       FROM collab.connections c JOIN collab.presence p USING (connection_id)
      WHERE p.resource_id = $1 ORDER BY c.username`, [rid]);
  assert.deepEqual(rows.map((r) => [r.username, r.role, r.rooms]),
    [[anna.name, 'editor', [rid]], [ben.name, 'viewer', [rid]]].sort((x, y) => (x[0] < y[0] ? -1 : 1)));
  const cols = await q(`SELECT table_name, column_name FROM information_schema.columns
                         WHERE table_schema = 'collab' AND table_name IN ('connections', 'presence', 'locks')`);
  assert.ok(cols.length > 10, 'the views exist');
  assert.equal(cols.filter((r) => /token/.test(r.column_name)).length, 0, 'no token column in any view');
  a.close(); b.close();
});

test('unknown paths: 404', async () => {
  const res = await fetch(`${WS_URL}/nope`);
  assert.equal(res.status, 404);
});
