// The checker must catch what it claims to catch: a clean synthetic history
// passes, and each doctored copy (a lost update, overlapping holders, a save
// after the lease ended or lapsed, a doubled or missing lock:expired, ...)
// is reported by the check meant for it, and only by the checks that the
// doctoring really breaks.
import test from 'node:test';
import assert from 'node:assert/strict';
import { check as checkHistory, lineFor, parseLine, splitContent, ancestors, onOnePath } from './checker.mjs';
import { revisionHash } from '../../scripts/verify-revisions.mjs';

const B = Date.parse('2026-01-01T00:00:00.000Z');
const iso = (ms) => new Date(B + ms).toISOString();
const TTL = 1000;
const DOC = 'document:s';
const TA = 'document:s/tab:a';
const TB = 'document:s/tab:b';

/*
 * u1 (connection c1) takes tab a (token 11), saves versions 1 and 2, releases.
 * u2 (connection c2) takes the document (token 12), saves tab a (version 3)
 * and walks away: the lease expires at 2800 and is swept at 2900.
 * u3 (c3) is denied tab b... no: u3 takes tab b (token 13) after the
 * document lease expired, saves it (version 1) and releases it.
 */
function history() {
  const recs = [];
  const op = (id, client, conn, o, res, fields, outcome, invokeT, ackT) => {
    recs.push({ k: 'invoke', id, client, user: client, conn, kind: 'sql', op: o, res, ...fields, t: invokeT });
    recs.push({ k: outcome.k, id, t: ackT, ...outcome });
  };
  const l1 = lineFor('u1#2', 11);
  const l2 = lineFor('u1#3', 11);
  const l3 = lineFor('u2#3', 12);
  const l4 = lineFor('u3#2', 13);
  op('u1#1', 'u1', 'c1', 'acquire', TA, {}, { k: 'ok', granted: true, grant: { res: TA, token: 11 } }, 0, 1);
  op('u1#2', 'u1', 'c1', 'save', TA, { token: 11, line: l1 }, { k: 'ok', version: 1 }, 2, 3);
  op('u1#3', 'u1', 'c1', 'save', TA, { token: 11, line: l2 }, { k: 'ok', version: 2 }, 4, 5);
  op('u1#4', 'u1', 'c1', 'release', TA, { token: 11 }, { k: 'ok' }, 6, 7);
  op('u2#1', 'u2', 'c2', 'acquire', DOC, {}, { k: 'ok', granted: true, grant: { res: DOC, token: 12 } }, 8, 9);
  op('u2#2', 'u2', 'c2', 'read', TA, {}, { k: 'ok', read: { res: TA, version: 2, content: `${l1}\n${l2}\n` } }, 10, 11);
  op('u2#3', 'u2', 'c2', 'save', TA, { token: 12, line: l3 }, { k: 'ok', version: 3 }, 12, 13);
  op('u2#4', 'u2', 'c2', 'save', TA, { token: 12, line: lineFor('u2#4', 12), expect: 'refused', why: 'late' },
    { k: 'fail', code: 'LOCK_EXPIRED' }, 14, 15);
  op('u3#1', 'u3', 'c3', 'acquire', TB, {}, { k: 'ok', granted: true, grant: { res: TB, token: 13 } }, 16, 17);
  op('u3#2', 'u3', 'c3', 'save', TB, { token: 13, line: l4 }, { k: 'ok', version: 1 }, 18, 19);
  op('u3#3', 'u3', 'c3', 'release', TB, { token: 13 }, { k: 'ok' }, 20, 21);
  op('u3#4', 'u3', 'c3', 'acquire', DOC, {}, { k: 'ok', granted: false }, 22, 23);

  const audit = [];
  const a = (at, action, res, token, user, holder, reason = null) =>
    audit.push({ id: audit.length + 1, at: B + at, action, resource_id: res, token, user_id: user, holder_id: holder, reason });
  a(1000.5, 'grant', TA, 11, 'u1', 'c1');
  a(1600.5, 'release', TA, 11, 'u1', 'c1', 'released');
  a(1700.5, 'grant', DOC, 12, 'u2', 'c2');
  a(2900.5, 'expire', DOC, 12, 'u2', 'c2', 'ttl');
  a(3000.5, 'grant', TB, 13, 'u3', 'c3');
  a(3100.5, 'release', TB, 13, 'u3', 'c3', 'released');
  a(3200.5, 'grant', DOC, 14, 'u4', 'c4');
  a(3300.5, 'release', DOC, 14, 'u4', 'c4', 'released');

  const ref = (u) => ({ userId: u, username: u });
  const events = [
    { event: 'lock:acquired', payload: { resourceId: TA, holder: ref('u1'), acquiredAt: iso(1000), expiresAt: iso(2000) } },
    { event: 'doc:saved', payload: { resourceId: TA, version: 1, savedBy: ref('u1'), savedAt: iso(1100) } },
    { event: 'doc:saved', payload: { resourceId: TA, version: 2, savedBy: ref('u1'), savedAt: iso(1500) } },
    { event: 'lock:released', payload: { resourceId: TA, previousHolder: ref('u1'), reason: 'released', releasedAt: iso(1600) } },
    { event: 'lock:acquired', payload: { resourceId: DOC, holder: ref('u2'), acquiredAt: iso(1700), expiresAt: iso(2700) } },
    { event: 'doc:saved', payload: { resourceId: TA, version: 3, savedBy: ref('u2'), savedAt: iso(1800) } },
    { event: 'lock:expired', payload: { resourceId: DOC, previousHolder: ref('u2'), expiredAt: iso(2800) } },
    { event: 'lock:acquired', payload: { resourceId: TB, holder: ref('u3'), acquiredAt: iso(3000), expiresAt: iso(4000) } },
    { event: 'doc:saved', payload: { resourceId: TB, version: 1, savedBy: ref('u3'), savedAt: iso(3050) } },
    { event: 'lock:released', payload: { resourceId: TB, previousHolder: ref('u3'), reason: 'released', releasedAt: iso(3100) } },
    { event: 'lock:acquired', payload: { resourceId: DOC, holder: ref('u4'), acquiredAt: iso(3200), expiresAt: iso(4200) } },
    { event: 'lock:released', payload: { resourceId: DOC, previousHolder: ref('u4'), reason: 'released', releasedAt: iso(3300) } },
  ].map((e, i) => ({ t: 100 + i, ...e }));

  const resources = [
    { id: DOC, content: '', version: 0 },
    { id: TA, content: `${l1}\n${l2}\n${l3}\n`, version: 3 },
    { id: TB, content: `${l4}\n`, version: 1 },
  ];
  return { ttlMs: TTL, records: recs, events, audit, resources, resourceIds: [DOC, TA, TB], lines: { l1, l2, l3, l4 } };
}

