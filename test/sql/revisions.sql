-- Revisions: every accepted save kept, hash-chained, immutable, readable.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
-- the revisions of a resource, without what differs between runs (times, hashes, tokens)
CREATE FUNCTION pg_temp.revs(r text) RETURNS TABLE (version bigint, content text, saved_by text,
	saved_by_name text, path text, restored_from bigint, first boolean, chained boolean, in_time_order boolean)
LANGUAGE sql AS $$
	SELECT v.version, left(v.content, 30), v.saved_by, v.saved_by_name, v.path::text, v.restored_from,
		   v.prev_hash IS NULL,
		   v.prev_hash = lag(v.hash) OVER (ORDER BY v.version),
		   v.saved_at > lag(v.saved_at) OVER (ORDER BY v.version)
	  FROM collab.revisions v WHERE v.resource_id = r ORDER BY v.version
$$;
CREATE FUNCTION pg_temp.ok(r text) RETURNS text LANGUAGE sql AS $$
	SELECT CASE WHEN ok THEN 'ok' ELSE format('bad at %s: %s', first_bad_version, problem) END
	  FROM collab.verify_history(r)
$$;

-- The hash input is fixed (docs/revisions.md): these values were computed
-- outside PostgreSQL, by scripts/verify-revisions.mjs and by hand in Python.
SELECT encode(collab.revision_hash(NULL, 'document:kat/tab:t', 1, E'\u00c4rztin: Gr\u00fc\u00dfe\nline 2',
	'u-anna', 'Dr. Anna Berg', '2026-03-01 10:00:00.123456+00', 42, 'sql', NULL), 'hex') AS kat_1;
SELECT encode(collab.revision_hash(decode('32366eacc8d18faa199f84816f22edd63692cd7dd39b86562c1b626794e7a2e7', 'hex'),
	'document:kat/tab:t', 2, '', NULL, NULL, '1969-12-31 23:59:59.5+00', NULL, 'genesis', 1), 'hex') AS kat_2;
-- the time zone of the session does not enter the hash
SET TIME ZONE 'Asia/Kolkata';
SELECT encode(collab.revision_hash(NULL, 'document:kat/tab:t', 1, E'\u00c4rztin: Gr\u00fc\u00dfe\nline 2',
	'u-anna', 'Dr. Anna Berg', '2026-03-01 15:30:00.123456+05:30', 42, 'sql', NULL), 'hex') AS kat_1_in_kolkata;
RESET TIME ZONE;
SELECT pg_temp.try($$SELECT collab.revision_hash(NULL, NULL, 1, 'x', NULL, NULL, now(), NULL, 'sql', NULL)$$);
SELECT pg_temp.try($$SELECT collab.revision_hash('\x00', 'document:a', 1, 'x', NULL, NULL, now(), NULL, 'sql', NULL)$$);
SELECT pg_temp.try($$SELECT collab.revision_hash(NULL, 'document:a', 1, 'x', NULL, NULL, 'infinity', NULL, 'sql', NULL)$$);

