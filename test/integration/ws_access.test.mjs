// Access control through the worker: what a browser gets for a resource it
// may not view (exactly what a missing one gets), the permissions of the
// join ack, a viewer's editing commands, tab-only grants, a revoke and a
// session revocation taking effect on an open connection, and internal
// events staying away from browsers.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  newUser, connect, join, acquire, renew, release, save, emitAck, ok, fails, q, uniq, mark,
  waitFor, teardown, resourceRow, locksOn, sleep, eventually, setWorkerConf, resetWorkerConf,
} from './helpers.mjs';

// documents without the grant to every user that helpers' createDocument() gives
const mine = [];
async function bareDocument(tabs) {
  const [{ id }] = await q('SELECT collab.create_document($1, NULL, $2::text[]) AS id', [uniq('acc'), tabs]);
  mine.push(id);
  return { id, tab: (t) => `${id}/tab:${t}` };
}
const grant = (rid, subject, permission) => q('SELECT collab.grant($1, $2, $3)', [rid, subject, permission]);
after(async () => {
  await q('DELETE FROM collab.resources WHERE id = ANY ($1)', [mine]);
  await q("DELETE FROM collab.session_revocations WHERE user_id LIKE 'u-revoked%'");
});
after(teardown);

/** What a client learns from joining rid: the failure ack, and the error event without an ack. */
async function probe(socket, rid, mode) {
  const ack = await join(socket, rid, mode);
  const m = mark(socket);
  socket.emit('presence:join', { resourceId: rid, mode });
  const event = await waitFor(socket, 'error', (e) => e.resourceId === rid, { since: m });
  return { ack, event };
}

test('a resource one may not view answers exactly as a missing one', async () => {
  const doc = await bareDocument(['t']);
  const owner = newUser('Owner');
  await grant(doc.id, `user:${owner.sub}`, 'edit');
  const o = await connect(owner);
  ok(await join(o, doc.tab('t'), 'editor'));
  const eveUser = newUser('Eve');
  const eve = await connect(eveUser);

  const existing = {};
  for (const rid of [doc.id, doc.tab('t')]) {
    for (const mode of ['viewer', 'editor']) existing[`${rid} ${mode}`] = await probe(eve, rid, mode);
  }
  for (const [what, { ack, event }] of Object.entries(existing)) {
    fails(ack, 'RESOURCE_NOT_FOUND', what);
    assert.deepEqual(Object.keys(ack).sort(), ['error', 'ok'], `${what}: nothing but the error`);
    assert.equal(event.code, 'RESOURCE_NOT_FOUND', what);
  }
  // nothing of it reached Eve, while the owner worked in it
  const m = mark(eve);
  assert.deepEqual(await save(o, doc.tab('t'), 'owner works'), { ok: true, version: 1 });
  await waitFor(o, 'doc:saved', (e) => e.resourceId === doc.tab('t'));
  await sleep(200);
  assert.deepEqual(eve.__log.slice(m).filter((e) => JSON.stringify(e.payload ?? '').includes(doc.id)), [],
    'Eve received nothing about the document');
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.ws_presence WHERE connection_id = $1', [eve.id]), [{ n: 0 }]);

  // the same ids once the document is gone: byte for byte the same answers
  // (its owner gone first: a disconnect racing the deletion of its lock's
  // resource is not what this test is about)
  const ownerId = o.id;
  o.close();
  await eventually(async () => (await q('SELECT 1 FROM collab.ws_connections WHERE connection_id = $1', [ownerId])).length === 0,
    'the owner\'s connection is gone');
  await q('DELETE FROM collab.resources WHERE id = $1', [doc.id]);
  for (const rid of [doc.id, doc.tab('t')]) {
    for (const mode of ['viewer', 'editor']) {
      const missing = await probe(eve, rid, mode);
      assert.deepEqual(missing, existing[`${rid} ${mode}`], `${rid} as ${mode}: existing and missing answer the same`);
    }
  }
  // the administrator, though, can tell them apart in the access log; a
  // browser's identical refusals are written once a second, with a count
  // of the others (a row with "repeats" stands for that many)
  const reasons = () => q(`SELECT detail->>'reason' AS reason, sum(coalesce((detail->>'repeats')::int, 1))::int AS n
                             FROM collab.access_log
                            WHERE user_id = $1 AND action = 'join' AND outcome = 'refused'
                            GROUP BY 1 ORDER BY 1`, [eveUser.sub]);
  const want = [{ reason: 'forbidden', n: 8 }, { reason: 'not_found', n: 8 }];
  await eventually(async () => JSON.stringify(await reasons()) === JSON.stringify(want), 'every refusal is counted', 5000)
    .catch(() => {});
  assert.deepEqual(await reasons(), want);
});

