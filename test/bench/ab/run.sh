#!/bin/bash
# A/B benchmark: the collab worker against the reference Node stack
# (test/bench/baseline: socket.io 4 + Redis locks + PostgreSQL saves), every
# scenario against both in one run, interleaved.  Starts everything itself on
# free loopback ports: one throwaway PostgreSQL cluster (database `postgres`
# served by the worker, database `baseline` for the reference stack), a
# redis-server without persistence, the baseline's node process; stops and
# removes them all on exit.  Writes test/bench/results/ab.md (and ab.json,
# targets-ab.tsv, fanout.dat, fanout.png).
#
#   bash test/bench/ab/run.sh
#
# Prints PASS/FAIL against the targets, judged on the median of AB_RUNS runs
# of the latency phases (3; 0: as many as fit in AB_BUDGET_S, 720 s), and
# exits 0 whatever they are; it exits non-zero only when the benchmark could
# not run.  Knobs (environment): see ab.mjs and README.md (AB_PHASES, AB_RUNS,
# AB_BUDGET_S, AB_SIZES, AB_MEMBERS=c|node|c,node, AB_POLL_MEMBERS=c|node,
# AB_ROUNDS, AB_LOCK_ITERS, AB_SAVE_ITERS, AB_STALL_*, AB_IDLE_CONNS,
# AB_BIG_ROWS, ...); AB_WORKERS
# (collab.workers, default 1);
# AB_QUIET_WAIT=30 seconds to wait for a
# quiet machine first; AB_KEEP=1 leaves everything running (and says how to reach it).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$(pwd)
TEST_DIR=$ROOT/test
HERE=$TEST_DIR/bench/ab
RESULTS=${AB_OUT_DIR:-$TEST_DIR/bench/results}

die() { echo "bench ab: $*" >&2; exit 1; }

for m in socket.io socket.io-client ws pg ioredis; do
	[ -d "$TEST_DIR/node_modules/$m" ] && continue
	(cd "$TEST_DIR" && npm install --no-audit --no-fund --loglevel=error >/dev/null) || die "npm install failed"
	break
done
command -v redis-server >/dev/null || die "redis-server is missing (bash scripts/deps.sh)"

# Tens of thousands of idle connections: one descriptor each in the load
# generator and in the server under test.  Raise the hard limit (root) too.
want=${AB_NOFILE:-400000}
ulimit -Hn "$want" 2>/dev/null || true
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] || [ "$hard" -ge "$want" ] || want=$hard
ulimit -n "$want"
# Without CAP_SYS_RESOURCE (containers) the hard limit cannot be raised: one
# process then holds at most that many connections.  collab runs
# AB_WORKERS worker processes (default 1); for the idle phase, if that is
# too few for the idle connections at that limit, it runs first against as
# many workers as they need, and the server is restarted with AB_WORKERS
# for the other phases.  The baseline, one node process, is asked for what
# fits in it (the report says so).
nofile=$(ulimit -n)
[ "$nofile" = unlimited ] && nofile=1048576
idle=${AB_IDLE_CONNS:-50000}
workers=${AB_WORKERS:-1}
phases=${AB_PHASES:-idle,lock,save,contend,presence,poll,upgrade,stall,recovery,growth}
idle_workers=$(( (idle + nofile - 1001) / (nofile - 1000) ))
[ "$idle_workers" -ge "$workers" ] || idle_workers=$workers
[[ ",$phases," == *,idle,* ]] || idle_workers=$workers
export AB_IDLE_CONNS=$idle AB_NOFILE=$nofile
# the most connections one phase holds: the idle ones, or the largest room
# (with small AB_IDLE_CONNS), plus a margin for the other clients
max_room=$(echo "${AB_SIZES:-1000}" | tr ',' '\n' | sort -n | tail -1)
max_conns=$(( (idle > max_room ? idle : max_room) + 500 + ${AB_STALL_CLIENTS:-100} ))

# A few milliseconds mean nothing while something else keeps the cores busy.
busy_pct() {
	local a b a1 a2 a3 a4 a5 a6 a7 a8 b1 b2 b3 b4 b5 b6 b7 b8
	read -r _ a1 a2 a3 a4 a5 a6 a7 a8 _ </proc/stat
	sleep 1
	read -r _ b1 b2 b3 b4 b5 b6 b7 b8 _ </proc/stat
	a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8)); b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8))
	echo $((100 - 100 * ((b4 + b5) - (a4 + a5)) / (b - a)))
}
quiet_wait=${AB_QUIET_WAIT:-30}
waited=0 quiet=0 load=0
while [ "$waited" -lt "$quiet_wait" ]; do
	load=$(busy_pct)
	waited=$((waited + 1))
	if [ "$load" -le 15 ]; then quiet=$((quiet + 1)); else quiet=0; fi
	[ "$quiet" -ge 3 ] && break
	[ $((waited % 15)) -eq 0 ] && echo "bench ab: waiting for a quiet machine (load ${load}% of all cores)"
