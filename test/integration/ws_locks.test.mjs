// Editor locks over the WebSocket: the seed story, auto-downgrade,
// acquire/renew/release, fencing tokens, document vs tab conflicts, TTL
// expiry and renewal.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ISO_RE, DEFAULT_TTL_MS, newUser, connect, join, leave, acquire, renew, release, save, ok, fails,
  createDocument, q, waitFor, received, ref, teardown, resourceRow, locksOn, setConf, resetConf,
  eventually, sleep, assertPresenceUser, emitAck, waitForLockTtl,
} from './helpers.mjs';

after(teardown);

function assertLock(lock, { holder, resourceId, withToken, ttlMs = DEFAULT_TTL_MS }, what = 'lock') {
  assert.ok(lock && typeof lock === 'object', `${what}: ${JSON.stringify(lock)}`);
  assert.equal(lock.resourceId, resourceId, `${what}.resourceId`);
  assert.deepEqual(lock.holder, ref(holder), `${what}.holder`);
  assert.match(lock.acquiredAt, ISO_RE, `${what}.acquiredAt`);
  assert.match(lock.expiresAt, ISO_RE, `${what}.expiresAt`);
  if (ttlMs !== null) {
    assert.ok(Date.parse(lock.expiresAt) > Date.parse(lock.acquiredAt), `${what}: expiresAt after acquiredAt`);
  }
  if (withToken) assert.equal(typeof lock.token, 'number', `${what}.token is a number: ${JSON.stringify(lock)}`);
  else assert.equal('token' in lock, false, `${what} has no token: ${JSON.stringify(lock)}`);
}

test('seed story: two editors on one tab, save rejected for the viewer, hand-over on leave', async () => {
  const doc = await createDocument(['patient-info', 'diagnosis', 'procedure-notes']);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Ben Ortiz');
  const a = await connect(anna);
  const b = await connect(ben);

  // Anna opens the tab as editor: she gets the lock
  const aj = ok(await join(a, rid, 'editor'));
  assert.equal(aj.role, 'editor');
  assertLock(aj.lock, { holder: anna, resourceId: rid, withToken: true }, 'Anna\'s join ack lock');
  const annaToken = aj.lock.token;
  const acqA = await waitFor(a, 'lock:acquired', (e) => e.resourceId === rid);
  assert.deepEqual(acqA.holder, ref(anna));
  assert.equal(acqA.token, annaToken, 'the holder\'s lock:acquired carries her token');
  assert.match(acqA.acquiredAt, ISO_RE);
  assert.equal(Date.parse(acqA.expiresAt) - Date.parse(acqA.acquiredAt), DEFAULT_TTL_MS);
  assert.deepEqual(await q('SELECT user_id, username, holder_id FROM collab.locks WHERE resource_id = $1', [rid]),
    [{ user_id: anna.sub, username: anna.name, holder_id: a.id }]);

  // Ben opens it as editor too: he is a viewer and told who holds it
  const bj = ok(await join(b, rid, 'editor'));
  assert.equal(bj.role, 'viewer');
  assertLock(bj.lock, { holder: anna, resourceId: rid, withToken: false }, 'Ben\'s join ack lock');
  assert.equal(bj.users.length, 2);
  const users = Object.fromEntries(bj.users.map((u) => [u.connectionId, u]));
  assertPresenceUser(users[a.id], { user: anna, socket: a, role: 'editor', resourceId: rid });
  assertPresenceUser(users[b.id], { user: ben, socket: b, role: 'viewer', resourceId: rid });
  const denied = await waitFor(b, 'lock:denied', (e) => e.resourceId === rid);
  assert.deepEqual(denied.holder, ref(anna));
  assert.deepEqual(denied.requester, ref(ben));
  assert.equal(denied.reason, 'held');
  assert.equal(denied.holderResourceId, rid);
  assert.equal(denied.expiresAt, aj.lock.expiresAt);
  assert.equal('token' in denied, false);
  const joined = await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user?.connectionId === b.id);
  assert.equal(joined.user.role, 'viewer');

  // Ben's save is rejected and changes nothing
  const before = await resourceRow(rid);
  fails(await save(b, rid, 'Ben overwrites'), 'LOCK_NOT_HELD', 'viewer save');
  fails(await save(b, rid, 'Ben overwrites', { baseVersion: 0 }), 'LOCK_NOT_HELD', 'viewer save with baseVersion');
  assert.deepEqual(await resourceRow(rid), before);
  assert.deepEqual(before, { content: '', version: '0', saved_by: null, saved_by_name: null });

  // Anna saves; Ben sees it
  assert.deepEqual(await save(a, rid, 'Appendicitis', { baseVersion: 0 }), { ok: true, version: 1 });
  const saved = await waitFor(b, 'doc:saved', (e) => e.resourceId === rid);
  assert.equal(saved.version, 1);
  assert.deepEqual(saved.savedBy, ref(anna));
  assert.match(saved.savedAt, ISO_RE);
  // the lock:denied went to Ben alone
  await waitFor(a, 'doc:saved', (e) => e.resourceId === rid);
  assert.deepEqual(received(a, 'lock:denied'), [], 'Anna never gets Ben\'s lock:denied');
  assert.ok(!JSON.stringify(b.__log).includes('"token"'), `Ben never sees a token: ${JSON.stringify(b.__log)}`);

  // Anna leaves: the room hears lock:released (left) and presence:left
  assert.deepEqual(await leave(a, rid), { ok: true });
  const rel = await waitFor(b, 'lock:released', (e) => e.resourceId === rid);
  assert.deepEqual(rel.previousHolder, ref(anna));
  assert.equal(rel.reason, 'left');
  const left = await waitFor(b, 'presence:left', (e) => e.resourceId === rid && e.user?.connectionId === a.id);
  assert.equal(left.reason, 'left');
  assert.deepEqual(await locksOn(rid), []);

  // Ben acquires and saves on top of Anna's version
  const ba = ok(await acquire(b, rid));
  assertLock(ba.lock, { holder: ben, resourceId: rid, withToken: true }, 'Ben\'s acquire ack lock');
  assert.ok(ba.lock.token > annaToken, `fencing tokens increase: ${ba.lock.token} > ${annaToken}`);
  const acqB = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid && e.holder?.userId === ben.sub);
  assert.equal(acqB.token, ba.lock.token);
  assert.deepEqual(await q('SELECT user_id, holder_id FROM collab.locks WHERE resource_id = $1', [rid]),
    [{ user_id: ben.sub, holder_id: b.id }]);
  assert.deepEqual(await q('SELECT role FROM collab.presence WHERE connection_id = $1', [b.id]), [{ role: 'editor' }]);
  fails(await save(b, rid, 'stale', { baseVersion: 0 }), 'VERSION_CONFLICT', 'Ben on the old version');
  assert.deepEqual(await save(b, rid, 'Appendicitis, perforated', { baseVersion: 1 }), { ok: true, version: 2 });
  assert.deepEqual(await resourceRow(rid),
    { content: 'Appendicitis, perforated', version: '2', saved_by: ben.sub, saved_by_name: ben.name });
  a.close();
  b.close();
});

