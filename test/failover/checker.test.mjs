// Self-test of checkFailover (../stress/checker.mjs): a small failover
// history that passes, then doctored copies that each failover check must
// catch.  Run first by run.sh: a drill whose checker misses these proves
// nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkFailover, lineFor } from '../stress/checker.mjs';

const E1 = 2 ** 36; // tokens of epoch 1 (the old primary)
const E2 = 2 ** 37; // tokens of epoch 2 (the new primary)
const TAB_A = 'document:1/tab:a';
const TAB_B = 'document:1/tab:b';
const IDS = ['document:1', TAB_A, TAB_B];
const NEW = 2_000_000; // server time (ms) of the promotion
const OLD = NEW - 5000; // the old primary's times

/*
 * The old primary grants tab:a to w1 (connection c1) and tab:b to sql1; w1
 * saves twice.  The standby receives the grant of tab:a and the first save,
 * not the rest.  After the failover the new primary's worker releases c1's
 * lease, w1 (now c2) joins tab:a again and saves; sql1 presents its
 * pre-failover token, which the new primary never had.
 */
function history() {
  const l1 = lineFor('w1#2', E1 + 1);
  const l2 = lineFor('w1#3', E1 + 1);
  const l3 = lineFor('w1#5', E2 + 1);
  const ws = (id, op, res, t, extra = {}) => ({ k: 'invoke', id, client: 'w1', user: 'w1', conn: t < 1000 ? 'c1' : 'c2', kind: 'ws', op, res, ...extra, t });
  const records = [
    ws('w1#1', 'join', TAB_A, 90),
    { k: 'ok', id: 'w1#1', t: 100, role: 'editor', read: { res: TAB_A, version: 0, content: '' }, grant: { res: TAB_A, token: E1 + 1 } },
    ws('w1#2', 'save', TAB_A, 140, { token: E1 + 1, line: l1 }),
    { k: 'ok', id: 'w1#2', t: 150, version: 1 },
    ws('w1#3', 'save', TAB_A, 290, { token: E1 + 1, line: l2 }),
    { k: 'ok', id: 'w1#3', t: 300, version: 2 },
    { k: 'invoke', id: 'sql1#1', client: 'sql1', user: 'sql1', conn: 'sql1', kind: 'sql', op: 'acquire', res: TAB_B, t: 390 },
    { k: 'ok', id: 'sql1#1', t: 400, granted: true, grant: { res: TAB_B, token: E1 + 2 } },
    ws('w1#4', 'join', TAB_A, 1490),
    { k: 'ok', id: 'w1#4', t: 1500, role: 'editor', read: { res: TAB_A, version: 1, content: `${l1}\n` }, grant: { res: TAB_A, token: E2 + 1 } },
    ws('w1#5', 'save', TAB_A, 1590, { token: E2 + 1, line: l3 }),
    { k: 'ok', id: 'w1#5', t: 1600, version: 2 },
    { k: 'invoke', id: 'sql1#2', client: 'sql1', user: 'sql1', conn: 'sql1', kind: 'sql', op: 'save', res: TAB_B, token: E1 + 2, line: lineFor('sql1#2', E1 + 2), preFailover: true, allow: ['VERSION_CONFLICT'], t: 1650 },
    { k: 'fail', id: 'sql1#2', code: 'LOCK_NOT_HELD', t: 1700 },
  ];
  const saved = (t, version, at) => ({ t, event: 'doc:saved', payload: { resourceId: TAB_A, version, savedBy: { userId: 'w1' }, savedAt: new Date(at).toISOString() } });
  const events = [saved(150, 1, OLD + 100), saved(300, 2, OLD + 250), saved(1600, 2, NEW + 200)];
  const row = (id, at, action, res, token, holder, user, reason = null) => ({ id, at, action, resource_id: res, token, holder_id: holder, user_id: user, reason });
  const grantA = row(1, OLD, 'grant', TAB_A, E1 + 1, 'c1', 'w1');
  const grantB = row(2, OLD + 200, 'grant', TAB_B, E1 + 2, 'sql1', 'sql1');
  const res = (id, lines) => ({ id, content: lines.map((l) => `${l}\n`).join(''), version: lines.length });
  return {
    ttlMs: 10000, records, events, resourceIds: IDS, synchronous: false, tDown: 1000, promotedAt: NEW,
    old: { audit: [grantA, grantB], resources: [res('document:1', []), res(TAB_A, [l1, l2]), res(TAB_B, [])] },
    now: {
      audit: [grantA,
        // the audit id sequence of the new primary can repeat the old one's
        row(2, NEW + 50, 'release', TAB_A, E1 + 1, 'c1', 'w1', 'disconnected'),
        row(3, NEW + 100, 'grant', TAB_A, E2 + 1, 'c2', 'w1')],
      resources: [res('document:1', []), res(TAB_A, [l1, l3]), res(TAB_B, [])],
    },
  };
}

