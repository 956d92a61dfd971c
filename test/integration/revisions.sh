#!/bin/bash
# Revisions outside pg_regress: the upgrade from a 0.1.0 database that has
# documents and saves (genesis revisions, the same objects as a new
# installation), and the auditor's script (scripts/verify-revisions.mjs),
# run as docs/revisions.md says, on a demo-like operation report, before and
# after a superuser tampers with a revision behind the triggers.
set -euo pipefail
cd "$(dirname "$0")"
. ./lib.sh
ROOT=$(cd ../.. && pwd)

for db in rev_upgrade rev_fresh; do TESTDB=postgres q "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done
TESTDB=postgres q "CREATE DATABASE rev_upgrade" >/dev/null
TESTDB=postgres q "CREATE DATABASE rev_fresh" >/dev/null
export TESTDB=rev_upgrade

# The auditor's pipeline of docs/revisions.md, for one resource.
audit() {
	PGTZ=UTC "${PSQL[@]}" -d "$TESTDB" -c "SELECT row_to_json(r) FROM collab.history('$1', NULL, 500) h, collab.revision('$1', h.version) r" |
		node "$ROOT/scripts/verify-revisions.mjs"
}

# 1. A 0.1.0 database with data: a demo-like report, saves through both SQL paths
q "CREATE EXTENSION collab VERSION '0.1.0'" >/dev/null
expect_eq "the extension starts at 0.1.0" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'collab'")" "0.1.0"
D=document:op-2026-0042
q "SELECT collab.create_document('op-2026-0042', 'Operation report OP-2026-0042', ARRAY['patient-info', 'diagnosis', 'procedure-notes', 'anesthesia'])" >/dev/null
t=$(q "SELECT token FROM collab.acquire('$D/tab:patient-info', 'u-admission', 'Admission desk', 'seed')")
q "SELECT collab.save('$D/tab:patient-info', $t, 'Patient: Demo Patient, born 1961-04-12, MRN DEMO-0042.')" >/dev/null
q "SELECT collab.save('$D/tab:patient-info', $t, 'Patient: Demo Patient, born 1961-04-12, MRN DEMO-0042. Ward 3B. Allergies: penicillin.')" >/dev/null
q "SELECT collab.release($t)" >/dev/null
t=$(q "SELECT token FROM collab.acquire('$D/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'anna-laptop')")
q "SELECT collab.save('$D/tab:diagnosis', $t, 'Acute appendicitis')" >/dev/null
"${PSQL[@]}" -d "$TESTDB" >/dev/null <<SQL
BEGIN;
SET LOCAL collab.lock_token = $t;
UPDATE collab.resources SET content = 'Acute appendicitis, perforated' WHERE id = '$D/tab:diagnosis';
COMMIT;
SQL
q "SELECT collab.release($t)" >/dev/null
# saved empty: version 1, no text, still a state to keep
t=$(q "SELECT token FROM collab.acquire('$D/tab:procedure-notes', 'u-ben', 'Dr. Ben Kaya', 'ben-tablet')")
q "SELECT collab.save('$D/tab:procedure-notes', $t, '')" >/dev/null
q "SELECT collab.release($t)" >/dev/null
before=$(q "SELECT string_agg(id || ' v' || version || ' ' || coalesce(saved_by_name, '-'), ', ' ORDER BY id) FROM collab.resources")

# 2. The upgrade
q "ALTER EXTENSION collab UPDATE" >/dev/null
expect_eq "the extension is at 0.2.0" "$(q "SELECT extversion FROM pg_extension WHERE extname = 'collab'")" "0.2.0"
expect_eq "the upgrade changed no document" \
	"$(q "SELECT string_agg(id || ' v' || version || ' ' || coalesce(saved_by_name, '-'), ', ' ORDER BY id) FROM collab.resources")" "$before"
