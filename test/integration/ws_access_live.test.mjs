// Access control on open connections, through the real socket.io-client:
// forged and escalated tokens, probing for existence, revoked users
// reconnecting or refreshing, saves racing a revoke, grants and revokes
// reaching connected users within a second (lock released, room left),
// groups changed by auth:refresh, revoke_sessions closing connections, and
// the fan-out of a tab-only grant.  A bystander keeps being served
// throughout.  Runs with one worker and again with two (workers.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  newUser, connect, tryConnect, refusalCode, tokenFor, makeToken, join, leave, acquire, renew,
  release, save, emitAck, ok, fails, q, uniq, mark, waitFor, received, teardown, resourceRow,
  locksOn, sleep, eventually, nowSec, rawConnect, ref, pool,
} from './helpers.mjs';

const LIVE_MS = 1000;			// "within a second"

const mine = [];
async function bareDocument(tabs) {
  const [{ id }] = await q('SELECT collab.create_document($1, NULL, $2::text[]) AS id', [uniq('live'), tabs]);
  mine.push(id);
  return { id, tab: (t) => `${id}/tab:${t}` };
}
const grant = (rid, subject, permission) => q('SELECT collab.grant($1, $2, $3)', [rid, subject, permission]);
const revoke = (rid, subject, permission = null) => q('SELECT collab.revoke($1, $2, $3) AS n', [rid, subject, permission]);
const revokedUsers = [];
function revocableUser(name, extra = {}) {
  const u = newUser(name, extra);
  revokedUsers.push(u.sub);
  return u;
}

// a client of its own document that keeps saving between the attacks
let bystander;
before(async () => {
  const doc = await bareDocument(['t']);
  const user = newUser('Bystander');
  await grant(doc.id, `user:${user.sub}`, 'edit');
  const socket = await connect(user, { label: 'bystander' });
  assert.equal(ok(await join(socket, doc.tab('t'), 'editor')).role, 'editor');
  let saves = 0;
  bystander = {
    async served(what) {
      saves += 1;
      const m = mark(socket);
      assert.deepEqual(await save(socket, doc.tab('t'), `save ${saves}`), { ok: true, version: saves }, `bystander after ${what}`);
      await waitFor(socket, 'doc:saved', (e) => e.version === saves, { since: m });
      assert.ok(socket.connected, `bystander still connected after ${what}`);
    },
  };
});
after(async () => {
  await q('DELETE FROM collab.resources WHERE id = ANY ($1)', [mine]);
  await q('DELETE FROM collab.session_revocations WHERE user_id = ANY ($1)', [revokedUsers]);
});
after(teardown);

/** Resolves with the ms from `t0` to the first matching event. */
async function within(socket, event, pred, since, t0, what) {
  const p = await waitFor(socket, event, pred, { since, timeout: LIVE_MS + 500 });
  const ms = Date.now() - t0;
  assert.ok(ms <= LIVE_MS, `${what}: ${event} after ${ms} ms`);
  return p;
}

