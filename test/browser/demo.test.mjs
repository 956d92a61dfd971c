// The demo UI end to end, in Chromium: three people on one operation report.
//
// The page is loaded from the worker itself (GET / and /ui/… on collab.port),
// so this also checks that the worker serves the UI. Every assertion is about
// what the page shows (text, attributes); the database is used to create the
// report, to take one lock as an application backend would, and to check that
// what the page shows is what was stored.
//
// Environment: that of test/integration/run-ws.sh (PGHOST…, COLLAB_WS_URL,
// COLLAB_JWT_SECRET, COLLAB_TEST_WORK); CHROMIUM overrides /usr/bin/chromium,
// COLLAB_BROWSER_OUTPUT the screenshot directory (default test/browser/output).
// Run with test/browser/run.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, until, WAIT, openDemo, notice, openTab, badgeText } from './browser.mjs';
import {
  WS_URL, createDocument, newUser, tokenFor, q, teardown, sleep, setConf, resetConf, uniq, setGrace, metric,
} from '../integration/helpers.mjs';
import { Proxy } from '../failover/proxy.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUTPUT = process.env.COLLAB_BROWSER_OUTPUT || path.join(HERE, 'output');
const DEMO_TABS = ['patient-info', 'diagnosis', 'procedure-notes', 'anesthesia'];

let browser;
const pageErrors = [];

before(async () => {
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await teardown();
});

/** A person in their own browser context, on the demo page of the document (browser.mjs). */
const open = (user, docKey, opts) => openDemo(browser, user, docKey, pageErrors, opts);

async function expectEditing(p) {
  await until(`${p.user.name} holds the lock`, async () => {
    assert.equal(await p.id('lock-badge').getAttribute('data-state'), 'mine');
    assert.match(await badgeText(p), new RegExp(`${p.user.name} \\(you\\) is editing · \\d+:\\d\\d left`));
    assert.equal(await p.id('editor').getAttribute('readonly'), null, 'text area is editable');
    assert.equal(await p.id('btn-save').isVisible(), true);
    assert.equal(await p.id('btn-release').isVisible(), true);
  });
}

async function expectViewing(p, holder) {
  await until(`${p.user.name} sees ${holder.name} editing`, async () => {
    assert.equal(await p.id('lock-badge').getAttribute('data-state'), 'held');
    assert.match(await badgeText(p), new RegExp(`${holder.name} is editing · \\d+:\\d\\d left`));
    assert.notEqual(await p.id('editor').getAttribute('readonly'), null, 'text area is read-only');
    assert.equal(await p.id('btn-request').isVisible(), true);
    assert.equal(await p.id('btn-edit').isVisible(), false);
    assert.equal(await p.id('btn-save').isVisible(), false);
  });
}

/** The notice whose text contains `text`. */

async function avatarNames(p, testid) {
  return p.id(testid).getByTestId('avatar').evaluateAll((els) => els.map((e) => e.dataset.name));
}

async function screenshot(p, name) {
  fs.mkdirSync(OUTPUT, { recursive: true });
  const file = path.join(OUTPUT, name);
  await p.page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
  console.log(`screenshot: ${file}`);
  return file;
}