expect_eq "each resource that had been saved got one genesis revision of its state" \
	"$(q "SELECT string_agg(v.resource_id || ' v' || v.version || ' ' || v.path || ' ' || v.saved_by_name, ', ' ORDER BY v.resource_id)
	        FROM collab.revisions v JOIN collab.resources r ON r.id = v.resource_id AND r.created_at = v.resource_created_at
	       WHERE v.version = r.version AND v.content = r.content AND v.saved_at = r.saved_at
	         AND v.prev_hash IS NULL AND v.token IS NULL")" \
	"$D/tab:diagnosis v2 genesis Dr. Anna Berg, $D/tab:patient-info v2 genesis Admission desk, $D/tab:procedure-notes v1 genesis Dr. Ben Kaya"
expect_eq "and nothing else (never-saved resources have none)" "$(q "SELECT count(*) FROM collab.revisions")" "3"
expect_eq "every resource verifies" \
	"$(q "SELECT string_agg(r.id || ' ' || v.ok || ' ' || v.revisions, ', ' ORDER BY r.id) FROM collab.resources r, collab.verify_history(r.id) v")" \
	"$D true 0, $D/tab:anesthesia true 0, $D/tab:diagnosis true 1, $D/tab:patient-info true 1, $D/tab:procedure-notes true 1"
expect_eq "the genesis revisions verify outside PostgreSQL" "$(audit "$D/tab:diagnosis" | cut -d, -f1)" "ok: versions 2 to 2"

# An upgraded database has the objects of a new one.
members="SELECT pg_describe_object(classid, objid, objsubid) FROM pg_depend
          WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
            AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'collab') ORDER BY 1"
TESTDB=rev_fresh q "CREATE EXTENSION collab" >/dev/null
expect_eq "the upgraded and the new installation have the same objects ($(q "$members" | wc -l))" \
	"$(q "$members" | md5sum)" "$(TESTDB=rev_fresh q "$members" | md5sum)"
func_defs="SELECT p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) FROM pg_proc p
            WHERE p.pronamespace = 'collab'::regnamespace AND p.prokind <> 'a' ORDER BY 1"
expect_eq "with the same function definitions" "$(q "$func_defs" | md5sum)" "$(TESTDB=rev_fresh q "$func_defs" | md5sum)"
grants="SELECT c.relname || ' ' || coalesce(c.relacl::text, '-') FROM pg_class c WHERE c.relnamespace = 'collab'::regnamespace
        UNION ALL SELECT p.oid::regprocedure::text || ' ' || coalesce(p.proacl::text, '-') FROM pg_proc p
         WHERE p.pronamespace = 'collab'::regnamespace ORDER BY 1"
expect_eq "and the same grants" "$(q "$grants" | md5sum)" "$(TESTDB=rev_fresh q "$grants" | md5sum)"

# 3. Work goes on after the upgrade: saves chain to the genesis revision
t=$(q "SELECT token FROM collab.acquire('$D/tab:diagnosis', 'u-ben', 'Dr. Ben Kaya', 'ben-tablet')")
q "SELECT collab.save('$D/tab:diagnosis', $t, 'Acute appendicitis, perforated; localized peritonitis', 2)" >/dev/null
expect_eq "restoring a version from before revisions began is refused" \
	"$(q "SELECT collab.save('$D/tab:diagnosis', $t, 'Acute appendicitis', NULL, 1)" 2>&1 | grep -o 'has no revision 1 to restore')" \
	"has no revision 1 to restore"
q "SELECT collab.save('$D/tab:diagnosis', $t, 'Acute appendicitis, perforated', NULL, 2)" >/dev/null
q "SELECT collab.save('$D/tab:diagnosis', $t, 'Acute appendicitis, perforated (Ä, ü, ß, ✓)')" >/dev/null
q "SELECT collab.release($t)" >/dev/null
expect_eq "the diagnosis has its genesis and three saves, one a restore" \
	"$(q "SELECT string_agg(version || ' ' || path || ' ' || coalesce(restored_from::text, '-') || ' ' || saved_by_name, ', ' ORDER BY version) FROM collab.history('$D/tab:diagnosis')")" \
	"2 genesis - Dr. Anna Berg, 3 sql - Dr. Ben Kaya, 4 sql 2 Dr. Ben Kaya, 5 sql - Dr. Ben Kaya"
