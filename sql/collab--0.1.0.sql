/* collab--0.1.0.sql: documents and tabs, fenced editor locks, guarded saves */

\echo Use "CREATE EXTENSION collab" to load this file. \quit

COMMENT ON SCHEMA collab IS 'collab: collaborative editing with fenced editor locks';

CREATE FUNCTION collab._check_preloaded() RETURNS void
	AS 'MODULE_PATHNAME', 'collab_check_preloaded' LANGUAGE C;
SELECT collab._check_preloaded();

/* ------------------------------------------------------------------------
 * Roles.  Cluster-wide, so they are created only if missing and outlive
 * DROP EXTENSION; see docs/sql-api.md for what each may do.
 * ------------------------------------------------------------------------ */
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'collab_app') THEN
		CREATE ROLE collab_app NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'collab_admin') THEN
		CREATE ROLE collab_admin NOLOGIN;
	END IF;
END
$$;

/* ------------------------------------------------------------------------
 * C helpers
 * ------------------------------------------------------------------------ */
CREATE FUNCTION collab._raise(code text, message text, detail text DEFAULT NULL, hint text DEFAULT NULL)
	RETURNS void AS 'MODULE_PATHNAME', 'collab_raise' LANGUAGE C;
CREATE FUNCTION collab.error_codes(OUT code text, OUT sqlstate text, OUT meaning text)
	RETURNS SETOF record AS 'MODULE_PATHNAME', 'collab_error_codes' LANGUAGE C STABLE STRICT;
