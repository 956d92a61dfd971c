-- Presence rows: unlogged, no foreign keys; leaves write no WAL, joins only their access-trail entry,
-- and the triggers keep the rows consistent with connections and resources.
\set VERBOSITY terse
SELECT collab.create_document('pr', NULL, ARRAY['a', 'b']);
-- every user may edit (access control is tested in access.sql)
SELECT collab.grant('document:pr', '*', 'edit');
SELECT collab.ws_connect('pr-c1', 'collab worker 1', 1, 'u1', 'Ann', NULL, NULL);
SELECT collab.ws_connect('pr-c2', 'collab worker 1', 1, 'u2', 'Bob', NULL, NULL);

-- and the tables that churn keep their pages when vacuumed (docs/design.md)
SELECT relname, relpersistence, 'vacuum_truncate=off' = ANY (reloptions) AS keeps_pages FROM pg_class
 WHERE oid IN ('collab.ws_presence'::regclass, 'collab.ws_connections'::regclass,
			   'collab.ws_lock_requests'::regclass, 'collab.leases'::regclass)
 ORDER BY relname;

-- (a first call reads the catalogs, whose pages it may prune: a WAL record)
SELECT count(*) FROM collab.ws_join('pr-c1', 'document:pr/tab:b', 'viewer');
SELECT collab.ws_leave('pr-c1', 'document:pr/tab:b');

CREATE FUNCTION pg_temp.wal_records(q text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	l text;
BEGIN
	FOR l IN EXECUTE 'EXPLAIN (ANALYZE, WAL, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
		IF l LIKE '%WAL: records=%' THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;
-- a viewer's join writes one logged row, its entry in the access trail (the
-- worker sends the content once that is flushed); its presence row is
-- unlogged, and its leave writes no WAL record (no "WAL:" line); an
-- editor's join also writes its lease
SELECT count(*) AS trail_before FROM collab.access_entries WHERE action = 'join' \gset
SELECT pg_temp.wal_records($$SELECT collab.ws_join('pr-c1', 'document:pr/tab:a', 'viewer')$$) AS viewer_join_wrote_wal;
SELECT count(*) - :trail_before AS its_trail_entries FROM collab.access_entries WHERE action = 'join';
EXPLAIN (ANALYZE, WAL, COSTS OFF, TIMING OFF, SUMMARY OFF)
SELECT collab.ws_leave('pr-c1', 'document:pr/tab:a');
SELECT count(*) FROM collab.ws_join('pr-c2', 'document:pr/tab:b', 'viewer');
SELECT pg_temp.wal_records($$SELECT collab.ws_join('pr-c1', 'document:pr/tab:a', 'editor')$$) AS editor_join_wrote_wal;
SELECT resource_id, connection_id, username, role FROM collab.presence
 WHERE resource_id LIKE 'document:pr%' ORDER BY 1, 2;

-- lock:release and lock:acquire change the role and its member of user_json
-- in one statement, without the trigger: the JSON must be what the trigger
-- builds (an UPDATE that leaves user_json as it is runs the trigger)
CREATE FUNCTION pg_temp.user_json_role(p_conn text, p_rid text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	v_before text;
	v_after text;
BEGIN
	SELECT user_json INTO v_before FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = p_rid;
	UPDATE collab.ws_presence SET role = role WHERE connection_id = p_conn AND resource_id = p_rid;
	SELECT user_json INTO v_after FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = p_rid;
	RETURN (v_before::jsonb->>'role') ||
		CASE WHEN v_before = v_after THEN ', as the trigger builds it' ELSE ', not as built: ' || v_before END;
END
$$;
SELECT collab.ws_release('pr-c1', 'document:pr/tab:a');
SELECT role, pg_temp.user_json_role('pr-c1', 'document:pr/tab:a') FROM collab.presence
 WHERE connection_id = 'pr-c1' AND resource_id = 'document:pr/tab:a';
SELECT collab.ws_acquire('pr-c1', 'document:pr/tab:a')::jsonb->'ack'->'ok' AS acquired;
SELECT role, pg_temp.user_json_role('pr-c1', 'document:pr/tab:a') FROM collab.presence
 WHERE connection_id = 'pr-c1' AND resource_id = 'document:pr/tab:a';
-- a role is editor or viewer, and nothing else
UPDATE collab.ws_presence SET role = 'owner' WHERE connection_id = 'pr-c1' AND resource_id = 'document:pr/tab:a';
SELECT pg_typeof(role) AS view_role_type FROM collab.presence LIMIT 1;
-- a user_json in another format is left alone by the role change, and the
-- trigger then builds it again
UPDATE collab.ws_presence SET user_json = replace(user_json, '": "', '":"')
 WHERE connection_id = 'pr-c1' AND resource_id = 'document:pr/tab:a';
SELECT collab.ws_release('pr-c1', 'document:pr/tab:a');
SELECT role, pg_temp.user_json_role('pr-c1', 'document:pr/tab:a') FROM collab.presence
 WHERE connection_id = 'pr-c1' AND resource_id = 'document:pr/tab:a';
SELECT collab.ws_acquire('pr-c1', 'document:pr/tab:a')::jsonb->'ack'->'ok' AS acquired;

-- a re-join in the same role publishes nothing; a change of role publishes
-- presence:joined with the new role
BEGIN;
SELECT count(*) FROM collab.ws_join('pr-c2', 'document:pr/tab:b', 'viewer');
SELECT count(*) FROM collab.ws_join('pr-c2', 'document:pr/tab:b', 'viewer');
SELECT count(*) AS events_of_two_rejoins FROM collab.pending_events();
SELECT count(*) FROM collab.ws_join('pr-c2', 'document:pr/tab:b', 'editor');
SELECT e::jsonb->>'event' AS event, e::jsonb->'user'->>'role' AS role FROM collab.pending_events() e ORDER BY 1;
ROLLBACK;

-- a connection's rows go with it
DELETE FROM collab.ws_connections WHERE connection_id = 'pr-c2';
SELECT resource_id, connection_id FROM collab.presence WHERE resource_id LIKE 'document:pr%' ORDER BY 1, 2;

-- a deleted resource's rows go with it, a document's tabs' too
SELECT collab.ws_connect('pr-c2', 'collab worker 1', 1, 'u2', 'Bob', NULL, NULL);
SELECT count(*) FROM collab.ws_join('pr-c2', 'document:pr/tab:b', 'viewer');
SELECT count(*) FROM collab.ws_join('pr-c2', 'document:pr', 'viewer');
DELETE FROM collab.resources WHERE id = 'document:pr/tab:b';
SELECT resource_id, connection_id FROM collab.presence WHERE resource_id LIKE 'document:pr%' ORDER BY 1, 2;
DELETE FROM collab.resources WHERE id = 'document:pr';
SELECT count(*) AS rows_left FROM collab.presence WHERE resource_id LIKE 'document:pr%';
SELECT count(*) AS leases_left FROM collab.leases WHERE resource_id LIKE 'document:pr%';

-- joining a resource that does not exist: nothing inserted
SELECT collab.ws_join('pr-c1', 'document:pr/tab:a', 'viewer');
SELECT count(*) FROM collab.ws_presence WHERE connection_id IN ('pr-c1', 'pr-c2');

SELECT collab.ws_disconnect('pr-c1');
SELECT collab.ws_disconnect('pr-c2');
