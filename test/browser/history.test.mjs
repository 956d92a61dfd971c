// The history panel of the demo UI, in Chromium: the versions of a tab
// (number, author, time, newest first, paged), the differences between two
// of them in colour, and a restore by the lock holder that the room sees
// announced; a viewer sees the history and no Restore. Also the page's diff
// (ui/diff.js) itself, on random texts, in Node.
//
// Environment: that of test/integration/run-ws.sh; CHROMIUM overrides
// /usr/bin/chromium, COLLAB_BROWSER_OUTPUT the screenshot directory (default
// test/browser/output). Run with test/browser/run.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, until, openDemo, notice } from './browser.mjs';
import { newUser, q, uniq, teardown } from '../integration/helpers.mjs';
import { diffTexts, diffSequences, sideOf } from '../../ui/diff.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUTPUT = process.env.COLLAB_BROWSER_OUTPUT || path.join(HERE, 'output');

let browser;
const pageErrors = [];
const mine = [];

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await q('DELETE FROM collab.resources WHERE id = ANY ($1)', [mine]);
  await teardown();
});

/** A person in their own browser context, on the demo page of the document, tab on screen. */
const open = (user, docKey, tab) => openDemo(browser, user, docKey, pageErrors, { tab, height: 1000 });

/** The history list as shown: [version, author, time text] per item, top to bottom. */
async function shownHistory(p) {
  return p.id('history-list').getByTestId('history-item').evaluateAll((items) => items.map((li) => ({
    version: Number(li.dataset.version),
    label: li.querySelector('[data-testid="history-version"]').textContent,
    author: li.querySelector('[data-testid="history-author"]').textContent,
    time: li.querySelector('[data-testid="history-time"]').textContent,
    datetime: li.querySelector('[data-testid="history-time"]').getAttribute('datetime'),
    restored: li.querySelector('[data-testid="history-restored"]')?.textContent ?? null,
    restore: Boolean(li.querySelector('[data-testid="history-restore"]')),
  })));
}

const item = (p, version) => p.page.locator(`[data-testid="history-item"][data-version="${version}"]`);

test('the page\'s diff gives both texts back, with as few changes as there can be', () => {
  let seed = 20260301;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const words = ['Appendix', 'inflamed', 'not', 'perforated', ',', '.', 'Dr.', 'Berg', 'Ärztin', 'Grüße', '🦴', ' ', '\n', '\n\n'];
  const text = (n) => Array.from({ length: n }, () => words[rnd(words.length)]).join(rnd(2) ? ' ' : '');
  const lcs = (a, b) => {
    const d = Array.from({ length: a.length + 1 }, () => new Int32Array(b.length + 1));
    for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) d[i][j] = a[i - 1] === b[j - 1] ? d[i - 1][j - 1] + 1 : Math.max(d[i - 1][j], d[i][j - 1]);
    return d[a.length][b.length];
  };
  for (let i = 0; i < 2000; i++) {
    const a = text(rnd(50));
    const b = rnd(3) ? [...a].map((c) => (rnd(8) ? c : words[rnd(words.length)])).join('') : text(rnd(50));
    const rows = diffTexts(a, b);
    assert.equal(sideOf(rows, '-'), a, `older text from ${JSON.stringify(rows)}`);
    assert.equal(sideOf(rows, '+'), b, `newer text from ${JSON.stringify(rows)}`);
    if (i < 300) {
      const [x, y] = [[...a], [...b]];
      assert.equal(diffSequences(x, y).filter(([op]) => op === '=').length, lcs(x, y), 'a longest common subsequence is kept');
    }
  }
  assert.deepEqual(diffTexts('Acute appendicitis,\nperforated.\nNo drain.', 'Acute appendicitis,\ngangrenous, not perforated.\nNo drain.\nAntibiotics.'), [
    { kind: 'same', text: 'Acute appendicitis,' },
    { kind: 'mod', parts: [{ op: '+', text: 'gangrenous, not ' }, { op: '=', text: 'perforated.' }] },
    { kind: 'same', text: 'No drain.' },
    { kind: 'add', text: 'Antibiotics.' },
  ]);
  // two texts with nothing in common are shown replaced, however long
  const big = Array.from({ length: 3000 }, (_, n) => `line ${n}`).join('\n');
  const other = Array.from({ length: 3000 }, (_, n) => `other ${n}`).join('\n');
  const rows = diffTexts(big, other);
  assert.equal(sideOf(rows, '-'), big);
  assert.equal(sideOf(rows, '+'), other);
});

