-- Fencing tokens across failover: the token format (epoch * 2^36 + n), the
-- epoch decision for a promoted standby and a restored dump, an exhausted
-- epoch, the upgrade from 0.1.0 with live leases, and the extension of live
-- leases after a promotion.  One server has one timeline: promotions are
-- simulated by asking collab._start_token_epoch() about later timelines,
-- restores by the rows a dump brings along.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
SELECT current_database() AS regress_db \gset
SELECT system_identifier AS sysid, timeline AS tli FROM collab._token_issuer() \gset
SELECT :tli >= 1 AS timeline_known,
       :sysid = (SELECT system_identifier FROM pg_control_system()) AS system_identifier_is_the_servers;

-- the layout: epoch in the bits above 2^36, 0 for the plain tokens of 0.1.0
SELECT collab.token_epoch(1) AS plain, collab.token_epoch(68719476735) AS last_of_epoch_0,
       collab.token_epoch(68719476736) AS first_of_epoch_1,
       collab.token_epoch(9007199254740991) AS last_epoch_below_2_53,
       collab.token_epoch(NULL) AS of_null;
SELECT pg_temp.try($$SELECT collab.token_epoch(-1)$$);

/* ------------------------------------------------------------------------
 * Tokens of this primary
 * ------------------------------------------------------------------------ */
SELECT collab.create_document('epochs', NULL, ARRAY['a', 'b', 'c']);
SELECT token AS t1 FROM collab.acquire('document:epochs/tab:a', 'u1', 'Ann', 'c1') \gset
SELECT token AS t2 FROM collab.acquire('document:epochs/tab:b', 'u2', 'Ben', 'c2') \gset
-- this database has no earlier lives: its epoch is the timeline
SELECT collab.token_epoch(:t1) = :tli AS epoch_is_timeline,
       collab.token_epoch(:t1) = collab.current_token_epoch() AS current_epoch,
       :t2 = :t1 + 1 AS consecutive, :t2 < 9007199254740992 AS exact_in_javascript,
       :t1 > (SELECT coalesce(max(token), 0) FROM collab.audit WHERE collab.token_epoch(token) = 0)
         AS above_every_epoch_0_token;
-- n counts from the epoch's base; the row is the epoch's only one
SELECT :t1 - (e.epoch::bigint << 36) = (SELECT last_value FROM collab.fencing_token_seq) - e.base - 1 AS n_from_base,
       e.reason, e.timeline = :tli AS timeline, e.system_identifier = :sysid AS system,
       e.table_oid = 'collab.token_epochs'::regclass AS this_table
  FROM collab.token_epochs e WHERE e.epoch = collab.token_epoch(:t1);
SELECT count(*) AS epochs FROM collab.token_epochs;
-- a renewal keeps the token; the save guard takes an epoch token as any
SELECT token = :t1 AS same_token FROM collab.acquire('document:epochs/tab:a', 'u1', 'Ann', 'c1');
SELECT collab.save('document:epochs/tab:a', :t1, 'saved under an epoch token') AS version;
BEGIN;
SELECT set_config('collab.lock_token', :'t2', true) IS NOT NULL AS token_set;
UPDATE collab.resources SET content = 'plain update, epoch token' WHERE id = 'document:epochs/tab:b';
COMMIT;
SELECT id, content, version FROM collab.resources WHERE id LIKE 'document:epochs/%' ORDER BY id;
-- a token one past the epoch's count, or of another epoch, was never granted
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:epochs/tab:a', :t2 + 1, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:epochs/tab:a', :t1 + (1::bigint << 36), 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:epochs/tab:a', :t1 - (collab.token_epoch(:t1)::bigint << 36), 'x'));

/* ------------------------------------------------------------------------
 * The epoch decision (collab._start_token_epoch), in a database of its own
 * that a dump of another cluster was restored into: its epoch rows came
 * along, with a live lease of their last epoch.
 * ------------------------------------------------------------------------ */
DROP DATABASE IF EXISTS collab_regress_restored;
CREATE DATABASE collab_regress_restored;
\c collab_regress_restored
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
CREATE EXTENSION collab;
-- what pg_restore inserts: the other cluster's epochs (its first primary on
-- timeline 1, a promoted standby on timeline 2, then a restore of that into
-- a third cluster), a live lease of epoch 4 and the sequence
INSERT INTO collab.token_epochs (epoch, system_identifier, timeline, table_oid, base, reason) VALUES
	(1, 1001, 1, 16500, 1, 'first'),
	(2, 1001, 2, 16500, 90, 'promotion'),
	(4, 1002, 2, 17000, 130, 'restore');
