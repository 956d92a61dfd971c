#!/bin/bash
# Runs the browser end-to-end test of the demo UI (browser/*.test.mjs) in
# headless Chromium driven by playwright-core.
#
# The page is loaded from the collab worker, so the extension must be
# installed with its UI (make install puts ui/ in $(pg_config --sharedir)/extension/collab_ui).
# Inside scripts/run-tests.sh the environment names the test cluster; run by
# hand without COLLAB_WS_URL, test/integration/run-ws.sh starts a throwaway
# cluster for it.
#
#   bash test/browser/run.sh [test files...]     (paths relative to test/)
#
# CHROMIUM=/path/to/chromium overrides Debian's /usr/bin/chromium;
# COLLAB_BROWSER_OUTPUT=dir overrides test/browser/output for screenshots.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
	echo "browser tests: $CHROMIUM is missing; install Debian's chromium (apt-get install chromium)" >&2
	exit 1
fi
export CHROMIUM

if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/socket.io-client ] ||
	[ ! -d node_modules/ws ] || [ ! -d node_modules/pg ]; then
	npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
	files=(browser/*.test.mjs)
fi
exec bash integration/run-ws.sh "${files[@]}"
