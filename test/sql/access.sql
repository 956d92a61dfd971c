-- Access control: the model (grants, inheritance, groups, '*', the rule of
-- collab.access_rule), enforcement in the worker's functions, session
-- revocation, the access trail and its retention, and who may do what.
\set VERBOSITY terse
CREATE FUNCTION pg_temp.try(sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	RETURN coalesce(collab.error_code(SQLSTATE), SQLSTATE) || ': ' || SQLERRM;
END
$$;
GRANT EXECUTE ON FUNCTION pg_temp.try(text) TO PUBLIC;
-- every permission a user with these groups has, as collab.can() answers
CREATE FUNCTION pg_temp.perms(u text, g text[], r text) RETURNS text LANGUAGE sql AS $$
	SELECT coalesce(string_agg(p, ',' ORDER BY o), '-')
	  FROM unnest(ARRAY['view', 'edit', 'admin']) WITH ORDINALITY x(p, o)
	 WHERE collab.can(u, g, r, p)
$$;
-- a join as the worker runs it: in a subtransaction, answering what the
-- client would get (the code, message, detail and hint of an error)
CREATE FUNCTION pg_temp.join(conn text, rid text, mode text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	j record;
	v_state text;
	v_msg text;
	v_detail text;
	v_hint text;
BEGIN
	SELECT * INTO j FROM collab.ws_join(conn, rid, mode);
	RETURN format('role=%s permissions=%s lock=%s token=%s children=%s',
		j.ack::jsonb->>'role', j.ack::jsonb->'permissions',
		coalesce(j.ack::jsonb->'lock'->'holder'->>'username', '-'), j.token IS NOT NULL,
		(SELECT coalesce(string_agg(c->>'resourceId', ',' ORDER BY n), '-')
		   FROM jsonb_array_elements(j.ack::jsonb->'children') WITH ORDINALITY x(c, n)));
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_msg = MESSAGE_TEXT,
		v_detail = PG_EXCEPTION_DETAIL, v_hint = PG_EXCEPTION_HINT;
	RETURN format('%s (%s): %s | detail: %s | hint: %s', collab.error_code(v_state), v_state,
		v_msg, coalesce(v_detail, '-'), coalesce(v_hint, '-'));
END
$$;
-- the events a statement publishes, without their times
CREATE FUNCTION pg_temp.events_of(sql text) RETURNS SETOF text LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	RETURN QUERY SELECT (e::jsonb - 'releasedAt' - 'revokedBefore' - 'joinedAt'
						 #- '{user,joinedAt}')::text
	  FROM collab.pending_events() e;
END
$$;

SELECT collab.create_document('ac', 'Report AC', ARRAY['diagnosis', 'notes']);
SELECT collab.create_document('ac2', NULL, ARRAY['x']);

-- ------------------------------------------------------------------------
-- The model
-- ------------------------------------------------------------------------
-- deny unless granted
SELECT pg_temp.perms('u-ann', NULL, 'document:ac') AS no_grant_yet;
SELECT collab.grant('document:ac', 'user:u-ann', 'edit') AS granted;
SELECT collab.grant('document:ac', 'user:u-ann', 'edit') AS granted_again;
SELECT collab.grant('document:ac/tab:notes', 'user:u-ben', 'view');
SELECT collab.grant('document:ac', 'group:surgery', 'view');
SELECT collab.grant('document:ac2', '*', 'view');
SELECT collab.grant('document:ac2/tab:x', 'user:u-chief', 'admin');
SELECT resource_id, subject, permission, granted_by = current_user AS by_me
  FROM collab.grants WHERE resource_id LIKE 'document:ac%' ORDER BY 1, 2, 3;

-- inheritance down the hierarchy; a tab's grant covers that tab only;
-- groups; '*' for every user; grants add up
SELECT who, pg_temp.perms(u, g, 'document:ac') AS "ac",
	   pg_temp.perms(u, g, 'document:ac/tab:diagnosis') AS "ac/diagnosis",
	   pg_temp.perms(u, g, 'document:ac/tab:notes') AS "ac/notes",
	   pg_temp.perms(u, g, 'document:ac2') AS "ac2",
	   pg_temp.perms(u, g, 'document:ac2/tab:x') AS "ac2/x"
  FROM (VALUES ('ann', 'u-ann', NULL::text[]),
			   ('ann in surgery', 'u-ann', ARRAY['surgery']),
			   ('ben', 'u-ben', '{}'),
			   ('sam in icu, surgery', 'u-sam', ARRAY['icu', 'surgery']),
			   ('sam in icu', 'u-sam', ARRAY['icu']),
			   ('chief', 'u-chief', NULL),
			   ('eve', 'u-eve', NULL),
			   ('a user called surgery', 'surgery', NULL)) v(who, u, g);
-- a resource that does not exist: no permission, even under a granted parent
SELECT collab.can('u-ann', NULL, 'document:ac/tab:ghost', 'view') AS ghost_tab;
-- user ids and group names are compared exactly
SELECT collab.can('U-ANN', NULL, 'document:ac', 'view') AS other_case,
	   collab.can('u-sam', ARRAY['Surgery'], 'document:ac', 'view') AS group_other_case;

-- revoke: one permission, or every grant of the subject on the resource
SELECT collab.grant('document:ac2/tab:x', 'user:u-ben', 'edit');
SELECT collab.grant('document:ac2/tab:x', 'user:u-ben', 'admin');
SELECT collab.revoke('document:ac2/tab:x', 'user:u-ben', 'edit') AS removed;
-- admin still implies edit
SELECT pg_temp.perms('u-ben', NULL, 'document:ac2/tab:x') AS ben_on_x;
SELECT collab.revoke('document:ac2/tab:x', 'user:u-ben') AS removed;
SELECT pg_temp.perms('u-ben', NULL, 'document:ac2/tab:x') AS ben_on_x;
SELECT collab.revoke('document:ac2/tab:x', 'user:u-ben') AS removed_nothing;
-- a revoke on the document leaves a tab's own grant alone
SELECT collab.grant('document:ac2/tab:x', 'group:icu', 'edit');
SELECT collab.grant('document:ac2', 'group:icu', 'edit');
SELECT collab.revoke('document:ac2', 'group:icu');
SELECT pg_temp.perms('u-sam', ARRAY['icu'], 'document:ac2') AS "ac2",
	   pg_temp.perms('u-sam', ARRAY['icu'], 'document:ac2/tab:x') AS "ac2/x";
SELECT collab.revoke('document:ac2/tab:x', 'group:icu');

-- grants go with their resource
SELECT collab.create_document('gone', NULL, ARRAY['t']);
SELECT collab.grant('document:gone/tab:t', 'user:u-ann', 'edit');
DELETE FROM collab.resources WHERE id = 'document:gone';
SELECT count(*) AS grants_left FROM collab.grants WHERE resource_id LIKE 'document:gone%';
SELECT collab.create_document('gone', NULL, ARRAY['t']);
SELECT collab.can('u-ann', NULL, 'document:gone/tab:t', 'view') AS recreated_is_not_granted;

-- ------------------------------------------------------------------------
-- Bad input: each gets its code
-- ------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT collab.grant('document:', '*', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant(NULL, '*', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac/', '*', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:nope', '*', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'user:*', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'group:*', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'u-ann', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'role:nurse', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'user:', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'group:', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', NULL, 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', '', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', '**', 'view')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', E'user:a\nb', 'view')$$);
SELECT pg_temp.try(format('SELECT collab.grant(%L, %L, %L)', 'document:ac', 'group:' || repeat('g', 257), 'view'));
SELECT collab.grant('document:ac2', 'group:' || repeat('g', 256), 'view') AS longest_group_name;
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'user:u-ann', 'owner')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'user:u-ann', 'VIEW')$$);
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'user:u-ann', NULL)$$);
SELECT pg_temp.try($$SELECT collab.revoke('not an id', 'user:u-ann')$$);
SELECT pg_temp.try($$SELECT collab.revoke('document:nope', 'user:u-ann')$$);
SELECT pg_temp.try($$SELECT collab.revoke('document:ac', 'user:*')$$);
SELECT pg_temp.try($$SELECT collab.revoke('document:ac', 'user:u-ann', 'write')$$);
SELECT pg_temp.try($$SELECT collab.can('*', NULL, 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can(NULL, NULL, 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('', NULL, 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-ann', NULL, 'document:ac', 'delete')$$);
SELECT pg_temp.try($$SELECT collab.can('u-ann', NULL, 'document:ac', NULL)$$);
SELECT pg_temp.try($$SELECT collab.can('u-ann', NULL, 'no-colon', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-ann', NULL, NULL, 'view')$$);
-- groups: a one-dimensional array of names, nothing else
SELECT pg_temp.try($$SELECT collab.can('u-sam', ARRAY[['surgery', 'icu'], ['a', 'b']], 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-sam', ARRAY['surgery', NULL], 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-sam', ARRAY[''], 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-sam', ARRAY[E'surgery\t'], 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-sam', ARRAY(SELECT 'g' || i FROM generate_series(1, 257) i), 'document:ac', 'view')$$);
SELECT collab.can('u-sam', ARRAY(SELECT 'g' || i FROM generate_series(1, 255) i) || 'surgery'::text, 'document:ac', 'view') AS "256 groups";
SELECT pg_temp.try($$SELECT collab.can('u-sam', ARRAY[1, 2], 'document:ac', 'view')$$);
SELECT pg_temp.try($$SELECT collab.can('u-sam', '{"groups": ["surgery"]}'::jsonb, 'document:ac', 'view')$$);
-- ... and a group named like a user or like '*' is just a name
SELECT collab.can('u-eve', ARRAY['user:u-ann', '*'], 'document:ac', 'view') AS forged_names;
SELECT pg_temp.try($$SELECT collab.revoke_sessions('*', 'everyone')$$);
SELECT pg_temp.try($$SELECT collab.revoke_sessions('u-ann', '')$$);
SELECT pg_temp.try($$SELECT collab.revoke_sessions('u-ann', NULL)$$);
SELECT pg_temp.try($$SELECT collab.access_changed('document:nope')$$);
SELECT pg_temp.try($$SELECT collab.access_changed('nope')$$);

-- ------------------------------------------------------------------------
-- Enforcement in the worker's functions
-- ------------------------------------------------------------------------
SELECT collab.ws_connect('c-ann', 'collab worker 1', 1, 'u-ann', 'Ann', '10.0.0.1', NULL, NULL, NULL);
SELECT collab.ws_connect('c-ben', 'collab worker 1', 1, 'u-ben', 'Ben', '10.0.0.2', NULL, '{}', NULL);
SELECT collab.ws_connect('c-sam', 'collab worker 1', 1, 'u-sam', 'Sam', '10.0.0.3', NULL,
	ARRAY['surgery', 'icu', 'surgery'], NULL);
SELECT collab.ws_connect('c-eve', 'collab worker 1', 1, 'u-eve', 'Eve', '10.0.0.4', NULL, NULL, NULL);
-- the groups kept for decisions: sorted, each once
SELECT connection_id, groups, token_issued_at FROM collab.ws_connections
 WHERE connection_id LIKE 'c-%' ORDER BY 1;
SELECT pg_temp.try($$SELECT collab.ws_connect('c-x', 'collab worker 1', 1, '*', 'Anyone', NULL, NULL)$$);
SELECT pg_temp.try($$SELECT collab.ws_connect('c-x', 'collab worker 1', 1, 'u-x', 'X', NULL, NULL, ARRAY['a', NULL])$$);
SELECT pg_temp.try($$SELECT collab.ws_connect('c-x', 'collab worker 1', 1, 'u-x', 'X', NULL, NULL, ARRAY[['a'], ['b']])$$);
SELECT pg_temp.try($$SELECT collab.ws_connect('c-x', 'collab worker 1', 1, 'u-x', 'X', NULL, NULL, NULL, -1)$$);
SELECT pg_temp.try($$SELECT collab.ws_connect('c-x', 'collab worker 1', 1, 'u-x', 'X', NULL, NULL, NULL, 99999999999999)$$);
SELECT count(*) AS refused_connections_stored FROM collab.ws_connections WHERE connection_id = 'c-x';

-- the join ack carries the permissions; an editor without edit joins as viewer
SELECT pg_temp.join('c-ann', 'document:ac/tab:diagnosis', 'editor') AS ann;
SELECT pg_temp.join('c-sam', 'document:ac/tab:diagnosis', 'editor') AS sam_asks_to_edit;
SELECT pg_temp.join('c-sam', 'document:ac', 'viewer') AS sam_on_the_document;
SELECT pg_temp.join('c-ben', 'document:ac/tab:notes', 'viewer') AS ben;
-- a tab's grant does not open its document or its sibling
SELECT pg_temp.join('c-ben', 'document:ac', 'viewer') AS ben_on_the_document;
SELECT pg_temp.join('c-ben', 'document:ac/tab:diagnosis', 'viewer') AS ben_on_the_sibling;
SELECT resource_id, connection_id, role FROM collab.presence
 WHERE resource_id LIKE 'document:ac%' ORDER BY 1, 2;

-- Probing: a resource that exists but may not be viewed, and one that does
-- not exist, answer byte for byte the same (the same id, before and after
-- the resource is deleted), in either mode, and nothing of it is written
SELECT collab.create_document('probe', 'Secret', ARRAY['t']);
CREATE TEMP TABLE probes AS
	SELECT m, 'exists' AS state, pg_temp.join('c-eve', 'document:probe', m) AS answer,
		   pg_temp.join('c-eve', 'document:probe/tab:t', m) AS tab_answer
	  FROM unnest(ARRAY['viewer', 'editor']) m;
SELECT count(*) AS rows_written FROM collab.ws_presence WHERE connection_id = 'c-eve';
SELECT count(*) AS leases_written FROM collab.leases WHERE resource_id LIKE 'document:probe%';
DELETE FROM collab.resources WHERE id = 'document:probe';
INSERT INTO probes
	SELECT m, 'missing', pg_temp.join('c-eve', 'document:probe', m), pg_temp.join('c-eve', 'document:probe/tab:t', m)
	  FROM unnest(ARRAY['viewer', 'editor']) m;
SELECT m, state, answer, tab_answer FROM probes ORDER BY 1, 2;
SELECT count(DISTINCT answer) AS distinct_answers, count(DISTINCT tab_answer) AS distinct_tab_answers FROM probes;
-- nothing of a refused join is published either
BEGIN;
SELECT collab.create_document('probe', 'Secret', ARRAY['t']);
SELECT pg_temp.join('c-eve', 'document:probe', 'viewer') AS refused;
SELECT count(*) AS events_of_the_refusal FROM collab.pending_events();
ROLLBACK;

-- a viewer may not edit: lock:acquire, lock:request, doc:save, lock:renew
-- are FORBIDDEN, lock:release is LOCK_NOT_HELD, and nothing changes
SELECT token AS ann_token FROM collab.leases WHERE resource_id = 'document:ac/tab:diagnosis' \gset
SELECT pg_temp.try($$SELECT collab.ws_acquire('c-sam', 'document:ac/tab:diagnosis')$$);
SELECT pg_temp.try($$SELECT collab.ws_request('c-sam', 'document:ac/tab:diagnosis')$$);
SELECT pg_temp.try($$SELECT collab.ws_save('c-sam', 'document:ac/tab:diagnosis', 'by Sam')$$);
SELECT pg_temp.try($$SELECT collab.ws_save('c-sam', 'document:ac/tab:diagnosis', 'by Sam', NULL, $$ || :ann_token || ')');
SELECT pg_temp.try($$SELECT collab.ws_renew('c-sam', 'document:ac/tab:diagnosis')$$);
SELECT pg_temp.try($$SELECT collab.ws_release('c-sam', 'document:ac/tab:diagnosis')$$);
SELECT pg_temp.try($$SELECT collab.ws_save('c-sam', 'document:ac', 'by Sam')$$);
SELECT content, version FROM collab.resources WHERE id LIKE 'document:ac/%' ORDER BY id;
SELECT resource_id, username, token = :ann_token AS same_token FROM collab.leases WHERE resource_id LIKE 'document:ac%';
SELECT count(*) AS lock_requests FROM collab.ws_lock_requests WHERE connection_id = 'c-sam';
-- the editor may
SELECT collab.ws_save('c-ann', 'document:ac/tab:diagnosis', 'by Ann')->'ack' AS ann_saves;

-- the edit hand-off skips a request whose connection has lost edit since
SELECT collab.grant('document:ac/tab:notes', 'group:surgery', 'edit');
SELECT pg_temp.join('c-ann', 'document:ac/tab:notes', 'editor') AS ann_on_notes;
SELECT pg_temp.join('c-sam', 'document:ac/tab:notes', 'viewer') AS sam_on_notes;
SELECT collab.ws_request('c-sam', 'document:ac/tab:notes')->'ack'->'requested' AS sam_requested;
SELECT collab.revoke('document:ac/tab:notes', 'group:surgery', 'edit');
SELECT collab.ws_release('c-ann', 'document:ac/tab:notes');
SELECT resource_id, username FROM collab.locks WHERE resource_id = 'document:ac/tab:notes';
SELECT role FROM collab.presence WHERE connection_id = 'c-sam' AND resource_id = 'document:ac/tab:notes';
-- ... and honours one that still has it
SELECT collab.grant('document:ac/tab:notes', 'group:surgery', 'edit');
SELECT collab.ws_acquire('c-ann', 'document:ac/tab:notes')::jsonb->'ack'->'ok' AS ann_again;
SELECT collab.ws_request('c-sam', 'document:ac/tab:notes')->'ack'->'requested' AS sam_requested;
SELECT collab.ws_release('c-ann', 'document:ac/tab:notes');
SELECT resource_id, username FROM collab.locks WHERE resource_id = 'document:ac/tab:notes';
SELECT collab.ws_release('c-sam', 'document:ac/tab:notes');
SELECT collab.revoke('document:ac/tab:notes', 'group:surgery', 'edit');

-- a revoke: saves and renewals stop at once; collab.ws_recheck() then
-- takes the lock away (lock:released "revoked") and, without view, the
-- room too (presence:left "revoked")
SELECT collab.revoke('document:ac', 'user:u-ann');
SELECT pg_temp.try($$SELECT collab.ws_save('c-ann', 'document:ac/tab:diagnosis', 'after the revoke')$$);
SELECT pg_temp.try($$SELECT collab.ws_renew('c-ann', 'document:ac/tab:diagnosis')$$);
SELECT content, version FROM collab.resources WHERE id = 'document:ac/tab:diagnosis';
SELECT collab.ws_permissions('c-ann', 'document:ac/tab:diagnosis') AS ann_now,
	   collab.ws_permissions('c-sam', 'document:ac/tab:diagnosis') AS sam_now,
	   collab.ws_permissions('c-nobody', 'document:ac/tab:diagnosis') AS unknown_connection,
	   collab.ws_permissions('c-sam', 'document:ac/tab:ghost') AS missing_resource;
BEGIN;
SELECT * FROM pg_temp.events_of($$SELECT * FROM collab.ws_recheck('c-ann', 'document:ac/tab:diagnosis')$$);
COMMIT;
SELECT resource_id, connection_id, role FROM collab.presence WHERE connection_id = 'c-ann' ORDER BY 1;
SELECT count(*) AS ann_leases FROM collab.leases WHERE holder_id = 'c-ann';
SELECT action, reason FROM collab.audit_log WHERE holder_id = 'c-ann' AND resource_id = 'document:ac/tab:diagnosis' ORDER BY id;
-- a connection that lost edit but kept view stays, as a viewer
SELECT collab.grant('document:ac', 'user:u-ann', 'edit');
SELECT pg_temp.join('c-ann', 'document:ac/tab:diagnosis', 'editor') AS ann_back;
SELECT collab.revoke('document:ac', 'user:u-ann');
SELECT collab.grant('document:ac', 'user:u-ann', 'view');
SELECT permissions, left_room FROM collab.ws_recheck('c-ann', 'document:ac/tab:diagnosis');
SELECT resource_id, role FROM collab.presence WHERE connection_id = 'c-ann' ORDER BY 1;
SELECT count(*) AS ann_leases FROM collab.leases WHERE holder_id = 'c-ann';
-- nothing to do: nothing happens
SELECT * FROM pg_temp.events_of($$SELECT * FROM collab.ws_recheck('c-sam', 'document:ac')$$);

-- '*' lets everyone in; collab.access_control = off lets everyone edit
SELECT pg_temp.join('c-eve', 'document:ac2', 'editor') AS eve_on_ac2;
SET collab.access_control = off;
SELECT pg_temp.perms('u-eve', NULL, 'document:ac') AS eve_with_access_control_off,
	   pg_temp.perms('u-chief', NULL, 'document:ac2/tab:x') AS chief_keeps_admin;
SELECT pg_temp.join('c-eve', 'document:ac/tab:notes', 'editor') AS eve_edits_notes;
SELECT collab.ws_release('c-eve', 'document:ac/tab:notes');
RESET collab.access_control;
SELECT pg_temp.try($$SELECT collab.ws_acquire('c-eve', 'document:ac/tab:notes')$$) AS eve_back_to_nothing;
SELECT collab.ws_leave('c-eve', 'document:ac/tab:notes');

-- ------------------------------------------------------------------------
-- A deployment's own rule: care teams (the example of docs/access-control.md)
-- ------------------------------------------------------------------------
CREATE SCHEMA care;
CREATE TABLE care.document_patient (document_id text PRIMARY KEY, patient_id text NOT NULL);
CREATE TABLE care.team (patient_id text, user_id text, role text CHECK (role IN ('physician', 'nurse')),
	PRIMARY KEY (patient_id, user_id));
-- at least p_permission on p_resource_id: physicians edit, nurses view;
-- asked for a resource and each of its ancestors
CREATE FUNCTION care.may_access(p_user_id text, p_groups text[], p_resource_id text, p_permission text)
RETURNS boolean LANGUAGE sql STABLE AS $$
	SELECT EXISTS (
		SELECT FROM care.document_patient d
		  JOIN care.team t ON t.patient_id = d.patient_id
		 WHERE d.document_id = p_resource_id AND t.user_id = p_user_id
		   AND (p_permission = 'view' OR (p_permission = 'edit' AND t.role = 'physician')))
$$;
INSERT INTO care.document_patient VALUES ('document:ac', 'p-42');
SET collab.access_rule = 'care.may_access';
SELECT pg_temp.perms('u-eve', NULL, 'document:ac/tab:notes') AS eve_not_in_the_team;
INSERT INTO care.team VALUES ('p-42', 'u-eve', 'nurse');
SELECT pg_temp.perms('u-eve', NULL, 'document:ac') AS "eve, nurse", pg_temp.perms('u-eve', NULL, 'document:ac/tab:notes') AS "eve, nurse, a tab";
SELECT pg_temp.join('c-eve', 'document:ac/tab:notes', 'editor') AS eve_nurse_joins;
UPDATE care.team SET role = 'physician' WHERE user_id = 'u-eve';
SELECT pg_temp.perms('u-eve', NULL, 'document:ac/tab:notes') AS "eve, physician";
SELECT collab.ws_acquire('c-eve', 'document:ac/tab:notes')::jsonb->'ack'->'ok' AS eve_physician_acquires;
SELECT collab.ws_release('c-eve', 'document:ac/tab:notes');
-- additive: the rule adds to grants, never takes away
SELECT pg_temp.perms('u-sam', ARRAY['surgery'], 'document:ac') AS "sam, by grant";
SELECT pg_temp.perms('u-chief', NULL, 'document:ac2/tab:x') AS "chief, by grant";
DELETE FROM care.team WHERE user_id = 'u-eve';
SELECT pg_temp.perms('u-eve', NULL, 'document:ac/tab:notes') AS eve_left_the_team;
-- the deployment tells live connections to be re-checked
SELECT * FROM pg_temp.events_of($$SELECT collab.access_changed('document:ac')$$);
-- a rule that cannot be found fails decisions: access is refused, not granted
SET collab.access_rule = 'care.no_such_function';
SELECT pg_temp.try($$SELECT collab.can('u-eve', NULL, 'document:ac', 'view')$$);
SELECT pg_temp.join('c-eve', 'document:ac', 'viewer') AS join_with_a_broken_rule;
SET collab.access_rule = 'may_access';
SELECT pg_temp.try($$SELECT collab.can('u-eve', NULL, 'document:ac', 'view')$$);
CREATE FUNCTION care.not_boolean(text, text[], text, text) RETURNS integer LANGUAGE sql AS 'SELECT 1';
SET collab.access_rule = 'care.not_boolean';
SELECT pg_temp.try($$SELECT collab.can('u-eve', NULL, 'document:ac', 'view')$$);
-- the owner of collab needs no grant: decisions are made as the owner;
-- grants alone decide again once the setting is reset
RESET collab.access_rule;
SELECT pg_temp.perms('u-eve', NULL, 'document:ac') AS eve_without_the_rule;

-- ------------------------------------------------------------------------
-- Events: one internal event per change, never for browsers (see
-- src/rooms.c) nor for NOTIFY listeners (collab.public_payload())
-- ------------------------------------------------------------------------
BEGIN;
SELECT * FROM pg_temp.events_of($$SELECT collab.grant('document:ac', 'group:icu', 'view')$$);
ROLLBACK;
BEGIN;
SELECT * FROM pg_temp.events_of($$SELECT collab.grant('document:ac', 'group:surgery', 'view')$$) AS already_granted;
ROLLBACK;
BEGIN;
SELECT * FROM pg_temp.events_of($$SELECT collab.revoke('document:ac', 'group:surgery')$$);
ROLLBACK;
BEGIN;
SELECT * FROM pg_temp.events_of($$SELECT collab.revoke('document:ac', 'group:nobody')$$) AS nothing_revoked;
ROLLBACK;
SELECT e.value::text AS what_listeners_get
  FROM jsonb_array_elements(collab.public_payload('{"v":1,"events":['
	'{"event":"lock:acquired","resourceId":"document:a","holder":{"userId":"u1","username":"Ann"},"holderId":"conn-1","acquiredAt":"t","expiresAt":"t"},'
	'{"event":"internal:grant","resourceId":"document:a","subject":"*","permission":"view"},'
	'{"event":"lock:denied","resourceId":"document:a","requester":{"userId":"u2","username":"Bob"},"requesterHolderId":"conn-2","holder":{"userId":"u1","username":"Ann"},"holderResourceId":"document:a","expiresAt":"t","reason":"held"},'
	'{"event":"lock:requested","resourceId":"document:a","requester":{"userId":"u2","username":"Bob"},"requestedAt":"t","to":"conn-1"},'
	'{"event":"presence:joined","resourceId":"document:a","user":{"userId":"u2","username":"Bob","connectionId":"conn-2","role":"viewer","joinedAt":"t","resourceId":"document:a"}},'
	'{"event":"doc:saved","resourceId":"document:a","version":2,"savedBy":{"userId":"u1","username":"Ann"},"holderId":"conn-1","savedAt":"t"}]}')::jsonb
	-> 'events') e;
SELECT collab.public_payload('{"v":1,"events":[{"event":"internal:revoke_sessions","userId":"u1","revokedBefore":"t"}]}') AS only_internal;

-- ------------------------------------------------------------------------
-- Session revocation: tokens issued before it are refused, with or
-- without iat; later ones are not
-- ------------------------------------------------------------------------
SELECT collab.grant('document:ac2', 'user:u-dan', 'edit');
SELECT (extract(epoch FROM clock_timestamp()) - 600)::bigint AS old_iat \gset
SELECT collab.ws_connect('c-dan', 'collab worker 1', 1, 'u-dan', 'Dan', '10.0.0.5', NULL, NULL, :old_iat);
SELECT collab.ws_connect('c-dan-noiat', 'collab worker 1', 1, 'u-dan', 'Dan', '10.0.0.5', NULL, NULL, NULL);
SELECT pg_temp.join('c-dan', 'document:ac2/tab:x', 'editor') AS dan_before;
BEGIN;
SELECT collab.revoke_sessions('u-dan', 'badge lost') AS connections_to_close;
SELECT (e::jsonb - 'revokedBefore')::text AS event FROM collab.pending_events() e;
COMMIT;
SELECT user_id, reason, revoked_by = current_user AS by_me FROM collab.session_revocations;
-- the open connections can do nothing more
SELECT pg_temp.join('c-dan', 'document:ac2', 'viewer') AS dan_joins;
SELECT pg_temp.join('c-dan-noiat', 'document:ac2', 'viewer') AS dan_without_iat_joins;
SELECT pg_temp.try($$SELECT collab.ws_save('c-dan', 'document:ac2/tab:x', 'after revocation')$$);
SELECT pg_temp.try($$SELECT collab.ws_renew('c-dan', 'document:ac2/tab:x')$$);
SELECT content, version FROM collab.resources WHERE id = 'document:ac2/tab:x';
-- reconnecting with the same token, without iat, or refreshing with an
-- older token is refused (the refusals are recorded, as the worker's
-- subtransactions do it)
DO $$
DECLARE
	s text;
BEGIN
	BEGIN
		PERFORM collab.ws_connect('c-dan-2', 'collab worker 1', 1, 'u-dan', 'Dan', '10.0.0.6', NULL, NULL,
			(extract(epoch FROM clock_timestamp()) - 600)::bigint);
	EXCEPTION WHEN OTHERS THEN
		s := collab.error_code(SQLSTATE) || ': ' || SQLERRM;
		RAISE NOTICE 'same token: %', s;
	END;
	BEGIN
		PERFORM collab.ws_connect('c-dan-2', 'collab worker 1', 1, 'u-dan', 'Dan', '10.0.0.6', NULL, NULL, NULL);
	EXCEPTION WHEN OTHERS THEN
		RAISE NOTICE 'no iat: %: %', collab.error_code(SQLSTATE), SQLERRM;
	END;
END
$$;
SELECT count(*) AS dan_connections FROM collab.ws_connections WHERE user_id = 'u-dan';
-- a token issued after the revocation (the next second) is accepted
SELECT (extract(epoch FROM revoked_before))::bigint + 1 AS new_iat FROM collab.session_revocations WHERE user_id = 'u-dan' \gset
SELECT collab.ws_connect('c-dan-new', 'collab worker 1', 1, 'u-dan', 'Dan', '10.0.0.6', NULL, ARRAY['icu'], :new_iat);
SELECT pg_temp.join('c-dan-new', 'document:ac2/tab:x', 'viewer') AS dan_new_token;
SELECT pg_temp.try(format('SELECT collab.ws_refresh(%L, NULL, %s)', 'c-dan-new', :old_iat)) AS refresh_with_an_older_token;
SELECT collab.ws_refresh('c-dan-new', ARRAY['icu'], :new_iat) AS groups_changed;
SELECT collab.ws_refresh('c-dan-new', ARRAY['icu', 'icu'], :new_iat) AS groups_changed;
SELECT collab.ws_refresh('c-dan-new', ARRAY['surgery', 'icu'], :new_iat) AS groups_changed;
SELECT groups FROM collab.ws_connections WHERE connection_id = 'c-dan-new';
SELECT pg_temp.try($$SELECT collab.ws_refresh('c-dan-new', ARRAY[''], NULL)$$);
-- a second revocation moves the time forward
SELECT revoked_before AS first_revocation FROM collab.session_revocations WHERE user_id = 'u-dan' \gset
SELECT collab.revoke_sessions('u-dan', 'second badge lost');
SELECT revoked_before > :'first_revocation' AS later, reason FROM collab.session_revocations WHERE user_id = 'u-dan';
SELECT pg_temp.join('c-dan-new', 'document:ac2', 'viewer') AS dan_after_second_revocation;

-- ------------------------------------------------------------------------
-- The access trail
-- ------------------------------------------------------------------------
-- joins granted and refused (refusals of every kind, with the reason only
-- the administrator sees), grants, revokes, session revocations
SELECT action, outcome, user_id, username, resource_id, address, actor = current_user AS by_me,
	   detail - 'connectionId' - 'revokedBefore' - 'issuedAt' AS detail,
	   detail ? 'connectionId' AS names_connection
  FROM collab.access_log
 WHERE (resource_id LIKE ANY (ARRAY['document:ac%', 'document:probe%']) OR user_id = 'u-dan')
   AND coalesce(detail->>'subject', '') NOT LIKE 'group:gggg%'
 ORDER BY at, id;
-- "who opened this report" is one query
SELECT DISTINCT user_id, address FROM collab.access_log
 WHERE resource_id LIKE 'document:ac/%' AND action = 'join' AND outcome = 'allowed' ORDER BY 1;
-- joins are in the logged table at once, each with its id
SELECT count(*) > 0 AS recorded, bool_and(id IS NOT NULL) AS with_id FROM collab.access_log WHERE action = 'join';
SELECT relname, relpersistence FROM pg_class WHERE oid = 'collab.access_entries'::regclass;
SELECT count(*) AS log_before FROM collab.access_log \gset
SELECT count(*) FILTER (WHERE resource_id LIKE 'document:ac%') AS expired FROM collab.sweep();
SELECT count(*) = :log_before AS nothing_lost, count(DISTINCT id) = count(*) AS ids_unique
  FROM collab.access_log;

-- retention: default keep; older entries dropped by the sweep
SHOW collab.access_log_retention;
SELECT collab.access_log_retention() IS NULL AS keep_forever;
UPDATE collab.access_entries SET at = at - interval '2 days' WHERE action = 'grant';
SELECT count(*) AS swept FROM collab.sweep();
SELECT count(*) AS grants_kept FROM collab.access_log WHERE action = 'grant' \gset
SELECT :grants_kept > 0 AS kept_while_retention_is_keep;
SET collab.access_log_retention = '1d';
SELECT collab.access_log_retention();
SELECT count(*) AS swept FROM collab.sweep();
SELECT action, count(*) FROM collab.access_log
 WHERE resource_id LIKE ANY (ARRAY['document:ac%', 'document:probe%']) OR user_id = 'u-dan'
 GROUP BY action ORDER BY action;
SET collab.access_log_retention = '90d';
SELECT collab.access_log_retention();
SET collab.access_log_retention = 525600;
SHOW collab.access_log_retention;
SELECT pg_temp.try($$SET collab.access_log_retention = -1$$);
RESET collab.access_log_retention;

-- ------------------------------------------------------------------------
-- Privileges: the application role names users but administers nothing,
-- reads no trail and no browser connection's id, and cannot take over a
-- browser's lock
-- ------------------------------------------------------------------------
CREATE ROLE collab_test_app IN ROLE collab_app;
CREATE ROLE collab_test_admin IN ROLE collab_admin;
SELECT pg_temp.join('c-sam', 'document:ac/tab:diagnosis', 'viewer') AS sam_stays;
SELECT collab.grant('document:ac', 'user:u-ann', 'edit');
SELECT pg_temp.join('c-ann', 'document:ac/tab:diagnosis', 'editor') AS ann_holds_diagnosis;
SELECT token AS browser_token, expires_at AS browser_expiry FROM collab.leases
 WHERE resource_id = 'document:ac/tab:diagnosis' \gset
SELECT p.oid::regprocedure AS function,
	   has_function_privilege('collab_test_app', p.oid, 'EXECUTE') AS app,
	   has_function_privilege('collab_test_admin', p.oid, 'EXECUTE') AS admin
  FROM pg_proc p
 WHERE p.pronamespace = 'collab'::regnamespace
   AND p.proname IN ('grant', 'revoke', 'revoke_sessions', 'can', 'access_changed', 'release_holder',
					 'access_log_retention', 'public_payload', 'ws_recheck', 'ws_permissions', 'ws_refresh',
					 '_log_refusal', '_lock_access', '_level')
 ORDER BY 1::text;
SELECT r AS role, has_table_privilege(r, 'collab.access_log', 'SELECT') AS access_log,
	   has_table_privilege(r, 'collab.access_entries', 'SELECT') AS entries,
	   has_table_privilege(r, 'collab.grants', 'SELECT') AS grants,
	   has_table_privilege(r, 'collab.acl', 'SELECT') AS acl,
	   has_table_privilege(r, 'collab.session_revocations', 'SELECT') AS revocations
  FROM unnest(ARRAY['collab_test_app', 'collab_test_admin']) r;

SET ROLE collab_test_app;
SELECT pg_temp.try($$SELECT collab.grant('document:ac', 'user:u-eve', 'edit')$$);
SELECT pg_temp.try($$SELECT collab.revoke('document:ac', 'user:u-ann')$$);
SELECT pg_temp.try($$SELECT collab.revoke_sessions('u-ann', 'x')$$);
SELECT pg_temp.try($$SELECT * FROM collab.access_log$$);
SELECT pg_temp.try($$INSERT INTO collab.acl VALUES ('document:ac', 'user:u-eve', 'admin')$$);
SELECT pg_temp.try($$DELETE FROM collab.access_entries$$);
SELECT pg_temp.try($$SELECT collab.release_holder('c-ann', 'released')$$);
SELECT pg_temp.try($$SET collab.access_control = off$$);
SELECT pg_temp.try($$SET collab.access_rule = 'public.allow_all'$$);
SELECT pg_temp.try($$SELECT collab.ws_recheck('c-ann', 'document:ac')$$);
SELECT pg_temp.try($$SELECT collab.public_payload('{}')$$);
-- what it may: ask, read the grants, announce changes of its own data
SELECT collab.can('u-ann', NULL, 'document:ac/tab:diagnosis', 'edit') AS app_asks;
SELECT count(*) > 0 AS app_reads_grants FROM collab.grants;
SELECT pg_temp.try($$SELECT collab.access_changed('document:ac')$$) AS app_announces;
-- no browser connection's id in what it reads; its own holder ids it sees
SELECT resource_id, user_id, holder_id FROM collab.locks WHERE resource_id LIKE 'document:ac%' ORDER BY 1;
SELECT resource_id, connection_id, user_id, role FROM collab.presence
 WHERE resource_id LIKE 'document:ac%' ORDER BY 1, 3, 4;
SELECT connection_id, user_id, rooms FROM collab.connections WHERE user_id IN ('u-ann', 'u-sam') ORDER BY 2;
-- the browser's lock: naming its connection is refused; the query of a
-- backend trying every lock it can see gets no token
SELECT pg_temp.try($$SELECT collab.acquire('document:ac/tab:diagnosis', 'u-ann', 'Ann', 'c-ann')$$);
SELECT pg_temp.try($$SELECT collab.acquire('document:ac/tab:diagnosis', 'u-eve', 'Eve', 'c-ann')$$);
SELECT resource_id, (collab.acquire(resource_id, user_id, username, holder_id)).token AS token
  FROM collab.locks WHERE resource_id = 'document:ac/tab:diagnosis';
-- its own locks work as before
SELECT granted FROM collab.acquire('document:gone/tab:t', 'u-ann', 'Ann', 'app-1');
SELECT resource_id, holder_id FROM collab.locks WHERE resource_id = 'document:gone/tab:t';
RESET ROLE;
SELECT token = :browser_token AS same_token, expires_at = :'browser_expiry' AS not_renewed, holder_id
  FROM collab.leases WHERE resource_id = 'document:ac/tab:diagnosis';
SELECT action, holder_id FROM collab.audit_log
 WHERE resource_id = 'document:ac/tab:diagnosis' AND holder_id <> 'c-ann' ORDER BY id;

SET ROLE collab_test_admin;
SELECT collab.grant('document:ac', 'user:u-eve', 'view');
SELECT collab.revoke('document:ac', 'user:u-eve');
SELECT count(*) > 0 AS admin_reads_the_trail FROM collab.access_log;
SELECT connection_id FROM collab.presence WHERE resource_id = 'document:ac/tab:diagnosis' ORDER BY 1;
SELECT holder_id FROM collab.locks WHERE resource_id = 'document:ac/tab:diagnosis';
-- even the administrator does not take a browser's lock with acquire:
-- force_release is the way, recorded in the audit trail
SELECT pg_temp.try($$SELECT collab.acquire('document:ac/tab:diagnosis', 'u-ann', 'Ann', 'c-ann')$$);
SELECT collab.release_holder('app-1', 'released') AS admin_releases_a_holder;
RESET ROLE;
SELECT action, actor, detail->>'subject' AS subject FROM collab.access_log
 WHERE action IN ('grant', 'revoke') AND detail->>'subject' = 'user:u-eve' ORDER BY at;

-- clean up
SELECT collab.ws_disconnect(connection_id) FROM collab.ws_connections ORDER BY connection_id;
DELETE FROM collab.resources WHERE id IN ('document:ac', 'document:ac2', 'document:gone');
DELETE FROM collab.session_revocations;
DROP SCHEMA care CASCADE;
DROP ROLE collab_test_app, collab_test_admin;
