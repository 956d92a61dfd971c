-- The holder's grace: a connection lost uncleanly is detached (collab.ws_detach),
-- its leases suspended; it returns (collab.ws_resume), its user takes the lock
-- over from a new connection, or the sweep ends the grace.
\set VERBOSITY terse
SET client_min_messages = warning;

-- the events this transaction will publish about this test's documents
-- (a sweep also expires what other tests left), without times and tokens
CREATE FUNCTION pg_temp.events() RETURNS SETOF text LANGUAGE sql AS $$
	SELECT regexp_replace(regexp_replace(e, '"\d{4}-\d\d-\d\dT[^"]*"', '"<t>"', 'g'),
						  '"token": ?\d+', '"token":<n>', 'g')
	  FROM collab.pending_events() e
	 WHERE coalesce(e::jsonb->>'resourceId', 'document:g') LIKE 'document:g%'
$$;
-- a result with its times and tokens masked
CREATE FUNCTION pg_temp.masked(j jsonb) RETURNS text LANGUAGE sql AS $$
	SELECT regexp_replace(regexp_replace(j::text, '"\d{4}-\d\d-\d\dT[^"]*"', '"<t>"', 'g'),
						  '"token": ?\d+', '"token":<n>', 'g')
$$;

-- the settings, with their defaults
SHOW collab.disconnect_grace;
SHOW collab.recovery_window;
SELECT collab.disconnect_grace(), collab.recovery_window();
SET collab.disconnect_grace = '-1s';
SET collab.disconnect_grace = '25h';
SET collab.recovery_window = '-1';

SELECT collab.create_document('gr', NULL, ARRAY['a', 'b']);
SELECT collab.grant('document:gr', '*', 'edit');
SELECT collab.ws_connect('gr-c1', 'collab worker 7', 1, 'u1', 'Ann', NULL, NULL);
SELECT collab.ws_connect('gr-c2', 'collab worker 7', 1, 'u2', 'Bob', NULL, NULL);
SELECT collab.ws_connect('gr-c3', 'collab worker 8', 1, 'u1', 'Ann', NULL, NULL);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c1', 'document:gr/tab:a', 'editor');
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c1', 'document:gr', 'viewer');
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c2', 'document:gr/tab:a', 'viewer');
SELECT token AS ann_token FROM collab.leases WHERE resource_id = 'document:gr/tab:a' \gset
SELECT joined_at AS tab_joined FROM collab.ws_presence
 WHERE connection_id = 'gr-c1' AND resource_id = 'document:gr/tab:a' \gset

-- bad input: a reason is disconnected or timeout; an unknown or detached
-- connection is left as it is
SELECT collab.ws_detach('gr-c1', 'left');
SELECT collab.ws_detach('gr-c1', NULL);
SELECT collab.ws_detach('no-such-connection');

-- the loss: lock:suspended, then presence:left in each room
BEGIN;
SELECT collab.ws_detach('gr-c1', 'timeout');
SELECT pg_temp.events();
COMMIT;
SELECT resource_id, username, holder_id, suspended_until IS NOT NULL AS suspended,
	   suspended_until - (SELECT detached_at FROM collab.ws_connections WHERE connection_id = 'gr-c1')
		 BETWEEN interval '29 seconds' AND interval '30 seconds' AS for_the_grace
  FROM collab.locks WHERE resource_id LIKE 'document:gr%';
SELECT connection_id, rooms, detached_at IS NOT NULL AS detached FROM collab.connections
 WHERE connection_id LIKE 'gr-%' ORDER BY 1;
SELECT detached_rooms @> '[{"resourceId": "document:gr/tab:a", "role": "editor"}, {"resourceId": "document:gr", "role": "viewer"}]'
	   AND jsonb_array_length(detached_rooms) = 2 AS rooms_kept
  FROM collab.ws_connections WHERE connection_id = 'gr-c1';
SELECT action, holder_id, reason, detail ? 'until' AS until FROM collab.audit_log
 WHERE resource_id = 'document:gr/tab:a' ORDER BY id;
-- detaching again changes nothing
BEGIN;
SELECT collab.ws_detach('gr-c1');
SELECT count(*) AS events FROM collab.pending_events();
COMMIT;

