#!/bin/bash
# Where a save's cost goes, in figures that do not depend on the machine's
# load: instructions per save (valgrind's callgrind on the saving backend)
# and WAL bytes per save (the WAL position and pg_waldump's statistics), for
#
#   plain     UPDATE of a table shaped like collab.resources, no trigger
#   history   the same UPDATE plus an INSERT into a history table, one statement
#   fenced    SELECT collab.save(id, token, content): guard, lease, revision, event
#   plain_tx  BEGIN; set_config(); plain UPDATE; COMMIT (the guarded path's framing)
#   guarded   BEGIN; set_config('collab.lock_token'); UPDATE collab.resources; COMMIT
#
# each on one pgbench client with prepared statements, 2 kB of clinical prose
# per save as in test/bench/run.sh.  A backend's count includes its start-up,
# so each variant runs twice, PROFILE_SAVES1 and PROFILE_SAVES2 saves, in
# backends of their own; the difference divided by the difference of the
# counts is the cost of one save.  The per-function table is the same
# difference of callgrind_annotate's inclusive counts.
#
# Environment:
#   PROFILE_VARIANTS  the variants to run (default: all five, in that order)
#   PROFILE_SAVES1/2  saves of the short and the long run (default 100, 600)
#   PROFILE_WAL_SAVES saves of the WAL measurement (default 2000)
#   PROFILE_TOP       functions listed per variant (default 40)
#   PROFILE_OUT       directory for the reports (default test/bench/results/profile)
#   BENCH_KEEP=1      keep the work directory (callgrind files, server log)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
# shellcheck source=save_fixtures.sh
. "$ROOT/test/bench/save_fixtures.sh"

VARIANTS=${PROFILE_VARIANTS:-plain history fenced plain_tx guarded}
N1=${PROFILE_SAVES1:-100}
N2=${PROFILE_SAVES2:-600}
NW=${PROFILE_WAL_SAVES:-2000}
TOP=${PROFILE_TOP:-40}
OUT=${PROFILE_OUT:-$ROOT/test/bench/results/profile}
CONTENT_BYTES=2048

die() { echo "profile: ERROR: $*" >&2; exit 1; }
[ "$N2" -gt "$N1" ] || die "PROFILE_SAVES2 must be larger than PROFILE_SAVES1"
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"

WORK=$(mktemp -d /tmp/collab-profile.XXXXXX)
chmod 755 "$WORK"
CLUSTER="$WORK/cluster"
PGBIN=$(pg_config --bindir)
VG_PID=
cleanup() {
	if [ -n "$VG_PID" ]; then
		kill -INT "$VG_PID" 2>/dev/null || true
		for _ in $(seq 1 300); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.2; done
	fi
	[ "${BENCH_KEEP:-}" = "" ] || cp "$CLUSTER/server.log" "$WORK/" 2>/dev/null || true
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	if [ "${BENCH_KEEP:-}" = "" ]; then rm -rf "$WORK"; else echo "profile: kept $WORK" >&2; fi
}
trap cleanup EXIT

WS_PORT=$(bash "$ROOT/scripts/cluster.sh" free-port)
# No autovacuum, no checkpoints by time: nothing runs beside the saves but
# what the saves cause.  The worker runs, as in production, so that events
# travel through its shared-memory queue.
bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" \
	"collab.workers = 1" \
	"collab.database = 'bench_save'" \
	"collab.port = $WS_PORT" \
	"collab.jwt_secret = '$(openssl rand -hex 32)'" \
	"collab.lock_ttl = '1h'" \
	"shared_buffers = '256MB'" \
	"huge_pages = off" \
	"max_wal_size = '4GB'" \
	"checkpoint_timeout = '1h'" \
	"autovacuum = off" \
	"log_connections = on" >/dev/null || die "cluster start failed"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
PSQL=(psql -X -q -t -A -v ON_ERROR_STOP=1)
q() { local db=$1; shift; "${PSQL[@]}" -d "$db" "$@"; }
DB=bench_save

q postgres -c "CREATE DATABASE $DB"
q $DB -c "CREATE EXTENSION collab"
for _ in $(seq 1 100); do
	grep -Eq 'collab worker [0-9]+ listening' "$CLUSTER/server.log" && break
	sleep 0.2
done
save_fixtures_sql 8 | q $DB

# the same 2 kB of prose as test/bench/run.sh
content=$(save_content "$CONTENT_BYTES")

