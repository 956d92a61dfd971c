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
 * Shared payload builders and lease expiry (first: the sections below
 * build on them)
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
	p_acquired_at timestamptz, p_expires_at timestamptz, p_token bigint DEFAULT NULL,
	p_suspended_until timestamptz DEFAULT NULL) RETURNS jsonb
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
REVOKE ALL ON FUNCTION collab._lock_info(text, text, text, timestamptz, timestamptz, bigint, timestamptz),
	collab._presence_user(text, text, text, text, timestamptz, text),
	collab._publish_presence_joined(text, text),
	collab._publish_presence_left(text, text, text),
	collab._publish_lock_requested(text, text, text, timestamptz, text)
	FROM PUBLIC;

-- The presence row's PresenceUser, in C with the builder (src/payloads.c);
-- the trigger on UPDATE decides itself whether the statement set user_json,
-- so that no WHEN clause is read back from the catalog per statement.
CREATE OR REPLACE FUNCTION collab._ws_presence_json() RETURNS trigger
	AS 'MODULE_PATHNAME', 'collab_ws_presence_json' LANGUAGE C;
DROP TRIGGER ws_presence_json_update ON collab.ws_presence;
CREATE TRIGGER ws_presence_json_update BEFORE UPDATE ON collab.ws_presence
	FOR EACH ROW EXECUTE FUNCTION collab._ws_presence_json();

CREATE OR REPLACE FUNCTION collab._children_json(p_resource_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('resourceId', r.id, 'kind', r.kind, 'title', r.title,
		'version', r.version,
		'lock', collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at,
			NULL, l.suspended_until))
		ORDER BY r.created_at, r.id), '[]')
	  FROM collab.resources r
	  LEFT JOIN collab.leases l ON l.resource_id = r.id AND l.expires_at > clock_timestamp()
	 WHERE r.parent_id = p_resource_id);
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

/* ------------------------------------------------------------------------
 * Sessions that outlive their transport: the holder's grace
 * ------------------------------------------------------------------------ */

/*
 * A browser connection lost uncleanly (its transport closed without a close
 * packet or a Socket.IO DISCONNECT, or it stopped answering pings) is
 * detached rather than removed (collab.ws_detach()): its presence rows go
 * (presence:left), its rooms and roles stay with the connection row, and
 * its live leases are suspended until now + collab.disconnect_grace
 * (lock:suspended).  A suspended lease is still its holder's: nobody else
 * acquires it and no save without its token passes; its TTL keeps running,
 * and one that passes it expires as any lease.  The holder is back when the
 * connection returns (collab.ws_resume(): presence:joined, lock:resumed) or
 * when the same user joins the resource again as editor from a new
 * connection, which takes the lease over with a new token (src/leases.c).
 * Otherwise the sweep ends the grace (collab._end_graces()): the lease is
 * released with reason "disconnected" and a queued lock:request is served;
 * once the grace and collab.recovery_window have both passed, the
 * connection row goes as well.  A clean end (presence:leave, lock:release,
 * a close packet, a DISCONNECT) still releases at once, and so does every
 * loss with collab.disconnect_grace = 0.
 */

ALTER TABLE collab.leases ADD COLUMN suspended_until timestamptz;
COMMENT ON COLUMN collab.leases.suspended_until IS 'Set while the holder''s connection is lost: the lease is kept for it until then (collab.disconnect_grace); NULL while the holder is connected';
ALTER TABLE collab.ws_connections
	ADD COLUMN detached_at timestamptz,
	ADD COLUMN detached_rooms jsonb;
COMMENT ON COLUMN collab.ws_connections.detached_at IS 'When the connection was lost uncleanly (NULL: connected); it may return until collab.recovery_window has passed';
COMMENT ON COLUMN collab.ws_connections.detached_rooms IS 'A detached connection''s rooms, [{resourceId, role, joinedAt}], in which its return places it again';
-- The sweep looks for detached connections every collab.sweep_interval, in
-- the worker's event loop: through this index it reads the detached
-- connections only, not every connection's row.
CREATE INDEX ws_connections_detached_idx ON collab.ws_connections (detached_at)
	WHERE detached_at IS NOT NULL;
COMMENT ON INDEX collab.ws_connections_detached_idx IS 'The detached connections, for the sweep';
-- The tables whose rows come and go with every lock and connection keep
-- their pages when vacuumed.  A vacuum that truncated one to nothing would
-- make the plans the worker keeps sequential scans (an empty table costs
-- nothing to scan), and the table, refilled faster than pruning frees its
-- pages for inserts, would then be read whole by every lock decision until
-- the next vacuum.  Kept pages are reused through the free space map, so
-- each table stays at the size its busiest moment needed.
ALTER TABLE collab.leases SET (vacuum_truncate = off);
ALTER TABLE collab.ws_presence SET (vacuum_truncate = off);
ALTER TABLE collab.ws_lock_requests SET (vacuum_truncate = off);
ALTER TABLE collab.ws_connections SET (vacuum_truncate = off);
-- what a detached connection's lease went through (collab.audit_log)
ALTER TYPE collab.audit_action ADD VALUE 'suspend';
ALTER TYPE collab.audit_action ADD VALUE 'resume';

/* The settings (src/collab.c) */
CREATE FUNCTION collab.disconnect_grace() RETURNS interval
	AS 'MODULE_PATHNAME', 'collab_disconnect_grace_sql' LANGUAGE C STABLE;
COMMENT ON FUNCTION collab.disconnect_grace() IS 'The session''s collab.disconnect_grace as an interval: how long a lock stays with a holder whose connection was lost';
CREATE FUNCTION collab.recovery_window() RETURNS interval
	AS 'MODULE_PATHNAME', 'collab_recovery_window_sql' LANGUAGE C STABLE;
COMMENT ON FUNCTION collab.recovery_window() IS 'The session''s collab.recovery_window as an interval: how long a connection lost uncleanly may return';

/* The events' builders (src/payloads.c) */
CREATE FUNCTION collab._publish_lock_suspended(p_resource_id text, p_user_id text, p_username text,
	p_holder_id text, p_expires_at timestamptz, p_until timestamptz) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_publish_lock_suspended' LANGUAGE C;
COMMENT ON FUNCTION collab._publish_lock_suspended(text, text, text, text, timestamptz, timestamptz) IS 'Payloads: builds and queues lock:suspended';
CREATE FUNCTION collab._publish_lock_resumed(p_resource_id text, p_user_id text, p_username text,
	p_holder_id text, p_expires_at timestamptz) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_publish_lock_resumed' LANGUAGE C;
COMMENT ON FUNCTION collab._publish_lock_resumed(text, text, text, text, timestamptz) IS 'Payloads: builds and queues lock:resumed for a holder back on its own connection';

-- A connection lost uncleanly (p_reason 'disconnected', or 'timeout' for a
-- peer that stopped answering pings).  Its leases are suspended (an
-- expired one expires), then it leaves its rooms, which it keeps for its
-- return.  Detaching twice changes nothing; with collab.disconnect_grace =
-- 0 it is collab.ws_disconnect().
CREATE FUNCTION collab.ws_detach(p_conn text, p_reason text DEFAULT 'disconnected')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
	p collab.ws_presence;
	l collab.leases;
	v_id text;
	v_grace interval := collab.disconnect_grace();
	v_rooms jsonb;
BEGIN
	PERFORM collab._require_read_committed();
	IF p_reason IS NULL OR p_reason NOT IN ('disconnected', 'timeout') THEN
		PERFORM collab._raise('BAD_REQUEST', 'reason must be disconnected or timeout');
	END IF;
	SELECT * INTO c FROM collab.ws_connections WHERE connection_id = p_conn FOR UPDATE;
	IF NOT FOUND OR c.detached_at IS NOT NULL THEN
		RETURN;
	END IF;
	IF v_grace <= interval '0' THEN
		PERFORM collab.ws_disconnect(p_conn, p_reason);
		RETURN;
	END IF;
	FOR v_id IN SELECT x.resource_id FROM collab.leases x WHERE x.holder_id = p_conn ORDER BY 1 LOOP
		PERFORM collab._lock_path(v_id);
		SELECT * INTO l FROM collab.leases x WHERE x.resource_id = v_id AND x.holder_id = p_conn FOR UPDATE;
		CONTINUE WHEN NOT FOUND;
		IF l.expires_at <= clock_timestamp() THEN
			PERFORM collab._expire_lease(l);
			CONTINUE;
		END IF;
		UPDATE collab.leases x SET suspended_until = clock_timestamp() + v_grace
		 WHERE x.token = l.token
		RETURNING * INTO l;
		INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id, reason, detail)
			VALUES ('suspend', l.resource_id, l.token, l.user_id, l.username, l.holder_id, p_reason,
				jsonb_build_object('until', collab._ts(l.suspended_until)));
		PERFORM collab._publish_lock_suspended(l.resource_id, l.user_id, l.username, l.holder_id,
			l.expires_at, l.suspended_until);
	END LOOP;
	-- its rooms, kept for its return; its lock requests stay queued (a
	-- hand-off passes over a requester that is in no room)
	SELECT coalesce(jsonb_agg(jsonb_build_object('resourceId', x.resource_id, 'role', x.role,
			'joinedAt', x.joined_at) ORDER BY x.joined_at, x.resource_id), '[]')
	  INTO v_rooms FROM collab.ws_presence x WHERE x.connection_id = p_conn;
	FOR p IN SELECT * FROM collab.ws_presence WHERE connection_id = p_conn ORDER BY resource_id DESC LOOP
		DELETE FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = p.resource_id;
		PERFORM collab._publish_presence_left(p.resource_id, p.user_json, p_reason);
	END LOOP;
	UPDATE collab.ws_connections SET detached_at = clock_timestamp(), detached_rooms = v_rooms
	 WHERE connection_id = p_conn;
END
$$;
COMMENT ON FUNCTION collab.ws_detach(text, text) IS 'Worker: a connection lost uncleanly; suspends its leases for collab.disconnect_grace (lock:suspended), leaves its rooms (presence:left) and keeps it, detached, for its return';

-- A detached connection of p_user_id returns (a recovering client, with
-- the groups and iat of the token it presented, on worker p_worker): its
-- rooms are joined again where it may still view them (presence:joined),
-- with the role it had (editor where it gets its lease back), and its
-- suspended leases are resumed where it may still edit (lock:resumed).  A
-- lease whose grace has ended is released as the sweep would release it
-- (reason "disconnected"), one on a resource it may no longer edit with
-- reason "revoked"; an expired one expires.  Returns {"rooms":
-- [{resourceId, role, permissions}], "locks": [{resourceId, token,
-- expiresAt}], "left": [resourceId]} (left: rooms it may no longer view
-- or that are gone), or NULL when there is nothing to return to: no such
-- connection, one not detached, another user's, or one detached longer
-- than collab.recovery_window.  AUTH_TOKEN_REVOKED for a revoked token.
CREATE FUNCTION collab.ws_resume(p_conn text, p_user_id text,
	p_groups text[] DEFAULT NULL, p_iat bigint DEFAULT NULL,
	p_worker text DEFAULT NULL, p_worker_pid integer DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
	v_groups text[] := collab._check_groups(p_groups);
	v_issued timestamptz := collab._issued_at(p_iat);
	r record;
	l collab.leases;
	p collab.ws_presence;
	v_id text;
	v_level collab.permission;
	v_levels jsonb := '{}';
	v_resumed text[] := '{}';
	v_rooms jsonb := '[]';
	v_locks jsonb := '[]';
	v_left jsonb := '[]';
	v_role text;
BEGIN
	PERFORM collab._require_read_committed();
	SELECT * INTO c FROM collab.ws_connections WHERE connection_id = p_conn FOR UPDATE;
	IF NOT FOUND OR c.detached_at IS NULL OR c.user_id IS DISTINCT FROM p_user_id
	   OR c.detached_at + collab.recovery_window() <= clock_timestamp() THEN
		RETURN NULL;
	END IF;
	IF collab._revoked(c.user_id, v_issued) THEN
		PERFORM collab._log_refusal('connect', c.user_id, c.username, NULL, c.address,
			jsonb_build_object('reason', 'revoked', 'issuedAt', collab._ts(v_issued), 'resume', true,
							   'connectionId', p_conn)::text);
		PERFORM collab._raise_revoked();
	END IF;
	UPDATE collab.ws_connections
	   SET detached_at = NULL, detached_rooms = NULL, groups = v_groups, token_issued_at = v_issued,
		   worker = coalesce(p_worker, worker), worker_pid = coalesce(p_worker_pid, worker_pid)
	 WHERE connection_id = p_conn;

	-- what it may do in each room now: the access locks first, as a join
	-- takes them, then the path locks of its leases
	FOR r IN SELECT x."resourceId" AS resource_id
			   FROM jsonb_to_recordset(coalesce(c.detached_rooms, '[]')) AS x("resourceId" text)
			  ORDER BY 1 LOOP
		PERFORM collab._lock_access(r.resource_id, false);
		v_level := NULL;
		IF EXISTS (SELECT FROM collab.resources WHERE id = r.resource_id) THEN
			v_level := collab._level(c.user_id, v_groups, r.resource_id);
		END IF;
		v_levels := v_levels || jsonb_build_object(r.resource_id, v_level);
	END LOOP;

	FOR v_id IN SELECT x.resource_id FROM collab.leases x WHERE x.holder_id = p_conn ORDER BY 1 LOOP
		PERFORM collab._lock_path(v_id);
		SELECT * INTO l FROM collab.leases x WHERE x.resource_id = v_id AND x.holder_id = p_conn FOR UPDATE;
		CONTINUE WHEN NOT FOUND;
		IF l.expires_at <= clock_timestamp() THEN
			PERFORM collab._expire_lease(l);
			PERFORM collab._hand_off(l.resource_id);
		ELSIF l.suspended_until <= clock_timestamp() THEN
			PERFORM collab._drop_lease(l, 'release', 'disconnected');
		ELSIF NOT coalesce((v_levels ->> l.resource_id)::collab.permission >= 'edit', false) THEN
			PERFORM collab._drop_lease(l, 'release', 'revoked');
		ELSE
			IF l.suspended_until IS NOT NULL THEN
				UPDATE collab.leases x SET suspended_until = NULL WHERE x.token = l.token;
				INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id, reason)
					VALUES ('resume', l.resource_id, l.token, l.user_id, l.username, l.holder_id, 'returned');
				PERFORM collab._publish_lock_resumed(l.resource_id, l.user_id, l.username, l.holder_id,
					l.expires_at);
			END IF;
			v_resumed := v_resumed || l.resource_id;
			v_locks := v_locks || jsonb_build_object('resourceId', l.resource_id, 'token', l.token,
				'expiresAt', collab._ts(l.expires_at));
		END IF;
	END LOOP;

	-- its rooms again, in their joining order, as they were
	FOR r IN SELECT x."resourceId" AS resource_id, x."joinedAt" AS joined_at
			   FROM jsonb_to_recordset(coalesce(c.detached_rooms, '[]')) AS x("resourceId" text, "joinedAt" timestamptz)
			  ORDER BY x."joinedAt", x."resourceId" LOOP
		v_level := (v_levels ->> r.resource_id)::collab.permission;
		IF v_level IS NULL THEN
			v_left := v_left || to_jsonb(r.resource_id);
			CONTINUE;
		END IF;
		v_role := CASE WHEN r.resource_id = ANY (v_resumed) THEN 'editor' ELSE 'viewer' END;
		INSERT INTO collab.ws_presence (connection_id, resource_id, user_id, username, role, joined_at)
			VALUES (p_conn, r.resource_id, c.user_id, c.username, v_role, r.joined_at)
		ON CONFLICT (connection_id, resource_id) DO NOTHING
		RETURNING * INTO p;
		CONTINUE WHEN p.connection_id IS NULL;
		-- deleted since? (see collab.ws_presence: no foreign key)
		IF NOT EXISTS (SELECT FROM collab.resources WHERE id = r.resource_id) THEN
			DELETE FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = r.resource_id;
			v_left := v_left || to_jsonb(r.resource_id);
			CONTINUE;
		END IF;
		PERFORM collab._publish_presence_joined(r.resource_id, p.user_json);
		v_rooms := v_rooms || jsonb_build_object('resourceId', r.resource_id, 'role', v_role,
			'permissions', collab._permissions(v_level));
		p := NULL;
	END LOOP;
	RETURN jsonb_build_object('rooms', v_rooms, 'locks', v_locks, 'left', v_left);
