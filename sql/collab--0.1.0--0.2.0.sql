/* collab--0.1.0--0.2.0.sql: upgrade from 0.1.0 to 0.2.0 */

\echo Use "ALTER EXTENSION collab UPDATE TO '0.2.0'" to load this file. \quit

/*
 * A new installation runs collab--0.1.0.sql and then this script (CREATE
 * EXTENSION follows the update path when a version has no install script of
 * its own), so an upgraded database and a new one have the same objects.
 * Each section below owns one concern; objects it replaces are replaced
 * with CREATE OR REPLACE or dropped and created again.
 */

/* ------------------------------------------------------------------------
 * Access control: grants, permissions, session revocation, access trail
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Responsiveness and budgets
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Revisions: every accepted save kept, hash-chained
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Fencing tokens across failover
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Shared payload builders and comments on every object
 * ------------------------------------------------------------------------ */

-- When a lease granted or renewed at p_from expires: computed in C
-- (src/leases.c), where the lock decision and the save guard compute it.
CREATE FUNCTION collab._lease_expiry(p_from timestamptz) RETURNS timestamptz
	AS 'MODULE_PATHNAME', 'collab_lease_expiry_sql' LANGUAGE C STABLE STRICT;
REVOKE ALL ON FUNCTION collab._lease_expiry(timestamptz) FROM PUBLIC;

CREATE OR REPLACE FUNCTION collab.renew(p_token bigint,
	OUT resource_id text, OUT token bigint, OUT expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	v_now timestamptz;
BEGIN
	PERFORM collab._require_read_committed();
	IF p_token IS NULL THEN
		PERFORM collab._raise('LOCK_NOT_HELD', 'no lock token presented');
	END IF;
	SELECT * INTO l FROM collab.leases c WHERE c.token = p_token;
	IF NOT FOUND THEN
		PERFORM collab._token_error(p_token, NULL);
	END IF;
	PERFORM collab._lock_path(l.resource_id);
	v_now := clock_timestamp();
	UPDATE collab.leases c
	   SET renewed_at = v_now, expires_at = collab._lease_expiry(v_now)
	 WHERE c.token = p_token AND c.expires_at > v_now
	RETURNING c.resource_id, c.token, c.expires_at INTO resource_id, token, expires_at;
	IF NOT FOUND THEN
		PERFORM collab._token_error(p_token, l.resource_id);
	END IF;
	INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id, reason)
		VALUES ('renew', l.resource_id, p_token, l.user_id, l.username, l.holder_id, 'renew');
END
$$;

/*
 * Every event payload and every object that payloads share (UserRef,
 * LockInfo, PresenceUser) is built by one C function (src/payloads.c).  The
 * PL/pgSQL functions below call those builders through these SQL functions;
 * none of them builds such an object itself.
 */
CREATE OR REPLACE FUNCTION collab._ts(t timestamptz) RETURNS text
	AS 'MODULE_PATHNAME', 'collab_ts_sql' LANGUAGE C STABLE STRICT;
CREATE OR REPLACE FUNCTION collab._user_ref(p_user_id text, p_username text) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'collab_user_ref_sql' LANGUAGE C STABLE;
CREATE FUNCTION collab._lock_info(p_resource_id text, p_user_id text, p_username text,
	p_acquired_at timestamptz, p_expires_at timestamptz, p_token bigint DEFAULT NULL) RETURNS jsonb
	AS 'MODULE_PATHNAME', 'collab_lock_info_sql' LANGUAGE C STABLE;
CREATE FUNCTION collab._presence_user(p_user_id text, p_username text, p_connection_id text,
	p_role text, p_joined_at timestamptz, p_resource_id text) RETURNS text
	AS 'MODULE_PATHNAME', 'collab_presence_user_sql' LANGUAGE C STABLE;
