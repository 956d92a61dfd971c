#!/bin/bash
# SQL-core benchmark for collab (what `make bench` runs).
#
#   1. Fenced saves (collab.save through the guard trigger, each recording
#      its revision) against plain UPDATEs of a table of the same shape, and
#      against the same UPDATE plus an INSERT into a history table (what a
#      team would write by hand to keep versions), interleaved rounds; then
#      the storage per revision of these 2 kB saves.
#   2. Lock acquire + release latency with 10^3 and with 10^6 resource rows,
#      interleaved rounds on two databases of the same cluster.
#
# Everything runs on one throwaway cluster (scripts/cluster.sh), destroyed on
# exit.  The WebSocket worker serves the save database, as in production, so
# that committed events travel through the shared-memory event queue rather
# than NOTIFY (whose commit lock would serialize the saves).  The machine is shared and noisy: only ratios
# measured within one run mean anything, so a missed target prints FAIL and
# the script still exits 0.  It exits non-zero only when something broke
# (a pgbench error, a failed query, a save that did not advance a version
# or did not write exactly one history row or revision).
#
# Environment:
#   BENCH_SECONDS      whole seconds per save round (default 10); the latency
#                      rounds use 0.8 x that.  A run takes about 11 x it plus
#                      30 s of set-up and loading (about 2.5 min by default).
#   BENCH_ROUNDS       rounds per comparison (default 3); the fenced-save
#                      targets are judged on the median of the per-round ratios
#   BENCH_CLIENTS      pgbench clients for the save comparison (default 4)
#   BENCH_LAT_CLIENTS  pgbench clients for the latency runs (default 1)
#   BENCH_BIG_ROWS     resource rows of the large database (default 1000000)
#   BENCH_ONLY=saves   the save comparison alone, printed, no report written
#                      (for iteration on the save path)
#   BENCH_KEEP=1       keep the work directory (pgbench logs, server log)
#   BENCH_CONF         extra postgresql.conf lines, one per line (for
#                      experiments: "synchronous_commit = off", ...)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
# shellcheck source=save_fixtures.sh
. "$ROOT/test/bench/save_fixtures.sh"

SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-4}
LAT_CLIENTS=${BENCH_LAT_CLIENTS:-1}
BIG_ROWS=${BENCH_BIG_ROWS:-1000000}
SMALL_ROWS=1000
TABS_PER_DOC=9                  # a document row + 9 tabs = 10 rows per document
CONTENT_BYTES=2048
LAT_SECS=$(awk -v s="$SECS" 'BEGIN { v = s * 0.8; if (v < 1) v = 1; printf "%d", v }')
SAVE_TARGET=0.8
HISTORY_TARGET=0.9
LAT_TOLERANCE=0.20

die() { echo "bench: ERROR: $*" >&2; exit 1; }
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds"
[ "$CLIENTS" -le 64 ] || die "BENCH_CLIENTS must be at most 64 (one tab per client)"
[ $((BIG_ROWS % 10)) -eq 0 ] && [ "$BIG_ROWS" -gt "$SMALL_ROWS" ] ||
	die "BENCH_BIG_ROWS must be a multiple of 10 above $SMALL_ROWS"

WORK=$(mktemp -d /tmp/collab-bench.XXXXXX)
chmod 755 "$WORK"
CLUSTER="$WORK/cluster"
cleanup() {
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	if [ "${BENCH_KEEP:-}" = "" ]; then rm -rf "$WORK"; else echo "bench: kept $WORK" >&2; fi
}
trap cleanup EXIT

t_start=$(date +%s)
WS_PORT=$(bash "$ROOT/scripts/cluster.sh" free-port)
conf=(
	"collab.workers = 1"
	"collab.database = 'bench_save'"
	"collab.port = $WS_PORT"
	"collab.jwt_secret = '$(openssl rand -hex 32)'"
	"collab.lock_ttl = '1h'"
	"shared_buffers = '256MB'"
	"max_wal_size = '4GB'"
	"checkpoint_timeout = '30min'"
	"autovacuum_naptime = '10s'"
)
CLUSTER_CONF=${BENCH_CONF:-} bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" "${conf[@]}" >/dev/null || die "cluster start failed"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
echo "bench: cluster $CLUSTER (port $PGPORT), $(nproc) cores, save rounds ${SECS}s, latency rounds ${LAT_SECS}s"

