// doc:save over the WebSocket: versions, doc:saved, fencing tokens,
// baseVersion conflicts, bad payloads and content limits. Every rejected
// save is checked to have changed nothing in collab.resources.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ISO_RE, newUser, connect, join, acquire, release, save, renew, ok, fails, emitAck,
  createDocument, q, waitFor, ref, teardown, resourceRow, setConf, resetConf, eventually, locksOn, sleep,
} from './helpers.mjs';

after(teardown);

async function setup(tabs = ['a']) {
  const doc = await createDocument(tabs);
  const rid = doc.tab(tabs[0]);
  const [anna, ben] = [newUser('Anna'), newUser('Ben')];
  const a = await connect(anna);
  const b = await connect(ben);
  const aj = ok(await join(a, rid, 'editor'));
  ok(await join(b, rid, 'viewer'));
  return { doc, rid, anna, ben, a, b, token: aj.lock.token };
}

async function unchanged(rid, fn) {
  const before = await resourceRow(rid);
  await fn();
  assert.deepEqual(await resourceRow(rid), before, 'a rejected save changed nothing');
}

test('save: {ok, version}, doc:saved to the room, the row updated, the lock renewed', async () => {
  const { rid, anna, a, b } = await setup();
  const [before] = await locksOn(rid);
  await sleep(20); // let the database clock move on so that the renewal is visible
  assert.deepEqual(await save(a, rid, 'v1 text'), { ok: true, version: 1 });
  for (const s of [a, b]) {
    const e = await waitFor(s, 'doc:saved', (x) => x.resourceId === rid && x.version === 1);
    assert.deepEqual(e.savedBy, ref(anna));
    assert.match(e.savedAt, ISO_RE);
    assert.equal('token' in e, false);
  }
  assert.deepEqual(await resourceRow(rid), { content: 'v1 text', version: '1', saved_by: anna.sub, saved_by_name: anna.name });
  const [after] = await locksOn(rid);
  assert.ok(after.expires_at > before.expires_at, 'a save renews the lock');
  assert.deepEqual(await save(a, rid, 'v2 text', { baseVersion: 1 }), { ok: true, version: 2 });
  assert.deepEqual(await save(a, rid, ''), { ok: true, version: 3 }, 'empty content is content');
  assert.equal((await resourceRow(rid)).content, '');
  const unicode = 'Diagnose: Fraktur — Ø 3 mm, 痛み 🦴';
  assert.deepEqual(await save(a, rid, unicode), { ok: true, version: 4 });
  assert.equal((await resourceRow(rid)).content, unicode);
  a.close();
  b.close();
});

test('save without the lock: LOCK_NOT_HELD; not joined: NOT_JOINED; nothing changes', async () => {
  const { doc, rid, a, b } = await setup(['a', 'b']);
  ok(await save(a, rid, 'Anna'));
  await unchanged(rid, async () => {
    fails(await save(b, rid, 'Ben'), 'LOCK_NOT_HELD', 'viewer');
    fails(await save(b, rid, 'Ben', { token: 1 }), 'LOCK_NOT_HELD', 'viewer with a made-up token');
  });
  await unchanged(doc.tab('b'), async () => {
    fails(await save(a, doc.tab('b'), 'other tab'), 'NOT_JOINED', 'not joined to tab:b');
  });
  await unchanged(doc.tab('b'), async () => {
    ok(await join(a, doc.tab('b'), 'viewer'));
    fails(await save(a, doc.tab('b'), 'other tab'), 'LOCK_NOT_HELD', 'the lock on tab:a does not cover tab:b');
  });
  await unchanged(doc.id, async () => {
    ok(await join(a, doc.id, 'viewer'));
    fails(await save(a, doc.id, 'the document'), 'LOCK_NOT_HELD', 'a tab lock does not cover the document');
  });
  a.close();
  b.close();
});

test('stale baseVersion: VERSION_CONFLICT, nothing changes', async () => {
  const { rid, a, b } = await setup();
  ok(await save(a, rid, 'one', { baseVersion: 0 }));
  ok(await save(a, rid, 'two', { baseVersion: 1 }));
  await unchanged(rid, async () => {
    fails(await save(a, rid, 'from v0', { baseVersion: 0 }), 'VERSION_CONFLICT', 'baseVersion 0 at version 2');
    fails(await save(a, rid, 'from the future', { baseVersion: 7 }), 'VERSION_CONFLICT', 'baseVersion 7 at version 2');
  });
  assert.equal((await resourceRow(rid)).content, 'two');
  a.close();
  b.close();
});

test('fencing: a token that is not the connection\'s current lease is refused, nothing changes', async () => {
  const { rid, a, b, token } = await setup();
  assert.deepEqual(await save(a, rid, 'with token', { token }), { ok: true, version: 1 });
  // release and acquire again: a new, larger token; the old one is stale
  ok(await release(a, rid));
  const again = ok(await acquire(a, rid));
  assert.ok(again.lock.token > token);
  await unchanged(rid, async () => {
    const stale = await save(a, rid, 'stale token', { token });
    assert.equal(stale.ok, false, JSON.stringify(stale));
    assert.ok(['LOCK_NOT_HELD', 'LOCK_EXPIRED'].includes(stale.error.code), JSON.stringify(stale));
    const bogus = await save(a, rid, 'bogus token', { token: again.lock.token + 1000 });
    assert.equal(bogus.ok, false, JSON.stringify(bogus));
    assert.ok(['LOCK_NOT_HELD', 'LOCK_EXPIRED'].includes(bogus.error.code), JSON.stringify(bogus));
  });
  assert.deepEqual(await save(a, rid, 'new token', { token: again.lock.token }), { ok: true, version: 2 });
  a.close();
  b.close();
});

