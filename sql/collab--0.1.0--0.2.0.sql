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
 * The access trail.  An entry of a join (a read of content) is written to
 * an unlogged buffer, so that a join still writes no WAL and does not wait
 * for a flush; collab.sweep() moves the buffer into the logged table every
 * collab.sweep_interval.  A crash loses what the buffer held (the joins of
 * the last sweep interval), never an entry already moved.  Grants, revokes
 * and session revocations are written to the logged table at once.
 */
CREATE TYPE collab.access_action AS ENUM ('connect', 'join', 'grant', 'revoke', 'revoke_sessions');
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
COMMENT ON TABLE collab.access_entries IS 'The access trail, durable part (read it through collab.access_log)';

-- No id and no index: an insert here is a join's only write to the trail.
CREATE UNLOGGED TABLE collab.access_buffer (
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
COMMENT ON TABLE collab.access_buffer IS 'The access trail''s entries of joins until collab.sweep() moves them to collab.access_entries';

CREATE VIEW collab.access_log AS
	SELECT id, at, action::text AS action, outcome::text AS outcome, user_id, username,
		   resource_id, address, actor, detail
	  FROM collab.access_entries
	UNION ALL
	SELECT NULL::bigint, at, action::text, outcome::text, user_id, username,
		   resource_id, address, actor, detail
	  FROM collab.access_buffer;
COMMENT ON VIEW collab.access_log IS 'Who joined (read) which resource, or was refused, and every grant, revoke and session revocation; id is NULL until the entry is moved to durable storage';

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
-- to '*', to the user, or to one of the groups (NULL: none).  A custom plan
-- for the arrays of each call would be chosen again on every call, and
-- planning costs four times the lookup: the generic plan is kept.
CREATE FUNCTION collab._granted(p_user_id text, p_groups text[], p_resource_id text)
RETURNS collab.permission
LANGUAGE plpgsql STABLE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
	RETURN (SELECT max(g.permission) FROM collab.acl g
	 WHERE g.resource_id = ANY (collab.ancestors(p_resource_id) || p_resource_id)
	   AND g.subject = ANY (ARRAY['*', 'user:' || p_user_id]
							|| ARRAY(SELECT 'group:' || x FROM unnest(p_groups) x)));
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

-- Whether a token issued at p_issued_at (NULL: no iat) of p_user_id is refused.
CREATE FUNCTION collab._revoked(p_user_id text, p_issued_at timestamptz) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN EXISTS (SELECT FROM collab.session_revocations r
				    WHERE r.user_id = p_user_id
					  AND (p_issued_at IS NULL OR p_issued_at <= r.revoked_before));
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

-- What a connection may do on a resource.  The caller holds the path
-- lock, so that a grant or revoke is seen whole (a new snapshot: the caller
-- runs this in a statement after taking the lock).
CREATE FUNCTION collab._ws_require_edit(p_conn text, p_resource_id text) RETURNS void
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	c collab.ws_connections := collab._ws_conn(p_conn);
BEGIN
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
	INSERT INTO collab.ws_connections (connection_id, worker, worker_pid, user_id, username, address, origin,
			groups, token_issued_at)
		VALUES (p_conn, p_worker, p_worker_pid, p_user_id, p_username, p_address, left(p_origin, 256),
				v_groups, v_issued);
END
$$;
COMMENT ON FUNCTION collab.ws_connect(text, text, integer, text, text, text, text, text[], bigint) IS 'Worker: registers a connection with its token''s groups and iat; AUTH_TOKEN_REVOKED for a revoked session';

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
	-- the content is read below: the trail records it (see collab.access_buffer)
	INSERT INTO collab.access_buffer (action, outcome, user_id, username, resource_id, address, detail)
		VALUES ('join', 'allowed', c.user_id, c.username, p_resource_id, c.address,
				jsonb_build_object('mode', p_mode, 'role', v_role, 'permissions', v_permissions,
								   'connectionId', p_conn));

	token := v_token;
	-- children: grants inherit, so whoever may view a resource may view
	-- every one of its children; the list is theirs in full
	ack := '{"ok":true,"role":' || to_json(v_role)::text
		|| ',"permissions":' || to_json(v_permissions)::text
		|| ',"lock":' || v_lock::text
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
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'lock', collab._lease_json(l, true)),
		'token', l.token);
END
$$;