PSQL=(psql -X -q -t -A -v ON_ERROR_STOP=1)
q() { local db=$1; shift; "${PSQL[@]}" -d "$db" "$@"; }

# ---------------------------------------------------------------------------
# pgbench helpers
# ---------------------------------------------------------------------------
# run_pgbench OUTFILE ARGS...: runs pgbench, fails loudly on errors or aborted
# clients, and on any failed transaction.
run_pgbench() {
	local out=$1; shift
	if ! pgbench "$@" >"$out" 2>&1; then
		cat "$out" >&2
		die "pgbench failed (script ${*: -2:1}, database ${*: -1})"
	fi
	local failed
	failed=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1] }' "$out")
	if [ "${failed:-0}" != "0" ] || grep -q 'aborted' "$out"; then
		cat "$out" >&2
		die "pgbench reported failed transactions"
	fi
}
pgb_tps() { awk '/^tps = / { print $3; exit }' "$1"; }
pgb_txns() { awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1] + 0 }' "$1"; }
pgb_latavg() { awk '/^latency average = / { print $4; exit }' "$1"; }
# average latency (ms) of the first -r statement line matching a pattern
pgb_stmt() { awk -v pat="$2" 'started && index($0, pat) { print $1; exit } /^statement latencies/ { started = 1 }' "$1"; }

# WAL position and full-page-image count, to report WAL per transaction.
# pg_stat_wal is flushed when a backend exits: wait for pgbench's to go.
wal_mark() {
	local i
	for i in $(seq 1 50); do
		[ "$(q postgres -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'")" -eq 0 ] && break
		sleep 0.1
	done
	q postgres -c "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn, wal_fpi FROM pg_stat_wal" | tr '|' ' '
}
# wal_per TXNS "BYTES0 FPI0" "BYTES1 FPI1" -> "bytes fpi" per transaction
wal_per() {
	awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { split(a, x, " "); split(b, y, " ");
		printf "%.0f %.2f\n", (y[1] - x[1]) / n, (y[2] - x[2]) / n }'
}
# sample_waits DB SECONDS: what pgbench's backends wait on, sampled every
# 50 ms; prints the three most frequent ("CPU" = not waiting).  psql's \watch
# runs each sample as a statement of its own: a transaction left open across
# the round (a loop in one DO block) would hold back the xmin horizon, so that
# no updated row could be pruned, and slow every variant by its own measure.
sample_waits() {
	local samples
	samples=$(printf '%s\n' "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') FROM pg_stat_activity
		 WHERE application_name = 'pgbench' AND state = 'active' AND backend_type = 'client backend'" '\watch 0.05' |
		{ timeout "$2" "${PSQL[@]}" -d "$1" || [ $? -eq 124 ]; } | grep -v '^$' || true)
	[ -n "$samples" ] || { echo "no samples"; return; }
	sort <<<"$samples" | uniq -c | sort -rn | awk -v t="$(wc -l <<<"$samples")" '
		NR <= 3 { printf "%s%s %.0f%%", (NR > 1 ? ", " : ""), $2, 100 * $1 / t } END { print "" }'
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.3f", a / b }'; }

# ---------------------------------------------------------------------------
# 1. Fenced saves vs plain UPDATEs
# ---------------------------------------------------------------------------
SDB=bench_save
q postgres -c "CREATE DATABASE $SDB"
q $SDB -c "CREATE EXTENSION collab"
# the worker attaches to the event queue once it sees the extension
for _ in $(seq 1 100); do
	grep -Eq 'collab worker [0-9]+ listening' "$CLUSTER/server.log" && break
	sleep 0.2
done
grep -Eq 'collab worker [0-9]+ listening' "$CLUSTER/server.log" || die "the worker did not start"
save_fixtures_sql 64 | q $SDB

# A realistic 2 kB tab: clinical prose (compressible like real text).
content=$(save_content "$CONTENT_BYTES")
save_scripts "$WORK" client_id

# sum of the versions of the tabs the clients write
version_sum() {
	local table=$1
	q $SDB -c "SELECT coalesce(sum(version), 0) FROM $table WHERE id IN (SELECT resource_id FROM bench_tokens WHERE client < $CLIENTS)"
}

# rows of the history a variant keeps (none for plain)
history_rows() {
	case $1 in
	plain) echo 0 ;;
	history) q $SDB -c "SELECT count(*) FROM bench_history" ;;
	fenced) q $SDB -c "SELECT count(*) FROM collab.revisions" ;;
	esac
}