test('two doctors hand the diagnosis tab over while a third edits procedure notes', async () => {
  const doc = await createDocument(DEMO_TABS, 'op');
  const docKey = doc.id.slice('document:'.length);
  const diagnosis = doc.tab('diagnosis');
  const notes = doc.tab('procedure-notes');
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Dr. Ben Kaya');
  const cleo = newUser('Dr. Cleo Lind');

  // --- everyone opens the report; the tabs are the document's
  const a = await open(anna, docKey);
  const b = await open(ben, docKey);
  const c = await open(cleo, docKey);
  for (const p of [a, b, c]) {
    assert.equal(await p.id('doc-title').textContent(), docKey.toUpperCase());
    assert.match(await p.id('me').textContent(), new RegExp(`Signed in as ${p.user.name}`));
    for (const key of DEMO_TABS) assert.equal(await p.id(`tab-${key}`).isVisible(), true, `${key} tab shown`);
  }

  // --- Anna takes the diagnosis tab
  await openTab(a, 'diagnosis');
  await until('the diagnosis tab is free', async () => {
    assert.equal(await a.id('lock-badge').getAttribute('data-state'), 'free');
    assert.notEqual(await a.id('editor').getAttribute('readonly'), null, 'read-only before Edit');
  });
  await a.id('btn-edit').click();
  await expectEditing(a);

  // --- Ben, on the same tab, sees her lock and cannot type
  await openTab(b, 'diagnosis');
  await expectViewing(b, anna);
  await b.id('editor').focus();
  await b.page.keyboard.type('Ben tries to type');
  assert.equal(await b.id('editor').inputValue(), '', 'typing into a read-only text area changes nothing');
  await until('presence shows who is where', async () => {
    const inTab = await avatarNames(b, 'presence-tab');
    assert.ok(inTab.includes(`${anna.name}, editing`), `Anna in the tab, editing: ${inTab}`);
    assert.ok(inTab.includes(`${ben.name} (you)`), `Ben in the tab: ${inTab}`);
    const inDoc = await avatarNames(b, 'presence-document');
    for (const u of [anna, ben, cleo]) {
      assert.ok(inDoc.some((n) => n.startsWith(u.name)), `${u.name} in the report: ${inDoc}`);
    }
  });

  // --- at the same time, Cleo edits procedure notes
  await openTab(c, 'procedure-notes');
  await c.id('btn-edit').click();
  await expectEditing(c);
  await c.id('editor').fill('Laparoscopic appendectomy, three ports. No complications.');
  await until('Anna sees both locks in the tab strip', async () => {
    assert.match(await a.id('tab-lock-procedure-notes').textContent(), new RegExp(cleo.name));
    assert.equal(await a.id('tab-lock-diagnosis').getAttribute('data-state'), 'mine');
  });

  // --- Ben asks for the lock; Anna is told and releases
  await b.id('btn-request').click();
  await until('Ben sees his request acknowledged', async () => {
    assert.equal(await notice(b, `You asked ${anna.name} for Diagnosis`).count(), 1);
    assert.equal(await b.id('btn-request').textContent(), 'Edit requested');
    assert.equal(await b.id('btn-request').isDisabled(), true);
  });
  const request = notice(a, `${ben.name} asks to edit Diagnosis`);
  await request.waitFor({ timeout: WAIT });
  await request.getByTestId('notice-release').click();

  // --- the lock goes to Ben: his name on both badges, his text area editable
  await expectEditing(b);
  await expectViewing(a, ben);
  await until('Ben is told who released', async () => {
    assert.equal(await notice(b, `${anna.name} released Diagnosis (finished editing)`).count(), 1);
    assert.equal(await notice(b, 'You can edit Diagnosis now').count(), 1);
  });
  assert.equal(await notice(a, 'released').count(), 0, 'Anna is not told about her own release');
  assert.equal(await notice(a, `${ben.name} asks to edit`).count(), 0, 'the request notice is gone');

  // --- Ben and Cleo save at the same moment, each their own tab
  const benText = 'Acute appendicitis, perforated.';
  await b.id('editor').fill(benText);
  await Promise.all([b.id('btn-save').click(), c.id('btn-save').click()]);

  const [dRow] = await until('the diagnosis save is stored', async () => {
    const rows = await q('SELECT version, content, saved_by_name FROM collab.resources WHERE id = $1', [diagnosis]);
    assert.equal(rows[0].content, benText);
    return rows;
  });
  assert.equal(dRow.saved_by_name, ben.name);
  const [nRow] = await until('the procedure notes save is stored', async () => {
    const rows = await q('SELECT version, content FROM collab.resources WHERE id = $1', [notes]);
    assert.equal(rows[0].content, 'Laparoscopic appendectomy, three ports. No complications.');
    return rows;
  });

  await until('both doctors on the diagnosis tab see the new version', async () => {
    assert.match(await b.id('version').textContent(), new RegExp(`^Version ${dRow.version} · saved by you`));
    assert.match(await a.id('version').textContent(), new RegExp(`^Version ${dRow.version} · saved by ${ben.name}`));
    assert.equal(await notice(a, `A new version (${dRow.version}) of Diagnosis was saved by ${ben.name}`).count(), 1);
    assert.equal(await notice(b, `Diagnosis: version ${dRow.version} saved.`).count(), 1);
  });
  await until('Cleo sees her version', async () => {
    assert.match(await c.id('version').textContent(), new RegExp(`^Version ${nRow.version} · saved by you`));
    assert.equal(await c.id('editor').inputValue(), 'Laparoscopic appendectomy, three ports. No complications.');
  });
  // Ben keeps what he typed; Anna's page says that a newer version exists
  assert.equal(await b.id('editor').inputValue(), benText);
  assert.match(await a.id('content-note').textContent(), new RegExp(`newer version \\(${dRow.version}\\) exists`));

  await screenshot(a, 'demo-anna.png');
  await screenshot(c, 'demo-cleo.png');
  const shot = await screenshot(b, 'demo-ben.png');
  assert.ok(fs.statSync(shot).size > 10_000, 'the screenshot is a real picture');
  assert.deepEqual(pageErrors, [], 'no script errors in the pages');

  // --- a dropped connection: the page says so, and that his lock is kept
  // for him (collab.disconnect_grace); back, it joins again and takes it
  await b.context.setOffline(true);
  await until('Ben sees the connection drop', async () => {
    assert.equal(await b.id('connection-status').getAttribute('data-state'), 'reconnecting');
    assert.notEqual(await b.id('editor').getAttribute('readonly'), null, 'read-only while offline');
    assert.equal(await notice(b, 'Connection lost, your lock on Diagnosis is kept until').count(), 1);
  }, 15000);
  await until('Anna sees that Ben lost connection and keeps the lock meanwhile', async () => {
    assert.equal(await notice(a, 'Dr. Ben Kaya lost connection; their lock on Diagnosis is kept until').count(), 1);
    assert.equal(await a.id('lock-badge').getAttribute('data-state'), 'held');
  }, 15000);
  await b.context.setOffline(false);
  await until('Ben is back, with his lock', async () => {
    assert.equal(await b.id('connection-status').textContent(), 'Connected');
    assert.equal(await b.id('lock-badge').getAttribute('data-state'), 'mine');
    assert.equal(await notice(b, 'Connection restored: you are still editing Diagnosis').count(), 1);
  }, 20000);
  await until('Anna sees him back', async () => {
    assert.equal(await notice(a, 'Dr. Ben Kaya is back and keeps editing Diagnosis').count(), 1);
    const inTab = await avatarNames(a, 'presence-tab');
    assert.ok(inTab.includes(`${ben.name}, editing`), `Ben in the tab again, editing, seen by Anna: ${inTab}`);
  });
  assert.equal(await b.id('editor').inputValue(), benText, 'his text is still on screen');

  for (const p of [a, b, c]) await p.context.close();
});

