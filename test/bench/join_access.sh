#!/bin/bash
# The SQL cost of access control on a join: collab.ws_join() and
# collab.ws_leave() of a viewer, as the worker calls them, with pgbench, in
# three databases of one throwaway cluster, in interleaved rounds:
#
#   0.1.0  the extension at version 0.1.0: no access control at all
#   off    0.2.0 with collab.access_control = off (grants still looked up,
#          for the admin permission)
#   on     0.2.0, access control on
#
# Each 0.2.0 database holds 1000 documents of 4 tabs and 10^4 grants (ten per
# document: two to groups, eight to users); each pgbench client is a
# connection of a user in 5 of 50 groups, and joins tabs of the documents
# one of its groups may edit.  Each join writes its entry of the access
# trail (a logged row) and each pgbench transaction commits with
# synchronous_commit on, so the 0.2.0 columns include the WAL flush that the
# worker waits for before it sends a joiner its ack (once per batch of
# requests, see src/jobs.c).  No WebSocket worker runs (collab.workers = 0):
# only the SQL is measured.  A fourth column runs the 0.2.0 joins with
# synchronous_commit off: the SQL alone, without the flush (which the
# worker shares among the requests of a batch).  The machine is shared: compare the columns
# of one run, never runs of different days.
#
# Environment: BENCH_SECONDS (per round, default 10), BENCH_ROUNDS (default
# 3), BENCH_CLIENTS (default 4; also measured with 1), BENCH_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

SECS=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-4}

die() { echo "join_access: ERROR: $*" >&2; exit 1; }
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || die "BENCH_SECONDS must be a whole number of seconds"
[ "$CLIENTS" -le 64 ] || die "BENCH_CLIENTS must be at most 64"

WORK=$(mktemp -d /tmp/collab-join-bench.XXXXXX)
chmod 755 "$WORK"
CLUSTER="$WORK/cluster"
cleanup() {
	bash "$ROOT/scripts/cluster.sh" destroy "$CLUSTER" >/dev/null 2>&1 || true
	if [ "${BENCH_KEEP:-}" = "" ]; then rm -rf "$WORK"; else echo "join_access: kept $WORK" >&2; fi
}
trap cleanup EXIT

bash "$ROOT/scripts/cluster.sh" start "$CLUSTER" "collab.workers = 0" \
	"collab.jwt_secret = 'unused-unused-unused-unused-unused'" >/dev/null || die "could not start the cluster"
export PGHOST="$CLUSTER" PGPORT=$(cat "$CLUSTER/port") PGUSER=postgres
q() { psql -X -q -v ON_ERROR_STOP=1 -d "$1" "${@:2}"; }

# the same documents and connections everywhere; grants where there are any
SETUP="
SELECT count(collab.create_document('d' || d, NULL, ARRAY['t1', 't2', 't3', 't4'])) FROM generate_series(0, 999) d;
SELECT count(collab.ws_connect('bench-c' || c, 'bench', 1, 'u-' || c, 'Dr. Bench ' || c, '10.0.0.' || c, NULL))
  FROM generate_series(0, 64) c;"
GRANTS="
SELECT count(collab.grant('document:d' || d, 'group:g' || (d % 50), 'edit')) FROM generate_series(0, 999) d;
SELECT count(collab.grant('document:d' || d, 'group:g' || ((d + 25) % 50), 'view')) FROM generate_series(0, 999) d;
SELECT count(collab.grant('document:d' || d, 'user:u-' || ((d * 8 + k) % 5000), 'view'))
  FROM generate_series(0, 999) d, generate_series(0, 7) k;
-- a client's user is in 5 groups: its own (c mod 50) and four others
UPDATE collab.ws_connections
   SET groups = ARRAY(SELECT 'g' || ((split_part(user_id, '-', 2)::int + 10 * i) % 50) FROM generate_series(0, 4) i ORDER BY 1)
 WHERE connection_id LIKE 'bench-c%';
SELECT count(*) AS grants FROM collab.acl;"

for db in v010 v020; do
	q postgres -c "CREATE DATABASE $db"
done
q v010 -c "CREATE EXTENSION collab VERSION '0.1.0'"
q v010 -c "$SETUP" >/dev/null
q v020 -c "CREATE EXTENSION collab"
q v020 -c "$SETUP" >/dev/null
n=$(q v020 -At -c "$GRANTS" | tail -1)
[ "$n" = 10000 ] || die "expected 10000 grants, found $n"
for db in v010 v020; do q "$db" -c "VACUUM ANALYZE" >/dev/null; done

# a client joins tabs of the documents of its own group, as the worker does
# (pgbench substitutes :name even inside literals: none of those here)
cat >"$WORK/join.sql" <<'EOF'
\set docno (:client_id % 50) + 50 * random(0, 19)
\set tabno random(1, 4)
SELECT ack IS NOT NULL FROM collab.ws_join('bench-c' || :client_id::int, 'document:' || 'd' || :docno::int || '/tab:' || 't' || :tabno::int, 'viewer', false);
SELECT collab.ws_leave('bench-c' || :client_id::int, 'document:' || 'd' || :docno::int || '/tab:' || 't' || :tabno::int);
EOF

# one pgbench run: prints "tps latency_ms"
run() {
	local db=$1 clients=$2 opts=$3 out="$WORK/pgbench.$db.$clients.$RANDOM"
	PGOPTIONS="$opts" pgbench -n -M prepared -f "$WORK/join.sql" -c "$clients" -j "$(( clients < 2 ? 1 : 2 ))" \
		-T "$SECS" "$db" >"$out" 2>&1 || { cat "$out" >&2; die "pgbench failed on $db"; }
	grep -q "number of failed transactions: 0" "$out" || { cat "$out" >&2; die "failed transactions on $db"; }
	awk '/^latency average/ { lat = $4 } /^tps = / { tps = $3 } END { printf "%.0f %.3f\n", tps, lat }' "$out"
}

declare -A tps lat
for clients in 1 "$CLIENTS"; do
	for r in $(seq 1 "$ROUNDS"); do
		for variant in 0.1.0 off on nowait; do
			case $variant in
				0.1.0) res=$(run v010 "$clients" "") ;;
				off) res=$(run v020 "$clients" "-c collab.access_control=off") ;;
				on) res=$(run v020 "$clients" "") ;;
				nowait) res=$(run v020 "$clients" "-c synchronous_commit=off") ;;
			esac
			tps[$clients,$variant]="${tps[$clients,$variant]:-} ${res% *}"
			lat[$clients,$variant]="${lat[$clients,$variant]:-} ${res#* }"
		done
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "join + leave of a viewer, medians of $ROUNDS rounds of ${SECS} s (pgbench -M prepared):"
echo
echo "| clients | 0.1.0 (no access control) | 0.2.0, access_control off | 0.2.0, access_control on | on, without the flush | on vs 0.1.0 |"
echo "|---|---|---|---|---|---|"
for clients in 1 "$CLIENTS"; do
	row="| $clients"
	for variant in 0.1.0 off on nowait; do
		t=$(echo "${tps[$clients,$variant]}" | median)
		l=$(echo "${lat[$clients,$variant]}" | median)
		row="$row | $t pairs/s, $l ms"
	done
	a=$(echo "${lat[$clients,0.1.0]}" | median)
	b=$(echo "${lat[$clients,on]}" | median)
	row="$row | $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%+.3f ms (%+.0f %%)", b - a, (b - a) * 100 / a }') |"
	echo "$row"
done
echo
echo "access trail entries of the joins: $(q v020 -At -c "SELECT count(*) FROM collab.access_entries WHERE action = 'join'")"
