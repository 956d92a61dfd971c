// NOTIFY delivery: what a transaction publishes reaches a listener on
// channel collab_events once, at commit, as one compact payload; nothing
// of a rolled-back transaction does.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';

const listener = new pg.Client({ database: 'postgres' });
const writer = new pg.Client({ database: 'postgres' });
const received = [];
let waiters = [];

function nextNotification(timeoutMs = 5000) {
  if (received.length) return Promise.resolve(received.shift());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no notification within ' + timeoutMs + ' ms')), timeoutMs);
    waiters.push((n) => { clearTimeout(timer); resolve(n); });
  });
}

before(async () => {
  await listener.connect();
  await writer.connect();
  listener.on('notification', (n) => {
    const w = waiters.shift();
    if (w) w(n); else received.push(n);
  });
  await writer.query('CREATE EXTENSION IF NOT EXISTS collab');
  await writer.query("DELETE FROM collab.resources WHERE id = 'document:notify'");
  await writer.query("SELECT collab.create_document('notify', NULL, ARRAY['a', 'b'])");
  await listener.query('LISTEN collab_events');
});

after(async () => {
  await writer.query("DELETE FROM collab.resources WHERE id = 'document:notify'");
  await listener.end();
  await writer.end();
});

test('one notification per transaction, with every event in order', async () => {
  await writer.query('BEGIN');
  const { rows } = await writer.query(
    "SELECT token FROM collab.acquire('document:notify/tab:a', 'u1', 'Ann', 'c1')");
  await writer.query("SELECT collab.save('document:notify/tab:a', $1, 'hello')", [rows[0].token]);
  await writer.query("SELECT collab.acquire('document:notify/tab:a', 'u2', 'Bob', 'c2')");
  assert.equal(received.length, 0, 'nothing is delivered before commit');
  await writer.query('COMMIT');

  const n = await nextNotification();
  assert.equal(n.channel, 'collab_events');
  assert.ok(n.payload.length < 8000);
  const body = JSON.parse(n.payload);
  assert.equal(body.v, 1);
  assert.deepEqual(body.events.map((e) => e.event), ['lock:acquired', 'doc:saved', 'lock:denied']);
  const [acq, saved, denied] = body.events;
  assert.deepEqual(acq.holder, { userId: 'u1', username: 'Ann' });
  assert.equal(acq.resourceId, 'document:notify/tab:a');
  // routing members are the workers' own (collab.public_payload())
  assert.equal('holderId' in acq, false);
  assert.equal('holderId' in saved, false);
  assert.equal('requesterHolderId' in denied, false);
  assert.match(acq.acquiredAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.ok(Date.parse(acq.expiresAt) - Date.parse(acq.acquiredAt) === 5 * 60 * 1000);
  assert.equal(saved.version, 1);
  assert.deepEqual(saved.savedBy, { userId: 'u1', username: 'Ann' });
  assert.deepEqual(denied.holder, { userId: 'u1', username: 'Ann' });
  assert.deepEqual(denied.requester, { userId: 'u2', username: 'Bob' });
  assert.equal(denied.reason, 'held');
  assert.ok(!n.payload.includes('"token"'), 'no token in any payload');
  assert.equal(received.length, 0, 'exactly one notification');
});

test('internal events never reach listeners; a payload of nothing else is not sent', async () => {
  await writer.query("SELECT collab.grant('document:notify', 'group:notify-listeners', 'view')");
  await writer.query("SELECT collab.revoke('document:notify', 'group:notify-listeners')");
  await writer.query("SELECT collab.revoke_sessions('u-notify-nobody', 'test')");
  await writer.query('BEGIN');
  await writer.query("SELECT collab.grant('document:notify', 'group:notify-listeners', 'edit')");
  await writer.query("SELECT collab.acquire('document:notify/tab:b', 'u4', 'Di', 'c4')");
  await writer.query('COMMIT');
  const n = await nextNotification();
  assert.deepEqual(JSON.parse(n.payload).events.map((e) => [e.event, e.resourceId, 'holderId' in e]),
    [['lock:acquired', 'document:notify/tab:b', false]], n.payload);
  assert.ok(!n.payload.includes('internal:') && !n.payload.includes('c4'), n.payload);
  await writer.query("SELECT collab.release_holder('c4', 'left')");
  assert.equal(JSON.parse((await nextNotification()).payload).events[0].event, 'lock:released');
  await writer.query("SELECT collab.revoke('document:notify', 'group:notify-listeners')");
  await writer.query("DELETE FROM collab.session_revocations WHERE user_id = 'u-notify-nobody'");
});

test('a rolled-back transaction publishes nothing', async () => {
  await writer.query('BEGIN');
  await writer.query("SELECT collab.acquire('document:notify/tab:b', 'u3', 'Cy', 'c3')");
  await writer.query('ROLLBACK');
  // a marker transaction proves the listener is caught up
  await writer.query("SELECT collab.release_holder('c1', 'left')");
  const n = await nextNotification();
  const body = JSON.parse(n.payload);
  assert.deepEqual(body.events.map((e) => [e.event, e.resourceId, e.reason]),
    [['lock:released', 'document:notify/tab:a', 'left']]);
  assert.deepEqual(body.events[0].previousHolder, { userId: 'u1', username: 'Ann' });
});

test('a transaction with many events splits them under the payload limit', async () => {
  const tabs = Array.from({ length: 60 }, (_, i) => `t${i}`);
  await writer.query("SELECT collab.create_document('notify-many', NULL, $1)", [tabs]);
  const long = 'N'.repeat(200);
  await writer.query('BEGIN');
  for (const t of tabs)
    await writer.query('SELECT collab.acquire($1, $2, $3, $4)',
      [`document:notify-many/tab:${t}`, 'u9', long, 'c9']);
  await writer.query('COMMIT');
  const events = [];
  while (events.length < tabs.length) {
    const n = await nextNotification();
    assert.ok(n.payload.length <= 7900, `payload of ${n.payload.length} bytes`);
    events.push(...JSON.parse(n.payload).events);
  }
  assert.deepEqual(events.map((e) => e.resourceId), tabs.map((t) => `document:notify-many/tab:${t}`));
  await writer.query("DELETE FROM collab.resources WHERE id = 'document:notify-many'");
});