test('WebSockets blocked: the page stays on long-polling, and two doctors see each other, hand the lock over and save', async () => {
  const doc = await createDocument(DEMO_TABS, 'op');
  const docKey = doc.id.slice('document:'.length);
  const diagnosis = doc.tab('diagnosis');
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Dr. Ben Kaya');
  const polling0 = await metric('collab_polling_sessions');
  const a = await open(anna, docKey, { blockWebSockets: true });
  const b = await open(ben, docKey, { blockWebSockets: true });
  const transport = async (p) => p.id('connection-status').getAttribute('data-transport');
  for (const p of [a, b]) {
    assert.equal(await transport(p), 'polling', `${p.user.name} connected over long-polling`);
    // the client tried its upgrade, and the network refused it
    await until(`${p.user.name}'s page tried the upgrade`, async () => {
      assert.ok(p.blocked.length >= 1, 'a WebSocket was attempted');
      for (const url of p.blocked) assert.match(url, /\/socket\.io\/\?EIO=4&transport=websocket&sid=/);
    });
  }
  assert.ok(await metric('collab_polling_sessions') >= polling0 + 2, 'the worker serves both over long-polling');

  // --- they see each other
  await openTab(a, 'diagnosis');
  await openTab(b, 'diagnosis');
  await until('Anna and Ben see each other in the tab', async () => {
    for (const [p, other] of [[a, ben], [b, anna]]) {
      const inTab = await avatarNames(p, 'presence-tab');
      assert.ok(inTab.includes(`${p.user.name} (you)`), `${p.user.name} sees self: ${inTab}`);
      assert.ok(inTab.includes(other.name), `${p.user.name} sees ${other.name}: ${inTab}`);
    }
  });

  // --- Anna locks and saves; Ben sees the lock and the new version
  await a.id('btn-edit').click();
  await expectEditing(a);
  await expectViewing(b, anna);
  const annaText = 'Acute appendicitis (saved over long-polling).';
  await a.id('editor').fill(annaText);
  await a.id('btn-save').click();
  const [v1] = await until('Anna\'s save is stored', async () => {
    const rows = await q('SELECT version, content, saved_by_name FROM collab.resources WHERE id = $1', [diagnosis]);
    assert.deepEqual({ content: rows[0].content, by: rows[0].saved_by_name }, { content: annaText, by: anna.name });
    return rows;
  });
  await until('both see the version', async () => {
    assert.match(await a.id('version').textContent(), new RegExp(`^Version ${v1.version} · saved by you`));
    assert.match(await b.id('version').textContent(), new RegExp(`^Version ${v1.version} · saved by ${anna.name}`));
  });

  // --- Ben asks, Anna releases, Ben edits and saves
  await b.id('btn-request').click();
  const request = notice(a, `${ben.name} asks to edit Diagnosis`);
  await request.waitFor({ timeout: WAIT });
  await request.getByTestId('notice-release').click();
  await expectEditing(b);
  await expectViewing(a, ben);
  const benText = `${annaText} Perforated.`;
  await b.id('editor').fill(benText);
  await b.id('btn-save').click();
  const [v2] = await until('Ben\'s save is stored', async () => {
    const rows = await q('SELECT version, content, saved_by_name FROM collab.resources WHERE id = $1', [diagnosis]);
    assert.deepEqual({ content: rows[0].content, by: rows[0].saved_by_name }, { content: benText, by: ben.name });
    return rows;
  });
  assert.equal(Number(v2.version), Number(v1.version) + 1);
  await until('Anna sees Ben\'s version', async () => {
    assert.match(await a.id('version').textContent(), new RegExp(`^Version ${v2.version} · saved by ${ben.name}`));
  });

  // still on long-polling, both of them, after all of it
  for (const p of [a, b]) assert.equal(await transport(p), 'polling', `${p.user.name} is still on long-polling`);
  await screenshot(a, 'polling-anna.png');
  const shot = await screenshot(b, 'polling-ben.png');
  assert.ok(fs.statSync(shot).size > 10_000, 'the screenshot is a real picture');
  assert.deepEqual(pageErrors.filter((e) => !/WebSocket/.test(e)), [], 'no script errors in the pages');
  for (const p of [a, b]) await p.context.close();
});

