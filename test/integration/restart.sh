#!/bin/bash
# Crash and restart: fencing tokens are never reissued, committed leases
# survive, and a token from before the crash cannot save after a takeover.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
CLUSTER="$COLLAB_TEST_WORK/cluster"
export TESTDB=restart_test

# The WAL writer slowed, so that nothing but a transaction's own commit
# flushes WAL before the crash that follows; then back to its default.
slow_wal_writer() {
	TESTDB=postgres q "ALTER SYSTEM SET wal_writer_delay = '10s'" >/dev/null
	TESTDB=postgres q "SELECT pg_reload_conf()" >/dev/null
}
reset_wal_writer() {
	TESTDB=postgres q "ALTER SYSTEM RESET wal_writer_delay" >/dev/null
	TESTDB=postgres q "SELECT pg_reload_conf()" >/dev/null
}

TESTDB=postgres q "DROP DATABASE IF EXISTS $TESTDB" >/dev/null
TESTDB=postgres q "CREATE DATABASE $TESTDB" >/dev/null
TESTDB=postgres q "ALTER DATABASE $TESTDB SET lc_messages = 'C'" >/dev/null
q "CREATE EXTENSION collab" >/dev/null
q "SELECT collab.create_document('crash', NULL, ARRAY['diagnosis', 'notes'])" >/dev/null

# A lease committed synchronously before the crash.
held=$(q "SELECT token FROM collab.acquire('document:crash/tab:diagnosis', 'u-anna', 'Anna', 'c1')")
q "SELECT collab.save('document:crash/tab:diagnosis', $held, 'before the crash')" >/dev/null

# Many grants committed asynchronously, the last ones right before the crash,
# with the WAL writer slowed so that nothing but the grants flushes WAL:
# their commits may be lost, their tokens must still never come back
# (src/tokens.c flushes the sequence's record that covers them).
slow_wal_writer
max=$("${PSQL[@]}" -d $TESTDB <<'SQL'
SET synchronous_commit = off;
SELECT max(token) FROM (
	SELECT (collab.acquire('document:crash/tab:notes', 'u-ben', 'Ben', 'c2')).token
) s;
SQL
)
for i in $(seq 1 60); do
	t=$("${PSQL[@]}" -d $TESTDB -c "SET synchronous_commit = off" \
		-c "SELECT collab.release_holder('c2', 'released')" \
		-c "SELECT token FROM collab.acquire('document:crash/tab:notes', 'u-ben', 'Ben', 'c2')" | tail -1)
	[ "$t" -gt "$max" ] && max=$t
done
echo "highest token handed out before the crash: $max"

bash ../../scripts/cluster.sh stop "$CLUSTER" immediate
bash ../../scripts/cluster.sh restart "$CLUSTER"
reset_wal_writer

expect_eq "the committed lease survived the crash" \
	"$(q "SELECT username FROM collab.locks WHERE resource_id = 'document:crash/tab:diagnosis'")" "Anna"
expect_eq "its content survived" \
	"$(q "SELECT content || ' v' || version FROM collab.resources WHERE id = 'document:crash/tab:diagnosis'")" \
	"before the crash v1"

q "SELECT collab.force_release('document:crash/tab:diagnosis', 'holder lost in the crash')" >/dev/null
new=$(q "SELECT token FROM collab.acquire('document:crash/tab:diagnosis', 'u-cleo', 'Cleo', 'c3')")
expect_eq "the first token after restart ($new) is greater than every earlier one ($max)" \
	"$([ "$new" -gt "$max" ] && echo yes || echo no)" "yes"

err=$(q "SELECT collab.save('document:crash/tab:diagnosis', $held, 'stale writer')" 2>&1 || true)
expect_eq "a save with the pre-crash token is rejected" \
	"$(echo "$err" | grep -o 'not a live lock' | head -1)" "not a live lock"
expect_eq "and changed nothing" \
	"$(q "SELECT content || ' v' || version FROM collab.resources WHERE id = 'document:crash/tab:diagnosis'")" \
	"before the crash v1"
expect_eq "the new holder saves" \
	"$(q "SELECT collab.save('document:crash/tab:diagnosis', $new, 'after the crash')")" "2"
expect_eq "no token is in the audit trail twice" \
	"$(q "SELECT count(DISTINCT token) = count(*) FROM collab.audit WHERE action = 'grant'")" "t"

TESTDB=postgres q "DROP DATABASE $TESTDB" >/dev/null

# A checkpoint, then one grant committed asynchronously with the WAL writer
# slowed, so that nothing but the grant itself can flush WAL, and a crash;
# prints the grant's token.  Arguments: resource, user id, name, holder.
grant_after_checkpoint_then_crash() {
	local token
	q "CHECKPOINT" >/dev/null
	slow_wal_writer
	token=$("${PSQL[@]}" -d $TESTDB -c "SET synchronous_commit = off" \
		-c "SELECT token FROM collab.acquire('$1', '$2', '$3', '$4')" | tail -1)
	bash ../../scripts/cluster.sh stop "$CLUSTER" immediate >/dev/null
	bash ../../scripts/cluster.sh restart "$CLUSTER" >/dev/null
	reset_wal_writer
	echo "$token"
}

# The first grant of a database starts its token epoch (a row of
# collab.token_epochs, the base its count starts from).  Made under
# asynchronous commit and lost in a crash, the epoch would start again at
# the same number and count from 1: its first token would come back.
export TESTDB=restart_epoch_test
TESTDB=postgres q "DROP DATABASE IF EXISTS $TESTDB" >/dev/null
TESTDB=postgres q "CREATE DATABASE $TESTDB" >/dev/null
q "CREATE EXTENSION collab" >/dev/null
q "SELECT collab.create_document('epoch', NULL, ARRAY['a', 'b'])" >/dev/null
first=$(grant_after_checkpoint_then_crash 'document:epoch/tab:a' u-anna Anna e1)
next=$(q "SELECT token FROM collab.acquire('document:epoch/tab:b', 'u-ben', 'Ben', 'e2')")
expect_eq "a token after the crash ($next) is above the epoch's first, granted asynchronously ($first)" \
	"$([ "$next" -gt "$first" ] && echo yes || echo no)" "yes"
expect_eq "the epoch-starting grant was made durable before it was acknowledged" \
	"$(q "SELECT username FROM collab.locks WHERE resource_id = 'document:epoch/tab:a'")" "Anna"

# A grant in the running epoch, the first after a checkpoint (so its nextval
# WAL-logs the sequence): the crash may take its lease, never its token.
q "SELECT collab.create_document('epoch2', NULL, ARRAY['c', 'd'])" >/dev/null
lazy=$(grant_after_checkpoint_then_crash 'document:epoch2/tab:c' u-anna Anna e3)
echo "# the asynchronous grant's lease after the crash: $(q "SELECT count(*) FROM collab.locks WHERE resource_id = 'document:epoch2/tab:c'") row(s)"
next=$(q "SELECT token FROM collab.acquire('document:epoch2/tab:d', 'u-ben', 'Ben', 'e4')")
expect_eq "a token after the crash ($next) is above an asynchronous grant's right after a checkpoint ($lazy)" \
	"$([ "$next" -gt "$lazy" ] && echo yes || echo no)" "yes"
TESTDB=postgres q "DROP DATABASE $TESTDB" >/dev/null
finish