# Each variant writes the tab of its own client number, so that no variant
# finds another's dead tuples.
save_scripts "$WORK" cl
head=$(save_script_head cl)
printf '%s\n%s\n' "$head" \
	"BEGIN;
SELECT pg_catalog.set_config('bench.lock_token', :tok::text, true);
UPDATE bench_plain SET content = :r::text || :content::text, version = version + 1, saved_at = clock_timestamp() WHERE id = :rid;
COMMIT;" >"$WORK/plain_tx.sql"
printf '%s\n%s\n' "$head" \
	"BEGIN;
SELECT pg_catalog.set_config('collab.lock_token', :tok::text, true);
UPDATE collab.resources SET content = :r::text || :content::text WHERE id = :rid;
COMMIT;" >"$WORK/guarded.sql"
declare -A client=([plain]=0 [history]=1 [fenced]=2 [plain_tx]=3 [guarded]=4)

# run_saves VARIANT N APPNAME: N saves on one client, in one backend
run_saves() {
	local v=$1 n=$2 app=$3 out="$WORK/pgbench_$3.out"
	PGAPPNAME=$app pgbench -n -M prepared -c 1 -t "$n" -D tok=0 -D cl="${client[$v]}" \
		-D content="$content" -f "$WORK/$v.sql" $DB >"$out" 2>&1 || { cat "$out" >&2; die "pgbench $v failed"; }
	grep -q "number of failed transactions: 0" "$out" || { cat "$out" >&2; die "pgbench $v: failed transactions"; }
}
prepare_round() {
	q $DB -c "VACUUM bench_plain" -c "VACUUM bench_history" -c "VACUUM collab.resources" \
		-c "VACUUM collab.revisions" -c "VACUUM collab.leases" -c "CHECKPOINT"
}

# ---------------------------------------------------------------------------
# WAL per save: NW saves after a warm-up that takes the full-page images
# the checkpoint made due
# ---------------------------------------------------------------------------
mkdir -p "$OUT"
declare -A wal=() fpi=()
for v in $VARIANTS; do
	prepare_round
	run_saves "$v" 50 "warm-$v"
	lsn0=$(q $DB -c "SELECT pg_current_wal_lsn()")
	run_saves "$v" "$NW" "wal-$v"
	lsn1=$(q $DB -c "SELECT pg_current_wal_lsn()")
	wal[$v]=$(q $DB -c "SELECT round(('$lsn1'::pg_lsn - '$lsn0'::pg_lsn) / $NW.0)")
	# the records of the saves (and of the worker, which writes none here)
	"$PGBIN/pg_waldump" -p "$CLUSTER/data/pg_wal" -s "$lsn0" -e "$lsn1" --stats=record >"$OUT/wal-$v.txt" 2>&1 || true
	fpi[$v]=$(awk '/^Total/ { print $5; exit }' "$OUT/wal-$v.txt")
	echo "profile: $v: ${wal[$v]} WAL bytes per save (pg_waldump --stats=record in $OUT/wal-$v.txt)"
done

# ---------------------------------------------------------------------------
# Instructions per save: the cluster again under callgrind
# ---------------------------------------------------------------------------
bash "$ROOT/scripts/cluster.sh" stop "$CLUSTER"
CG="$WORK/callgrind"
mkdir -p "$CG"
chown postgres: "$CG"
setpriv --reuid=postgres --regid=postgres --init-groups \
	valgrind --tool=callgrind --trace-children=no --callgrind-out-file="$CG/cg.%p" --log-file="$CG/valgrind.%p.log" \
	"$PGBIN/postgres" -D "$CLUSTER/data" >>"$CLUSTER/server.log" 2>&1 &
VG_PID=$!
for _ in $(seq 1 600); do
	q postgres -c "SELECT 1" >/dev/null 2>&1 && break
	sleep 0.5
done
q postgres -c "SELECT 1" >/dev/null || die "the cluster did not start under valgrind"

# backend_file APPNAME: the callgrind file of the backend that served APPNAME
backend_file() {
	local pid
	pid=$(grep -E "\[[0-9]+\] .*connection authorized: .*application_name=$1\$" "$CLUSTER/server.log" |
		tail -1 | sed -E 's/^[^[]*\[([0-9]+)\].*/\1/')
	[ -n "$pid" ] || die "no backend found for $1"
	for _ in $(seq 1 100); do [ -s "$CG/cg.$pid" ] && break; sleep 0.2; done
	[ -s "$CG/cg.$pid" ] || die "no callgrind file for $1 (pid $pid)"
	echo "$CG/cg.$pid"
}
total_ir() { awk '/^(summary|totals):/ { print $2; exit }' "$1"; }