test('WebSockets allowed: the page upgrades from long-polling to WebSocket', async () => {
  const doc = await createDocument(DEMO_TABS, 'op');
  const a = await open(newUser('Dr. Anna Berg'), doc.id.slice('document:'.length));
  await until('the page upgraded', async () => {
    assert.equal(await a.id('connection-status').getAttribute('data-transport'), 'websocket');
  });
  await a.context.close();
});

test('an open editor keeps its lock alive; a lock nobody renews expires on every screen', async () => {
  await setConf('collab.lock_ttl', '4s');
  try {
    const doc = await createDocument(DEMO_TABS, 'op');
    const docKey = doc.id.slice('document:'.length);
    const anna = newUser('Dr. Anna Berg');
    const ben = newUser('Dr. Ben Kaya');
    const a = await open(anna, docKey);
    const b = await open(ben, docKey);

    await openTab(a, 'anesthesia');
    await a.id('btn-edit').click();
    await expectEditing(a);
    await until('the countdown starts from the short TTL', async () => {
      assert.match(await a.id('lock-time').textContent(), /· 0:0[0-4] left/);
    });

    // an application backend takes patient-info through SQL and never renews it
    const [{ granted }] = await q(
      "SELECT granted FROM collab.acquire($1, 'u-admission', 'Admission desk', 'backend-1')", [doc.tab('patient-info')]);
    assert.equal(granted, true);
    await openTab(b, 'patient-info');
    await until('Ben sees the backend\'s lock', async () => {
      assert.equal(await b.id('lock-badge').getAttribute('data-state'), 'held');
      assert.match(await badgeText(b), /Admission desk is editing/);
    });
    await until('the backend\'s lock expires on Ben\'s screen', async () => {
      assert.equal(await notice(b, 'The editing lock of Admission desk on Patient information expired').count(), 1);
      assert.equal(await b.id('lock-badge').getAttribute('data-state'), 'free');
      assert.equal(await b.id('btn-edit').isVisible(), true);
    }, 12000);

    // two TTLs later, Anna's page has renewed her lock all along
    await sleep(8000);
    assert.equal(await a.id('lock-badge').getAttribute('data-state'), 'mine');
    assert.deepEqual((await q('SELECT username FROM collab.locks WHERE resource_id = $1', [doc.tab('anesthesia')]))
      .map((r) => r.username), [anna.name], 'her lock is live in the database');
    await a.id('editor').fill('General anaesthesia, uneventful.');
    await a.id('btn-save').click();
    await until('her save is accepted', async () => {
      assert.match(await a.id('version').textContent(), /^Version \d+ · saved by you/);
    });
    assert.equal(await notice(a, 'expired').count(), 0, 'no expiry notice for Anna');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
    for (const p of [a, b]) await p.context.close();
  } finally {
    await resetConf('collab.lock_ttl');
  }
});

