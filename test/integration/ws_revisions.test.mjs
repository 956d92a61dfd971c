// doc:history, doc:revision and restores over the WebSocket: pages newest
// first, exactly what collab.history() and collab.revision() hold; the view
// permission decides (a resource one may not view answers exactly as a
// missing one); every read and refusal in the access trail; bad versions,
// limits and payloads; a restore recorded in its revision and announced by
// doc:saved, and a restore of edited content refused without a trace.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  ISO_RE, newUser, connect, join, save, emitAck, ok, fails, q, uniq, mark, waitFor, received,
  teardown, resourceRow, ref, eventually,
} from './helpers.mjs';

// documents without helpers' grant of edit to every user
const mine = [];
async function bareDocument(tabs) {
  const [{ id }] = await q('SELECT collab.create_document($1, NULL, $2::text[]) AS id', [uniq('rv'), tabs]);
  mine.push(id);
  return { id, tab: (t) => `${id}/tab:${t}` };
}
const grant = (rid, subject, permission) => q('SELECT collab.grant($1, $2, $3)', [rid, subject, permission]);
after(async () => {
  await q('DELETE FROM collab.resources WHERE id = ANY ($1)', [mine]);
});
after(teardown);

const MAX_LIMIT = 500;
const history = (s, payload) => emitAck(s, 'doc:history', payload);
const revision = (s, payload) => emitAck(s, 'doc:revision', payload);

/** Saves contents through the SQL API, as an application backend would: one revision each. */
async function saveViaSql(rid, user, contents) {
  const [{ token }] = await q('SELECT token FROM collab.acquire($1, $2, $3, $4)', [rid, user.sub, user.name, uniq('backend')]);
  assert.ok(token, `the backend got the lock of ${rid}`);
  for (const c of contents) await q('SELECT collab.save($1, $2, $3)', [rid, token, c]);
  await q('SELECT collab.release($1)', [token]);
}

/** What doc:history must answer, read from collab.history() and collab.revision() directly. */
async function expectedPage(rid, before = null, limit = null) {
  const rows = await q(`SELECT h.version::int AS version, h.saved_by, h.saved_by_name, collab._ts(h.saved_at) AS saved_at,
                               h.size::int AS size, h.restored_from::int AS restored_from
                          FROM collab.history($1, $2, $3) h`, [rid, before, limit]);
  return rows.map((r) => ({
    version: r.version,
    savedBy: r.saved_by === null ? null : { userId: r.saved_by, username: r.saved_by_name },
    savedAt: r.saved_at,
    size: r.size,
    ...(r.restored_from === null ? {} : { restoredFrom: r.restored_from }),
  }));
}

async function expectedRevision(rid, version) {
  const [r] = await q(`SELECT version::int AS version, content, saved_by, saved_by_name, collab._ts(saved_at) AS saved_at,
                              restored_from::int AS restored_from FROM collab.revision($1, $2)`, [rid, version]);
  return {
    version: r.version,
    content: r.content,
    savedBy: { userId: r.saved_by, username: r.saved_by_name },
    savedAt: r.saved_at,
    ...(r.restored_from === null ? {} : { restoredFrom: r.restored_from }),
  };
}

const revisionCount = async (rid) => (await q('SELECT count(*)::int AS n FROM collab.revisions WHERE resource_id = $1', [rid]))[0].n;