CREATE FUNCTION collab._publish_presence_joined(p_resource_id text, p_user text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_publish_presence_joined' LANGUAGE C;
CREATE FUNCTION collab._publish_presence_left(p_resource_id text, p_user text, p_reason text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_publish_presence_left' LANGUAGE C;
CREATE FUNCTION collab._publish_lock_requested(p_resource_id text, p_user_id text, p_username text,
	p_requested_at timestamptz, p_holder_id text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_publish_lock_requested' LANGUAGE C;
REVOKE ALL ON FUNCTION collab._lock_info(text, text, text, timestamptz, timestamptz, bigint),
	collab._presence_user(text, text, text, text, timestamptz, text),
	collab._publish_presence_joined(text, text),
	collab._publish_presence_left(text, text, text),
	collab._publish_lock_requested(text, text, text, timestamptz, text)
	FROM PUBLIC;

CREATE OR REPLACE FUNCTION collab._ws_presence_json() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	NEW.user_json := collab._presence_user(NEW.user_id, NEW.username, NEW.connection_id,
		NEW.role, NEW.joined_at, NEW.resource_id);
	RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION collab._children_json(p_resource_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('resourceId', r.id, 'kind', r.kind, 'title', r.title,
		'version', r.version,
		'lock', collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at))
		ORDER BY r.created_at, r.id), '[]')
	  FROM collab.resources r
	  LEFT JOIN collab.leases l ON l.resource_id = r.id AND l.expires_at > clock_timestamp()
	 WHERE r.parent_id = p_resource_id);
END
$$;

-- The worker passes p_users false and reads the users itself once the room
-- has heard of the join (join_users_done in src/session.c), adding them to
-- the acknowledgement as this function does with p_users true.
CREATE OR REPLACE FUNCTION collab.ws_join(p_conn text, p_resource_id text, p_mode text,
	p_users boolean DEFAULT true, OUT ack text, OUT token bigint, OUT users text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
	p collab.ws_presence;
	a record;
	v_role text := 'viewer';
	v_lock jsonb := 'null';
	v_token bigint;
	l collab.leases;
BEGIN
	IF p_mode IS NULL OR p_mode NOT IN ('editor', 'viewer') THEN
		PERFORM collab._raise('BAD_REQUEST', 'mode must be "editor" or "viewer"');
	END IF;
	PERFORM collab._check_resource(p_resource_id);
	c := collab._ws_conn(p_conn);

	IF p_mode = 'editor' THEN
		SELECT * INTO a FROM collab.acquire(p_resource_id, c.user_id, c.username, p_conn);
		IF a.granted THEN
			v_role := 'editor';
			v_token := a.token;
		END IF;
		-- the token (NULL unless granted) only for the new holder
		v_lock := collab._lock_info(a.holder_resource_id, a.holder_user_id, a.holder_username,
			a.acquired_at, a.expires_at, a.token);
	ELSE
		-- a viewer still learns who holds the lock, if anyone does
		SELECT * INTO l FROM collab.leases WHERE resource_id = p_resource_id AND expires_at > clock_timestamp();
		IF FOUND THEN
			v_lock := collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at);
			v_role := CASE WHEN l.holder_id = p_conn THEN 'editor' ELSE 'viewer' END;
		END IF;
	END IF;

	INSERT INTO collab.ws_presence (connection_id, resource_id, user_id, username, role)
		VALUES (p_conn, p_resource_id, c.user_id, c.username, v_role)
	ON CONFLICT (connection_id, resource_id) DO UPDATE SET role = EXCLUDED.role
	RETURNING * INTO p;
	-- deleted while we joined? (see collab.ws_presence: no foreign key)
	PERFORM collab._check_resource(p_resource_id);
	PERFORM collab._publish_presence_joined(p_resource_id, p.user_json);

	token := v_token;
	ack := '{"ok":true,"role":' || to_json(v_role)::text || ',"lock":' || v_lock::text
		|| ',"resource":' || collab._resource_json(p_resource_id)::text
		|| ',"children":' || collab._children_json(p_resource_id)::text || '}';
	IF p_users THEN
		users := collab._room_users(p_resource_id);
		ack := left(ack, -1) || ',"users":' || users || '}';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION collab.ws_request(p_conn text, p_resource_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
	l collab.leases;
	v_at timestamptz;
BEGIN
	PERFORM collab._ws_presence(p_conn, p_resource_id);
	c := collab._ws_conn(p_conn);
	PERFORM collab._lock_path(p_resource_id);
	SELECT * INTO l FROM collab.leases x
	 WHERE (x.resource_id = ANY (collab.ancestors(p_resource_id) || p_resource_id)
			OR (x.resource_id > p_resource_id || '/' AND x.resource_id < p_resource_id || '0'))
	   AND x.expires_at > clock_timestamp()
	 ORDER BY x.resource_id LIMIT 1;
	IF NOT FOUND THEN
		RETURN collab.ws_acquire(p_conn, p_resource_id);
	END IF;
	IF l.holder_id = p_conn THEN
		PERFORM collab._raise('BAD_REQUEST', 'you hold this lock already');
	END IF;
	v_at := clock_timestamp();
	INSERT INTO collab.ws_lock_requests (resource_id, connection_id, requested_at)
		VALUES (p_resource_id, p_conn, v_at)
	ON CONFLICT (resource_id, connection_id) DO UPDATE SET requested_at = EXCLUDED.requested_at;
	PERFORM collab._publish_lock_requested(p_resource_id, c.user_id, c.username, v_at, l.holder_id);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'requested', true,
		'lock', collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at)));