test('forged or escalated groups claims are refused with AUTH_CLAIM_INVALID', async () => {
  const doc = await bareDocument(['t']);
  await grant(doc.id, 'group:surgery', 'edit');
  const forged = {
    'a string': 'surgery',
    'an object': { surgery: true },
    'an array holding a number': ['surgery', 7],
    'an array holding null': ['surgery', null],
    'an array holding an array': [['surgery']],
    'an array holding an object': [{ name: 'surgery' }],
    'an empty name': ['surgery', ''],
    'a name with a control character': ['surg\u0001ery'],
    'a name of 257 bytes': ['g'.repeat(257)],
    '257 groups': Array.from({ length: 257 }, (_, i) => `g${i}`),
    'a number': 1,
    'true': true,
  };
  for (const [what, groups] of Object.entries(forged)) {
    const err = await tryConnect({ token: tokenFor(newUser('Forger'), { groups }) });
    assert.ok(err, `${what}: refused`);
    assert.equal(err.data?.code, 'AUTH_CLAIM_INVALID', `${what}: ${JSON.stringify(err.data)} ${err.message}`);
    assert.match(err.message, /claim "groups" (must be an array of group names|has more than 256 groups)/, what);
  }
  await bystander.served('forged groups');

  // accepted claims: absent, null, empty, and names; only exact names count
  for (const groups of [undefined, null, []]) {
    const s = await connect({ auth: { token: tokenFor(newUser('NoGroups'), { groups }) } });
    fails(await join(s, doc.tab('t'), 'viewer'), 'RESOURCE_NOT_FOUND', `groups ${JSON.stringify(groups)}`);
    s.close();
  }
  for (const groups of [['Surgery'], ['surgery ', 'SURGERY'], ['*'], ['group:surgery'], [`user:${uniq('u')}`]]) {
    const s = await connect({ auth: { token: tokenFor(newUser('Escalator'), { groups }) } });
    fails(await join(s, doc.tab('t'), 'editor'), 'RESOURCE_NOT_FOUND', `groups ${JSON.stringify(groups)}`);
    s.close();
  }
  const member = await connect({ auth: { token: tokenFor(newUser('Surgeon'), { groups: ['icu', 'surgery', 'surgery'] }) } });
  const j = ok(await join(member, doc.tab('t'), 'editor'));
  assert.deepEqual([j.role, j.permissions], ['editor', ['view', 'edit']]);
  const [row] = await q('SELECT groups FROM collab.ws_connections WHERE connection_id = $1', [member.id]);
  assert.deepEqual(row.groups, ['icu', 'surgery'], 'kept sorted, without duplicates');
  member.close();
  await bystander.served('group members');
});

test('a grant naming a user does not open it to a group of that name, and "*" is nobody', async () => {
  const doc = await bareDocument(['t']);
  const anna = newUser('Anna');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  // a token whose groups name Anna's subject gets nothing of hers
  const s = await connect({ auth: { token: tokenFor(newUser('Mallory'), { groups: [anna.sub, `user:${anna.sub}`] }) } });
  fails(await join(s, doc.id, 'viewer'), 'RESOURCE_NOT_FOUND');
  s.close();
  for (const sub of ['*']) {
    const err = await tryConnect({ token: makeToken({ sub, name: 'Everyone' }) });
    assert.equal(err?.data?.code, 'AUTH_CLAIM_INVALID', `sub ${sub}`);
    assert.equal(err.message, 'token subject ("sub") must not be "*"');
  }
  // "*" as a user in SQL
  await assert.rejects(q("SELECT collab.can('*', NULL, $1, 'view')", [doc.id]), { code: 'CL001' });
  await assert.rejects(q("SELECT collab.revoke_sessions('*', 'all of them')"), { code: 'CL001' });
  await bystander.served('"*" as a user');
});

test('grants on malformed ids, and by a non-admin, are refused in SQL', async () => {
  const doc = await bareDocument(['t']);
  const cases = [
    [['document:x/', '*', 'view'], 'CL002'],					// RESOURCE_ID_INVALID
    [['document:x/tab:', '*', 'view'], 'CL002'],
    [['DOCUMENT x', '*', 'view'], 'CL002'],
    [[`${doc.id}/tab:nope`, '*', 'view'], 'CL003'],			// RESOURCE_NOT_FOUND
    [[doc.id, 'user:', 'view'], 'CL001'],						// BAD_REQUEST
    [[doc.id, 'user:*', 'view'], 'CL001'],
    [[doc.id, 'group:*', 'view'], 'CL001'],
    [[doc.id, 'role:admins', 'view'], 'CL001'],
    [[doc.id, 'user:a\u0001b', 'view'], 'CL001'],
    [[doc.id, '*', 'owner'], 'CL001'],
    [[doc.id, '*', null], 'CL001'],
  ];
  for (const [args, code] of cases) {
    await assert.rejects(q('SELECT collab.grant($1, $2, $3)', args), (e) => e.code === code, JSON.stringify(args));
  }
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.grants WHERE resource_id = $1', [doc.id]), [{ n: 0 }]);
  // collab_app may not grant, revoke or revoke sessions
  const role = uniq('app').replace(/-/g, '_');
  await q(`CREATE ROLE ${role} IN ROLE collab_app`);
  const c = await pool.connect();
  try {
    await c.query(`SET ROLE ${role}`);
    for (const sql of [`SELECT collab.grant('${doc.id}', '*', 'admin')`, `SELECT collab.revoke('${doc.id}', '*')`,
      "SELECT collab.revoke_sessions('u-x', 'r')", 'SELECT * FROM collab.access_log']) {
      await assert.rejects(c.query(sql), { code: '42501' }, sql);
    }
  } finally {
    await c.query('RESET ROLE');
    c.release();
    await q(`DROP ROLE ${role}`);
  }
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.grants WHERE resource_id = $1', [doc.id]), [{ n: 0 }]);
  await bystander.served('grants refused');
});