test('doc:history pages newest first with before and limit; doc:revision has the content', async () => {
  const doc = await bareDocument(['diagnosis']);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Dr. Anna Berg');
  const vera = newUser('Vera Viewer');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  await grant(doc.id, `user:${vera.sub}`, 'view');
  const texts = ['Appendicitis?', 'Acute appendicitis.', 'Acute appendicitis,\nperforated.', 'Ärztin: Grüße 🦴', '', 'final'];
  await saveViaSql(rid, anna, texts);

  // a viewer by grant reads without joining the room
  const v = await connect(vera);
  const defaultLimit = (await q('SELECT collab._history_limit(NULL) AS n'))[0].n;
  assert.ok(texts.length < defaultLimit, 'all of them fit the default page');
  const all = ok(await history(v, { resourceId: rid }));
  assert.deepEqual(Object.keys(all).sort(), ['nextBefore', 'ok', 'revisions']);
  assert.deepEqual(all.revisions, await expectedPage(rid));
  assert.deepEqual(all.revisions.map((r) => r.version), [6, 5, 4, 3, 2, 1], 'newest first');
  assert.deepEqual(all.revisions.map((r) => r.size), texts.map((t) => Buffer.byteLength(t)).reverse(), 'size in bytes');
  for (const r of all.revisions) {
    assert.deepEqual(r.savedBy, ref(anna));
    assert.match(r.savedAt, ISO_RE);
    assert.equal('content' in r, false, 'no content in a history');
  }
  assert.equal(all.nextBefore, null, 'one page holds them all');
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.ws_presence WHERE connection_id = $1', [v.id]), [{ n: 0 }]);

  // pages of two, following nextBefore to the end
  const pages = [];
  let before;
  do {
    const page = ok(await history(v, { resourceId: rid, limit: 2, ...(before === undefined ? {} : { before }) }));
    assert.deepEqual(page.revisions, await expectedPage(rid, before ?? null, 2));
    pages.push(page.revisions.map((r) => r.version));
    before = page.nextBefore;
  } while (before !== null);
  assert.deepEqual(pages, [[6, 5], [4, 3], [2, 1]]);
  // a page that ends exactly at version 1 has no next page; one below it is empty
  assert.deepEqual(ok(await history(v, { resourceId: rid, before: 3, limit: 2 })).nextBefore, null);
  assert.deepEqual(ok(await history(v, { resourceId: rid, before: 1 })), { ok: true, revisions: [], nextBefore: null });
  // before beyond the newest version: the newest page; null is no before
  assert.deepEqual(ok(await history(v, { resourceId: rid, before: 2 ** 53 - 1, limit: 3 })).revisions.map((r) => r.version), [6, 5, 4]);
  assert.deepEqual(ok(await history(v, { resourceId: rid, before: null, limit: null })).revisions.length, 6);
  // the largest page there is (docs/revisions.md: 500)
  assert.deepEqual(await q('SELECT collab._history_limit(500) AS n'), [{ n: MAX_LIMIT }]);
  assert.equal(ok(await history(v, { resourceId: rid, limit: MAX_LIMIT })).revisions.length, 6);

  // every revision's content, savedBy and savedAt as collab.revision() has them
  for (let n = 1; n <= texts.length; n++) {
    const r = ok(await revision(v, { resourceId: rid, version: n }));
    assert.deepEqual(Object.keys(r).sort(), ['ok', 'revision']);
    assert.deepEqual(r.revision, await expectedRevision(rid, n));
    assert.equal(r.revision.content, texts[n - 1]);
  }
  // a JSON number with a zero fraction is that integer
  assert.equal(ok(await revision(v, { resourceId: rid, version: 2.0 })).revision.content, texts[1]);
  v.close();
});