test('who may do what: two doctors edit, a nurse only views, a second report is Anna\'s alone', async () => {
  // the demo's grants (scripts/demo.sh), on documents of this test
  const bare = async (tabs) => {
    const [{ id }] = await q('SELECT collab.create_document($1, NULL, $2::text[]) AS id', [uniq('op'), tabs]);
    return id;
  };
  const report = await bare(DEMO_TABS);
  const second = await bare(['diagnosis', 'procedure-notes']);
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Dr. Ben Kaya');
  const carla = newUser('Carla Rossi, RN', { email: 'carla.rossi@hospital.example' });
  for (const [rid, u, perm] of [[report, anna, 'edit'], [report, ben, 'edit'], [report, carla, 'view'], [second, anna, 'edit']]) {
    await q('SELECT collab.grant($1, $2, $3)', [rid, `user:${u.sub}`, perm]);
  }
  try {
    const key = report.slice('document:'.length);
    const a = await open(anna, key);
    const b = await open(ben, key);
    const c = await open(carla, key);

    // --- Carla: view only, said plainly, and no way to edit
    await openTab(c, 'diagnosis');
    await until('Carla sees view-only mode', async () => {
      assert.equal(await c.id('view-only').isVisible(), true);
      assert.match(await c.id('view-only').textContent(), /View only\. You may read this report, but not edit it\./);
      assert.equal(await c.id('btn-edit').isVisible(), false);
      assert.equal(await c.id('btn-save').isVisible(), false);
      assert.notEqual(await c.id('editor').getAttribute('readonly'), null);
    });
    await c.id('editor').focus();
    await c.page.keyboard.type('Carla tries to type');
    await c.page.keyboard.press('Control+s');
    assert.equal(await c.id('editor').inputValue(), '');
    for (const p of [a, b]) assert.equal(await p.id('view-only').isVisible(), false, `${p.user.name} may edit`);

    // --- Anna edits and saves; Ben, on the same tab, is a viewer while she holds it
    await openTab(a, 'diagnosis');
    await a.id('btn-edit').click();
    await expectEditing(a);
    await openTab(b, 'diagnosis');
    await expectViewing(b, anna);
    await until('Carla sees Anna editing, and cannot ask for the lock', async () => {
      assert.match(await badgeText(c), new RegExp(`${anna.name} is editing`));
      assert.equal(await c.id('btn-request').isVisible(), false);
    });
    const text = 'Acute appendicitis. Seen by the nurse.';
    await a.id('editor').fill(text);
    await a.id('btn-save').click();
    await until('the save is stored', async () => {
      const [row] = await q('SELECT content, version FROM collab.resources WHERE id = $1', [`${report}/tab:diagnosis`]);
      assert.deepEqual(row, { content: text, version: '1' });
    });
    await until('Carla and Ben see the new version', async () => {
      for (const p of [b, c]) assert.match(await p.id('version').textContent(), new RegExp(`^Version 1 · saved by ${anna.name}`));
    });
    const [{ n }] = await q("SELECT count(*)::int AS n FROM collab.audit_log WHERE resource_id = $1 AND user_id = $2 AND action = 'save'",
      [`${report}/tab:diagnosis`, carla.sub]);
    assert.equal(n, 0, 'Carla saved nothing');
    await screenshot(c, 'demo-carla-view-only.png');

    // --- no e-mail address on any screen
    for (const p of [a, b, c]) {
      assert.doesNotMatch(await p.page.locator('body').innerText(), /@/, `${p.user.name}'s page shows no e-mail address`);
    }

    // --- a grant reaches Carla's open page, and so does its withdrawal
    await q('SELECT collab.grant($1, $2, $3)', [report, `user:${carla.sub}`, 'edit']);
    await until('Carla may edit now', async () => {
      assert.equal(await c.id('view-only').isVisible(), false);
      assert.equal(await c.id('btn-request').isVisible(), true);
      assert.equal(await notice(c, 'You may now edit Diagnosis.').count(), 1);
    });
    await q('SELECT collab.revoke($1, $2)', [report, `user:${carla.sub}`]);
    await until('Carla\'s access is withdrawn', async () => {
      assert.equal(await notice(c, 'Your access to this report was withdrawn.').count(), 1);
      assert.equal(await c.id('editor').inputValue(), '', 'the text is gone from her screen');
      assert.equal(await c.id('btn-request').isVisible(), false);
      assert.equal(await c.id('presence-tab').getByTestId('avatar').count(), 0);
      assert.equal(await c.id('history').isVisible(), false, 'nor its history');
    });
    await screenshot(c, 'demo-carla-withdrawn.png');

    // --- the second report: Anna's alone
    const key2 = second.slice('document:'.length);
    const a2 = await open(anna, key2);
    await openTab(a2, 'diagnosis');
    await until('Anna may edit her second report', async () => {
      assert.equal(await a2.id('btn-edit').isVisible(), true);
      assert.equal(await a2.id('view-only').isVisible(), false);
    });
    const b2 = await open(ben, key2);
    await until('for Ben the second report does not exist', async () => {
      assert.equal(await notice(b2, `There is no report "${key2}"`).count(), 1);
      assert.equal(await b2.id('btn-edit').isVisible(), false);
    });
    await screenshot(b2, 'demo-ben-second-report.png');
    assert.deepEqual(pageErrors, [], 'no script errors in the pages');
    for (const p of [a, b, c, a2, b2]) await p.context.close();
  } finally {
    await q('DELETE FROM collab.resources WHERE id = ANY ($1)', [[report, second]]);
  }
});

