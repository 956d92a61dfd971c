#!/bin/bash
# What `make bench` and `make bench-quick` run: the SQL core benchmark
# (test/bench/run.sh), then collab against the Node socket.io + Redis +
# PostgreSQL baseline (test/bench/ab/run.sh), then every target's verdict in
# one table, printed and written to test/bench/results/summary.md.
#
#   bash test/bench/bench.sh                 # BENCH_ROUNDS (3) rounds, AB_RUNS (3) runs
#   BENCH_QUICK=1 bash test/bench/bench.sh   # one of each, for iteration
#
# Each part's knobs pass through the environment (see test/bench/run.sh and
# test/bench/ab/README.md); with BENCH_QUICK=1, BENCH_ROUNDS and AB_RUNS
# default to 1.  Like both parts, it exits 0 whatever the verdicts are, and
# non-zero only when a part could not run.
set -euo pipefail
cd "$(dirname "$0")/../.."
RESULTS=test/bench/results

if [ -n "${BENCH_QUICK:-}" ]; then
	export BENCH_ROUNDS=${BENCH_ROUNDS:-1} AB_RUNS=${AB_RUNS:-1}
	# fewer long-polling rounds and upgrades: each costs a few round trips of HTTP
	export AB_POLL_ROUNDS=${AB_POLL_ROUNDS:-30} AB_UPGRADE_ITERS=${AB_UPGRADE_ITERS:-20}
fi
mkdir -p "$RESULTS"
# verdicts of an earlier run must not pass for this one's
rm -f "$RESULTS"/targets-sql.tsv "$RESULTS"/targets-ab.tsv "$RESULTS"/summary.md

status=0
t0=$(date +%s)
bash test/bench/run.sh || status=$?
t1=$(date +%s)
[ $status -ne 0 ] || bash test/bench/ab/run.sh || status=$?
t2=$(date +%s)

{
	echo "# make bench: every target"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?'); SQL core $((t1 - t0)) s" \
		"(BENCH_ROUNDS=${BENCH_ROUNDS:-3}, BENCH_SECONDS=${BENCH_SECONDS:-10}), A/B $((t2 - t1)) s (AB_RUNS=${AB_RUNS:-3}, AB_BUDGET_S=${AB_BUDGET_S:-720})." \
		"Latency targets: the median of the runs (rounds), spread in parentheses; details in sql-core.md and ab.md."
	echo
	echo "| benchmark | target | measured | verdict |"
	echo "|---|---|---|---|"
	for part in sql:"SQL core" ab:"A/B"; do
		f="$RESULTS/targets-${part%%:*}.tsv"
		if [ -s "$f" ]; then
			while IFS=$'\t' read -r what measured verdict; do
				echo "| ${part#*:} | $what | $measured | **$verdict** |"
			done <"$f"
		else
			echo "| ${part#*:} | (did not run to the end) | | **n/a** |"
		fi
	done
} >"$RESULTS/summary.md"
echo
cat "$RESULTS/summary.md"
echo
echo "bench: written to $RESULTS/summary.md; SQL core $((t1 - t0)) s, A/B $((t2 - t1)) s"
exit $status