test('seed story: two users edit two tabs of one document at once', async () => {
  const doc = await createDocument(['patient-info', 'diagnosis']);
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  const a = await connect(anna);
  const b = await connect(ben);
  const [aj, bj] = await Promise.all([join(a, doc.tab('patient-info'), 'editor'), join(b, doc.tab('diagnosis'), 'editor')]);
  assert.equal(ok(aj).role, 'editor');
  assert.equal(ok(bj).role, 'editor');
  const [as, bs] = await Promise.all([
    save(a, doc.tab('patient-info'), 'Name: J. Doe', { baseVersion: 0 }),
    save(b, doc.tab('diagnosis'), 'Fracture', { baseVersion: 0 }),
  ]);
  assert.deepEqual(as, { ok: true, version: 1 });
  assert.deepEqual(bs, { ok: true, version: 1 });
  assert.deepEqual(await q(`SELECT resource_id, user_id FROM collab.locks
    WHERE resource_id LIKE $1 || '/%' ORDER BY resource_id`, [doc.id]),
  [{ resource_id: doc.tab('diagnosis'), user_id: ben.sub }, { resource_id: doc.tab('patient-info'), user_id: anna.sub }]);
  assert.equal((await resourceRow(doc.tab('patient-info'))).content, 'Name: J. Doe');
  assert.equal((await resourceRow(doc.tab('diagnosis'))).content, 'Fracture');
  a.close();
  b.close();
});