# CPU time (clock ticks) of the worker, which takes the events of the
# fenced saves (doc:saved to its rooms, forwarded to NOTIFY listeners): its
# share of a save runs beside the saving backend, on the same cores.
TICK=$(getconf CLK_TCK)
worker_ticks() {
	local pid
	pid=$(q $SDB -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'collab worker' LIMIT 1")
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] && awk '{ print $14 + $15 }' "/proc/$pid/stat" || echo ""
}

declare -A save_tps=() save_walb=() save_fpi=() save_waits=() save_wcpu=()
save_round() {
	local variant=$1 round=$2 table out before after txns tps wal0 sampler hist0 hist1 wt0 wt1
	table=$([ "$variant" = fenced ] && echo collab.resources || echo bench_plain)
	q $SDB -c "VACUUM ANALYZE bench_plain" -c "VACUUM ANALYZE bench_history" -c "VACUUM ANALYZE collab.resources" \
		-c "VACUUM ANALYZE collab.revisions" -c "VACUUM ANALYZE collab.leases" -c "CHECKPOINT"
	before=$(version_sum "$table")
	hist0=$(history_rows "$variant")
	wal0=$(wal_mark)
	wt0=$(worker_ticks)
	out="$WORK/save_${variant}_$round.out"
	( sleep 1; sample_waits $SDB $((SECS > 3 ? SECS - 2 : 1)) >"$WORK/waits_${variant}_$round" ) &
	sampler=$!
	run_pgbench "$out" -n -M prepared -c "$CLIENTS" -j 2 -T "$SECS" \
		-D tok=0 -D content="$content" -f "$WORK/$variant.sql" $SDB
	wait $sampler || die "wait-event sampling failed"
	after=$(version_sum "$table")
	hist1=$(history_rows "$variant")
	txns=$(pgb_txns "$out")
	tps=$(pgb_tps "$out")
	[ "$txns" -gt 0 ] || die "$variant round $round processed no transactions"
	[ $((after - before)) -eq "$txns" ] ||
		die "$variant round $round: versions advanced by $((after - before)), pgbench processed $txns transactions"
	[ "$variant" = plain ] || [ $((hist1 - hist0)) -eq "$txns" ] ||
		die "$variant round $round: $((hist1 - hist0)) history rows for $txns saves"
	read -r save_walb[$variant,$round] save_fpi[$variant,$round] < <(wal_per "$txns" "$wal0" "$(wal_mark)")
	wt1=$(worker_ticks)
	save_wcpu[$variant,$round]=$([ -n "$wt0" ] && [ -n "$wt1" ] &&
		awk -v a="$wt0" -v b="$wt1" -v t="$TICK" -v n="$txns" 'BEGIN { printf "%.1f", (b - a) / t * 1e6 / n }' || echo n/a)
	save_waits[$variant,$round]=$(cat "$WORK/waits_${variant}_$round")
	save_tps[$variant,$round]=$(printf '%.1f' "$tps")
	printf '  round %d  %-6s  tps %9.1f  (%d saves, versions +%d; WAL %s B/save; worker CPU %s us/save; waits: %s)\n' "$round" "$variant" "$tps" \
		"$txns" $((after - before)) "${save_walb[$variant,$round]}" "${save_wcpu[$variant,$round]}" "${save_waits[$variant,$round]}"
}

echo
echo "== 1. fenced saves (with revisions) vs plain UPDATEs and UPDATE + history INSERT ($CLIENTS clients, $CONTENT_BYTES-byte content, ${SECS}s x $ROUNDS rounds)"
orders=("plain history fenced" "fenced plain history" "history fenced plain")
for r in $(seq 1 "$ROUNDS"); do
	for v in ${orders[$(((r - 1) % 3))]}; do save_round "$v" "$r"; done
