-- Guarded saves: only the live lock's token writes content.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ' (' || SQLSTATE || '): ' || SQLERRM;
END
$$;
CREATE FUNCTION pg_temp.state(r text) RETURNS TABLE (content text, version bigint, saved_by text, saved_by_name text)
LANGUAGE sql AS $$ SELECT left(content, 40), version, saved_by, saved_by_name FROM collab.resources WHERE id = r $$;

SELECT collab.create_document('77', 'Report 77', ARRAY['diagnosis', 'notes']);
SELECT collab.create_document('78');
SELECT token AS ta FROM collab.acquire('document:77/tab:diagnosis', 'u-anna', 'Dr. Anna Berg', 'c1') \gset
SELECT token AS tn FROM collab.acquire('document:77/tab:notes', 'u-ben', 'Dr. Ben Kaya', 'c2') \gset

-- a save with the live token: version 1, saver recorded
SELECT collab.save('document:77/tab:diagnosis', :ta, 'Appendicitis, acute');
SELECT * FROM pg_temp.state('document:77/tab:diagnosis');
-- with the current base version
SELECT collab.save('document:77/tab:diagnosis', :ta, 'Appendicitis, acute, perforated', 1);
-- a save renews the lease
UPDATE collab.leases SET expires_at = clock_timestamp() + interval '1 second' WHERE token = :ta;
SELECT collab.save('document:77/tab:diagnosis', :ta, 'Appendicitis, acute, perforated.');
SELECT expires_at > clock_timestamp() + interval '4 minutes' AS renewed FROM collab.locks
 WHERE resource_id = 'document:77/tab:diagnosis';
-- unchanged content with a valid token is still a save
SELECT collab.save('document:77/tab:diagnosis', :ta, 'Appendicitis, acute, perforated.');

-- every rejected save names its code and changes nothing
SELECT pg_temp.try(format('SELECT collab.save(%L, NULL, %L)', 'document:77/tab:diagnosis', 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:77/tab:diagnosis', :tn, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:77/tab:diagnosis', 999999, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L, 1)', 'document:77/tab:diagnosis', :ta, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L, 99)', 'document:77/tab:diagnosis', :ta, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, NULL)', 'document:77/tab:diagnosis', :ta));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:nope', :ta, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'not an id', :ta, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:77', :ta, 'x'));
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:78', :ta, 'x'));
SELECT * FROM pg_temp.state('document:77/tab:diagnosis');
SELECT content, version FROM collab.resources WHERE id IN ('document:77', 'document:78') ORDER BY id;

-- content larger than collab.max_content_size
SET collab.max_content_size = '1kB';
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, repeat(%L, 1025))', 'document:77/tab:diagnosis', :ta, 'x'));
SELECT collab.save('document:77/tab:diagnosis', :ta, repeat('y', 1024)) AS at_limit;
RESET collab.max_content_size;
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, repeat(%L, 5 * 1024 * 1024))', 'document:77/tab:diagnosis', :ta, 'x'));

-- a plain UPDATE is guarded the same way
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'sneaky' WHERE id = 'document:77/tab:diagnosis'$$);
SELECT pg_temp.try(format($$SET LOCAL collab.lock_token = %s; UPDATE collab.resources SET content = 'sneaky' WHERE id = 'document:77/tab:diagnosis'$$, :tn));
SELECT pg_temp.try($$SET LOCAL collab.lock_token = 'abc'; UPDATE collab.resources SET content = 'sneaky' WHERE id = 'document:77/tab:diagnosis'$$);
SELECT pg_temp.try($$UPDATE collab.resources SET version = 1000 WHERE id = 'document:77/tab:diagnosis'$$);
SELECT content = repeat('y', 1024) AS unchanged, version FROM collab.resources WHERE id = 'document:77/tab:diagnosis';
BEGIN;
SET LOCAL collab.lock_token = :ta;
SET LOCAL collab.base_version = 5;
UPDATE collab.resources SET content = 'Via plain UPDATE', saved_by = 'someone-else' WHERE id = 'document:77/tab:diagnosis';
COMMIT;
SELECT * FROM pg_temp.state('document:77/tab:diagnosis');
BEGIN;
SET LOCAL collab.lock_token = :ta;
SET LOCAL collab.base_version = 5;
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'stale base' WHERE id = 'document:77/tab:diagnosis'$$);
ROLLBACK;

-- the document lock covers its tabs, and blocks nobody else's tab... because
-- no tab lock may exist under it: release the tab locks first
SELECT collab.release(:ta);
SELECT collab.release(:tn);
SELECT token AS td FROM collab.acquire('document:77', 'u-chief', 'Dr. Chief', 'c3') \gset
SELECT collab.save('document:77/tab:notes', :td, 'Signed off');
SELECT collab.save('document:77', :td, 'Report summary');
SELECT id, version, saved_by_name FROM collab.resources WHERE id LIKE 'document:77%' ORDER BY id;

-- a released token no longer writes
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:77/tab:diagnosis', :ta, 'late'));
-- an expired token is reported as expired, before and after the sweep
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second' WHERE token = :td;
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:77/tab:notes', :td, 'late'));
SELECT count(*) AS swept FROM collab.sweep();
SELECT pg_temp.try(format('SELECT collab.save(%L, %s, %L)', 'document:77/tab:notes', :td, 'late'));
SELECT content, version FROM collab.resources WHERE id = 'document:77/tab:notes';

-- superusers are guarded too
SELECT pg_temp.try($$UPDATE collab.resources SET content = 'root' WHERE id = 'document:77'$$);