/*
 * The revisions a correct server keeps for a history: one per version of
 * each resource's final content, with the saver, path and token of the line
 * that version added, the time of its doc:saved, chained.  Built when the
 * history is checked, so that a doctored content or event is a server that
 * recorded just that.
 */
function revisionsOf(h) {
  const invokes = new Map(h.records.filter((x) => x.k === 'invoke').map((x) => [x.id, x]));
  const out = [];
  for (const r of h.resources) {
    const lines = splitContent(r.content);
    let prev = null;
    for (let i = 0; i < r.version && i < lines.length; i++) {
      const parsed = parseLine(lines[i]);
      const op = invokes.get(parsed?.opId);
      const ev = h.events.find((e) => e.event === 'doc:saved' && e.payload.resourceId === r.id && e.payload.version === i + 1);
      const x = {
        resource_id: r.id, version: i + 1, content: lines.slice(0, i + 1).map((l) => `${l}\n`).join(''),
        saved_by: op?.user ?? null, saved_by_name: op?.user ?? null,
        saved_at: ev ? ev.payload.savedAt.replace('Z', '123Z') : iso(5000 + i),
        token: parsed?.token ?? null, path: op?.kind ?? 'sql', restored_from: null, prev_hash: prev,
      };
      x.hash = revisionHash(x);
      prev = x.hash;
      out.push(x);
    }
  }
  return out;
}
const check = (h) => checkHistory({
  ...h,
  revisions: h.revisions ?? revisionsOf(h),
  verified: h.verified ?? h.resources.map((r) => ({ id: r.id, ok: true })),
});