SELECT collab.create_document('restored', NULL, ARRAY['a', 'b']);
INSERT INTO collab.leases (resource_id, token, user_id, username, holder_id, acquired_at, renewed_at, expires_at)
	VALUES ('document:restored/tab:a', (4::bigint << 36) + 7, 'u1', 'Ann', 'c1', now(), now(), now() + interval '1 hour');
SELECT setval('collab.fencing_token_seq', 137);
-- this cluster's first grant starts epoch 4 + its timeline, above every restored token
SELECT token AS t FROM collab.acquire('document:restored/tab:b', 'u2', 'Ben', 'c2') \gset
SELECT collab.token_epoch(:t) = 4 + :tli AS epoch_above_the_restored, :t > (4::bigint << 36) + 7 AS above_restored_lease,
       :t - (collab.token_epoch(:t)::bigint << 36) AS n;
SELECT epoch - :tli AS epoch_minus_timeline, timeline = :tli AS timeline, reason, base
  FROM collab.token_epochs WHERE system_identifier = :sysid;
-- the restored lease is live: its holder can still save with its token
SELECT collab.save('document:restored/tab:a', (4::bigint << 36) + 7, 'restored holder saves') AS version;

-- A promotion of this cluster: a later timeline, a later epoch, by exactly
-- the timelines it skipped.
SELECT epoch - :tli AS epoch_minus_timeline, row_xmin::text = pg_current_xact_id()::text AS own_row
  FROM collab._start_token_epoch(:sysid, :tli + 1);
SELECT reason FROM collab.token_epochs WHERE system_identifier = :sysid AND timeline = :tli + 1;
SELECT epoch - :tli AS epoch_minus_timeline FROM collab._start_token_epoch(:sysid, :tli + 3);
-- asking again finds the same epoch and base
SELECT (SELECT base FROM collab._start_token_epoch(:sysid, :tli + 1)) =
       (SELECT base FROM collab.token_epochs WHERE system_identifier = :sysid AND timeline = :tli + 1) AS same_base;
-- A standby that missed every epoch row its old primary wrote decides the
-- same epoch for a timeline, so it is above everything of earlier timelines.
BEGIN;
DELETE FROM collab.token_epochs WHERE system_identifier = :sysid;
SELECT epoch AS e_missed FROM collab._start_token_epoch(:sysid, :tli + 2) \gset
SELECT :e_missed - :tli AS epoch_minus_timeline, reason FROM collab.token_epochs WHERE epoch = :e_missed;
ROLLBACK;
SELECT epoch AS e_kept FROM collab._start_token_epoch(:sysid, :tli + 2) \gset
SELECT :e_kept - :tli AS epoch_minus_timeline, reason FROM collab.token_epochs WHERE epoch = :e_kept;
-- A restore into a new cluster on timeline 1 (another system identifier):
-- above the highest epoch of the data (this cluster's, 4 + timeline + 3).
SELECT epoch AS e_new FROM collab._start_token_epoch(4242, 1) \gset
SELECT :e_new - :tli AS epoch_minus_timeline, reason FROM collab.token_epochs WHERE epoch = :e_new;
-- tokens whose epoch rows were lost still bound the next epoch from below
INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id)
	VALUES ('grant', 'document:restored/tab:b', (40::bigint << 36) + 3, 'u9', 'Ida', 'c9');
SELECT epoch AS floor_epoch FROM collab._start_token_epoch(4343, 1);
-- bad input
SELECT pg_temp.try($$SELECT collab._start_token_epoch(NULL, 1)$$);
SELECT pg_temp.try(format('SELECT collab._start_token_epoch(%s, 0)', :sysid));
-- no epoch beyond 2^17 - 1, so that every token stays below 2^53
INSERT INTO collab.token_epochs (epoch, system_identifier, timeline, table_oid, base, reason)
	VALUES (131070, 1003, 1, 18000, 1, 'restore');
SELECT pg_temp.try($$SELECT collab._start_token_epoch(4444, 1)$$) AS at_the_limit;
SELECT pg_temp.try($$SELECT collab._start_token_epoch(4545, 1)$$) AS beyond;
SELECT max(epoch) AS highest_epoch FROM collab.token_epochs;
\c :regress_db
DROP DATABASE collab_regress_restored;