test('bad versions, limits, befores and payloads: BAD_REQUEST or RESOURCE_NOT_FOUND, and the reader stays connected', async () => {
  const doc = await bareDocument(['t']);
  const rid = doc.tab('t');
  const anna = newUser('Anna');
  await grant(doc.id, `user:${anna.sub}`, 'view');
  await saveViaSql(rid, anna, ['one', 'two', 'three']);
  const a = await connect(anna);

  const cases = [
    // doc:revision
    ['doc:revision', { resourceId: rid, version: -1 }, 'BAD_REQUEST', /version must be a version number/],
    ['doc:revision', { resourceId: rid, version: -(2 ** 53) }, 'BAD_REQUEST', /version must be a version number/],
    ['doc:revision', { resourceId: rid }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: null }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: '2' }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: 1.5 }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: true }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: [1] }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: 1e19 }, 'BAD_REQUEST', /version must be an integer/],
    ['doc:revision', { resourceId: rid, version: 0 }, 'RESOURCE_NOT_FOUND', /has no revision 0/],
    ['doc:revision', { resourceId: rid, version: 4 }, 'RESOURCE_NOT_FOUND', /has no revision 4/],
    ['doc:revision', { resourceId: rid, version: 2 ** 53 - 1 }, 'RESOURCE_NOT_FOUND', /has no revision 9007199254740991/],
    // doc:history's limit: the range is collab._history_limit()'s
    ['doc:history', { resourceId: rid, limit: -1 }, 'BAD_REQUEST', /limit must be between 1 and 500/],
    ['doc:history', { resourceId: rid, limit: 0 }, 'BAD_REQUEST', /limit must be between 1 and 500/],
    ['doc:history', { resourceId: rid, limit: MAX_LIMIT + 1 }, 'BAD_REQUEST', /limit must be between 1 and 500/],
    ['doc:history', { resourceId: rid, limit: 2 ** 31 }, 'BAD_REQUEST', /limit must be between 1 and 500/],
    ['doc:history', { resourceId: rid, limit: 2 ** 53 - 1 }, 'BAD_REQUEST', /limit must be between 1 and 500/],
    ['doc:history', { resourceId: rid, limit: -(2 ** 63) }, 'BAD_REQUEST', /limit must be/],
    ['doc:history', { resourceId: rid, limit: 1e300 }, 'BAD_REQUEST', /limit must be an integer/],
    ['doc:history', { resourceId: rid, limit: '10' }, 'BAD_REQUEST', /limit must be an integer/],
    ['doc:history', { resourceId: rid, limit: 2.5 }, 'BAD_REQUEST', /limit must be an integer/],
    // doc:history's before
    ['doc:history', { resourceId: rid, before: 0 }, 'BAD_REQUEST', /before must be a version of at least 1/],
    ['doc:history', { resourceId: rid, before: -5 }, 'BAD_REQUEST', /before must be a version of at least 1/],
    ['doc:history', { resourceId: rid, before: 'x' }, 'BAD_REQUEST', /before must be an integer/],
    ['doc:history', { resourceId: rid, before: {} }, 'BAD_REQUEST', /before must be an integer/],
    // the resource id
    ['doc:history', {}, 'BAD_REQUEST', /resourceId must be a string/],
    ['doc:history', { resourceId: 42 }, 'BAD_REQUEST', /resourceId must be a string/],
    ['doc:revision', { resourceId: null, version: 1 }, 'BAD_REQUEST', /resourceId must be a string/],
    ['doc:history', { resourceId: 'no id at all' }, 'RESOURCE_ID_INVALID', /invalid resource id/],
    ['doc:revision', { resourceId: 'document:', version: 1 }, 'RESOURCE_ID_INVALID', /invalid resource id/],
    ['doc:history', { resourceId: `${doc.id}/tab:nope` }, 'RESOURCE_NOT_FOUND', /does not exist/],
    // not an object
    ['doc:history', [rid], 'BAD_REQUEST', /JSON object/],
    ['doc:history', rid, 'BAD_REQUEST', /JSON object/],
    ['doc:revision', 7, 'BAD_REQUEST', /JSON object/],
    ['doc:history', undefined, 'BAD_REQUEST', /needs a payload object/],
  ];
  const m = mark(a);
  for (const [event, payload, code, message] of cases) {
    const what = `${event} ${JSON.stringify(payload)}`;
    const ack = fails(await emitAck(a, event, payload), code, what);
    assert.match(ack.error.message, message, what);
    assert.deepEqual(Object.keys(ack).sort(), ['error', 'ok'], `${what}: nothing but the error`);
  }
  // without an ack callback, the failure is an error event naming the resource
  a.emit('doc:revision', { resourceId: rid, version: -1 });
  const e = await waitFor(a, 'error', (x) => x.resourceId === rid, { since: m });
  assert.deepEqual({ code: e.code, resourceId: e.resourceId }, { code: 'BAD_REQUEST', resourceId: rid });
  assert.match(e.message, /version must be a version number/);
  a.emit('doc:history', { resourceId: rid, limit: 0 });
  const e2 = await waitFor(a, 'error', (x) => x.resourceId === rid && /limit/.test(x.message), { since: m });
  assert.equal(e2.code, 'BAD_REQUEST');

  // none of it was read: the trail has the two reads below and no more
  assert.ok(a.connected, 'still connected');
  assert.deepEqual(ok(await history(a, { resourceId: rid })).revisions.map((r) => r.version), [3, 2, 1]);
  assert.equal(ok(await revision(a, { resourceId: rid, version: 3 })).revision.content, 'three');
  const trail = await q(`SELECT action, outcome, detail - 'connectionId' AS detail FROM collab.access_log
                          WHERE user_id = $1 AND resource_id = $2 AND action IN ('history', 'revision') ORDER BY at`,
  [anna.sub, rid]);
  assert.deepEqual(trail, [
    { action: 'history', outcome: 'allowed', detail: { before: null, limit: null } },
    { action: 'revision', outcome: 'allowed', detail: { version: 3 } },
  ]);
  a.close();
});