const kinds = (r) => r.violations.map((x) => `${x.check}:${x.kind}`);
const only = (r, checkNo) => {
  assert.ok(r.violations.length > 0, 'the doctored history is reported');
  assert.deepEqual([...new Set(r.violations.map((x) => x.check))], [checkNo],
    `only check ${checkNo} reports it: ${JSON.stringify(r.violations, null, 1)}`);
};

test('paths: ancestors and conflicts', () => {
  assert.deepEqual(ancestors('document:1/tab:a'), ['document:1']);
  assert.deepEqual(ancestors('document:1'), []);
  assert.equal(onOnePath('document:1', 'document:1/tab:a'), true);
  assert.equal(onOnePath('document:1/tab:a', 'document:1'), true);
  assert.equal(onOnePath('document:1/tab:a', 'document:1/tab:b'), false);
  assert.equal(onOnePath('document:1', 'document:12/tab:a'), false);
});

test('a clean history has no violation', () => {
  const r = check(history());
  assert.deepEqual(r.violations, []);
  assert.equal(r.counts['accepted saves (final versions)'], 4);
  assert.equal(r.counts['audit expire'], 1);
  assert.equal(r.counts['lapsed-lease saves fail'], 1);
  assert.equal(r.counts['client-observed grants'], 3);
  assert.equal(r.counts['revisions checked'], 4);
});

test('check 2: a lost update (a save based on an old version) is reported', () => {
  const h = history();
  // u2 saved on top of version 1 instead of version 2: u1's second save is gone
  h.resources[1].content = `${h.lines.l1}\n${h.lines.l3}\n`;
  const r = check(h);
  only(r, 2);
  assert.ok(kinds(r).includes('2:lines-vs-version'), kinds(r).join());
  assert.ok(r.violations.some((x) => x.kind === 'lost-update' && x.msg.includes('u1#3')), kinds(r).join());
});

test('check 2: an acknowledged save missing from the content is reported', () => {
  const h = history();
  h.resources[2].content = '';
  h.resources[2].version = 0;
  h.events = h.events.filter((e) => !(e.event === 'doc:saved' && e.payload.resourceId === TB));
  const r = check(h);
  only(r, 2);
  assert.ok(r.violations.some((x) => x.kind === 'lost-update' && x.msg.includes('u3#2')), kinds(r).join());
});

test('check 2: a refused save whose content was stored is reported', () => {
  const h = history();
  const late = lineFor('u2#4', 12);
  h.resources[1].content += `${late}\n`;
  h.resources[1].version = 4;
  h.events.push({ t: 999, event: 'doc:saved', payload: { resourceId: TA, version: 4, savedBy: { userId: 'u2', username: 'u2' }, savedAt: iso(1900) } });
  const r = check(h);
  assert.ok(kinds(r).includes('2:refused-save-applied'), kinds(r).join());
});

test('check 2: acknowledgements out of real-time order are reported', () => {
  const h = history();
  // u1's second save was sent after the first was acknowledged but got version 1
  const first = h.records.find((x) => x.id === 'u1#2' && x.k === 'ok');
  const second = h.records.find((x) => x.id === 'u1#3' && x.k === 'ok');
  first.version = 2;
  second.version = 1;
  const r = check(h);
  assert.ok(kinds(r).includes('2:real-time-order'), kinds(r).join());
});

test('check 2: a read that is not a prefix of the final history is reported', () => {
  const h = history();
  h.records.find((x) => x.id === 'u2#2' && x.k === 'ok').read.content = `${h.lines.l2}\n${h.lines.l1}\n`;
  only(check(h), 2);
});

test('check 1: a save accepted after its lease was released is reported', () => {
  const h = history();
  // u1's second save committed after the release at 1600
  h.events.find((e) => e.event === 'doc:saved' && e.payload.version === 2 && e.payload.resourceId === TA).payload.savedAt = iso(1650);
  const r = check(h);
  only(r, 1);
  assert.ok(kinds(r).includes('1:save-after-end'), kinds(r).join());
});

test('check 1: a save accepted after its lease lapsed (before the sweep) is reported', () => {
  const h = history();
  // u2's save at 2750: more than a TTL after the grant at 1700.5, before the sweep at 2900.5
  h.events.find((e) => e.event === 'doc:saved' && e.payload.version === 3).payload.savedAt = iso(2750);
  const r = check(h);
  only(r, 1);
  assert.ok(kinds(r).includes('1:save-after-ttl'), kinds(r).join());
});