END
$$;
COMMENT ON FUNCTION collab.ws_resume(text, text, text[], bigint, text, integer) IS 'Worker: a detached connection of the user returns within collab.recovery_window; joins its rooms again (presence:joined) and resumes its leases (lock:resumed), access checked again; NULL if there is nothing to return to';

-- Ends a detached connection: its leases released with p_reason (an
-- expired one expires) and its row removed.  Without p_wait, a path that
-- another transaction holds leaves the rest for later: false.
CREATE FUNCTION collab._ws_remove_detached(p_conn text, p_reason text, p_wait boolean) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	v_id text;
BEGIN
	FOR v_id IN SELECT x.resource_id FROM collab.leases x WHERE x.holder_id = p_conn ORDER BY 1 LOOP
		IF p_wait THEN
			PERFORM collab._lock_path(v_id);
		ELSIF NOT collab._try_lock_path(v_id) THEN
			RETURN false;
		END IF;
		SELECT * INTO l FROM collab.leases x WHERE x.resource_id = v_id AND x.holder_id = p_conn FOR UPDATE;
		CONTINUE WHEN NOT FOUND;
		IF l.expires_at <= clock_timestamp() THEN
			PERFORM collab._expire_lease(l);
			PERFORM collab._hand_off(l.resource_id);
		ELSE
			PERFORM collab._drop_lease(l, 'release', p_reason);
		END IF;
	END LOOP;
	DELETE FROM collab.ws_connections WHERE connection_id = p_conn;
	RETURN true;
END
$$;
COMMENT ON FUNCTION collab._ws_remove_detached(text, text, boolean) IS 'Internal: removes a detached connection, releasing its leases with a reason; without waiting for a busy path (false: left for later) unless told to';

-- A slice of the worker's sweep is over once it has done at least 100
-- things, whatever its query took, and its deadline has passed (none:
-- never).  A plain expression, inlined where the sweeps call it.
CREATE FUNCTION collab._slice_over(p_done integer, p_deadline timestamptz) RETURNS boolean
LANGUAGE sql VOLATILE AS $$
	SELECT p_done >= 100 AND clock_timestamp() > p_deadline
$$;
COMMENT ON FUNCTION collab._slice_over(integer, timestamptz) IS 'Internal (the sweeps): whether a slice of the worker''s sweep is over';
REVOKE ALL ON FUNCTION collab._slice_over(integer, timestamptz) FROM PUBLIC;

-- The sweep's part (collab.sweep()): graces that have ended, and detached
-- connections whose grace and recovery window have both passed.  Paths
-- and connections that another transaction holds are left to the next
-- sweep, as the expiries are.  With a deadline it stops when its slice is
-- over (collab._slice_over()) and answers true (more may be due), so that
-- the worker's sweeps stay short after a mass disconnection and each one
-- commits what it did.
-- Its queries are planned at each call (once a sweep): the detached
-- connections go from none to a whole worker's at once, and a plan kept
-- from when there were none sorted them all at every sweep.
CREATE FUNCTION collab._end_graces(p_deadline timestamptz DEFAULT NULL) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET plan_cache_mode = force_custom_plan AS $$
DECLARE
	l collab.leases;
	v_token bigint;
	v_id text;
	v_conn text;
	-- a value, not clock_timestamp() in the query: the index can serve it
	v_gone_before timestamptz := clock_timestamp() - greatest(collab.disconnect_grace(), collab.recovery_window());
	v_done integer := 0;
BEGIN
	FOR v_token, v_id IN
		SELECT x.token, x.resource_id FROM collab.leases x
		 WHERE x.suspended_until <= clock_timestamp()
		 ORDER BY x.suspended_until
	LOOP
		IF collab._try_lock_path(v_id) THEN
			SELECT * INTO l FROM collab.leases x WHERE x.token = v_token FOR UPDATE;
			IF FOUND AND l.suspended_until <= clock_timestamp() THEN
				IF l.expires_at <= clock_timestamp() THEN
					PERFORM collab._expire_lease(l);
					PERFORM collab._hand_off(l.resource_id);
				ELSE
					-- lock:released, then the hand-off to a queued lock:request
					PERFORM collab._drop_lease(l, 'release', 'disconnected');
				END IF;
			END IF;
		END IF;
		v_done := v_done + 1;
		IF collab._slice_over(v_done, p_deadline) THEN
			RETURN true;
		END IF;
	END LOOP;
	FOR v_conn IN
		SELECT c.connection_id FROM collab.ws_connections c
		 WHERE c.detached_at <= v_gone_before
		 ORDER BY c.detached_at
		 LIMIT 1000
		 FOR UPDATE SKIP LOCKED
	LOOP
		-- a row it must lock that is busy (a lock request being served)
		-- leaves this connection to the next sweep, not the sweep undone
		BEGIN
			PERFORM collab._ws_remove_detached(v_conn, 'disconnected', false);
		EXCEPTION WHEN lock_not_available THEN
			NULL;
		END;
		v_done := v_done + 1;
		IF collab._slice_over(v_done, p_deadline) THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;
COMMENT ON FUNCTION collab._end_graces(timestamptz) IS 'Internal (collab.sweep(), collab._sweep_until()): releases suspended leases whose grace has ended (reason disconnected, then the hand-off) and removes detached connections past their grace and recovery window; true when it stopped at its deadline';


REVOKE ALL ON FUNCTION collab.disconnect_grace(), collab.recovery_window(),
	collab._publish_lock_suspended(text, text, text, text, timestamptz, timestamptz),
	collab._publish_lock_resumed(text, text, text, text, timestamptz),
	collab.ws_detach(text, text), collab.ws_resume(text, text, text[], bigint, text, integer),
	collab._ws_remove_detached(text, text, boolean), collab._end_graces(timestamptz)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION collab.disconnect_grace(), collab.recovery_window() TO collab_app, collab_admin;

/* ------------------------------------------------------------------------
 * Access control: grants, permissions, session revocation, access trail
 * ------------------------------------------------------------------------ */

/*
 * Who may view and edit what (docs/access-control.md).  Grants name a
 * resource, a subject ('*', 'user:<sub>', 'group:<name>') and a permission;
 * a grant on a resource covers its descendants.  A grant or revoke takes
 * its resource's access lock and path lock exclusively (src/access.c,
 * src/lock_path.c); a join takes the access locks of its path in share
 * mode, a save or lock decision its path locks, and each decides after
 * taking them.  So a revoke and a save on the same path run one after the
 * other: the save either commits first or sees the revoke.
 */

-- An enum: ordered, so that max() is the strongest grant and >= "implies".
CREATE TYPE collab.permission AS ENUM ('view', 'edit', 'admin');
COMMENT ON TYPE collab.permission IS 'view < edit < admin: each permission implies the ones before it';

