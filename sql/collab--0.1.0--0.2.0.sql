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
 * Shared payload builders and comments on every object
 * ------------------------------------------------------------------------ */