test('check 1: a save sent on a certainly lapsed lease and accepted is reported', () => {
  const h = history();
  const rec = h.records.find((x) => x.id === 'u3#2' && x.k === 'invoke');
  Object.assign(rec, { expect: 'refused', why: 'synthetic' });
  const r = check(h);
  only(r, 1);
  assert.ok(kinds(r).includes('1:lapsed-save-accepted'), kinds(r).join());
});

test('check 1: a save with a token granted on another resource is reported', () => {
  const h = history();
  const l4 = lineFor('u3#2', 11); // presents u1's tab-a token on tab b
  h.resources[2].content = `${l4}\n`;
  h.records.find((x) => x.id === 'u3#2' && x.k === 'invoke').line = l4;
  h.records.find((x) => x.id === 'u3#2' && x.k === 'invoke').token = 11;
  const r = check(h);
  assert.ok(kinds(r).includes('1:token-off-path'), kinds(r).join());
});

test('check 1: LOCK_NOT_HELD for an expired token is reported', () => {
  const h = history();
  h.records.find((x) => x.id === 'u2#4' && x.k === 'fail').code = 'LOCK_NOT_HELD';
  const r = check(h);
  only(r, 1);
  assert.ok(kinds(r).includes('1:refusal-code'), kinds(r).join());
});

test('check 3: two holders of one tab at once are reported', () => {
  const h = history();
  // u5 was granted tab a while u1 still held it
  h.audit.push({ id: 100, at: B + 1200, action: 'grant', resource_id: TA, token: 15, user_id: 'u5', holder_id: 'c5', reason: null });
  h.audit.push({ id: 101, at: B + 1300, action: 'release', resource_id: TA, token: 15, user_id: 'u5', holder_id: 'c5', reason: 'released' });
  h.events.push({ t: 500, event: 'lock:acquired', payload: { resourceId: TA, holder: { userId: 'u5', username: 'u5' } } });
  h.events.push({ t: 501, event: 'lock:released', payload: { resourceId: TA, previousHolder: { userId: 'u5', username: 'u5' } } });
  const r = check(h);
  only(r, 3);
  assert.ok(r.violations.some((x) => x.kind === 'overlap' && x.msg.includes('token 11') && x.msg.includes('token 15')), kinds(r).join());
});

test('check 3: a document lock while a tab is held is reported', () => {
  const h = history();
  // u1 released tab a only at 1750, after u2 got the document at 1700.5
  h.audit.find((x) => x.action === 'release' && x.token === 11).at = B + 1750;
  const r = check(h);
  only(r, 3);
  assert.ok(r.violations.some((x) => x.kind === 'overlap' && x.msg.includes(DOC) && x.msg.includes(TA)), kinds(r).join());
});

test('check 3: sibling tabs held at once are not a conflict', () => {
  const h = history();
  h.audit.push({ id: 100, at: B + 1200, action: 'grant', resource_id: TB, token: 15, user_id: 'u5', holder_id: 'c5', reason: null });
  h.audit.push({ id: 101, at: B + 1300, action: 'release', resource_id: TB, token: 15, user_id: 'u5', holder_id: 'c5', reason: 'released' });
  h.events.push({ t: 500, event: 'lock:acquired', payload: { resourceId: TB, holder: { userId: 'u5', username: 'u5' } } });
  h.events.push({ t: 501, event: 'lock:released', payload: { resourceId: TB, previousHolder: { userId: 'u5', username: 'u5' } } });
  assert.deepEqual(check(h).violations, []);
});

test('check 3: a grant the client saw but the audit does not have is reported', () => {
  const h = history();
  h.records.find((x) => x.id === 'u3#1' && x.k === 'ok').grant.token = 99;
  only(check(h), 3);
});

test('check 3: a token proven valid after a later conflicting token was (clients\' view) is reported', () => {
  const h = history();
  // u1's second save (token 11, tab a) was sent after u2's grant of the document (token 12) was acknowledged
  h.records.find((x) => x.id === 'u1#3' && x.k === 'invoke').t = 10;
  h.records.find((x) => x.id === 'u1#3' && x.k === 'ok').t = 10.5;
  const r = check(h);
  only(r, 3);
  assert.ok(r.violations.some((x) => x.kind === 'stale-after-newer' && x.msg.includes('u1#3') && x.msg.includes('u2#1')), kinds(r).join());
});