-- the lease is still Ann's: Bob cannot take it, join as its editor or save
SELECT pg_temp.masked(collab.ws_acquire('gr-c2', 'document:gr/tab:a')::jsonb);
SELECT ack::jsonb->>'role' AS role, ack::jsonb->'lock' ? 'suspendedUntil' AS shows_suspension
  FROM collab.ws_join('gr-c2', 'document:gr/tab:a', 'editor');
SELECT collab.ws_save('gr-c2', 'document:gr/tab:a', 'by Bob');
SELECT collab.ws_save('gr-c2', 'document:gr/tab:a', 'by Bob', NULL, :ann_token);
SELECT content, version FROM collab.resources WHERE id = 'document:gr/tab:a';
-- nor can the application take it for Ann under a holder of its own
SELECT granted, holder_id = 'gr-c1' AS held_by_the_connection
  FROM collab.acquire('document:gr/tab:a', 'u1', 'Ann', 'app-1');
-- the document's children show it suspended
SELECT (collab._children_json('document:gr')->0->'lock') ? 'suspendedUntil' AS child_suspended;
-- Bob asks for it: queued
SELECT pg_temp.masked(collab.ws_request('gr-c2', 'document:gr/tab:a'));

-- a return of something that is not a detached connection of the user: NULL
SELECT collab.ws_resume('gr-c1', 'u2') IS NULL AS other_user;
SELECT collab.ws_resume('gr-c1', NULL) IS NULL AS no_user;
SELECT collab.ws_resume('gr-c2', 'u2') IS NULL AS not_detached;
SELECT collab.ws_resume('no-such-connection', 'u1') IS NULL AS unknown;

-- the return: rooms again with their roles and joining times (presence:joined),
-- the lease resumed with its token (lock:resumed)
BEGIN;
SELECT pg_temp.masked(collab.ws_resume('gr-c1', 'u1', ARRAY['g2', 'g1'], NULL, 'collab worker 9', 2));
SELECT pg_temp.events();
COMMIT;
SELECT token = :ann_token AS same_token, suspended_until FROM collab.leases WHERE resource_id = 'document:gr/tab:a';
SELECT resource_id, connection_id, role FROM collab.presence WHERE connection_id = 'gr-c1' ORDER BY 1;
SELECT joined_at = :'tab_joined' AS same_joined_at FROM collab.ws_presence
 WHERE connection_id = 'gr-c1' AND resource_id = 'document:gr/tab:a';
SELECT groups, worker, worker_pid, detached_at, detached_rooms FROM collab.ws_connections WHERE connection_id = 'gr-c1';
SELECT action, reason FROM collab.audit_log WHERE resource_id = 'document:gr/tab:a' ORDER BY id;
-- back on its connection, Ann saves with her token
SELECT collab.ws_save('gr-c1', 'document:gr/tab:a', 'by Ann', NULL, :ann_token)->'ack';

-- lost again; Ann joins from another connection, which takes the lock over
SELECT collab.ws_detach('gr-c1');
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c3', 'document:gr/tab:a', 'viewer');
BEGIN;
SELECT pg_temp.masked(collab.ws_acquire('gr-c3', 'document:gr/tab:a')::jsonb);
SELECT pg_temp.events();
COMMIT;
SELECT holder_id, token > :ann_token AS new_token, suspended_until FROM collab.leases
 WHERE resource_id = 'document:gr/tab:a';
SELECT role FROM collab.presence WHERE connection_id = 'gr-c3';
SELECT action, holder_id, reason FROM collab.audit_log WHERE resource_id = 'document:gr/tab:a' ORDER BY id;
SELECT collab.ws_save('gr-c3', 'document:gr/tab:a', 'by Ann, elsewhere', NULL, :ann_token);
-- the old connection returns without the lock: a viewer there now
SELECT pg_temp.masked(collab.ws_resume('gr-c1', 'u1'));
SELECT resource_id, role FROM collab.presence WHERE connection_id = 'gr-c1' ORDER BY 1;
SELECT collab.ws_save('gr-c1', 'document:gr/tab:a', 'by the old connection');