test('history panel: versions newest first, paged; a diff in colour; the holder restores and the room is told', async () => {
  const [{ id: docId }] = await q('SELECT collab.create_document($1, NULL, $2::text[]) AS id', [uniq('op'), ['diagnosis', 'procedure-notes']]);
  mine.push(docId);
  const docKey = docId.slice('document:'.length);
  const rid = `${docId}/tab:diagnosis`;
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Dr. Ben Kaya');
  const vera = newUser('Vera Viewer');
  await q("SELECT collab.grant($1, $2, 'edit')", [docId, `user:${anna.sub}`]);
  await q("SELECT collab.grant($1, $2, 'view')", [docId, `user:${vera.sub}`]);

  // twelve versions by two doctors, saved through the SQL API (Ben is not here today)
  const versions = [
    'Suspected appendicitis.',
    'Suspected appendicitis.\nCRP 45 mg/l.',
    'Acute appendicitis.\nCRP 45 mg/l.\nUltrasound: non-compressible appendix, 9 mm.',
  ];
  for (let n = 4; n <= 11; n++) versions.push(`${versions[2]}\nNote ${n}.`);
  versions.push('Acute appendicitis, gangrenous, not perforated.\nCRP 120 mg/l.\nUltrasound: non-compressible appendix, 11 mm.\nPlan: laparoscopic appendectomy today.');
  for (let n = 0; n < versions.length; n++) {
    const u = n % 2 ? ben : anna;
    const [{ token }] = await q('SELECT token FROM collab.acquire($1, $2, $3, $4)', [rid, u.sub, u.name, uniq('backend')]);
    await q('SELECT collab.save($1, $2, $3)', [rid, token, versions[n]]);
    await q('SELECT collab.release($1)', [token]);
  }
  const stored = await q(`SELECT version::int, saved_by_name, collab._ts(saved_at) AS saved_at FROM collab.history($1, NULL, 500)`, [rid]);
  assert.equal(stored.length, 12);

  const a = await open(anna, docKey, 'diagnosis');
  const v = await open(vera, docKey, 'diagnosis');

  // --- the newest ten, newest first, with author and time; Show older brings the rest
  for (const p of [a, v]) {
    const shown = await until(`${p.user.name} sees the first page`, async () => {
      const h = await shownHistory(p);
      assert.equal(h.length, 10);
      return h;
    });
    assert.deepEqual(shown.map((x) => x.version), stored.slice(0, 10).map((r) => r.version));
    for (const [i, x] of shown.entries()) {
      assert.equal(x.label, `Version ${stored[i].version}`);
      assert.equal(x.author, stored[i].saved_by_name);
      assert.equal(x.datetime, stored[i].saved_at, 'the time is the save\'s');
      assert.match(x.time, /\d\d:\d\d:\d\d/);
    }
    assert.equal(await p.id('history-more').isVisible(), true);
    await p.id('history-more').click();
    await until(`${p.user.name} sees all twelve`, async () => {
      assert.deepEqual((await shownHistory(p)).map((x) => x.version), stored.map((r) => r.version));
      assert.equal(await p.id('history-more').isVisible(), false, 'no more pages');
    });
  }
  // the text on screen is the stored one
  assert.equal(await v.id('editor').inputValue(), versions[11]);
  // nobody holds the lock: nobody is offered Restore
  assert.equal((await shownHistory(a)).some((x) => x.restore), false);

  // --- Vera compares version 3 with version 12
  await item(v, 12).getByTestId('history-select').check();
  await until('one version picked', async () => {
    assert.equal(await v.id('history-hint').textContent(), 'Select one more version to compare with version 12.');
  });
  await item(v, 3).getByTestId('history-select').check();
  await until('the diff is shown', async () => {
    assert.equal(await v.id('history-diff').isVisible(), true);
    assert.equal(await v.id('diff-title').textContent(), 'Changes from version 3 to version 12');
    assert.ok((await v.id('diff-del').count()) > 0 && (await v.id('diff-ins').count()) > 0);
  });
  const dels = await v.id('diff-del').allTextContents();
  const inss = await v.id('diff-ins').allTextContents();
  assert.ok(inss.some((x) => x.includes('gangrenous, not perforated')), `added words: ${JSON.stringify(inss)}`);
  assert.ok(dels.includes('45') && inss.includes('120'), `the CRP value changed in place: ${JSON.stringify([dels, inss])}`);
  assert.ok(dels.includes('9') && inss.includes('11'), `the diameter changed in place: ${JSON.stringify([dels, inss])}`);
  assert.deepEqual(await v.id('diff-add-line').allTextContents(), ['+added line: Plan: laparoscopic appendectomy today.']);
  // the diff as shown is the differences of the two stored contents
  const [r3, r12] = await Promise.all([3, 12].map(async (n) => (await q('SELECT content FROM collab.revision($1, $2)', [rid, n]))[0].content));
  const lineTexts = await v.page.locator('[data-testid="diff-body"] .diff-text').allTextContents();
  const rows = diffTexts(r3, r12);
  assert.equal(lineTexts.length, rows.length, 'one line per row (nothing folded in so short a text)');
  // removed words red and struck through, added words green
  const colours = await v.page.evaluate(() => {
    const style = (sel) => { const s = getComputedStyle(document.querySelector(sel)); return { bg: s.backgroundColor, line: s.textDecorationLine }; };
    return { del: style('.diff-line--mod del'), ins: style('.diff-line--mod ins') };
  });
  assert.deepEqual(colours, {
    del: { bg: 'rgb(251, 211, 207)', line: 'line-through' },
    ins: { bg: 'rgb(199, 235, 211)', line: 'underline' },
  });
  await v.page.getByTestId('history-diff').scrollIntoViewIfNeeded();
  fs.mkdirSync(OUTPUT, { recursive: true });
  const shot = path.join(OUTPUT, 'history-diff.png');
  await v.page.screenshot({ path: shot, fullPage: true, animations: 'disabled' });
  console.log(`screenshot: ${shot}`);
  assert.ok(fs.statSync(shot).size > 10_000, 'the screenshot is a real picture');

  // --- Anna takes the lock: Restore appears on every version but the current one
  await a.id('btn-edit').click();
  await until('Anna holds the lock and is offered Restore', async () => {
    assert.equal(await a.id('lock-badge').getAttribute('data-state'), 'mine');
    const h = await shownHistory(a);
    assert.deepEqual(h.filter((x) => x.restore).map((x) => x.version), stored.slice(1).map((r) => r.version));
  });
  // the viewer still has none
  await until('Vera sees Anna editing', async () => {
    assert.equal(await v.id('lock-badge').getAttribute('data-state'), 'held');
  });
  assert.equal((await shownHistory(v)).some((x) => x.restore), false, 'a viewer cannot restore');

  await item(a, 3).getByTestId('history-restore').click();
  await until('the restore is saved as version 13', async () => {
    const [row] = await q('SELECT version::int, content, restored_from::int, path::text FROM collab.revisions WHERE resource_id = $1 ORDER BY version DESC LIMIT 1', [rid]);
    assert.deepEqual(row, { version: 13, content: versions[2], restored_from: 3, path: 'ws' });
  });
  await until('Anna sees it', async () => {
    assert.equal(await notice(a, 'Diagnosis: version 3 restored as version 13.').count(), 1);
    assert.equal(await a.id('editor').inputValue(), versions[2]);
    assert.match(await a.id('version').textContent(), /^Version 13 · saved by you/);
    const top = (await shownHistory(a))[0];
    assert.deepEqual([top.version, top.author, top.restored, top.restore], [13, anna.name, 'restored from 3', false]);
  });
  await until('the room is told who restored which version', async () => {
    assert.equal(await notice(v, `${anna.name} restored version 3 of Diagnosis`).count(), 1);
    const top = (await shownHistory(v))[0];
    assert.deepEqual([top.version, top.author, top.restored], [13, anna.name, 'restored from 3']);
  });
  assert.deepEqual(await q('SELECT ok FROM collab.verify_history($1)', [rid]), [{ ok: true }]);
  // every read of the history and of revisions is in the access trail
  const reads = await q(`SELECT user_id, action, count(*)::int AS n FROM collab.access_log
                          WHERE resource_id = $1 AND action IN ('history', 'revision') AND outcome = 'allowed'
                          GROUP BY 1, 2 ORDER BY 1, 2`, [rid]);
  assert.ok(reads.some((r) => r.user_id === vera.sub && r.action === 'revision' && r.n >= 2), JSON.stringify(reads));
  assert.ok(reads.some((r) => r.user_id === anna.sub && r.action === 'revision' && r.n >= 1), JSON.stringify(reads));

  // a history seen earlier is read again when its tab comes back on screen
  const notes = `${docId}/tab:procedure-notes`;
  await v.id('tab-procedure-notes').click();
  await until('Vera sees that procedure notes have no versions', async () => {
    assert.equal(await v.id('history-status').textContent(), 'No saved versions yet.');
  });
  await v.id('tab-diagnosis').click();
  await until('diagnosis again', async () => assert.equal((await shownHistory(v))[0].version, 13));
  const [{ token }] = await q('SELECT token FROM collab.acquire($1, $2, $3, $4)', [notes, ben.sub, ben.name, uniq('backend')]);
  await q('SELECT collab.save($1, $2, $3)', [notes, token, 'Three ports.']);
  await q('SELECT collab.release($1)', [token]);
  await v.id('tab-procedure-notes').click();
  await until('the save made meanwhile is listed', async () => {
    const h = await shownHistory(v);
    assert.deepEqual(h.map((x) => [x.version, x.author]), [[1, ben.name]]);
  });
  assert.deepEqual(pageErrors, [], 'no script errors in the pages');
  for (const p of [a, v]) await p.context.close();
});