test('check 3: tokens that do not increase in grant order are reported', () => {
  const h = history();
  const g = h.audit.find((x) => x.action === 'grant' && x.token === 14);
  g.token = 10;
  h.audit.find((x) => x.action === 'release' && x.token === 14).token = 10;
  const r = check(h);
  assert.ok(kinds(r).includes('3:token-order'), kinds(r).join());
});

test('check 4: a doubled lock:expired is reported', () => {
  const h = history();
  h.events.push({ ...h.events.find((e) => e.event === 'lock:expired'), t: 900 });
  const r = check(h);
  only(r, 4);
  assert.ok(kinds(r).includes('4:lock:expired-count'), kinds(r).join());
});

test('check 4: an expiry without lock:expired is reported', () => {
  const h = history();
  h.events = h.events.filter((e) => e.event !== 'lock:expired');
  const r = check(h);
  only(r, 4);
  assert.ok(kinds(r).includes('4:lock:expired-count'), kinds(r).join());
});

test('check 4: a lock:expired without an audited expiry is reported', () => {
  const h = history();
  h.events.push({ t: 900, event: 'lock:expired', payload: { resourceId: TB, previousHolder: { userId: 'u3', username: 'u3' }, expiredAt: iso(4000) } });
  only(check(h), 4);
});

test('check 4: a missing doc:saved is reported', () => {
  const h = history();
  h.events = h.events.filter((e) => !(e.event === 'doc:saved' && e.payload.resourceId === TB));
  only(check(h), 4);
});

test('check 5: an unexpected error code is reported', () => {
  const h = history();
  h.records.find((x) => x.id === 'u3#4' && x.k === 'ok').k = 'fail';
  h.records.find((x) => x.id === 'u3#4' && x.k === 'fail').code = 'INTERNAL';
  only(check(h), 5);
});

test('an operation without completion is unknown, and its save may or may not be in the content', () => {
  const h = history();
  h.records = h.records.filter((x) => !(x.id === 'u3#2' && x.k === 'ok'));
  const r = check(h);
  assert.deepEqual(r.violations, []);
  assert.equal(r.ops.find((o) => o.id === 'u3#2').outcome, 'unknown');
});

/* check 6: the revisions.  rehash() recomputes the chain after a change, so
 * that only the doctored field is wrong. */
const rehash = (revs) => {
  let prev = null;
  for (const x of [...revs].sort((a, b) => a.resource_id.localeCompare(b.resource_id) || a.version - b.version)) {
    if (x.version === 1) prev = null;
    x.prev_hash = prev;
    x.hash = revisionHash(x);
    prev = x.hash;
  }
  return revs;
};
const doctored = (change) => {
  const h = history();
  h.revisions = revisionsOf(h);
  change(h.revisions, h);
  return h;
};
const revOf = (revs, res, version) => revs.find((x) => x.resource_id === res && x.version === version);

test('check 6: the revisions built for a clean history chain and verify', () => {
  const h = history();
  const revs = revisionsOf(h);
  assert.equal(revs.length, 4);
  assert.equal(revOf(revs, TA, 2).prev_hash, revOf(revs, TA, 1).hash);
  assert.equal(revOf(revs, TB, 1).prev_hash, null);
  assert.deepEqual(check({ ...h, revisions: revs }).violations, []);
});

test('check 6: an accepted save without its revision is reported', () => {
  const h = doctored((revs) => revs.splice(revs.indexOf(revOf(revs, TA, 3)), 1));
  const r = check(h);
  only(r, 6);
  assert.ok(kinds(r).includes('6:revision-versions'), kinds(r).join());
});

test('check 6: a revision in the middle taken out is reported, also as a broken chain', () => {
  const h = doctored((revs) => revs.splice(revs.indexOf(revOf(revs, TA, 2)), 1));
  const r = check(h);
  only(r, 6);
  assert.ok(kinds(r).includes('6:revision-versions') && kinds(r).includes('6:revision-chain'), kinds(r).join());
});

test('check 6: a revision whose content is not its save\'s is reported', () => {
  const h = doctored((revs, hist) => { revOf(revs, TA, 2).content = `${hist.lines.l2}\n`; rehash(revs); });
  const r = check(h);
  only(r, 6);
  assert.deepEqual(kinds(r), ['6:revision-content']);
});

