#!/bin/bash
# Installation edge cases: CREATE EXTENSION without preloading fails with a
# clear error and hint; pg_dump and restore keep documents, the audit trail,
# the revisions with their purge anchors (the chains still verify), the token
# sequence and the token epochs, so tokens keep increasing after a restore, in
# a new epoch, and the grants, session revocations and access trail.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh

# 1. a cluster without shared_preload_libraries
bare="$COLLAB_TEST_WORK/bare"
bash ../../scripts/cluster.sh start "$bare" "shared_preload_libraries = ''" >/dev/null
err=$(psql -X -q -h "$bare" -p "$(cat "$bare/port")" -U postgres -d postgres \
	-v VERBOSITY=default -c "CREATE EXTENSION collab" 2>&1 || true)
bash ../../scripts/cluster.sh destroy "$bare"
expect_eq "CREATE EXTENSION without preloading names the problem" \
	"$(echo "$err" | grep -c 'collab must be loaded via shared_preload_libraries')" "1"
expect_eq "and says how to fix it" \
	"$(echo "$err" | grep -c 'HINT:  Add collab to shared_preload_libraries in postgresql.conf and restart the server.')" "1"

# 2. dump and restore
TESTDB=postgres q "DROP DATABASE IF EXISTS dump_src" >/dev/null 2>&1
TESTDB=postgres q "DROP DATABASE IF EXISTS dump_dst" >/dev/null 2>&1
TESTDB=postgres q "CREATE DATABASE dump_src" >/dev/null
TESTDB=postgres q "CREATE DATABASE dump_dst" >/dev/null
export TESTDB=dump_src
q "CREATE EXTENSION collab" >/dev/null
q "SELECT collab.create_document('dump', 'Dumped report', ARRAY['diagnosis'])" >/dev/null
t=$(q "SELECT token FROM collab.acquire('document:dump/tab:diagnosis', 'u1', 'Ann', 'c1')")
for text in 'first draft' 'second draft' 'third draft' 'kept across dumps'; do
	q "SELECT collab.save('document:dump/tab:diagnosis', $t, '$text')" >/dev/null
done
q "SELECT collab.release($t)" >/dev/null
# a purge leaves an anchor that the restored chain must still start from
q "SELECT collab.purge_revisions(saved_at) FROM collab.revisions WHERE version = 3" >/dev/null
revisions="SELECT string_agg(version || ' ' || encode(hash, 'hex') || ' ' || coalesce(encode(prev_hash, 'hex'), '-')
             || ' ' || saved_at || ' ' || token || ' ' || path, ', ' ORDER BY version) FROM collab.revisions"
revs_src=$(q "$revisions")
anchor_src=$(q "SELECT through_version || ' ' || encode(hash, 'hex') FROM collab.revision_purges")
q "SELECT collab.grant('document:dump', 'group:surgery', 'edit')" >/dev/null
q "SELECT collab.grant('document:dump/tab:diagnosis', 'user:u-ben', 'view')" >/dev/null
q "SELECT collab.revoke_sessions('u-lost', 'badge lost')" >/dev/null
pg_dump -h "$PGHOST" -p "$PGPORT" -U postgres dump_src >"$COLLAB_TEST_WORK/dump.sql" 2>"$COLLAB_TEST_WORK/dump.log"
psql -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -U postgres -d dump_dst -f "$COLLAB_TEST_WORK/dump.sql" >/dev/null 2>&1
export TESTDB=dump_dst
expect_eq "the content was restored" \
	"$(q "SELECT content || ' v' || version || ' ' || saved_by_name FROM collab.resources WHERE id = 'document:dump/tab:diagnosis'")" \
	"kept across dumps v4 Ann"
expect_eq "the revisions were restored, hashes and all (versions $(q "SELECT string_agg(version::text, ',' ORDER BY version) FROM collab.revisions"))" \
	"$(q "$revisions")" "$revs_src"
expect_eq "and the purge anchor" "$(q "SELECT through_version || ' ' || encode(hash, 'hex') FROM collab.revision_purges")" "$anchor_src"
expect_eq "verify_history is true after the restore" \
	"$(q "SELECT ok || ' ' || revisions || ' ' || purged_through FROM collab.verify_history('document:dump/tab:diagnosis')")" "true 2 2"
expect_eq "revisions are immutable in the restored database" \
	"$(q "DELETE FROM collab.revisions" 2>&1 | grep -c 'revisions are immutable')" "1"
expect_eq "the audit trail was restored" \
	"$(q "SELECT string_agg(action, ',' ORDER BY id) FROM collab.audit_log")" "grant,release"
expect_eq "the grants were restored" \
	"$(q "SELECT string_agg(resource_id || ' ' || subject || ' ' || permission, ', ' ORDER BY resource_id) FROM collab.grants")" \
	"document:dump group:surgery edit, document:dump/tab:diagnosis user:u-ben view"
expect_eq "the session revocations were restored" \
	"$(q "SELECT user_id || ' ' || reason FROM collab.session_revocations")" "u-lost badge lost"
expect_eq "the access trail was restored" \
	"$(q "SELECT string_agg(action, ',' ORDER BY id) FROM collab.access_log")" "grant,grant,revoke_sessions"
expect_eq "access decisions work in the restored database" \
	"$(q "SELECT collab.can('u-sam', ARRAY['surgery'], 'document:dump/tab:diagnosis', 'edit')")" "t"
t2=$(q "SELECT token FROM collab.acquire('document:dump/tab:diagnosis', 'u2', 'Bob', 'c2')")
expect_eq "the first token after the restore ($t2) is greater than the last one before ($t)" \
	"$([ "$t2" -gt "$t" ] && echo yes || echo no)" "yes"
expect_eq "the restored database issues tokens in a new epoch, above the dumped one's" \
	"$(q "SELECT collab.token_epoch($t2) > collab.token_epoch($t)")" "t"
expect_eq "and records it as a restore" \
	"$(q "SELECT reason FROM collab.token_epochs WHERE epoch = collab.token_epoch($t2)")" "restore"
expect_eq "the guard trigger works in the restored database" \
	"$(q "UPDATE collab.resources SET content = 'x' WHERE id = 'document:dump/tab:diagnosis'" 2>&1 | grep -m1 -c 'no lock token presented')" "1"
q "SELECT collab.save('document:dump/tab:diagnosis', $t2, 'after the restore')" >/dev/null
expect_eq "a save after the restore chains on" \
	"$(q "SELECT ok || ' ' || revisions FROM collab.verify_history('document:dump/tab:diagnosis')")" "true 3"

TESTDB=postgres q "DROP DATABASE dump_src" >/dev/null
TESTDB=postgres q "DROP DATABASE dump_dst" >/dev/null
finish