/* ------------------------------------------------------------------------
 * An exhausted epoch: the count stops at 2^36 - 1 and never reaches into
 * the epoch bits; the grant is refused and changes nothing.
 * ------------------------------------------------------------------------ */
DROP DATABASE IF EXISTS collab_regress_exhausted;
CREATE DATABASE collab_regress_exhausted;
\c collab_regress_exhausted
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
CREATE EXTENSION collab;
SELECT collab.create_document('full', NULL, ARRAY['a', 'b', 'c']);
SELECT token AS tf1 FROM collab.acquire('document:full/tab:a', 'u1', 'Ann', 'c1') \gset
SELECT setval('collab.fencing_token_seq', base + (1::bigint << 36) - 2) IS NOT NULL AS near_the_limit
  FROM collab.token_epochs WHERE epoch = collab.token_epoch(:tf1);
-- the last token of the epoch
SELECT token AS tlast FROM collab.acquire('document:full/tab:b', 'u2', 'Ben', 'c2') \gset
SELECT collab.token_epoch(:tlast) = collab.token_epoch(:tf1) AS same_epoch,
       :tlast = ((collab.token_epoch(:tf1) + 1)::bigint << 36) - 1 AS last_of_its_epoch;
-- then nothing more
SELECT pg_temp.try($$SELECT collab.acquire('document:full/tab:c', 'u3', 'Cleo', 'c3')$$);
SELECT pg_temp.try($$SELECT collab._next_token()$$);
SELECT count(*) AS leases_on_c FROM collab.leases WHERE resource_id = 'document:full/tab:c';
SELECT action, resource_id FROM collab.audit ORDER BY id;
-- the holders keep their locks: saves and releases do not need new tokens
SELECT collab.save('document:full/tab:b', :tlast, 'the last token still saves') AS version;
SELECT collab.release(:tlast);
SELECT (SELECT count(*) FROM collab.leases) AS leases, (SELECT count(*) FROM collab.token_epochs) AS epochs;
\c :regress_db
DROP DATABASE collab_regress_exhausted;

/* ------------------------------------------------------------------------
 * The upgrade from 0.1.0 with live leases: their plain tokens keep working
 * and stay below every new token.
 * ------------------------------------------------------------------------ */
DROP DATABASE IF EXISTS collab_regress_upgrade;
CREATE DATABASE collab_regress_upgrade;
\c collab_regress_upgrade
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
CREATE EXTENSION collab VERSION '0.1.0';
SELECT collab.create_document('old', NULL, ARRAY['a', 'b', 'c']);
-- 0.1.0 hands out the sequence's values
SELECT token AS ta FROM collab.acquire('document:old/tab:a', 'u1', 'Ann', 'c1') \gset
SELECT token AS tb FROM collab.acquire('document:old/tab:b', 'u2', 'Ben', 'c2') \gset
SELECT :ta AS ta, :tb AS tb;
SELECT collab.save('document:old/tab:b', :tb, 'saved in 0.1.0') AS version;
ALTER EXTENSION collab UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'collab';
SELECT count(*) AS epochs_before_any_grant FROM collab.token_epochs;
-- the leases of 0.1.0 are still live, with their tokens (epoch 0)
SELECT collab.token_epoch(:ta) AS epoch_of_a, collab.token_epoch(:tb) AS epoch_of_b;
SELECT resource_id, token = :ta AS same_token FROM collab.renew(:ta);
SELECT collab.save('document:old/tab:a', :ta, 'saved with a 0.1.0 token after the upgrade') AS version;
SELECT collab.save('document:old/tab:b', :tb, 'again') AS version;
-- the first grant of 0.2.0 starts the first epoch, above them
SELECT token AS tc FROM collab.acquire('document:old/tab:c', 'u3', 'Cleo', 'c3') \gset
SELECT collab.token_epoch(:tc) >= 1 AS epoch_token, :tc > :tb AS above_0_1_0_tokens,
       (SELECT reason FROM collab.token_epochs) AS reason;
SELECT collab.release(:ta), collab.release(:tb), collab.release(:tc);
-- a taken-over 0.1.0 token stays dead
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:old/tab:a', :ta, 'x'));
\c :regress_db
DROP DATABASE collab_regress_upgrade;