done
busy_note=""
if [ "$quiet_wait" -gt 0 ] && [ "$quiet" -lt 3 ]; then
	busy_note="the machine stayed busy (${load}% of all cores) before the run: figures are disturbed"
	echo "bench ab: WARNING: $busy_note" >&2
fi

WORK=$(mktemp -d /tmp/collab-bench-ab.XXXXXX)
chmod 755 "$WORK"
CLUSTER=$WORK/cluster
REDIS_PID="" NODE_PID=""
cleanup() {
	if [ -n "${AB_KEEP:-}" ]; then
		echo "bench ab: kept $WORK: PGHOST=$CLUSTER PGPORT=${PGPORT:-} collab ${COLLAB_WS_URL:-} baseline ${BASELINE_URL:-} (node $NODE_PID, redis $REDIS_PID)"
		return
	fi
	[ -z "$NODE_PID" ] || kill "$NODE_PID" 2>/dev/null || true
	[ -z "$REDIS_PID" ] || kill "$REDIS_PID" 2>/dev/null || true
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	bash "$ROOT/scripts/cluster.sh" destroy "$WORK/cluster-big" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# the passive room members of the presence phase (members-c.mjs drives it)
gcc -O2 -Wall -o "$WORK/members" "$HERE/members.c" || die "could not compile members.c"
export AB_MEMBERS_BIN=$WORK/members

free_port() { bash "$ROOT/scripts/cluster.sh" free-port; }
WS_PORT=$(free_port)
BASE_PORT=$(free_port)
REDIS_PORT=$(free_port)
SECRET="bench-ab-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"

conf=(
	"collab.database = 'postgres'"
	"collab.port = $WS_PORT"
	"collab.listen_addresses = '127.0.0.1'"
	"collab.jwt_secret = '$SECRET'"
	"collab.rate_limit = 0"
	"collab.max_connections = $max_conns"
	"collab.workers = $idle_workers"
	"collab.ping_interval = '25s'"
	"shared_buffers = '256MB'"
	"max_wal_size = '4GB'"
	"checkpoint_timeout = '30min'"
)
# cluster.sh keeps this shell's descriptor limit for the server (setpriv)
CLUSTER_CONF=${AB_CONF:-} bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" "${conf[@]}" >/dev/null || die "could not start the cluster"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres PGDATABASE=postgres

# Both stacks get the same rows: document:bench with its tabs, and 99 more
# documents of 9 tabs (about 10^3 rows in all).
TABS="ARRAY['a', 'lock', 'save', 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9']"
COLLAB_SETUP="CREATE EXTENSION collab;
SELECT collab.create_document('bench', 'A/B benchmark', $TABS);
INSERT INTO collab.resources (id, parent_id, kind, title)
SELECT 'document:s' || d, NULL, 'document', 'Operation report ' || d FROM generate_series(1, 99) d;
INSERT INTO collab.resources (id, parent_id, kind, title)
SELECT 'document:s' || d || '/tab:' || t, 'document:s' || d, 'tab', NULL FROM generate_series(1, 99) d, generate_series(1, 9) t;
SELECT count(collab.grant(id, '*', 'edit')) FROM collab.resources WHERE parent_id IS NULL;"
psql -X -q -v ON_ERROR_STOP=1 <<SQL >/dev/null || die "could not set up the extension"
$COLLAB_SETUP
CREATE DATABASE baseline;
SQL
psql -X -q -v ON_ERROR_STOP=1 -f "$TEST_DIR/bench/grants.sql" >/dev/null || die "could not grant the documents"
# Access control as a hospital has it (AB_ACL=open: every document to every
# user): 10^4 grants, the users in 5 groups, the baseline checking the same
# grants (copied into its Redis, see ../baseline/server.mjs).
acl=${AB_ACL:-realistic}
baseline_acl=""
if [ "$acl" = realistic ]; then
	psql -X -q -v ON_ERROR_STOP=1 -f "$TEST_DIR/bench/acl.sql" >/dev/null || die "could not load the grant set"
	export BENCH_TOKEN_GROUPS='["ward-3", "surgery", "icu", "on-call", "residents"]'
	baseline_acl=postgres
fi
psql -X -q -v ON_ERROR_STOP=1 -d baseline <<SQL >/dev/null || die "could not set up the baseline database"
CREATE TABLE resources (
	id			text COLLATE "C" PRIMARY KEY,
	parent_id	text COLLATE "C" REFERENCES resources (id) ON DELETE CASCADE,
	kind		text NOT NULL,
	title		text,
	content		text NOT NULL DEFAULT '',
	version		bigint NOT NULL DEFAULT 0,
	saved_by	text,
	saved_by_name text,
	saved_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON resources (parent_id);
-- every save's version, as collab keeps its revisions (baseline/server.mjs)
CREATE TABLE history (
	resource_id	text COLLATE "C" NOT NULL,
	version		bigint NOT NULL,
	content		text NOT NULL,
	saved_by	text,
	saved_by_name text,
	saved_at	timestamptz NOT NULL,
	token		bigint,
	PRIMARY KEY (resource_id, version)
);
INSERT INTO resources (id, parent_id, kind, title) VALUES ('document:bench', NULL, 'document', 'A/B benchmark');
INSERT INTO resources (id, parent_id, kind, title)
SELECT 'document:bench/tab:' || t, 'document:bench', 'tab', t FROM unnest($TABS) t;
INSERT INTO resources (id, parent_id, kind, title)
SELECT 'document:s' || d, NULL, 'document', 'Operation report ' || d FROM generate_series(1, 99) d;
INSERT INTO resources (id, parent_id, kind, title)
SELECT 'document:s' || d || '/tab:' || t, 'document:s' || d, 'tab', NULL FROM generate_series(1, 99) d, generate_series(1, 9) t;
VACUUM ANALYZE resources;
SQL

# The growth phase compares a lock round trip with 10^3 and with 10^6 resource
# rows.  Measured one after the other, the machine's drift between the two
# (often more than the 20 % tolerance) would be taken for growth; so the 10^6
# rows go into a second cluster with a worker of its own, set up like the
# first, and the phase alternates blocks between the two.
if [[ ",$phases," == *,growth,* ]]; then
	BIG_WS_PORT=$(free_port)
	big_conf=("${conf[@]}" "collab.port = $BIG_WS_PORT" "collab.workers = $workers" "collab.max_connections = 500")
	bash "$ROOT/scripts/cluster.sh" start "$WORK/cluster-big" "${big_conf[@]}" >/dev/null || die "could not start the second cluster"
	psql -X -q -v ON_ERROR_STOP=1 -h "$WORK/cluster-big" -p "$(cat "$WORK/cluster-big/port")" -c "$COLLAB_SETUP" \
		-f "$TEST_DIR/bench/grants.sql" >/dev/null || die "could not set up the second cluster"
	bash "$ROOT/scripts/cluster.sh" wait-port "$BIG_WS_PORT" || die "the second cluster's worker does not listen on port $BIG_WS_PORT"
	export COLLAB_BIG_WS_URL="http://127.0.0.1:$BIG_WS_PORT" AB_BIG_PGHOST="$WORK/cluster-big" AB_BIG_PGPORT=$(cat "$WORK/cluster-big/port")
fi

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
	--maxclients 10000 --logfile "$WORK/redis.log" --dir "$WORK" &
REDIS_PID=$!
for _ in $(seq 1 50); do
	redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
	sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping | grep -q PONG || die "redis-server did not start"

# (re)starts the baseline server: its pool does not outlive a restart of the cluster
start_baseline() {
	if [ -n "$NODE_PID" ]; then
		kill "$NODE_PID" 2>/dev/null || true
		wait "$NODE_PID" 2>/dev/null || true
	fi
	BASELINE_PORT=$BASE_PORT REDIS_PORT=$REDIS_PORT BASELINE_JWT_SECRET=$SECRET PGDATABASE=baseline BASELINE_ACL_DB=$baseline_acl \
		node --max-old-space-size=8192 "$TEST_DIR/bench/baseline/server.mjs" >>"$WORK/baseline.log" 2>&1 &
	NODE_PID=$!
	for _ in $(seq 1 100); do
		[ "$(grep -c '^listening' "$WORK/baseline.log")" -ge "$1" ] && break
		sleep 0.1
	done
	[ "$(grep -c '^listening' "$WORK/baseline.log")" -ge "$1" ] || { cat "$WORK/baseline.log" >&2; die "the baseline server did not start"; }
	export BASELINE_PID=$NODE_PID
}
: >"$WORK/baseline.log"
start_baseline 1
baseline_starts=1
# collab.workers = n: restart the server with n workers and wait for them
set_workers() {
	local n=$1 w
	if [ "$(psql -X -At -c 'SHOW collab.workers')" != "$n" ]; then
		psql -X -q -c "ALTER SYSTEM SET collab.workers = $n" >/dev/null
		# the baseline first: its pool would die with the server's sessions
		kill "$NODE_PID" 2>/dev/null || true
		wait "$NODE_PID" 2>/dev/null || true
		NODE_PID=""
		bash "$ROOT/scripts/cluster.sh" stop "$CLUSTER" >/dev/null && bash "$ROOT/scripts/cluster.sh" restart "$CLUSTER" >/dev/null ||
			die "could not restart the cluster with collab.workers = $n"
		baseline_starts=$((baseline_starts + 1))
		start_baseline "$baseline_starts"
	fi
	for _ in $(seq 1 100); do
		w=$(psql -X -At -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'collab worker'" 2>/dev/null || echo 0)
		[ "$w" = "$n" ] && break
		sleep 0.1
	done
	[ "$w" = "$n" ] || { tail -30 "$CLUSTER/server.log" >&2; die "$w collab workers run, not $n"; }
	bash "$ROOT/scripts/cluster.sh" wait-port "$WS_PORT" || die "the collab workers do not listen on port $WS_PORT"
	wpid=$(psql -X -At -c "SELECT string_agg(pid::text, ', ') FROM pg_stat_activity WHERE backend_type = 'collab worker'")
	echo "bench ab: collab.workers = $n, pid(s) $wpid on 127.0.0.1:$WS_PORT (open files $(awk '/^Max open files/ { print $4 }' "/proc/${wpid%%,*}/limits") each)," \
		"baseline node pid $NODE_PID on 127.0.0.1:$BASE_PORT, redis pid $REDIS_PID on $REDIS_PORT"
}

so="$(pg_config --pkglibdir)/collab.so"
mem=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
export AB_MACHINE="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $mem RAM, Linux $(uname -r)"
export AB_VERSIONS="PostgreSQL $(psql -X -At -c 'SHOW server_version' | cut -d' ' -f1), Node $(node --version), $(redis-server --version | awk '{ print $1, $3 }' | tr -d 'v='), socket.io $(node -p "require('$TEST_DIR/node_modules/socket.io/package.json').version")"
export AB_BUILD="collab.so $(md5sum "$so" | cut -c1-10) built $(date -u -r "$so" +%Y-%m-%dT%H:%M:%SZ), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), access control: $acl$( [ "$acl" = realistic ] && psql -X -At -c 'SELECT count(*) FROM collab.acl' | sed 's/^/ (/; s/$/ grants, users in 5 groups)/')${busy_note:+; $busy_note}"
export COLLAB_WS_URL="http://127.0.0.1:$WS_PORT" BASELINE_URL="http://127.0.0.1:$BASE_PORT" AB_JWT_SECRET=$SECRET
export REDIS_PID REDIS_PORT AB_OUT_DIR=$RESULTS

status=0
rest=$phases
if [ "$idle_workers" != "$workers" ]; then
	set_workers "$idle_workers"
	AB_PHASES=idle AB_IDLE_TO=$WORK/idle.json AB_OUT_DIR= node "$HERE/ab.mjs" || status=$?
	rest=$(echo ",$phases," | sed 's/,idle,/,/; s/^,//; s/,$//')
	export AB_IDLE_FROM=$WORK/idle.json
fi
if [ $status -eq 0 ]; then
	set_workers "$workers"
	AB_PHASES=$rest node "$HERE/ab.mjs" || status=$?
fi
if [ $status -ne 0 ]; then
	echo "--- collab server log (last 30 lines)"; tail -30 "$CLUSTER/server.log" || true
	echo "--- baseline log (last 30 lines)"; tail -30 "$WORK/baseline.log" || true
	die "the load generator failed ($status)"
fi
if [ -s "$RESULTS/fanout.dat" ] && command -v gnuplot >/dev/null; then
	gnuplot -e "datafile='$RESULTS/fanout.dat'; outfile='$RESULTS/fanout.png'" "$HERE/fanout.gp" &&
		echo "bench ab: plot $RESULTS/fanout.png"
fi
errors=$(grep -cE 'ERROR|FATAL|PANIC' "$CLUSTER/server.log" || true)
[ "$errors" = 0 ] || { echo "bench ab: $errors ERROR/FATAL lines in the PostgreSQL log:"; grep -E 'ERROR|FATAL|PANIC' "$CLUSTER/server.log" | head -5; }
[ ! -s "$WORK/baseline.log" ] || [ "$(grep -vc '^listening' "$WORK/baseline.log")" = 0 ] ||
	{ echo "bench ab: the baseline logged:"; grep -v '^listening' "$WORK/baseline.log" | head -5; }
exit 0