test('probing: a forbidden and a missing resource answer byte for byte the same', async () => {
  const doc = await bareDocument(['t']);
  await grant(doc.id, `user:${uniq('u-owner')}`, 'edit');
  const missing = `document:${uniq('nope')}`;
  const { client } = await rawConnect(tokenFor(newUser('Prober')));
  const frames = {};
  let id = 10;
  for (const [what, rid] of [['forbidden', doc.id], ['missing', missing], ['forbidden tab', doc.tab('t')], ['missing tab', `${missing}/tab:t`]]) {
    for (const mode of ['viewer', 'editor']) {
      const since = client.frames.length;
      client.send(`42${id}${JSON.stringify(['presence:join', { resourceId: rid, mode }])}`);
      const f = await client.waitFrame((x) => typeof x === 'string' && x.startsWith(`43${id}[`), 5000, since);
      frames[`${what} ${mode}`] = f.slice(`43${id}`.length).split(rid).join('<id>');
      id += 1;
    }
  }
  for (const mode of ['viewer', 'editor']) {
    assert.equal(frames[`forbidden ${mode}`], frames[`missing ${mode}`], mode);
    assert.equal(frames[`forbidden tab ${mode}`], frames[`missing tab ${mode}`], `tab, ${mode}`);
  }
  assert.match(frames['forbidden viewer'], /^\[\{"ok":false,"error":\{"code":"RESOURCE_NOT_FOUND","message":"resource \\"<id>\\" does not exist"\}\}\]$/);
  await bystander.served('probing');
});

test('a revoked user cannot come back with the same token, an earlier refreshed one, or one without iat', async () => {
  const doc = await bareDocument(['t']);
  const user = revocableUser('Ben');
  await grant(doc.id, `user:${user.sub}`, 'edit');
  const early = tokenFor(user, { iat: nowSec() - 60 });
  const same = tokenFor(user);
  const s = await connect(same);
  ok(await join(s, doc.tab('t'), 'editor'));
  const refreshedEarlier = tokenFor(user, { iat: nowSec() - 1, exp: nowSec() + 7200 });
  await q('SELECT collab.revoke_sessions($1, $2)', [user.sub, 'badge lost']);
  await waitFor(s, '$disconnect', () => true, LIVE_MS + 500);

  for (const [what, token] of [['the same token', same], ['an earlier token', early],
    ['a refreshed token issued before', refreshedEarlier], ['a token without iat', tokenFor(user, { iat: undefined })]]) {
    const err = await tryConnect({ token });
    assert.equal(err?.data?.code, 'AUTH_TOKEN_REVOKED', what);
    assert.equal(err.message, 'this session was revoked: sign in again', what);
  }
  // a token issued after the revocation works, and may refresh only to a newer one
  await sleep(1100);
  const fresh = await connect(tokenFor(user, { iat: nowSec() }));
  ok(await join(fresh, doc.tab('t'), 'viewer'));
  fails(await emitAck(fresh, 'auth:refresh', { token: refreshedEarlier }), 'AUTH_TOKEN_REVOKED', 'refresh to an earlier token');
  fails(await emitAck(fresh, 'auth:refresh', { token: tokenFor(user, { iat: undefined }) }), 'AUTH_TOKEN_REVOKED', 'refresh to a token without iat');
  assert.ok(fresh.connected);
  const exp = nowSec() + 600;
  const r = ok(await emitAck(fresh, 'auth:refresh', { token: tokenFor(user, { iat: nowSec(), exp }) }));
  assert.equal(Date.parse(r.expiresAt) / 1000, exp);
  // identical refusals within a second are written once with their count
  // (src/sampling.c); every one of them is in the trail, alone or counted
  const refusalsOf = () => q(`SELECT detail->>'reason' AS reason, (detail->>'refresh')::boolean AS refresh,
                                     sum(coalesce((detail->>'repeats')::int, 1))::int AS n
                                FROM collab.access_log WHERE user_id = $1 AND action = 'connect'
                               GROUP BY 1, 2 ORDER BY 2 NULLS FIRST`, [user.sub]);
  const want = [{ reason: 'revoked', refresh: null, n: 4 }, { reason: 'revoked', refresh: true, n: 2 }];
  await eventually(async () => JSON.stringify(await refusalsOf()) === JSON.stringify(want),
    'every refused reconnect and refresh is in the access log', 5000);
  assert.deepEqual(await refusalsOf(), want);
  await bystander.served('revoked reconnects');
});

