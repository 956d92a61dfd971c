#!/bin/bash
# The failover drill (see README.md): checks the checker and the worker on a
# standby (standby.test.mjs) first, then for each
# replication mode starts a primary of its own, and drill.mjs adds the
# standby, the load, the failover and the history check.  Removes its
# clusters; keeps the run's directory (clusters' logs, histories) when a
# mode fails or with KEEP_TEST_WORK=1.
#
#   bash test/failover/run.sh                 # both modes, 20 s of load before and after
#   bash test/failover/run.sh async           # one mode
#   FAILOVER_SECONDS=4 bash test/failover/run.sh   # what 'make test' runs
#
# Options (environment): FAILOVER_SECONDS (default 20), FAILOVER_LAG_MS
# (default 1000), FAILOVER_LOCK_TTL (collab.lock_ttl, default 6s),
# FAILOVER_SEED, KEEP_TEST_WORK.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(cd .. && pwd)

if [ ! -d node_modules/socket.io-client ] || [ ! -d node_modules/pg ]; then
	npm install --no-audit --no-fund >/dev/null
fi

echo "--- checker self-test (doctored failover histories)"
node --test --test-reporter=spec failover/checker.test.mjs

echo "--- the worker on a standby and across its promotion (own primary and standby)"
node --test --test-reporter=spec failover/standby.test.mjs

drill() {
	local mode=$1 work primary status=0 secret wsport sync_conf=()
	work=$(mktemp -d "${COLLAB_TEST_WORK:-/tmp}/collab-failover-$mode.XXXXXX")
	chmod 755 "$work"
	primary="$work/primary"
	secret="failover-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
	wsport=$(bash "$ROOT/scripts/cluster.sh" free-port)
	# waits for the standby only once drill.mjs names it synchronous
	[ "$mode" = sync ] && sync_conf=("synchronous_commit = remote_apply")
	bash "$ROOT/scripts/cluster.sh" start "$primary" \
		"collab.jwt_secret = '$secret'" \
		"collab.port = $wsport" \
		"collab.database = 'postgres'" \
		"collab.lock_ttl = '${FAILOVER_LOCK_TTL:-6s}'" \
		"collab.sweep_interval = '100ms'" \
		"collab.rate_limit = 0" \
		"wal_keep_size = '256MB'" \
		"${sync_conf[@]}" >/dev/null
	psql -X -q -v ON_ERROR_STOP=1 -h "$primary" -p "$(cat "$primary/port")" -U postgres -d postgres \
		-c "CREATE EXTENSION collab" >/dev/null
	bash "$ROOT/scripts/cluster.sh" wait-port "$wsport" || true
	echo "--- failover drill, $mode (directory $work)"
	FAILOVER_MODE=$mode FAILOVER_WORK=$work FAILOVER_WS_PORT=$wsport COLLAB_JWT_SECRET=$secret \
		nice -n 10 node failover/drill.mjs || status=$?
	for c in primary standby; do
		if [ "$status" -ne 0 ] && [ -f "$work/$c/server.log" ]; then
			echo "--- $c server log (last 30 lines)"
			tail -30 "$work/$c/server.log"
		fi
		cp "$work/$c/server.log" "$work/$c.log" 2>/dev/null || true
		bash "$ROOT/scripts/cluster.sh" destroy "$work/$c" >/dev/null 2>&1 || true
	done
	if [ "${KEEP_TEST_WORK:-}" = "" ] && [ "$status" -eq 0 ]; then
		rm -rf "$work"
	else
		echo "kept $work"
	fi
	return "$status"
}

status=0
for mode in ${*:-async sync}; do
	drill "$mode" || status=1
done
exit "$status"
