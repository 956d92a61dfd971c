// What every browser test needs: Debian's Chromium, started the same way,
// and a retry of an assertion until the page shows what it should.
//
// Environment: CHROMIUM overrides /usr/bin/chromium.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chromium } from 'playwright-core';

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