test('a refused sign-in and an unknown report are said plainly', async () => {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const res = await page.goto(`${WS_URL}/?token=not-a-jwt&doc=whatever`);
  assert.equal(res.status(), 200, 'the worker serves the page');
  await until('the refusal is shown', async () => {
    assert.equal(await page.getByTestId('connection-status').getAttribute('data-state'), 'failed');
    const text = await page.getByTestId('notice').filter({ hasText: 'The server refused the sign-in' }).textContent();
    assert.match(text, /AUTH_TOKEN_INVALID/);
  });
  assert.doesNotMatch(page.url(), /token=/, 'the token is taken out of the address bar');

  await page.goto(`${WS_URL}/?token=${encodeURIComponent(tokenFor(newUser('Dr. Anna Berg')))}&doc=no-such-report`);
  await until('the missing report is named', async () => {
    assert.equal(await page.getByTestId('notice').filter({ hasText: 'There is no report "no-such-report"' }).count(), 1);
  });
  await context.close();
});

test('a lost connection: the holder\'s lock is kept for the grace, both screens say until when, the holder takes it back', async () => {
  const GRACE_MS = 6000;
  await setGrace(GRACE_MS);
  // Anna's network: a TCP proxy in front of the worker, which the test cuts
  const net = new Proxy('Anna\'s network', Number(new URL(WS_URL).port));
  await net.listen();
  try {
    const doc = await createDocument(DEMO_TABS, 'op');
    const docKey = doc.id.slice('document:'.length);
    const anna = newUser('Dr. Anna Berg');
    const ben = newUser('Dr. Ben Kaya');
    const a = await open(anna, docKey, { base: `http://127.0.0.1:${net.port}` });
    const b = await open(ben, docKey);
    await openTab(a, 'diagnosis');
    await a.id('btn-edit').click();
    await expectEditing(a);
    await a.id('editor').fill('Appendicitis, confirmed by ultrasound.');
    await openTab(b, 'diagnosis');
    await expectViewing(b, anna);
    const time = '\\d\\d?:\\d\\d(:\\d\\d)?(\\s?[AP]M)?';

    // the network drops: no close frame reaches either side
    net.setTarget(null);
    net.cutAll();
    await until('Anna is told her lock is kept', async () => {
      const n = notice(a, 'Connection lost, your lock on Diagnosis is kept until');
      assert.equal(await n.count(), 1);
      assert.match(await n.textContent(), new RegExp(`kept until ${time}\\. Reconnecting…`));
      assert.match(await n.textContent(), /Your unsaved text is still here/);
    });
    await until('Ben is told Anna lost connection and until when her lock is kept', async () => {
      const n = notice(b, 'Dr. Anna Berg lost connection; their lock on Diagnosis is kept until');
      assert.equal(await n.count(), 1);
      assert.match(await n.textContent(), new RegExp(`kept until ${time}\\.`));
      assert.equal(await b.id('lock-badge').getAttribute('data-state'), 'held');
      assert.match(await badgeText(b), /Dr\. Anna Berg lost connection; the lock is kept until .* · 0:0\d left/);
      assert.equal(await b.id('btn-edit').isVisible(), false, 'Ben cannot take it');
      assert.equal(await b.id('btn-request').isVisible(), true);
    });
    const [lock] = await q('SELECT username, suspended_until IS NOT NULL AS suspended FROM collab.locks WHERE resource_id = $1', [doc.tab('diagnosis')]);
    assert.deepEqual(lock, { username: anna.name, suspended: true });
    await screenshot(a, 'grace-holder.png');
    await screenshot(b, 'grace-others.png');

    // the network is back: Anna's page reconnects and takes her lock over
    net.setTarget(Number(new URL(WS_URL).port));
    await until('Anna has her lock back', async () => {
      assert.equal(await notice(a, 'Connection restored: you are still editing Diagnosis').count(), 1);
      assert.equal(await notice(a, 'Connection lost').count(), 0);
    }, 15000);
    await expectEditing(a);
    assert.equal(await a.id('editor').inputValue(), 'Appendicitis, confirmed by ultrasound.', 'her text is still there');
    await until('Ben sees her back', async () => {
      assert.equal(await notice(b, 'Dr. Anna Berg is back and keeps editing Diagnosis').count(), 1);
      assert.equal(await notice(b, 'lost connection').count(), 0);
    });
    await expectViewing(b, anna);
    await a.id('btn-save').click();
    await until('her save is accepted', async () => {
      assert.match(await a.id('version').textContent(), /^Version 1 · saved by you/);
    });
    assert.equal((await q('SELECT content FROM collab.resources WHERE id = $1', [doc.tab('diagnosis')]))[0].content,
      'Appendicitis, confirmed by ultrasound.');

    // lost again, for longer than the grace: the lock is released on Ben's screen
    net.setTarget(null);
    net.cutAll();
    await until('Ben is told again', async () => {
      assert.equal(await notice(b, 'Dr. Anna Berg lost connection').count(), 1);
    });
    await until('the grace ends on Ben\'s screen', async () => {
      assert.equal(await notice(b, 'Dr. Anna Berg released Diagnosis (lost the connection)').count(), 1);
      assert.equal(await notice(b, 'lost connection;').count(), 0);
      assert.equal(await b.id('lock-badge').getAttribute('data-state'), 'free');
      assert.equal(await b.id('btn-edit').isVisible(), true);
    }, GRACE_MS + 6000);
    // the cut network's failed requests and WebSockets are logged by Chromium, not by the page
    assert.deepEqual(pageErrors.filter((e) => !/net::ERR_|WebSocket connection/.test(e)), [], 'no script errors in the pages');
    for (const p of [a, b]) await p.context.close();
  } finally {
    await net.close();
    await resetConf('collab.disconnect_grace');
  }
});