test('an iat that is not seconds since 1970 is refused', async () => {
  for (const iat of [-1, 253402300800, 1.5, '1700000000']) {
    assert.equal(await refusalCode({ token: tokenFor(newUser('Iat'), { iat }) }), 'AUTH_CLAIM_INVALID', `iat ${iat}`);
  }
});

test('revoking during a save in flight: the save commits before the revoke or is refused', async () => {
  for (let round = 0; round < 6; round++) {
    const doc = await bareDocument(['t']);
    const rid = doc.tab('t');
    const anna = newUser('Anna');
    await grant(doc.id, `user:${anna.sub}`, 'edit');
    const a = await connect(anna);
    ok(await join(a, rid, 'editor'));
    const saving = save(a, rid, `round ${round}`);
    if (round % 2) await sleep(round);
    await revoke(doc.id, `user:${anna.sub}`);
    const ack = await saving;
    const row = await resourceRow(rid);
    if (ack.ok) {
      assert.deepEqual(ack, { ok: true, version: 1 });
      assert.equal(row.content, `round ${round}`);
      const [{ before }] = await q(`SELECT r.saved_at < a.at AS before FROM collab.resources r, collab.access_log a
        WHERE r.id = $1 AND a.action = 'revoke' AND a.resource_id = $2`, [rid, doc.id]);
      assert.equal(before, true, `round ${round}: saved before the revoke`);
    } else {
      assert.ok(['FORBIDDEN', 'NOT_JOINED'].includes(ack.error.code), JSON.stringify(ack));
      assert.deepEqual([row.content, Number(row.version)], ['', 0], `round ${round}: nothing saved`);
    }
    // either way the lock is gone, and nothing lands later
    await eventually(async () => (await locksOn(rid)).length === 0, 'the lock was released');
    fails(await save(a, rid, 'late'), 'NOT_JOINED');
    assert.equal((await resourceRow(rid)).content, row.content);
    a.close();
  }
  await bystander.served('saves racing revokes');
});

test('losing edit while holding the lock: lock:released "revoked", role viewer, access:changed, within a second', async () => {
  const doc = await bareDocument(['t']);
  const rid = doc.tab('t');
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  await grant(doc.id, `user:${anna.sub}`, 'view');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  await grant(doc.id, `user:${ben.sub}`, 'view');
  const a = await connect(anna);
  const b = await connect(ben);
  const aj = ok(await join(a, rid, 'editor'));
  assert.deepEqual([aj.role, aj.permissions], ['editor', ['view', 'edit']]);
  ok(await join(b, rid, 'viewer'));
  const ma = mark(a);
  const mb = mark(b);
  const t0 = Date.now();
  assert.deepEqual(await revoke(doc.id, `user:${anna.sub}`, 'edit'), [{ n: 1 }]);

  const released = await within(a, 'lock:released', (e) => e.resourceId === rid, ma, t0, 'holder');
  assert.deepEqual(released, { resourceId: rid, previousHolder: ref(anna), reason: 'revoked', releasedAt: released.releasedAt });
  await within(b, 'lock:released', (e) => e.resourceId === rid && e.reason === 'revoked', mb, t0, 'room');
  const changed = await within(a, 'access:changed', () => true, ma, t0, 'holder');
  assert.deepEqual(changed, { resourceId: rid, permissions: ['view'] });
  assert.deepEqual(received(a, 'access:revoked', () => true, ma), []);
  assert.deepEqual(received(b, 'access:changed', () => true, mb), [], 'Ben\'s access did not change');
  assert.deepEqual(await q('SELECT role FROM collab.presence WHERE resource_id = $1 AND user_id = $2', [rid, anna.sub]), [{ role: 'viewer' }]);
  assert.deepEqual(await locksOn(rid), []);
  fails(await save(a, rid, 'after', { token: aj.lock.token }), 'FORBIDDEN');
  fails(await acquire(a, rid), 'FORBIDDEN');
  // still a viewer in the room: she hears the room
  await grant(doc.id, `user:${ben.sub}`, 'edit');
  await eventually(async () => (await acquire(b, rid)).ok, 'Ben may edit');
  assert.deepEqual(await save(b, rid, 'by Ben'), { ok: true, version: 1 });
  await waitFor(a, 'doc:saved', (e) => e.resourceId === rid && e.version === 1, { since: ma });
  await bystander.served('edit revoked');
});