test('check 6: a changed revision without a new hash breaks the chain', () => {
  const h = doctored((revs) => { revOf(revs, TA, 1).saved_by_name = 'someone else'; });
  const r = check(h);
  only(r, 6);
  assert.ok(r.violations.some((x) => x.kind === 'revision-chain' && x.msg.includes(`${TA} revision 1: its fields do not match its hash`)), kinds(r).join());
});

test('check 6: a prev_hash that is not the previous hash is reported', () => {
  const h = doctored((revs) => {
    const x = revOf(revs, TA, 3);
    x.prev_hash = revOf(revs, TA, 1).hash;
    x.hash = revisionHash(x);
  });
  const r = check(h);
  only(r, 6);
  assert.ok(r.violations.some((x) => x.kind === 'revision-chain' && x.msg.includes(`${TA} revision 3: not chained to version 2`)), kinds(r).join());
});

test('check 6: a first revision that names a predecessor is reported', () => {
  const h = doctored((revs) => { const x = revOf(revs, TB, 1); x.prev_hash = 'ab'.repeat(32); x.hash = revisionHash(x); });
  const r = check(h);
  only(r, 6);
  assert.ok(kinds(r).includes('6:revision-chain'), kinds(r).join());
});

test('check 6: a revision with another token, saver, path or time is reported', () => {
  for (const [field, value, kind] of [['token', 12, 'revision-token'], ['saved_by', 'u2', 'revision-saver'],
    ['path', 'ws', 'revision-path'], ['saved_at', iso(1200), 'revision-time'], ['restored_from', 1, 'revision-restored']]) {
    const h = doctored((revs) => { revOf(revs, TA, 2)[field] = value; rehash(revs); });
    const r = check(h);
    only(r, 6);
    assert.deepEqual(kinds(r), [`6:${kind}`], field);
  }
});

test('check 6: a revision of a resource outside the run is reported', () => {
  const h = doctored((revs) => revs.push({ ...revOf(revs, TB, 1), resource_id: 'document:other' }));
  const r = check(h);
  only(r, 6);
  assert.ok(kinds(r).includes('6:revision-unknown-resource'), kinds(r).join());
});

test('check 6: verify_history failing in the database is reported', () => {
  const h = history();
  h.verified = [{ id: TA, ok: false, first_bad_version: 2, problem: 'its fields do not match its hash' }];
  const r = check(h);
  only(r, 6);
  assert.deepEqual(kinds(r), ['6:verify-history']);
});

/*
 * Holders whose connection is lost: u5 (c5) takes tab b again (token 15),
 * saves version 2, loses its connection (suspended at 3500) and, joining
 * again from c6, takes the lease over (15 released "takeover", 16 granted
 * "takeover", lock:resumed); saves version 3; loses c6 too (suspended at
 * 3800) and does not come back: the grace ends at 4100 (released,
 * "disconnected").
 */
