#!/bin/bash
# Runs the WebSocket worker's end-to-end tests (integration/ws_*.test.mjs)
# with Node's test runner, one file at a time (they change cluster-wide
# settings with ALTER SYSTEM).
#
# socket.io-client connects three ways (COLLAB_TRANSPORTS, see helpers.mjs):
# every file runs with transports: ['websocket']; the client-facing files
# (CLIENT_FILES: presence, locks, saves, acks and errors as a UI sees them)
# run again with transports: ['polling'] and with socket.io-client's
# default transports (long-polling, then the upgrade).  The wire-level and
# hostile files run once, over their own transport.  Files named on the
# command line run once, with COLLAB_TRANSPORTS as set (websocket if unset),
# or, with COLLAB_SETUPS="websocket polling ...", under the first setup and
# then, those of them that are client-facing, under the others.
#
# Inside scripts/run-tests.sh the environment names the test cluster:
#   PGHOST PGPORT PGUSER COLLAB_WS_URL COLLAB_JWT_SECRET COLLAB_TEST_WORK
# Run by hand without COLLAB_WS_URL, it starts a throwaway cluster with the
# settings the tests expect, runs the tests against it and removes it.
#
#   bash test/integration/run-ws.sh [test files...]
set -euo pipefail
cd "$(dirname "$0")/.."
TEST_DIR=$(pwd)
ROOT=$(cd .. && pwd)

if [ ! -d node_modules/socket.io-client ] || [ ! -d node_modules/ws ] || [ ! -d node_modules/pg ]; then
	npm install --no-audit --no-fund >/dev/null
fi

files=("$@")
read -r -a setups <<<"${COLLAB_SETUPS:-${COLLAB_TRANSPORTS:-websocket}}"
if [ ${#files[@]} -eq 0 ]; then
	files=(integration/ws_*.test.mjs)
	read -r -a setups <<<"${COLLAB_SETUPS:-websocket polling default}"
fi
CLIENT_FILES=(access access_live auth batch grace handoff locks observability presence recovery restart revisions saves sql_bridge)

own_cluster=
if [ -z "${COLLAB_WS_URL:-}" ]; then
	own_cluster=1
	WORK=$(mktemp -d /tmp/collab-ws-test.XXXXXX)
	chmod 755 "$WORK"
	CLUSTER="$WORK/cluster"
	SECRET="ws-test-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
	WSPORT=$(bash "$ROOT/scripts/cluster.sh" free-port)
	cleanup() {
		if [ "${KEEP_TEST_WORK:-}" = "" ]; then
			bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
			rm -rf "$WORK"
		else
			echo "kept $WORK (cluster still running; stop it with scripts/cluster.sh destroy $CLUSTER)"
		fi
	}
	trap cleanup EXIT
	bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" \
		"collab.jwt_secret = '$SECRET'" \
		"collab.port = $WSPORT" \
		"collab.database = 'postgres'" \
		"collab.ping_interval = '1s'" \
		"collab.ping_timeout = '1s'" \
		"collab.sweep_interval = '200ms'" \
		"collab.jwt_leeway = 0" \
		"collab.max_message_size = '64kB'" \
		"collab.rate_limit = 50" \
		"collab.workers = ${COLLAB_WORKERS:-1}" >/dev/null
	export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
	export COLLAB_WS_URL="http://127.0.0.1:$WSPORT" COLLAB_JWT_SECRET="$SECRET" COLLAB_TEST_WORK="$WORK"
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE EXTENSION IF NOT EXISTS collab" >/dev/null
	echo "ws test cluster: $CLUSTER (pg port $PGPORT, worker $COLLAB_WS_URL)"
	# the worker must be listening before the first test
	bash "$ROOT/scripts/cluster.sh" wait-port "$WSPORT" || true
fi

: "${PGHOST:?}" "${COLLAB_WS_URL:?}" "${COLLAB_JWT_SECRET:?}" "${COLLAB_TEST_WORK:?}"

status=0
for setup in "${setups[@]}"; do
	run=("${files[@]}")
	if [ "$setup" != "${setups[0]}" ]; then
		run=()
		for f in "${CLIENT_FILES[@]}"; do
			for g in "${files[@]}"; do
				if [ "$g" = "integration/ws_$f.test.mjs" ]; then run+=("$g"); fi
			done
		done
	fi
	echo "=== socket.io-client transports: $setup (${#run[@]} files)"
	COLLAB_TRANSPORTS=$setup node --test --test-concurrency=1 --test-reporter=spec "${run[@]}" || status=$?
done
if [ -n "$own_cluster" ] && [ $status -ne 0 ]; then
	echo "--- server log (last 80 lines)"
	tail -80 "$CLUSTER/server.log" || true
fi
exit $status