done
# the guard must still hold: another tab's live token changes nothing
bad=$(q $SDB -c "SELECT collab.save('document:bench/tab:0', (SELECT token FROM bench_tokens WHERE client = 1), 'x')" 2>&1 || true)
echo "$bad" | grep -q 'LOCK_NOT_HELD\|not the lock\|not a live lock' ||
	die "a save with a wrong token was not rejected: $bad"

plain_list=""; fenced_list=""
for r in $(seq 1 "$ROUNDS"); do
	plain_list+="${save_tps[plain,$r]} "; fenced_list+="${save_tps[fenced,$r]} "
done
plain_med=$(echo "$plain_list" | median)
fenced_med=$(echo "$fenced_list" | median)
save_ratio=$(ratio "$fenced_med" "$plain_med")
pair_list=""
for r in $(seq 1 "$ROUNDS"); do pair_list+="$(ratio "${save_tps[fenced,$r]}" "${save_tps[plain,$r]}") "; done
pair_med=$(echo "$pair_list" | median)
pair_min=$(echo "$pair_list" | tr ' ' '\n' | grep -v '^$' | sort -g | head -1)
pair_max=$(echo "$pair_list" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -1)
# judged on the median of the per-round ratios: each round's pair ran back to back
save_verdict=$(awk -v r="$pair_med" -v t="$SAVE_TARGET" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }')
echo "  fenced/plain per round: $pair_list-> median $pair_med (lowest-highest $pair_min-$pair_max; target >= $SAVE_TARGET): $save_verdict; ratio of the median tps (plain $plain_med, fenced $fenced_med) $save_ratio"
history_list=""; hpair_list=""
for r in $(seq 1 "$ROUNDS"); do
	history_list+="${save_tps[history,$r]} "
	hpair_list+="$(ratio "${save_tps[fenced,$r]}" "${save_tps[history,$r]}") "
done
history_med=$(echo "$history_list" | median)
history_ratio=$(ratio "$fenced_med" "$history_med")
hpair_med=$(echo "$hpair_list" | median)
hpair_min=$(echo "$hpair_list" | tr ' ' '\n' | grep -v '^$' | sort -g | head -1)
hpair_max=$(echo "$hpair_list" | tr ' ' '\n' | grep -v '^$' | sort -g | tail -1)
history_verdict=$(awk -v r="$hpair_med" -v t="$HISTORY_TARGET" 'BEGIN { print (r >= t) ? "PASS" : "FAIL" }')
echo "  fenced/(UPDATE + history INSERT) per round: $hpair_list-> median $hpair_med (lowest-highest $hpair_min-$hpair_max; target >= $HISTORY_TARGET): $history_verdict; ratio of the median tps (history $history_med, fenced $fenced_med) $history_ratio"