test('bad payloads: BAD_REQUEST, nothing changes', async () => {
  const { rid, a, b } = await setup();
  await unchanged(rid, async () => {
    fails(await emitAck(a, 'doc:save', { resourceId: rid, content: 42 }), 'BAD_REQUEST', 'numeric content');
    fails(await emitAck(a, 'doc:save', { resourceId: rid, content: null }), 'BAD_REQUEST', 'null content');
    fails(await emitAck(a, 'doc:save', { resourceId: rid, content: { text: 'x' } }), 'BAD_REQUEST', 'object content');
    fails(await emitAck(a, 'doc:save', { resourceId: rid }), 'BAD_REQUEST', 'no content');
    fails(await emitAck(a, 'doc:save', { content: 'x' }), 'BAD_REQUEST', 'no resourceId');
    fails(await emitAck(a, 'doc:save', { resourceId: rid, content: 'x', baseVersion: 'one' }), 'BAD_REQUEST', 'baseVersion a string');
    fails(await emitAck(a, 'doc:save', { resourceId: rid, content: 'x', token: 'abc' }), 'BAD_REQUEST', 'token a string');
    fails(await emitAck(a, 'doc:save', 'just a string'), 'BAD_REQUEST', 'payload a string');
    fails(await emitAck(a, 'doc:save', [rid, 'x']), 'BAD_REQUEST', 'payload an array');
  });
  a.close();
  b.close();
});

test('content larger than collab.max_content_size: PAYLOAD_TOO_LARGE, nothing changes', async () => {
  const { rid, a, b } = await setup();
  const big = 'x'.repeat(3000);
  try {
    await setConf('collab.max_content_size', '2kB');
    await eventually(async () => {
      const before = await resourceRow(rid);
      const r = await save(a, rid, big);
      if (r.ok) return false; // not applied yet
      assert.equal(r.error.code, 'PAYLOAD_TOO_LARGE', JSON.stringify(r));
      assert.deepEqual(await resourceRow(rid), before, 'the refused save changed nothing');
      return true;
    }, 'the worker applies collab.max_content_size = 2kB');
    await unchanged(rid, async () => {
      fails(await save(a, rid, big), 'PAYLOAD_TOO_LARGE');
    });
    ok(await save(a, rid, 'x'.repeat(1000)), 'content under the limit');
    // the limit is on the stored bytes: not on characters, not on the JSON escaping
    ok(await save(a, rid, 'z'.repeat(2048)), 'exactly 2048 bytes');
    await unchanged(rid, async () => {
      fails(await save(a, rid, 'z'.repeat(2049)), 'PAYLOAD_TOO_LARGE', '2049 bytes');
      fails(await save(a, rid, 'é'.repeat(1100)), 'PAYLOAD_TOO_LARGE', '1100 two-byte characters (2200 bytes)');
    });
    ok(await save(a, rid, 'é'.repeat(1000)), '1000 two-byte characters (2000 bytes)');
    const escaped = '"\n\\'.repeat(600); // 1800 bytes stored, 3600 bytes as JSON
    ok(await save(a, rid, escaped), 'content whose JSON escaping is over the limit');
    assert.equal((await resourceRow(rid)).content, escaped);
  } finally {
    await resetConf('collab.max_content_size');
  }
  await eventually(async () => (await save(a, rid, big)).ok === true, 'the worker is back to the default content limit');
  a.close();
  b.close();
});

test('a failed save without an ack arrives as an error event {code, message, resourceId}', async () => {
  const { rid, a, b } = await setup();
  await unchanged(rid, async () => {
    b.emit('doc:save', { resourceId: rid, content: 'no ack' });
    const err = await waitFor(b, 'error', (e) => e.code === 'LOCK_NOT_HELD');
    assert.equal(err.resourceId, rid);
    assert.equal(typeof err.message, 'string');
  });
  // a successful save without an ack still reaches the room
  a.emit('doc:save', { resourceId: rid, content: 'fire and forget' });
  const saved = await waitFor(b, 'doc:saved', (e) => e.resourceId === rid && e.version === 1);
  assert.equal(saved.version, 1);
  assert.equal((await resourceRow(rid)).content, 'fire and forget');
  a.close();
  b.close();
});

test('saves and renewals interleaved keep the same token and one lock', async () => {
  const { rid, a, b, token } = await setup();
  for (let i = 1; i <= 5; i++) {
    assert.deepEqual(await save(a, rid, `v${i}`, { baseVersion: i - 1, token }), { ok: true, version: i });
    assert.equal(ok(await renew(a, rid)).lock.token, token);
  }
  assert.equal((await q('SELECT count(*)::int AS n FROM collab.locks WHERE resource_id = $1', [rid]))[0].n, 1);
  a.close();
  b.close();
});