-- Every accepted save, by each path, adds one revision in its transaction.
SELECT collab.create_document('rv', 'Revisions', ARRAY['dx', 'notes']);
SELECT * FROM collab.history('document:rv/tab:dx');
SELECT pg_temp.ok('document:rv/tab:dx') AS verify_empty;
SELECT token AS ta FROM collab.acquire('document:rv/tab:dx', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT collab.save('document:rv/tab:dx', :ta, 'Appendicitis');
SELECT collab.save('document:rv/tab:dx', :ta, 'Appendicitis, acute', 1);
BEGIN;
SET LOCAL collab.lock_token = :ta;
UPDATE collab.resources SET content = 'Appendicitis, acute, perforated' WHERE id = 'document:rv/tab:dx';
COMMIT;
-- a title-only change is no save and adds nothing
UPDATE collab.resources SET title = 'Diagnosis' WHERE id = 'document:rv/tab:dx';
SELECT * FROM pg_temp.revs('document:rv/tab:dx');
SELECT token = :ta AS token_recorded FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx' ORDER BY version;
-- the newest revision is the resource as it is
SELECT v.version = r.version AND v.content = r.content AND v.saved_at = r.saved_at
	   AND v.saved_by = r.saved_by AND v.saved_by_name = r.saved_by_name AND v.resource_created_at = r.created_at AS newest_is_current
  FROM collab.revisions v JOIN collab.resources r ON r.id = v.resource_id
 WHERE v.resource_id = 'document:rv/tab:dx' ORDER BY v.version DESC LIMIT 1;
-- the stored hash is the hash of the stored fields
SELECT bool_and(hash = collab.revision_hash(prev_hash, resource_id, version, content, saved_by, saved_by_name,
		saved_at, token, path::text, restored_from)) AS hashes_match,
	   bool_and(octet_length(hash) = 32) AS sha256
  FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx';

-- Rejected saves add no revision: wrong token, stale base, no token, too large
SELECT count(*) AS before_rejections FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx' \gset
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:rv/tab:dx', :ta + 100000, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L, 1)', 'document:rv/tab:dx', :ta, 'x'));
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'x' WHERE id = 'document:rv/tab:dx'$$);
SET collab.max_content_size = '1kB';
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, repeat(%L, 2000))', 'document:rv/tab:dx', :ta, 'x'));
RESET collab.max_content_size;
-- a save whose transaction rolls back leaves no revision either
BEGIN;
SELECT collab.save('document:rv/tab:dx', :ta, 'rolled back');
ROLLBACK;
SELECT count(*) - :before_rejections AS added_by_rejections FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx';

-- Restoring: a save of an earlier revision's content that names it
BEGIN;
SELECT collab.save('document:rv/tab:dx', :ta, 'Appendicitis', NULL, 1) AS restored_version;
SELECT e::jsonb - 'savedAt' AS event FROM collab.pending_events() e;
COMMIT;
BEGIN;
SET LOCAL collab.lock_token = :ta;
SET LOCAL collab.restored_from = 3;
UPDATE collab.resources SET content = 'Appendicitis, acute, perforated' WHERE id = 'document:rv/tab:dx';
SELECT e::jsonb - 'savedAt' AS event FROM collab.pending_events() e;
COMMIT;
-- a save without restored_from does not carry it
BEGIN;
SELECT collab.save('document:rv/tab:dx', :ta, 'Appendicitis, acute, perforated; peritonitis');
SELECT e::jsonb ? 'restoredFrom' AS has_restored_from FROM collab.pending_events() e;
COMMIT;
SELECT * FROM pg_temp.revs('document:rv/tab:dx');
-- a restore must be what it says: an existing revision, its content unchanged
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L, NULL, 2)', 'document:rv/tab:dx', :ta, 'edited after restore'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L, NULL, 99)', 'document:rv/tab:dx', :ta, 'Appendicitis'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L, NULL, -1)', 'document:rv/tab:dx', :ta, 'Appendicitis'));
SELECT pg_temp.try(format($$SET LOCAL collab.lock_token = %s; SET LOCAL collab.restored_from = 'two';
	UPDATE collab.resources SET content = 'Appendicitis' WHERE id = 'document:rv/tab:dx'$$, :ta));
SELECT pg_temp.try(format('SELECT collab._save(%L, %s, %L, NULL, NULL, %L)', 'document:rv/tab:dx', :ta, 'x', 'carrier pigeon'));
SELECT max(version) AS still_at FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx';
-- the document lock covers its tabs: a save of a tab under it is that tab's revision
SELECT collab.release(:ta);
SELECT token AS td FROM collab.acquire('document:rv', 'u-chief', 'Dr. Chief', 'c3') \gset
SELECT collab.save('document:rv/tab:notes', :td, 'Signed off');
SELECT * FROM pg_temp.revs('document:rv/tab:notes');
SELECT collab.release(:td);

-- Reading: history (newest first, no content), revision, verification
SELECT version, saved_by, saved_by_name, size, path, restored_from, length(hash) AS hash_hex
  FROM collab.history('document:rv/tab:dx');
SELECT resource_id, version, content, saved_by_name, path, restored_from, length(prev_hash) AS prev_hex, size,
	   token = :ta AS token_shown
  FROM collab.revision('document:rv/tab:dx', 4);
