#!/bin/bash
# Several worker processes on one port: a cluster of its own with
# collab.workers = 2, where workers.test.mjs checks what crosses workers
# (presence, locks, saves, the SQL API, NOTIFY forwarding, expiry, metrics,
# a worker stopping), and the client-facing suites run again with their
# clients spread by the kernel over both workers.  Long-polling too:
# workers_polling.test.mjs checks the relay, and the client-facing suites run
# a second time with transports: ['polling'], each of their requests reaching
# either worker.  The suites that assert one worker process (its pid across
# hostile input, its restart) run only in the one-worker suite.
set -euo pipefail
cd "$(dirname "$0")/.."
env -u COLLAB_WS_URL -u PGHOST -u PGPORT -u COLLAB_TEST_WORK COLLAB_WORKERS=2 \
	COLLAB_SETUPS="websocket polling" \
	bash integration/run-ws.sh \
	integration/workers.test.mjs \
	integration/workers_polling.test.mjs \
	integration/workers_recovery.test.mjs \
	integration/ws_recovery.test.mjs \
	integration/ws_presence.test.mjs \
	integration/ws_locks.test.mjs \
	integration/ws_handoff.test.mjs \
	integration/ws_saves.test.mjs \
	integration/ws_sql_bridge.test.mjs \
	integration/ws_batch.test.mjs \
	integration/ws_observability.test.mjs \
	integration/ws_access.test.mjs \
	integration/ws_access_live.test.mjs