describe('lock commands', () => {
  test('lock:acquire by a viewer when free: {ok, lock with token}, room gets lock:acquired, only the holder\'s copy has the token', async () => {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    ok(await join(a, rid, 'viewer'));
    ok(await join(b, rid, 'viewer'));
    const ack = ok(await acquire(a, rid));
    assertLock(ack.lock, { holder: anna, resourceId: rid, withToken: true }, 'acquire ack lock');
    const mine = await waitFor(a, 'lock:acquired', (e) => e.resourceId === rid);
    const theirs = await waitFor(b, 'lock:acquired', (e) => e.resourceId === rid);
    assert.equal(mine.token, ack.lock.token);
    assert.equal('token' in theirs, false, `observer's copy: ${JSON.stringify(theirs)}`);
    for (const e of [mine, theirs]) {
      assert.deepEqual(e.holder, ref(anna));
      assert.equal(e.acquiredAt, ack.lock.acquiredAt);
      assert.equal(e.expiresAt, ack.lock.expiresAt);
    }
    assert.deepEqual(await q('SELECT role FROM collab.presence WHERE connection_id = $1', [a.id]), [{ role: 'editor' }]);
    // acquiring again is harmless: still the holder, same token
    const again = ok(await acquire(a, rid));
    assert.equal(again.lock.token, ack.lock.token);
    a.close();
    b.close();
  });

  test('lock:acquire when held: {ok:false, error LOCK_HELD, lock} and lock:denied to the requester only', async () => {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    const aj = ok(await join(a, rid, 'editor'));
    const bj = ok(await join(b, rid, 'viewer'));
    assert.equal(bj.role, 'viewer');
    assertLock(bj.lock, { holder: anna, resourceId: rid, withToken: false }, 'a viewer\'s join ack names the holder');
    // joining again as editor while holding: still the editor, same token, no new grant
    const again = ok(await join(a, rid, 'editor'));
    assert.equal(again.role, 'editor');
    assert.equal(again.lock.token, aj.lock.token);
    const ack = fails(await acquire(b, rid), 'LOCK_HELD');
    assertLock(ack.lock, { holder: anna, resourceId: rid, withToken: false }, 'LOCK_HELD ack lock');
    const denied = await waitFor(b, 'lock:denied', (e) => e.resourceId === rid);
    assert.deepEqual(denied.holder, ref(anna));
    assert.deepEqual(denied.requester, ref(ben));
    assert.equal(denied.reason, 'held');
    assert.equal(denied.holderResourceId, rid);
    assert.match(denied.expiresAt, ISO_RE);
    ok(await save(a, rid, 'marker'));
    await waitFor(a, 'doc:saved', (e) => e.resourceId === rid);
    assert.deepEqual(received(a, 'lock:denied'), []);
    assert.equal(received(b, 'lock:denied').length, 1, 'joining as viewer is not a denied request');
    assert.equal(received(a, 'lock:acquired', (e) => e.resourceId === rid).length, 1, 'one grant, one lock:acquired');
    assert.deepEqual(await q('SELECT user_id FROM collab.locks WHERE resource_id = $1', [rid]), [{ user_id: anna.sub }]);
    a.close();
    b.close();
  });

  test('lock:renew: a later expiresAt and the same token; not holding: LOCK_NOT_HELD', async () => {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    const j = ok(await join(a, rid, 'editor'));
    ok(await join(b, rid, 'viewer'));
    const [before] = await locksOn(rid);
    await sleep(20); // the database clock must move on for "later" to be visible
    const r = ok(await renew(a, rid));
    assertLock(r.lock, { holder: anna, resourceId: rid, withToken: true }, 'renew ack lock');
    assert.equal(r.lock.token, j.lock.token);
    assert.equal(r.lock.acquiredAt, j.lock.acquiredAt);
    assert.ok(Date.parse(r.lock.expiresAt) > Date.parse(j.lock.expiresAt), `${r.lock.expiresAt} > ${j.lock.expiresAt}`);
    const [after] = await locksOn(rid);
    assert.ok(after.expires_at > before.expires_at, 'collab.locks shows the renewal');
    fails(await renew(b, rid), 'LOCK_NOT_HELD', 'viewer renews');
    a.close();
    b.close();
  });

  test('lock:release: {ok:true}, lock:released reason "released", the releaser stays as viewer', async () => {
    const doc = await createDocument(['a']);
    const rid = doc.tab('a');
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    ok(await join(a, rid, 'editor'));
    ok(await join(b, rid, 'viewer'));
    assert.deepEqual(await release(a, rid), { ok: true });
    for (const s of [a, b]) {
      const rel = await waitFor(s, 'lock:released', (e) => e.resourceId === rid);
      assert.deepEqual(rel.previousHolder, ref(anna));
      assert.equal(rel.reason, 'released');
    }
    assert.deepEqual(await locksOn(rid), []);
    assert.deepEqual(await q('SELECT role FROM collab.presence WHERE connection_id = $1 AND resource_id = $2', [a.id, rid]), [{ role: 'viewer' }]);
    assert.deepEqual(received(b, 'presence:left', (e) => e.resourceId === rid), [], 'releasing is not leaving');
    fails(await release(a, rid), 'LOCK_NOT_HELD', 'release twice');
    fails(await save(a, rid, 'after release'), 'LOCK_NOT_HELD', 'save after release');
    assert.equal(ok(await acquire(b, rid)).lock.holder.userId, ben.sub);
    a.close();
    b.close();
  });
});

