// Edit hand-off: a viewer asks the holder for the lock (lock:request), the
// holder is told (lock:requested), and when the holder releases, the lock
// goes to the requester first, with its token on the requester's copy only.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  newUser, connect, join, leave, acquire, release, save, ok, fails, emitAck, createDocument,
  waitFor, mark, received, ref, teardown, locksOn, ISO_RE,
} from './helpers.mjs';

after(teardown);

const request = (s, resourceId) => emitAck(s, 'lock:request', { resourceId });

async function room() {
  const doc = await createDocument(['diagnosis']);
  const rid = doc.tab('diagnosis');
  const [anna, ben, cleo] = [newUser('Anna'), newUser('Ben'), newUser('Cleo')];
  const a = await connect(anna);
  const b = await connect(ben);
  const c = await connect(cleo);
  ok(await join(a, rid, 'editor'));
  ok(await join(b, rid, 'viewer'));
  ok(await join(c, rid, 'viewer'));
  return { rid, anna, ben, cleo, a, b, c };
}

test('request, then release: the requester gets the lock first, with its token', async () => {
  const { rid, anna, ben, a, b, c } = await room();
  const sinceA = mark(a); const sinceC = mark(c);
  const ack = ok(await request(b, rid));
  assert.equal(ack.requested, true);
  assert.deepEqual(ack.lock.holder, ref(anna));
  assert.equal('token' in ack.lock, false, 'a requester never learns the holder\'s token');

  const asked = await waitFor(a, 'lock:requested', (e) => e.resourceId === rid, { since: sinceA });
  assert.deepEqual(asked.requester, ref(ben));
  assert.match(asked.requestedAt, ISO_RE);
  assert.equal(received(c, 'lock:requested', () => true, sinceC).length, 0, 'only the holder is asked');

  const sinceB = mark(b);
  ok(await release(a, rid));
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid, { since: sinceB });
  assert.deepEqual(rel.previousHolder, ref(anna));
  const mine = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid, { since: sinceB });
  assert.deepEqual(mine.holder, ref(ben));
  assert.equal(typeof mine.token, 'number');
  const theirs = await waitFor(c, 'lock:acquired', (e) => e.resourceId === rid && e.holder.userId === ben.sub);
  assert.equal('token' in theirs, false);
  assert.deepEqual((await locksOn(rid)).map((l) => l.username), [ben.name]);

  // the new holder saves with the token it was given; the old holder cannot
  assert.equal(ok(await save(b, rid, 'by Ben', { token: mine.token })).version, 1);
  fails(await save(a, rid, 'by Anna'), 'LOCK_NOT_HELD');
});

test('the first of several requesters gets the lock; one who left is skipped', async () => {
  const { rid, ben, cleo, a, b, c } = await room();
  ok(await request(b, rid));
  ok(await request(c, rid));
  ok(await leave(b, rid));                     // Ben asked first, then left
  const sinceC = mark(c);
  ok(await release(a, rid));
  const got = await waitFor(c, 'lock:acquired', (e) => e.resourceId === rid, { since: sinceC });
  assert.deepEqual(got.holder, ref(cleo));
  assert.equal(typeof got.token, 'number');
  assert.deepEqual((await locksOn(rid)).map((l) => l.username), [cleo.name]);
  assert.notEqual(ben.name, cleo.name);
});

test('a holder who disconnects hands the lock on too', async () => {
  const { rid, ben, a, b } = await room();
  ok(await request(b, rid));
  const sinceB = mark(b);
  a.disconnect();
  const got = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid, { since: sinceB });
  assert.deepEqual(got.holder, ref(ben));
  assert.equal(typeof got.token, 'number');
});

test('a free lock is simply granted; bad requests are refused', async () => {
  const { rid, anna, a, b } = await room();
  ok(await release(a, rid));
  const ack = ok(await request(b, rid));
  assert.equal(typeof ack.lock.token, 'number', 'granted at once, with the token');
  fails(await request(b, rid), 'BAD_REQUEST');                 // asking for one's own lock
  const outsider = await connect(newUser('Olga'));
  fails(await request(outsider, rid), 'NOT_JOINED');
  fails(await request(a, 'not an id'), 'RESOURCE_ID_INVALID');
  assert.ok(anna);
});

test('a join returns the stored content and version, and a document its tabs with their locks', async () => {
  const doc = await createDocument(['diagnosis', 'notes']);
  const rid = doc.tab('diagnosis');
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  const first = ok(await join(a, rid, 'editor'));
  assert.deepEqual(first.resource, {
    resourceId: rid, kind: 'tab', title: null, version: 0, content: '', savedBy: null, savedAt: null,
  });
  ok(await save(a, rid, 'Acute appendicitis'));
  const later = ok(await join(b, rid, 'viewer'));
  assert.equal(later.resource.version, 1);
  assert.equal(later.resource.content, 'Acute appendicitis');
  assert.deepEqual(later.resource.savedBy, ref(anna));
  assert.match(later.resource.savedAt, ISO_RE);
  assert.deepEqual(later.children, []);
  const whole = ok(await join(b, doc.id, 'viewer'));
  assert.deepEqual(whole.children.map((c) => [c.resourceId, c.kind, c.version, c.lock && c.lock.holder.userId]),
    [[rid, 'tab', 1, anna.sub], [doc.tab('notes'), 'tab', 0, null]]);
  assert.equal('token' in whole.children[0].lock, false, 'no token in the tab list');
});
