#!/bin/bash
# The collab WebSocket benchmark: one throwaway cluster with the worker, the
# Node load generator (loadgen.mjs) against it, results in
# test/bench/results/ws.md (and ws.json).  The cluster is destroyed on exit.
#
#   bash test/bench/ws/run.sh
#
# Prints PASS/MISS against the targets but exits 0 whatever they are (a
# benchmark, not a test); it exits non-zero only when the benchmark could not
# run.  Knobs (environment):
#   BENCH_PROCS=2            member processes for the presence phase
#   BENCH_SIZES=100,1000     room sizes;   BENCH_ROUNDS=100 rounds per size
#   BENCH_PHASES=sql,lock,contend,save,presence   (add 'idle' for the lock loop with
#                            BENCH_IDLE_SIZES=0,1000,5000 idle connections open)
#   BENCH_LOCK_ITERS=1000 BENCH_SAVE_ITERS=500 BENCH_SQL_ITERS=500 BENCH_IDLE_LOCK_ITERS=300
#   BENCH_CONTEND_CLIENTS=50 BENCH_CONTEND_TABS=10 BENCH_CONTEND_SECS=10
#   BENCH_QUIET_WAIT=90      seconds to wait for a quiet machine first (0: don't)
#   BENCH_WS_CONF=$'synchronous_commit = off\n...'   extra postgresql.conf lines
#   BENCH_WS_KEEP=1          keep the cluster running after the run (prints how to remove it)
# See README.md for what is measured and how to profile the worker.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$(pwd)
TEST_DIR=$ROOT/test
HERE=$TEST_DIR/bench/ws
RESULTS=$TEST_DIR/bench/results

die() { echo "bench ws: $*" >&2; exit 1; }

if [ ! -d "$TEST_DIR/node_modules/socket.io-client" ] || [ ! -d "$TEST_DIR/node_modules/ws" ] ||
	[ ! -d "$TEST_DIR/node_modules/pg" ]; then
	(cd "$TEST_DIR" && npm install --no-audit --no-fund >/dev/null) || die "npm install failed"
fi

# Each client is one descriptor in Node and one in the worker: raise the limit
# in this shell, which starts pg_ctl (the worker inherits it) and Node.
sizes=${BENCH_SIZES:-100,1000}
max_n=$(echo "$sizes" | tr ',' '\n' | sort -n | tail -1)
need=$((max_n + ${BENCH_CONTEND_CLIENTS:-50} + 512))
want=65536
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want=$hard; fi
ulimit -n "$want" 2>/dev/null || true
[ "$(ulimit -n)" -ge "$need" ] || die "ulimit -n is $(ulimit -n), the benchmark needs $need descriptors"

# Latencies of a few milliseconds are meaningless while something else keeps
# the cores busy: wait (up to BENCH_QUIET_WAIT seconds) for a quiet machine.
busy_pct() {
	local a b a1 a2 a3 a4 a5 a6 a7 a8 b1 b2 b3 b4 b5 b6 b7 b8
	read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ </proc/stat
	sleep 1
	read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
	a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)); b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8))
	echo $((100 - 100 * ((b4 + b5) - (a4 + a5)) / (b - a)))
}
quiet_wait=${BENCH_QUIET_WAIT:-90}
waited=0 quiet=0
while [ "$waited" -lt "$quiet_wait" ]; do
	load=$(busy_pct)
	waited=$((waited + 1))
	if [ "$load" -le 15 ]; then quiet=$((quiet + 1)); else quiet=0; fi
	[ "$quiet" -ge 3 ] && break
	[ $((waited % 15)) -eq 0 ] && echo "bench ws: waiting for a quiet machine (load ${load}% of all cores)"
done
[ "$quiet_wait" -eq 0 ] || [ "$quiet" -ge 3 ] ||
	echo "bench ws: WARNING: the machine stayed busy (${load}% of all cores): the figures will be disturbed" >&2

WORK=$(mktemp -d /tmp/collab-bench-ws.XXXXXX)
chmod 755 "$WORK"
CLUSTER=$WORK/cluster
cleanup() {
	if [ "${BENCH_WS_KEEP:-}" != "" ]; then
		echo "kept $CLUSTER (PGHOST=$CLUSTER PGPORT=${PGPORT:-?}); remove it with: bash scripts/cluster.sh destroy $CLUSTER"
		return
	fi
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { bash "$ROOT/scripts/cluster.sh" free-port; }
WS_PORT=$(free_port)
SECRET="bench-ws-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"   # 57 characters

conf=(
	"collab.database = 'postgres'"
	"collab.port = $WS_PORT"
	"collab.listen_addresses = '127.0.0.1'"
	"collab.jwt_secret = '$SECRET'"
	"collab.rate_limit = 0"
	"collab.max_connections = 20000"
	"collab.ping_interval = '25s'"
)
# cluster.sh keeps this shell's descriptor limit for the server (setpriv)
CLUSTER_CONF=${BENCH_WS_CONF:-} bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" "${conf[@]}" >/dev/null || die "could not start the cluster"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres PGDATABASE=postgres
export COLLAB_WS_URL="http://127.0.0.1:$WS_PORT" COLLAB_JWT_SECRET="$SECRET"

psql -X -q -v ON_ERROR_STOP=1 <<'SQL' >/dev/null || die "could not set up the extension"
CREATE EXTENSION collab;
SELECT collab.create_document('bench', 'WebSocket benchmark',
	ARRAY['a', 'lock', 'save', 'sql', 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9']);
SELECT collab.grant('document:bench', '*', 'edit');
SQL
psql -X -q -v ON_ERROR_STOP=1 -f "$TEST_DIR/bench/grants.sql" >/dev/null || die "could not grant the document"

# the worker waits for CREATE EXTENSION, then listens
bash "$ROOT/scripts/cluster.sh" wait-port "$WS_PORT" || true
wpid=$(psql -X -At -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker'")
[ -n "$wpid" ] || { tail -30 "$CLUSTER/server.log" >&2; die "the collab worker is not running"; }
wfiles=$(awk '/^Max open files/ { print $4 }' "/proc/$wpid/limits")
echo "bench ws: cluster $CLUSTER (PostgreSQL port $PGPORT), worker pid $wpid on $COLLAB_WS_URL, open files limit $wfiles"
[ "$wfiles" = unlimited ] || [ "$wfiles" -ge "$need" ] ||
	echo "bench ws: WARNING: the worker may open only $wfiles descriptors" >&2

so="$(pg_config --pkglibdir)/collab.so"
export BENCH_BUILD="collab.so $(md5sum "$so" | cut -c1-10), built $(date -u -r "$so" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$RESULTS"
status=0
BENCH_DOC='document:bench' BENCH_OUT_MD="$RESULTS/ws.md" BENCH_OUT_JSON="$RESULTS/ws.json" \
	node "$HERE/loadgen.mjs" || status=$?
if [ $status -ne 0 ]; then
	echo "--- server log (last 40 lines)"
	tail -40 "$CLUSTER/server.log" || true
	die "the load generator failed ($status)"
fi
errors=$(grep -cE 'ERROR|FATAL|PANIC' "$CLUSTER/server.log" || true)
[ "$errors" = 0 ] || { echo "bench ws: $errors ERROR/FATAL lines in the server log:"; grep -E 'ERROR|FATAL|PANIC' "$CLUSTER/server.log" | head -10; }
exit 0