test('losing view: presence:left "revoked" to the room, access:revoked to the user, nothing after', async () => {
  const doc = await bareDocument(['t']);
  const rid = doc.tab('t');
  const anna = newUser('Anna');
  const ben = newUser('Ben');
  await grant(doc.id, `user:${anna.sub}`, 'edit');
  await grant(doc.id, `user:${ben.sub}`, 'edit');
  const a = await connect(anna);
  const b = await connect(ben);
  ok(await join(a, rid, 'editor'));
  ok(await join(a, doc.id, 'viewer'));
  ok(await join(b, rid, 'viewer'));
  // Ben's arrival has reached her (over long-polling, maybe after his ack)
  await waitFor(a, 'presence:joined', (e) => e.resourceId === rid && e.user.userId === ben.sub);
  const ma = mark(a);
  const mb = mark(b);
  const t0 = Date.now();
  await revoke(doc.id, `user:${anna.sub}`);

  const left = await within(b, 'presence:left', (e) => e.resourceId === rid && e.user.userId === anna.sub, mb, t0, 'room');
  assert.equal(left.reason, 'revoked');
  assert.equal(left.user.connectionId, a.id);
  await within(b, 'lock:released', (e) => e.resourceId === rid && e.reason === 'revoked', mb, t0, 'room');
  // she hears her lock released and her departure before she is told why
  await within(a, 'lock:released', (e) => e.resourceId === rid && e.reason === 'revoked', ma, t0, 'the holder');
  for (const r of [rid, doc.id]) {
    assert.deepEqual(await within(a, 'access:revoked', (e) => e.resourceId === r, ma, t0, r), { resourceId: r });
    assert.deepEqual(received(a, 'access:changed', (e) => e.resourceId === r, ma), [{ resourceId: r, permissions: [] }]);
  }
  const order = a.__log.slice(ma).filter((e) => e.payload?.resourceId === rid).map((e) => e.event);
  assert.deepEqual(order, ['lock:released', 'presence:left', 'access:changed', 'access:revoked']);
  assert.deepEqual(await q('SELECT count(*)::int AS n FROM collab.ws_presence WHERE connection_id = $1', [a.id]), [{ n: 0 }]);
  // nothing of the room reaches her any more
  const after = mark(a);
  ok(await acquire(b, rid));
  assert.deepEqual(await save(b, rid, 'by Ben'), { ok: true, version: 1 });
  await waitFor(b, 'doc:saved', (e) => e.resourceId === rid);
  await sleep(150);
  assert.deepEqual(a.__log.slice(after), []);
  fails(await save(a, rid, 'by Anna'), 'NOT_JOINED');
  fails(await join(a, rid, 'viewer'), 'RESOURCE_NOT_FOUND');
  assert.ok(a.connected, 'she stays connected');
  await bystander.served('view revoked');
});