# Storage of what the rounds wrote: every revision is a 2 kB save (plus the
# number that makes each one differ), as is every hand-written history row.
# Sizes include the table, its TOAST table and its indexes.
read -r rev_n rev_bytes rev_heap rev_toast rev_index rev_col < <(q $SDB -F ' ' -c "VACUUM collab.revisions" -c "
	SELECT count(*), round(pg_total_relation_size('collab.revisions')::numeric / count(*)),
		   round(pg_relation_size('collab.revisions')::numeric / count(*)),
		   round(coalesce(pg_total_relation_size(reltoastrelid), 0)::numeric / count(*)),
		   round(pg_indexes_size('collab.revisions')::numeric / count(*)),
		   round(avg(pg_column_size(content)))
	  FROM collab.revisions, pg_class WHERE pg_class.oid = 'collab.revisions'::regclass GROUP BY reltoastrelid")
read -r hist_n hist_bytes < <(q $SDB -F ' ' -c "VACUUM bench_history" -c "
	SELECT count(*), round(pg_total_relation_size('bench_history')::numeric / count(*)) FROM bench_history")
[ "$(q $SDB -c "SELECT bool_and(ok) FROM collab.resources r, collab.verify_history(r.id) WHERE r.id LIKE 'document:bench/%'")" = t ] ||
	die "the revisions written by the rounds do not verify"
echo "  storage per revision: $rev_bytes bytes ($rev_n revisions; heap $rev_heap, TOAST $rev_toast, index $rev_index; content $rev_col bytes stored for $CONTENT_BYTES); hand-written history row: $hist_bytes bytes; every chain verifies"
# The baseline's UPDATE compresses its content with the method of the column
# it copied (LIKE ... INCLUDING ALL); the hand-written history with the
# server's default.
compression=$(q $SDB -c "SELECT string_agg(c.relname || ' ' || CASE a.attcompression
		WHEN '' THEN current_setting('default_toast_compression') || ' (the server''s default)'
		WHEN 'l' THEN 'lz4' ELSE 'pglz' END, ', ' ORDER BY c.relname)
	  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	 WHERE a.attname = 'content' AND c.relname IN ('resources', 'revisions', 'bench_plain', 'bench_history')")
echo "  content compression: $compression"
if [ "${BENCH_ONLY:-}" = saves ]; then
	echo "bench: BENCH_ONLY=saves: the lock latency and the report are left out"
	exit 0
fi

# ---------------------------------------------------------------------------
# 2. Lock acquire latency with 10^3 and 10^6 resource rows
# ---------------------------------------------------------------------------
# load_docs DB FIRST LAST: documents FIRST..LAST, each with tabs tab:1..tab:9;
# 1% of the resources held (tab:9 of every tenth document), and an audit
# trail of four earlier grants/releases per document plus the live grants.
load_docs() {
	local db=$1 lo=$2 hi=$3
	q "$db" <<SQL
INSERT INTO collab.resources (id, parent_id, kind, title)
SELECT 'document:' || d, NULL, 'document', 'Operation report ' || d
  FROM generate_series($lo, $hi) d;
INSERT INTO collab.resources (id, parent_id, kind, title)
SELECT 'document:' || d || '/tab:' || t, 'document:' || d, 'tab', NULL
  FROM generate_series($lo, $hi) d, generate_series(1, $TABS_PER_DOC) t;
WITH h AS (
	SELECT d, t, nextval('collab.fencing_token_seq') AS token,
		   now() - interval '30 days' + d * interval '1 second' AS at
	  FROM generate_series($lo, $hi) d, generate_series(1, 2) t)
INSERT INTO collab.audit (at, action, resource_id, token, user_id, username, holder_id, reason)
SELECT at + x * interval '10 minutes', (CASE x WHEN 0 THEN 'grant' ELSE 'release' END)::collab.audit_action,
	   'document:' || d || '/tab:' || t, token, 'user-' || d % 500, 'Dr. User ' || d % 500,
	   'conn-' || d, CASE x WHEN 1 THEN 'released' END
  FROM h, generate_series(0, 1) x;
INSERT INTO collab.leases (resource_id, token, user_id, username, holder_id, acquired_at, renewed_at, expires_at)
SELECT 'document:' || d || '/tab:9', nextval('collab.fencing_token_seq'), 'holder-' || d % 500,
	   'Dr. Holder ' || d % 500, 'conn-h' || d, now(), now(), now() + interval '1 day'
  FROM generate_series($lo, $hi) d WHERE d % 10 = 0;
INSERT INTO collab.audit (at, action, resource_id, token, user_id, username, holder_id)
SELECT acquired_at, 'grant', resource_id, token, user_id, username, holder_id
  FROM collab.leases WHERE token > (SELECT coalesce(max(token), 0) FROM collab.audit);
SQL
}

# One round trip: acquire a free tab (each client draws from its own documents,
# never tab:9, so every acquire is granted), then release it.  Note: pgbench
# substitutes :name even inside string literals, so no literal has a ':x'.
cat >"$WORK/acquire.sql" <<'EOF'
\set d :client_id + 1 + :nclients * random(0, :ndocs / :nclients - 1)
\set tabno random(1, 8)
SELECT token AS tok FROM collab.acquire('document:' || :d::text || '/tab:' || :tabno::text, 'user-' || :client_id::text, 'Dr. Bench ' || :client_id::text, 'bench-conn-' || :client_id::text) \gset
SELECT collab.release(:tok);
EOF

echo
echo "== 2. lock acquire + release latency vs collab.resources size ($LAT_CLIENTS client(s), ${LAT_SECS}s x $ROUNDS rounds)"
small_docs=$((SMALL_ROWS / 10))
big_docs=$((BIG_ROWS / 10))
t_load=$(date +%s)
for size in small big; do
	db=bench_lat_$size
	q postgres -c "CREATE DATABASE $db"
	q $db -c "CREATE EXTENSION collab"
	load_docs $db 1 $small_docs
done
# grow the large one from 10^3 to BIG_ROWS rows in chunks of 100k documents
lo=$((small_docs + 1))
while [ $lo -le $big_docs ]; do
	hi=$((lo + 99999)); [ $hi -le $big_docs ] || hi=$big_docs
	load_docs bench_lat_big $lo $hi
	lo=$((hi + 1))
done
for size in small big; do q bench_lat_$size -c "VACUUM ANALYZE"; done
declare -A rows=() leases=() audit=()
for size in small big; do
	IFS='|' read -r rows[$size] leases[$size] audit[$size] < <(q bench_lat_$size -c \
		"SELECT (SELECT count(*) FROM collab.resources), (SELECT count(*) FROM collab.leases), (SELECT count(*) FROM collab.audit)")
	echo "  bench_lat_$size: ${rows[$size]} resources, ${leases[$size]} leases, ${audit[$size]} audit rows"
done
echo "  loaded in $(( $(date +%s) - t_load ))s"

declare -A lat_avg=() lat_p50=() lat_p99=() lat_acq=() lat_rel=() lat_tps=() lat_walb=() lat_fpi=()
lat_round() {
	local size=$1 round=$2 db=bench_lat_$1 ndocs out prefix grants0 grants1 denies denies1 txns wal0
	ndocs=$([ "$size" = small ] && echo $small_docs || echo $big_docs)
	q $db -c "VACUUM ANALYZE collab.leases" -c "VACUUM ANALYZE collab.audit" -c "CHECKPOINT"
	IFS='|' read -r grants0 denies < <(q $db -c \
		"SELECT count(*) FILTER (WHERE action = 'grant'), count(*) FILTER (WHERE action = 'deny') FROM collab.audit")
	out="$WORK/lat_${size}_$round.out"
	prefix="$WORK/lat_${size}_$round"
	wal0=$(wal_mark)
	(cd "$WORK" && run_pgbench "$out" -n -M prepared -c "$LAT_CLIENTS" -j "$LAT_CLIENTS" -T "$LAT_SECS" -r \
		--log --log-prefix="$prefix" -D ndocs=$ndocs -D nclients="$LAT_CLIENTS" -f "$WORK/acquire.sql" $db)
	txns=$(pgb_txns "$out")
	IFS='|' read -r grants1 denies1 < <(q $db -c \
		"SELECT count(*) FILTER (WHERE action = 'grant'), count(*) FILTER (WHERE action = 'deny') FROM collab.audit")
	[ $((grants1 - grants0)) -eq "$txns" ] && [ "$denies1" -eq "$denies" ] ||
		die "latency $size round $round: $((grants1 - grants0)) grants and $((denies1 - denies)) denials for $txns transactions"
	read -r lat_walb[$size,$round] lat_fpi[$size,$round] < <(wal_per "$txns" "$wal0" "$(wal_mark)")
	[ "$(q $db -c "SELECT count(*) FROM collab.leases WHERE holder_id LIKE 'bench-conn-%'")" -eq 0 ] ||
		die "latency $size round $round: locks were left behind"
	# per-transaction latencies (microseconds, 3rd column) of every client
	read -r lat_p50[$size,$round] lat_p99[$size,$round] < <(cat "$prefix".* | awk '{ print $3 }' | sort -n |
		awk '{ v[NR] = $1 } END { i50 = int(NR * 0.50); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1;
			printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')
	lat_avg[$size,$round]=$(pgb_latavg "$out")
	lat_tps[$size,$round]=$(pgb_tps "$out")
	lat_acq[$size,$round]=$(pgb_stmt "$out" "collab.acquire(")
	lat_rel[$size,$round]=$(pgb_stmt "$out" "collab.release(")
	printf '  round %d  %-5s  avg %6.3f ms  p50 %6.3f  p99 %6.3f  (acquire %s, release %s ms; %d round trips; WAL %s B, %s FPI each)\n' \
		"$round" "$size" "${lat_avg[$size,$round]}" "${lat_p50[$size,$round]}" "${lat_p99[$size,$round]}" \
		"${lat_acq[$size,$round]}" "${lat_rel[$size,$round]}" "$txns" "${lat_walb[$size,$round]}" "${lat_fpi[$size,$round]}"
}
for r in $(seq 1 "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then order="small big"; else order="big small"; fi
	for s in $order; do lat_round "$s" "$r"; done
done

declare -A med=()
for s in small big; do
	for m in avg p50 p99 acq rel walb fpi; do
		list=""
		for r in $(seq 1 "$ROUNDS"); do
			eval "list+=\"\${lat_$m[$s,$r]} \""
		done
		med[$m,$s]=$(echo "$list" | median)
	done
done
declare -A lat_ratio=()
for m in avg p50 p99 acq rel walb fpi; do lat_ratio[$m]=$(ratio "${med[$m,big]}" "${med[$m,small]}"); done
lat_verdict=$(awk -v a="${lat_ratio[avg]}" -v p="${lat_ratio[p50]}" -v t="$LAT_TOLERANCE" \
	'BEGIN { print (a >= 1 - t && a <= 1 + t && p >= 1 - t && p <= 1 + t) ? "PASS" : "FAIL" }')
echo "  median avg latency: small ${med[avg,small]} ms, big ${med[avg,big]} ms; big/small = ${lat_ratio[avg]} (target 1 +/- $LAT_TOLERANCE): $lat_verdict"

# ---------------------------------------------------------------------------
# 3. Summary
# ---------------------------------------------------------------------------
mkdir -p "$ROOT/test/bench/results"
report="$ROOT/test/bench/results/sql-core.md"
{
	echo "# collab SQL core benchmark"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, PostgreSQL $(q postgres -c 'SHOW server_version' | awk '{print $1}'); rounds: $ROUNDS x ${SECS}s (saves), $ROUNDS x ${LAT_SECS}s (latency)"
	echo
	echo "| saves ($CLIENTS clients, $CONTENT_BYTES B) | $(for r in $(seq 1 "$ROUNDS"); do printf 'round %d | ' "$r"; done)median |"
	echo "|---|$(for r in $(seq 1 "$ROUNDS"); do printf -- '---:|'; done)---:|"
	echo "| plain UPDATE tps | $(for r in $(seq 1 "$ROUNDS"); do printf '%s | ' "${save_tps[plain,$r]}"; done)$plain_med |"
	echo "| UPDATE + history INSERT tps | $(for r in $(seq 1 "$ROUNDS"); do printf '%s | ' "${save_tps[history,$r]}"; done)$history_med |"
	echo "| collab.save tps (with revisions) | $(for r in $(seq 1 "$ROUNDS"); do printf '%s | ' "${save_tps[fenced,$r]}"; done)$fenced_med |"
	for v in plain history fenced; do
		list=""
		for r in $(seq 1 "$ROUNDS"); do list+="${save_walb[$v,$r]} "; done
		echo "| $v WAL per save, bytes (FPI) | $(for r in $(seq 1 "$ROUNDS"); do printf '%s (%s) | ' "${save_walb[$v,$r]}" "${save_fpi[$v,$r]}"; done)$(echo "$list" | median) |"
	done
	echo "| fenced: the worker's CPU per save, µs | $(for r in $(seq 1 "$ROUNDS"); do printf '%s | ' "${save_wcpu[fenced,$r]}"; done)$(for r in $(seq 1 "$ROUNDS"); do printf '%s ' "${save_wcpu[fenced,$r]}"; done | median) |"
	echo "| **fenced / plain** | $(for r in $(seq 1 "$ROUNDS"); do printf '%s | ' "$(ratio "${save_tps[fenced,$r]}" "${save_tps[plain,$r]}")"; done)**$pair_med**, the median of the round ratios (lowest-highest $pair_min-$pair_max; target >= $SAVE_TARGET: **$save_verdict**); ratio of the median tps $save_ratio |"
	echo "| **fenced / (UPDATE + history INSERT)** | $(for r in $(seq 1 "$ROUNDS"); do printf '%s | ' "$(ratio "${save_tps[fenced,$r]}" "${save_tps[history,$r]}")"; done)**$hpair_med**, the median of the round ratios (lowest-highest $hpair_min-$hpair_max; target >= $HISTORY_TARGET: **$history_verdict**); ratio of the median tps $history_ratio |"
	echo
	echo "Storage per revision of a $CONTENT_BYTES-byte save: **$rev_bytes bytes** (table $rev_heap, TOAST $rev_toast, index $rev_index; the content takes $rev_col bytes compressed; $rev_n revisions); a row of the hand-written history: $hist_bytes bytes."
	echo "Content compression of the tables: $compression."
	echo
	echo "Wait events of the bench backends, round 1 (sampled every 50 ms; CPU = not waiting; Lock:object = the cluster-wide lock NOTIFY takes at commit):"
	echo "plain: ${save_waits[plain,1]}; history: ${save_waits[history,1]}; fenced: ${save_waits[fenced,1]}."
	echo
	echo "| acquire+release ($LAT_CLIENTS client), medians of $ROUNDS rounds, ms | ${rows[small]} rows | ${rows[big]} rows | big / small |"
	echo "|---|---:|---:|---:|"
	echo "| round trip, average | ${med[avg,small]} | ${med[avg,big]} | **${lat_ratio[avg]}** |"
	echo "| round trip, p50 | ${med[p50,small]} | ${med[p50,big]} | **${lat_ratio[p50]}** |"
	echo "| round trip, p99 | ${med[p99,small]} | ${med[p99,big]} | ${lat_ratio[p99]} |"
	echo "| acquire statement, average | ${med[acq,small]} | ${med[acq,big]} | ${lat_ratio[acq]} |"
	echo "| release statement, average | ${med[rel,small]} | ${med[rel,big]} | ${lat_ratio[rel]} |"
	echo "| WAL per round trip, bytes | ${med[walb,small]} | ${med[walb,big]} | ${lat_ratio[walb]} |"
	echo "| full-page images per round trip | ${med[fpi,small]} | ${med[fpi,big]} | ${lat_ratio[fpi]} |"
	echo "| tables (resources / leases / audit at load) | ${rows[small]} / ${leases[small]} / ${audit[small]} | ${rows[big]} / ${leases[big]} / ${audit[big]} | |"
	echo
	echo "Each round starts right after a CHECKPOINT, so first touches of pages write full-page images (as after every checkpoint in production)."
	echo "Latency flat within +/-$(awk -v t=$LAT_TOLERANCE 'BEGIN { print t * 100 }')% (average and p50): **$lat_verdict**. Total run $(( $(date +%s) - t_start ))s."
} >"$report"
# one line per target for the summary of `make bench` (test/bench/bench.sh)
printf '%s\t%s\t%s\n' \
	"fenced saves (collab.save) >= $SAVE_TARGET x plain UPDATE, $CLIENTS clients" \
	"$pair_med, median of $ROUNDS round ratio(s) (lowest-highest $pair_min-$pair_max)" "$save_verdict" \
	"fenced saves with revisions >= $HISTORY_TARGET x UPDATE + history INSERT, $CLIENTS clients" \
	"$hpair_med, median of $ROUNDS round ratio(s) (lowest-highest $hpair_min-$hpair_max)" "$history_verdict" \
	"storage per revision of a $CONTENT_BYTES-byte save" \
	"$rev_bytes bytes (hand-written history row: $hist_bytes)" "reported" \
	"SQL acquire + release flat (+/-$(awk -v t=$LAT_TOLERANCE 'BEGIN { print t * 100 }')%) from ${rows[small]} to ${rows[big]} rows, average and p50" \
	"average ${lat_ratio[avg]}, p50 ${lat_ratio[p50]} (medians of $ROUNDS round(s), one size after the other)" "$lat_verdict" \
	>"$ROOT/test/bench/results/targets-sql.tsv"
echo
cat "$report"
echo
echo "bench: written to ${report#$ROOT/} (and targets-sql.tsv)"