-- a takeover needs a suspended lease: from Ann's third connection, while
-- gr-c3 is connected, a join as editor is denied
SELECT collab.ws_connect('gr-c4', 'collab worker 7', 1, 'u1', 'Ann', NULL, NULL);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c4', 'document:gr/tab:a', 'editor');
SELECT collab.ws_disconnect('gr-c4');

-- the grace ends (the sweep): lock:released "disconnected", then the
-- hand-off to Bob, who asked for the lock
SELECT collab.ws_detach('gr-c3');
UPDATE collab.leases SET suspended_until = clock_timestamp() - interval '1 second'
 WHERE resource_id = 'document:gr/tab:a';
BEGIN;
SELECT resource_id FROM collab.sweep() WHERE resource_id LIKE 'document:g%';
SELECT pg_temp.events();
COMMIT;
SELECT resource_id, username, holder_id, suspended_until FROM collab.locks WHERE resource_id LIKE 'document:gr%';

-- the TTL keeps running: a suspended lease that passes it expires
SELECT collab.ws_detach('gr-c2');
UPDATE collab.leases SET expires_at = clock_timestamp() - interval '1 second'
 WHERE resource_id = 'document:gr/tab:a';
BEGIN;
SELECT resource_id, username FROM collab.sweep() WHERE resource_id LIKE 'document:g%';
SELECT pg_temp.events();
COMMIT;
SELECT count(*) AS leases FROM collab.leases WHERE resource_id LIKE 'document:gr%';
-- its return finds no lease, and the rooms it was in
SELECT pg_temp.masked(collab.ws_resume('gr-c2', 'u2'));

-- detached connections go once the grace and the recovery window have
-- both passed, not before
SELECT collab.ws_detach('gr-c2');
SELECT collab.ws_detach('gr-c1');
UPDATE collab.ws_connections SET detached_at = clock_timestamp() - interval '90 seconds'
 WHERE connection_id = 'gr-c2';
UPDATE collab.ws_connections SET detached_at = clock_timestamp() - interval '3 minutes'
 WHERE connection_id = 'gr-c1';
SELECT count(*) FROM collab.sweep() WHERE resource_id LIKE 'document:g%';
SELECT connection_id FROM collab.ws_connections WHERE connection_id LIKE 'gr-%' ORDER BY 1;
-- nor does a connection return after the window
SET collab.recovery_window = '1min';
SELECT collab.ws_resume('gr-c2', 'u2') IS NULL AS past_the_window;
SET collab.recovery_window = '10min';
SELECT count(*) FROM collab.sweep() WHERE resource_id LIKE 'document:g%';
SELECT connection_id FROM collab.ws_connections WHERE connection_id LIKE 'gr-%' ORDER BY 1;
RESET collab.recovery_window;
SELECT (collab.ws_resume('gr-c2', 'u2')->'rooms') IS NOT NULL AS back;

-- a return checks access again: a room one may no longer view is left, a
-- lease one may no longer edit is released ("revoked")
SELECT collab.create_document('gs', NULL, ARRAY['a']);
SELECT collab.grant('document:gs', 'group:ward', 'edit');
SELECT collab.ws_connect('gs-c1', 'collab worker 7', 1, 'u5', 'Eve', NULL, NULL, ARRAY['ward']);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gs-c1', 'document:gs/tab:a', 'editor');
SELECT collab.ws_detach('gs-c1');
BEGIN;
SELECT pg_temp.masked(collab.ws_resume('gs-c1', 'u5', ARRAY['other']));
SELECT pg_temp.events();
COMMIT;
SELECT count(*) AS eve_leases FROM collab.leases WHERE holder_id = 'gs-c1';
-- with view only, it comes back a viewer, its lease released
SELECT collab.grant('document:gs', 'group:readers', 'view');
SELECT collab.ws_refresh('gs-c1', ARRAY['ward']);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gs-c1', 'document:gs/tab:a', 'editor');
SELECT collab.ws_detach('gs-c1');
BEGIN;
SELECT pg_temp.masked(collab.ws_resume('gs-c1', 'u5', ARRAY['readers']));
SELECT pg_temp.events();
COMMIT;
SELECT role FROM collab.presence WHERE connection_id = 'gs-c1';