CREATE TABLE collab.acl (
	resource_id	text COLLATE "C" NOT NULL REFERENCES collab.resources (id) ON DELETE CASCADE,
	subject		text COLLATE "C" NOT NULL
				CHECK (subject = '*' OR subject LIKE 'user:_%' OR subject LIKE 'group:_%'),
	permission	collab.permission NOT NULL,
	granted_by	name NOT NULL DEFAULT session_user,
	granted_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	-- a decision looks up (path ids) x (the user's subjects): this index
	PRIMARY KEY (resource_id, subject, permission)
);
-- what one user or group has been granted, for audits and revocations
CREATE INDEX acl_subject_idx ON collab.acl (subject);
COMMENT ON TABLE collab.acl IS 'Grants: a permission on a resource (and its descendants) for a subject; changed with collab.grant() and collab.revoke()';

CREATE TABLE collab.session_revocations (
	user_id		text PRIMARY KEY,
	revoked_before timestamptz NOT NULL,
	reason		text NOT NULL,
	revoked_by	name NOT NULL DEFAULT session_user
);
COMMENT ON TABLE collab.session_revocations IS 'Per user, the time before which every token of theirs is refused (collab.revoke_sessions())';

-- What an access decision about a connection needs, kept with it.
ALTER TABLE collab.ws_connections
	ADD COLUMN groups text[] NOT NULL DEFAULT '{}',
	ADD COLUMN token_issued_at timestamptz;
COMMENT ON COLUMN collab.ws_connections.groups IS 'The token''s groups (collab.jwt_groups_claim), validated, sorted, without duplicates';
COMMENT ON COLUMN collab.ws_connections.token_issued_at IS 'The token''s iat (NULL: the token had none), compared with collab.session_revocations';

/*
 * The access trail, in one logged table: an entry of a join (a read of
 * content) commits with the join, and the worker sends the joiner the
 * content only once that commit is durable (src/jobs.c), so that no content
 * leaves the server unrecorded.  Grants, revokes and session revocations
 * are written there too.
 */
CREATE TYPE collab.access_action AS ENUM ('connect', 'join', 'grant', 'revoke', 'revoke_sessions',
	'history', 'revision');
COMMENT ON TYPE collab.access_action IS 'What an access-log entry records';
CREATE TYPE collab.access_outcome AS ENUM ('allowed', 'refused');
COMMENT ON TYPE collab.access_outcome IS 'Whether the access recorded was allowed or refused';

CREATE SEQUENCE collab.access_id_seq AS bigint;
COMMENT ON SEQUENCE collab.access_id_seq IS 'Ids of collab.access_entries';
CREATE TABLE collab.access_entries (
	id			bigint PRIMARY KEY DEFAULT nextval('collab.access_id_seq'),
	at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	action		collab.access_action NOT NULL,
	outcome		collab.access_outcome NOT NULL,
	user_id		text,
	username	text,
	resource_id	text COLLATE "C",
	address		text,
	actor		name NOT NULL DEFAULT session_user,
	detail		jsonb
);
ALTER SEQUENCE collab.access_id_seq OWNED BY collab.access_entries.id;
-- "who opened this report", "what did this user open", and the retention
CREATE INDEX access_entries_resource_idx ON collab.access_entries (resource_id, at);
CREATE INDEX access_entries_user_idx ON collab.access_entries (user_id, at);
CREATE INDEX access_entries_at_idx ON collab.access_entries (at);
COMMENT ON TABLE collab.access_entries IS 'The access trail (read it through collab.access_log)';

CREATE VIEW collab.access_log AS
	SELECT id, at, action::text AS action, outcome::text AS outcome, user_id, username,
		   resource_id, address, actor, detail
	  FROM collab.access_entries;
COMMENT ON VIEW collab.access_log IS 'Who joined (read) which resource, or was refused, and every grant, revoke and session revocation';

CREATE VIEW collab.grants AS
	SELECT resource_id, subject, permission::text AS permission, granted_by, granted_at
	  FROM collab.acl;
COMMENT ON VIEW collab.grants IS 'Every grant: who (subject) may do what (permission) on which resource and its descendants';

/* C helpers (src/access.c) */
CREATE FUNCTION collab._lock_access(resource_id text, exclusive boolean) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_lock_access' LANGUAGE C STRICT;
COMMENT ON FUNCTION collab._lock_access(text, boolean) IS 'The access locks of a path: shared by joins (each segment), exclusive for a grant or revoke (the resource); apart from the path locks of lock decisions';
CREATE FUNCTION collab._log_refusal(action text, user_id text, username text, resource_id text,
	address text, detail text)
	RETURNS void AS 'MODULE_PATHNAME', 'collab_log_refusal' LANGUAGE C;
COMMENT ON FUNCTION collab._log_refusal(text, text, text, text, text, text) IS 'Records a refused access in the trail when the top transaction commits, even if the request that was refused rolls back';
CREATE FUNCTION collab.access_log_retention() RETURNS interval
	AS 'MODULE_PATHNAME', 'collab_access_log_retention' LANGUAGE C STABLE;
COMMENT ON FUNCTION collab.access_log_retention() IS 'collab.access_log_retention as an interval; NULL: entries are kept';

/* Errors written once */
CREATE FUNCTION collab._raise_not_found(p_resource_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._raise('RESOURCE_NOT_FOUND',
		format('resource "%s" does not exist', p_resource_id),
		NULL, 'Create it with collab.create_document() or collab.add_tab().');
END
$$;
COMMENT ON FUNCTION collab._raise_not_found(text) IS 'RESOURCE_NOT_FOUND: for a missing resource and, identically, for one the caller may not view';

CREATE OR REPLACE FUNCTION collab._check_resource(p_resource_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	IF NOT EXISTS (SELECT FROM collab.resources WHERE id = p_resource_id) THEN
		PERFORM collab._raise_not_found(p_resource_id);
	END IF;
END
$$;

CREATE FUNCTION collab._raise_revoked() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._raise('AUTH_TOKEN_REVOKED', 'this session was revoked: sign in again',
		NULL, 'Connect with a token issued after the revocation.');
END
$$;
COMMENT ON FUNCTION collab._raise_revoked() IS 'AUTH_TOKEN_REVOKED for a token issued before its user''s sessions were revoked';

/* Validation */
CREATE FUNCTION collab._check_user_id(p_user_id text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._check_identity('user_id', p_user_id);
	IF p_user_id = '*' THEN
		PERFORM collab._raise('BAD_REQUEST', 'user_id "*" is not a user',
			'In grants "*" stands for every authenticated user.');
	END IF;
END
$$;
COMMENT ON FUNCTION collab._check_user_id(text) IS 'Raises BAD_REQUEST unless p_user_id is a valid identity other than "*"';

-- Sorted and without duplicates, so that two sets of groups compare equal.
CREATE FUNCTION collab._check_groups(p_groups text[]) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	g text;
BEGIN
	IF p_groups IS NULL THEN
		RETURN '{}';
	END IF;
	IF array_ndims(p_groups) > 1 OR cardinality(p_groups) > 256 THEN
		PERFORM collab._raise('BAD_REQUEST', 'groups must be a one-dimensional array of at most 256 group names');
	END IF;
	FOREACH g IN ARRAY p_groups LOOP
		PERFORM collab._check_identity('a group name', g);
	END LOOP;
	RETURN ARRAY(SELECT DISTINCT x COLLATE "C" FROM unnest(p_groups) x ORDER BY 1);
END
$$;
COMMENT ON FUNCTION collab._check_groups(text[]) IS 'Validates a user''s groups (NULL: none); returns them sorted, without duplicates';

CREATE FUNCTION collab._check_subject(p_subject text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_subject = '*' THEN
		RETURN;
	END IF;
	IF p_subject IS NULL OR (p_subject NOT LIKE 'user:%' AND p_subject NOT LIKE 'group:%') THEN
		PERFORM collab._raise('BAD_REQUEST', 'subject must be "*", "user:<user id>" or "group:<group name>"');
	END IF;
	IF p_subject IN ('user:*', 'group:*') THEN
		PERFORM collab._raise('BAD_REQUEST', format('subject "%s" is not allowed', p_subject),
			NULL, 'Use "*" for every authenticated user.');
	END IF;
	IF p_subject LIKE 'user:%' THEN
		PERFORM collab._check_identity('the user id of a subject', substr(p_subject, 6));
	ELSE
		PERFORM collab._check_identity('the group name of a subject', substr(p_subject, 7));
	END IF;
END
$$;
COMMENT ON FUNCTION collab._check_subject(text) IS 'Raises BAD_REQUEST unless p_subject is "*", "user:<user id>" or "group:<group name>"';

CREATE FUNCTION collab._check_permission(p_permission text) RETURNS collab.permission
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_permission IS NULL OR p_permission NOT IN ('view', 'edit', 'admin') THEN
		PERFORM collab._raise('BAD_REQUEST', 'permission must be "view", "edit" or "admin"');
	END IF;
	RETURN p_permission::collab.permission;
END
$$;
COMMENT ON FUNCTION collab._check_permission(text) IS 'The permission named by p_permission; BAD_REQUEST for any other text';

/*
 * Decisions.  The helpers without a SET clause run only inside collab
 * functions that set search_path (as _resource_json() does), so that their
 * plans are kept for the session.
 */

-- The strongest permission the grants give: on the resource or an ancestor,
-- to '*', to the user, or to one of the groups (NULL: none).  Written once,
-- as a one-row SQL function that a statement calling it in FROM gets inlined
-- into its own plan (collab._ws_grants_edit()); every name is qualified,
-- since the caller's search_path is in force where it is inlined.
CREATE FUNCTION collab._granted_permission(p_user_id text, p_groups text[], p_resource_id text)
RETURNS TABLE (permission collab.permission)
LANGUAGE sql STABLE AS $$
	SELECT pg_catalog.max(g.permission) FROM collab.acl g
	 WHERE g.resource_id OPERATOR(pg_catalog.=) ANY
			(collab.ancestors(p_resource_id) OPERATOR(pg_catalog.||) p_resource_id)
	   AND g.subject OPERATOR(pg_catalog.=) ANY
			(ARRAY['*', 'user:' OPERATOR(pg_catalog.||) p_user_id]
			 OPERATOR(pg_catalog.||)
			 ARRAY(SELECT 'group:' OPERATOR(pg_catalog.||) x FROM pg_catalog.unnest(p_groups) x))
$$;
COMMENT ON FUNCTION collab._granted_permission(text, text[], text) IS 'One row: the strongest permission the grants give a user with these groups on a resource (collab._granted()), for statements that inline it';

-- The same as a value.  A custom plan for the arrays of each call would be
-- chosen again on every call, and planning costs four times the lookup: the
-- generic plan is kept.
CREATE FUNCTION collab._granted(p_user_id text, p_groups text[], p_resource_id text)
RETURNS collab.permission
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
	RETURN (SELECT g.permission FROM collab._granted_permission(p_user_id, p_groups, p_resource_id) g);
END
$$;
COMMENT ON FUNCTION collab._granted(text, text[], text) IS 'The strongest permission the grants give a user with these groups on a resource, inherited from its ancestors; NULL for none';

-- The function named by collab.access_rule, NULL when none is set.  A name
-- that does not resolve fails every decision: access is refused, never
-- widened, while the configuration is wrong.
CREATE FUNCTION collab._access_rule() RETURNS regprocedure
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v_name text := current_setting('collab.access_rule');
	v regprocedure;
BEGIN
	IF v_name = '' THEN
		RETURN NULL;
	END IF;
	v := to_regprocedure(v_name || '(text, text[], text, text)');
	IF v IS NULL OR (SELECT p.prorettype FROM pg_proc p WHERE p.oid = v) <> 'boolean'::regtype THEN
		RAISE EXCEPTION USING ERRCODE = 'undefined_function',
			MESSAGE = format('collab.access_rule names no function %s(text, text[], text, text) returning boolean', v_name),
			HINT = 'Give the function''s schema-qualified name; access decisions fail until it exists.';
	END IF;
	RETURN v;
END
$$;
COMMENT ON FUNCTION collab._access_rule() IS 'The function named by collab.access_rule (NULL: none); raises if the name does not resolve';

-- Whether the rule gives at least p_permission on the resource or an ancestor.
CREATE FUNCTION collab._rule_allows(p_rule regprocedure, p_user_id text, p_groups text[],
	p_resource_id text, p_permission collab.permission)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v text;
	r boolean;
BEGIN
	FOREACH v IN ARRAY collab.ancestors(p_resource_id) || p_resource_id LOOP
		EXECUTE format('SELECT %s($1, $2, $3, $4)', p_rule::regproc)
			INTO r USING p_user_id, p_groups, v, p_permission::text;
		IF r THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN false;
END
$$;
COMMENT ON FUNCTION collab._rule_allows(regprocedure, text, text[], text, collab.permission) IS 'Whether the configured rule gives at least this permission on the resource or one of its ancestors';

-- The permission a user with these groups has on a resource: the grants,
-- then the rule (asked only for more than the grants give), then
-- collab.access_control = off, which lets everyone edit.  NULL: none.
CREATE FUNCTION collab._level(p_user_id text, p_groups text[], p_resource_id text)
RETURNS collab.permission
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v collab.permission := collab._granted(p_user_id, p_groups, p_resource_id);
	v_rule regprocedure;
	p collab.permission;
BEGIN
	IF v IS DISTINCT FROM 'admin' THEN
		v_rule := collab._access_rule();
		IF v_rule IS NOT NULL THEN
			FOREACH p IN ARRAY enum_range(NULL::collab.permission) LOOP
				CONTINUE WHEN p <= v;
				EXIT WHEN NOT collab._rule_allows(v_rule, p_user_id, p_groups, p_resource_id, p);
				v := p;
			END LOOP;
		END IF;
	END IF;
	IF NOT current_setting('collab.access_control')::boolean THEN
		v := greatest(v, 'edit');
	END IF;
	RETURN v;
END
$$;
COMMENT ON FUNCTION collab._level(text, text[], text) IS 'The permission a user with these groups has on a resource (grants, collab.access_rule, collab.access_control); NULL for none';

-- PL/pgSQL: a SQL function with a FROM clause is planned again in every
-- transaction that calls it (see collab._resource_json()).
CREATE FUNCTION collab._permissions(p_level collab.permission) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	RETURN ARRAY(SELECT x.p::text FROM unnest(enum_range(NULL::collab.permission)) WITH ORDINALITY x(p, n)
				  WHERE x.p <= p_level ORDER BY x.n);
END
$$;
COMMENT ON FUNCTION collab._permissions(collab.permission) IS 'A permission and those it implies, as the permissions array of the protocol';

-- Whether a token issued at p_issued_at (NULL: no iat) of p_user_id is
-- refused: written once, and inlined, as collab._granted_permission() is.
CREATE FUNCTION collab._session_revoked(p_user_id text, p_issued_at timestamptz)
RETURNS TABLE (revoked boolean)
LANGUAGE sql STABLE AS $$
	SELECT EXISTS (SELECT FROM collab.session_revocations r
				    WHERE r.user_id OPERATOR(pg_catalog.=) p_user_id
					  AND (p_issued_at IS NULL OR p_issued_at OPERATOR(pg_catalog.<=) r.revoked_before))
$$;
COMMENT ON FUNCTION collab._session_revoked(text, timestamptz) IS 'One row: whether a token of this user issued at this time was revoked (collab._revoked()), for statements that inline it';

CREATE FUNCTION collab._revoked(p_user_id text, p_issued_at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT r.revoked FROM collab._session_revoked(p_user_id, p_issued_at) r);
END
$$;
COMMENT ON FUNCTION collab._revoked(text, timestamptz) IS 'Whether a token of this user issued at this time (NULL: unknown) was revoked by collab.revoke_sessions()';

-- A token's iat as the time it stands for; an iat in the future counts from
-- now, so that a revocation later than the connection still refuses it.
CREATE FUNCTION collab._issued_at(p_iat bigint) RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
	IF p_iat IS NULL THEN
		RETURN NULL;
	END IF;
	IF p_iat < 0 OR p_iat > 253402300799 THEN
		PERFORM collab._raise('BAD_REQUEST', 'iat must be a number of seconds since 1970-01-01');
	END IF;
	RETURN least(to_timestamp(p_iat), clock_timestamp());
END
$$;
COMMENT ON FUNCTION collab._issued_at(bigint) IS 'A token''s iat as a time, at most now; NULL for none';

-- One row: true when the connection's grants alone let it edit the
-- resource: a registered connection whose session is not revoked, with
-- grants that give edit.  Grants are additive (collab._level() only raises
-- what they give), so true is the answer without asking the rule; false or
-- NULL leave the decision to collab._ws_require_edit().  An SQL function
-- that a statement inlines (lock:acquire reads it with the membership, in
-- src/leases.c), with every name qualified.
CREATE FUNCTION collab._ws_grants_edit(p_conn text, p_resource_id text)
RETURNS TABLE (edits boolean)
LANGUAGE sql STABLE AS $$
	SELECT NOT r.revoked AND g.permission OPERATOR(pg_catalog.>=) 'edit'::collab.permission
	  FROM collab.ws_connections c,
		   LATERAL collab._session_revoked(c.user_id, c.token_issued_at) r,
		   LATERAL collab._granted_permission(c.user_id, c.groups, p_resource_id) g
	 WHERE c.connection_id OPERATOR(pg_catalog.=) p_conn
$$;
COMMENT ON FUNCTION collab._ws_grants_edit(text, text) IS 'One row, or none for an unknown connection: whether the connection''s grants alone let it edit the resource (not revoked, edit granted), for statements that inline it';

-- What a connection may do on a resource.  The caller holds the path
-- lock, so that a grant or revoke is seen whole (a new snapshot: the caller
-- runs this in a statement after taking the lock).
CREATE FUNCTION collab._ws_require_edit(p_conn text, p_resource_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
BEGIN
	IF (SELECT e.edits FROM collab._ws_grants_edit(p_conn, p_resource_id) e) THEN
		RETURN;
	END IF;
	c := collab._ws_conn(p_conn);
	IF collab._revoked(c.user_id, c.token_issued_at) THEN
		PERFORM collab._raise_revoked();
	END IF;
	IF NOT coalesce(collab._level(c.user_id, c.groups, p_resource_id) >= 'edit', false) THEN
		PERFORM collab._raise('FORBIDDEN', format('you may not edit "%s"', p_resource_id),
			NULL, 'Editing needs the edit permission on the resource or a document that contains it.');
	END IF;
END
$$;
COMMENT ON FUNCTION collab._ws_require_edit(text, text) IS 'FORBIDDEN unless the connection''s user may edit the resource; AUTH_TOKEN_REVOKED for a revoked session';

/* The SQL API */
CREATE FUNCTION collab.can(p_user_id text, p_groups text[], p_resource_id text, p_permission text)
RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_groups text[];
	v_perm collab.permission;
BEGIN
	PERFORM collab._check_user_id(p_user_id);
	v_groups := collab._check_groups(p_groups);
	PERFORM collab.check_resource_id(p_resource_id);
	v_perm := collab._check_permission(p_permission);
	IF NOT EXISTS (SELECT FROM collab.resources WHERE id = p_resource_id) THEN
		RETURN false;
	END IF;
	RETURN coalesce(collab._level(p_user_id, v_groups, p_resource_id) >= v_perm, false);
END
$$;
COMMENT ON FUNCTION collab.can(text, text[], text, text) IS 'Whether a user with these groups has this permission on a resource, as the worker decides it (false for a resource that does not exist)';

CREATE FUNCTION collab.grant(p_resource_id text, p_subject text, p_permission text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_perm collab.permission;
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	PERFORM collab._check_subject(p_subject);
	v_perm := collab._check_permission(p_permission);
	PERFORM collab._check_resource(p_resource_id);
	-- every decision in the subtree (joins, locks, saves) runs before or after
	PERFORM collab._lock_access(p_resource_id, true);
	PERFORM collab._lock_path(p_resource_id);
	INSERT INTO collab.acl (resource_id, subject, permission)
		VALUES (p_resource_id, p_subject, v_perm)
	ON CONFLICT DO NOTHING;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	INSERT INTO collab.access_entries (action, outcome, user_id, resource_id, address, detail)
		VALUES ('grant', 'allowed', CASE WHEN p_subject LIKE 'user:%' THEN substr(p_subject, 6) END,
				p_resource_id, inet_client_addr()::text,
				jsonb_build_object('subject', p_subject, 'permission', p_permission));
	PERFORM collab._publish(jsonb_build_object(
		'event', 'internal:grant',
		'resourceId', p_resource_id,
		'subject', p_subject,
		'permission', p_permission)::text);
	RETURN true;
END
$$;
COMMENT ON FUNCTION collab.grant(text, text, text) IS 'Grants a permission on a resource and its descendants to a subject ("*", "user:<id>", "group:<name>"); false if it was granted already';

CREATE FUNCTION collab.revoke(p_resource_id text, p_subject text, p_permission text DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_perm collab.permission;
	n integer;
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	PERFORM collab._check_subject(p_subject);
	IF p_permission IS NOT NULL THEN
		v_perm := collab._check_permission(p_permission);
	END IF;
	PERFORM collab._check_resource(p_resource_id);
	-- a join, save or lock decision in the subtree either committed before
	-- this, or waits and then sees the grant gone
	PERFORM collab._lock_access(p_resource_id, true);
	PERFORM collab._lock_path(p_resource_id);
	DELETE FROM collab.acl
	 WHERE resource_id = p_resource_id AND subject = p_subject
	   AND (v_perm IS NULL OR permission = v_perm);
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n = 0 THEN
		RETURN 0;
	END IF;
	INSERT INTO collab.access_entries (action, outcome, user_id, resource_id, address, detail)
		VALUES ('revoke', 'allowed', CASE WHEN p_subject LIKE 'user:%' THEN substr(p_subject, 6) END,
				p_resource_id, inet_client_addr()::text,
				jsonb_build_object('subject', p_subject, 'permission', p_permission, 'removed', n));
	PERFORM collab._publish(jsonb_build_object(
		'event', 'internal:revoke',
		'resourceId', p_resource_id,
		'subject', p_subject,
		'permission', p_permission)::text);
	RETURN n;
END
$$;
COMMENT ON FUNCTION collab.revoke(text, text, text) IS 'Removes a subject''s grant of a permission on a resource (NULL: all its grants there); the number removed';

CREATE FUNCTION collab.revoke_sessions(p_user_id text, p_reason text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_at timestamptz := clock_timestamp();
	n integer;
BEGIN
	PERFORM collab._check_user_id(p_user_id);
	IF p_reason IS NULL OR btrim(p_reason) = '' OR octet_length(p_reason) > 1024 THEN
		PERFORM collab._raise('BAD_REQUEST',
			'revoke_sessions needs a reason (1 to 1024 bytes); it is recorded in the access log');
	END IF;
	INSERT INTO collab.session_revocations AS r (user_id, revoked_before, reason)
		VALUES (p_user_id, v_at, p_reason)
	ON CONFLICT (user_id) DO UPDATE
		SET revoked_before = greatest(r.revoked_before, EXCLUDED.revoked_before),
			reason = EXCLUDED.reason, revoked_by = EXCLUDED.revoked_by;
	SELECT count(*) INTO n FROM collab.ws_connections WHERE user_id = p_user_id;
	-- connections lost uncleanly keep no lock for a revoked user: the
	-- workers close the others
	PERFORM collab._ws_remove_detached(x.connection_id, 'revoked', true)
	   FROM collab.ws_connections x
	  WHERE x.user_id = p_user_id AND x.detached_at IS NOT NULL
	  ORDER BY x.connection_id;
	INSERT INTO collab.access_entries (action, outcome, user_id, address, detail)
		VALUES ('revoke_sessions', 'allowed', p_user_id, inet_client_addr()::text,
				jsonb_build_object('reason', p_reason, 'revokedBefore', collab._ts(v_at), 'connections', n));
	PERFORM collab._publish(jsonb_build_object(
		'event', 'internal:revoke_sessions',
		'userId', p_user_id,
		'revokedBefore', collab._ts(v_at))::text);
	RETURN n;
END
$$;
COMMENT ON FUNCTION collab.revoke_sessions(text, text) IS 'Refuses every token of the user issued until now (AUTH_TOKEN_REVOKED) and tells the workers to close the user''s connections; returns how many there are';

-- For a deployment's rule (collab.access_rule): its own data changed.
CREATE FUNCTION collab.access_changed(p_resource_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._check_resource(p_resource_id);
	-- as collab.revoke(): decisions on the path run before or after this transaction
	PERFORM collab._lock_access(p_resource_id, true);
	PERFORM collab._lock_path(p_resource_id);
	PERFORM collab._publish(jsonb_build_object(
		'event', 'internal:access_changed',
		'resourceId', p_resource_id)::text);
END
$$;
COMMENT ON FUNCTION collab.access_changed(text) IS 'Tells the workers to re-check the connections in the rooms of a resource and its descendants, after the data of collab.access_rule changed; serializes with decisions on the path';

/* The worker's functions */
DROP FUNCTION collab.ws_connect(text, text, integer, text, text, text, text);
CREATE FUNCTION collab.ws_connect(p_conn text, p_worker text, p_worker_pid integer,
	p_user_id text, p_username text, p_address text, p_origin text,
	p_groups text[] DEFAULT NULL, p_iat bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_groups text[];
	v_issued timestamptz;
	v_limit integer;
	v_old text;
BEGIN
	PERFORM collab._check_user(p_user_id, p_username);
	PERFORM collab._check_user_id(p_user_id);
	v_groups := collab._check_groups(p_groups);
	v_issued := collab._issued_at(p_iat);
	IF collab._revoked(p_user_id, v_issued) THEN
		PERFORM collab._log_refusal('connect', p_user_id, p_username, NULL, p_address,
			jsonb_build_object('reason', 'revoked', 'issuedAt', collab._ts(v_issued))::text);
		PERFORM collab._raise_revoked();
	END IF;
	-- collab.max_connections_per_user, over every worker: the user's
	-- registrations are counted one at a time
	v_limit := current_setting('collab.max_connections_per_user')::integer;
	IF v_limit > 0 THEN
		PERFORM collab._lock_user(p_user_id);
		-- connections lost uncleanly count until they are gone (their
		-- grace keeps them); a new one ends the oldest of them rather than
		-- be refused, as the user is back
		WHILE (SELECT count(*) FROM collab.ws_connections WHERE user_id = p_user_id) >= v_limit LOOP
			SELECT c.connection_id INTO v_old FROM collab.ws_connections c
			 WHERE c.user_id = p_user_id AND c.detached_at IS NOT NULL
			 ORDER BY c.detached_at LIMIT 1;
			EXIT WHEN NOT FOUND;
			PERFORM collab._ws_remove_detached(v_old, 'disconnected', true);
		END LOOP;
		IF (SELECT count(*) FROM collab.ws_connections WHERE user_id = p_user_id) >= v_limit THEN
			PERFORM collab._log_refusal('connect', p_user_id, p_username, NULL, p_address,
				jsonb_build_object('reason', 'too_many_connections', 'limit', v_limit)::text);
			PERFORM collab._raise('RATE_LIMITED',
				format('this user has %s connections open, the most collab.max_connections_per_user allows', v_limit),
				NULL, 'Close a connection (a browser tab) first.');
		END IF;
	END IF;
	INSERT INTO collab.ws_connections (connection_id, worker, worker_pid, user_id, username, address, origin,
			groups, token_issued_at)
		VALUES (p_conn, p_worker, p_worker_pid, p_user_id, p_username, p_address, left(p_origin, 256),
				v_groups, v_issued);
END
$$;
COMMENT ON FUNCTION collab.ws_connect(text, text, integer, text, text, text, text, text[], bigint) IS 'Worker: registers a connection with its token''s groups and iat; AUTH_TOKEN_REVOKED for a revoked session, RATE_LIMITED past collab.max_connections_per_user (the oldest of the user''s detached connections ended first)';

-- auth:refresh: a new token of the same user, whose groups may differ.
CREATE FUNCTION collab.ws_refresh(p_conn text, p_groups text[] DEFAULT NULL, p_iat bigint DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections := collab._ws_conn(p_conn);
	v_groups text[] := collab._check_groups(p_groups);
	v_issued timestamptz := collab._issued_at(p_iat);
BEGIN
	IF collab._revoked(c.user_id, v_issued) THEN
		PERFORM collab._log_refusal('connect', c.user_id, c.username, NULL, c.address,
			jsonb_build_object('reason', 'revoked', 'issuedAt', collab._ts(v_issued), 'refresh', true,
							   'connectionId', p_conn)::text);
		PERFORM collab._raise_revoked();
	END IF;
	UPDATE collab.ws_connections SET groups = v_groups, token_issued_at = v_issued
	 WHERE connection_id = p_conn;
	RETURN c.groups IS DISTINCT FROM v_groups;
END
$$;
COMMENT ON FUNCTION collab.ws_refresh(text, text[], bigint) IS 'Worker: a connection''s new token (auth:refresh); true if its groups changed, so that its rooms must be re-checked';

-- The permissions of a connection on a resource now ('{}': none, the
-- session revoked, or the resource gone).
CREATE FUNCTION collab.ws_permissions(p_conn text, p_resource_id text) RETURNS text[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	SELECT * INTO c FROM collab.ws_connections WHERE connection_id = p_conn;
	IF NOT FOUND OR collab._revoked(c.user_id, c.token_issued_at)
	   OR NOT EXISTS (SELECT FROM collab.resources WHERE id = p_resource_id) THEN
		RETURN '{}';
	END IF;
	RETURN collab._permissions(collab._level(c.user_id, c.groups, p_resource_id));
END
$$;
COMMENT ON FUNCTION collab.ws_permissions(text, text) IS 'Worker: the permissions a connection has on a resource now';

-- After an access change, one connection's place in one room made to fit
-- its permissions: without edit it loses its lock there (lock:released,
-- reason "revoked") and becomes a viewer; without view it leaves the room
-- (presence:left, reason "revoked").
CREATE FUNCTION collab.ws_recheck(p_conn text, p_resource_id text,
	OUT permissions text[], OUT left_room boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p collab.ws_presence;
	l collab.leases;
BEGIN
	PERFORM collab._require_read_committed();
	PERFORM collab.check_resource_id(p_resource_id);
	PERFORM collab._lock_path(p_resource_id);
	permissions := collab.ws_permissions(p_conn, p_resource_id);
	left_room := false;
	IF NOT 'edit' = ANY (permissions) THEN
		FOR l IN SELECT * FROM collab.leases
				  WHERE holder_id = p_conn AND resource_id = p_resource_id FOR UPDATE LOOP
			IF l.expires_at > clock_timestamp() THEN
				PERFORM collab._drop_lease(l, 'release', 'revoked');
			ELSE
				PERFORM collab._expire_lease(l);
			END IF;
		END LOOP;
		DELETE FROM collab.ws_lock_requests WHERE connection_id = p_conn AND resource_id = p_resource_id;
		UPDATE collab.ws_presence SET role = 'viewer'
		 WHERE connection_id = p_conn AND resource_id = p_resource_id AND role <> 'viewer';
	END IF;
	IF cardinality(permissions) = 0 THEN
		SELECT * INTO p FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = p_resource_id;
		IF FOUND THEN
			PERFORM collab._ws_drop_presence(p, 'revoked', 'revoked');
			left_room := true;
		END IF;
	END IF;
END
$$;
COMMENT ON FUNCTION collab.ws_recheck(text, text) IS 'Worker: after an access change, releases the lock of a connection that lost edit and removes from the room one that lost view';

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
	v_exists boolean;
	v_level collab.permission;
	v_permissions text[];
	v_suspended timestamptz;
BEGIN
	IF p_mode IS NULL OR p_mode NOT IN ('editor', 'viewer') THEN
		PERFORM collab._raise('BAD_REQUEST', 'mode must be "editor" or "viewer"');
	END IF;
	PERFORM collab.check_resource_id(p_resource_id);
	c := collab._ws_conn(p_conn);
	-- a grant or revoke on the path waits for this decision, or this for it
	PERFORM collab._lock_access(p_resource_id, false);

	IF collab._revoked(c.user_id, c.token_issued_at) THEN
		PERFORM collab._log_refusal('join', c.user_id, c.username, p_resource_id, c.address,
			jsonb_build_object('mode', p_mode, 'reason', 'revoked', 'connectionId', p_conn)::text);
		PERFORM collab._raise_revoked();
	END IF;
	v_exists := EXISTS (SELECT FROM collab.resources WHERE id = p_resource_id);
	IF v_exists THEN
		v_level := collab._level(c.user_id, c.groups, p_resource_id);
	END IF;
	IF v_level IS NULL THEN
		PERFORM collab._log_refusal('join', c.user_id, c.username, p_resource_id, c.address,
			jsonb_build_object('mode', p_mode, 'reason', CASE WHEN v_exists THEN 'forbidden' ELSE 'not_found' END,
							   'connectionId', p_conn)::text);
		-- a resource one may not view does not exist, as far as one can tell
		PERFORM collab._raise_not_found(p_resource_id);
	END IF;
	v_permissions := collab._permissions(v_level);

	-- without edit, an editor's join is a viewer's
	IF p_mode = 'editor' AND v_level >= 'edit' THEN
		SELECT * INTO a FROM collab.acquire(p_resource_id, c.user_id, c.username, p_conn);
		IF a.granted THEN
			v_role := 'editor';
			v_token := a.token;
		ELSE
			-- whether the holder in the way has lost their connection
			SELECT x.suspended_until INTO v_suspended FROM collab.leases x
			 WHERE x.resource_id = a.holder_resource_id;
		END IF;
		-- the token (NULL unless granted) only for the new holder
		v_lock := collab._lock_info(a.holder_resource_id, a.holder_user_id, a.holder_username,
			a.acquired_at, a.expires_at, a.token, v_suspended);
	ELSE
		-- a viewer still learns who holds the lock, if anyone does
		SELECT * INTO l FROM collab.leases WHERE resource_id = p_resource_id AND expires_at > clock_timestamp();
		IF FOUND THEN
			v_lock := collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at,
				NULL, l.suspended_until);
			v_role := CASE WHEN l.holder_id = p_conn THEN 'editor' ELSE 'viewer' END;
		END IF;
	END IF;

	-- a re-join in the same role changes no row and publishes nothing
	INSERT INTO collab.ws_presence (connection_id, resource_id, user_id, username, role)
		VALUES (p_conn, p_resource_id, c.user_id, c.username, v_role)
	ON CONFLICT (connection_id, resource_id) DO UPDATE SET role = EXCLUDED.role
		WHERE ws_presence.role IS DISTINCT FROM EXCLUDED.role
	RETURNING * INTO p;
	-- deleted while we joined? (see collab.ws_presence: no foreign key)
	PERFORM collab._check_resource(p_resource_id);
	IF p.connection_id IS NOT NULL THEN
		PERFORM collab._publish_presence_joined(p_resource_id, p.user_json);
	END IF;
	-- the content is read below: the trail records it (see collab.access_entries)
	INSERT INTO collab.access_entries (action, outcome, user_id, username, resource_id, address, detail)
		VALUES ('join', 'allowed', c.user_id, c.username, p_resource_id, c.address,
				jsonb_build_object('mode', p_mode, 'role', v_role, 'permissions', v_permissions,
								   'connectionId', p_conn));

	token := v_token;
	-- children: grants inherit, so whoever may view a resource may view
	-- every one of its children; the list is theirs in full
	-- disconnectGraceMs: how long a lock of this connection outlives an
	-- unclean loss of it, which its page must know while it cannot ask
	ack := '{"ok":true,"role":' || to_json(v_role)::text
		|| ',"permissions":' || to_json(v_permissions)::text
		|| ',"disconnectGraceMs":' || (extract(epoch FROM collab.disconnect_grace()) * 1000)::bigint
		|| ',"lock":' || v_lock::text
		|| ',"resource":' || collab._resource_json(p_resource_id)::text
		|| ',"children":' || collab._children_json(p_resource_id)::text || '}';
	-- the worker (p_users false) reads the users once the room has heard of
	-- the join (join_users_done in src/session.c), and adds them as here
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
	PERFORM collab._ws_require_edit(p_conn, p_resource_id);
	-- the path's range first, as an index condition (see PATH_LEASES_WHERE in src/leases.c)
	SELECT * INTO l FROM collab.leases x
	 WHERE x.resource_id >= COALESCE((collab.ancestors(p_resource_id))[1], p_resource_id)
	   AND x.resource_id < p_resource_id || '0'
	   AND (x.resource_id = ANY (collab.ancestors(p_resource_id) || p_resource_id)
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
		'lock', collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at,
			NULL, l.suspended_until)));
END
$$;

-- A holder who lost edit may not keep the lock alive.
CREATE OR REPLACE FUNCTION collab.ws_renew(p_conn text, p_resource_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
BEGIN
	PERFORM collab._ws_presence(p_conn, p_resource_id);
	PERFORM collab._lock_path(p_resource_id);
	PERFORM collab._ws_require_edit(p_conn, p_resource_id);
	l := collab._ws_lease(p_conn, p_resource_id, false);
	SELECT expires_at INTO l.expires_at FROM collab.renew(l.token);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true,
			'lock', collab._lock_info(l.resource_id, l.user_id, l.username, l.acquired_at, l.expires_at, l.token)),
		'token', l.token);
END
$$;

-- A request for the lock lapses when its connection has lost edit since.
CREATE OR REPLACE FUNCTION collab._hand_off(p_resource_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	a record;
BEGIN
	FOR r IN
		SELECT q.connection_id, p.user_id, p.username, c.groups, c.token_issued_at
		  FROM collab.ws_lock_requests q
		  JOIN collab.ws_presence p ON p.connection_id = q.connection_id AND p.resource_id = q.resource_id
		  JOIN collab.ws_connections c ON c.connection_id = q.connection_id
		 WHERE q.resource_id = p_resource_id
		 ORDER BY q.requested_at, q.connection_id
	LOOP
		DELETE FROM collab.ws_lock_requests WHERE resource_id = p_resource_id AND connection_id = r.connection_id;
		CONTINUE WHEN collab._revoked(r.user_id, r.token_issued_at)
			OR NOT coalesce(collab._level(r.user_id, r.groups, p_resource_id) >= 'edit', false);
		SELECT * INTO a FROM collab.acquire(p_resource_id, r.user_id, r.username, r.connection_id);
		IF a.granted THEN
			UPDATE collab.ws_presence SET role = 'editor'
			 WHERE connection_id = r.connection_id AND resource_id = p_resource_id;
		END IF;
		RETURN;
	END LOOP;
END
$$;

/* The access trail's upkeep, and the sweep that runs it */
CREATE FUNCTION collab._access_log_maintain() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_keep interval := collab.access_log_retention();
BEGIN
	-- bounded, so that one sweep stays short after a burst
	IF v_keep IS NOT NULL THEN
		DELETE FROM collab.access_entries e
		 WHERE e.id IN (SELECT x.id FROM collab.access_entries x
						 WHERE x.at < clock_timestamp() - v_keep ORDER BY x.at LIMIT 10000);
	END IF;
END
$$;
COMMENT ON FUNCTION collab._access_log_maintain() IS 'Drops entries of the access trail older than collab.access_log_retention (up to 10000 per call)';

-- One expired lease: its path first, as every lock decision takes it, and
-- without waiting (the sweeping transaction holds the rows of the leases
-- expired so far, which an operation holding this path may be waiting for):
-- a busy path is left to that operation, or to the next sweep.  The lease,
-- re-read in case a renewal or a release committed first, is expired,
-- recorded, announced and handed off; NULL when it was not.
CREATE FUNCTION collab._expire_due(p_token bigint, p_resource_id text) RETURNS collab.leases
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
BEGIN
	IF NOT collab._try_lock_path(p_resource_id) THEN
		RETURN NULL;
	END IF;
	SELECT * INTO l FROM collab.leases c WHERE c.token = p_token FOR UPDATE;
	IF NOT FOUND OR l.expires_at > clock_timestamp() THEN
		RETURN NULL;
	END IF;
	PERFORM collab._expire_lease(l);
	PERFORM collab._hand_off(l.resource_id);
	RETURN l;
END
$$;
COMMENT ON FUNCTION collab._expire_due(bigint, text) IS 'Internal (the sweeps): expires one lease if it is still due and its path is free';

-- The leases due to expire, oldest first.
CREATE FUNCTION collab._leases_due(OUT token bigint, OUT resource_id text) RETURNS SETOF record
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT c.token, c.resource_id FROM collab.leases c WHERE c.expires_at <= clock_timestamp()
	 ORDER BY c.expires_at
$$;
COMMENT ON FUNCTION collab._leases_due() IS 'Internal (the sweeps): the leases whose TTL has ended';

CREATE OR REPLACE FUNCTION collab.sweep(
	OUT resource_id text, OUT token bigint, OUT user_id text, OUT username text,
	OUT holder_id text, OUT expired_at timestamptz)
RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	d record;
BEGIN
	PERFORM collab._require_read_committed();
	PERFORM collab._access_log_maintain();
	FOR d IN SELECT * FROM collab._leases_due() LOOP
		l := collab._expire_due(d.token, d.resource_id);
		CONTINUE WHEN l.token IS NULL;
		resource_id := l.resource_id;
		token := l.token;
		user_id := l.user_id;
		username := l.username;
		holder_id := l.holder_id;
		expired_at := l.expires_at;
		RETURN NEXT;
	END LOOP;
	-- after the expiries: a suspended lease whose TTL ended expires
	PERFORM collab._end_graces();
END
$$;

-- The worker's sweep: what collab.sweep() does, stopped at p_deadline so
-- that its event loop never waits long for it; true when it stopped there
-- (more may be due, and the worker sweeps again soon).
CREATE FUNCTION collab._sweep_until(p_deadline timestamptz) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	d record;
	v_done integer := 0;
BEGIN
	PERFORM collab._access_log_maintain();
	FOR d IN SELECT * FROM collab._leases_due() LOOP
		PERFORM collab._expire_due(d.token, d.resource_id);
		v_done := v_done + 1;
		IF collab._slice_over(v_done, p_deadline) THEN
			RETURN true;
		END IF;
	END LOOP;
	RETURN collab._end_graces(p_deadline);
END
$$;
COMMENT ON FUNCTION collab._sweep_until(timestamptz) IS 'Internal (the worker): collab.sweep() until a deadline; true when it stopped there';
REVOKE ALL ON FUNCTION collab._expire_due(bigint, text), collab._leases_due(), collab._sweep_until(timestamptz) FROM PUBLIC;

/* What collab_app sees: no browser connection's id (docs/access-control.md) */
CREATE OR REPLACE VIEW collab.locks AS
	SELECT l.resource_id, l.user_id, l.username,
		   CASE WHEN pg_has_role('collab_admin', 'USAGE')
					 OR NOT EXISTS (SELECT FROM collab.ws_connections c WHERE c.connection_id = l.holder_id)
				THEN l.holder_id END AS holder_id,
		   l.acquired_at, l.renewed_at, l.expires_at, l.suspended_until
	  FROM collab.leases l
	 WHERE l.expires_at > clock_timestamp();

CREATE OR REPLACE VIEW collab.connections AS
	SELECT CASE WHEN pg_has_role('collab_admin', 'USAGE') THEN c.connection_id END AS connection_id,
		   c.user_id, c.username, c.address, c.origin, c.connected_at,
		   c.worker, c.worker_pid,
		   coalesce(array_agg(p.resource_id ORDER BY p.resource_id) FILTER (WHERE p.resource_id IS NOT NULL), '{}') AS rooms,
		   c.detached_at
	  FROM collab.ws_connections c
	  LEFT JOIN collab.ws_presence p USING (connection_id)
	 GROUP BY c.connection_id;

CREATE OR REPLACE VIEW collab.presence AS
	SELECT resource_id,
		   CASE WHEN pg_has_role('collab_admin', 'USAGE') THEN connection_id END AS connection_id,
		   user_id, username, role::text AS role, joined_at
	  FROM collab.ws_presence;

COMMENT ON VIEW collab.locks IS 'Live locks, never their token; holder_id of a browser connection''s lock only for collab_admin; suspended_until while its holder''s connection is lost';
COMMENT ON VIEW collab.connections IS 'WebSocket connections and their rooms; connection_id only for collab_admin; detached_at since a connection was lost uncleanly';
COMMENT ON VIEW collab.presence IS 'Who is in which room; connection_id only for collab_admin';
COMMENT ON FUNCTION collab.acquire(text, text, text, text) IS 'The editor lock of a resource for a holder, or who holds it instead; FORBIDDEN for a holder id that is a browser connection''s, except from the worker''s functions';
COMMENT ON FUNCTION collab.release_holder(text, text) IS 'Releases every live lock of a holder (a connection that went away); collab_admin';
COMMENT ON FUNCTION collab.ws_join(text, text, text, boolean) IS 'Worker: presence:join; RESOURCE_NOT_FOUND, as for a missing resource, without view; viewer without edit; the ack carries the permissions; a re-join in the same role publishes nothing';
COMMENT ON FUNCTION collab.ws_request(text, text) IS 'Worker: lock:request; needs edit';
COMMENT ON FUNCTION collab.ws_renew(text, text) IS 'Worker: lock:renew; needs edit';

-- What a NOTIFY listener may see of a payload: no internal event, and no
-- id of a browser connection (docs/events.md); NULL when nothing is left.
-- The filter the worker and the direct NOTIFY route apply (src/events.c).
CREATE FUNCTION collab.public_payload(p_payload text) RETURNS text
	AS 'MODULE_PATHNAME', 'collab_public_payload_sql' LANGUAGE C IMMUTABLE STRICT;
COMMENT ON FUNCTION collab.public_payload(text) IS 'A notification payload without internal events and browser connection ids, for NOTIFY listeners; NULL if nothing is left';

/* Privileges */
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA collab FROM PUBLIC;
GRANT EXECUTE ON FUNCTION collab.can(text, text[], text, text), collab.access_changed(text)
	TO collab_app, collab_admin;
GRANT EXECUTE ON FUNCTION collab.grant(text, text, text), collab.revoke(text, text, text),
	collab.revoke_sessions(text, text), collab.access_log_retention()
	TO collab_admin;
-- releasing every lock of a holder is the administrator's, as force_release is
REVOKE EXECUTE ON FUNCTION collab.release_holder(text, text) FROM collab_app;
GRANT SELECT ON collab.grants TO collab_app, collab_admin;
GRANT SELECT ON collab.access_log TO collab_admin;

SELECT pg_catalog.pg_extension_config_dump('collab.acl', '');
SELECT pg_catalog.pg_extension_config_dump('collab.session_revocations', '');
SELECT pg_catalog.pg_extension_config_dump('collab.access_entries', '');
SELECT pg_catalog.pg_extension_config_dump('collab.access_id_seq', '');

/* ------------------------------------------------------------------------
 * Responsiveness and budgets
 * ------------------------------------------------------------------------ */

/*
 * The worker never waits for another session (docs/design.md, "Requests
 * never wait in the event loop"): the path locks of src/lock_path.c live in
 * a key space no SQL function can take (LOCKTAG_USERLOCK, shown by pg_locks
 * as locktype 'userlock'), the worker takes them without waiting, and a
 * request that finds one busy is parked and tried again.
 */

-- The registrations of one user's connections, one at a time
-- (collab.max_connections_per_user, in collab.ws_connect).
CREATE FUNCTION collab._lock_user(p_user_id text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_lock_user' LANGUAGE C STRICT;
COMMENT ON FUNCTION collab._lock_user(text) IS 'Internal: serializes the registrations of a user''s connections for the transaction, so that collab.max_connections_per_user counts them exactly';

-- how many connections a user has open, for that count
CREATE INDEX ws_connections_user_idx ON collab.ws_connections (user_id);

-- The connections a (re)starting worker must detach: those of its
-- previous run and, for worker 1 (p_workers given), those of workers
-- beyond collab.workers, which were lost with that run, uncleanly as far
-- as their clients know (their leases are kept for collab.disconnect_grace,
-- collab.ws_detach()); those detached already are the sweep's.  The worker
-- detaches them one job each, so that a transaction holding one of their
-- paths holds up that one only.
CREATE FUNCTION collab.ws_previous_connections(p_worker text, p_workers integer DEFAULT NULL)
RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
	SELECT connection_id FROM collab.ws_connections
	 WHERE detached_at IS NULL
	   AND (worker = p_worker
			OR (p_workers IS NOT NULL
				AND worker <> ALL (ARRAY(SELECT 'collab worker ' || i FROM generate_series(1, p_workers) i))))
	 ORDER BY connected_at
$$;
COMMENT ON FUNCTION collab.ws_previous_connections(text, integer) IS 'Worker: the connections of its previous run (and, with p_workers, of workers no longer running) not detached yet, oldest first';

-- At a worker's clean stop, and for a caller without the worker: the same
-- connections detached in one transaction.
CREATE OR REPLACE FUNCTION collab.ws_worker_start(p_worker text, p_workers integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_conn text;
	n integer := 0;
BEGIN
	FOR v_conn IN SELECT collab.ws_previous_connections(p_worker, p_workers) LOOP
		PERFORM collab.ws_detach(v_conn, 'disconnected');
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;
COMMENT ON FUNCTION collab.ws_worker_start(text, integer) IS 'Worker: detaches the connections of a previous run of the worker (and of workers no longer running), suspending their leases for collab.disconnect_grace; returns how many';

-- Denials and refusals of a worker's browsers are sampled with counts
-- (src/sampling.c); the worker writes the counts whose second has ended.
CREATE FUNCTION collab._flush_sampled_refusals() RETURNS integer
	AS 'MODULE_PATHNAME', 'collab_flush_sampled_refusals' LANGUAGE C;
COMMENT ON FUNCTION collab._flush_sampled_refusals() IS 'Worker: writes to collab.audit and the access trail the rows that count the refusals it sampled, for every second that has ended; how many rows';

REVOKE ALL ON FUNCTION collab._lock_user(text), collab.ws_previous_connections(text, integer),
	collab._flush_sampled_refusals() FROM PUBLIC;

/* ------------------------------------------------------------------------
 * Revisions: every accepted save kept, hash-chained
 * ------------------------------------------------------------------------ */

-- How a revision came to be: a save through the WebSocket worker, a save
-- through SQL (collab.save() or a guarded UPDATE), or the content a
-- resource already had when revisions began (this upgrade).
CREATE TYPE collab.revision_path AS ENUM ('ws', 'sql', 'genesis');
COMMENT ON TYPE collab.revision_path IS 'How a revision came to be: ws, sql (a save by that path) or genesis (content present when revisions began)';

/*
 * One row per accepted save, written by the save guard (src/revisions.c)
 * in the saving transaction, never changed.  A resource is identified by
 * its id and creation time: revisions outlive the deletion of their
 * resource (a record's history is kept), and a resource created again
 * under the same id starts a chain of its own.  hash covers every other
 * column but resource_created_at, and prev_hash is the hash of the
 * previous revision of the same resource (NULL for the first);
 * docs/revisions.md defines the hash input.
 */
CREATE TABLE collab.revisions (
	resource_id	text COLLATE "C" NOT NULL,
	resource_created_at timestamptz NOT NULL,
	version		bigint NOT NULL,
	content		text NOT NULL,
	saved_by	text,
	saved_by_name text,
	saved_at	timestamptz NOT NULL,
	token		bigint,
	path		collab.revision_path NOT NULL,
	restored_from bigint,
	prev_hash	bytea,
	hash		bytea NOT NULL,
	PRIMARY KEY (resource_id, resource_created_at, version)
);
COMMENT ON TABLE collab.revisions IS 'Every accepted save: content, saver, time, token, path, SHA-256 chained per resource; immutable';
-- Every save writes a revision and few are read back: lz4, where the server
-- was built with it, compresses a 2 kB save several times faster than pglz
-- (for about 15 % more room).  The save guard compresses a save's content
-- once, with the resource column's method, and stores the same bytes in the
-- resource's row and in its revision (src/revisions.c): both columns use it.
DO $$
BEGIN
	IF EXISTS (SELECT FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
		ALTER TABLE collab.resources ALTER COLUMN content SET COMPRESSION lz4;
		ALTER TABLE collab.revisions ALTER COLUMN content SET COMPRESSION lz4;
	END IF;
END
$$;

-- What collab.purge_revisions() dropped: per resource, the last version it
-- dropped and that revision's hash, the anchor of the revisions left.
CREATE TABLE collab.revision_purges (
	resource_id	text COLLATE "C" NOT NULL,
	resource_created_at timestamptz NOT NULL,
	through_version bigint NOT NULL,
	hash		bytea NOT NULL,
	revisions	bigint NOT NULL,
	purged_before timestamptz NOT NULL,
	purged_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	purged_by	name NOT NULL DEFAULT session_user,
	PRIMARY KEY (resource_id, resource_created_at, through_version)
);
COMMENT ON TABLE collab.revision_purges IS 'Anchors left by collab.purge_revisions(): the hash of the last revision dropped per resource; immutable';

CREATE FUNCTION collab.revision_hash(p_prev_hash bytea, p_resource_id text, p_version bigint,
	p_content text, p_saved_by text, p_saved_by_name text, p_saved_at timestamptz,
	p_token bigint, p_path text, p_restored_from bigint)
RETURNS bytea
	AS 'MODULE_PATHNAME', 'collab_revision_hash' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION collab.revision_hash(bytea, text, bigint, text, text, text, timestamptz, bigint, text, bigint)
	IS 'SHA-256 of a revision''s fields chained to the previous hash, as docs/revisions.md defines it';

-- Refuses UPDATE, DELETE and TRUNCATE, for the owner too; only the DELETEs
-- of collab.purge_revisions() pass (src/revisions.c).
CREATE FUNCTION collab._revisions_immutable() RETURNS trigger
	AS 'MODULE_PATHNAME', 'collab_revisions_immutable' LANGUAGE C;
COMMENT ON FUNCTION collab._revisions_immutable() IS 'Trigger: revisions and purge anchors are never changed or deleted (but by collab.purge_revisions())';
CREATE TRIGGER revisions_immutable BEFORE UPDATE OR DELETE ON collab.revisions
	FOR EACH ROW EXECUTE FUNCTION collab._revisions_immutable();
CREATE TRIGGER revisions_immutable_truncate BEFORE TRUNCATE ON collab.revisions
	FOR EACH STATEMENT EXECUTE FUNCTION collab._revisions_immutable();
CREATE TRIGGER revision_purges_immutable BEFORE UPDATE OR DELETE ON collab.revision_purges
	FOR EACH ROW EXECUTE FUNCTION collab._revisions_immutable();
CREATE TRIGGER revision_purges_immutable_truncate BEFORE TRUNCATE ON collab.revision_purges
	FOR EACH STATEMENT EXECUTE FUNCTION collab._revisions_immutable();

-- Superuser only (checked in C as well as by the absence of grants).
CREATE FUNCTION collab.purge_revisions(p_before timestamptz) RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_purge_revisions' LANGUAGE C;
COMMENT ON FUNCTION collab.purge_revisions(timestamptz)
	IS 'Superuser only: drops revisions saved before p_before (never a resource''s newest, nor a chain that does not verify), keeping an anchor hash; returns how many';

-- collab.save() gains restored_from; the 4-argument call resolves to it.
-- In C (src/save_guard.c).
DROP FUNCTION collab.save(text, bigint, text, bigint);
CREATE FUNCTION collab.save(p_resource_id text, p_token bigint, p_content text,
	p_base_version bigint DEFAULT NULL, p_restored_from bigint DEFAULT NULL)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_save' LANGUAGE C;
COMMENT ON FUNCTION collab.save(text, bigint, text, bigint, bigint)
	IS 'Saves content with the live lock''s token (optionally expecting a base version, or restoring an earlier version''s content); returns the new version';

-- The same save naming its path: the worker's saves are 'ws'.  Not granted.
CREATE FUNCTION collab._save(p_resource_id text, p_token bigint, p_content text,
	p_base_version bigint, p_restored_from bigint, p_path text)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_save' LANGUAGE C;
COMMENT ON FUNCTION collab._save(text, bigint, text, bigint, bigint, text)
	IS 'collab.save() with the path recorded in the revision (ws or sql); for the WebSocket worker';

DROP FUNCTION collab.ws_save(text, text, text, bigint, bigint);
CREATE FUNCTION collab.ws_save(p_conn text, p_resource_id text, p_content text,
	p_base_version bigint DEFAULT NULL, p_token bigint DEFAULT NULL, p_restored_from bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	v_version bigint;
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	IF NOT EXISTS (SELECT FROM collab.ws_presence
				    WHERE connection_id = p_conn
					  AND resource_id = ANY (collab.ancestors(p_resource_id) || p_resource_id)) THEN
		PERFORM collab._raise('NOT_JOINED', format('not joined to "%s"', p_resource_id),
			NULL, 'Send presence:join first.');
	END IF;
	-- the path lock the save takes anyway, first: a revoke on the path has
	-- committed before the check below, or waits for this save's commit
	PERFORM collab._lock_path(p_resource_id);
	PERFORM collab._ws_require_edit(p_conn, p_resource_id);
	l := collab._ws_lease(p_conn, p_resource_id, true);
	-- a client that names its token is fenced by it: a save prepared under
	-- an earlier lock of the same connection is not accepted under a later one
	IF p_token IS NOT NULL AND p_token <> l.token THEN
		PERFORM collab._token_error(p_token, p_resource_id);
	END IF;
	v_version := collab._save(p_resource_id, l.token, p_content, p_base_version, p_restored_from, 'ws');
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'version', v_version));
END
$$;
COMMENT ON FUNCTION collab.ws_save(text, text, text, bigint, bigint, bigint)
	IS 'doc:save for the WebSocket worker: a save under the connection''s own lock, recorded with path ws';

-- The page size of a history: NULL is the default; the one place that
-- sets the default and the maximum.
CREATE FUNCTION collab._history_limit(p_limit bigint) RETURNS integer
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_limit IS NULL THEN
		RETURN 50;
	END IF;
	IF p_limit < 1 OR p_limit > 500 THEN
		PERFORM collab._raise('BAD_REQUEST', 'limit must be between 1 and 500',
			format('The limit given was %s.', p_limit), 'Page through longer histories with before.');
	END IF;
	RETURN p_limit;
END
$$;
COMMENT ON FUNCTION collab._history_limit(bigint) IS 'Page size of a history: 50 by default, 1 to 500';

-- The resource whose revisions are read: it must exist (its current
-- incarnation's revisions are meant).
CREATE FUNCTION collab._revision_resource(p_resource_id text) RETURNS collab.resources
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r collab.resources;
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	SELECT * INTO r FROM collab.resources WHERE id = p_resource_id;
	IF NOT FOUND THEN
		PERFORM collab._raise('RESOURCE_NOT_FOUND', format('resource "%s" does not exist', p_resource_id));
	END IF;
	RETURN r;
END
$$;
COMMENT ON FUNCTION collab._revision_resource(text) IS 'The resource whose revisions are read; RESOURCE_NOT_FOUND if there is none';

CREATE FUNCTION collab.history(p_resource_id text, p_before bigint DEFAULT NULL, p_limit integer DEFAULT NULL)
RETURNS TABLE (version bigint, saved_by text, saved_by_name text, saved_at timestamptz,
	size bigint, path text, restored_from bigint, hash text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r collab.resources := collab._revision_resource(p_resource_id);
	v_limit integer := collab._history_limit(p_limit);
BEGIN
	IF p_before IS NOT NULL AND p_before < 1 THEN
		PERFORM collab._raise('BAD_REQUEST', 'before must be a version of at least 1',
			format('The before given was %s.', p_before));
	END IF;
	RETURN QUERY
		SELECT v.version, v.saved_by, v.saved_by_name, v.saved_at, octet_length(v.content)::bigint,
			   v.path::text, v.restored_from, encode(v.hash, 'hex')
		  FROM collab.revisions v
		 WHERE v.resource_id = r.id AND v.resource_created_at = r.created_at
		   AND (p_before IS NULL OR v.version < p_before)
		 ORDER BY v.version DESC
		 LIMIT v_limit;
END
$$;
COMMENT ON FUNCTION collab.history(text, bigint, integer)
	IS 'Revisions of a resource, newest first, without content: versions below p_before, p_limit of them (default 50, at most 500)';

-- The token of a lock that is still live is withheld from all but
-- superusers, as the views withhold it: it is the holder's credential.
CREATE FUNCTION collab.revision(p_resource_id text, p_version bigint)
RETURNS TABLE (resource_id text, version bigint, content text, saved_by text, saved_by_name text,
	saved_at timestamptz, token bigint, path text, restored_from bigint, prev_hash text, hash text, size bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r collab.resources := collab._revision_resource(p_resource_id);
	v collab.revisions;
	v_purged bigint;
BEGIN
	IF p_version IS NULL OR p_version < 0 THEN
		PERFORM collab._raise('BAD_REQUEST', 'version must be a version number (0 or more)');
	END IF;
	SELECT * INTO v FROM collab.revisions x
	 WHERE x.resource_id = r.id AND x.resource_created_at = r.created_at AND x.version = p_version;
	IF NOT FOUND THEN
		SELECT max(p.through_version) INTO v_purged FROM collab.revision_purges p
		 WHERE p.resource_id = r.id AND p.resource_created_at = r.created_at;
		PERFORM collab._raise('RESOURCE_NOT_FOUND',
			format('resource "%s" has no revision %s', p_resource_id, p_version),
			CASE WHEN p_version <= v_purged THEN format('Revisions up to version %s were purged.', v_purged) END,
			'collab.history() lists the revisions there are.');
	END IF;
	RETURN QUERY SELECT v.resource_id, v.version, v.content, v.saved_by, v.saved_by_name, v.saved_at,
		CASE WHEN v.token IS NOT NULL
				  AND EXISTS (SELECT FROM collab.leases l WHERE l.token = v.token)
				  AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
			 THEN NULL ELSE v.token END,
		v.path::text, v.restored_from, encode(v.prev_hash, 'hex'), encode(v.hash, 'hex'),
		octet_length(v.content)::bigint;
END
$$;
COMMENT ON FUNCTION collab.revision(text, bigint)
	IS 'One revision of a resource with its content and every field of its hash (a live lock''s token withheld but from superusers)';

/*
 * Recomputes a chain: the revisions of one resource (id and creation time)
 * up to p_through (NULL: all), each hash from its fields and the previous
 * hash (the newest purge anchor's, or none, for the first), versions
 * consecutive.  Stops at the first version that fails.  Shared by
 * collab.verify_history() and collab.purge_revisions(), which leaves a
 * chain that does not verify as it is.
 */
CREATE FUNCTION collab._verify_chain(p_resource_id text, p_created_at timestamptz, p_through bigint,
	OUT first_bad_version bigint, OUT problem text, OUT revisions bigint,
	OUT purged_through bigint, OUT last_version bigint, OUT head_hash bytea)
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v collab.revisions;
	v_next bigint;
BEGIN
	revisions := 0;
	SELECT p.through_version, p.hash INTO purged_through, head_hash FROM collab.revision_purges p
	 WHERE p.resource_id = p_resource_id AND p.resource_created_at = p_created_at
	 ORDER BY p.through_version DESC LIMIT 1;
	v_next := purged_through + 1;
	FOR v IN SELECT * FROM collab.revisions x
			  WHERE x.resource_id = p_resource_id AND x.resource_created_at = p_created_at
			    AND (p_through IS NULL OR x.version <= p_through)
			  ORDER BY x.version LOOP
		IF v_next IS NOT NULL AND v.version > v_next THEN
			first_bad_version := v_next;
			problem := format('revision %s is missing', v_next);
			RETURN;
		ELSIF v_next IS NOT NULL AND v.version < v_next THEN
			first_bad_version := v.version;
			problem := format('revision %s lies within the purged versions (up to %s)', v.version, purged_through);
			RETURN;
		END IF;
		IF v.prev_hash IS DISTINCT FROM head_hash THEN
			first_bad_version := v.version;
			problem := CASE
				WHEN head_hash IS NULL THEN 'its prev_hash names a predecessor, but it is the first revision and no purge anchors it'
				WHEN revisions = 0 THEN format('its prev_hash is not the hash the purge anchored (version %s)', purged_through)
				ELSE 'its prev_hash is not the hash of the revision before it' END;
			RETURN;
		END IF;
		IF v.hash IS DISTINCT FROM collab.revision_hash(v.prev_hash, v.resource_id, v.version, v.content,
				v.saved_by, v.saved_by_name, v.saved_at, v.token, v.path::text, v.restored_from) THEN
			first_bad_version := v.version;
			problem := 'its fields do not match its hash';
			RETURN;
		END IF;
		head_hash := v.hash;
		v_next := v.version + 1;
		last_version := v.version;
		revisions := revisions + 1;
	END LOOP;
END
$$;
COMMENT ON FUNCTION collab._verify_chain(text, timestamptz, bigint)
	IS 'Recomputes the hash chain of one resource''s revisions up to a version: the first that fails, or none';

-- The chain of the resource's current revisions, and its newest revision
-- the resource's current version and content.
CREATE FUNCTION collab.verify_history(p_resource_id text,
	OUT ok boolean, OUT first_bad_version bigint, OUT problem text,
	OUT revisions bigint, OUT purged_through bigint, OUT head_hash text)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r collab.resources := collab._revision_resource(p_resource_id);
	c record;
BEGIN
	ok := false;
	SELECT * INTO c FROM collab._verify_chain(r.id, r.created_at, NULL);
	first_bad_version := c.first_bad_version;
	problem := c.problem;
	revisions := c.revisions;
	purged_through := c.purged_through;
	IF first_bad_version IS NOT NULL THEN
		RETURN;
	END IF;
	IF (c.last_version IS NULL AND r.version > 0) OR c.last_version < r.version THEN
		first_bad_version := coalesce(c.last_version + 1, c.purged_through + 1, r.version);
		problem := format('revision %s is missing', first_bad_version);
		RETURN;
	ELSIF c.last_version > r.version THEN
		first_bad_version := r.version + 1;
		problem := format('the resource is at version %s, its revisions go on to %s', r.version, c.last_version);
		RETURN;
	ELSIF c.last_version IS NOT NULL AND (SELECT v.content FROM collab.revisions v
			WHERE v.resource_id = r.id AND v.resource_created_at = r.created_at AND v.version = c.last_version)
			IS DISTINCT FROM r.content THEN
		first_bad_version := r.version;
		problem := 'the resource''s content is not the content of its revision';
		RETURN;
	END IF;
	ok := true;
	head_hash := encode(c.head_hash, 'hex');
END
$$;
COMMENT ON FUNCTION collab.verify_history(text)
	IS 'Recomputes a resource''s hash chain: ok, or the first version that does not verify and why';

-- Reading history over the WebSocket worker.  The one place that decides
-- whether a connection may read a resource's revisions, as a join decides
-- (collab.ws_join()): the view permission, the room need not be joined; a
-- resource one may not view does not exist, as far as one can tell.  Each
-- read is recorded in the access trail (p_action 'history' or 'revision',
-- p_detail what was asked), a refusal too.
CREATE FUNCTION collab._ws_may_read(p_conn text, p_resource_id text, p_action collab.access_action,
	p_detail jsonb) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections;
	v_exists boolean;
	v_level collab.permission;
	v_detail jsonb := jsonb_set(coalesce(p_detail, '{}'), '{connectionId}', to_jsonb(p_conn));
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	c := collab._ws_conn(p_conn);
	-- a grant or revoke on the path waits for this decision, or this for it
	PERFORM collab._lock_access(p_resource_id, false);
	IF collab._revoked(c.user_id, c.token_issued_at) THEN
		PERFORM collab._log_refusal(p_action::text, c.user_id, c.username, p_resource_id, c.address,
			(v_detail || jsonb_build_object('reason', 'revoked'))::text);
		PERFORM collab._raise_revoked();
	END IF;
	v_exists := EXISTS (SELECT FROM collab.resources WHERE id = p_resource_id);
	IF v_exists THEN
		v_level := collab._level(c.user_id, c.groups, p_resource_id);
	END IF;
	IF v_level IS NULL THEN
		PERFORM collab._log_refusal(p_action::text, c.user_id, c.username, p_resource_id, c.address,
			(v_detail || jsonb_build_object('reason', CASE WHEN v_exists THEN 'forbidden' ELSE 'not_found' END))::text);
		PERFORM collab._raise_not_found(p_resource_id);
	END IF;
	-- written with the read: a read that fails later (no such revision)
	-- rolls it back, having read nothing
	INSERT INTO collab.access_entries (action, outcome, user_id, username, resource_id, address, detail)
		VALUES (p_action, 'allowed', c.user_id, c.username, p_resource_id, c.address, v_detail);
END
$$;
COMMENT ON FUNCTION collab._ws_may_read(text, text, collab.access_action, jsonb)
	IS 'Whether a WebSocket connection may read a resource''s revisions (the view permission; RESOURCE_NOT_FOUND otherwise, as for a missing resource), recorded in the access trail';

-- A revision as the WebSocket protocol shows it.
CREATE FUNCTION collab._revision_json(p_version bigint, p_saved_by text, p_saved_by_name text,
	p_saved_at timestamptz, p_restored_from bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('version', p_version,
		'savedBy', CASE WHEN p_saved_by IS NULL THEN NULL ELSE collab._user_ref(p_saved_by, p_saved_by_name) END,
		'savedAt', collab._ts(p_saved_at))
		|| CASE WHEN p_restored_from IS NULL THEN '{}' ELSE jsonb_build_object('restoredFrom', p_restored_from) END
$$;
COMMENT ON FUNCTION collab._revision_json(bigint, text, text, timestamptz, bigint)
	IS 'The version, savedBy, savedAt (and restoredFrom) of a revision as WebSocket payloads carry them';

-- doc:history: a page of revisions, newest first; nextBefore is the before
-- of the next page, null on the last.  p_limit is a bigint, so that any
-- integer a client sends is judged by collab._history_limit().
CREATE FUNCTION collab.ws_history(p_conn text, p_resource_id text,
	p_before bigint DEFAULT NULL, p_limit bigint DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_list jsonb;
	v_oldest bigint;
	v_limit integer;
BEGIN
	PERFORM collab._ws_may_read(p_conn, p_resource_id, 'history',
		jsonb_build_object('before', p_before, 'limit', p_limit));
	v_limit := collab._history_limit(p_limit);
	SELECT coalesce(jsonb_agg(collab._revision_json(h.version, h.saved_by, h.saved_by_name, h.saved_at, h.restored_from)
			|| jsonb_build_object('size', h.size) ORDER BY h.version DESC), '[]'), min(h.version)
	  INTO v_list, v_oldest
	  FROM collab.history(p_resource_id, p_before, v_limit) h;
	IF v_oldest < 1 OR NOT EXISTS (SELECT FROM collab.history(p_resource_id, v_oldest, 1)) THEN
		v_oldest := NULL;
	END IF;
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'revisions', v_list, 'nextBefore', v_oldest));
END
$$;
COMMENT ON FUNCTION collab.ws_history(text, text, bigint, bigint)
	IS 'doc:history for the WebSocket worker: a page of revisions (newest first) of a resource the connection may view; the read is in the access trail';

-- doc:revision: one revision with its content.
CREATE FUNCTION collab.ws_revision(p_conn text, p_resource_id text, p_version bigint)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v record;
BEGIN
	PERFORM collab._ws_may_read(p_conn, p_resource_id, 'revision', jsonb_build_object('version', p_version));
	SELECT * INTO v FROM collab.revision(p_resource_id, p_version);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'revision',
		collab._revision_json(v.version, v.saved_by, v.saved_by_name, v.saved_at, v.restored_from)
		|| jsonb_build_object('content', v.content)));
END
$$;
COMMENT ON FUNCTION collab.ws_revision(text, text, bigint)
	IS 'doc:revision for the WebSocket worker: one revision with its content, of a resource the connection may view; the read is in the access trail';

-- Resources that already have content start their chains here.  Saves wait
-- for the upgrade to commit (SHARE conflicts with their row locks), so no
-- save falls between the genesis revisions and the first recorded one.
LOCK TABLE collab.resources IN SHARE MODE;
INSERT INTO collab.revisions (resource_id, resource_created_at, version, content, saved_by, saved_by_name,
	saved_at, token, path, restored_from, prev_hash, hash)
SELECT r.id, r.created_at, r.version, r.content, r.saved_by, r.saved_by_name,
	   coalesce(r.saved_at, r.created_at), NULL, 'genesis', NULL, NULL,
	   collab.revision_hash(NULL, r.id, r.version, r.content, r.saved_by, r.saved_by_name,
			coalesce(r.saved_at, r.created_at), NULL, 'genesis', NULL)
  FROM collab.resources r
 WHERE r.version > 0 OR r.content <> '';

REVOKE ALL ON collab.revisions, collab.revision_purges FROM PUBLIC;
REVOKE ALL ON FUNCTION collab.revision_hash(bytea, text, bigint, text, text, text, timestamptz, bigint, text, bigint),
	collab._revisions_immutable(), collab.purge_revisions(timestamptz),
	collab.save(text, bigint, text, bigint, bigint), collab._save(text, bigint, text, bigint, bigint, text),
	collab.ws_save(text, text, text, bigint, bigint, bigint), collab._history_limit(bigint),
	collab._revision_resource(text), collab.history(text, bigint, integer), collab.revision(text, bigint),
	collab._verify_chain(text, timestamptz, bigint), collab.verify_history(text),
	collab._ws_may_read(text, text, collab.access_action, jsonb),
	collab._revision_json(bigint, text, text, timestamptz, bigint),
	collab.ws_history(text, text, bigint, bigint), collab.ws_revision(text, text, bigint)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION collab.save(text, bigint, text, bigint, bigint),
	collab.history(text, bigint, integer), collab.revision(text, bigint), collab.verify_history(text),
	collab.revision_hash(bytea, text, bigint, text, text, text, timestamptz, bigint, text, bigint)
	TO collab_app, collab_admin;

-- pg_dump keeps every revision and purge anchor.
SELECT pg_catalog.pg_extension_config_dump('collab.revisions', '');
SELECT pg_catalog.pg_extension_config_dump('collab.revision_purges', '');

/* ------------------------------------------------------------------------
 * Fencing tokens across failover
 * ------------------------------------------------------------------------ */

/*
 * A token is epoch * 2^36 + n (src/tokens.c, docs/design.md).  The epoch is
 * the primary's WAL timeline plus the highest epoch of the data's earlier
 * lives, so a promoted standby issues tokens above every token the old
 * primary could have issued, replicated or not; n counts the epoch's grants.
 */
CREATE FUNCTION collab.token_epoch(p_token bigint) RETURNS integer
	AS 'MODULE_PATHNAME', 'collab_token_epoch' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION collab.current_token_epoch() RETURNS integer
	AS 'MODULE_PATHNAME', 'collab_current_token_epoch' LANGUAGE C;
CREATE FUNCTION collab._token_issuer(OUT system_identifier bigint, OUT timeline bigint)
	AS 'MODULE_PATHNAME', 'collab_token_issuer' LANGUAGE C;

-- 0.1.0 tokens are plain sequence values: they stay below every epoch
-- token only while they are below 2^36 (epoch 0).
DO $$
BEGIN
	IF (SELECT collab.token_epoch(last_value) FROM collab.fencing_token_seq) > 0 THEN
		RAISE EXCEPTION USING
			ERRCODE = 'sequence_generator_limit_exceeded',
			MESSAGE = 'collab.fencing_token_seq is beyond the tokens of epoch 0',
			DETAIL = format('Its last value is %s; tokens of 0.2.0 are epoch * 2^36 + n, and 0.1.0 tokens must stay below 2^36.',
				(SELECT last_value FROM collab.fencing_token_seq)),
			HINT = 'Release every lock, then contact the maintainers: this many grants were not foreseen.';
	END IF;
END
$$;

CREATE TABLE collab.token_epochs (
	epoch		integer PRIMARY KEY CHECK (epoch >= 1),
	system_identifier bigint NOT NULL,
	timeline	bigint NOT NULL CHECK (timeline >= 1),
	-- collab.token_epochs itself when the epoch started: a copy restored
	-- from a dump is another table, a physical standby has the same one
	table_oid	oid NOT NULL,
	base		bigint NOT NULL,
	started_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	reason		text NOT NULL CHECK (reason IN ('first', 'promotion', 'restore')),
	leases_extended_at timestamptz,
	leases_extended_by interval,
	leases_extended integer,
	UNIQUE (system_identifier, timeline, table_oid)
);

-- Finds or starts the epoch of the primary (p_system_identifier,
-- p_timeline); src/tokens.c calls it with the server's own values, tests
-- with others.  row_xmin tells the caller whether the row may still roll
-- back with its own transaction.
CREATE FUNCTION collab._start_token_epoch(p_system_identifier bigint, p_timeline bigint,
	OUT epoch integer, OUT base bigint, OUT row_xmin xid)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_table oid := 'collab.token_epochs'::regclass;
	v_before bigint;
	v_epoch bigint;
	v_floor bigint;
	v_reason text;
BEGIN
	IF p_system_identifier IS NULL OR p_timeline IS NULL OR p_timeline < 1 THEN
		PERFORM collab._raise('BAD_REQUEST', 'an epoch needs a system identifier and a timeline of at least 1');
	END IF;
	SELECT e.epoch, e.base, e.xmin INTO epoch, base, row_xmin FROM collab.token_epochs e
	 WHERE e.system_identifier = p_system_identifier AND e.timeline = p_timeline AND e.table_oid = v_table;
	IF FOUND THEN
		RETURN;
	END IF;
	-- one starter at a time; a concurrent one then finds this row
	LOCK TABLE collab.token_epochs IN SHARE ROW EXCLUSIVE MODE;
	SELECT e.epoch, e.base, e.xmin INTO epoch, base, row_xmin FROM collab.token_epochs e
	 WHERE e.system_identifier = p_system_identifier AND e.timeline = p_timeline AND e.table_oid = v_table;
	IF FOUND THEN
		RETURN;
	END IF;

	-- The data's earlier lives: epochs that another cluster, or another copy
	-- of this table, started.  Rows of this cluster and table do not count:
	-- a standby may lack the old primary's last ones, and needs no more
	-- than its later timeline to be above them.
	SELECT max(e.epoch) INTO v_before FROM collab.token_epochs e
	 WHERE e.system_identifier <> p_system_identifier OR e.table_oid <> v_table;
	v_epoch := coalesce(v_before, 0) + p_timeline;
	-- above every token the data holds, whatever happened to its epoch rows
	SELECT collab.token_epoch(max(t)) + 1 INTO v_floor
	  FROM (SELECT max(token) AS t FROM collab.leases
			UNION ALL SELECT max(token) FROM collab.audit WHERE token IS NOT NULL) x;
	v_epoch := greatest(v_epoch, v_floor);
	IF v_epoch > collab.token_epoch(9007199254740991) THEN
		RAISE EXCEPTION USING
			ERRCODE = 'sequence_generator_limit_exceeded',
			MESSAGE = format('no fencing token epoch is left for timeline %s', p_timeline),
			DETAIL = format('This primary would start epoch %s; tokens stay below 2^53 only up to epoch %s.',
				v_epoch, collab.token_epoch(9007199254740991)),
			HINT = 'Restore a dump into a new cluster with fewer earlier lives, or contact the maintainers.';
	END IF;
	v_reason := CASE
		WHEN EXISTS (SELECT FROM collab.token_epochs e
					  WHERE e.system_identifier = p_system_identifier AND e.table_oid = v_table) THEN 'promotion'
		WHEN v_before IS NULL THEN 'first'
		ELSE 'restore' END;
	base := nextval('collab.fencing_token_seq');
	INSERT INTO collab.token_epochs (epoch, system_identifier, timeline, table_oid, base, reason)
		VALUES (v_epoch, p_system_identifier, p_timeline, v_table, base, v_reason)
	RETURNING token_epochs.epoch, token_epochs.xmin INTO epoch, row_xmin;
END
$$;

-- Called once the server has been promoted (by the WebSocket worker, or by
-- an administrator): extends every live lease by p_grace, so that holders
-- cut off by the failover can come back and save.  Once per timeline: a
-- second call, on this or another connection, extends nothing and returns
-- 0.  Returns the number of leases extended.
CREATE FUNCTION collab.extend_leases_after_promotion(p_grace interval) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_issuer record;
	v_epoch integer;
	l collab.leases;
	n integer := 0;
BEGIN
	PERFORM collab._require_read_committed();
	IF p_grace IS NULL OR p_grace < interval '0' OR p_grace > interval '1 day' THEN
		PERFORM collab._raise('BAD_REQUEST', 'the grace must be an interval from 0 to 1 day');
	END IF;
	v_issuer := collab._token_issuer();
	-- Callers of this function wait for each other (a lock no lock decision
	-- takes, so no cycle with them); the epoch row records the extension.
	PERFORM pg_advisory_xact_lock(1668246636, 1);
	IF EXISTS (SELECT FROM collab.token_epochs e
				WHERE e.system_identifier = v_issuer.system_identifier
				  AND e.timeline = v_issuer.timeline
				  AND e.table_oid = 'collab.token_epochs'::regclass
				  AND e.leases_extended_at IS NOT NULL) THEN
		RETURN 0;
	END IF;
	FOR l IN SELECT * FROM collab.leases c WHERE c.expires_at > clock_timestamp() ORDER BY c.resource_id LOOP
		PERFORM collab._lock_path(l.resource_id);
		UPDATE collab.leases c SET expires_at = c.expires_at + p_grace
		 WHERE c.token = l.token AND c.expires_at > clock_timestamp()
		RETURNING * INTO l;
		CONTINUE WHEN NOT FOUND;
		INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id, reason, detail)
			VALUES ('renew', l.resource_id, l.token, l.user_id, l.username, l.holder_id, 'promotion',
				jsonb_build_object('timeline', v_issuer.timeline,
					'extendedByMs', round(extract(epoch FROM p_grace) * 1000),
					'expiresAt', collab._ts(l.expires_at)));
		n := n + 1;
	END LOOP;
	-- Started after the path locks: a grant that starts the epoch holds
	-- its path while it waits for the epoch table, so this order has no cycle.
	v_epoch := collab.current_token_epoch();
	UPDATE collab.token_epochs
	   SET leases_extended_at = clock_timestamp(), leases_extended_by = p_grace, leases_extended = n
	 WHERE epoch = v_epoch;
	RETURN n;
END
$$;

REVOKE ALL ON collab.token_epochs FROM PUBLIC;
REVOKE ALL ON FUNCTION collab.current_token_epoch(), collab._token_issuer(),
	collab._start_token_epoch(bigint, bigint), collab.extend_leases_after_promotion(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION collab.token_epoch(bigint) TO collab_app, collab_admin;
GRANT EXECUTE ON FUNCTION collab.current_token_epoch(), collab.extend_leases_after_promotion(interval)
	TO collab_admin;
GRANT SELECT ON collab.token_epochs TO collab_admin;

-- dumped with the leases, so that a restored database knows its earlier lives
SELECT pg_catalog.pg_extension_config_dump('collab.token_epochs', '');

COMMENT ON TABLE collab.token_epochs IS
	'Fencing token epochs: one row per primary (system identifier, timeline, copy of this table) that issued tokens';
COMMENT ON FUNCTION collab.token_epoch(bigint) IS
	'The epoch a fencing token was issued in (token >> 36; 0 for tokens of collab 0.1.0)';
COMMENT ON FUNCTION collab.current_token_epoch() IS
	'The fencing token epoch of this primary, started now if no grant has started it yet';
COMMENT ON FUNCTION collab._token_issuer() IS
	'This primary''s system identifier and WAL timeline, as the fencing token epoch uses them';
COMMENT ON FUNCTION collab._start_token_epoch(bigint, bigint) IS
	'Finds or starts the fencing token epoch of a primary (internal: src/tokens.c)';
COMMENT ON FUNCTION collab.extend_leases_after_promotion(interval) IS
	'After a promotion: extends every live lease by the grace, once per timeline; returns how many';
COMMENT ON FUNCTION collab._next_token() IS
	'The next fencing token (internal: epoch * 2^36 + the epoch''s count)';

/* ------------------------------------------------------------------------
 * The save path: a row's shape checked when it is inserted
 * ------------------------------------------------------------------------ */

/*
 * The three CHECK constraints of collab.resources (a valid id, the kind
 * and the parent that the id names) become one BEFORE INSERT trigger in C
 * (src/save_guard.c), with the same SQLSTATE, message and constraint names.
 * A table CHECK is evaluated by every UPDATE, and PostgreSQL reads its
 * expression back from the catalog for every statement that writes the
 * table: most of a plain UPDATE's instructions, on every save.  An UPDATE
 * cannot change these columns (the guard, collab._guard_update(), refuses
 * it), so checking new rows keeps every row in shape.
 */
CREATE FUNCTION collab._resources_shape() RETURNS trigger
	AS 'MODULE_PATHNAME', 'collab_resources_shape' LANGUAGE C;
REVOKE ALL ON FUNCTION collab._resources_shape() FROM PUBLIC;
CREATE TRIGGER resources_shape BEFORE INSERT ON collab.resources
	FOR EACH ROW EXECUTE FUNCTION collab._resources_shape();
ALTER TABLE collab.resources
	DROP CONSTRAINT resources_id_check,
	DROP CONSTRAINT resources_parent_matches_id,
	DROP CONSTRAINT resources_kind_matches_id;
COMMENT ON FUNCTION collab._resources_shape() IS
	'Trigger: a new collab.resources row has a valid id, and the kind and parent that its id names';

/* ------------------------------------------------------------------------
 * Comments on every object
 * ------------------------------------------------------------------------ */

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
COMMENT ON TYPE collab.audit_action IS 'What an audit row records: grant, deny, renew, release, expire, force_release, suspend, resume';
COMMENT ON TABLE collab.ws_connections IS 'WebSocket connections of the worker(s), one row per session (shown by collab.connections)';
COMMENT ON TABLE collab.ws_presence IS 'Who is in which room, as editor or viewer, with the PresenceUser JSON; unlogged (shown by collab.presence)';
COMMENT ON TABLE collab.ws_lock_requests IS 'Edit hand-off: viewers who asked the holder of a lock for it, in order';
COMMENT ON DOMAIN collab.presence_role IS 'A role in a room: editor or viewer';

-- views
COMMENT ON VIEW collab.audit_log IS 'The audit trail of lock decisions, without tokens';

-- the application API
COMMENT ON FUNCTION collab.create_document(text, text, text[]) IS 'Creates document:<p_key> and a tab for each of p_tabs; returns the document id';
COMMENT ON FUNCTION collab.add_tab(text, text, text) IS 'Creates the tab <p_document_id>/tab:<p_tab_key>; returns its id';
COMMENT ON FUNCTION collab.renew(bigint) IS 'Renews the live lease of a token for collab.lock_ttl';
COMMENT ON FUNCTION collab.release(bigint, text) IS 'Releases the live lease of a token (released, left, disconnected); returns its resource id';
COMMENT ON FUNCTION collab.force_release(text, text) IS 'Administrative: removes the live lease on a resource, whoever holds it, with a reason for the audit trail';
COMMENT ON FUNCTION collab.sweep() IS 'Administrative: removes the expired leases, records and announces each, and returns them';
COMMENT ON FUNCTION collab.error_codes() IS 'The error codes of collab with their SQLSTATEs and meanings';
COMMENT ON FUNCTION collab.error_code(text) IS 'The collab error code of a SQLSTATE, NULL for any other';
COMMENT ON FUNCTION collab.resource_id_valid(text) IS 'Is this a valid resource id (kind:key segments separated by /)? Never raises';
COMMENT ON FUNCTION collab.check_resource_id(text) IS 'Raises RESOURCE_ID_INVALID, naming the rule and the byte offset, unless the id is valid';
COMMENT ON FUNCTION collab.parent_id(text) IS 'A resource id without its last segment; NULL for a top-level id';
COMMENT ON FUNCTION collab.ancestors(text) IS 'The proper ancestors of a resource id, root first';
COMMENT ON FUNCTION collab.lock_key(text) IS 'The lock key of a resource path (a 64-bit hash); its locks are in collab''s own key space (pg_locks: locktype userlock, objsubid 1), not pg_advisory_lock''s';
COMMENT ON FUNCTION collab.lock_ttl() IS 'The session''s collab.lock_ttl as an interval';
COMMENT ON FUNCTION collab.max_content_size() IS 'The session''s collab.max_content_size in bytes';
COMMENT ON FUNCTION collab.pending_events() IS 'The events this transaction will publish at commit (for tests and debugging)';

-- the WebSocket worker's calls, one per client command
COMMENT ON FUNCTION collab.ws_disconnect(text, text) IS 'Worker: a connection closed; releases its locks, leaves its rooms and removes it';
COMMENT ON FUNCTION collab.ws_leave(text, text) IS 'Worker: presence:leave, releasing the connection''s lock on the resource';
COMMENT ON FUNCTION collab.ws_acquire(text, text) IS 'Worker: lock:acquire of a connection in the room; {"ack": ..., "token": ...} as text';
COMMENT ON FUNCTION collab.ws_release(text, text) IS 'Worker: lock:release of the connection''s own lease';

-- internal steps and checks
COMMENT ON FUNCTION collab._check_preloaded() IS 'Internal: raises unless collab is in shared_preload_libraries';
COMMENT ON FUNCTION collab._raise(text, text, text, text) IS 'Internal: raises the error of a collab error code with its SQLSTATE';
COMMENT ON FUNCTION collab._lock_path(text) IS 'Internal: takes the path locks of a resource for the transaction (shared on ancestors, exclusive on the resource); in a worker without waiting';
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
COMMENT ON FUNCTION collab._lock_info(text, text, text, timestamptz, timestamptz, bigint, timestamptz) IS 'Payloads: a LockInfo, with the token only when one is given and suspendedUntil while its holder''s connection is lost; NULL for no lease';
COMMENT ON FUNCTION collab._presence_user(text, text, text, text, timestamptz, text) IS 'Payloads: a PresenceUser, as stored with its presence row';
COMMENT ON FUNCTION collab._publish_presence_joined(text, text) IS 'Payloads: builds and queues presence:joined';
COMMENT ON FUNCTION collab._publish_presence_left(text, text, text) IS 'Payloads: builds and queues presence:left';
COMMENT ON FUNCTION collab._publish_lock_requested(text, text, text, timestamptz, text) IS 'Payloads: builds and queues lock:requested';