test('a resource one may not view answers exactly as a missing one, and the trail tells them apart', async () => {
  const doc = await bareDocument(['t']);
  const rid = doc.tab('t');
  const owner = newUser('Owner');
  await grant(doc.id, `user:${owner.sub}`, 'edit');
  await saveViaSql(rid, owner, ['secret diagnosis']);
  const eveUser = newUser('Eve');
  const eve = await connect(eveUser);
  const missing = `${doc.id}/tab:missing`;

  /** Acks and error events of every read of rid. */
  async function probe(resourceId) {
    const out = {};
    for (const [event, payload] of [
      ['doc:history', { resourceId }],
      ['doc:history', { resourceId, before: 1, limit: 1 }],
      ['doc:history', { resourceId, before: -1, limit: 100000 }],
      ['doc:revision', { resourceId, version: 1 }],
      ['doc:revision', { resourceId, version: -1 }],
      ['doc:revision', { resourceId, version: 99 }],
    ]) {
      const key = `${event} ${JSON.stringify({ ...payload, resourceId: undefined })}`;
      const ack = await emitAck(eve, event, payload);
      const m = mark(eve);
      eve.emit(event, payload);
      const ev = await waitFor(eve, 'error', (x) => x.resourceId === resourceId, { since: m });
      // the same answer but for the id it names
      out[key] = JSON.parse(JSON.stringify({ ack, ev }).replaceAll(resourceId, '<id>'));
    }
    return out;
  }
  const forbidden = await probe(rid);
  for (const [what, { ack }] of Object.entries(forbidden)) {
    fails(ack, 'RESOURCE_NOT_FOUND', what);
    assert.equal(ack.error.message, 'resource "<id>" does not exist', what);
    assert.deepEqual(Object.keys(ack).sort(), ['error', 'ok'], what);
  }
  assert.deepEqual(await probe(missing), forbidden, 'a missing resource answers the same');
  assert.ok(!JSON.stringify(eve.__log).includes('secret'), 'nothing of the content reached Eve');

  // the administrator can tell them apart; identical refusals within a
  // second are written once with their count (src/sampling.c)
  const reasonsOf = () => q(`SELECT action, detail->>'reason' AS reason,
                                    sum(coalesce((detail->>'repeats')::int, 1))::int AS n FROM collab.access_log
                              WHERE user_id = $1 AND outcome = 'refused' GROUP BY 1, 2 ORDER BY 1, 2`, [eveUser.sub]);
  const want = [
    { action: 'history', reason: 'forbidden', n: 6 }, { action: 'history', reason: 'not_found', n: 6 },
    { action: 'revision', reason: 'forbidden', n: 6 }, { action: 'revision', reason: 'not_found', n: 6 },
  ];
  await eventually(async () => JSON.stringify(await reasonsOf()) === JSON.stringify(want),
    'every refused read is in the access log', 5000);
  assert.deepEqual(await reasonsOf(), want);
  const [row] = await q(`SELECT resource_id, address, detail->>'connectionId' AS conn FROM collab.access_log
                          WHERE user_id = $1 AND action = 'revision' AND detail->>'reason' = 'forbidden' LIMIT 1`, [eveUser.sub]);
  assert.deepEqual({ resource_id: row.resource_id, conn: row.conn }, { resource_id: rid, conn: eve.id });
  assert.match(row.address, /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/, 'the client\'s address');

  // granted view, Eve reads; revoked, she is refused again
  await grant(rid, `user:${eveUser.sub}`, 'view');
  assert.equal(ok(await revision(eve, { resourceId: rid, version: 1 })).revision.content, 'secret diagnosis');
  await q('SELECT collab.revoke($1, $2)', [rid, `user:${eveUser.sub}`]);
  fails(await history(eve, { resourceId: rid }), 'RESOURCE_NOT_FOUND', 'after the revoke');
  eve.close();
});