test('a grant that adds permissions tells the user at once; one that adds nothing says nothing', async () => {
  const doc = await bareDocument(['t']);
  const rid = doc.tab('t');
  const vera = newUser('Vera', { groups: ['nurses'] });
  await grant(doc.id, 'group:nurses', 'view');
  const v = await connect(vera);
  assert.deepEqual(ok(await join(v, rid, 'editor')).permissions, ['view']);
  const m = mark(v);
  await grant(rid, '*', 'view');						// nothing new
  const t0 = Date.now();
  await grant(doc.id, `user:${vera.sub}`, 'edit');
  assert.deepEqual(await within(v, 'access:changed', () => true, m, t0, 'grant'), { resourceId: rid, permissions: ['view', 'edit'] });
  assert.equal(received(v, 'access:changed', () => true, m).length, 1);
  ok(await acquire(v, rid));
  assert.deepEqual(await save(v, rid, 'by Vera'), { ok: true, version: 1 });
  // access_changed() (a deployment's rule) re-checks too: nothing changed here
  await q('SELECT collab.access_changed($1)', [doc.id]);
  await sleep(300);
  assert.equal(received(v, 'access:changed', () => true, m).length, 1);
});

test('auth:refresh with other groups re-checks every room of the connection', async () => {
  const doc = await bareDocument(['a', 'b']);
  const sam = newUser('Sam');
  await grant(doc.tab('a'), 'group:icu', 'view');
  await grant(doc.tab('b'), 'group:surgery', 'edit');
  const s = await connect({ auth: { token: tokenFor(sam, { groups: ['icu', 'surgery'] }) } });
  ok(await join(s, doc.tab('a'), 'viewer'));
  assert.equal(ok(await join(s, doc.tab('b'), 'editor')).role, 'editor');
  // same groups in another order: nothing to re-check
  let m = mark(s);
  ok(await emitAck(s, 'auth:refresh', { token: tokenFor(sam, { groups: ['surgery', 'icu'] }) }));
  await sleep(200);
  assert.deepEqual(received(s, 'access:changed', () => true, m), []);
  // surgery gone: the lock on b goes, and b's room
  m = mark(s);
  const t0 = Date.now();
  ok(await emitAck(s, 'auth:refresh', { token: tokenFor(sam, { groups: ['icu'] }) }));
  assert.deepEqual(await within(s, 'access:revoked', () => true, m, t0, 'refresh'), { resourceId: doc.tab('b') });
  assert.deepEqual(received(s, 'access:changed', () => true, m), [{ resourceId: doc.tab('b'), permissions: [] }]);
  assert.deepEqual((await waitFor(s, 'lock:released', () => true, { since: m })).reason, 'revoked');
  assert.deepEqual(await q('SELECT resource_id FROM collab.presence WHERE user_id = $1', [sam.sub]),
    [{ resource_id: doc.tab('a') }]);
  // icu turned into surgery's edit: a gains nothing (icu is gone), b is not rejoined
  m = mark(s);
  await grant(doc.tab('a'), 'group:surgery', 'edit');
  ok(await emitAck(s, 'auth:refresh', { token: tokenFor(sam, { groups: ['surgery'] }) }));
  assert.deepEqual(await waitFor(s, 'access:changed', () => true, { since: m, timeout: LIVE_MS + 500 }),
    { resourceId: doc.tab('a'), permissions: ['view', 'edit'] });
  ok(await acquire(s, doc.tab('a')));
  await bystander.served('refresh');
});

