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
