#!/bin/bash
# Runs every test suite against a throwaway cluster with collab preloaded.
# Called by 'make test' after the extension is built and installed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

WORK=$(mktemp -d /tmp/collab-test.XXXXXX)
chmod 755 "$WORK"
CLUSTER="$WORK/cluster"
export COLLAB_TEST_WORK="$WORK"

cleanup() {
	bash scripts/cluster.sh destroy "$CLUSTER" >/dev/null 2>&1 || true
	if [ "${KEEP_TEST_WORK:-}" = "" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

bash scripts/cluster.sh start "$CLUSTER" \
	"collab.jwt_secret = 'regress-secret-not-for-production'" \
	"collab.workers = 0" >/dev/null || exit 1
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
echo "test cluster: $CLUSTER (port $PGPORT)"

passed=0
failed=0
failures=()
suite() {
	local name=$1
	shift
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

suite "unit (C modules, no server)" make -s -C test/unit check
suite "pg_regress and isolation" regress
suite "notify delivery" bash test/integration/notify.sh
suite "crash restart" bash test/integration/restart.sh

echo
echo "suites: ${failures[*]:-none failed}"
echo "summary: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