expect_eq "verify_history: ok" "$(q "SELECT ok FROM collab.verify_history('$D/tab:diagnosis')")" "t"
out=$(audit "$D/tab:diagnosis"); rc=$?
head=$(q "SELECT head_hash FROM collab.verify_history('$D/tab:diagnosis')")
expect_eq "the auditor's script recomputes the same chain" \
	"$out (exit $rc)" "ok: versions 2 to 5, head $head, anchored at nothing (first revision) (exit 0)"

# 4. After a purge the script starts from the anchor the purge left
q "SELECT collab.purge_revisions(saved_at) FROM collab.revisions WHERE resource_id = '$D/tab:diagnosis' AND version = 4" >/dev/null
anchor=$(q "SELECT encode(hash, 'hex') FROM collab.revision_purges WHERE resource_id = '$D/tab:diagnosis'")
expect_eq "after a purge: the chain from its anchor" "$(audit "$D/tab:diagnosis")" \
	"ok: versions 4 to 5, head $head, anchored at $anchor"

# 5. Tampering behind the triggers: both verifiers name the version
"${PSQL[@]}" -d "$TESTDB" >/dev/null <<SQL
SET session_replication_role = replica;
UPDATE collab.revisions SET content = 'Acute appendicitis' WHERE resource_id = '$D/tab:patient-info';
UPDATE collab.revisions SET saved_by_name = 'Dr. Somebody Else' WHERE resource_id = '$D/tab:diagnosis' AND version = 4;
SQL
expect_eq "verify_history names the tampered version" \
	"$(q "SELECT first_bad_version || ': ' || problem FROM collab.verify_history('$D/tab:diagnosis')")" \
	"4: its fields do not match its hash"
set +e
out=$(audit "$D/tab:diagnosis"); rc=$?
set -e
expect_eq "so does the auditor's script, and it fails" "$out (exit $rc)" "version 4 does not verify: its fields do not match its hash (exit 1)"
expect_eq "a tampered genesis revision too" \
	"$(q "SELECT first_bad_version || ': ' || problem FROM collab.verify_history('$D/tab:patient-info')")" \
	"2: its fields do not match its hash"
set +e
out=$(audit "$D/tab:patient-info"); rc=$?
set -e
expect_eq "found by the script as well" "$out (exit $rc)" "version 2 does not verify: its fields do not match its hash (exit 1)"
# a revision taken out of the middle of a chain
t=$(q "SELECT token FROM collab.acquire('$D/tab:anesthesia', 'u-cem', 'Dr. Cem Aydin', 'cem')")
for i in 1 2 3; do q "SELECT collab.save('$D/tab:anesthesia', $t, 'ASA $i')" >/dev/null; done
q "SELECT collab.release($t)" >/dev/null
expect_eq "an untouched chain verifies" "$(audit "$D/tab:anesthesia" | cut -d, -f1)" "ok: versions 1 to 3"
"${PSQL[@]}" -d "$TESTDB" -c "SET session_replication_role = replica" \
	-c "DELETE FROM collab.revisions WHERE resource_id = '$D/tab:anesthesia' AND version = 2" >/dev/null
set +e
out=$(audit "$D/tab:anesthesia"); rc=$?
set -e
expect_eq "a missing revision breaks the chain for the script" "$out (exit $rc)" "version 3 does not verify: not chained to version 1 (exit 1)"
expect_eq "and for verify_history" "$(q "SELECT first_bad_version || ': ' || problem FROM collab.verify_history('$D/tab:anesthesia')")" \
	"2: revision 2 is missing"

TESTDB=postgres q "DROP DATABASE rev_upgrade" >/dev/null
TESTDB=postgres q "DROP DATABASE rev_fresh" >/dev/null
finish