END
$$;

CREATE OR REPLACE FUNCTION collab.ws_renew(p_conn text, p_resource_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
BEGIN
	PERFORM collab._ws_presence(p_conn, p_resource_id);
	l := collab._ws_lease(p_conn, p_resource_id, false);
	SELECT expires_at INTO l.expires_at FROM collab.renew(l.token);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true,
			'lock', collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at, l.token)),
		'token', l.token);
END
$$;

CREATE OR REPLACE FUNCTION collab._ws_drop_presence(p collab.ws_presence, p_lock_reason text, p_presence_reason text)
RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	l collab.leases;
BEGIN
	FOR l IN SELECT * FROM collab.leases WHERE holder_id = p.connection_id AND resource_id = p.resource_id LOOP
		IF l.expires_at > clock_timestamp() THEN
			PERFORM collab.release(l.token, p_lock_reason);
		ELSE
			PERFORM collab._lock_path(l.resource_id);
			PERFORM collab._expire_lease(l);
		END IF;
	END LOOP;
	DELETE FROM collab.ws_presence WHERE connection_id = p.connection_id AND resource_id = p.resource_id;
	DELETE FROM collab.ws_lock_requests WHERE connection_id = p.connection_id AND resource_id = p.resource_id;
	PERFORM collab._publish_presence_left(p.resource_id, p.user_json, p_presence_reason);
END
$$;

-- collab._lock_info() builds every LockInfo.
DROP FUNCTION collab._lock_json(record, boolean);
DROP FUNCTION collab._lease_json(collab.leases, boolean);

/*
 * What each object is for, so that \df+ collab.*, \dv+ collab.* and
 * \dt+ collab.* explain the extension (test/sql/comments.sql checks that
 * nothing in the schema goes without).  docs/sql-api.md has the details.
 */
-- roles
COMMENT ON ROLE collab_app IS 'collab: the application API (documents, locks, saves, presence); grant it to the application''s login role';
COMMENT ON ROLE collab_admin IS 'collab: collab_app plus force_release, sweep, pending_events and the audit trail';

-- tables, sequences and types
COMMENT ON TABLE collab.leases IS 'Editor locks, one row per lease; live while expires_at is in the future; holds the fencing tokens (granted to no role)';
COMMENT ON SEQUENCE collab.fencing_token_seq IS 'Fencing tokens: strictly increasing, never issued twice (also across crashes and dump/restore)';
COMMENT ON TABLE collab.audit IS 'Every grant, denial, renewal, release, expiry and forced release (shown by collab.audit_log)';
COMMENT ON SEQUENCE collab.audit_id_seq IS 'Ids of collab.audit rows';
COMMENT ON TYPE collab.audit_action IS 'What an audit row records: grant, deny, renew, release, expire, force_release';
COMMENT ON TABLE collab.ws_connections IS 'WebSocket connections of the worker(s), one row per session (shown by collab.connections)';
COMMENT ON TABLE collab.ws_presence IS 'Who is in which room, as editor or viewer, with the PresenceUser JSON; unlogged (shown by collab.presence)';
COMMENT ON TABLE collab.ws_lock_requests IS 'Edit hand-off: viewers who asked the holder of a lock for it, in order';
COMMENT ON DOMAIN collab.presence_role IS 'A role in a room: editor or viewer';

-- views
COMMENT ON VIEW collab.locks IS 'Live editor locks, without their tokens';
COMMENT ON VIEW collab.connections IS 'WebSocket connections of the worker(s) and the rooms each has joined';
COMMENT ON VIEW collab.presence IS 'Who is in which room, as editor or viewer';
COMMENT ON VIEW collab.audit_log IS 'The audit trail of lock decisions, without tokens';

