// Connection state recovery in Chromium: the holder's browser loses its
// network for 5 s and comes back within collab.recovery_window. socket.io-client
// recovers the session (socket.recovered): the holder keeps its lock, with
// the same token, and saves afterwards; the other doctor's screen shows
// lock:suspended, then lock:resumed.
//
// Environment and running: as demo.test.mjs (test/browser/run.sh).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, until, openDemo, notice, openTab, badgeText } from './browser.mjs';
import {
  createDocument, newUser, q, teardown, sleep, setGrace, resetWorkerConf,
} from '../integration/helpers.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUTPUT = process.env.COLLAB_BROWSER_OUTPUT || path.join(HERE, 'output');
const DEMO_TABS = ['patient-info', 'diagnosis'];
const OFFLINE_MS = 5000;

let browser;
const pageErrors = [];

before(async () => {
  browser = await launchChromium();
  await setGrace(30000);
});

after(async () => {
  await browser?.close();
  await resetWorkerConf('collab.disconnect_grace');
  await teardown();
});

const open = (user, docKey) => openDemo(browser, user, docKey, pageErrors);

async function screenshot(p, name) {
  fs.mkdirSync(OUTPUT, { recursive: true });
  const file = path.join(OUTPUT, name);
  await p.page.screenshot({ path: file, fullPage: true, animations: 'disabled' });
  console.log(`screenshot: ${file}`);
  return file;
}

test('the holder\'s network drops for 5 s: its session is recovered, it keeps the lock and saves', async () => {
  const doc = await createDocument(DEMO_TABS, 'op');
  const docKey = doc.id.slice('document:'.length);
  const rid = doc.tab('diagnosis');
  const anna = newUser('Dr. Anna Berg');
  const ben = newUser('Dr. Ben Kaya');
  const a = await open(anna, docKey);
  const b = await open(ben, docKey);
  await openTab(a, 'diagnosis');
  await a.id('btn-edit').click();
  await until('Anna holds the lock', async () => {
    assert.equal(await a.id('lock-badge').getAttribute('data-state'), 'mine');
  });
  await a.id('editor').fill('Appendicitis, confirmed by ultrasound.');
  await openTab(b, 'diagnosis');
  const [before] = await q('SELECT holder_id, token FROM collab.leases WHERE resource_id = $1', [rid]);
  assert.equal(await a.id('connection-status').getAttribute('data-recovered'), 'false');

  // the holder's network is gone: Chromium drops its WebSocket
  const offAt = Date.now();
  await a.context.setOffline(true);
  await until('Anna is told her lock is kept', async () => {
    assert.equal(await notice(a, 'Connection lost, your lock on Diagnosis is kept until').count(), 1);
  });
  await until('Ben is told Anna lost connection', async () => {
    assert.equal(await notice(b, 'Dr. Anna Berg lost connection; their lock on Diagnosis is kept until').count(), 1);
    assert.match(await badgeText(b), /Dr\. Anna Berg lost connection; the lock is kept until/);
  });
  const [suspended] = await q('SELECT suspended_until IS NOT NULL AS s FROM collab.leases WHERE resource_id = $1', [rid]);
  assert.deepEqual(suspended, { s: true });
  await screenshot(a, 'recovery-grace-holder.png');
  await screenshot(b, 'recovery-grace-others.png');
  await sleep(Math.max(0, OFFLINE_MS - (Date.now() - offAt)));
  await a.context.setOffline(false);

  // back: the same session, recovered; the room hears lock:resumed
  await until('Anna has her lock back', async () => {
    assert.equal(await notice(a, 'Connection restored: you are still editing Diagnosis').count(), 1);
    assert.equal(await notice(a, 'Connection lost').count(), 0);
    assert.equal(await a.id('lock-badge').getAttribute('data-state'), 'mine');
  }, 20000);
  assert.equal(await a.id('connection-status').getAttribute('data-recovered'), 'true', 'socket.recovered');
  await until('Ben sees her back', async () => {
    assert.equal(await notice(b, 'Dr. Anna Berg is back and keeps editing Diagnosis').count(), 1);
    assert.equal(await notice(b, 'lost connection').count(), 0);
    assert.equal(await b.id('lock-badge').getAttribute('data-state'), 'held');
  });
  // the same lease, the same token: nothing was taken over
  assert.deepEqual(await q('SELECT holder_id, token, suspended_until FROM collab.leases WHERE resource_id = $1', [rid]),
    [{ ...before, suspended_until: null }]);
  assert.deepEqual(await q(`SELECT action FROM collab.audit_log WHERE resource_id = $1 ORDER BY id`, [rid]),
    [{ action: 'grant' }, { action: 'suspend' }, { action: 'resume' }]);
  assert.equal(await a.id('editor').inputValue(), 'Appendicitis, confirmed by ultrasound.');
  await a.id('btn-save').click();
  await until('her save is accepted', async () => {
    assert.match(await a.id('version').textContent(), /^Version 1 · saved by you/);
  });
  assert.equal((await q('SELECT content FROM collab.resources WHERE id = $1', [rid]))[0].content,
    'Appendicitis, confirmed by ultrasound.');
  assert.deepEqual(pageErrors.filter((e) => !/ERR_CONNECTION|ERR_INTERNET_DISCONNECTED|WebSocket connection/.test(e)), []);
  for (const p of [a, b]) await p.context.close();
});