test('restore: doc:save with restoredFrom is recorded in the revision and announced by doc:saved', async () => {
  const doc = await bareDocument(['diagnosis']);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Dr. Anna Berg');
  const vera = newUser('Vera Viewer');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  await grant(doc.id, `user:${vera.sub}`, 'view');
  const a = await connect(anna);
  const v = await connect(vera);
  const token = ok(await join(a, rid, 'editor')).lock.token;
  ok(await join(v, rid, 'viewer'));
  assert.deepEqual(await save(a, rid, 'Suspected appendicitis.'), { ok: true, version: 1 });
  assert.deepEqual(await save(a, rid, 'Cholecystitis.'), { ok: true, version: 2 });

  // the holder brings back version 1
  const old = ok(await revision(a, { resourceId: rid, version: 1 })).revision;
  const m = mark(v);
  assert.deepEqual(await save(a, rid, old.content, { restoredFrom: 1, baseVersion: 2, token }), { ok: true, version: 3 });
  for (const s of [a, v]) {
    const e = await waitFor(s, 'doc:saved', (x) => x.resourceId === rid && x.version === 3);
    assert.deepEqual({ ...e, savedAt: undefined }, {
      resourceId: rid, version: 3, savedBy: ref(anna), savedAt: undefined, restoredFrom: 1,
    });
    assert.match(e.savedAt, ISO_RE);
  }
  const r3 = ok(await revision(v, { resourceId: rid, version: 3 })).revision;
  assert.deepEqual(r3, await expectedRevision(rid, 3));
  assert.equal(r3.restoredFrom, 1);
  assert.equal(r3.content, 'Suspected appendicitis.');
  const [row] = await q("SELECT path::text, restored_from::int FROM collab.revisions WHERE resource_id = $1 AND version = 3", [rid]);
  assert.deepEqual(row, { path: 'ws', restored_from: 1 });
  const h = ok(await history(v, { resourceId: rid })).revisions;
  assert.deepEqual(h.map((x) => [x.version, x.restoredFrom]), [[3, 1], [2, undefined], [1, undefined]]);
  assert.equal('restoredFrom' in h[1], false, 'an ordinary save has no restoredFrom');
  // an ordinary save's doc:saved has none either
  assert.deepEqual(await save(a, rid, 'Acute appendicitis.'), { ok: true, version: 4 });
  const e4 = await waitFor(v, 'doc:saved', (x) => x.resourceId === rid && x.version === 4, { since: m });
  assert.equal('restoredFrom' in e4, false);

  // refused restores change nothing: no row, no revision, no doc:saved
  const before = await resourceRow(rid);
  const revs = await revisionCount(rid);
  const m2 = mark(v);
  const refused = [
    [{ content: 'Suspected appendicitis!', restoredFrom: 1 }, 'BAD_REQUEST', /not that of revision 1/],
    [{ content: 'Suspected appendicitis.', restoredFrom: 9 }, 'BAD_REQUEST', /has no revision 9 to restore/],
    [{ content: 'Suspected appendicitis.', restoredFrom: -1 }, 'BAD_REQUEST', /restoredFrom must be a non-negative integer/],
    [{ content: 'Suspected appendicitis.', restoredFrom: '1' }, 'BAD_REQUEST', /restoredFrom must be a non-negative integer/],
    [{ content: 'Suspected appendicitis.', restoredFrom: 1.5 }, 'BAD_REQUEST', /restoredFrom must be a non-negative integer/],
    [{ content: 'Suspected appendicitis.', restoredFrom: {} }, 'BAD_REQUEST', /restoredFrom must be a non-negative integer/],
    [{ content: 'Suspected appendicitis.', restoredFrom: 1, baseVersion: 3 }, 'VERSION_CONFLICT', /./],
  ];
  for (const [extra, code, message] of refused) {
    const ack = fails(await emitAck(a, 'doc:save', { resourceId: rid, ...extra }), code, JSON.stringify(extra));
    assert.match(ack.error.message, message, JSON.stringify(extra));
  }
  // a viewer sees the history but cannot restore
  fails(await save(v, rid, 'Suspected appendicitis.', { restoredFrom: 1 }), 'FORBIDDEN', 'a viewer restores');
  assert.deepEqual(await resourceRow(rid), before, 'nothing changed');
  assert.equal(await revisionCount(rid), revs, 'no revision added');
  // a save after them all is the next version, and the only doc:saved since
  assert.deepEqual(await save(a, rid, 'Suspected appendicitis.', { restoredFrom: 1 }), { ok: true, version: 5 });
  await waitFor(v, 'doc:saved', (x) => x.resourceId === rid && x.version === 5, { since: m2 });
  assert.deepEqual(received(v, 'doc:saved', () => true, m2).map((x) => [x.version, x.restoredFrom]), [[5, 1]]);
  const verify = await q('SELECT ok FROM collab.verify_history($1)', [rid]);
  assert.deepEqual(verify, [{ ok: true }]);
  a.close();
  v.close();
});
