#!/bin/bash
# Runs the test suites against a throwaway cluster with collab preloaded.
# Called by 'make test' (every suite) and 'make check' (the SQL suites)
# after the extension is built and installed.
#
#   SUITES="ws notify" bash scripts/run-tests.sh   runs only the suites named
#
# Suite names: unit fuzz types regress notify restart crash_load install tls
# ws workers browser soak stress.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

ALL_SUITES="unit fuzz types regress notify restart crash_load install revisions tls ws workers browser soak stress failover"
for s in ${SUITES:-}; do
	case " $ALL_SUITES " in
	*" $s "*) ;;
	*) echo "unknown suite '$s' in SUITES; the suites are: $ALL_SUITES" >&2; exit 2 ;;
	esac
done

WORK=$(mktemp -d /tmp/collab-test.XXXXXX)
chmod 755 "$WORK"
CLUSTER="$WORK/cluster"
export COLLAB_TEST_WORK="$WORK"

cleanup() {
	bash scripts/cluster.sh destroy "$CLUSTER" >/dev/null 2>&1 || true
	if [ "${KEEP_TEST_WORK:-}" = "" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { bash scripts/cluster.sh free-port; }
WS_PORT=$(free_port)
export COLLAB_JWT_SECRET="regress-secret-$(openssl rand -hex 16)"
bash scripts/cluster.sh start "$CLUSTER" \
	"collab.jwt_secret = '$COLLAB_JWT_SECRET'" \
	"collab.port = $WS_PORT" \
	"collab.ping_interval = 1s" \
	"collab.ping_timeout = 1s" \
	"collab.sweep_interval = 200ms" \
	"collab.jwt_leeway = 0" \
	"collab.max_message_size = 64kB" \
	"collab.rate_limit = 50" >/dev/null || exit 1
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
export COLLAB_WS_URL="http://127.0.0.1:$WS_PORT"
psql -X -q -d postgres -c "CREATE EXTENSION IF NOT EXISTS collab" || exit 1
# the worker listens once it has seen the extension: a suite that comes first
# (SUITES="ws") must not race it
bash scripts/cluster.sh wait-port "$WS_PORT" || echo "the worker is not listening on $WS_PORT yet" >&2
echo "test cluster: $CLUSTER (port $PGPORT), worker on $COLLAB_WS_URL"

passed=0
failed=0
failures=()
# suite KEY "description" command...: runs unless SUITES leaves KEY out
suite() {
	local key=$1 name=$2
	shift 2
	if [ -n "${SUITES:-}" ] && [[ " $SUITES " != *" $key "* ]]; then
		return 0
	fi
	echo "=== $name"
	if "$@"; then
		passed=$((passed + 1))
		echo "--- $name: ok"
	else
		failed=$((failed + 1))
		failures+=("$name")
		echo "--- $name: FAILED"
	fi
}

regress() {
	# installcheck runs both REGRESS and ISOLATION against PGHOST/PGPORT.
	make -s installcheck PG_CONFIG="${PG_CONFIG:-pg_config}" || {
		for f in results/*.diffs output_iso/regression.diffs regression.diffs; do
			[ -f "$f" ] && cat "$f"
		done
		return 1
	}
}

suite unit "unit (C modules, no server)" make -s -C test/unit check
suite fuzz "fuzz corpus and regression replay (libFuzzer)" make -s -C test/fuzz replay
suite types "TypeScript types (tsc --strict, derived from the code)" bash test/types/run.sh
suite regress "pg_regress and isolation" regress
suite notify "notify delivery" bash test/integration/notify.sh
suite restart "crash restart" bash test/integration/restart.sh
suite crash_load "crash and restart under load (own cluster)" bash test/integration/crash_load.sh
suite install "install, dump and restore" bash test/integration/install.sh
suite revisions "revisions: upgrade from 0.1.0 with data, the auditor's script" bash test/integration/revisions.sh
suite tls "wss with a self-signed certificate" bash test/integration/tls.sh
if ls test/integration/ws_*.test.mjs >/dev/null 2>&1; then
	suite ws "websocket worker (socket.io-client)" bash test/integration/run-ws.sh
fi
suite workers "two workers on one port (own cluster)" bash test/integration/workers.sh
suite browser "browser demo (Chromium)" bash test/browser/run.sh
suite soak "soak, short (500 clients, 15 s, own cluster)" env SOAK_CLIENTS=500 SOAK_SECONDS=15 bash test/soak/run.sh
suite stress "concurrent writers, history checker (15 s, own cluster)" env STRESS_SECONDS=15 bash test/stress/run.sh
suite failover "failover drill, asynchronous and synchronous standby (own clusters)" env FAILOVER_SECONDS=4 bash test/failover/run.sh

echo
echo "suites: ${failures[*]:-none failed}"
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
