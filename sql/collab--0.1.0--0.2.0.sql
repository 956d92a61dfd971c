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
 * PL/pgSQL functions below call those builders through these SQL functions
 * instead of building the same JSON with jsonb_build_object().
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

-- Built by collab._lock_info() now.
DROP FUNCTION collab._lock_json(record, boolean);
DROP FUNCTION collab._lease_json(collab.leases, boolean);