-- The upgrade refuses a 0.1.0 sequence beyond 2^36, where its tokens would
-- not stay below the first epoch's.
DROP DATABASE IF EXISTS collab_regress_upgrade_full;
CREATE DATABASE collab_regress_upgrade_full;
\c collab_regress_upgrade_full
\set VERBOSITY terse
CREATE EXTENSION collab VERSION '0.1.0';
SELECT setval('collab.fencing_token_seq', 1::bigint << 36) IS NOT NULL AS set;
ALTER EXTENSION collab UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'collab';
\c :regress_db
DROP DATABASE collab_regress_upgrade_full;

/* ------------------------------------------------------------------------
 * After a promotion: live leases extended by a grace, once per timeline (in
 * a database of its own, so that no other test's lease is live)
 * ------------------------------------------------------------------------ */
DROP DATABASE IF EXISTS collab_regress_promotion;
CREATE DATABASE collab_regress_promotion;
\c collab_regress_promotion
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
CREATE EXTENSION collab;
SELECT collab.create_document('promoted', NULL, ARRAY['a', 'b', 'c']);
-- tab:a and tab:b are live; tab:c's lease expired
SELECT token AS pa FROM collab.acquire('document:promoted/tab:a', 'u1', 'Ann', 'c1') \gset
SELECT token AS pb FROM collab.acquire('document:promoted/tab:b', 'u2', 'Ben', 'c2') \gset
SELECT token AS pc FROM collab.acquire('document:promoted/tab:c', 'u3', 'Cleo', 'c3') \gset
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second' WHERE token = :pc;
CREATE TEMP TABLE leases_before AS SELECT token, expires_at FROM collab.leases;
SELECT max(id) AS audit_mark FROM collab.audit \gset
-- bad input changes nothing
SELECT pg_temp.try($$SELECT collab.extend_leases_after_promotion(NULL)$$);
SELECT pg_temp.try($$SELECT collab.extend_leases_after_promotion('-1 second')$$);
SELECT pg_temp.try($$SELECT collab.extend_leases_after_promotion('2 days')$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT pg_temp.try($$SELECT collab.extend_leases_after_promotion('30 seconds')$$);
COMMIT;
CREATE ROLE collab_test_epoch_app IN ROLE collab_app;
CREATE ROLE collab_test_epoch_admin IN ROLE collab_admin;
SET ROLE collab_test_epoch_app;
SELECT pg_temp.try($$SELECT collab.extend_leases_after_promotion('30 seconds')$$);
SELECT pg_temp.try($$SELECT collab.current_token_epoch()$$);
SELECT pg_temp.try($$SELECT * FROM collab.token_epochs$$);
SELECT pg_temp.try($$SELECT collab._start_token_epoch(1, 1)$$);
SELECT collab.token_epoch(68719476737) AS app_reads_a_token_epoch;
RESET ROLE;
SELECT count(*) AS unchanged FROM collab.leases l JOIN leases_before b USING (token) WHERE l.expires_at = b.expires_at;
SELECT count(*) AS extensions_so_far FROM collab.token_epochs WHERE leases_extended_at IS NOT NULL;
-- an administrator (or the worker at promotion) extends every live lease once
SET ROLE collab_test_epoch_admin;
SELECT collab.extend_leases_after_promotion('30 seconds') AS extended;
SELECT collab.extend_leases_after_promotion('30 seconds') AS extended_again;
SELECT collab.current_token_epoch() = collab.token_epoch(:pa) AS admin_reads_the_epoch;
RESET ROLE;
SELECT l.resource_id, l.expires_at - b.expires_at AS extended_by
  FROM collab.leases l JOIN leases_before b USING (token) ORDER BY 1;
SELECT action, resource_id, reason, detail->>'extendedByMs' AS extended_by_ms,
       detail->>'timeline' = :'tli' AS timeline,
       (detail->>'expiresAt')::timestamptz = date_trunc('milliseconds', l.expires_at) AS expires_at
  FROM collab.audit a JOIN collab.leases l USING (token, resource_id)
 WHERE a.id > :audit_mark ORDER BY a.id;
SELECT leases_extended, leases_extended_by FROM collab.token_epochs
 WHERE system_identifier = :sysid AND timeline = :tli AND table_oid = 'collab.token_epochs'::regclass;
-- the extended holders renew and save as before
SELECT collab.save('document:promoted/tab:a', :pa, 'after the extension') AS version;
SELECT collab.release(:pa), collab.release(:pb);
DROP ROLE collab_test_epoch_app;
DROP ROLE collab_test_epoch_admin;
\c :regress_db
DROP DATABASE collab_regress_promotion;
SELECT collab.release(:t1), collab.release(:t2);