test('the join ack carries the permissions; a viewer by grant cannot edit', async () => {
  const doc = await bareDocument(['diagnosis', 'notes']);
  const anna = newUser('Anna');
  const vera = newUser('Vera');
  await grant(doc.id, `user:${anna.sub}`, 'admin');
  await grant(doc.id, `user:${vera.sub}`, 'view');
  const a = await connect(anna);
  const v = await connect(vera);
  const rid = doc.tab('diagnosis');

  const aj = ok(await join(a, rid, 'editor'));
  assert.equal(aj.role, 'editor');
  assert.deepEqual(aj.permissions, ['view', 'edit', 'admin']);
  // an editor's join without edit is a viewer's, with no lock:denied
  const m = mark(v);
  const vj = ok(await join(v, rid, 'editor'));
  assert.equal(vj.role, 'viewer');
  assert.deepEqual(vj.permissions, ['view']);
  assert.equal(vj.lock.holder.userId, anna.sub);
  assert.equal('token' in vj.lock, false);
  // the document's ack lists its tabs
  const dj = ok(await join(v, doc.id, 'viewer'));
  assert.deepEqual(dj.children.map((c) => c.resourceId), [doc.tab('diagnosis'), doc.tab('notes')]);

  const before = await resourceRow(rid);
  fails(await acquire(v, rid), 'FORBIDDEN', 'lock:acquire');
  fails(await emitAck(v, 'lock:request', { resourceId: rid }), 'FORBIDDEN', 'lock:request');
  fails(await save(v, rid, 'by Vera'), 'FORBIDDEN', 'doc:save');
  fails(await save(v, rid, 'by Vera', { token: aj.lock.token }), 'FORBIDDEN', 'doc:save with the holder\'s token');
  fails(await renew(v, rid), 'FORBIDDEN', 'lock:renew');
  fails(await release(v, rid), 'LOCK_NOT_HELD', 'lock:release');
  assert.deepEqual(await resourceRow(rid), before, 'nothing changed');
  assert.deepEqual((await locksOn(rid)).map((l) => l.holder_id), [a.id], 'Anna still holds the lock');
  assert.deepEqual(v.__log.slice(m).filter((e) => e.event === 'lock:denied'), []);
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.ws_lock_requests WHERE connection_id = $1', [v.id]), [{ n: 0 }]);
  assert.ok(v.connected, 'Vera is still connected');
  assert.deepEqual(await save(a, rid, 'by Anna'), { ok: true, version: 1 });
});

test('a rule that cannot be called fails the decisions that need it, not those the grants settle', async () => {
  const doc = await bareDocument(['a']);
  const anna = newUser('Anna');
  const vera = newUser('Vera');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  await grant(doc.id, `user:${vera.sub}`, 'view');
  const a = await connect(anna);
  const v = await connect(vera);
  const rid = doc.tab('a');
  ok(await join(a, rid, 'viewer'));
  ok(await join(v, rid, 'viewer'));
  await setWorkerConf('collab.access_rule', 'public.collab_test_no_such_rule');
  try {
    // Anna's grant gives edit: taking the lock and saving ask nothing more
    const got = ok(await acquire(a, rid), 'lock:acquire that the grant settles');
    assert.equal(typeof got.lock.token, 'number');
    assert.deepEqual((await locksOn(rid)).map((l) => l.holder_id), [a.id]);
    assert.deepEqual(await save(a, rid, 'by Anna'), { ok: true, version: 1 });
    // Vera's grant gives view: editing would need the rule, which fails
    const before = await resourceRow(rid);
    fails(await save(v, rid, 'by Vera', { token: got.lock.token }), 'INTERNAL', 'doc:save that needs the rule');
    fails(await emitAck(v, 'lock:request', { resourceId: rid }), 'INTERNAL', 'lock:request that needs the rule');
    ok(await release(a, rid));
    fails(await acquire(v, rid), 'INTERNAL', 'lock:acquire that needs the rule');
    assert.deepEqual(await resourceRow(rid), before, 'nothing changed');
    assert.deepEqual(await locksOn(rid), [], 'nobody holds the lock');
    assert.ok(v.connected, 'Vera is still connected');
  } finally {
    await resetWorkerConf('collab.access_rule');
  }
  // with the rule unset, the same refusal is the grants' own
  fails(await acquire(v, rid), 'FORBIDDEN', 'lock:acquire with view only');
});

