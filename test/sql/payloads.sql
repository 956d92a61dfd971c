-- The builders of every payload (src/payloads.c), as the PL/pgSQL functions
-- call them, and the stored PresenceUser that lock decisions rewrite.
\set VERBOSITY terse

-- times: UTC with milliseconds, whatever the session's TimeZone
SELECT collab._ts('2026-01-02 03:04:05.678901+00');
SET TimeZone = 'Asia/Tokyo';
SELECT collab._ts('2026-01-02 03:04:05.678901+00');
RESET TimeZone;
SELECT collab._ts(NULL) IS NULL AS null_time;

-- UserRef, with what JSON must escape
SELECT collab._user_ref('u1', 'Ann "A." \ Berg');
-- LockInfo: the token only when one is given; no lease, no object
SELECT collab._lock_info('document:p/tab:a', 'u1', 'Ann', '2026-01-02 03:04:05+00', '2026-01-02 03:09:05+00');
SELECT collab._lock_info('document:p/tab:a', 'u1', 'Ann', '2026-01-02 03:04:05+00', '2026-01-02 03:09:05+00', 42);
SELECT collab._lock_info(NULL, NULL, NULL, NULL, NULL) IS NULL AS no_lease;
-- PresenceUser, as stored text
SELECT collab._presence_user('u1', 'Ann', 'c1', 'viewer', '2026-01-02 03:04:05+00', 'document:p');
SELECT collab._user_ref(NULL, 'Ann');

-- the stored PresenceUser is the builder's, and a role change keeps it so
SELECT collab.create_document('pl', NULL, ARRAY['a']);
SELECT collab.grant('document:pl', '*', 'edit');
SELECT collab.ws_connect('pl-c1', 'collab worker 1', 1, 'u1', 'Ann', NULL, NULL);
SELECT count(*) FROM collab.ws_join('pl-c1', 'document:pl/tab:a', 'viewer');
CREATE FUNCTION pg_temp.as_built(p_conn text, p_rid text) RETURNS text LANGUAGE sql AS $$
	SELECT role || CASE WHEN user_json = collab._presence_user(user_id, username, connection_id, role, joined_at, resource_id)
		THEN ', as built' ELSE ', not as built' END
	  FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = p_rid
$$;
SELECT pg_temp.as_built('pl-c1', 'document:pl/tab:a');
SELECT collab.ws_acquire('pl-c1', 'document:pl/tab:a')::jsonb->'ack'->'ok' AS acquired;
SELECT pg_temp.as_built('pl-c1', 'document:pl/tab:a');
-- stored in another format (jsonb's), the role change leaves the text
-- alone and the trigger builds it again
UPDATE collab.ws_presence SET user_json = user_json::jsonb::text
 WHERE connection_id = 'pl-c1' AND resource_id = 'document:pl/tab:a';
SELECT pg_temp.as_built('pl-c1', 'document:pl/tab:a'), user_json LIKE '%"role": "editor"%' AS jsonb_format
  FROM collab.ws_presence WHERE connection_id = 'pl-c1' AND resource_id = 'document:pl/tab:a';
SELECT collab.ws_release('pl-c1', 'document:pl/tab:a');
SELECT pg_temp.as_built('pl-c1', 'document:pl/tab:a');

-- the events of the PL/pgSQL functions carry the stored PresenceUser
BEGIN;
SELECT collab.ws_leave('pl-c1', 'document:pl/tab:a');
SELECT e::jsonb - 'user' AS event,
	   (e::jsonb->'user') = (collab._presence_user('u1', 'Ann', 'pl-c1', 'viewer', (e::jsonb->'user'->>'joinedAt')::timestamptz, 'document:pl/tab:a'))::jsonb AS user_as_built
  FROM collab.pending_events() e;
ROLLBACK;

SELECT collab.ws_disconnect('pl-c1');
DELETE FROM collab.resources WHERE id = 'document:pl';