test('revoke_sessions closes every connection of the user, within a second, and no one else\'s', async () => {
  const doc = await bareDocument(['t']);
  const rid = doc.tab('t');
  const ben = revocableUser('Ben');
  const other = newUser('Other');
  await grant(doc.id, '*', 'edit');
  const b1 = await connect(ben, { label: 'ben-1' });
  const b2 = await connect(ben, { label: 'ben-2' });
  const o = await connect(other);
  ok(await join(b1, rid, 'editor'));
  ok(await join(b2, doc.id, 'viewer'));
  ok(await join(o, rid, 'viewer'));
  const mo = mark(o);
  // issued before the revocation (one issued a second later is a new sign-in)
  const earlier = tokenFor(ben);
  const t0 = Date.now();
  assert.deepEqual(await q('SELECT collab.revoke_sessions($1, $2) AS n', [ben.sub, 'badge lost']), [{ n: 2 }]);
  for (const s of [b1, b2]) {
    const err = await within(s, 'error', (e) => e.code === 'AUTH_TOKEN_REVOKED', 0, t0, s.__label);
    assert.deepEqual(err, { code: 'AUTH_TOKEN_REVOKED', message: 'your sessions were revoked: sign in again' });
    assert.equal(await waitFor(s, '$disconnect', () => true, LIVE_MS), 'io server disconnect');
  }
  const left = await waitFor(o, 'presence:left', (e) => e.resourceId === rid && e.user.userId === ben.sub, { since: mo });
  assert.equal(left.reason, 'revoked');
  const rel = await waitFor(o, 'lock:released', (e) => e.resourceId === rid, { since: mo });
  assert.deepEqual(rel.previousHolder, ref(ben));
  await eventually(async () => (await q('SELECT count(*)::int AS n FROM collab.ws_connections WHERE user_id = $1', [ben.sub]))[0].n === 0,
    'Ben\'s connections are gone');
  assert.ok(o.connected, 'the other user stays');
  ok(await acquire(o, rid));
  assert.equal(await refusalCode({ token: earlier }), 'AUTH_TOKEN_REVOKED');
  await bystander.served('revoke_sessions');
});

test('a tab-only grant never leaks the sibling tabs nor the document', async () => {
  const doc = await bareDocument(['anesthesia', 'diagnosis']);
  const tara = newUser('Tara');
  const owner = newUser('Owner');
  await grant(doc.tab('anesthesia'), `user:${tara.sub}`, 'view');
  await grant(doc.id, `user:${owner.sub}`, 'edit');
  const o = await connect(owner);
  ok(await join(o, doc.tab('diagnosis'), 'editor'));
  const t = await connect(tara);
  const tj = ok(await join(t, doc.tab('anesthesia'), 'viewer'));
  assert.deepEqual(tj.users.map((u) => u.userId), [tara.sub], 'the users of her tab only');
  assert.deepEqual(tj.children, []);
  const state = await waitFor(t, 'presence:state', (e) => e.resourceId === doc.tab('anesthesia'));
  assert.deepEqual(state.users.map((u) => u.userId), [tara.sub]);
  await waitFor(t, 'presence:joined', (e) => e.user.connectionId === t.id);
  const m = mark(t);
  // the owner works in the sibling tab and on the document
  assert.deepEqual(await save(o, doc.tab('diagnosis'), 'secret diagnosis'), { ok: true, version: 1 });
  ok(await release(o, doc.tab('diagnosis')));
  ok(await join(o, doc.id, 'editor'));
  assert.deepEqual(await save(o, doc.id, 'secret summary'), { ok: true, version: 1 });
  ok(await leave(o, doc.id));
  ok(await join(o, doc.tab('diagnosis'), 'viewer'));
  await waitFor(o, 'presence:joined', (e) => e.resourceId === doc.tab('diagnosis'));
  await sleep(200);
  const seen = t.__log.slice(m);
  assert.ok(!JSON.stringify(seen).includes('diagnosis'), `nothing of the sibling: ${JSON.stringify(seen)}`);
  assert.ok(!JSON.stringify(seen).includes('secret'), 'no content');
  assert.deepEqual(seen.filter((e) => !e.event.startsWith('lock:')).map((e) => [e.event, e.payload?.resourceId]), [],
    'nothing but the document\'s lock, which covers her tab');
  assert.deepEqual(seen.filter((e) => e.event.startsWith('lock:')).map((e) => [e.event, e.payload.resourceId]),
    [['lock:acquired', doc.id], ['lock:released', doc.id]]);
  // with view on the document, the document's saves reach her tab's room
  await grant(doc.id, `user:${tara.sub}`, 'view');
  await eventually(async () => {
    const mm = mark(t);
    ok(await join(o, doc.id, 'editor'));
    const v = (await resourceRow(doc.id)).version;
    await save(o, doc.id, `summary ${v + 1}`);
    ok(await leave(o, doc.id));
    await sleep(100);
    return received(t, 'doc:saved', (e) => e.resourceId === doc.id, mm).length === 1;
  }, 'the document\'s doc:saved reaches a member of its tab who may view it', 3000);
  await bystander.served('tab-only grant');
});