CREATE FUNCTION collab.error_code(sqlstate text) RETURNS text
	AS 'MODULE_PATHNAME', 'collab_error_code_of' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION collab.resource_id_valid(resource_id text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'collab_resource_id_valid' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION collab.check_resource_id(resource_id text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_check_resource_id' LANGUAGE C IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION collab.parent_id(resource_id text) RETURNS text
	AS 'MODULE_PATHNAME', 'collab_parent_id' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION collab.ancestors(resource_id text) RETURNS text[]
	AS 'MODULE_PATHNAME', 'collab_ancestors' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION collab.lock_key(resource_id text) RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_lock_key' LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
CREATE FUNCTION collab.lock_ttl() RETURNS interval
	AS 'MODULE_PATHNAME', 'collab_lock_ttl' LANGUAGE C STABLE;
CREATE FUNCTION collab.max_content_size() RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_max_content_size_sql' LANGUAGE C STABLE;
CREATE FUNCTION collab._next_token() RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_next_token' LANGUAGE C;
CREATE FUNCTION collab._lock_path(resource_id text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_lock_path' LANGUAGE C STRICT;
CREATE FUNCTION collab._try_lock_path(resource_id text) RETURNS boolean
	AS 'MODULE_PATHNAME', 'collab_try_lock_path' LANGUAGE C STRICT;
CREATE FUNCTION collab._publish(event text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_publish' LANGUAGE C STRICT;
CREATE FUNCTION collab.pending_events() RETURNS SETOF text
	AS 'MODULE_PATHNAME', 'collab_pending_events' LANGUAGE C;

/* ------------------------------------------------------------------------
 * Resources: a document row and one row per tab, ids are paths.
 * ------------------------------------------------------------------------ */
CREATE TABLE collab.resources (
	id			text COLLATE "C" PRIMARY KEY CHECK (collab.resource_id_valid(id)),
	-- deferred: pg_dump restores the rows in one COPY, tabs maybe first
	parent_id	text COLLATE "C" REFERENCES collab.resources (id) ON DELETE CASCADE
				DEFERRABLE INITIALLY DEFERRED,
	kind		text NOT NULL,
	title		text,
	content		text NOT NULL DEFAULT '',
	version		bigint NOT NULL DEFAULT 0,
	saved_by	text,
	saved_by_name text,
	saved_at	timestamptz,
	created_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	CONSTRAINT resources_parent_matches_id
		CHECK (parent_id IS NOT DISTINCT FROM collab.parent_id(id)),
	CONSTRAINT resources_kind_matches_id
		CHECK (kind = split_part(substr(id, length(id) - strpos(reverse(id), '/') + 2), ':', 1)
			   OR (strpos(id, '/') = 0 AND kind = split_part(id, ':', 1)))
);
CREATE INDEX resources_parent_idx ON collab.resources (parent_id);
COMMENT ON TABLE collab.resources IS 'Documents and their tabs; content changes only through the lock guard';

/* ------------------------------------------------------------------------
 * Leases: at most one live editor lock per resource, none overlapping on
 * a path.  Tokens come from a sequence: strictly increasing, never reused.
 * ------------------------------------------------------------------------ */
CREATE SEQUENCE collab.fencing_token_seq AS bigint NO CYCLE;

CREATE TABLE collab.leases (
	resource_id	text COLLATE "C" PRIMARY KEY REFERENCES collab.resources (id) ON DELETE CASCADE,
	token		bigint NOT NULL UNIQUE,
	user_id		text NOT NULL,
	username	text NOT NULL,
	holder_id	text NOT NULL,
	acquired_at	timestamptz NOT NULL,
	renewed_at	timestamptz NOT NULL,
	expires_at	timestamptz NOT NULL
);
-- No index on expires_at: every save renews its lease, and an indexed
-- column would make each renewal a non-HOT update touching every index.
-- The sweep scans the table of live leases, which stays small.
ALTER TABLE collab.leases SET (fillfactor = 50);
CREATE INDEX leases_holder_idx ON collab.leases (holder_id);

CREATE SEQUENCE collab.audit_id_seq AS bigint;
-- An enum rather than a CHECK: every insert would read a CHECK's expression
-- back from its stored form, and every lock decision inserts here.
CREATE TYPE collab.audit_action AS ENUM ('grant', 'deny', 'renew', 'release', 'expire', 'force_release');
CREATE TABLE collab.audit (
	id			bigint PRIMARY KEY DEFAULT nextval('collab.audit_id_seq'),
	at			timestamptz NOT NULL DEFAULT clock_timestamp(),
	action		collab.audit_action NOT NULL,
	resource_id	text COLLATE "C" NOT NULL,
	token		bigint,
	user_id		text,
	username	text,
	holder_id	text,
	actor		name NOT NULL DEFAULT session_user,
	reason		text,
	detail		jsonb
);
ALTER SEQUENCE collab.audit_id_seq OWNED BY collab.audit.id;
CREATE INDEX audit_token_idx ON collab.audit (token) WHERE token IS NOT NULL;
CREATE INDEX audit_resource_idx ON collab.audit (resource_id, at);

/* ------------------------------------------------------------------------
 * Internal helpers
 * ------------------------------------------------------------------------ */

-- The helpers that the C functions of src/leases.c and src/save_guard.c call
-- run, like them, as the owner but under the caller's search_path; each
-- sets its own, so that no operator or function of the caller's schemas is
-- picked in their place.

-- Lock decisions read other transactions' committed leases after waiting
-- for their advisory locks; a snapshot taken earlier would miss them.
CREATE FUNCTION collab._require_read_committed() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF current_setting('transaction_isolation') <> 'read committed' THEN
		PERFORM collab._raise('BAD_REQUEST',
			'collab lock functions must run in a READ COMMITTED transaction',
			format('The transaction isolation level is %s.', current_setting('transaction_isolation')),
			'Call them in their own transaction or with SET TRANSACTION ISOLATION LEVEL READ COMMITTED.');
	END IF;
END
$$;

-- Identities are bounded and free of control characters, so that every
-- event that names them fits a notification.
CREATE FUNCTION collab._check_identity(p_what text, p_value text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF p_value IS NULL OR p_value = '' OR octet_length(p_value) > 256 OR p_value ~ '[[:cntrl:]]' THEN
		PERFORM collab._raise('BAD_REQUEST',
			format('%s must be a non-empty string of at most 256 bytes without control characters', p_what));
	END IF;
END
$$;

CREATE FUNCTION collab._check_user(p_user_id text, p_username text) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._check_identity('user_id', p_user_id);
	PERFORM collab._check_identity('username', p_username);
END
$$;

CREATE FUNCTION collab._check_resource(p_resource_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	IF NOT EXISTS (SELECT FROM collab.resources WHERE id = p_resource_id) THEN
		PERFORM collab._raise('RESOURCE_NOT_FOUND',
			format('resource "%s" does not exist', p_resource_id),
			NULL, 'Create it with collab.create_document() or collab.add_tab().');
	END IF;
END
$$;

-- STABLE like to_char() and jsonb_build_object(): an IMMUTABLE wrapper
-- around them would never be inlined, and be planned on every call.
CREATE FUNCTION collab._ts(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
	SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE FUNCTION collab._user_ref(p_user_id text, p_username text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT jsonb_build_object('userId', p_user_id, 'username', p_username)
$$;

-- Removes an expired lease, records it and announces lock:expired
-- (src/leases.c).
CREATE FUNCTION collab._expire_lease(l collab.leases) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_expire_lease' LANGUAGE C STRICT;

-- Raises the right error for a token that is not live (on p_resource_id,
-- when the caller names one).
CREATE FUNCTION collab._token_error(p_token bigint, p_resource_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	v_on text := CASE WHEN p_resource_id IS NULL THEN '' ELSE format(' on "%s"', p_resource_id) END;
BEGIN
	IF p_token IS NULL THEN
		PERFORM collab._raise('LOCK_NOT_HELD', 'no lock token presented' || v_on,
			NULL, 'Acquire the editor lock and present its token.');
	END IF;
	SELECT * INTO l FROM collab.leases WHERE token = p_token;
	IF FOUND AND l.expires_at <= clock_timestamp() THEN
		PERFORM collab._raise('LOCK_EXPIRED',
			format('the lock on "%s" expired', l.resource_id),
			format('It expired at %s.', collab._ts(l.expires_at)),
			'Acquire the lock again; renew it before collab.lock_ttl passes.');
	ELSIF FOUND THEN
		PERFORM collab._raise('LOCK_NOT_HELD',
			format('the presented token is the lock of "%s", not of "%s"', l.resource_id, p_resource_id));
	ELSIF EXISTS (SELECT FROM collab.audit WHERE token = p_token AND action = 'expire') THEN
		PERFORM collab._raise('LOCK_EXPIRED', 'the presented lock expired' || v_on,
			NULL, 'Acquire the lock again; renew it before collab.lock_ttl passes.');
	ELSE
		PERFORM collab._raise('LOCK_NOT_HELD', 'the presented token is not a live lock' || v_on,
			'The lock was released, taken over, or never granted.',
			'Acquire the editor lock and present its token.');
	END IF;
END
$$;

/* ------------------------------------------------------------------------
 * Documents and tabs
 * ------------------------------------------------------------------------ */
CREATE FUNCTION collab._insert_resource(p_id text, p_title text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	v_parent text := collab.parent_id(p_id);
	v_last text := coalesce(substr(p_id, length(v_parent) + 2), p_id);
BEGIN
	IF p_title IS NOT NULL AND octet_length(p_title) > 1024 THEN
		PERFORM collab._raise('BAD_REQUEST', 'title must be at most 1024 bytes');
	END IF;
	IF v_parent IS NOT NULL AND NOT EXISTS (SELECT FROM collab.resources WHERE id = v_parent) THEN
		PERFORM collab._raise('RESOURCE_NOT_FOUND', format('parent resource "%s" does not exist', v_parent));
	END IF;
	INSERT INTO collab.resources (id, parent_id, kind, title)
		VALUES (p_id, v_parent, split_part(v_last, ':', 1), p_title);
EXCEPTION WHEN unique_violation THEN
	PERFORM collab._raise('RESOURCE_EXISTS', format('resource "%s" already exists', p_id));
END
$$;

CREATE FUNCTION collab.create_document(p_key text, p_title text DEFAULT NULL, p_tabs text[] DEFAULT '{}')
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_id text;
	v_tab text;
BEGIN
	IF p_key IS NULL THEN
		PERFORM collab._raise('BAD_REQUEST', 'a document key is required');
	END IF;
	IF strpos(p_key, '/') > 0 THEN
		PERFORM collab._raise('RESOURCE_ID_INVALID', 'a document key must not contain ''/''');
	END IF;
	v_id := 'document:' || p_key;
	PERFORM collab.check_resource_id(v_id);
	PERFORM collab._insert_resource(v_id, p_title);
	FOREACH v_tab IN ARRAY coalesce(p_tabs, '{}') LOOP
		PERFORM collab.add_tab(v_id, v_tab);
	END LOOP;
	RETURN v_id;
END
$$;

CREATE FUNCTION collab.add_tab(p_document_id text, p_tab_key text, p_title text DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_id text;
BEGIN
	PERFORM collab.check_resource_id(p_document_id);
	IF p_tab_key IS NULL OR strpos(p_tab_key, '/') > 0 THEN
		PERFORM collab._raise('RESOURCE_ID_INVALID', 'a tab key must be non-empty and must not contain ''/''');
	END IF;
	IF collab.parent_id(p_document_id) IS NOT NULL THEN
		PERFORM collab._raise('BAD_REQUEST', 'tabs belong to documents: the parent must be a top-level resource',
			format('"%s" is itself inside "%s".', p_document_id, collab.parent_id(p_document_id)));
	END IF;
	v_id := p_document_id || '/tab:' || p_tab_key;
	PERFORM collab.check_resource_id(v_id);
	PERFORM collab._insert_resource(v_id, p_title);
	RETURN v_id;
END
$$;

/* ------------------------------------------------------------------------
 * Locks
 * ------------------------------------------------------------------------ */
-- The lock decision, in C (src/leases.c): it runs as the owner, as SECURITY
-- DEFINER would, with every name in it qualified.
CREATE FUNCTION collab.acquire(
	p_resource_id text, p_user_id text, p_username text, p_holder_id text DEFAULT NULL,
	OUT granted boolean, OUT token bigint, OUT resource_id text,
	OUT holder_user_id text, OUT holder_username text, OUT holder_id text,
	OUT holder_resource_id text, OUT acquired_at timestamptz, OUT expires_at timestamptz,
	OUT renewed boolean)
	AS 'MODULE_PATHNAME', 'collab_acquire' LANGUAGE C;

CREATE FUNCTION collab.renew(p_token bigint,
	OUT resource_id text, OUT token bigint, OUT expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
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
	UPDATE collab.leases c
	   SET renewed_at = clock_timestamp(), expires_at = clock_timestamp() + collab.lock_ttl()
	 WHERE c.token = p_token AND c.expires_at > clock_timestamp()
	RETURNING c.resource_id, c.token, c.expires_at INTO resource_id, token, expires_at;
	IF NOT FOUND THEN
		PERFORM collab._token_error(p_token, l.resource_id);
	END IF;
	INSERT INTO collab.audit (action, resource_id, token, user_id, username, holder_id, reason)
		VALUES ('renew', l.resource_id, p_token, l.user_id, l.username, l.holder_id, 'renew');
END
$$;

-- Shared by release, release_holder and force_release (src/leases.c):
-- removes a live lease, records it, announces lock:released and hands the
-- lock to a viewer who asked for it.
CREATE FUNCTION collab._drop_lease(l collab.leases, p_action text, p_reason text) RETURNS void
	AS 'MODULE_PATHNAME', 'collab_drop_lease' LANGUAGE C STRICT;

-- Offers a freed lock to the first viewer who asked for it and is still in
-- the room (edit hand-off); requests of people who left are dropped.
CREATE FUNCTION collab._hand_off(p_resource_id text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r record;
	a record;
BEGIN
	FOR r IN
		SELECT q.connection_id, p.user_id, p.username
		  FROM collab.ws_lock_requests q
		  JOIN collab.ws_presence p ON p.connection_id = q.connection_id AND p.resource_id = q.resource_id
		 WHERE q.resource_id = p_resource_id
		 ORDER BY q.requested_at, q.connection_id
	LOOP
		DELETE FROM collab.ws_lock_requests WHERE resource_id = p_resource_id AND connection_id = r.connection_id;
		SELECT * INTO a FROM collab.acquire(p_resource_id, r.user_id, r.username, r.connection_id);
		IF a.granted THEN
			UPDATE collab.ws_presence SET role = 'editor'
			 WHERE connection_id = r.connection_id AND resource_id = p_resource_id;
		END IF;
		RETURN;
	END LOOP;
END
$$;

-- In C (src/leases.c), as the owner like collab.acquire().
CREATE FUNCTION collab.release(p_token bigint, p_reason text DEFAULT 'released')
RETURNS text
	AS 'MODULE_PATHNAME', 'collab_release' LANGUAGE C;

CREATE FUNCTION collab.release_holder(p_holder_id text, p_reason text DEFAULT 'disconnected')
RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	v_id text;
BEGIN
	PERFORM collab._require_read_committed();
	IF p_reason IS NULL OR p_reason NOT IN ('released', 'left', 'disconnected') THEN
		PERFORM collab._raise('BAD_REQUEST', 'reason must be one of released, left, disconnected');
	END IF;
	FOR v_id IN SELECT c.resource_id FROM collab.leases c WHERE c.holder_id = p_holder_id ORDER BY 1 LOOP
		PERFORM collab._lock_path(v_id);
		SELECT * INTO l FROM collab.leases c WHERE c.resource_id = v_id AND c.holder_id = p_holder_id FOR UPDATE;
		CONTINUE WHEN NOT FOUND;
		IF l.expires_at <= clock_timestamp() THEN
			PERFORM collab._expire_lease(l);
		ELSE
			PERFORM collab._drop_lease(l, 'release', p_reason);
			RETURN NEXT v_id;
		END IF;
	END LOOP;
END
$$;

CREATE FUNCTION collab.force_release(p_resource_id text, p_reason text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
BEGIN
	PERFORM collab._require_read_committed();
	IF p_reason IS NULL OR btrim(p_reason) = '' OR octet_length(p_reason) > 1024 THEN
		PERFORM collab._raise('BAD_REQUEST', 'force_release needs a reason (1 to 1024 bytes); it is recorded in the audit trail');
	END IF;
	PERFORM collab._check_resource(p_resource_id);
	PERFORM collab._lock_path(p_resource_id);
	SELECT * INTO l FROM collab.leases c WHERE c.resource_id = p_resource_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	IF l.expires_at <= clock_timestamp() THEN
		PERFORM collab._expire_lease(l);
		RETURN false;
	END IF;
	PERFORM collab._drop_lease(l, 'force_release', p_reason);
	RETURN true;
END
$$;

CREATE FUNCTION collab.sweep(
	OUT resource_id text, OUT token bigint, OUT user_id text, OUT username text,
	OUT holder_id text, OUT expired_at timestamptz)
RETURNS SETOF record
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
	v_token bigint;
	v_resource_id text;
BEGIN
	PERFORM collab._require_read_committed();
	FOR v_token, v_resource_id IN
		SELECT c.token, c.resource_id FROM collab.leases c WHERE c.expires_at <= clock_timestamp()
		 ORDER BY c.expires_at
	LOOP
		-- The path first, as every lock decision takes it, and without
		-- waiting: this transaction holds the rows of the leases expired so
		-- far, which an operation holding this path may be waiting for.  A
		-- busy path is left to that operation, or to the next sweep.
		CONTINUE WHEN NOT collab._try_lock_path(v_resource_id);
		-- re-read in case a renewal or a release committed first
		SELECT * INTO l FROM collab.leases c WHERE c.token = v_token FOR UPDATE;
		CONTINUE WHEN NOT FOUND OR l.expires_at > clock_timestamp();
		PERFORM collab._expire_lease(l);
		PERFORM collab._hand_off(l.resource_id);
		resource_id := l.resource_id;
		token := l.token;
		user_id := l.user_id;
		username := l.username;
		holder_id := l.holder_id;
		expired_at := l.expires_at;
		RETURN NEXT;
	END LOOP;
END
$$;

/* ------------------------------------------------------------------------
 * Saves.  The guard trigger is the only way content changes: it checks the
 * token presented in collab.lock_token against the live lease of the row or
 * of an ancestor, renews that lease, bumps the version and announces the save.
 * ------------------------------------------------------------------------ */
-- In C (save_guard.c): the hot path of every save.
CREATE FUNCTION collab._guard_update() RETURNS trigger
	AS 'MODULE_PATHNAME', 'collab_guard_update' LANGUAGE C;

CREATE TRIGGER resources_guard BEFORE UPDATE ON collab.resources
	FOR EACH ROW EXECUTE FUNCTION collab._guard_update();

-- In C (save_guard.c); it runs its UPDATE as the extension owner itself.
CREATE FUNCTION collab.save(p_resource_id text, p_token bigint, p_content text, p_base_version bigint DEFAULT NULL)
RETURNS bigint
	AS 'MODULE_PATHNAME', 'collab_save' LANGUAGE C;

/* ------------------------------------------------------------------------
 * WebSocket connections and presence, maintained by the worker.  Each
 * function runs one client command and returns the JSON the worker sends
 * back: the acknowledgement, and what only the caller may see (its token).
 * ------------------------------------------------------------------------ */
CREATE TABLE collab.ws_connections (
	connection_id text PRIMARY KEY,
	worker		text NOT NULL,
	worker_pid	integer NOT NULL,
	user_id		text NOT NULL,
	username	text NOT NULL,
	address		text,
	origin		text,
	connected_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ws_connections_worker_idx ON collab.ws_connections (worker);

-- A domain rather than a CHECK on the table: a table's CHECK is read back
-- from its stored form by every statement that writes the table, and every
-- lock decision sets a role; a domain's is kept compiled for the session.
CREATE DOMAIN collab.presence_role AS text CHECK (VALUE IN ('editor', 'viewer'));

/*
 * Presence is unlogged: a row means nothing once its connection is gone, and
 * a crash ends every connection (and empties the table).  So a join or leave
 * writes no WAL and commits without waiting for the disk.  Connections stay
 * logged: after a crash, the worker's next run finds them and releases the
 * locks they held (collab.ws_worker_start).
 *
 * No foreign keys, on purpose: their checks lock the referenced rows, a
 * WAL-logged row lock that would make every join wait for a flush again.
 * The triggers below do what ON DELETE CASCADE did: a deleted connection or
 * resource takes its rows with it.  A join checks its resource again after
 * its insert, and the deletion waits for joins in flight (a table lock), so
 * neither can miss the other.
 */
CREATE UNLOGGED TABLE collab.ws_presence (
	connection_id text NOT NULL,
	resource_id	text COLLATE "C" NOT NULL,
	user_id		text NOT NULL,
	username	text NOT NULL,
	role		collab.presence_role NOT NULL,
	joined_at	timestamptz NOT NULL DEFAULT clock_timestamp(),
	user_json	text,			-- the PresenceUser object, kept by a trigger
	PRIMARY KEY (connection_id, resource_id)
);
-- in the order of a room's user list, which an index scan then gives unsorted
CREATE INDEX ws_presence_resource_idx ON collab.ws_presence (resource_id, joined_at, connection_id);

-- Edit hand-off: viewers who asked the holder for the lock, in order.
CREATE TABLE collab.ws_lock_requests (
	resource_id	text COLLATE "C" NOT NULL REFERENCES collab.resources (id) ON DELETE CASCADE,
	connection_id text NOT NULL REFERENCES collab.ws_connections ON DELETE CASCADE,
	requested_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	PRIMARY KEY (resource_id, connection_id)
);

-- Each presence row carries its PresenceUser JSON, built here and nowhere
-- else, so that a room's user list (sent to every joiner) is a
-- concatenation, not a build per member, and events copy it.
CREATE FUNCTION collab._ws_presence_json() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	NEW.user_json := jsonb_build_object('userId', NEW.user_id, 'username', NEW.username,
		'connectionId', NEW.connection_id, 'role', NEW.role,
		'joinedAt', collab._ts(NEW.joined_at), 'resourceId', NEW.resource_id)::text;
	RETURN NEW;
END
$$;
CREATE TRIGGER ws_presence_json BEFORE INSERT ON collab.ws_presence
	FOR EACH ROW EXECUTE FUNCTION collab._ws_presence_json();
-- An UPDATE that changes user_json itself needs no rebuild: lock:acquire and
-- lock:release change the role and its member of the JSON in one statement
-- (src/leases.c), and would otherwise run this PL/pgSQL for each decision.
CREATE TRIGGER ws_presence_json_update BEFORE UPDATE ON collab.ws_presence
	FOR EACH ROW WHEN (OLD.user_json IS NOT DISTINCT FROM NEW.user_json)
	EXECUTE FUNCTION collab._ws_presence_json();

-- What ON DELETE CASCADE would do for presence (see collab.ws_presence).
CREATE FUNCTION collab._ws_connection_gone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	DELETE FROM collab.ws_presence WHERE connection_id = OLD.connection_id;
	RETURN NULL;
END
$$;
CREATE TRIGGER ws_connections_presence AFTER DELETE ON collab.ws_connections
	FOR EACH ROW EXECUTE FUNCTION collab._ws_connection_gone();

-- The lock waits for joins in flight and holds off new ones until this
-- transaction ends; a join that waited then finds its resource gone.
CREATE FUNCTION collab._resource_gone() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	LOCK TABLE collab.ws_presence IN SHARE ROW EXCLUSIVE MODE;
	IF TG_OP = 'TRUNCATE' THEN
		DELETE FROM collab.ws_presence;
	ELSE
		DELETE FROM collab.ws_presence WHERE resource_id = OLD.id;
	END IF;
	RETURN NULL;
END
$$;
CREATE TRIGGER resources_presence AFTER DELETE ON collab.resources
	FOR EACH ROW EXECUTE FUNCTION collab._resource_gone();
CREATE TRIGGER resources_presence_truncate AFTER TRUNCATE ON collab.resources
	FOR EACH STATEMENT EXECUTE FUNCTION collab._resource_gone();

-- Everyone in the room of p_resource_id or of one of its descendants, as a
-- JSON array.  A room without descendants in it (a tab) needs no sort of
-- the rooms of the whole document, and can be read in index order.
CREATE FUNCTION collab._room_users(p_resource_id text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
	v text;
BEGIN
	IF EXISTS (SELECT FROM collab.ws_presence p
				WHERE p.resource_id > p_resource_id || '/' AND p.resource_id < p_resource_id || '0') THEN
		SELECT string_agg(u.user_json, ',') INTO v
		  FROM (SELECT p.user_json FROM collab.ws_presence p
				 WHERE p.resource_id = p_resource_id
					OR (p.resource_id > p_resource_id || '/' AND p.resource_id < p_resource_id || '0')
				 ORDER BY p.joined_at, p.connection_id) u;
	ELSE
		SELECT string_agg(u.user_json, ',') INTO v
		  FROM (SELECT p.user_json FROM collab.ws_presence p
				 WHERE p.resource_id = p_resource_id
				 ORDER BY p.joined_at, p.connection_id) u;
	END IF;
	RETURN '[' || coalesce(v, '') || ']';
END
$$;

CREATE FUNCTION collab._ws_conn(p_conn text) RETURNS collab.ws_connections
LANGUAGE plpgsql STABLE AS $$
DECLARE
	c collab.ws_connections;
BEGIN
	SELECT * INTO c FROM collab.ws_connections WHERE connection_id = p_conn;
	IF NOT FOUND THEN
		PERFORM collab._raise('INTERNAL', 'unknown connection');
	END IF;
	RETURN c;
END
$$;

CREATE FUNCTION collab._ws_presence(p_conn text, p_resource_id text) RETURNS collab.ws_presence
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p collab.ws_presence;
BEGIN
	PERFORM collab.check_resource_id(p_resource_id);
	SELECT * INTO p FROM collab.ws_presence WHERE connection_id = p_conn AND resource_id = p_resource_id;
	IF NOT FOUND THEN
		PERFORM collab._raise('NOT_JOINED', format('not joined to "%s"', p_resource_id),
			NULL, 'Send presence:join first.');
	END IF;
	RETURN p;
END
$$;

-- The lock description of an acquire result, with the token for its holder
-- only: the object of _lease_json(), built here because _lease_json() of a
-- row constructor is not inlined and would be parsed on every call.
CREATE FUNCTION collab._lock_json(a record, p_with_token boolean) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
	IF a.holder_resource_id IS NULL THEN
		RETURN NULL;
	END IF;
	RETURN jsonb_build_object('resourceId', a.holder_resource_id,
			'holder', jsonb_build_object('userId', a.holder_user_id, 'username', a.holder_username),
			'acquiredAt', collab._ts(a.acquired_at), 'expiresAt', collab._ts(a.expires_at))
		|| CASE WHEN p_with_token THEN jsonb_build_object('token', a.token) ELSE '{}' END;
END
$$;

-- A lease as the LockInfo of the protocol (NULL for no lease); the token
-- only for its holder's own eyes.
CREATE FUNCTION collab._lease_json(l collab.leases, p_with_token boolean DEFAULT false) RETURNS jsonb
LANGUAGE sql STABLE AS $$
	SELECT CASE WHEN l.resource_id IS NULL THEN NULL ELSE
		jsonb_build_object('resourceId', l.resource_id,
			'holder', collab._user_ref(l.user_id, l.username),
			'acquiredAt', collab._ts(l.acquired_at), 'expiresAt', collab._ts(l.expires_at))
		|| CASE WHEN p_with_token THEN jsonb_build_object('token', l.token) ELSE '{}' END END
$$;

-- What a joiner needs to show the resource: its content and version.
--
-- This and _children_json are PL/pgSQL rather than SQL functions: a SQL
-- function with a FROM clause cannot be inlined, and is parsed and planned
-- again in every transaction that calls it (0.5 ms of every join here);
-- PL/pgSQL keeps its plans for the session.
CREATE FUNCTION collab._resource_json(p_resource_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT jsonb_build_object('resourceId', r.id, 'kind', r.kind, 'title', r.title,
		'version', r.version, 'content', r.content,
		'savedBy', CASE WHEN r.saved_by IS NULL THEN NULL ELSE collab._user_ref(r.saved_by, r.saved_by_name) END,
		'savedAt', collab._ts(r.saved_at))
	  FROM collab.resources r WHERE r.id = p_resource_id);
END
$$;

-- The children of a resource (a document's tabs) with their versions and
-- live locks, for a UI that lists them.
CREATE FUNCTION collab._children_json(p_resource_id text) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('resourceId', r.id, 'kind', r.kind, 'title', r.title,
		'version', r.version,
		'lock', collab._lease_json(l))
		ORDER BY r.created_at, r.id), '[]')
	  FROM collab.resources r
	  LEFT JOIN collab.leases l ON l.resource_id = r.id AND l.expires_at > clock_timestamp()
	 WHERE r.parent_id = p_resource_id);
END
$$;

CREATE FUNCTION collab.ws_connect(p_conn text, p_worker text, p_worker_pid integer,
	p_user_id text, p_username text, p_address text, p_origin text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._check_user(p_user_id, p_username);
	INSERT INTO collab.ws_connections (connection_id, worker, worker_pid, user_id, username, address, origin)
		VALUES (p_conn, p_worker, p_worker_pid, p_user_id, p_username, p_address, left(p_origin, 256));
END
$$;

-- Returns the acknowledgement, the joiner's token if it got the lock, and
-- the room's users (also part of the acknowledgement) for presence:state.
-- The worker passes p_users false and reads the users itself, after the
-- room has heard of the join (run_jobs in src/worker.c).
CREATE FUNCTION collab.ws_join(p_conn text, p_resource_id text, p_mode text,
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
		v_lock := collab._lock_json(a, a.granted);
	ELSE
		-- a viewer still learns who holds the lock, if anyone does
		SELECT * INTO l FROM collab.leases WHERE resource_id = p_resource_id AND expires_at > clock_timestamp();
		IF FOUND THEN
			v_lock := collab._lease_json(l);
			v_role := CASE WHEN l.holder_id = p_conn THEN 'editor' ELSE 'viewer' END;
		END IF;
	END IF;

	INSERT INTO collab.ws_presence (connection_id, resource_id, user_id, username, role)
		VALUES (p_conn, p_resource_id, c.user_id, c.username, v_role)
	ON CONFLICT (connection_id, resource_id) DO UPDATE SET role = EXCLUDED.role
	RETURNING * INTO p;
	-- deleted while we joined? (see collab.ws_presence: no foreign key)
	PERFORM collab._check_resource(p_resource_id);
	PERFORM collab._publish(jsonb_build_object(
		'event', 'presence:joined',
		'resourceId', p_resource_id,
		'user', p.user_json::jsonb)::text);

	token := v_token;
	ack := '{"ok":true,"role":' || to_json(v_role)::text || ',"lock":' || v_lock::text
		|| ',"resource":' || collab._resource_json(p_resource_id)::text
		|| ',"children":' || collab._children_json(p_resource_id)::text || '}';
	-- the worker (p_users false) reads the users once the room has heard of
	-- the join, and adds them as ws_join_users_done() does here
	IF p_users THEN
		users := collab._room_users(p_resource_id);
		ack := left(ack, -1) || ',"users":' || users || '}';
	END IF;
END
$$;

-- lock:acquire and lock:release, in C (src/leases.c): the hot path of a
-- contended tab.  Both return {"ack": ..., "token": ...} as text.
CREATE FUNCTION collab.ws_acquire(p_conn text, p_resource_id text)
RETURNS text
	AS 'MODULE_PATHNAME', 'collab_ws_acquire' LANGUAGE C;

-- lock:request: a viewer asks the holder for the lock.  A free lock is
-- simply granted; a held one gets the request queued and the holder told.
CREATE FUNCTION collab.ws_request(p_conn text, p_resource_id text)
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
	PERFORM collab._publish(jsonb_build_object(
		'event', 'lock:requested',
		'resourceId', p_resource_id,
		'requester', collab._user_ref(c.user_id, c.username),
		'requestedAt', collab._ts(v_at),
		'to', l.holder_id)::text);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'requested', true,
		'lock', collab._lease_json(l)));
END
$$;

-- The connection's own lease on p_resource_id (or, with p_or_ancestor, on
-- an ancestor, whose lock covers the resource).
CREATE FUNCTION collab._ws_lease(p_conn text, p_resource_id text, p_or_ancestor boolean)
RETURNS collab.leases
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
BEGIN
	SELECT * INTO l FROM collab.leases
	 WHERE holder_id = p_conn
	   AND (resource_id = p_resource_id
			OR (p_or_ancestor AND resource_id = ANY (collab.ancestors(p_resource_id))))
	 ORDER BY length(resource_id) DESC LIMIT 1;
	IF NOT FOUND THEN
		-- the lock that expired may be an ancestor's (a document lock
		-- covering a save to one of its tabs)
		IF EXISTS (SELECT FROM collab.audit
					WHERE holder_id = p_conn AND action = 'expire'
					  AND (resource_id = p_resource_id
						   OR (p_or_ancestor AND resource_id = ANY (collab.ancestors(p_resource_id))))
					  AND NOT EXISTS (SELECT FROM collab.audit a2
									   WHERE a2.holder_id = p_conn
										 AND (a2.resource_id = p_resource_id
											  OR (p_or_ancestor AND a2.resource_id = ANY (collab.ancestors(p_resource_id))))
										 AND a2.action IN ('grant', 'release', 'force_release')
										 AND a2.id > audit.id)) THEN
			PERFORM collab._raise('LOCK_EXPIRED', format('your lock on "%s" expired', p_resource_id),
				NULL, 'Acquire the lock again with lock:acquire.');
		END IF;
		PERFORM collab._raise('LOCK_NOT_HELD', format('you do not hold the lock on "%s"', p_resource_id),
			NULL, 'Acquire it with lock:acquire first.');
	END IF;
	RETURN l;
END
$$;

CREATE FUNCTION collab.ws_renew(p_conn text, p_resource_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	l collab.leases;
BEGIN
	PERFORM collab._ws_presence(p_conn, p_resource_id);
	l := collab._ws_lease(p_conn, p_resource_id, false);
	SELECT expires_at INTO l.expires_at FROM collab.renew(l.token);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'lock', collab._lease_json(l, true)),
		'token', l.token);
END
$$;

CREATE FUNCTION collab.ws_release(p_conn text, p_resource_id text)
RETURNS text
	AS 'MODULE_PATHNAME', 'collab_ws_release' LANGUAGE C;

CREATE FUNCTION collab.ws_save(p_conn text, p_resource_id text, p_content text,
	p_base_version bigint DEFAULT NULL, p_token bigint DEFAULT NULL)
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
	l := collab._ws_lease(p_conn, p_resource_id, true);
	-- a client that names its token is fenced by it: a save prepared under
	-- an earlier lock of the same connection is not accepted under a later one
	IF p_token IS NOT NULL AND p_token <> l.token THEN
		PERFORM collab._token_error(p_token, p_resource_id);
	END IF;
	v_version := collab.save(p_resource_id, l.token, p_content, p_base_version);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'version', v_version));
END
$$;

-- Shared by leave and disconnect: drops one presence row, releasing the
-- connection's lease on that resource first.
CREATE FUNCTION collab._ws_drop_presence(p collab.ws_presence, p_lock_reason text, p_presence_reason text)
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
	PERFORM collab._publish(jsonb_build_object(
		'event', 'presence:left',
		'resourceId', p.resource_id,
		'user', p.user_json::jsonb,
		'reason', p_presence_reason)::text);
END
$$;

CREATE FUNCTION collab.ws_leave(p_conn text, p_resource_id text)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM collab._ws_drop_presence(collab._ws_presence(p_conn, p_resource_id), 'left', 'left');
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true));
END
$$;

-- A connection closed (reason 'disconnected', or 'timeout' for a dead peer):
-- everything it held is released and everyone it was with is told.
CREATE FUNCTION collab.ws_disconnect(p_conn text, p_reason text DEFAULT 'disconnected')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	p collab.ws_presence;
BEGIN
	FOR p IN SELECT * FROM collab.ws_presence WHERE connection_id = p_conn ORDER BY resource_id DESC LOOP
		PERFORM collab._ws_drop_presence(p, 'disconnected', p_reason);
	END LOOP;
	PERFORM collab.release_holder(p_conn, 'disconnected');
	DELETE FROM collab.ws_connections WHERE connection_id = p_conn;
END
$$;

-- A worker (re)starting: connections of its previous incarnation are gone.
-- With p_workers (worker 1 passes collab.workers), so are those of workers
-- beyond that number, which no longer run.
CREATE FUNCTION collab.ws_worker_start(p_worker text, p_workers integer DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	v_conn text;
	n integer := 0;
BEGIN
	FOR v_conn IN
		SELECT connection_id FROM collab.ws_connections
		 WHERE worker = p_worker
		    OR (p_workers IS NOT NULL
		        AND worker <> ALL (ARRAY(SELECT 'collab worker ' || i FROM generate_series(1, p_workers) i)))
		 ORDER BY connected_at
	LOOP
		PERFORM collab.ws_disconnect(v_conn, 'disconnected');
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/* ------------------------------------------------------------------------
 * Views: never the token.
 * ------------------------------------------------------------------------ */
CREATE VIEW collab.locks AS
	SELECT resource_id, user_id, username, holder_id, acquired_at, renewed_at, expires_at
	  FROM collab.leases
	 WHERE expires_at > clock_timestamp();

CREATE VIEW collab.connections AS
	SELECT c.connection_id, c.user_id, c.username, c.address, c.origin, c.connected_at,
		   c.worker, c.worker_pid,
		   coalesce(array_agg(p.resource_id ORDER BY p.resource_id) FILTER (WHERE p.resource_id IS NOT NULL), '{}') AS rooms
	  FROM collab.ws_connections c
	  LEFT JOIN collab.ws_presence p USING (connection_id)
	 GROUP BY c.connection_id;

CREATE VIEW collab.presence AS
	SELECT resource_id, connection_id, user_id, username, role::text AS role, joined_at
	  FROM collab.ws_presence;

-- action as text, as the view has always shown it (the column is an enum)
CREATE VIEW collab.audit_log AS
	SELECT id, at, action::text AS action, resource_id, user_id, username, holder_id, actor, reason, detail
	  FROM collab.audit;

/* ------------------------------------------------------------------------
 * Privileges: nothing for PUBLIC; collab_app runs the application API,
 * collab_admin adds force_release and the audit trail.
 * ------------------------------------------------------------------------ */
REVOKE ALL ON ALL TABLES IN SCHEMA collab FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA collab FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA collab FROM PUBLIC;

GRANT USAGE ON SCHEMA collab TO collab_app, collab_admin;
GRANT EXECUTE ON FUNCTION
	collab.error_codes(), collab.error_code(text), collab.resource_id_valid(text),
	collab.check_resource_id(text), collab.parent_id(text), collab.ancestors(text),
	collab.lock_ttl(),
	collab.create_document(text, text, text[]), collab.add_tab(text, text, text),
	collab.acquire(text, text, text, text), collab.renew(bigint),
	collab.release(bigint, text), collab.release_holder(text, text),
	collab.save(text, bigint, text, bigint)
	TO collab_app, collab_admin;
GRANT SELECT ON collab.resources, collab.locks, collab.connections, collab.presence TO collab_app, collab_admin;
GRANT UPDATE (content, title) ON collab.resources TO collab_app;
GRANT EXECUTE ON FUNCTION collab.force_release(text, text), collab.sweep(), collab.pending_events()
	TO collab_admin;
GRANT SELECT ON collab.audit_log TO collab_admin;
GRANT collab_app TO collab_admin;

-- pg_dump keeps documents, leases, the audit trail and the token sequence
-- (so that tokens keep increasing after a restore); connections and
-- presence are runtime state.
SELECT pg_catalog.pg_extension_config_dump('collab.resources', '');
SELECT pg_catalog.pg_extension_config_dump('collab.leases', '');
SELECT pg_catalog.pg_extension_config_dump('collab.audit', '');
SELECT pg_catalog.pg_extension_config_dump('collab.fencing_token_seq', '');
SELECT pg_catalog.pg_extension_config_dump('collab.audit_id_seq', '');