describe('document and tab locks', () => {
  test('a tab lock blocks the document lock (and the reverse); siblings never conflict', async () => {
    const doc = await createDocument(['a', 'b']);
    const [anna, ben, cleo] = [newUser('Anna'), newUser('Ben'), newUser('Cleo')];
    const a = await connect(anna);
    const b = await connect(ben);
    const c = await connect(cleo);
    assert.equal(ok(await join(a, doc.tab('a'), 'editor')).role, 'editor');
    // the sibling is free
    assert.equal(ok(await join(c, doc.tab('b'), 'editor')).role, 'editor');
    // the document is not
    const bj = ok(await join(b, doc.id, 'editor'));
    assert.equal(bj.role, 'viewer');
    assert.deepEqual(bj.lock.holder, ref(anna));
    assert.equal(bj.lock.resourceId, doc.tab('a'), 'the lock named is the conflicting tab lock');
    const denied = await waitFor(b, 'lock:denied', (e) => e.resourceId === doc.id);
    assert.equal(denied.holderResourceId, doc.tab('a'));
    assert.deepEqual(denied.holder, ref(anna));
    // both tabs free again: the document lock is granted and blocks the tabs
    ok(await release(a, doc.tab('a')));
    ok(await release(c, doc.tab('b')));
    const ba = ok(await acquire(b, doc.id));
    assert.equal(ba.lock.resourceId, doc.id);
    const ad = fails(await acquire(a, doc.tab('a')), 'LOCK_HELD', 'tab under a locked document');
    assert.equal(ad.lock.resourceId, doc.id);
    assert.deepEqual(ad.lock.holder, ref(ben));
    for (const s of [a, b, c]) s.close();
  });

  test('the document lock lets its holder save the tabs (joined to the document or the tab)', async () => {
    const doc = await createDocument(['a', 'b']);
    const [anna, ben] = [newUser('Anna'), newUser('Ben')];
    const a = await connect(anna);
    const b = await connect(ben);
    ok(await join(b, doc.tab('a'), 'viewer'));
    assert.equal(ok(await join(a, doc.id, 'editor')).role, 'editor');
    // joined to the document only
    assert.deepEqual(await save(a, doc.tab('a'), 'signed A'), { ok: true, version: 1 });
    const saved = await waitFor(b, 'doc:saved', (e) => e.resourceId === doc.tab('a'));
    assert.deepEqual(saved.savedBy, ref(anna));
    await waitFor(a, 'doc:saved', (e) => e.resourceId === doc.tab('a'));
    // joined to the tab as well
    ok(await join(a, doc.tab('b'), 'viewer'));
    assert.deepEqual(await save(a, doc.tab('b'), 'signed B'), { ok: true, version: 1 });
    assert.deepEqual(await save(a, doc.id, 'signature'), { ok: true, version: 1 });
    // Ben, a viewer of the tab, cannot
    fails(await save(b, doc.tab('a'), 'Ben'), 'LOCK_NOT_HELD');
    assert.equal((await resourceRow(doc.tab('a'))).content, 'signed A');
    a.close();
    b.close();
  });
});