SELECT * FROM collab.revision('document:rv/tab:dx', 1) r
 WHERE r.hash <> (SELECT encode(hash, 'hex') FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx' AND version = 1);
SELECT ok, first_bad_version, problem, revisions, purged_through,
	   head_hash = (SELECT hash FROM collab.history('document:rv/tab:dx', NULL, 1)) AS head_is_newest
  FROM collab.verify_history('document:rv/tab:dx');
-- bad input
SELECT pg_temp.try($$SELECT * FROM collab.history('document:nope')$$);
SELECT pg_temp.try($$SELECT * FROM collab.history('not an id')$$);
SELECT pg_temp.try($$SELECT * FROM collab.history(NULL)$$);
SELECT pg_temp.try($$SELECT * FROM collab.revision('document:rv/tab:dx', 99)$$);
SELECT pg_temp.try($$SELECT * FROM collab.revision('document:rv/tab:dx', -1)$$);
SELECT pg_temp.try($$SELECT * FROM collab.revision('document:rv/tab:dx', NULL)$$);
SELECT pg_temp.try($$SELECT * FROM collab.revision('document:nope', 1)$$);
SELECT pg_temp.try($$SELECT * FROM collab.verify_history('document:nope')$$);
SELECT pg_temp.try($$SELECT * FROM collab.verify_history('bad id')$$);

-- Paging: versions below before, at most limit of them (default 50, max 500)
SELECT collab.create_document('rvpage', NULL, ARRAY['t']);
SELECT token AS tp FROM collab.acquire('document:rvpage/tab:t', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT count(*) AS saves FROM generate_series(1, 120) i, LATERAL collab.save('document:rvpage/tab:t', :tp, 'text ' || i) s;
SELECT count(*), max(version), min(version) FROM collab.history('document:rvpage/tab:t');
SELECT count(*), max(version), min(version) FROM collab.history('document:rvpage/tab:t', 71);
SELECT array_agg(version) FROM collab.history('document:rvpage/tab:t', 5, 10);
SELECT array_agg(version) FROM collab.history('document:rvpage/tab:t', 1);
SELECT array_agg(version) FROM collab.history('document:rvpage/tab:t', 1000000000000, 3);
SELECT count(*) FROM collab.history('document:rvpage/tab:t', NULL, 500);
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvpage/tab:t', NULL, 0)$$);
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvpage/tab:t', NULL, -5)$$);
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvpage/tab:t', NULL, 501)$$);
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvpage/tab:t', NULL, 2147483647)$$);
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvpage/tab:t', 0)$$);
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvpage/tab:t', -9223372036854775808)$$);
SELECT pg_temp.ok('document:rvpage/tab:t') AS verify_120;
SELECT collab.release(:tp);

-- Revisions are immutable, for the owner (here a superuser) too
SELECT pg_temp.try($$UPDATE collab.revisions SET content = 'forged' WHERE resource_id = 'document:rv/tab:dx'$$);
SELECT pg_temp.try($$DELETE FROM collab.revisions WHERE resource_id = 'document:rv/tab:dx'$$);
SELECT pg_temp.try($$TRUNCATE collab.revisions$$);
SELECT pg_temp.try($$UPDATE collab.revision_purges SET hash = '\x00'$$);
SELECT pg_temp.try($$DELETE FROM collab.revision_purges$$);
SELECT pg_temp.try($$TRUNCATE collab.revision_purges$$);
SELECT pg_temp.ok('document:rv/tab:dx') AS still_ok;

-- Tampering past the triggers (a superuser with session_replication_role =
-- replica) is found by verify_history, which names the first bad version.
SELECT collab.create_document('rvt', NULL, ARRAY['content', 'meta', 'prev', 'gap', 'head', 'tail']);
CREATE FUNCTION pg_temp.fill(r text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	t bigint;
BEGIN
	SELECT token INTO t FROM collab.acquire(r, 'u-anna', 'Dr. Anna Berg', 'c-tamper');
	FOR i IN 1..4 LOOP
		PERFORM collab.save(r, t, 'version ' || i);
	END LOOP;
	PERFORM collab.release(t);
END
$$;
SELECT pg_temp.fill('document:rvt/tab:' || t) FROM unnest(ARRAY['content', 'meta', 'prev', 'gap', 'head', 'tail']) t;
SET session_replication_role = replica;
UPDATE collab.revisions SET content = 'version 2, quietly amended' WHERE resource_id = 'document:rvt/tab:content' AND version = 2;
UPDATE collab.revisions SET saved_by_name = 'Dr. Nobody' WHERE resource_id = 'document:rvt/tab:meta' AND version = 3;
UPDATE collab.revisions SET prev_hash = sha256('x') WHERE resource_id = 'document:rvt/tab:prev' AND version = 2;
DELETE FROM collab.revisions WHERE resource_id = 'document:rvt/tab:gap' AND version = 2;
UPDATE collab.resources SET content = 'edited without a lock' WHERE id = 'document:rvt/tab:head';
DELETE FROM collab.revisions WHERE resource_id = 'document:rvt/tab:tail' AND version = 4;
RESET session_replication_role;
SELECT t AS tab, pg_temp.ok('document:rvt/tab:' || t) AS verify
  FROM unnest(ARRAY['content', 'meta', 'prev', 'gap', 'head', 'tail']) t;

-- The purge: superuser only, drops old revisions but each resource's newest,
-- and the chains still verify from the anchor it leaves.  Chains that do
-- not verify up to the cut are kept whole, with a warning.
SELECT pg_temp.try($$SELECT collab.purge_revisions(NULL)$$);
SELECT pg_temp.try($$SELECT collab.purge_revisions('infinity')$$);
SELECT collab.purge_revisions('2000-01-01') AS nothing_that_old;
-- a cut in the middle of a history: versions saved before version 60's time
SELECT saved_at AS cut FROM collab.revisions WHERE resource_id = 'document:rvpage/tab:t' AND version = 60 \gset
SELECT collab.purge_revisions(:'cut') >= 59 AS cut_in_the_middle;
SELECT min(version), max(version), count(*) FROM collab.revisions WHERE resource_id = 'document:rvpage/tab:t';
SELECT ok, revisions, purged_through FROM collab.verify_history('document:rvpage/tab:t');
SELECT array_agg(version) FROM collab.history('document:rvpage/tab:t', 62);
CREATE TEMP TABLE tampered AS
	SELECT 'document:rvt/tab:' || t AS id FROM unnest(ARRAY['content', 'meta', 'prev', 'gap']) t;
SELECT sum(n - 1) AS droppable FROM (
	SELECT count(*) AS n FROM collab.revisions WHERE resource_id NOT IN (SELECT id FROM tampered)
	 GROUP BY resource_id, resource_created_at) x \gset
SELECT collab.purge_revisions(clock_timestamp()) = :droppable AS dropped_all_but_newest;
SELECT resource_id IN (SELECT id FROM tampered) AS tampered, count(*) = count(DISTINCT (resource_id, resource_created_at)) AS one_left_each
  FROM collab.revisions GROUP BY 1 ORDER BY 1;
SELECT resource_id, count(*) AS kept FROM collab.revisions WHERE resource_id IN (SELECT id FROM tampered)
 GROUP BY 1 ORDER BY 1;
SELECT version, path, restored_from FROM collab.history('document:rv/tab:dx');
SELECT ok, first_bad_version, revisions, purged_through FROM collab.verify_history('document:rv/tab:dx');
SELECT through_version, revisions, octet_length(hash) AS hash_bytes, purged_by
  FROM collab.revision_purges WHERE resource_id = 'document:rv/tab:dx';
SELECT pg_temp.try($$SELECT * FROM collab.revision('document:rv/tab:dx', 2)$$);
-- the anchor is the hash of the last revision dropped, the prev_hash of the first kept
SELECT p.hash = v.prev_hash AS anchored
  FROM collab.revision_purges p JOIN collab.revisions v USING (resource_id, resource_created_at)
 WHERE p.resource_id = 'document:rv/tab:dx';
-- saves after the purge chain to what it kept; a later purge moves the anchor
SELECT token AS ta FROM collab.acquire('document:rv/tab:dx', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT collab.save('document:rv/tab:dx', :ta, 'after the purge');
SELECT collab.save('document:rv/tab:dx', :ta, 'after the purge, again');
SELECT ok, revisions, purged_through FROM collab.verify_history('document:rv/tab:dx');
SELECT collab.purge_revisions(clock_timestamp()) = 2 AS purged_again;
SELECT ok, revisions, purged_through FROM collab.verify_history('document:rv/tab:dx');
SELECT through_version, revisions FROM collab.revision_purges WHERE resource_id = 'document:rv/tab:dx' ORDER BY 1;
-- what the purge could not hide: every tampered chain still fails
SELECT t AS tab, pg_temp.ok('document:rvt/tab:' || t) AS verify
  FROM unnest(ARRAY['content', 'meta', 'prev', 'gap', 'head', 'tail']) t;
-- a forged anchor is found too
SET session_replication_role = replica;
UPDATE collab.revision_purges SET hash = sha256('forged') WHERE resource_id = 'document:rv/tab:dx';
RESET session_replication_role;
SELECT pg_temp.ok('document:rv/tab:dx') AS forged_anchor;
SELECT collab.release(:ta);

-- A deleted resource keeps its revisions; one created again under the same
-- id starts a chain of its own.
SELECT collab.create_document('rvdel', NULL, ARRAY['t']);
SELECT token AS tx FROM collab.acquire('document:rvdel/tab:t', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT collab.save('document:rvdel/tab:t', :tx, 'first life');
DELETE FROM collab.resources WHERE id = 'document:rvdel';
SELECT count(*) AS kept_after_delete FROM collab.revisions WHERE resource_id = 'document:rvdel/tab:t';
SELECT pg_temp.try($$SELECT * FROM collab.history('document:rvdel/tab:t')$$);
SELECT collab.create_document('rvdel', NULL, ARRAY['t']);
SELECT count(*) AS new_history FROM collab.history('document:rvdel/tab:t');
SELECT token AS tx FROM collab.acquire('document:rvdel/tab:t', 'u-ben', 'Dr. Ben Kaya', 'c2') \gset
SELECT collab.save('document:rvdel/tab:t', :tx, 'second life');
SELECT version, saved_by_name FROM collab.history('document:rvdel/tab:t');
SELECT pg_temp.ok('document:rvdel/tab:t') AS verify_second_life;
SELECT count(*) AS both_lives FROM collab.revisions WHERE resource_id = 'document:rvdel/tab:t';
SELECT collab.release(:tx);

-- Content large enough to be compressed is compressed once per save: the
-- resource's row and its revision store the same bytes, and the hash is over
-- the content as saved.  By collab.save(), a guarded UPDATE, a restore, a
-- save that presents a token without changing the content, and content that
-- does not compress.
SELECT collab.create_document('rvbig', NULL, ARRAY['t']);
SELECT token AS tb FROM collab.acquire('document:rvbig/tab:t', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT collab.save('document:rvbig/tab:t', :tb, repeat('Laparoscopic appendectomy, no complications. ', 100));
BEGIN;
SET LOCAL collab.lock_token = :tb;
UPDATE collab.resources SET content = repeat('Wound clean, sutures removed on day 7. ', 120) WHERE id = 'document:rvbig/tab:t';
COMMIT;
SELECT collab.save('document:rvbig/tab:t', :tb, repeat('Laparoscopic appendectomy, no complications. ', 100), NULL, 1);
BEGIN;
SET LOCAL collab.lock_token = :tb;
UPDATE collab.resources SET title = 'Procedure' WHERE id = 'document:rvbig/tab:t';
COMMIT;
SELECT collab.save('document:rvbig/tab:t', :tb, (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 200) g));
SELECT v.version, octet_length(v.content) AS bytes, v.restored_from,
	   pg_column_size(v.content) < octet_length(v.content) AS compressed,
	   v.content = r.content AS is_current
  FROM collab.revisions v JOIN collab.resources r ON r.id = v.resource_id
 WHERE v.resource_id = 'document:rvbig/tab:t' ORDER BY v.version;
-- the row stores its revision's bytes: the current version, then saves of
-- the earlier versions' contents
CREATE TEMP TABLE rvbig_rows AS SELECT 0 AS version, ''::text AS compression, 0 AS size WHERE false;
DO $$
DECLARE
	t bigint := (SELECT token FROM collab.leases WHERE resource_id = 'document:rvbig/tab:t');
	c text;
BEGIN
	INSERT INTO rvbig_rows SELECT r.version, pg_column_compression(r.content), pg_column_size(r.content)
	  FROM collab.resources r WHERE r.id = 'document:rvbig/tab:t';
	FOR c IN SELECT v.content FROM collab.revisions v WHERE v.resource_id = 'document:rvbig/tab:t'
			  AND v.version < 5 ORDER BY v.version LOOP
		PERFORM collab.save('document:rvbig/tab:t', t, c);
		INSERT INTO rvbig_rows SELECT r.version, pg_column_compression(r.content), pg_column_size(r.content)
		  FROM collab.resources r WHERE r.id = 'document:rvbig/tab:t';
	END LOOP;
END
$$;
SELECT v.version, coalesce(pg_column_compression(v.content), 'none') = coalesce(w.compression, 'none')
		  AND pg_column_size(v.content) = w.size AS row_stores_the_revisions_bytes
  FROM collab.revisions v JOIN rvbig_rows w USING (version)
 WHERE v.resource_id = 'document:rvbig/tab:t' ORDER BY v.version;
SELECT bool_and(hash = collab.revision_hash(prev_hash, resource_id, version, content, saved_by, saved_by_name,
		saved_at, token, path::text, restored_from)) AS hashes_match
  FROM collab.revisions WHERE resource_id = 'document:rvbig/tab:t';
SELECT pg_temp.ok('document:rvbig/tab:t') AS verify_big;
-- a restore of large content must still be exact
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, repeat(%L, 99), NULL, 1)', 'document:rvbig/tab:t', :tb,
	'Laparoscopic appendectomy, no complications. '));
SELECT collab.release(:tb);

-- A save chains to the resource's newest revision, also when the one before
-- its version is missing (the row's version changed behind the guard): the
-- gap is what verify_history reports.
SELECT collab.create_document('rvgap', NULL, ARRAY['t']);
SELECT token AS tg FROM collab.acquire('document:rvgap/tab:t', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT collab.save('document:rvgap/tab:t', :tg, 'one');
SELECT collab.save('document:rvgap/tab:t', :tg, 'two');
SET session_replication_role = replica;
UPDATE collab.resources SET version = 5 WHERE id = 'document:rvgap/tab:t';
RESET session_replication_role;
SELECT collab.save('document:rvgap/tab:t', :tg, 'six');
SELECT v.prev_hash = (SELECT w.hash FROM collab.revisions w
						WHERE w.resource_id = v.resource_id AND w.version = 2) AS chained_to_newest
  FROM collab.revisions v WHERE v.resource_id = 'document:rvgap/tab:t' AND v.version = 6;
SELECT pg_temp.ok('document:rvgap/tab:t') AS verify_gap;
SELECT collab.release(:tg);

-- The live lease of another resource is no lease for this one: the save is
-- refused, and the other lease is not renewed by it.
SELECT collab.create_document('rvelse', NULL, ARRAY['a', 'b', 'ab']);
SELECT token AS te FROM collab.acquire('document:rvelse/tab:a', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT renewed_at AS renewed_before FROM collab.leases WHERE token = :te \gset
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:rvelse/tab:b', :te, 'not mine'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:rvelse/tab:ab', :te, 'not mine'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:rvelse', :te, 'not mine'));
SELECT pg_temp.try(format($$SET LOCAL collab.lock_token = %s;
	UPDATE collab.resources SET content = 'not mine' WHERE id = 'document:rvelse/tab:b'$$, :te));
SELECT renewed_at = :'renewed_before' AS not_renewed FROM collab.leases WHERE token = :te;
SELECT count(*) AS revisions_elsewhere FROM collab.revisions WHERE resource_id LIKE 'document:rvelse%';
SELECT collab.release(:te);

-- The WebSocket path: ws_save records path ws; doc:history and doc:revision
-- read what the user may view, paged, and the access trail records it.
SELECT collab.create_document('rvws', NULL, ARRAY['t']);
SELECT collab.grant('document:rvws', 'user:u-anna', 'edit');
SELECT collab.ws_connect('rv-w1', 'collab worker 1', 1, 'u-anna', 'Dr. Anna Berg', '10.0.0.1', NULL);
SELECT collab.ws_connect('rv-w2', 'collab worker 1', 1, 'u-ben', 'Dr. Ben Kaya', '10.0.0.2', NULL);
SELECT count(*) FROM collab.ws_join('rv-w1', 'document:rvws/tab:t', 'editor');
SELECT collab.ws_save('rv-w1', 'document:rvws/tab:t', 'ws one');
SELECT collab.ws_save('rv-w1', 'document:rvws/tab:t', 'ws two', 1);
SELECT collab.ws_save('rv-w1', 'document:rvws/tab:t', 'ws one', NULL, NULL, 1);
SELECT * FROM pg_temp.revs('document:rvws/tab:t');
SELECT jsonb_path_query(collab.ws_history('rv-w1', 'document:rvws/tab:t'), '$.ack') #- '{revisions,0,savedAt}'
	#- '{revisions,1,savedAt}' #- '{revisions,2,savedAt}' AS history_ack;
SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, 2)->'ack'->'nextBefore' AS next_before,
	   jsonb_array_length(collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, 2)->'ack'->'revisions') AS n;
SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', 2, 2)->'ack' #- '{revisions,0,savedAt}' AS last_page;
SELECT (collab.ws_revision('rv-w1', 'document:rvws/tab:t', 3)->'ack') #- '{revision,savedAt}' AS revision_ack;
SELECT (collab.ws_revision('rv-w1', 'document:rvws/tab:t', 3)->'ack'->'revision'->>'savedAt') =
	   collab._ts((SELECT saved_at FROM collab.revisions WHERE resource_id = 'document:rvws/tab:t' AND version = 3)) AS saved_at_ms;
-- bad versions and limits (any bigint reaches collab._history_limit()), missing resources
SELECT pg_temp.try($$SELECT collab.ws_revision('rv-w1', 'document:rvws/tab:t', 9)$$);
SELECT pg_temp.try($$SELECT collab.ws_revision('rv-w1', 'document:rvws/tab:t', -1)$$);
SELECT pg_temp.try($$SELECT collab.ws_revision('rv-w1', 'document:rvws/tab:t', NULL)$$);
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, -1)$$);
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, 0)$$);
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, 501)$$);
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, 9223372036854775807)$$);
SELECT jsonb_array_length(collab.ws_history('rv-w1', 'document:rvws/tab:t', NULL, 500)->'ack'->'revisions') AS limit_500;
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'document:rvws/tab:t', -3)$$);
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'document:nope')$$);
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w1', 'no id at all')$$);
-- without the view permission: exactly the answers of a missing resource,
-- whatever else is wrong with the request
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w2', 'document:rvws/tab:t')$$) AS forbidden,
	   pg_temp.try($$SELECT collab.ws_history('rv-w2', 'document:rvws/tab:none')$$) AS missing;
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w2', 'document:rvws/tab:t', -3, 100000)$$)
	 = pg_temp.try($$SELECT collab.ws_history('rv-w2', 'document:rvws/tab:t')$$) AS bad_paging_too;