const kinds = (r) => r.violations.map((x) => `${x.check} ${x.kind}`);

test('a correct failover history passes, and counts what asynchronous replication lost', () => {
  const r = checkFailover(history());
  assert.deepEqual(r.violations, []);
  assert.equal(r.stats['saves lost'], 1);
  assert.equal(r.stats['grants lost'], 1);
  assert.equal(r.stats['tokens issued by the old primary'], 2);
  assert.equal(r.stats['tokens issued by the new primary'], 1);
  assert.equal(r.stats['pre-failover saves refused LOCK_NOT_HELD, not replicated'], 1);
});

test('with a synchronous standby, an acknowledgement the new primary lacks is a violation', () => {
  const h = history();
  h.synchronous = true;
  const k = kinds(checkFailover(h));
  assert.ok(k.filter((x) => x === 'F3 acknowledged-and-lost').length === 2, k.join('; '));
});

/*
 * w2 (connection c3) acquires tab:b by lock:acquire just before the crash;
 * the grant is in neither primary's data (the worker answered before its
 * WAL flush, which the crash took).
 */
function undoneGrant(h, { op = 'acquire', savedUnder = false } = {}) {
  const token = E1 + 3;
  h.records.push(
    { k: 'invoke', id: 'w2#1', client: 'w2', user: 'w2', conn: 'c3', kind: 'ws', op, res: TAB_B, t: 900 },
    { k: 'ok', id: 'w2#1', t: 910, role: 'editor', grant: { res: TAB_B, token } });
  if (savedUnder) {
    h.records.push(
      { k: 'invoke', id: 'w2#2', client: 'w2', user: 'w2', conn: 'c3', kind: 'ws', op: 'save', res: TAB_B, token, line: lineFor('w2#2', token), t: 920 },
      { k: 'ok', id: 'w2#2', t: 930, version: 1 });
  }
  return h;
}

test('a lock:acquire answered just before the crash and undone by it, with nothing under its token', () => {
  const r = checkFailover(undoneGrant(history()));
  assert.deepEqual(r.violations, []);
  assert.equal(r.stats['grants undone by the crash'], 1);
  assert.equal(r.stats['grants lost'], 1);
});

test('a grant in neither primary\'s data: a violation under a save, with a synchronous standby, or by a join', () => {
  let k = kinds(checkFailover(undoneGrant(history(), { savedUnder: true })));
  assert.ok(k.includes('F3 grant-vanished'), k.join('; '));
  const h = undoneGrant(history());
  h.synchronous = true;
  k = kinds(checkFailover(h));
  assert.ok(k.includes('F3 grant-vanished'), k.join('; '));
  assert.ok(k.includes('3 observed-grant-unknown'), k.join('; '));
  k = kinds(checkFailover(undoneGrant(history(), { op: 'join' })));
  assert.ok(k.includes('F3 grant-vanished'), k.join('; '));
});

test('the new primary reissuing a token the old one granted (not replicated)', () => {
  const h = history();
  h.now.audit[2].token = E1 + 2;
  h.records[9].grant.token = E1 + 2;
  h.records[10].token = E1 + 2;
  h.records[10].line = lineFor('w1#5', E1 + 2);
  h.now.resources[1] = { ...h.now.resources[1], content: h.now.resources[1].content.replace(lineFor('w1#5', E2 + 1), lineFor('w1#5', E1 + 2)) };
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('F1 token-issued-twice'), k.join('; '));
  assert.ok(k.includes('F2 token-not-above'), k.join('; '));
});

