#!/bin/bash
# The collab soak test: a throwaway cluster with the worker, SOAK_CLIENTS
# clients joining, leaving, locking and saving for SOAK_SECONDS (soak.mjs),
# the worker's memory and descriptors sampled throughout.  Exits 1 when the
# verdict fails (see README.md), 2 when the soak could not run.
#
#   bash test/soak/run.sh                         10,000 clients, 10 minutes
#   SOAK_CLIENTS=500 SOAK_SECONDS=15 bash test/soak/run.sh     (make test)
#
# Other knobs (environment): SOAK_PROCS, SOAK_SIO_CLIENTS, SOAK_RATE,
# SOAK_THINK_MS, SOAK_RAMP_RATE, SOAK_SAMPLE_SECONDS, SOAK_DOCS, SOAK_TABS,
# SOAK_CONTENT_BYTES, SOAK_SOURCES, SOAK_RATE_LIMIT (collab.rate_limit,
# default 50), SOAK_LOCK_TTL_MS (collab.lock_ttl, default 60000: expiries from the first minute),
# SOAK_KEEP=1 (keep the cluster and its log).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
TEST_DIR=$ROOT/test

die() { echo "soak: $*" >&2; exit 2; }

if [ ! -d "$TEST_DIR/node_modules/socket.io-client" ] || [ ! -d "$TEST_DIR/node_modules/ws" ] ||
	[ ! -d "$TEST_DIR/node_modules/pg" ]; then
	(cd "$TEST_DIR" && npm install --no-audit --no-fund >/dev/null) || die "npm install failed"
fi

clients=${SOAK_CLIENTS:-10000}
export SOAK_CLIENTS=$clients SOAK_SECONDS=${SOAK_SECONDS:-600} SOAK_LOCK_TTL_MS=${SOAK_LOCK_TTL_MS:-60000}

# Each client is one descriptor in Node and one in the worker: raise the
# limit in this shell, which starts pg_ctl (the worker inherits it) and Node.
need=$((clients + 512))
want=$((clients * 2 + 4096))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want" 2>/dev/null || true
[ "$(ulimit -n)" -ge "$need" ] || die "ulimit -n is $(ulimit -n), $clients clients need $need descriptors"

WORK=$(mktemp -d /tmp/collab-soak.XXXXXX)
chmod 755 "$WORK"
CLUSTER=$WORK/cluster
cleanup() {
	if [ "${SOAK_KEEP:-}" != "" ]; then
		echo "soak: kept $CLUSTER; remove it with: bash scripts/cluster.sh destroy $CLUSTER"
		return
	fi
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { bash "$ROOT/scripts/cluster.sh" free-port; }
WS_PORT=$(free_port)
SECRET="soak-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"

conf=(
	"collab.database = 'postgres'"
	"collab.port = $WS_PORT"
	"collab.listen_addresses = '127.0.0.1'"
	"collab.jwt_secret = '$SECRET'"
	"collab.rate_limit = ${SOAK_RATE_LIMIT:-50}"
	"collab.max_connections = $((clients + 1000))"
	"collab.lock_ttl = ${SOAK_LOCK_TTL_MS}"
)
# cluster.sh keeps this shell's descriptor limit for the server (setpriv)
bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" "${conf[@]}" >/dev/null || die "could not start the cluster"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres PGDATABASE=postgres
export COLLAB_WS_URL="http://127.0.0.1:$WS_PORT" COLLAB_JWT_SECRET="$SECRET"
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION collab" >/dev/null || die "could not create the extension"

# the worker waits for CREATE EXTENSION, then listens
bash "$ROOT/scripts/cluster.sh" wait-port "$WS_PORT" || true
wpid=$(psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'")
[ -n "$wpid" ] || { tail -30 "$CLUSTER/server.log" >&2; die "the collab worker is not running"; }
wfiles=$(awk '/^Max open files/ { print $4 }' "/proc/$wpid/limits")
[ "$wfiles" = unlimited ] || [ "$wfiles" -ge "$need" ] ||
	die "the worker may open only $wfiles descriptors, $clients clients need $need"
echo "soak: cluster $CLUSTER (PostgreSQL port $PGPORT), worker pid $wpid on $COLLAB_WS_URL, open files limit $wfiles"

status=0
SOAK_WORKER_PID=$wpid SOAK_SERVER_LOG=$CLUSTER/server.log node "$TEST_DIR/soak/soak.mjs" || status=$?
if [ $status -ne 0 ]; then
	echo "--- server log (last 20 lines)"
	tail -20 "$CLUSTER/server.log" || true
fi
exit $status