describe('TTL', () => {
  const TTL = '2s';

  test('expiry: lock:expired to the room and the former holder; its save and renew: LOCK_EXPIRED; a renewing holder keeps its lock', async () => {
    const doc = await createDocument(['probe', 'a', 'b']);
    const doc2 = await createDocument(['x']);
    const [anna, ben, cleo] = [newUser('Anna'), newUser('Ben'), newUser('Cleo')];
    const a = await connect(anna);
    const b = await connect(ben);
    const c = await connect(cleo);
    let renewer;
    try {
      await setConf('collab.lock_ttl', TTL);
      await waitForLockTtl(c, doc.tab('probe'), 2000);

      const rid = doc.tab('a');
      ok(await join(b, rid, 'viewer'));
      const aj = ok(await join(a, rid, 'editor'));
      assert.equal(Date.parse(aj.lock.expiresAt) - Date.parse(aj.lock.acquiredAt), 2000);
      assert.deepEqual(await save(a, rid, 'before expiry'), { ok: true, version: 1 });
      // Anna also locks a whole document, which covers its tabs
      const dj = ok(await join(a, doc2.id, 'editor'));
      assert.equal(dj.role, 'editor');

      // Cleo renews tab:b every 500 ms, past the TTL
      const rb = doc.tab('b');
      ok(await join(c, rb, 'editor'));
      renewer = setInterval(() => { renew(c, rb).catch(() => {}); }, 500);

      const exp = await waitFor(a, 'lock:expired', (e) => e.resourceId === rid, 8000);
      assert.deepEqual(exp.previousHolder, ref(anna));
      assert.match(exp.expiredAt, ISO_RE);
      const expB = await waitFor(b, 'lock:expired', (e) => e.resourceId === rid, 3000);
      assert.deepEqual(expB, exp);
      assert.deepEqual(await locksOn(rid), []);
      const before = await resourceRow(rid);
      fails(await save(a, rid, 'after expiry'), 'LOCK_EXPIRED', 'save after expiry');
      fails(await save(a, rid, 'after expiry', { token: aj.lock.token }), 'LOCK_EXPIRED', 'save with the expired token');
      fails(await renew(a, rid), 'LOCK_EXPIRED', 'renew after expiry');
      // a save to a tab under the expired document lock is LOCK_EXPIRED as well
      await waitFor(a, 'lock:expired', (e) => e.resourceId === doc2.id, 8000);
      fails(await save(a, doc2.tab('x'), 'after the document lock expired'), 'LOCK_EXPIRED', 'tab save under an expired document lock');
      fails(await save(a, doc2.tab('x'), 'after the document lock expired', { token: dj.lock.token }), 'LOCK_EXPIRED',
        'tab save with the expired document token');
      assert.equal(Number((await resourceRow(doc2.tab('x'))).version), 0, 'nothing was saved');
      assert.deepEqual(await resourceRow(rid), before);
      assert.equal(before.content, 'before expiry');

      // Cleo's lock has outlived several TTLs by now? wait until 2 TTLs have passed since her grant
      const [cl] = await locksOn(rb);
      assert.ok(cl, 'the renewed lock on tab:b is still live');
      assert.equal(cl.user_id, cleo.sub);
      await eventually(async () => (await q(
        "SELECT clock_timestamp() > acquired_at + interval '4.5 s' AS past FROM collab.leases WHERE resource_id = $1", [rb]))[0]?.past,
      'tab:b lock held for more than two TTLs', 8000, 250);
      assert.equal((await locksOn(rb)).length, 1, 'still held after two TTLs');
      assert.deepEqual(received(c, 'lock:expired', (e) => e.resourceId === rb), []);
      clearInterval(renewer);
      renewer = null;
      assert.deepEqual(await save(c, rb, 'kept'), { ok: true, version: 1 });
      // when Cleo stops renewing it expires too
      const expC = await waitFor(c, 'lock:expired', (e) => e.resourceId === rb, 8000);
      assert.deepEqual(expC.previousHolder, ref(cleo));
      // the expired tab is free: Ben takes it
      assert.equal(ok(await acquire(b, rid)).lock.holder.userId, ben.sub);
    } finally {
      if (renewer) clearInterval(renewer);
      await resetConf('collab.lock_ttl');
    }
    await eventually(async () => {
      const j = await join(a, doc.tab('probe'), 'editor');
      const ms = j.lock ? Date.parse(j.lock.expiresAt) - Date.parse(j.lock.acquiredAt) : null;
      await leave(a, doc.tab('probe'));
      return ms === DEFAULT_TTL_MS;
    }, 'the worker is back to the default TTL');
    for (const s of [a, b, c]) s.close();
  });
});

test('bad lock requests: BAD_REQUEST, RESOURCE_ID_INVALID, RESOURCE_NOT_FOUND', async () => {
  const doc = await createDocument(['a']);
  const a = await connect(newUser('Anna'));
  fails(await acquire(a, 'nocolon'), 'RESOURCE_ID_INVALID');
  fails(await renew(a, 'document:x//tab:y'), 'RESOURCE_ID_INVALID');
  fails(await release(a, `document:${'k'.repeat(200)}`), 'RESOURCE_ID_INVALID');
  fails(await join(a, `${doc.id}/tab:missing`, 'editor'), 'RESOURCE_NOT_FOUND');
  fails(await emitAck(a, 'lock:acquire', {}), 'BAD_REQUEST', 'no resourceId');
  fails(await emitAck(a, 'lock:acquire', { resourceId: 12 }), 'BAD_REQUEST', 'numeric resourceId');
  fails(await emitAck(a, 'presence:join', { resourceId: doc.tab('a'), mode: 'owner' }), 'BAD_REQUEST', 'mode owner');
  a.close();
});