declare -A ir=()
for v in $VARIANTS; do
	prepare_round
	run_saves "$v" 50 "cgwarm-$v"
	run_saves "$v" "$N1" "cg1-$v"
	run_saves "$v" "$N2" "cg2-$v"
	f1=$(backend_file "cg1-$v")
	f2=$(backend_file "cg2-$v")
	ir[$v]=$(( ($(total_ir "$f2") - $(total_ir "$f1")) / (N2 - N1) ))
	for f in "$f1" "$f2"; do
		callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$f" >"$f.incl" 2>/dev/null
		callgrind_annotate --auto=no --threshold=100 "$f" >"$f.self" 2>/dev/null
	done
	python3 - "$f1" "$f2" $((N2 - N1)) "$TOP" >"$OUT/instructions-$v.txt" <<'PY'
import re, sys
def load(path):
    costs = {}
    for line in open(path, encoding="utf-8", errors="replace"):
        # function lines name their object: "1,234 (5.6%)  file:function [object]"
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S+.*?) \[[^]]*\]\s*$", line)
        if m:
            name = re.sub(r"^[^:]*:", "", m.group(2))
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs
f1, f2, n, top = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for kind, title in (("incl", "inclusive (a function with what it calls; recursive calls are counted once per level)"),
                    ("self", "self (a function's own instructions)")):
    a, b = load(f"{f1}.{kind}"), load(f"{f2}.{kind}")
    rows = sorted(((b[k] - a.get(k, 0)) / n, k) for k in b)
    rows.reverse()
    print(f"instructions per save, {title}: the difference of two runs")
    for per, k in rows[:top]:
        print(f"{per:12.0f}  {k}")
    print()
PY
	echo "profile: $v: ${ir[$v]} instructions per save ($OUT/instructions-$v.txt)"
done

# The worker's share, from its whole life under callgrind (it cannot be
# reset from outside: vgdb does not reach forked processes): what it spent
# taking the events of the saves (doc:saved parsed and fanned out to its
# rooms) and running its jobs (each batch of events forwarded to NOTIFY
# listeners in a transaction, and the periodic sweep), per event.
events=0
for v in $VARIANTS; do
	case $v in fenced | guarded) events=$((events + 50 + N1 + N2)) ;; esac
done
WORKER_PID=$(grep -E '\[[0-9]+\] .*collab worker [0-9]+ listening' "$CLUSTER/server.log" | tail -1 |
	sed -E 's/^[^[]*\[([0-9]+)\].*/\1/')
kill -INT "$VG_PID"
for _ in $(seq 1 300); do kill -0 "$VG_PID" 2>/dev/null || break; sleep 0.2; done
VG_PID=
worker_line="| the worker, per event (its whole life) | n/a |"
if [ "$events" -gt 0 ] && [ -s "$CG/cg.$WORKER_PID" ]; then
	callgrind_annotate --inclusive=yes --auto=no --threshold=100 "$CG/cg.$WORKER_PID" >"$CG/worker.incl" 2>/dev/null
	w_drain=$(awk '/:event_queue_drain \[/ { gsub(",", "", $1); print $1; exit }' "$CG/worker.incl")
	w_jobs=$(awk '/:jobs_run_batch \[/ { gsub(",", "", $1); print $1; exit }' "$CG/worker.incl")
	worker_line="| the worker, per event: events taken and fanned out; jobs (NOTIFY forwarding, sweeps) | $((${w_drain:-0} / events)); $((${w_jobs:-0} / events)) ($events events) |"
fi

{
	echo "| per save | $(for v in $VARIANTS; do printf '%s | ' "$v"; done)"
	echo "|---|$(for v in $VARIANTS; do printf -- '---:|'; done)"
	echo "| instructions (backend) | $(for v in $VARIANTS; do printf "%'d | " "${ir[$v]}"; done)"
	echo "| WAL bytes | $(for v in $VARIANTS; do printf "%'d | " "${wal[$v]}"; done)"
	echo
	echo "$worker_line"
} | tee "$OUT/summary.md"