-- the application API
COMMENT ON FUNCTION collab.create_document(text, text, text[]) IS 'Creates document:<p_key> and a tab for each of p_tabs; returns the document id';
COMMENT ON FUNCTION collab.add_tab(text, text, text) IS 'Creates the tab <p_document_id>/tab:<p_tab_key>; returns its id';
COMMENT ON FUNCTION collab.acquire(text, text, text, text) IS 'Asks for the editor lock of a resource: granted with a fencing token, renewed, or denied naming the holder';
COMMENT ON FUNCTION collab.renew(bigint) IS 'Renews the live lease of a token for collab.lock_ttl';
COMMENT ON FUNCTION collab.release(bigint, text) IS 'Releases the live lease of a token (released, left, disconnected); returns its resource id';
COMMENT ON FUNCTION collab.release_holder(text, text) IS 'Releases every live lease of a holder (a connection that went away); returns their resource ids';
COMMENT ON FUNCTION collab.force_release(text, text) IS 'Administrative: removes the live lease on a resource, whoever holds it, with a reason for the audit trail';
COMMENT ON FUNCTION collab.sweep() IS 'Administrative: removes the expired leases, records and announces each, and returns them';
COMMENT ON FUNCTION collab.save(text, bigint, text, bigint) IS 'Replaces a resource''s content if the token is its live lock (or an ancestor''s); returns the new version';
COMMENT ON FUNCTION collab.error_codes() IS 'The error codes of collab with their SQLSTATEs and meanings';
COMMENT ON FUNCTION collab.error_code(text) IS 'The collab error code of a SQLSTATE, NULL for any other';
COMMENT ON FUNCTION collab.resource_id_valid(text) IS 'Is this a valid resource id (kind:key segments separated by /)? Never raises';
COMMENT ON FUNCTION collab.check_resource_id(text) IS 'Raises RESOURCE_ID_INVALID, naming the rule and the byte offset, unless the id is valid';
COMMENT ON FUNCTION collab.parent_id(text) IS 'A resource id without its last segment; NULL for a top-level id';
COMMENT ON FUNCTION collab.ancestors(text) IS 'The proper ancestors of a resource id, root first';
COMMENT ON FUNCTION collab.lock_key(text) IS 'The advisory lock key of a resource path (a 64-bit hash)';
COMMENT ON FUNCTION collab.lock_ttl() IS 'The session''s collab.lock_ttl as an interval';
COMMENT ON FUNCTION collab.max_content_size() IS 'The session''s collab.max_content_size in bytes';
COMMENT ON FUNCTION collab.pending_events() IS 'The events this transaction will publish at commit (for tests and debugging)';

-- the WebSocket worker's calls, one per client command
COMMENT ON FUNCTION collab.ws_connect(text, text, integer, text, text, text, text) IS 'Worker: registers an authenticated connection';
COMMENT ON FUNCTION collab.ws_disconnect(text, text) IS 'Worker: a connection closed; releases its locks, leaves its rooms and removes it';
COMMENT ON FUNCTION collab.ws_worker_start(text, integer) IS 'Worker: releases the connections of a previous run of the worker (and of workers no longer running)';
COMMENT ON FUNCTION collab.ws_join(text, text, text, boolean) IS 'Worker: presence:join, with the lock when joining as editor; the acknowledgement, the token and the room''s users';
COMMENT ON FUNCTION collab.ws_leave(text, text) IS 'Worker: presence:leave, releasing the connection''s lock on the resource';
COMMENT ON FUNCTION collab.ws_acquire(text, text) IS 'Worker: lock:acquire of a connection in the room; {"ack": ..., "token": ...} as text';
COMMENT ON FUNCTION collab.ws_renew(text, text) IS 'Worker: lock:renew of the connection''s own lease';
COMMENT ON FUNCTION collab.ws_release(text, text) IS 'Worker: lock:release of the connection''s own lease';
COMMENT ON FUNCTION collab.ws_request(text, text) IS 'Worker: lock:request, a viewer asking the holder for the lock (granted at once if free)';
COMMENT ON FUNCTION collab.ws_save(text, text, text, bigint, bigint) IS 'Worker: doc:save with the connection''s own lease';

