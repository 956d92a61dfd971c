// What every browser test needs: Debian's Chromium, started the same way,
// a retry of an assertion until the page shows what it should, and the
// demo page opened, and its tabs switched, the same way.
//
// Environment: CHROMIUM overrides /usr/bin/chromium.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { WS_URL, tokenFor } from '../integration/helpers.mjs';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/** How long a page may take to show what a test waits for. */
export const WAIT = 8000;

/** Starts headless Chromium (playwright gives it a fresh, temporary --user-data-dir). */
export async function launchChromium() {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (or set CHROMIUM)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      '--disable-quic',
    ],
  });
}

/** Retries an assertion (an async function that throws) until it passes. */
export async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > end) {
        e.message = `${what}: ${e.message}`;
        throw e;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/**
 * A person in their own browser context, on the demo page of the document,
 * once it shows Connected; the page's errors and console errors go to
 * errors.  base: the server that serves the page; tab: the tab on screen
 * from the start (the page then also shows its lock state); height: of the
 * viewport; blockWebSockets: a network whose proxy breaks WebSockets, every
 * one the page opens closed at once, unconnected (their URLs in p.blocked).
 */
export async function openDemo(browser, user, docKey, errors,
  { base = WS_URL, tab = null, height = 900, blockWebSockets = false } = {}) {
  // ignoreHTTPSErrors: a wss:// test cluster has a self-signed certificate
  const context = await browser.newContext({ viewport: { width: 1280, height }, ignoreHTTPSErrors: true });
  context.setDefaultTimeout(WAIT);
  const blocked = [];
  if (blockWebSockets) {
    await context.routeWebSocket(/.*/, (ws) => {
      blocked.push(ws.url());
      ws.close();
    });
  }
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(`${user.name}: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${user.name}: console: ${m.text()}`); });
  const url = `${base}/?token=${encodeURIComponent(tokenFor(user))}&doc=${encodeURIComponent(docKey)}` +
    (tab ? `&tab=${tab}` : '');
  assert.equal((await page.goto(url)).status(), 200, 'the worker serves the page');
  const p = { user, context, page, blocked, id: (testid) => page.getByTestId(testid) };
  await until(`${user.name} is connected${tab ? `, ${tab} on screen` : ''}`, async () => {
    assert.equal(await p.id('connection-status').textContent(), 'Connected');
    if (tab) assert.notEqual(await p.id('lock-badge').getAttribute('data-state'), 'unknown');
  });
  return p;
}

/** Clicks a tab of the demo page, and waits until it is on screen with its lock state. */
export async function openTab(p, key) {
  await p.id(`tab-${key}`).click();
  await until(`${p.user.name} has ${key} on screen`, async () => {
    assert.equal(await p.id(`tab-${key}`).getAttribute('aria-selected'), 'true');
    assert.notEqual(await p.id('lock-badge').getAttribute('data-state'), 'unknown');
  });
}

/** The lock badge's text, its white space collapsed. */
export const badgeText = async (p) => (await p.id('lock-badge').textContent()).replace(/\s+/g, ' ').trim();

/** The page's notices that contain text. */
export const notice = (p, text) => p.page.getByTestId('notice').filter({ hasText: text });