SELECT pg_temp.try($$SELECT collab.ws_revision('rv-w2', 'document:rvws/tab:t', 1)$$) AS forbidden,
	   pg_temp.try($$SELECT collab.ws_revision('rv-w2', 'document:rvws/tab:none', 1)$$) AS missing;
-- with it, the room need not be joined; a grant on the document covers its tabs
SELECT collab.grant('document:rvws', 'user:u-ben', 'view');
SELECT jsonb_array_length(collab.ws_history('rv-w2', 'document:rvws/tab:t')->'ack'->'revisions') AS viewer_not_joined,
	   collab.ws_revision('rv-w2', 'document:rvws/tab:t', 2)->'ack'->'revision'->>'content' AS content;
SELECT count(*) FROM collab.ws_presence WHERE connection_id = 'rv-w2';
-- a revoked session reads nothing
SELECT collab.revoke_sessions('u-ben', 'lost badge');
SELECT pg_temp.try($$SELECT collab.ws_history('rv-w2', 'document:rvws/tab:t')$$);
DELETE FROM collab.session_revocations WHERE user_id = 'u-ben';
-- every read and refusal in the trail, with the client's address; a read
-- that failed after the decision (no revision 9, a bad limit) read nothing
-- and left nothing
SELECT action, outcome, user_id, address, resource_id, detail - 'connectionId' AS detail,
	   detail->>'connectionId' AS conn
  FROM collab.access_log WHERE action IN ('history', 'revision') AND resource_id LIKE 'document:rvws%'
 ORDER BY at;
SELECT collab.ws_disconnect('rv-w1');
SELECT collab.ws_disconnect('rv-w2');