test('a new token below the old primary\'s', () => {
  const h = history();
  for (const x of [h.now.audit[2]]) x.token = 7;
  h.records[9].grant.token = 7;
  h.records[10].token = 7;
  h.records[10].line = lineFor('w1#5', 7);
  h.now.resources[1] = { ...h.now.resources[1], content: h.now.resources[1].content.replace(lineFor('w1#5', E2 + 1), lineFor('w1#5', 7)) };
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('F2 token-not-above'), k.join('; '));
  assert.ok(!k.includes('F1 token-issued-twice'), k.join('; '));
});

test('an acknowledged save in neither primary\'s data', () => {
  const h = history();
  h.old.resources[1] = { id: TAB_A, content: `${lineFor('w1#2', E1 + 1)}\n`, version: 1 };
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('F3 save-vanished'), k.join('; '));
  assert.ok(k.includes('2 lost-update'), k.join('; ')); // the old primary's own history
});

test('a save accepted with a token the new primary never granted nor replicated', () => {
  const h = history();
  const line = lineFor('sql1#2', E1 + 2);
  h.records[13] = { k: 'ok', id: 'sql1#2', t: 1700, version: 1 };
  h.now.resources[2] = { id: TAB_B, content: `${line}\n`, version: 1 };
  h.events.push({ t: 1700, event: 'doc:saved', payload: { resourceId: TAB_B, version: 1, savedBy: { userId: 'sql1' }, savedAt: new Date(NEW + 300).toISOString() } });
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('F4 unreplicated-token-accepted'), k.join('; '));
  assert.ok(k.includes('1 token-never-granted'), k.join('; '));
});

test('a replicated lease live on the new primary while it grants the same tab', () => {
  const h = history();
  h.now.audit.splice(1, 1); // the worker never released c1's lease
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('3 overlap'), k.join('; '));
});

test('a pre-failover token refused although its lease was replicated and live', () => {
  const h = history();
  h.now.audit.splice(1, 0, h.old.audit[1]); // tab:b's grant was replicated
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('F4 replicated-live-refused'), k.join('; '));
});

test('a row the new primary calls replicated that the old primary never wrote', () => {
  const h = history();
  h.now.audit.splice(1, 0, { id: 9, at: OLD + 500, action: 'release', resource_id: TAB_B, token: E1 + 2, holder_id: 'sql1', user_id: 'sql1', reason: 'released' });
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('F5 not-written-by-old'), k.join('; '));
});

test('two holders at once on the old primary', () => {
  const h = history();
  h.old.audit.push({ id: 3, at: OLD + 300, action: 'grant', resource_id: 'document:1', token: E1 + 3, holder_id: 'sql2', user_id: 'sql2', reason: null });
  const k = kinds(checkFailover(h));
  assert.ok(k.includes('3 overlap'), k.join('; '));
  assert.ok(checkFailover(h).violations.some((x) => x.msg.startsWith('old primary: ')));
});

/* A replicated lease extended after the promotion (renew rows with expiresAt):
   its holder saves after the lease's TTL but within the extension. */
function extended(saveAt) {
  const h = history();
  const line = lineFor('sql1#2', E1 + 2);
  h.now.audit.splice(1, 0, h.old.audit[1]); // tab:b's grant was replicated
  h.now.audit.push({ id: 4, at: NEW + 10, action: 'renew', resource_id: TAB_B, token: E1 + 2, holder_id: 'sql1', user_id: 'sql1',
    reason: 'promotion', expiresAt: OLD + 200 + 10000 + 30000 });
  h.records[13] = { k: 'ok', id: 'sql1#2', t: 1700, version: 1 };
  h.now.resources[2] = { id: TAB_B, content: `${line}\n`, version: 1 };
  h.events.push({ t: 1700, event: 'doc:saved', payload: { resourceId: TAB_B, version: 1, savedBy: { userId: 'sql1' }, savedAt: new Date(saveAt).toISOString() } });
  return h;
}

test('a save within the extension of a replicated lease, after its TTL, is accepted', () => {
  const r = checkFailover(extended(NEW + 20000));
  assert.deepEqual(r.violations, []);
  assert.equal(r.stats['pre-failover saves accepted, replicated'], 1);
  assert.equal(r.stats['grants lost'], 0);
});

test('a save after the extended expiry is a violation', () => {
  const k = kinds(checkFailover(extended(NEW + 40000)));
  assert.ok(k.includes('1 save-after-ttl'), k.join('; '));
});