-- internal steps and checks
COMMENT ON FUNCTION collab._check_preloaded() IS 'Internal: raises unless collab is in shared_preload_libraries';
COMMENT ON FUNCTION collab._raise(text, text, text, text) IS 'Internal: raises the error of a collab error code with its SQLSTATE';
COMMENT ON FUNCTION collab._next_token() IS 'Internal: the next fencing token, made durable at commit';
COMMENT ON FUNCTION collab._lock_path(text) IS 'Internal: takes the advisory locks of a resource path for the transaction (shared on ancestors, exclusive on the resource)';
COMMENT ON FUNCTION collab._try_lock_path(text) IS 'Internal: the locks of _lock_path without waiting; false if another transaction holds one';
COMMENT ON FUNCTION collab._publish(text) IS 'Internal: queues one event (JSON) for publication at commit';
COMMENT ON FUNCTION collab._require_read_committed() IS 'Internal: raises unless the transaction is READ COMMITTED, as lock decisions need';
COMMENT ON FUNCTION collab._check_identity(text, text) IS 'Internal: raises unless a user id, username or holder id is 1 to 256 bytes without control characters';
COMMENT ON FUNCTION collab._check_user(text, text) IS 'Internal: checks a user id and username (_check_identity)';
COMMENT ON FUNCTION collab._check_resource(text) IS 'Internal: raises unless the resource id is valid and the resource exists';
COMMENT ON FUNCTION collab._token_error(bigint, text) IS 'Internal: raises the right error (LOCK_EXPIRED or LOCK_NOT_HELD) for a token that is not a live lease';
COMMENT ON FUNCTION collab._insert_resource(text, text) IS 'Internal: inserts a document or tab row under an existing parent';
COMMENT ON FUNCTION collab._expire_lease(collab.leases) IS 'Internal: removes an expired lease, records it and publishes lock:expired';
COMMENT ON FUNCTION collab._drop_lease(collab.leases, text, text) IS 'Internal: removes a live lease, records it, publishes lock:released and hands the lock to a requester';
COMMENT ON FUNCTION collab._hand_off(text) IS 'Internal: offers a freed lock to the first viewer in the room who asked for it';
COMMENT ON FUNCTION collab._lease_expiry(timestamptz) IS 'Internal: when a lease granted or renewed at a time expires (collab.lock_ttl later)';
COMMENT ON FUNCTION collab._guard_update() IS 'Trigger: the guard on collab.resources; content changes only with the live lock''s token';
COMMENT ON FUNCTION collab._ws_presence_json() IS 'Trigger: keeps the PresenceUser JSON of a presence row';
COMMENT ON FUNCTION collab._ws_connection_gone() IS 'Trigger: a deleted connection takes its presence rows with it';
COMMENT ON FUNCTION collab._resource_gone() IS 'Trigger: a deleted resource takes its presence rows with it, waiting for joins in flight';
COMMENT ON FUNCTION collab._room_users(text) IS 'Internal: the PresenceUsers of a room and of its descendants'' rooms, as a JSON array in joining order';
COMMENT ON FUNCTION collab._ws_conn(text) IS 'Internal: a registered connection, or INTERNAL';
COMMENT ON FUNCTION collab._ws_presence(text, text) IS 'Internal: a connection''s presence row in a room, or NOT_JOINED';
COMMENT ON FUNCTION collab._ws_lease(text, text, boolean) IS 'Internal: a connection''s own lease on a resource (or an ancestor), or LOCK_EXPIRED / LOCK_NOT_HELD';
COMMENT ON FUNCTION collab._ws_drop_presence(collab.ws_presence, text, text) IS 'Internal: leaves a room, releasing the connection''s lease there, and publishes presence:left';
COMMENT ON FUNCTION collab._resource_json(text) IS 'Internal: a resource''s content, version and last saver, for a joiner';
COMMENT ON FUNCTION collab._children_json(text) IS 'Internal: a resource''s children (tabs) with their versions and live locks, for a joiner';

-- the payload builders of src/payloads.c
COMMENT ON FUNCTION collab._ts(timestamptz) IS 'Payloads: a time as ISO 8601 in UTC with milliseconds';
COMMENT ON FUNCTION collab._user_ref(text, text) IS 'Payloads: a UserRef {userId, username}';
COMMENT ON FUNCTION collab._lock_info(text, text, text, timestamptz, timestamptz, bigint) IS 'Payloads: a LockInfo, with the token only when one is given; NULL for no lease';
COMMENT ON FUNCTION collab._presence_user(text, text, text, text, timestamptz, text) IS 'Payloads: a PresenceUser, as stored with its presence row';
COMMENT ON FUNCTION collab._publish_presence_joined(text, text) IS 'Payloads: builds and queues presence:joined';
COMMENT ON FUNCTION collab._publish_presence_left(text, text, text) IS 'Payloads: builds and queues presence:left';
COMMENT ON FUNCTION collab._publish_lock_requested(text, text, text, timestamptz, text) IS 'Payloads: builds and queues lock:requested';
