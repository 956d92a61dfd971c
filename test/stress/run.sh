#!/bin/bash
# Concurrent-writer stress run with a history checker (see README.md).
# Checks the checker first (selftest.test.mjs: doctored histories must be
# caught), then starts its own throwaway cluster with a short collab.lock_ttl
# and a fast sweep, runs stress.mjs against it and removes it.
#
#   bash test/stress/run.sh
#   STRESS_SECONDS=300 STRESS_SEED=42 bash test/stress/run.sh
#
# Options (environment): STRESS_SECONDS (default 120), STRESS_WS_CLIENTS,
# STRESS_CHILDREN, STRESS_SQL_CLIENTS, STRESS_POLL_CLIENTS, STRESS_DEFAULT_CLIENTS,
# STRESS_DOCS, STRESS_TABS, STRESS_SEED,
# STRESS_LOCK_TTL (default 1s), STRESS_GRACE (collab.disconnect_grace,
# default 400ms), STRESS_WORKERS (collab.workers, default 1),
# KEEP_TEST_WORK=1 keeps the cluster's
# directory and the history.
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_DIR=$(pwd)
ROOT=$(cd .. && pwd)

if [ ! -d node_modules/socket.io-client ] || [ ! -d node_modules/pg ]; then
	npm install --no-audit --no-fund >/dev/null
fi

echo "--- checker self-test (doctored histories)"
node --test --test-reporter=spec stress/selftest.test.mjs

WORK=$(mktemp -d "${COLLAB_TEST_WORK:-/tmp}/collab-stress.XXXXXX")
chmod 755 "$WORK"
CLUSTER="$WORK/cluster"
status=0
cleanup() {
	cp "$CLUSTER/server.log" "$WORK/server.log" 2>/dev/null || true
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	if [ "${KEEP_TEST_WORK:-}" = "" ] && [ "$status" -eq 0 ]; then
		rm -rf "$WORK"
	else
		echo "kept $WORK"
	fi
}
trap cleanup EXIT

SECRET="stress-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
WSPORT=$(bash "$ROOT/scripts/cluster.sh" free-port)
# A writer stopped past its lease must still be connected when it resumes:
# collab.lock_ttl well below collab.ping_timeout.  A grace below the TTL, so
# that holders who drop (cut, killed, silent) lose their leases at the end
# of it as well as by expiry.
bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" \
	"collab.jwt_secret = '$SECRET'" \
	"collab.port = $WSPORT" \
	"collab.database = 'postgres'" \
	"collab.lock_ttl = '${STRESS_LOCK_TTL:-1s}'" \
	"collab.disconnect_grace = '${STRESS_GRACE:-400ms}'" \
	"collab.sweep_interval = '100ms'" \
	"collab.ping_interval = '2s'" \
	"collab.ping_timeout = '4s'" \
	"collab.rate_limit = 0" \
	"collab.workers = ${STRESS_WORKERS:-1}" >/dev/null
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
export COLLAB_WS_URL="http://127.0.0.1:$WSPORT" COLLAB_JWT_SECRET="$SECRET" STRESS_WORK="$WORK"
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE EXTENSION IF NOT EXISTS collab" >/dev/null
bash "$ROOT/scripts/cluster.sh" wait-port "$WSPORT" || true

echo "--- stress run (cluster $CLUSTER, worker $COLLAB_WS_URL)"
nice -n 10 node stress/stress.mjs || status=$?
if [ "$status" -ne 0 ]; then
	echo "--- server log (last 40 lines)"
	tail -40 "$CLUSTER/server.log" || true
fi
exit "$status"