CREATE OR REPLACE FUNCTION collab.ws_save(p_conn text, p_resource_id text, p_content text,
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
	v_version := collab.save(p_resource_id, l.token, p_content, p_base_version);
	RETURN jsonb_build_object('ack', jsonb_build_object('ok', true, 'version', v_version));
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
	WITH moved AS (
		DELETE FROM collab.access_buffer b
		 WHERE b.ctid = ANY (ARRAY(SELECT x.ctid FROM collab.access_buffer x LIMIT 10000))
		RETURNING b.*)
	INSERT INTO collab.access_entries (at, action, outcome, user_id, username, resource_id, address, actor, detail)
	SELECT at, action, outcome, user_id, username, resource_id, address, actor, detail
	  FROM moved ORDER BY at;
	IF v_keep IS NOT NULL THEN
		DELETE FROM collab.access_entries e
		 WHERE e.id IN (SELECT x.id FROM collab.access_entries x
						 WHERE x.at < clock_timestamp() - v_keep ORDER BY x.at LIMIT 10000);
	END IF;
END
$$;
COMMENT ON FUNCTION collab._access_log_maintain() IS 'Moves the buffered join entries of the access trail to durable storage and drops entries older than collab.access_log_retention (up to 10000 of each per call)';

CREATE OR REPLACE FUNCTION collab.sweep(
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
	PERFORM collab._access_log_maintain();
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

/* What collab_app sees: no browser connection's id (docs/access-control.md) */
CREATE OR REPLACE VIEW collab.locks AS
	SELECT l.resource_id, l.user_id, l.username,
		   CASE WHEN pg_has_role('collab_admin', 'USAGE')
					 OR NOT EXISTS (SELECT FROM collab.ws_connections c WHERE c.connection_id = l.holder_id)
				THEN l.holder_id END AS holder_id,
		   l.acquired_at, l.renewed_at, l.expires_at
	  FROM collab.leases l
	 WHERE l.expires_at > clock_timestamp();

CREATE OR REPLACE VIEW collab.connections AS
	SELECT CASE WHEN pg_has_role('collab_admin', 'USAGE') THEN c.connection_id END AS connection_id,
		   c.user_id, c.username, c.address, c.origin, c.connected_at,
		   c.worker, c.worker_pid,
		   coalesce(array_agg(p.resource_id ORDER BY p.resource_id) FILTER (WHERE p.resource_id IS NOT NULL), '{}') AS rooms
	  FROM collab.ws_connections c
	  LEFT JOIN collab.ws_presence p USING (connection_id)
	 GROUP BY c.connection_id;

CREATE OR REPLACE VIEW collab.presence AS
	SELECT resource_id,
		   CASE WHEN pg_has_role('collab_admin', 'USAGE') THEN connection_id END AS connection_id,
		   user_id, username, role::text AS role, joined_at
	  FROM collab.ws_presence;

COMMENT ON VIEW collab.locks IS 'Live locks, never their token; holder_id of a browser connection''s lock only for collab_admin';
COMMENT ON VIEW collab.connections IS 'WebSocket connections and their rooms; connection_id only for collab_admin';
COMMENT ON VIEW collab.presence IS 'Who is in which room; connection_id only for collab_admin';
COMMENT ON FUNCTION collab.acquire(text, text, text, text) IS 'The editor lock of a resource for a holder, or who holds it instead; FORBIDDEN for a holder id that is a browser connection''s, except from the worker''s functions';
COMMENT ON FUNCTION collab.release_holder(text, text) IS 'Releases every live lock of a holder (a connection that went away); collab_admin';
COMMENT ON FUNCTION collab.ws_join(text, text, text, boolean) IS 'Worker: presence:join; RESOURCE_NOT_FOUND, as for a missing resource, without view; viewer without edit; the ack carries the permissions';
COMMENT ON FUNCTION collab.ws_request(text, text) IS 'Worker: lock:request; needs edit';
COMMENT ON FUNCTION collab.ws_renew(text, text) IS 'Worker: lock:renew; needs edit';
COMMENT ON FUNCTION collab.ws_save(text, text, text, bigint, bigint) IS 'Worker: doc:save; needs edit, checked under the path lock';

-- What a NOTIFY listener may see of a payload: no internal event, and no
-- id of a browser connection (docs/events.md); NULL when nothing is left.
CREATE FUNCTION collab.public_payload(p_payload text) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	SELECT CASE WHEN count(*) > 0 THEN
		jsonb_build_object('v', p_payload::jsonb -> 'v',
			'events', jsonb_agg(((x.e - 'holderId' - 'requesterHolderId' - 'to') #- '{user,connectionId}')
								ORDER BY x.n))::text END
	  FROM jsonb_array_elements(p_payload::jsonb -> 'events') WITH ORDINALITY AS x(e, n)
	 WHERE x.e ->> 'event' NOT LIKE 'internal:%'
$$;
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

/* ------------------------------------------------------------------------
 * Revisions: every accepted save kept, hash-chained
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Fencing tokens across failover
 * ------------------------------------------------------------------------ */

/* ------------------------------------------------------------------------
 * Shared payload builders and comments on every object
 * ------------------------------------------------------------------------ */