function graceHistory() {
  const h = history();
  const op = (id, conn, o, res, fields, outcome, invokeT, ackT) => {
    h.records.push({ k: 'invoke', id, client: 'u5', user: 'u5', conn, kind: 'ws', op: o, res, ...fields, t: invokeT });
    h.records.push({ k: outcome.k, id, t: ackT, ...outcome });
  };
  const l5 = lineFor('u5#2', 15);
  const l6 = lineFor('u5#4', 16);
  op('u5#1', 'c5', 'acquire', TB, {}, { k: 'ok', granted: true, grant: { res: TB, token: 15 } }, 30, 31);
  op('u5#2', 'c5', 'save', TB, { token: 15, line: l5 }, { k: 'ok', version: 2 }, 32, 33);
  op('u5#3', 'c6', 'acquire', TB, {}, { k: 'ok', granted: true, grant: { res: TB, token: 16 } }, 34, 35);
  op('u5#4', 'c6', 'save', TB, { token: 16, line: l6 }, { k: 'ok', version: 3 }, 36, 37);
  const a = (at, action, res, token, user, holder, reason = null) =>
    h.audit.push({ id: h.audit.length + 1, at: B + at, action, resource_id: res, token, user_id: user, holder_id: holder, reason });
  a(3400.5, 'grant', TB, 15, 'u5', 'c5');
  a(3500.5, 'suspend', TB, 15, 'u5', 'c5', 'disconnected');
  a(3600.5, 'release', TB, 15, 'u5', 'c5', 'takeover');
  a(3600.6, 'grant', TB, 16, 'u5', 'c6', 'takeover');
  a(3800.5, 'suspend', TB, 16, 'u5', 'c6', 'disconnected');
  a(4100.5, 'release', TB, 16, 'u5', 'c6', 'disconnected');
  const ref = { userId: 'u5', username: 'u5' };
  h.events.push(...[
    { event: 'lock:acquired', payload: { resourceId: TB, holder: ref, acquiredAt: iso(3400), expiresAt: iso(4400) } },
    { event: 'doc:saved', payload: { resourceId: TB, version: 2, savedBy: ref, savedAt: iso(3450) } },
    { event: 'lock:suspended', payload: { resourceId: TB, holder: ref, until: iso(3800), expiresAt: iso(4450) } },
    { event: 'lock:resumed', payload: { resourceId: TB, holder: ref, expiresAt: iso(4600) } },
    { event: 'doc:saved', payload: { resourceId: TB, version: 3, savedBy: ref, savedAt: iso(3700) } },
    { event: 'lock:suspended', payload: { resourceId: TB, holder: ref, until: iso(4100), expiresAt: iso(4700) } },
    { event: 'lock:released', payload: { resourceId: TB, previousHolder: ref, reason: 'disconnected', releasedAt: iso(4100) } },
  ].map((e, i) => ({ t: 200 + i, ...e })));
  const tb = h.resources.find((r) => r.id === TB);
  tb.content += `${l5}\n${l6}\n`;
  tb.version = 3;
  return h;
}

test('holders lost and back: suspensions, a takeover and a grace that ends pass', () => {
  const r = check(graceHistory());
  assert.deepEqual(r.violations, []);
  assert.equal(r.counts['audit suspend'], 2);
  assert.deepEqual(r.leases.get(15).suspended.map((x) => x.to - B), [3600.5]);
  assert.deepEqual(r.leases.get(16).suspended.map((x) => x.to - B), [4100.5]);
});

test('check 1: a save accepted while its lease was suspended is reported', () => {
  const h = graceHistory();
  h.audit.find((a) => a.action === 'suspend' && a.token === 15).at = B + 3420.5;
  const r = check(h);
  only(r, 1);
  assert.deepEqual(kinds(r), ['1:save-while-suspended']);
});

test('check 4: a missing lock:suspended or lock:resumed, or a takeover announced as lock:acquired, is reported', () => {
  for (const [what, doctor, expected] of [
    ['no lock:suspended', (h) => { h.events = h.events.filter((e) => !(e.event === 'lock:suspended' && e.payload.until === iso(3800))); }, ['4:lock:suspended-count']],
    ['no lock:resumed', (h) => { h.events = h.events.filter((e) => e.event !== 'lock:resumed'); }, ['4:lock:resumed-count']],
    ['lock:acquired for a takeover', (h) => { const e = h.events.find((x) => x.event === 'lock:resumed'); e.event = 'lock:acquired'; },
      ['4:lock:acquired-count', '4:lock:resumed-count']],
    ['lock:released for a takeover', (h) => { h.events.push({ t: 300, event: 'lock:released', payload: { resourceId: TB, previousHolder: { userId: 'u5', username: 'u5' }, reason: 'takeover', releasedAt: iso(3600) } }); },
      ['4:lock:released-count']],
  ]) {
    const h = graceHistory();
    doctor(h);
    const r = check(h);
    only(r, 4);
    assert.deepEqual(kinds(r).sort(), expected, what);
  }
});

test('check 3: a lease suspended twice without a return, or resumed unsuspended, is reported', () => {
  for (const [at, action, kind] of [[3520.5, 'suspend', '3:suspend-twice'], [3450.5, 'resume', '3:resume-unsuspended']]) {
    const h = graceHistory();
    h.audit.push({ id: 0, at: B + at, action, resource_id: TB, token: 15, user_id: 'u5', holder_id: 'c5', reason: null });
    h.audit.sort((x, y) => x.at - y.at).forEach((x, i) => { x.id = i + 1; });
    const r = check(h);
    assert.ok(kinds(r).includes(kind), `${action}: ${kinds(r).join()}`);
  }
});