-- a revoked token does not return; revoke_sessions ends the user's
-- detached connections, releasing their leases ("revoked")
SELECT collab.ws_detach('gs-c1');
SELECT collab.ws_connect('gs-c2', 'collab worker 7', 1, 'u5', 'Eve', NULL, NULL, ARRAY['ward']);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gs-c2', 'document:gs/tab:a', 'editor');
SELECT collab.ws_detach('gs-c2');
BEGIN;
SELECT collab.revoke_sessions('u5', 'lost tablet');
SELECT pg_temp.events();
COMMIT;
SELECT connection_id FROM collab.ws_connections WHERE user_id = 'u5';
SELECT collab.ws_connect('gs-c3', 'collab worker 7', 1, 'u6', 'Fay', NULL, NULL, ARRAY['ward'], 1);
SELECT collab.revoke_sessions('u6', 'stolen');
SELECT collab.ws_detach('gs-c3');
SELECT collab.ws_resume('gs-c3', 'u6', ARRAY['ward'], 1);
SELECT collab.ws_resume('gs-c3', 'u6', ARRAY['ward'], extract(epoch FROM clock_timestamp())::bigint + 5) IS NOT NULL AS with_a_new_token;
SELECT collab.ws_disconnect('gs-c3');

-- with collab.disconnect_grace = 0, a loss is a disconnect
SELECT collab.ws_connect('gr-c5', 'collab worker 7', 1, 'u1', 'Ann', NULL, NULL);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c5', 'document:gr/tab:b', 'editor');
SET collab.disconnect_grace = 0;
BEGIN;
SELECT collab.ws_detach('gr-c5');
SELECT pg_temp.events();
COMMIT;
SELECT count(*) AS gone FROM collab.ws_connections WHERE connection_id = 'gr-c5';
RESET collab.disconnect_grace;

-- a worker's start detaches the connections of its previous run (and of
-- workers beyond collab.workers); detached ones are left to the sweep
SELECT collab.ws_connect('gr-c6', 'collab worker 7', 1, 'u1', 'Ann', NULL, NULL);
SELECT ack::jsonb->>'role' AS role FROM collab.ws_join('gr-c6', 'document:gr/tab:b', 'editor');
SELECT collab.ws_connect('gr-c7', 'collab worker 8', 1, 'u2', 'Bob', NULL, NULL);
SELECT collab.ws_worker_start('collab worker 7');
SELECT connection_id, detached_at IS NOT NULL AS detached FROM collab.ws_connections
 WHERE connection_id LIKE 'gr-%' ORDER BY 1;
SELECT resource_id, holder_id, suspended_until IS NOT NULL AS suspended FROM collab.locks
 WHERE resource_id LIKE 'document:gr%';
SELECT collab.ws_worker_start('collab worker 7');
SELECT collab.ws_worker_start('collab worker 1', 7);
SELECT connection_id, detached_at IS NOT NULL AS detached FROM collab.ws_connections
 WHERE connection_id LIKE 'gr-%' ORDER BY 1;

-- the views show suspension and detachment; collab_app does not see
-- connection ids
SET ROLE collab_app;
SELECT resource_id, holder_id, suspended_until IS NOT NULL AS suspended FROM collab.locks
 WHERE resource_id LIKE 'document:gr%';
SELECT connection_id, user_id, detached_at IS NOT NULL AS detached FROM collab.connections
 WHERE user_id IN ('u1', 'u2') ORDER BY 2, 3;
SELECT collab.disconnect_grace(), collab.recovery_window();
SELECT collab.ws_detach('gr-c7');
SELECT collab.ws_resume('gr-c6', 'u1');
RESET ROLE;

SELECT count(*) FROM (SELECT collab.ws_disconnect(connection_id) FROM collab.ws_connections
						WHERE connection_id LIKE 'g_-%') x;
SELECT count(*) AS leases_left FROM collab.leases WHERE resource_id LIKE 'document:g_%';
DELETE FROM collab.resources WHERE id IN ('document:gr', 'document:gs');