test('a grant on one tab opens that tab only', async () => {
  const doc = await bareDocument(['anesthesia', 'diagnosis']);
  const tara = newUser('Tara');
  await grant(doc.tab('anesthesia'), `user:${tara.sub}`, 'edit');
  const t = await connect(tara);
  const j = ok(await join(t, doc.tab('anesthesia'), 'editor'));
  assert.equal(j.role, 'editor');
  assert.deepEqual(j.permissions, ['view', 'edit']);
  fails(await join(t, doc.id, 'viewer'), 'RESOURCE_NOT_FOUND', 'the document');
  fails(await join(t, doc.tab('diagnosis'), 'viewer'), 'RESOURCE_NOT_FOUND', 'the sibling tab');
  assert.deepEqual(await save(t, doc.tab('anesthesia'), 'ok'), { ok: true, version: 1 });
});

test('a revoke stops the holder\'s saves and renewals, and takes it out of the room', async () => {
  const doc = await bareDocument(['t']);
  const anna = newUser('Anna');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  const a = await connect(anna);
  const rid = doc.tab('t');
  const j = ok(await join(a, rid, 'editor'));
  assert.deepEqual(await save(a, rid, 'before'), { ok: true, version: 1 });
  const m = mark(a);
  assert.deepEqual(await q('SELECT collab.revoke($1, $2) AS n', [doc.id, `user:${anna.sub}`]), [{ n: 1 }]);
  // refused at once by the database, whether or not the worker has taken
  // her out of the room yet
  const refused = await save(a, rid, 'after', { token: j.lock.token });
  assert.ok(['FORBIDDEN', 'NOT_JOINED'].includes(refused.error?.code), JSON.stringify(refused));
  await waitFor(a, 'access:revoked', (e) => e.resourceId === rid, { since: m });
  fails(await save(a, rid, 'after', { token: j.lock.token }), 'NOT_JOINED', 'save after the revoke');
  fails(await renew(a, rid), 'NOT_JOINED', 'renew after the revoke');
  assert.equal((await resourceRow(rid)).content, 'before');
  assert.deepEqual(await locksOn(rid), []);
  fails(await join(a, doc.id, 'viewer'), 'RESOURCE_NOT_FOUND', 'join after the revoke');
});

test('revoke_sessions: an open connection is told and closed', async () => {
  const doc = await bareDocument(['t']);
  const user = newUser('Revoked', { sub: uniq('u-revoked') });
  await grant(doc.id, '*', 'edit');
  const s = await connect(user);
  ok(await join(s, doc.tab('t'), 'editor'));
  const before = await resourceRow(doc.tab('t'));
  assert.deepEqual(await q('SELECT collab.revoke_sessions($1, $2) AS n', [user.sub, 'test']), [{ n: 1 }]);
  assert.deepEqual(await waitFor(s, 'error', () => true),
    { code: 'AUTH_TOKEN_REVOKED', message: 'your sessions were revoked: sign in again' });
  assert.equal(await waitFor(s, '$disconnect'), 'io server disconnect');
  assert.deepEqual(await resourceRow(doc.tab('t')), before, 'nothing changed');
  await eventually(async () => (await locksOn(doc.tab('t'))).length === 0, 'the lock is released');
});

test('grants, revokes and access changes never reach a browser', async () => {
  const doc = await bareDocument(['t']);
  const anna = newUser('Anna');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  const a = await connect(anna);
  ok(await join(a, doc.tab('t'), 'editor'));
  ok(await join(a, doc.id, 'viewer'));
  await waitFor(a, 'presence:joined', (e) => e.resourceId === doc.id && e.user.connectionId === a.id);
  const m = mark(a);
  await grant(doc.id, 'group:nurses', 'view');
  await grant(doc.tab('t'), '*', 'view');
  await q('SELECT collab.revoke($1, $2)', [doc.id, 'group:nurses']);
  await q('SELECT collab.access_changed($1)', [doc.id]);
  await q('SELECT collab.revoke_sessions($1, $2)', [uniq('u-revoked'), 'test']);
  // events reach a connection in commit order: once this save's is there,
  // any of those would have been
  assert.deepEqual(await save(a, doc.tab('t'), 'marker'), { ok: true, version: 1 });
  await waitFor(a, 'doc:saved', (e) => e.resourceId === doc.tab('t'), { since: m });
  assert.deepEqual(a.__log.slice(m).map((e) => e.event).filter((e) => !e.startsWith('doc:')), []);
});
